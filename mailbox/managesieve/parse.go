package managesieve

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Bounds on what a client may send (DESIGN.md: every input has a bound).
const (
	// maxLineLength bounds the octets of one command outside its literals;
	// RFC 5804 limits quoted strings to 1024 octets, but a long SASL
	// response sent quoted is accepted up to this.
	maxLineLength = 8 << 10
	// maxSkipLine is how much of an overlong or malformed line is read
	// and thrown away to find the next command; past it the session ends.
	maxSkipLine = 1 << 20
	// maxArgs is more than any command takes (RENAMESCRIPT: two).
	maxArgs = 8
	// maxQuoted is RFC 5804 section 4's bound on a quoted string.
	maxQuoted = 1024
)

// argKind is how an argument was written.
type argKind int

const (
	argAtom    argKind = iota // bare word: the command name, a number
	argQuoted                 // "..." (RFC 5804 quoted)
	argLiteral                // {N+} CRLF octets (literal-c2s), or {N}
)

// arg is one parsed argument: its octets, unescaped.
type arg struct {
	kind  argKind
	value string
}

func (a arg) isString() bool { return a.kind == argQuoted || a.kind == argLiteral }

// command is one client command: its name in upper case and arguments.
type command struct {
	name string
	args []arg
}

// protoError is a command the parser could not read. The rest of it has
// been read and thrown away, so the session can answer NO and go on,
// unless fatal is set (the stream cannot be resynchronized).
type protoError struct {
	msg   string
	code  string // response code, e.g. QUOTA/MAXSIZE; "" for none
	fatal bool
}

func (e *protoError) Error() string { return e.msg }

// reader reads commands and SASL responses from a client.
type reader struct {
	br *bufio.Reader
	// maxLiteral is the largest literal accepted; a larger one is read
	// and discarded up to maxDiscard octets (then NO), beyond that the
	// session ends, as its octets would be taken for commands.
	maxLiteral, maxDiscard int64
	lineLen                int // octets of the current command outside literals
}

// readCommand reads one command, skipping empty lines (some clients send
// an extra CRLF after a literal).
func (r *reader) readCommand() (command, error) {
	for {
		args, err := r.readArgs()
		if err != nil {
			return command{}, err
		}
		if len(args) == 0 {
			continue
		}
		if args[0].kind != argAtom {
			return command{}, &protoError{msg: "a command must start with its name"}
		}
		return command{name: strings.ToUpper(args[0].value), args: args[1:]}, nil
	}
}

// readArgs reads words, strings and literals up to the end of the line:
// RFC 5804 section 4, with runs of spaces and tabs between arguments and a
// bare LF as line end tolerated, as deployed servers do.
func (r *reader) readArgs() ([]arg, error) {
	r.lineLen = 0
	var args []arg
	needSpace := false
	for {
		c, err := r.next()
		if err != nil {
			return nil, err
		}
		switch c {
		case '\n':
			return args, nil
		case '\r':
			if c, err = r.next(); err != nil {
				return nil, err
			}
			if c != '\n' {
				return nil, r.syntax(false, "CR not followed by LF")
			}
			return args, nil
		case ' ', '\t':
			needSpace = false
			continue
		}
		if needSpace {
			return nil, r.syntax(false, "arguments must be separated by a space")
		}
		if len(args) == maxArgs {
			return nil, r.syntax(false, "too many arguments")
		}
		var a arg
		switch {
		case c == '"':
			a, err = r.quoted()
		case c == '{':
			a, err = r.literal()
		case isAtomChar(c):
			a, err = r.atom(c)
		default:
			err = r.syntax(false, unexpected(c))
		}
		if err != nil {
			return nil, err
		}
		args = append(args, a)
		needSpace = a.kind != argLiteral // a literal's CRLF already separates
	}
}

// next reads one octet of the command line, counting it against the line
// bound.
func (r *reader) next() (byte, error) {
	c, err := r.br.ReadByte()
	if err != nil {
		return 0, err
	}
	r.lineLen++
	if r.lineLen > maxLineLength {
		return 0, r.syntax(c == '\n', fmt.Sprintf("command line longer than %d octets", maxLineLength))
	}
	return c, nil
}

func (r *reader) peek() (byte, error) {
	b, err := r.br.Peek(1)
	if err != nil {
		return 0, err
	}
	return b[0], nil
}

// isAtomChar is RFC 5804's ATOM-CHAR: printable ASCII but for SP, the
// quote, the parentheses, "{" and "\".
func isAtomChar(c byte) bool {
	return c > 0x20 && c < 0x7f && !strings.ContainsRune("\"(){\\", rune(c))
}

func (r *reader) atom(first byte) (arg, error) {
	buf := []byte{first}
	for {
		c, err := r.peek()
		if err != nil {
			return arg{}, err
		}
		if !isAtomChar(c) {
			return arg{kind: argAtom, value: string(buf)}, nil
		}
		if _, err := r.next(); err != nil {
			return arg{}, err
		}
		buf = append(buf, c)
	}
}

// quoted reads a quoted string after its opening quote: "\" escapes only
// the quote and itself; CR, LF and NUL may not appear (RFC 5804 section 4).
func (r *reader) quoted() (arg, error) {
	var buf []byte
	for {
		c, err := r.next()
		if err != nil {
			return arg{}, err
		}
		switch c {
		case '"':
			return arg{kind: argQuoted, value: string(buf)}, nil
		case '\\':
			if c, err = r.next(); err != nil {
				return arg{}, err
			}
			if c != '"' && c != '\\' {
				return arg{}, r.syntax(c == '\n', fmt.Sprintf("invalid escape \\%c in a quoted string", c))
			}
		case '\r', '\n':
			return arg{}, r.syntax(c == '\n', "unterminated quoted string (a string with CR or LF must be sent as a literal)")
		case 0:
			return arg{}, r.syntax(false, "NUL is not allowed in a quoted string")
		}
		buf = append(buf, c)
	}
}

// literal reads "{N+}" or "{N}", the line end and N octets. RFC 5804
// clients send the non-synchronizing form; the synchronizing one, which
// some older clients send, is read the same way without a continuation
// (as Dovecot does), because ManageSieve has no continuation response.
func (r *reader) literal() (arg, error) {
	var n int64
	digits := 0
	for {
		c, err := r.next()
		if err != nil {
			return arg{}, err
		}
		if c >= '0' && c <= '9' {
			digits++
			if digits > 15 {
				return arg{}, r.syntax(false, "literal size too long")
			}
			n = n*10 + int64(c-'0')
			continue
		}
		if c == '+' {
			if c, err = r.next(); err != nil {
				return arg{}, err
			}
		}
		if c != '}' || digits == 0 {
			return arg{}, r.syntax(c == '\n', "malformed literal: want {N+} or {N}")
		}
		break
	}
	if err := r.lineEnd(); err != nil {
		return arg{}, err
	}
	if n > r.maxLiteral {
		return arg{}, r.tooLarge(n)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r.br, buf); err != nil {
		return arg{}, noEOF(err)
	}
	return arg{kind: argLiteral, value: string(buf)}, nil
}

// lineEnd reads the CRLF (or LF) after a literal's size.
func (r *reader) lineEnd() error {
	c, err := r.next()
	if err != nil {
		return err
	}
	if c == '\r' {
		if c, err = r.next(); err != nil {
			return err
		}
	}
	if c != '\n' {
		return r.syntax(false, "a literal's size must end its line")
	}
	return nil
}

// tooLarge answers a literal over the bound: its octets are read and
// thrown away with the rest of the command, or, when there are too many
// to wait for, the session must end.
func (r *reader) tooLarge(n int64) error {
	e := &protoError{code: "QUOTA/MAXSIZE", msg: fmt.Sprintf("literal of %d octets is larger than the %d allowed", n, r.maxLiteral)}
	if n > r.maxDiscard {
		e.fatal = true
		return e
	}
	if _, err := io.CopyN(io.Discard, r.br, n); err != nil {
		return noEOF(err)
	}
	if err := r.skipLine(); err != nil {
		return err
	}
	return e
}

// syntax throws away the rest of the command (unless the error came at its
// line end) and returns the error to answer.
func (r *reader) syntax(atLineEnd bool, msg string) error {
	e := &protoError{msg: "syntax error: " + msg}
	if !atLineEnd {
		if err := r.skipLine(); err != nil {
			return err
		}
	}
	return e
}

// skipLine reads up to the end of the line. A line that ends in a literal
// size announces octets that belong to this command; they are skipped
// too, and the line after them.
func (r *reader) skipLine() error {
	skipped := 0
	var tail []byte // the last octets of the line, to spot a literal size
	for {
		chunk, err := r.br.ReadSlice('\n')
		skipped += len(chunk)
		if skipped > maxSkipLine {
			return &protoError{msg: "command line far too long", fatal: true}
		}
		tail = append(tail, chunk...)
		if len(tail) > 32 {
			tail = tail[len(tail)-32:]
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil {
			return noEOF(err)
		}
		n, ok := trailingLiteral(tail)
		if !ok {
			return nil
		}
		if n > r.maxDiscard {
			return &protoError{code: "QUOTA/MAXSIZE", msg: fmt.Sprintf("literal of %d octets is larger than the %d allowed", n, r.maxLiteral), fatal: true}
		}
		if _, err := io.CopyN(io.Discard, r.br, n); err != nil {
			return noEOF(err)
		}
		skipped, tail = 0, nil
	}
}

// trailingLiteral finds "{N+}" or "{N}" right before a line's end.
func trailingLiteral(line []byte) (int64, bool) {
	line = bytes.TrimSuffix(line, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	if !bytes.HasSuffix(line, []byte("}")) {
		return 0, false
	}
	open := bytes.LastIndexByte(line, '{')
	if open < 0 {
		return 0, false
	}
	digits := bytes.TrimSuffix(line[open+1:len(line)-1], []byte("+"))
	if len(digits) == 0 || len(digits) > 15 {
		return 0, false
	}
	n, err := strconv.ParseInt(string(digits), 10, 64)
	return n, err == nil
}

// unexpected describes an octet that cannot start an argument.
func unexpected(c byte) string {
	if c > 0x20 && c < 0x7f {
		return fmt.Sprintf("unexpected character %q", c)
	}
	return fmt.Sprintf("unexpected octet 0x%02x", c)
}

// noEOF reports a stream that ended inside a command as unexpected.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// parseNumber reads HAVESPACE's size: RFC 5804's number, decimal digits
// up to 4294967295; larger values are read (they are just too large for
// any quota), up to 15 digits.
func parseNumber(s string) (int64, bool) {
	if s == "" || len(s) > 15 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}
