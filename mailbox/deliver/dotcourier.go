package deliver

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"postern/policy/aliases"
)

// Limits on instruction files, which users write and programs ("||") print.
const (
	maxInstructionFile  = 64 << 10 // bytes of one .courier file or "||" output
	maxInstructionLine  = 4096
	maxInstructions     = 200
	maxDynamicDepth     = 4 // "||" output containing "||" lines
	maxProgramOutputLog = 512
)

// InstructionKind is the kind of one line of a .courier or .qmail file.
type InstructionKind int

const (
	InstrMailbox InstructionKind = iota // "./Maildir/", "/var/mail/x", "./mbox"
	InstrProgram                        // "| command"
	InstrDynamic                        // "|| command": its output is more instructions
	InstrForward                        // "&addr", "addr", "a, b"
)

// Instruction is one delivery instruction (dot-courier(5)).
type Instruction struct {
	Kind  InstructionKind
	Value string   // path or command
	Addrs []string // InstrForward
	Line  int
}

// ErrBadInstructions is wrapped by parse errors in instruction files.
var ErrBadInstructions = errors.New("deliver: bad delivery instructions")

// ParseInstructions reads delivery instructions as dot-courier(5) and
// dot-qmail(5) write them, one per line: blank lines and "#" comments are
// skipped; "|" starts a program and "||" a program whose standard output
// is more instructions; a line starting with "/" or "." is a mailbox
// (a maildir when it ends in "/" or names a directory, else an mbox file);
// anything else is a list of forwarding addresses, separated by commas or
// blanks, each optionally preceded by "&", the list optionally by "!".
func ParseInstructions(src []byte) ([]Instruction, error) {
	if len(src) > maxInstructionFile {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrBadInstructions, maxInstructionFile)
	}
	var out []Instruction
	for n, line := range strings.Split(string(src), "\n") {
		lineNo := n + 1
		if len(line) > maxInstructionLine {
			return nil, fmt.Errorf("%w: line %d longer than %d bytes", ErrBadInstructions, lineNo, maxInstructionLine)
		}
		line = strings.TrimSpace(strings.TrimSuffix(line, "\r"))
		if line == "" || line[0] == '#' {
			continue
		}
		if strings.ContainsAny(line, "\x00") {
			return nil, fmt.Errorf("%w: line %d: NUL byte", ErrBadInstructions, lineNo)
		}
		var in Instruction
		switch {
		case strings.HasPrefix(line, "||"):
			in = Instruction{Kind: InstrDynamic, Value: strings.TrimSpace(line[2:])}
		case line[0] == '|':
			in = Instruction{Kind: InstrProgram, Value: strings.TrimSpace(line[1:])}
		case line[0] == '/' || line[0] == '.':
			in = Instruction{Kind: InstrMailbox, Value: line}
		default:
			// dot-courier(5): a "!" (or "&") before the list is a legacy
			// mark and ignored; Courier's dotforward prints "!a, b".
			line = strings.TrimPrefix(line, "!")
			var addrs []string
			for _, a := range strings.FieldsFunc(line, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
				a = strings.TrimPrefix(a, "&")
				if a == "" {
					continue
				}
				if err := checkAddress(a); err != nil {
					return nil, fmt.Errorf("%w: line %d: %w", ErrBadInstructions, lineNo, err)
				}
				addrs = append(addrs, a)
			}
			if len(addrs) == 0 {
				continue
			}
			in = Instruction{Kind: InstrForward, Addrs: addrs, Value: strings.Join(addrs, ", ")}
		}
		if (in.Kind == InstrProgram || in.Kind == InstrDynamic) && in.Value == "" {
			return nil, fmt.Errorf("%w: line %d: empty command", ErrBadInstructions, lineNo)
		}
		in.Line = lineNo
		out = append(out, in)
		if len(out) > maxInstructions {
			return nil, fmt.Errorf("%w: more than %d instructions", ErrBadInstructions, maxInstructions)
		}
	}
	return out, nil
}

// instructionFile is the file that applies to a message, if any.
type instructionFile struct {
	Path string
	// Default is the part of the extension a "-default" file matched
	// (dot-courier(5)'s $DEFAULT): "bar" for .courier-foo-default and
	// extension "foo-bar".
	Default string
	Empty   bool // a zero-length file: default delivery
}

// findInstructionFile looks in home for the instruction file for ext, the
// most specific name first (.courier-foo-bar, .courier-foo-default,
// .courier-default), each name as .courier and then as .qmail. It costs
// one stat per name tried. An extension with no file of its own falls back
// to the files for no extension (.courier, .qmail).
func findInstructionFile(home, ext string) (instructionFile, bool, error) {
	if home == "" {
		return instructionFile{}, false, nil
	}
	try := func(names []string, ext string) (instructionFile, bool, error) {
		for _, name := range names {
			for _, prefix := range []string{".courier", ".qmail"} {
				p := filepath.Join(home, prefix+strings.TrimPrefix(name, ".courier"))
				st, err := os.Stat(p)
				if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
					continue
				}
				if err != nil {
					return instructionFile{}, false, fmt.Errorf("instructions %s: %w", p, err)
				}
				if !st.Mode().IsRegular() {
					continue
				}
				f := instructionFile{Path: p, Empty: st.Size() == 0}
				if strings.HasSuffix(name, "-default") {
					f.Default = defaultPart(name, ext)
				}
				return f, true, nil
			}
		}
		return instructionFile{}, false, nil
	}
	if ext != "" {
		if f, ok, err := try(aliases.DotCourierNames(ext), ext); ok || err != nil {
			return f, ok, err
		}
	}
	return try(aliases.DotCourierNames(""), "")
}

// defaultPart returns what "-default" in name stood for in ext:
// ".courier-foo-default" with "foo-bar-baz" is "bar-baz"; ".courier-default"
// is the whole extension.
func defaultPart(name, ext string) string {
	fixed := strings.TrimSuffix(strings.TrimPrefix(name, ".courier"), "default")
	fixed = strings.TrimPrefix(fixed, "-")
	if len(fixed) > len(ext) {
		return ""
	}
	return ext[len(fixed):]
}

// readBounded reads at most max bytes of a file, refusing bigger ones.
func readBounded(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, max)
	}
	return b, nil
}

// tail returns the last line of a program's output for a log or a bounce.
func tail(b []byte) string {
	b = bytes.TrimSpace(b)
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		b = b[i+1:]
	}
	if len(b) > maxProgramOutputLog {
		b = b[:maxProgramOutputLog]
	}
	return string(bytes.ToValidUTF8(b, []byte("?")))
}
