package reformail

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
)

// split is -s: the mbox on standard input is cut before every line that
// starts with "From ", and each message is piped into a new run of the
// command. FILENO counts the messages: from its inherited value, keeping its
// width (zero-padded), or from "000" when unset; a non-numeric FILENO is
// passed on unchanged. A command that fails stops the split (its own
// message is the diagnostic), as Courier's does; the status is still 0.
//
// As in Courier, the header options apply to the first message's header
// only (after its From_ line), and the last line of each message loses its
// line ending (the blank line that separates mbox messages).
func split(ctx context.Context, cfg Config, o *options, lr *lineReader, e env, stdout, stderr io.Writer) error {
	var first []byte
	for {
		line, ok, err := lr.line(maxHeaderLine)
		if err != nil {
			return err
		}
		if !ok {
			return nil
		}
		if len(line) > 0 {
			first = line
			break
		}
	}
	counter := newFilenoCounter(cfg.Env)
	s := &splitSink{ctx: ctx, cfg: cfg, o: o, counter: counter, stdout: stdout, stderr: stderr}
	if err := s.startMessage(); err != nil {
		return err
	}
	if err := s.writeLine(first, true, true); err != nil {
		return err
	}
	err := newPipeline(o, lr, e).run(s)
	if errors.Is(err, errStop) {
		return nil
	}
	if err != nil {
		s.abort()
		return err
	}
	if _, err := s.finishMessage(); err != nil {
		return err
	}
	return nil
}

// filenoCounter produces FILENO values.
type filenoCounter struct {
	set   bool // false: leave FILENO as inherited
	next  uint64
	width int
}

func newFilenoCounter(environ []string) *filenoCounter {
	c := &filenoCounter{set: true, width: 3}
	for _, kv := range environ {
		v, ok := strings.CutPrefix(kv, "FILENO=")
		if !ok {
			continue
		}
		for i := 0; i < len(v); i++ {
			if v[i] < '0' || v[i] > '9' {
				c.set = false
				return c
			}
		}
		c.width = len(v)
		c.next, _ = strconv.ParseUint(v, 10, 64)
	}
	return c
}

func (c *filenoCounter) environ(base []string) []string {
	if !c.set {
		return base
	}
	out := make([]string, 0, len(base)+1)
	for _, kv := range base {
		if !strings.HasPrefix(kv, "FILENO=") {
			out = append(out, kv)
		}
	}
	v := strconv.FormatUint(c.next, 10)
	if c.next == 0 && c.width == 0 {
		v = ""
	}
	for len(v) < c.width {
		v = "0" + v
	}
	c.next++
	return append(out, "FILENO="+v)
}

// splitSink pipes each message into its own command. The ending of the
// last line written is held back until the next line shows whether a new
// message starts.
type splitSink struct {
	ctx     context.Context
	cfg     Config
	o       *options
	counter *filenoCounter
	stdout  io.Writer
	stderr  io.Writer

	cmd        *exec.Cmd
	pipe       io.WriteCloser
	heldEnding bool
}

func (s *splitSink) startMessage() error {
	cmd := exec.CommandContext(s.ctx, s.o.command[0], s.o.command[1:]...)
	cmd.Env = s.counter.environ(s.cfg.Env)
	cmd.Stdout, cmd.Stderr = s.stdout, s.stderr
	pipe, err := cmd.StdinPipe()
	if err != nil {
		return fmt.Errorf("pipe: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("exec %s: %w", s.o.command[0], err)
	}
	s.cmd, s.pipe, s.heldEnding = cmd, pipe, false
	return nil
}

// finishMessage closes the command's input and waits; ok is false when the
// command failed.
func (s *splitSink) finishMessage() (ok bool, err error) {
	if s.cmd == nil {
		return true, nil
	}
	s.pipe.Close()
	werr := s.cmd.Wait()
	s.cmd = nil
	var exitErr *exec.ExitError
	if errors.As(werr, &exitErr) {
		return false, nil
	}
	if werr != nil {
		return false, fmt.Errorf("wait: %w", werr)
	}
	return true, nil
}

func (s *splitSink) abort() {
	if s.cmd != nil {
		s.pipe.Close()
		_ = s.cmd.Wait()
		s.cmd = nil
	}
}

// writeLine writes a piece of a line, starting a new message when a line
// starts with "From ".
func (s *splitSink) writeLine(piece []byte, start, end bool) error {
	if start && s.cmd != nil && s.heldEnding && bytes.HasPrefix(piece, []byte("From ")) {
		ok, err := s.finishMessage()
		if err != nil {
			return err
		}
		if !ok {
			return errStop
		}
		if err := s.startMessage(); err != nil {
			return err
		}
	}
	if s.heldEnding {
		if _, err := io.WriteString(s.pipe, lineEnding(s.o)); err != nil {
			s.abort()
			return fmt.Errorf("write() failed: %w", err)
		}
		s.heldEnding = false
	}
	if _, err := s.pipe.Write(piece); err != nil {
		s.abort()
		return fmt.Errorf("write() failed: %w", err)
	}
	s.heldEnding = end
	return nil
}

func (s *splitSink) header(line string) error {
	if s.o.catenate {
		line = catenate(line)
	}
	return s.writeLine([]byte(line), true, true)
}

func (s *splitSink) endOfHeader() error { return s.writeLine(nil, true, true) }

func (s *splitSink) body(piece []byte, start, end bool) error {
	return s.writeLine(piece, start, end)
}
