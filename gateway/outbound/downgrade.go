package outbound

import (
	"bytes"
	"io"
	"mime/quotedprintable"
	"sort"
	"strings"
	"unicode/utf8"

	"postern/gateway/delivery"
	"postern/mailbox/mime"
)

// For a peer that does not offer 8BITMIME, RFC 6152 section 3 leaves the
// relay two choices: convert the message to 7 bits or return it. Postfix
// converts by default (disable_mime_output_conversion = no), and so does
// Postern: every MIME leaf part with 8-bit bytes in its body and a 7bit,
// 8bit or binary encoding is re-encoded as quoted-printable, its
// Content-Transfer-Encoding changed to match; a multipart or
// message/rfc822 declared 8bit whose content became 7-bit is declared
// 7bit. Everything else keeps its bytes. A message without MIME-Version
// (RFC 2045's default: text/plain, 7bit) with an 8-bit body gets the
// three MIME fields: its charset is utf-8 when the body is valid UTF-8,
// else unknown-8bit (RFC 1428), as sendmail's EightBitMode=m labels such
// text. Header fields with 8-bit bytes stay as they are: no encoding of
// them is right without knowing their charset, and a message that needs
// SMTPUTF8 never reaches a peer without it. A DKIM signature over the
// converted body no longer verifies, as with Postfix.

// sevenBit returns msg converted for a peer without 8BITMIME, or msg itself
// (changed false) when it has no 8-bit byte in a body the conversion can
// fix.
func sevenBit(msg delivery.Message) (out delivery.Message, changed bool, err error) {
	// Most messages are 7-bit: look before reading the whole message into
	// memory.
	buf := make([]byte, 64<<10)
	found := false
	for off := int64(0); off < msg.Size() && !found; off += int64(len(buf)) {
		n, err := msg.ReadAt(buf, off)
		if err != nil && err != io.EOF {
			return msg, false, err
		}
		found = has8bit(buf[:n])
	}
	if !found {
		return msg, false, nil
	}
	data := make([]byte, msg.Size())
	if _, err := msg.ReadAt(data, 0); err != nil && err != io.EOF {
		return msg, false, err
	}
	root, err := mime.ParseStructure(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return msg, false, err
	}
	d := downgrader{data: data}
	d.message(root)
	if len(d.edits) == 0 {
		return msg, false, nil
	}
	sort.Slice(d.edits, func(i, j int) bool { return d.edits[i].start < d.edits[j].start })
	var b bytes.Buffer
	b.Grow(len(data) + len(data)/8)
	at := int64(0)
	for _, e := range d.edits {
		b.Write(data[at:e.start])
		b.Write(e.with)
		at = e.end
	}
	b.Write(data[at:])
	return bytesMsg{bytes.NewReader(b.Bytes())}, true, nil
}

type bytesMsg struct{ *bytes.Reader }

func (m bytesMsg) Size() int64 { return m.Reader.Size() }

// edit replaces data[start:end] with with.
type edit struct {
	start, end int64
	with       []byte
}

type downgrader struct {
	data  []byte
	edits []edit
}

func has8bit(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return true
		}
	}
	return false
}

// part converts p's 8-bit leaves and reports whether p's content is 7-bit
// afterwards.
func (d *downgrader) part(p *mime.Part) bool {
	switch {
	case len(p.Children) > 0:
		clean := true
		for _, c := range p.Children {
			if !d.part(c) {
				clean = false
			}
		}
		// The preamble, epilogue and boundary lines stay as they are.
		if clean && has8bitOutside(d.data, p) {
			clean = false
		}
		if clean {
			d.declare(p, "7bit")
		}
		return clean
	case p.Message != nil:
		clean := d.message(p.Message)
		if clean {
			d.declare(p, "7bit")
		}
		return clean
	}
	body := d.data[p.BodyStart:p.End]
	if !has8bit(body) {
		return true
	}
	if p.Truncated || p.Type == "multipart" || p.Type == "message" {
		// RFC 2045 section 6.4: no quoted-printable for these; a part
		// the parser did not split is left as it is.
		return false
	}
	switch p.Encoding {
	case "7BIT", "8BIT", "BINARY":
	default:
		return false // 8-bit bytes inside base64 or quoted-printable: damaged, left alone
	}
	d.edits = append(d.edits, edit{p.HeaderStart, p.BodyStart, d.header(p, "quoted-printable", nil)})
	d.edits = append(d.edits, edit{p.BodyStart, p.End, quotedPrintable(body)})
	return true
}

// message converts a message (the top level, or one inside a
// message/rfc822 part) and reports whether it is 7-bit afterwards. One
// without MIME-Version is plain text to RFC 2045.
func (d *downgrader) message(m *mime.Part) bool {
	clean := true
	switch {
	case m.Header.Has("MIME-Version"):
		clean = d.part(m)
	case has8bit(d.data[m.BodyStart:m.End]):
		d.plain(m)
	}
	return clean && !has8bit(d.data[m.HeaderStart:m.BodyStart])
}

// has8bitOutside reports whether a multipart's body has 8-bit bytes
// outside its children (preamble, epilogue).
func has8bitOutside(data []byte, p *mime.Part) bool {
	at := p.BodyStart
	for _, c := range p.Children {
		if has8bit(data[at:c.HeaderStart]) {
			return true
		}
		at = c.End
	}
	return has8bit(data[at:p.End])
}

// declare sets p's Content-Transfer-Encoding to enc when it says 8bit or
// binary (a 7bit or absent one is right already).
func (d *downgrader) declare(p *mime.Part, enc string) {
	if p.Encoding != "8BIT" && p.Encoding != "BINARY" {
		return
	}
	d.edits = append(d.edits, edit{p.HeaderStart, p.BodyStart, d.header(p, enc, nil)})
}

// plain labels and converts a message without MIME-Version.
func (d *downgrader) plain(root *mime.Part) {
	body := d.data[root.BodyStart:root.End]
	var add []string
	add = append(add, "MIME-Version: 1.0")
	if !root.Header.Has("Content-Type") {
		charset := "unknown-8bit"
		if utf8.Valid(body) {
			charset = "utf-8"
		}
		add = append(add, "Content-Type: text/plain; charset="+charset)
	}
	d.edits = append(d.edits, edit{root.HeaderStart, root.BodyStart, d.header(root, "quoted-printable", add)})
	d.edits = append(d.edits, edit{root.BodyStart, root.End, quotedPrintable(body)})
}

// header returns p's header with its Content-Transfer-Encoding fields
// replaced by one saying enc, and the fields of add, before the blank line
// that ends it. Other fields keep their bytes.
func (d *downgrader) header(p *mime.Part, enc string, add []string) []byte {
	h := d.data[p.HeaderStart:p.BodyStart]
	eol := "\n"
	if bytes.Contains(h, []byte("\r\n")) || bytes.HasSuffix(d.data[:p.BodyStart], []byte("\r\n")) {
		eol = "\r\n"
	}
	// Copy the fields line by line (a continuation line starts with a
	// space or a tab), leaving out Content-Transfer-Encoding.
	var b bytes.Buffer
	at, drop := 0, false
	for at < len(h) {
		n := bytes.IndexByte(h[at:], '\n') + 1
		if n == 0 {
			n = len(h) - at
		}
		line := h[at : at+n]
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			break // the blank line
		}
		if line[0] != ' ' && line[0] != '\t' {
			name, _, _ := bytes.Cut(line, []byte(":"))
			drop = strings.EqualFold(string(bytes.TrimSpace(name)), "Content-Transfer-Encoding")
		}
		if !drop {
			b.Write(line)
		}
		at += n
	}
	if b.Len() > 0 && !bytes.HasSuffix(b.Bytes(), []byte("\n")) {
		b.WriteString(eol) // a last field without its line break
	}
	// What is left is the blank line that ends the header.
	rest := h[at:]
	end := len(rest)
	switch {
	case bytes.HasSuffix(rest, []byte("\r\n")):
		end -= 2
	case bytes.HasSuffix(rest, []byte("\n")):
		end--
	}
	b.Write(rest[:end])
	for _, a := range add {
		b.WriteString(a + eol)
	}
	b.WriteString("Content-Transfer-Encoding: " + enc + eol)
	if end == len(rest) {
		b.WriteString(eol) // a header without its blank line: the body would read as fields
	}
	b.Write(rest[end:])
	return b.Bytes()
}

// quotedPrintable encodes body (RFC 2045 section 6.7), its line breaks kept
// as line breaks. A body that ended with one ends with one.
func quotedPrintable(body []byte) []byte {
	var b bytes.Buffer
	w := quotedprintable.NewWriter(&b)
	w.Write(body)
	w.Close()
	return b.Bytes()
}
