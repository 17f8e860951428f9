package reformime

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"postern/internal/strerror"
	"strconv"
	"strings"
	"syscall"
)

// maxNameLen is how many bytes of a suggested file name Courier keeps (the
// end of it, so the extension survives).
const maxNameLen = 32

// suggestedName returns the section's file name from Content-Disposition's
// filename or Content-Type's name, with every byte but letters, digits,
// ".", "-" and "_" turned into "_" (so no path can be named), or "".
func (p *Part) suggestedName() string {
	name := ""
	if _, params := p.disposition(); true {
		for _, pr := range params {
			if pr.Name == "filename" {
				name = pr.Value
			}
		}
	}
	if name == "" {
		name, _ = p.Param("name")
	}
	if name == "" {
		return ""
	}
	b := []byte(name)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			b[i] = '_'
		}
	}
	if len(b) > maxNameLen {
		b = b[len(b)-maxNameLen:]
	}
	return string(b)
}

// defaultName is the suggested name, or a unique one as Courier makes it
// (time.pid-counter.host).
func (r *runner) defaultName(p *Part) string {
	if n := p.suggestedName(); n != "" {
		return n
	}
	n := fmt.Sprintf("%d.%d-%d.%s", r.cfg.Now().Unix(), r.cfg.PID, r.seq, r.cfg.Hostname)
	r.seq++
	return n
}

func (p *Part) compound() bool { return p.Boundary != "" || p.rfc822 || len(p.Children) > 0 }

// extractSection is -x and -X for one section.
func (r *runner) extractSection(p *Part, id string) int {
	if p.compound() {
		if r.opt.sections == "" {
			return 0 // every section: the leaves are extracted
		}
		r.out.Flush()
		fmt.Fprintf(r.stderr, "reformime: MIME section %s is a compound section.\n", id)
		return 1
	}
	data := decodeBody(p.CTE, r.body(p))
	if r.opt.extract == 2 {
		return r.pipeSection(p, data)
	}
	if r.opt.prefixSet {
		return r.saveSection(r.opt.prefix, r.defaultName(p), data)
	}
	return r.askAndSave(p, data)
}

// saveSection writes data to prefix+name, never over an existing file:
// when the name is taken, prefix+"N-"+name is tried with the next N.
func (r *runner) saveSection(prefix, name string, data []byte) int {
	fn := prefix + name
	for tries := 0; tries < 10000; tries++ {
		path := fn
		if r.cfg.Dir != "" && !filepath.IsAbs(fn) {
			path = filepath.Join(r.cfg.Dir, fn)
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, os.ErrExist) {
			// As Courier does: said on standard output, and the next
			// name from one counter for the whole run.
			fmt.Fprintf(r.out, "%s exists.\n", fn)
			r.taken++
			fn = prefix + strconv.Itoa(r.taken) + "-" + name
			continue
		}
		if err != nil {
			r.out.Flush()
			fmt.Fprintf(r.stderr, "%s: %v\n", fn, strerror.Text(err))
			return 1
		}
		_, err = f.Write(data)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			r.out.Flush()
			fmt.Fprintf(r.stderr, "%s: %v\n", fn, strerror.Text(err))
			return 1
		}
		return 0
	}
	return 1
}

// askAndSave is interactive -x: the content type is shown, a "y" answer
// extracts, and the file name is asked for, with the name -xPREFIX would
// use as the default (as Courier's reformime does; its manual says
// attachmentN.dat).
func (r *runner) askAndSave(p *Part, data []byte) int {
	tty := r.cfg.TTY
	if tty == nil {
		f, err := os.Open("/dev/tty")
		if err != nil {
			fmt.Fprintf(r.stderr, "reformime: /dev/tty: %v\n", strerror.Text(err))
			return 1
		}
		defer f.Close()
		tty = f
		r.cfg.TTY = f
	}
	br, ok := tty.(*bufio.Reader)
	if !ok {
		br = bufio.NewReader(tty)
		r.cfg.TTY = br
	}
	def := r.defaultName(p)
	fmt.Fprintf(r.out, "Extract %s? ", p.ContentType)
	r.out.Flush()
	ans, err := br.ReadString('\n')
	if err != nil && ans == "" {
		return 0
	}
	ans = strings.TrimSpace(ans)
	if ans == "" || (ans[0] != 'y' && ans[0] != 'Y') {
		return 0
	}
	fmt.Fprintf(r.out, "Filename [%s]: ", def)
	r.out.Flush()
	name, _ := br.ReadString('\n')
	name = strings.TrimRight(name, "\r\n")
	if name == "" {
		name = def
	}
	return r.saveSection("", name, data)
}

// pipeSection runs the -X program with the section on its standard input
// and CONTENT_TYPE and FILENAME set. As Courier does, the program is run
// by its path (no $PATH search), and a failure ends the run with 20 plus
// the program's exit status.
func (r *runner) pipeSection(p *Part, data []byte) int {
	r.out.Flush()
	prog := r.opt.program
	cmd := &exec.Cmd{Path: prog[0], Args: prog}
	if !strings.Contains(prog[0], "/") {
		cmd.Path = "./" + prog[0]
	}
	if r.cfg.Dir != "" {
		cmd.Dir = r.cfg.Dir
	}
	cmd.Env = append(withoutVars(r.cfg.Env, "CONTENT_TYPE", "FILENAME"),
		"CONTENT_TYPE="+p.ContentType, "FILENAME="+r.defaultName(p))
	cmd.Stdin = strings.NewReader(string(data))
	cmd.Stdout = r.rawStdout()
	cmd.Stderr = r.stderr
	status := 0
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee):
			status = ee.ExitCode()
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				status = 128 + int(ws.Signal())
			}
		default:
			// Courier's child reports the failed exec and exits 1.
			fmt.Fprintf(r.stderr, "exec: %s\n", strerror.Text(err))
			status = 1
		}
	}
	if status != 0 {
		fmt.Fprintf(r.stderr, "reformime: %s exited with status %d.\n", prog[0], status)
		return 20 + status
	}
	return 0
}

// rawStdout is where child programs write: the run's stdout, flushed.
func (r *runner) rawStdout() io.Writer {
	r.out.Flush()
	return flushWriter{r.out}
}

type flushWriter struct{ w *bufio.Writer }

func (f flushWriter) Write(b []byte) (int, error) {
	n, err := f.w.Write(b)
	if err == nil {
		err = f.w.Flush()
	}
	return n, err
}

func withoutVars(env []string, names ...string) []string {
	var out []string
next:
	for _, kv := range env {
		for _, n := range names {
			if strings.HasPrefix(kv, n+"=") {
				continue next
			}
		}
		out = append(out, kv)
	}
	return out
}
