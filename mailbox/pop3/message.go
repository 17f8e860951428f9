package pop3

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// messageCopier turns a stored message into what POP3 sends (RFC 1939
// section 3): every line ends in CRLF (a bare LF becomes CRLF, an existing
// CRLF is kept, a lone CR at the very end becomes CRLF), a last line without
// a newline gets one, and, when dotStuff is set, a line starting with "."
// gets a second "." in front.
//
// The same code measures a message (out == nil) and sends it, so the size
// announced by STAT, LIST and RETR is exactly the number of octets RETR sends
// before the terminating ".": byte-stuffing and the terminator are not
// counted, which is how RFC 1939 defines a message's size.
type messageCopier struct {
	out      *bufio.Writer // nil: only count
	dotStuff bool
	// bodyLines limits the body lines sent after the header (TOP); negative
	// means no limit.
	bodyLines int

	size         int64 // octets of message content produced (no stuffing)
	lineStart    bool  // the next byte begins a line
	pendingCR    bool  // a CR was seen; it is decided by the next byte
	lineEmpty    bool  // the current line has no content so far
	inHeader     bool  // still in the header section
	eightBitHead bool  // an octet >= 0x80 in the header (RFC 6532 header)
	stopped      bool  // TOP's line budget is used up
}

func newMessageCopier(out *bufio.Writer, dotStuff bool, bodyLines int) *messageCopier {
	return &messageCopier{out: out, dotStuff: dotStuff, bodyLines: bodyLines, lineStart: true, lineEmpty: true, inHeader: true}
}

// errStopCopy ends a TOP early; it never leaves this file.
var errStopCopy = errors.New("line budget used")

func (c *messageCopier) emit(b byte) error {
	if c.out != nil {
		if err := c.out.WriteByte(b); err != nil {
			return err
		}
	}
	return nil
}

// beginLine runs on the first octet of every line (content, CR or LF): it
// is where TOP decides whether the line is sent at all.
func (c *messageCopier) beginLine() error {
	if !c.inHeader && c.bodyLines == 0 {
		c.stopped = true
		return errStopCopy
	}
	c.lineStart = false
	c.lineEmpty = true
	return nil
}

func (c *messageCopier) endLine() error {
	if err := c.emit('\r'); err != nil {
		return err
	}
	if err := c.emit('\n'); err != nil {
		return err
	}
	c.size += 2
	switch {
	case c.inHeader && c.lineEmpty:
		c.inHeader = false // the blank line between header and body is sent
	case !c.inHeader && c.bodyLines > 0:
		c.bodyLines--
	}
	c.lineStart = true
	return nil
}

func (c *messageCopier) content(b byte) error {
	if c.lineEmpty && c.dotStuff && b == '.' {
		// RFC 1939 section 3: byte-stuff a line that begins with ".".
		if err := c.emit('.'); err != nil {
			return err
		}
	}
	c.lineEmpty = false
	if c.inHeader && b >= 0x80 {
		c.eightBitHead = true
	}
	if err := c.emit(b); err != nil {
		return err
	}
	c.size++
	return nil
}

func (c *messageCopier) writeByte(b byte) error {
	if c.lineStart {
		if err := c.beginLine(); err != nil {
			return err
		}
	}
	if c.pendingCR {
		c.pendingCR = false
		if b == '\n' {
			return c.endLine()
		}
		// A bare CR inside a line is content; keep it.
		if err := c.content('\r'); err != nil {
			return err
		}
	}
	switch b {
	case '\r':
		c.pendingCR = true
		return nil
	case '\n':
		return c.endLine()
	}
	return c.content(b)
}

// finish completes the last line.
func (c *messageCopier) finish() error {
	if c.stopped || c.lineStart {
		return nil
	}
	// Either a lone CR at the end, or a last line without a newline: both
	// become the line's CRLF.
	c.pendingCR = false
	return c.endLine()
}

// copyFrom feeds the whole of r through the copier.
func (c *messageCopier) copyFrom(r io.Reader) error {
	br := bufio.NewReaderSize(r, 32<<10)
	for {
		b, err := br.ReadByte()
		if err == io.EOF {
			return c.finish()
		}
		if err != nil {
			return fmt.Errorf("read message: %w", err)
		}
		if err := c.writeByte(b); err != nil {
			if errors.Is(err, errStopCopy) {
				return nil
			}
			return err
		}
	}
}

// measureMessage returns the size POP3 reports for the message in r and
// whether its header has 8-bit octets (Courier keeps that fact beside the
// size in courierpop3dsizelist).
func measureMessage(r io.Reader) (size int64, eightBitHeader bool, err error) {
	c := newMessageCopier(nil, false, -1)
	if err := c.copyFrom(r); err != nil {
		return 0, false, err
	}
	return c.size, c.eightBitHead, nil
}

// sendMessage writes the message in r as a POP3 multi-line response body,
// including the terminating ".". bodyLines < 0 sends everything (RETR);
// otherwise the header, the blank line and that many body lines (TOP). It
// returns the content octets written, not counting stuffing or terminator.
func sendMessage(w *bufio.Writer, r io.Reader, bodyLines int) (int64, error) {
	c := newMessageCopier(w, true, bodyLines)
	if err := c.copyFrom(r); err != nil {
		return c.size, err
	}
	if _, err := w.WriteString(".\r\n"); err != nil {
		return c.size, err
	}
	return c.size, nil
}
