package imap

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// Limits of the command reader. They bound what one client can make the
// server hold in memory for a single command.
const (
	maxCommandLine    = 64 << 10 // non-literal bytes of one command (all its lines)
	maxInlineLiteral  = 64 << 10 // one literal argument of any command but APPEND's message
	maxCommandLiteral = 1 << 20  // all literal arguments of one command together
	maxListDepth      = 32       // nesting of parenthesised lists (SEARCH, FETCH sections)
	maxAtomLen        = 8 << 10  // a single atom (sequence sets can be long)
)

// Errors of the command reader. A parseError is answered with a tagged BAD
// and the session goes on; the others end the connection.
var (
	errLineTooLong   = errors.New("imap: command line too long")
	errAbsurdInput   = errors.New("imap: absurd input, closing")
	errLiteralTooBig = errors.New("imap: literal too big")
)

// parseError is a syntax error in one command. The session answers BAD with
// its text and discards the rest of the command.
type parseError struct{ msg string }

func (e *parseError) Error() string { return e.msg }

func syntaxErr(format string, args ...any) error {
	return &parseError{msg: fmt.Sprintf(format, args...)}
}

// literalHandler is called when the client announces a literal {N} or {N+}
// (RFC 3501 4.3, RFC 7888). For a synchronizing literal it must send the
// continuation request "+ ..." before the client sends the data; it returns
// an error to refuse the literal (then no data follows a synchronizing one).
type literalHandler func(size int64, sync bool) error

// decoder reads IMAP command syntax (RFC 3501 section 9) straight from the
// connection's buffered reader, without first copying whole commands: atoms
// and strings are produced as they are read, literals are requested from the
// client only when the parser reaches them, and APPEND's message literal is
// handed to the mailbox as a stream.
type decoder struct {
	br *bufio.Reader
	// lineLeft is how many non-literal bytes the current command may still use.
	lineLeft int
	// literalLeft is how many literal bytes the current command may still use
	// (APPEND's message literal is not counted: it has its own limit).
	literalLeft int64
	// atLineEnd is true right after a CRLF was consumed: nothing of the
	// current line remains to be discarded after an error.
	atLineEnd bool
	onLiteral literalHandler
	// maxSkip bounds a refused non-synchronizing literal that is read and
	// thrown away to stay in step; beyond it the connection is closed.
	maxSkip int64
	scratch []byte
}

func newDecoder(br *bufio.Reader, onLiteral literalHandler) *decoder {
	d := &decoder{br: br, onLiteral: onLiteral, maxSkip: maxInlineLiteral}
	d.reset()
	return d
}

// reset prepares the decoder for the next command.
func (d *decoder) reset() {
	d.lineLeft = maxCommandLine
	d.literalLeft = maxCommandLiteral
	d.atLineEnd = false
}

func (d *decoder) peek() (byte, error) {
	if d.lineLeft <= 0 {
		return 0, errLineTooLong
	}
	b, err := d.br.Peek(1)
	if err != nil {
		return 0, err
	}
	return b[0], nil
}

func (d *decoder) readByte() (byte, error) {
	if d.lineLeft <= 0 {
		return 0, errLineTooLong
	}
	b, err := d.br.ReadByte()
	if err != nil {
		return 0, err
	}
	d.lineLeft--
	return b, nil
}

// expect consumes the byte c or fails with a syntax error naming what.
func (d *decoder) expect(c byte, what string) error {
	b, err := d.peek()
	if err != nil {
		return err
	}
	if b != c {
		return syntaxErr("expected %s", what)
	}
	_, err = d.readByte()
	return err
}

func (d *decoder) sp() error { return d.expect(' ', "space") }

// crlf consumes the end of the command line. A bare LF is accepted, as most
// servers do, because some scripted clients send one.
func (d *decoder) crlf() error {
	b, err := d.peek()
	if err != nil {
		return err
	}
	if b == '\r' {
		d.readByte()
		b, err = d.peek()
		if err != nil {
			return err
		}
	}
	if b != '\n' {
		return syntaxErr("expected end of line")
	}
	d.readByte()
	d.atLineEnd = true
	return nil
}

// Character classes of RFC 3501 section 9.
func isCTL(c byte) bool { return c < 0x20 || c == 0x7f }

func isAtomChar(c byte) bool {
	switch c {
	case '(', ')', '{', ' ', '%', '*', '"', '\\', ']':
		return false
	}
	return !isCTL(c) && c < 0x80
}

// isAStringChar adds resp-specials ("]") to ATOM-CHAR.
func isAStringChar(c byte) bool { return isAtomChar(c) || c == ']' }

// isListChar is ATOM-CHAR plus list-wildcards and resp-specials (LIST patterns).
func isListChar(c byte) bool { return isAStringChar(c) || c == '%' || c == '*' }

// isTagChar is ASTRING-CHAR except "+".
func isTagChar(c byte) bool { return isAStringChar(c) && c != '+' }

// readWhile reads bytes accepted by ok; it fails if none are.
func (d *decoder) readWhile(ok func(byte) bool, what string) (string, error) {
	d.scratch = d.scratch[:0]
	for {
		b, err := d.peek()
		if err != nil {
			if errors.Is(err, io.EOF) && len(d.scratch) > 0 {
				break
			}
			return "", err
		}
		if !ok(b) {
			break
		}
		if len(d.scratch) >= maxAtomLen {
			return "", syntaxErr("%s too long", what)
		}
		d.readByte()
		d.scratch = append(d.scratch, b)
	}
	if len(d.scratch) == 0 {
		return "", syntaxErr("expected %s", what)
	}
	return string(d.scratch), nil
}

func (d *decoder) atom() (string, error) { return d.readWhile(isAtomChar, "atom") }

// number reads an RFC 3501 number (32-bit unsigned).
func (d *decoder) number() (uint32, error) {
	s, err := d.readWhile(isDigit, "number")
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, syntaxErr("number out of range")
	}
	return uint32(n), nil
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// astring reads an atom (with "]"), a quoted string or a literal.
func (d *decoder) astring() (string, error) {
	b, err := d.peek()
	if err != nil {
		return "", err
	}
	switch b {
	case '"':
		return d.quoted()
	case '{':
		return d.literal()
	}
	return d.readWhile(isAStringChar, "string")
}

// str reads a quoted string or a literal (RFC 3501 "string").
func (d *decoder) str() (string, error) {
	b, err := d.peek()
	if err != nil {
		return "", err
	}
	switch b {
	case '"':
		return d.quoted()
	case '{':
		return d.literal()
	}
	return "", syntaxErr("expected quoted string or literal")
}

// listMailbox reads a LIST pattern: list-char atoms or a string.
func (d *decoder) listMailbox() (string, error) {
	b, err := d.peek()
	if err != nil {
		return "", err
	}
	switch b {
	case '"':
		return d.quoted()
	case '{':
		return d.literal()
	}
	return d.readWhile(isListChar, "mailbox pattern")
}

// quoted reads a quoted string. Eight-bit bytes are accepted (UTF-8 search
// strings from real clients); CR and LF are not (RFC 3501 9, QUOTED-CHAR).
func (d *decoder) quoted() (string, error) {
	if err := d.expect('"', `'"'`); err != nil {
		return "", err
	}
	d.scratch = d.scratch[:0]
	for {
		b, err := d.readByte()
		if err != nil {
			return "", err
		}
		switch b {
		case '"':
			return string(d.scratch), nil
		case '\\':
			b, err = d.readByte()
			if err != nil {
				return "", err
			}
			if b != '"' && b != '\\' {
				return "", syntaxErr("bad escape in quoted string")
			}
		case '\r', '\n':
			return "", syntaxErr("unterminated quoted string")
		case 0:
			return "", syntaxErr("NUL in quoted string")
		}
		d.scratch = append(d.scratch, b)
	}
}

// literalHeader reads "{N}" or "{N+}" and the CRLF after it.
func (d *decoder) literalHeader() (size int64, sync bool, err error) {
	if err := d.expect('{', "'{'"); err != nil {
		return 0, false, err
	}
	s, err := d.readWhile(isDigit, "literal size")
	if err != nil {
		return 0, false, err
	}
	if len(s) > 18 {
		return 0, false, syntaxErr("literal size out of range")
	}
	size, _ = strconv.ParseInt(s, 10, 64)
	sync = true
	if b, err := d.peek(); err == nil && b == '+' {
		d.readByte()
		sync = false
	}
	if err := d.expect('}', "'}'"); err != nil {
		return 0, false, err
	}
	if err := d.crlf(); err != nil {
		return 0, false, err
	}
	// The literal data follows on what is, for the client, a new line.
	d.atLineEnd = false
	return size, sync, nil
}

// literal reads a literal argument whose content is kept in memory (every
// literal but APPEND's message).
func (d *decoder) literal() (string, error) {
	size, sync, err := d.literalHeader()
	if err != nil {
		return "", err
	}
	if size > maxInlineLiteral || size > d.literalLeft {
		if !sync {
			// The client sends the data anyway; skip it so the connection
			// stays in step (RFC 7888 section 4).
			if err := d.skip(size); err != nil {
				return "", err
			}
		} else {
			d.atLineEnd = true // the client waits for "+", which never comes
		}
		return "", errLiteralTooBig
	}
	if d.onLiteral != nil {
		if err := d.onLiteral(size, sync); err != nil {
			return "", err
		}
	}
	d.literalLeft -= size
	buf := make([]byte, size)
	if _, err := io.ReadFull(d.br, buf); err != nil {
		return "", err
	}
	return string(buf), nil
}

// skip discards n bytes of literal data.
func (d *decoder) skip(n int64) error {
	if n > d.maxSkip {
		return errAbsurdInput
	}
	_, err := io.CopyN(io.Discard, d.br, n)
	return err
}

// discardCommand throws away the rest of a command after a syntax error: the
// rest of the current line and, when that line ends in a non-synchronizing
// literal, the literal and the lines after it. It stops at a synchronizing
// literal because the client waits for a continuation that will not come.
// The discarded lines count against the command's line budget
// (errLineTooLong); a non-synchronizing literal larger than d.maxSkip is
// errAbsurdInput.
func (d *decoder) discardCommand() error {
	if d.atLineEnd {
		return nil
	}
	var tail [24]byte // the last bytes of the line, to find "{N+}"
	n := 0
	for {
		b, err := d.readByte()
		if err != nil {
			return err
		}
		if b != '\n' {
			if n < len(tail) {
				tail[n] = b
				n++
			} else {
				copy(tail[:], tail[1:])
				tail[len(tail)-1] = b
			}
			continue
		}
		line := tail[:n]
		if len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		}
		size, sync, ok := trailingLiteral(line)
		if !ok || sync {
			d.atLineEnd = true
			return nil
		}
		if err := d.skip(size); err != nil {
			return err
		}
		n = 0
	}
}

// trailingLiteral reports whether line ends with "{N}" or "{N+}".
func trailingLiteral(line []byte) (size int64, sync bool, ok bool) {
	if len(line) < 3 || line[len(line)-1] != '}' {
		return 0, false, false
	}
	i := len(line) - 2
	sync = true
	if line[i] == '+' {
		sync = false
		i--
	}
	end := i + 1
	for i >= 0 && isDigit(line[i]) {
		i--
	}
	if i < 0 || line[i] != '{' || end-(i+1) == 0 || end-(i+1) > 18 {
		return 0, false, false
	}
	size, err := strconv.ParseInt(string(line[i+1:end]), 10, 64)
	if err != nil {
		return 0, false, false
	}
	return size, sync, true
}
