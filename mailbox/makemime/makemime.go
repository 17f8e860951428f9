// Package makemime is Courier's makemime: it builds a MIME section from a
// file (choosing and applying a transfer encoding), a multipart collection
// from a section, and joins a section to a collection. Options come from
// the command line or, one per line, from an @file; an input file may be
// a nested makemime between "(" and ")", run in-process here.
package makemime

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"postern/internal/strerror"
	"strconv"
	"strings"
	"time"
)

// Config is what Run takes from the process; tests set it.
type Config struct {
	Now func() time.Time // for boundaries
	PID int
	Dir string // directory relative file names are read and written in ("" is the current one)
	// Confined refuses file descriptors and names outside Dir (for the
	// fuzz test, which must not touch anything else).
	Confined bool
}

// MakemimeMain runs makemime with args (without the program name) and
// returns its exit status.
func MakemimeMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return Run(context.Background(), Config{Now: time.Now, PID: os.Getpid()}, args, stdin, stdout, stderr)
}

// maxNesting bounds "(" ... ")" depth.
const maxNesting = 100

// job is one makemime invocation: what to build and from where.
type job struct {
	mode      byte // 'c', 'm' or 'j'
	typ       string
	encoding  string
	output    string
	charset   string
	name      string
	headers   []string
	inputs    []input // one for -c and -m, two for -j
	hasOutput bool
}

// input is a file name, or a nested job.
type input struct {
	file string
	sub  *job
}

// errUsage means the arguments are wrong: Courier prints its usage and
// exits 0.
var errUsage = errors.New("usage")

// Run is MakemimeMain with its environment passed in.
func Run(ctx context.Context, cfg Config, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	m := &maker{cfg: cfg, stdin: bufio.NewReader(stdin), stderr: stderr}
	// An @file replaces the whole command line; what follows it is
	// ignored, as Courier does.
	if len(args) >= 1 && strings.HasPrefix(args[0], "@") {
		var err error
		args, err = m.readArgFile(args[0][1:])
		if err != nil {
			fmt.Fprintf(stderr, "%s\n", err)
			return 1
		}
	}
	j, rest, err := parseJob(args, 0)
	if err == nil && len(rest) > 0 {
		err = errUsage
	}
	if err != nil {
		fmt.Fprint(stderr, usageText)
		return 0
	}
	out, err := m.build(j)
	if err != nil {
		fmt.Fprintf(stderr, "%s\n", err)
		return 1
	}
	if err := m.write(j.output, out, stdout); err != nil {
		fmt.Fprintf(stderr, "%s\n", err)
		return 1
	}
	return 0
}

const usageText = `Usage:
  makemime -c TYPE [-o FILE] [-e ENCODING] [-C CHARSET] [-N NAME] [-a "Header: value"]... FILE
  makemime -m [TYPE] [-o FILE] [-e 7bit|8bit] [-a "Header: value"]... FILE
  makemime -j [-o FILE] FILE1 FILE2
  makemime @ARGFILE

  FILE is a file name, "-" (standard input), "&N" (file descriptor N),
  or "(" OPTIONS ")" (the output of a nested makemime).
  ENCODING is 7bit, 8bit, quoted-printable or base64; without -e the
  encoding is chosen from the content, and -c auto picks text/plain or
  application/octet-stream to go with it.
`

// maker holds one run's streams.
type maker struct {
	cfg    Config
	stdin  *bufio.Reader
	stderr io.Writer
	seq    int // boundary counter
}

// readArgFile reads options one per line from name ("-" or "&N" for a
// descriptor): leading blanks are dropped, blank lines and "#" lines
// skipped, and a line "-" ends the options (the rest of the stream can
// then be an input).
func (m *maker) readArgFile(name string) ([]string, error) {
	var r *bufio.Reader
	switch {
	case name == "-" || name == "&0":
		r = m.stdin
	case strings.HasPrefix(name, "&"):
		f, err := m.openFD(name[1:])
		if err != nil {
			return nil, err
		}
		r = bufio.NewReader(f)
	default:
		f, err := os.Open(m.path(name))
		if err != nil {
			return nil, fmt.Errorf("%s: %s", name, strerror.Text(err))
		}
		defer f.Close()
		r = bufio.NewReader(f)
	}
	var args []string
	for {
		line, err := r.ReadString('\n')
		if line == "" && err != nil {
			break
		}
		line = strings.TrimRight(line, "\n")
		line = strings.TrimLeft(line, " \t")
		if line == "" || line[0] == '#' {
			if err != nil {
				break
			}
			continue
		}
		if line == "-" {
			break
		}
		args = append(args, line)
		if err != nil {
			break
		}
	}
	return args, nil
}

// parseJob reads one job's options from args, up to its input file(s); a
// nested job runs from "(" to ")". It returns what follows.
func parseJob(args []string, depth int) (*job, []string, error) {
	if depth > maxNesting {
		return nil, nil, errUsage
	}
	j := &job{}
	value := func(opt string) (string, error) {
		if len(opt) > 2 {
			return opt[2:], nil
		}
		if len(args) == 0 {
			return "", errUsage
		}
		v := args[0]
		args = args[1:]
		return v, nil
	}
	readInput := func() error {
		if len(args) == 0 {
			return errUsage
		}
		a := args[0]
		args = args[1:]
		if a != "(" {
			j.inputs = append(j.inputs, input{file: a})
			return nil
		}
		sub, rest, err := parseJob(args, depth+1)
		if err != nil {
			return err
		}
		if len(rest) == 0 || rest[0] != ")" {
			return errUsage
		}
		args = rest[1:]
		j.inputs = append(j.inputs, input{sub: sub})
		return nil
	}
	for len(args) > 0 {
		a := args[0]
		if a == ")" {
			break
		}
		if len(a) < 2 || a[0] != '-' {
			// The input file, after the options.
			if j.mode == 0 {
				return nil, nil, errUsage
			}
			if err := readInput(); err != nil {
				return nil, nil, err
			}
			if len(j.inputs) == j.want() {
				break
			}
			continue
		}
		args = args[1:]
		if j.mode == 0 && a[1] != 'c' && a[1] != 'm' && a[1] != 'j' {
			return nil, nil, errUsage // -c, -m or -j comes first
		}
		var err error
		var v string
		switch a[1] {
		case 'c':
			if j.mode != 0 {
				return nil, nil, errUsage
			}
			j.mode = 'c'
			j.typ, err = value(a)
		case 'm':
			if j.mode != 0 {
				return nil, nil, errUsage
			}
			j.mode = 'm'
			j.typ, err = value(a)
		case 'j':
			if j.mode != 0 {
				return nil, nil, errUsage
			}
			j.mode = 'j'
			if len(a) > 2 {
				j.inputs = append(j.inputs, input{file: a[2:]})
			} else {
				err = readInput()
			}
		case 'e':
			v, err = value(a)
			switch strings.ToLower(v) {
			case "7bit", "8bit", "quoted-printable", "base64":
				j.encoding = strings.ToLower(v)
			default:
				err = errUsage
			}
		case 'o':
			j.output, err = value(a)
			j.hasOutput = true
		case 'a':
			v, err = value(a)
			j.headers = append(j.headers, v)
		case 'C':
			j.charset, err = value(a)
		case 'N':
			j.name, err = value(a)
		default:
			err = errUsage
		}
		if err != nil {
			return nil, nil, err
		}
	}
	if j.mode == 0 || len(j.inputs) != j.want() {
		return nil, nil, errUsage
	}
	return j, args, nil
}

func (j *job) want() int {
	if j.mode == 'j' {
		return 2
	}
	return 1
}

// path resolves a file name against the configured directory.
func (m *maker) path(name string) string {
	if m.cfg.Confined && (strings.Contains(name, "/") || strings.HasPrefix(name, ".")) {
		return m.cfg.Dir + "/refused-name"
	}
	if m.cfg.Dir != "" && !strings.HasPrefix(name, "/") {
		return m.cfg.Dir + "/" + name
	}
	return name
}

func (m *maker) openFD(n string) (*os.File, error) {
	if m.cfg.Confined {
		return nil, fmt.Errorf("&%s: Bad file descriptor", n)
	}
	fd, err := strconv.Atoi(n)
	if err != nil || fd < 0 {
		return nil, fmt.Errorf("&%s: Bad file descriptor", n)
	}
	f := os.NewFile(uintptr(fd), "&"+n)
	if f == nil {
		return nil, fmt.Errorf("&%s: Bad file descriptor", n)
	}
	return f, nil
}

// read returns an input's bytes.
func (m *maker) read(in input) ([]byte, error) {
	if in.sub != nil {
		out, err := m.build(in.sub)
		if err != nil || in.sub.output == "" {
			return out, err
		}
		// A nested job with -o writes there; what reads it gets nothing.
		return nil, m.write(in.sub.output, out, io.Discard)
	}
	switch {
	case in.file == "-" || in.file == "&0":
		return io.ReadAll(m.stdin)
	case strings.HasPrefix(in.file, "&"):
		f, err := m.openFD(in.file[1:])
		if err != nil {
			return nil, err
		}
		b, err := io.ReadAll(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %s", in.file, strerror.Text(err))
		}
		return b, nil
	}
	b, err := os.ReadFile(m.path(in.file))
	if err != nil {
		return nil, fmt.Errorf("%s: %s", in.file, strerror.Text(err))
	}
	return b, nil
}

// write puts the result where -o says.
func (m *maker) write(name string, out []byte, stdout io.Writer) error {
	switch {
	case name == "" || name == "-":
		_, err := stdout.Write(out)
		return err
	case strings.HasPrefix(name, "&"):
		f, err := m.openFD(name[1:])
		if err != nil {
			return err
		}
		_, err = f.Write(out)
		return err
	}
	if err := os.WriteFile(m.path(name), out, 0o644); err != nil {
		return fmt.Errorf("%s: %s", name, strerror.Text(err))
	}
	return nil
}

func (m *maker) build(j *job) ([]byte, error) {
	switch j.mode {
	case 'c':
		data, err := m.read(j.inputs[0])
		if err != nil {
			return nil, err
		}
		return m.section(j, data), nil
	case 'm':
		data, err := m.read(j.inputs[0])
		if err != nil {
			return nil, err
		}
		return m.multipart(j, data), nil
	default:
		coll, err := m.read(j.inputs[0])
		if err != nil {
			return nil, err
		}
		sec, err := m.read(j.inputs[1])
		if err != nil {
			return nil, err
		}
		return m.join(coll, sec), nil
	}
}

// boundary makes a delimiter no content line can start with by chance.
func (m *maker) boundary() string {
	m.seq++
	return fmt.Sprintf("=_%d_%d_%d", m.seq, m.cfg.Now().Unix(), m.cfg.PID)
}

const preamble = "This is a MIME-formatted message.  If you see this text it means that your\nE-mail software does not support MIME-formatted messages.\n"

// section is -c: the headers, the Content-Type with charset and name,
// the transfer encoding, and the encoded content.
func (m *maker) section(j *job, data []byte) []byte {
	enc := j.encoding
	if enc == "" {
		enc = chooseEncoding(data)
	}
	typ := j.typ
	if typ == "auto" && j.encoding == "" {
		typ = "text/plain"
		if enc == "base64" {
			typ = "application/octet-stream"
		}
	}
	var b bytes.Buffer
	for _, h := range j.headers {
		b.WriteString(h)
		b.WriteByte('\n')
	}
	b.WriteString("Content-Type: " + typ)
	if j.charset != "" {
		b.WriteString(`; charset="` + j.charset + `"`)
	}
	if j.name != "" {
		b.WriteString(";\n  ")
		b.WriteString(nameParam(j.name, j.charset))
	}
	b.WriteString("\nContent-Transfer-Encoding: " + enc + "\n\n")
	switch enc {
	case "base64":
		b.Write(encodeBase64(data))
	case "quoted-printable":
		b.Write(EncodeQP(data))
	default:
		b.Write(data)
	}
	return b.Bytes()
}

// multipart is -m: a collection holding one section.
func (m *maker) multipart(j *job, data []byte) []byte {
	enc := j.encoding
	if enc == "" {
		enc = "8bit"
	}
	bnd := m.boundary()
	var b bytes.Buffer
	for _, h := range j.headers {
		b.WriteString(h)
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "Content-Type: %s; boundary=\"%s\"\nContent-Transfer-Encoding: %s\n\n%s\n--%s\n", j.typ, bnd, enc, preamble, bnd)
	b.Write(data)
	fmt.Fprintf(&b, "\n--%s--\n", bnd)
	return b.Bytes()
}

// join is -j: the collection's sections, under a new delimiter, then the
// new one. The collection's header is kept but for its Content-Type,
// which gets the new boundary; its epilogue is dropped.
func (m *maker) join(coll, sec []byte) []byte {
	bnd := m.boundary()
	var b bytes.Buffer
	lines := splitLines(coll)
	old := ""
	i := 0
	for ; i < len(lines); i++ {
		line := lines[i]
		if isBlank(line) {
			break
		}
		// A field with its continuation lines.
		field := line
		for i+1 < len(lines) && len(lines[i+1]) > 0 && (lines[i+1][0] == ' ' || lines[i+1][0] == '\t') {
			i++
			field += lines[i]
		}
		name, value, _ := strings.Cut(field, ":")
		if strings.EqualFold(strings.TrimSpace(name), "content-type") {
			typ, _, _ := strings.Cut(value, ";")
			old = boundaryParam(value)
			fmt.Fprintf(&b, "Content-Type: %s; boundary=\"%s\"\n", strings.TrimSpace(typ), bnd)
			continue
		}
		b.WriteString(field)
	}
	for ; i < len(lines); i++ {
		line := lines[i]
		if old != "" && strings.HasPrefix(line, "--"+old) {
			rest := strings.TrimRight(line[2+len(old):], "\r\n")
			if strings.HasPrefix(rest, "--") {
				break // the end: the epilogue goes
			}
			fmt.Fprintf(&b, "--%s\n", bnd)
			continue
		}
		b.WriteString(line)
	}
	if b.Len() > 0 && b.Bytes()[b.Len()-1] != '\n' {
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "--%s\n", bnd)
	b.Write(sec)
	fmt.Fprintf(&b, "\n--%s--\n", bnd)
	return b.Bytes()
}

func isBlank(line string) bool { return line == "\n" || line == "\r\n" || line == "" }

// splitLines splits b into lines that keep their newlines.
func splitLines(b []byte) []string {
	var lines []string
	s := string(b)
	for s != "" {
		i := strings.IndexByte(s, '\n')
		if i < 0 {
			lines = append(lines, s)
			break
		}
		lines = append(lines, s[:i+1])
		s = s[i+1:]
	}
	return lines
}

// boundaryParam finds boundary= in a Content-Type value.
func boundaryParam(v string) string {
	for _, p := range strings.Split(v, ";")[1:] {
		name, val, ok := strings.Cut(p, "=")
		if !ok || !strings.EqualFold(strings.TrimSpace(name), "boundary") {
			continue
		}
		val = strings.TrimSpace(val)
		return strings.Trim(val, `"`)
	}
	return ""
}
