package reformail

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// Config is what ReformailMain takes from the process; tests set it.
type Config struct {
	Env      []string         // environment for -s commands (FILENO is set in it)
	Now      func() time.Time // clock for -f1's From_ line and generated Message-IDs
	Hostname string           // right-hand side of generated Message-IDs
	PID      int
}

// ReformailMain runs reformail with args (without the program name) and
// returns its exit status: 0 on success, 1 for bad arguments or I/O errors,
// and for -D: 0 when the Message-ID was seen before, 1 when not, 75 when the
// cache file cannot be used.
func ReformailMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	host, _ := os.Hostname()
	return Run(context.Background(), Config{Env: os.Environ(), Now: time.Now, Hostname: host, PID: os.Getpid()}, args, stdin, stdout, stderr)
}

// Run is ReformailMain with its environment passed in.
func Run(ctx context.Context, cfg Config, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Hostname == "" {
		cfg.Hostname = "localhost"
	}
	o, err := parseArgs(args, func() string { return newMessageID(cfg) })
	if err != nil {
		fmt.Fprintf(stderr, "reformail: %v\n", err)
		return 1
	}
	e := env{now: cfg.Now, hostname: cfg.Hostname}
	lr := newLineReader(stdin)
	switch o.mode {
	case modeCache:
		dup, err := checkDuplicate(o, lr, e)
		if err != nil {
			fmt.Fprintf(stderr, "reformail: %v\n", err)
			return 75
		}
		if dup {
			return 0
		}
		return 1
	case modeSplit:
		if err := split(ctx, cfg, o, lr, e, stdout, stderr); err != nil {
			fmt.Fprintf(stderr, "reformail: %v\n", err)
			return 1
		}
		return 0
	}
	w := bufio.NewWriterSize(stdout, 64<<10)
	var s sink
	if o.mode == modeExtract {
		s = &extractSink{o: o, w: w}
	} else {
		s = &copySink{o: o, w: w}
	}
	err = newPipeline(o, lr, e).run(s)
	if errors.Is(err, errStop) {
		// Read the rest so that a writer into our pipe does not see EPIPE.
		_, err = io.Copy(io.Discard, lr.br)
	}
	if ferr := w.Flush(); err == nil && ferr != nil {
		err = fmt.Errorf("error writing output: %w", ferr)
	}
	if err != nil {
		fmt.Fprintf(stderr, "reformail: %v\n", err)
		return 1
	}
	return 0
}

// newMessageID makes a value for an empty -a/-A Message-ID:, in Courier's
// shape <time.unique.reformail@host>, with randomness so that two runs in
// one second from one process ID differ.
func newMessageID(cfg Config) string {
	var r [4]byte
	_, _ = rand.Read(r[:])
	unique := uint64(cfg.PID)<<32 | uint64(binary.BigEndian.Uint32(r[:]))
	return fmt.Sprintf("<%016X.%016X.reformail@%s>", cfg.Now().Unix(), unique, cfg.Hostname)
}

func lineEnding(o *options) string {
	if o.crlf {
		return "\r\n"
	}
	return "\n"
}

// copySink writes the reformatted message.
type copySink struct {
	o *options
	w *bufio.Writer
}

func (c *copySink) header(line string) error {
	if c.o.catenate {
		line = catenate(line)
	}
	// Like Courier, -d1 changes the ending of the field, not the breaks
	// inside a folded field.
	c.w.WriteString(line)
	_, err := c.w.WriteString(lineEnding(c.o))
	return err
}

func (c *copySink) endOfHeader() error {
	_, err := c.w.WriteString(lineEnding(c.o))
	return err
}

func (c *copySink) body(piece []byte, start, end bool) error {
	_, err := c.w.Write(piece)
	if end && err == nil {
		_, err = c.w.WriteString(lineEnding(c.o))
	}
	return err
}

// extractSink writes the fields chosen by -x (value only) and -X (whole
// field), unfolded, in the order they appear.
type extractSink struct {
	o *options
	w *bufio.Writer
}

func (x *extractSink) header(line string) error {
	line = catenate(line)
	key := fieldKey(line)
	switch {
	case findField(x.o.extract, key) >= 0:
		value := strings.TrimLeft(line[len(key):], " \t\v\f\r")
		x.w.WriteString(value)
	case findField(x.o.extractX, key) >= 0:
		x.w.WriteString(line)
	default:
		return nil
	}
	_, err := x.w.WriteString(lineEnding(x.o))
	return err
}

func (x *extractSink) endOfHeader() error { return errStop }

func (x *extractSink) body([]byte, bool, bool) error { return errStop }
