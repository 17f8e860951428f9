// Package dotforward reads sendmail's $HOME/.forward and turns it into
// dot-courier(5) delivery instructions, as Courier's dotforward(1) does, so
// that "|| dotforward" in a .courier file honours the forward files users
// brought from sendmail.
//
// A .forward file holds, per line, a comma-separated list of entries: e-mail
// addresses (a leading backslash, sendmail's "do not alias again" mark, is
// dropped), "|command" (a program), "/path" or "./path" (a mailbox), each
// optionally in double quotes, and ":include: FILE" lines. Lines starting
// with "#" are comments (sendmail). Parse is pure: includes are read
// through a function the caller gives.
//
// MakePlan then decides, from the recipient's own address (Courier's DTLINE)
// and the addresses the message was already delivered to (its Delivered-To
// header fields), what to print and how to exit: an address that is the
// recipient's own means "also deliver here" (exit 0, so that the next
// .courier lines run); an address the message already went to is dropped,
// which breaks loops between users who forward to each other.
package dotforward

import (
	"errors"
	"fmt"
	"strings"
)

// Limits on what a .forward file may hold.
const (
	MaxFileSize   = 64 << 10 // bytes of one .forward or :include: file
	MaxLineLength = 4096
	MaxEntries    = 200
	// MaxIncludeDepth is how deep :include: files may nest; Courier's
	// dotforward refuses more than ten levels too.
	MaxIncludeDepth = 10
)

// Kind is what one entry of a .forward file asks for.
type Kind int

const (
	Address Kind = iota // forward to an e-mail address
	Program             // pipe the message into a command
	Mailbox             // append to an mbox file or deliver to a maildir
)

func (k Kind) String() string {
	switch k {
	case Address:
		return "address"
	case Program:
		return "program"
	case Mailbox:
		return "mailbox"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Entry is one destination read from a .forward file.
type Entry struct {
	Kind Kind
	// Value is the address (without sendmail's leading backslash), the
	// command (without the "|"), or the path as written.
	Value string
	File  string // the file it came from (".forward", or an :include: path)
	Line  int    // its line in that file
	// Group numbers the source line: the addresses of one line become one
	// forwarding instruction, as Courier prints them.
	Group int
}

// ErrSyntax is wrapped by every parse error.
var ErrSyntax = errors.New("dotforward: bad .forward")

// ErrInclude is wrapped, with ErrSyntax, by errors about :include: files
// (one that cannot be read, or nesting too deep), which Courier's dotforward
// treats as permanent.
var ErrInclude = errors.New("dotforward: :include:")

// includeError is a parse error that is also ErrInclude.
type includeError struct{ err error }

func (e includeError) Error() string   { return e.err.Error() }
func (e includeError) Unwrap() []error { return []error{e.err, ErrInclude} }

// IncludeFunc reads the file an ":include:" line names.
type IncludeFunc func(path string) ([]byte, error)

// Parse reads a .forward file named name. include reads :include: files;
// nil refuses them. A line that cannot be read as sendmail would read it is
// an error naming the file and line; nothing is returned with it.
func Parse(name string, src []byte, include IncludeFunc) ([]Entry, error) {
	p := parser{include: include}
	if err := p.file(name, src, 0); err != nil {
		return nil, err
	}
	return p.out, nil
}

type parser struct {
	include IncludeFunc
	out     []Entry
	group   int
}

func (p *parser) file(name string, src []byte, depth int) error {
	if len(src) > MaxFileSize {
		return fmt.Errorf("%w: %s: larger than %d bytes", ErrSyntax, name, MaxFileSize)
	}
	for n, line := range strings.Split(string(src), "\n") {
		if err := p.line(name, n+1, line, depth); err != nil {
			return err
		}
	}
	return nil
}

func (p *parser) errorf(name string, line int, format string, args ...any) error {
	return fmt.Errorf("%w: %s line %d: %s", ErrSyntax, name, line, fmt.Sprintf(format, args...))
}

func (p *parser) add(e Entry) error {
	if len(p.out) >= MaxEntries {
		return p.errorf(e.File, e.Line, "more than %d destinations", MaxEntries)
	}
	e.Group = p.group
	p.out = append(p.out, e)
	return nil
}

func (p *parser) line(name string, n int, line string, depth int) error {
	if len(line) > MaxLineLength {
		return p.errorf(name, n, "longer than %d bytes", MaxLineLength)
	}
	line = strings.TrimSpace(strings.TrimSuffix(line, "\r"))
	if line == "" || line[0] == '#' {
		return nil
	}
	for _, r := range line {
		// A line break inside an instruction would let a .forward line
		// smuggle a second one into the output.
		if r < 0x20 && r != '\t' || r == 0x7f {
			return p.errorf(name, n, "control character %q", r)
		}
	}
	p.group++
	if rest, ok := strings.CutPrefix(line, ":include:"); ok {
		return p.includeFile(name, n, strings.TrimSpace(rest), depth)
	}
	// A program or a mailbox alone on its line needs no quotes (Courier's
	// dotforward(1)); the whole line is the command or the path.
	switch {
	case strings.HasPrefix(line, "||"):
		return p.errorf(name, n, "\"||\" is not a .forward instruction")
	case line[0] == '|':
		return p.program(name, n, line[1:])
	case line[0] == '/' || strings.HasPrefix(line, "./"):
		return p.add(Entry{Kind: Mailbox, Value: line, File: name, Line: n})
	}
	elems, err := splitList(line)
	if err != nil {
		return p.errorf(name, n, "%v", err)
	}
	for _, el := range elems {
		if err := p.element(name, n, el); err != nil {
			return err
		}
	}
	return nil
}

func (p *parser) includeFile(name string, n int, path string, depth int) error {
	if path == "" {
		return nil // Courier's dotforward skips an empty :include: too
	}
	if p.include == nil {
		return p.errorf(name, n, ":include: is not allowed here")
	}
	if depth >= MaxIncludeDepth {
		return includeError{p.errorf(name, n, ":include: files nested deeper than %d", MaxIncludeDepth)}
	}
	src, err := p.include(path)
	if err != nil {
		return includeError{p.errorf(name, n, ":include: %v", err)}
	}
	return p.file(path, src, depth+1)
}

func (p *parser) program(name string, n int, cmd string) error {
	if strings.TrimSpace(cmd) == "" {
		return p.errorf(name, n, "empty command")
	}
	return p.add(Entry{Kind: Program, Value: cmd, File: name, Line: n})
}

// element classifies one comma-separated item of a line.
func (p *parser) element(name string, n int, el string) error {
	el = strings.TrimSpace(el)
	if el == "" {
		return nil // "a, , b" and a trailing comma are harmless
	}
	text, quoted, err := unquoteWhole(el)
	if err != nil {
		return p.errorf(name, n, "%v", err)
	}
	if quoted || el[0] == '|' || el[0] == '/' {
		switch {
		case strings.HasPrefix(text, "||"):
			return p.errorf(name, n, "\"||\" is not a .forward instruction")
		case strings.HasPrefix(text, "|"):
			return p.program(name, n, text[1:])
		case strings.HasPrefix(text, "/") || strings.HasPrefix(text, "./"):
			return p.add(Entry{Kind: Mailbox, Value: text, File: name, Line: n})
		}
	}
	addr := text // a whole quoted element is the address: "joe@example.org"
	if !quoted {
		if addr, err = extractAddress(el); err != nil {
			return p.errorf(name, n, "%q: %v", el, err)
		}
	}
	// sendmail's "\user" means "deliver to user without aliasing again";
	// loops are prevented here through Delivered-To, so the mark is dropped.
	addr = strings.TrimPrefix(addr, "\\")
	if err := checkAddress(addr); err != nil {
		return p.errorf(name, n, "%q: %v", el, err)
	}
	return p.add(Entry{Kind: Address, Value: addr, File: name, Line: n})
}

// splitList splits a line at the commas that are not inside double quotes,
// angle brackets or parentheses (RFC 5322 3.4), and checks that those are
// balanced.
func splitList(line string) ([]string, error) {
	var out []string
	start, angle, paren := 0, 0, 0
	inQuote := false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '\\':
			i++ // a quoted pair: the next character is literal
		case inQuote:
			if c == '"' {
				inQuote = false
			}
		case c == '"':
			inQuote = true
		case c == '(':
			paren++
		case c == ')':
			if paren == 0 {
				return nil, errors.New("unbalanced \")\"")
			}
			paren--
		case paren > 0:
		case c == '<':
			if angle > 0 {
				return nil, errors.New("nested \"<\"")
			}
			angle++
		case c == '>':
			if angle == 0 {
				return nil, errors.New("unbalanced \">\"")
			}
			angle--
		case c == ',' && angle == 0:
			out = append(out, line[start:i])
			start = i + 1
		}
	}
	switch {
	case inQuote:
		return nil, errors.New("unterminated quoted string")
	case paren > 0:
		return nil, errors.New("unbalanced \"(\"")
	case angle > 0:
		return nil, errors.New("unbalanced \"<\"")
	}
	return append(out, line[start:]), nil
}

// unquoteWhole returns the content of el when el is exactly one quoted
// string ("\"|prog arg\""), with quoted pairs resolved; otherwise el itself.
func unquoteWhole(el string) (string, bool, error) {
	if len(el) < 2 || el[0] != '"' || el[len(el)-1] != '"' {
		return el, false, nil
	}
	var b strings.Builder
	for i := 1; i < len(el)-1; i++ {
		c := el[i]
		switch c {
		case '\\':
			i++
			if i >= len(el)-1 {
				return "", false, errors.New("backslash at the end of a quoted string")
			}
			b.WriteByte(el[i])
		case '"':
			return el, false, nil // more than one quoted string: an address
		default:
			b.WriteByte(c)
		}
	}
	return strings.TrimSpace(b.String()), true, nil
}

// extractAddress takes the address out of one list element: the part in
// angle brackets if any ("Joe <joe@example.org>"), without comments, with
// the blanks around "@" and "." that RFC 5322 allows removed. A quoted local
// part stays quoted.
func extractAddress(el string) (string, error) {
	// Comments first: "joe@example.org (<work>)" has no angle address.
	el = stripComments(el)
	if i := strings.IndexByte(el, '<'); i >= 0 && !insideQuotes(el, i) {
		j := strings.LastIndexByte(el, '>')
		if j < i {
			return "", errors.New("unbalanced \"<\"")
		}
		el = el[i+1 : j]
	}
	el = strings.TrimSpace(el)
	var b strings.Builder
	inQuote := false
	for i := 0; i < len(el); i++ {
		c := el[i]
		switch {
		case c == '\\' && i+1 < len(el):
			b.WriteByte(c)
			b.WriteByte(el[i+1])
			i++
		case inQuote:
			b.WriteByte(c)
			if c == '"' {
				inQuote = false
			}
		case c == '"':
			inQuote = true
			b.WriteByte(c)
		case c == ' ' || c == '\t':
			// Blanks between atoms: only allowed next to "@" or ".",
			// otherwise this is a phrase, not an address.
			next := strings.TrimLeft(el[i:], " \t")
			prev := b.String()[b.Len()-1] // el is trimmed: b is not empty
			if prev != '@' && prev != '.' && next[0] != '@' && next[0] != '.' {
				return "", errors.New("not an address (a name without <address>?)")
			}
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

// stripComments removes RFC 5322 comments, "(...)", outside quoted strings.
func stripComments(s string) string {
	var b strings.Builder
	inQuote, paren := false, 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s):
			if paren == 0 {
				b.WriteString(s[i : i+2])
			}
			i++
		case inQuote:
			b.WriteByte(c)
			if c == '"' {
				inQuote = false
			}
		case c == '(':
			paren++
		case c == ')' && paren > 0:
			paren--
		case paren > 0:
		default:
			if c == '"' {
				inQuote = true
			}
			b.WriteByte(c)
		}
	}
	return b.String()
}

// insideQuotes says whether position i of s is inside a quoted string.
func insideQuotes(s string, i int) bool {
	in := false
	for k := 0; k < i; k++ {
		switch s[k] {
		case '\\':
			k++
		case '"':
			in = !in
		}
	}
	return in
}

// checkAddress refuses what a dot-courier forwarding line cannot carry
// safely: blanks, commas and angle brackets (they would split or end the
// address), control characters, a leading "-" (it would reach sendmail's
// command line as an option), and a leading "&" or "!" (marks the
// .courier reader drops).
func checkAddress(a string) error {
	switch {
	case a == "":
		return errors.New("empty address")
	case a[0] == '-':
		return errors.New("an address may not start with \"-\"")
	case a[0] == '&' || a[0] == '!':
		// The .courier reader takes these as marks and drops them.
		return fmt.Errorf("an address may not start with %q", a[0])
	case len(a) > 512:
		return errors.New("address longer than 512 bytes")
	case strings.HasPrefix(a, "@") || strings.HasSuffix(a, "@"):
		return errors.New("no local part or no domain")
	case len(a) > 256 && !strings.Contains(a, "@"):
		// It gets the recipient's domain (up to 255 bytes) and must
		// still fit; RFC 5321 4.5.3.1.1 allows local parts of 64.
		return errors.New("name longer than 256 bytes")
	}
	for _, r := range a {
		if r <= ' ' || r == 0x7f || r == ',' || r == '<' || r == '>' || r == '\\' {
			return fmt.Errorf("character %q cannot be forwarded to", r)
		}
	}
	return nil
}
