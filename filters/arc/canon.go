package arc

import (
	"bufio"
	"errors"
	"io"
	"strings"
)

// field is one header field as it appeared: Name is as written, Raw is the
// whole field (name, colon, value, continuation lines) with CRLF line
// endings, including the final CRLF.
type field struct {
	Name string
	Raw  string
}

// value returns the field's value: everything after the first colon,
// without the final CRLF.
func (f field) value() string {
	_, v, _ := strings.Cut(f.Raw, ":")
	return strings.TrimSuffix(v, "\r\n")
}

// ErrHeaderTooLarge is returned when the header section exceeds the bound
// given to Verify or Seal.
var ErrHeaderTooLarge = errors.New("arc: header section too large")

// readHeader reads the header section of a message from br (lines ended by
// LF with an optional CR before it) and returns its fields with CRLF line
// endings. br is left at the first byte of the body. A message that ends
// inside its header has an empty body (RFC 5322 section 3.5). A line with
// no colon, or a continuation line before any field, is kept as a field
// with an empty name: it is signed over by nobody, and checking goes on.
func readHeader(br *bufio.Reader, max int) ([]field, error) {
	var fields []field
	total := 0
	for {
		line, err := readLine(br, max-total)
		if err != nil && err != io.EOF {
			return nil, err
		}
		total += len(line)
		text := strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
		if text == "" {
			return fields, nil // the blank line, or the end of the message
		}
		if (text[0] == ' ' || text[0] == '\t') && len(fields) > 0 {
			fields[len(fields)-1].Raw += text + "\r\n"
		} else {
			name, _, _ := strings.Cut(text, ":")
			fields = append(fields, field{Name: strings.TrimRight(name, " \t"), Raw: text + "\r\n"})
		}
		if err == io.EOF {
			return fields, nil
		}
	}
}

// readLine reads one line up to and including its LF, at most max bytes.
func readLine(br *bufio.Reader, max int) (string, error) {
	var b strings.Builder
	for {
		chunk, err := br.ReadSlice('\n')
		if b.Len()+len(chunk) > max {
			return "", ErrHeaderTooLarge
		}
		b.Write(chunk)
		if err != bufio.ErrBufferFull {
			return b.String(), err
		}
	}
}

// canonHeaderRelaxed is the relaxed header canonicalization of RFC 6376
// section 3.4.2: the name in lower case, the field unfolded, runs of white
// space made one space, white space at the end of the value and around
// the colon removed. The result ends in CRLF.
func canonHeaderRelaxed(raw string) string {
	name, value, _ := strings.Cut(raw, ":")
	name = strings.ToLower(strings.TrimRight(name, " \t"))
	var b strings.Builder
	b.Grow(len(raw))
	b.WriteString(name)
	b.WriteByte(':')
	space := false
	for i := 0; i < len(value); i++ {
		c := value[i]
		switch c {
		case '\r', '\n':
			continue // unfolding: CRLF is removed, the WSP after it stays
		case ' ', '\t':
			space = true
			continue
		}
		if space && b.Len() > len(name)+1 {
			b.WriteByte(' ')
		}
		space = false
		b.WriteByte(c)
	}
	b.WriteString("\r\n")
	return b.String()
}

// canonHeader applies the named header canonicalization ("simple" keeps
// the field as it is, RFC 6376 section 3.4.1).
func canonHeader(raw, method string) string {
	if method == "simple" {
		return raw
	}
	return canonHeaderRelaxed(raw)
}

// bodyCanon is an io.Writer that canonicalizes a body as it streams
// through (RFC 6376 sections 3.4.3 and 3.4.4) into out. A line ends at LF;
// a CR just before it belongs to the line end. Empty lines are held back
// until text follows them, so that those at the end are dropped.
type bodyCanon struct {
	out     io.Writer
	relaxed bool

	pendingCR  bool // a CR was seen last; it ends the line if LF follows
	pendingWSP bool // relaxed: white space seen since the last text
	inLine     bool // the current line has text
	emptyLines int  // empty lines not yet written
	wrote      bool // anything written
	err        error
}

func (c *bodyCanon) emit(p []byte) {
	if c.err != nil {
		return
	}
	_, c.err = c.out.Write(p)
	c.wrote = true
}

var crlf = []byte("\r\n")

// text writes one byte of line content, after the empty lines and the
// white space held back before it.
func (c *bodyCanon) text(b byte) {
	for ; c.emptyLines > 0; c.emptyLines-- {
		c.emit(crlf)
	}
	if c.pendingWSP {
		c.emit([]byte{' '})
		c.pendingWSP = false
	}
	c.emit([]byte{b})
	c.inLine = true
}

func (c *bodyCanon) endLine() {
	c.pendingWSP = false // relaxed: white space at the end of a line goes
	if c.inLine {
		c.emit(crlf)
	} else {
		c.emptyLines++
	}
	c.inLine = false
}

func (c *bodyCanon) Write(p []byte) (int, error) {
	for _, b := range p {
		if c.pendingCR {
			c.pendingCR = false
			if b == '\n' {
				c.endLine()
				continue
			}
			c.text('\r')
		}
		switch {
		case b == '\r':
			c.pendingCR = true
		case b == '\n':
			c.endLine()
		case c.relaxed && (b == ' ' || b == '\t'):
			c.pendingWSP = true
		default:
			c.text(b)
		}
	}
	return len(p), c.err
}

// Close finishes the body: an unterminated last line gets its CRLF, and
// an empty body is CRLF under simple (section 3.4.3) and nothing under
// relaxed (section 3.4.4).
func (c *bodyCanon) Close() error {
	if c.pendingCR {
		c.pendingCR = false
		c.text('\r')
	}
	if c.inLine {
		c.emit(crlf)
		c.inLine = false
	}
	if !c.wrote && !c.relaxed {
		c.emit(crlf)
	}
	return c.err
}

// stripBValue returns the field raw with the value of its b= tag removed
// (RFC 6376 section 3.7: the signature field is hashed with "b=" empty),
// keeping everything else, folding included. Only a tag named exactly b
// counts, not bh.
func stripBValue(raw string) string {
	colon := strings.IndexByte(raw, ':')
	if colon < 0 {
		return raw
	}
	start := colon + 1
	for start <= len(raw) {
		end := strings.IndexByte(raw[start:], ';')
		if end < 0 {
			end = len(raw)
		} else {
			end += start
		}
		tag := raw[start:end]
		if eq := strings.IndexByte(tag, '='); eq >= 0 && strings.Trim(tag[:eq], " \t\r\n") == "b" {
			valStart := start + eq + 1
			// The final CRLF of the field is not part of the value.
			valEnd := end
			if end == len(raw) && strings.HasSuffix(raw, "\r\n") {
				valEnd = len(raw) - 2
			}
			return raw[:valStart] + raw[valEnd:]
		}
		start = end + 1
	}
	return raw
}
