package outbound

import (
	"bytes"
	"encoding/base64"
	"io"
	"mime/quotedprintable"
	"sort"
	"strings"
	"unicode/utf8"

	"postern/gateway/delivery"
	"postern/mailbox/mime"
)

// Postern's client sends with DATA, never BDAT with BODY=BINARYMIME, and
// a peer may lack 8BITMIME: RFC 6152 section 3 and RFC 3030 section 3
// leave the relay two choices, convert the message or return it. Postfix
// converts by default (disable_mime_output_conversion = no), and so does
// Postern:
//
//   - a MIME leaf part declared binary (taken with BODY=BINARYMIME) is
//     sent as base64: its bytes need not form lines at all;
//   - for a peer without 8BITMIME, a leaf part with 8-bit bytes in a 7bit
//     or 8bit body is sent as quoted-printable;
//   - a multipart or message/rfc822 whose declared encoding is more than
//     the peer takes, and whose content no longer needs it, is declared
//     7bit or 8bit;
//   - a message without MIME-Version (RFC 2045's default: text/plain,
//     7bit) with an 8-bit body, for a peer without 8BITMIME, gets the three
//     MIME fields: charset utf-8 when the body is valid UTF-8, else
//     unknown-8bit (RFC 1428), as sendmail's EightBitMode=m labels such
//     text.
//
// Every other part keeps its bytes. Header fields with 8-bit bytes stay
// as they are (no encoding of them is right without knowing their
// charset, and a message that needs SMTPUTF8 never reaches a peer without
// it), as do base64 or quoted-printable parts holding 8-bit bytes
// (damaged) and message/* parts the parser left whole. A DKIM signature
// over a converted body no longer verifies, as with Postfix.

// sevenBit returns msg converted for a peer that takes 8-bit lines
// (peer8bit) or only 7-bit ones, or msg itself (changed false) when
// nothing in it needs converting.
func sevenBit(msg delivery.Message, peer8bit bool) (out delivery.Message, changed bool, err error) {
	// Most messages need nothing: look before reading the whole message
	// into memory. "binary" may be a Content-Transfer-Encoding.
	buf := make([]byte, 64<<10)
	found := false
	const overlap = len("binary") - 1
	for off := int64(0); off < msg.Size() && !found; off += int64(len(buf) - overlap) {
		n, err := msg.ReadAt(buf, off)
		if err != nil && err != io.EOF {
			return msg, false, err
		}
		found = (!peer8bit && has8bit(buf[:n])) || containsFold(buf[:n], "binary")
		if n < len(buf) {
			break
		}
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
	d := downgrader{data: data, peer: level7bit}
	if peer8bit {
		d.peer = level8bit
	}
	d.message(root)
	if len(d.edits) == 0 {
		return msg, false, nil
	}
	sort.Slice(d.edits, func(i, j int) bool { return d.edits[i].start < d.edits[j].start })
	var b bytes.Buffer
	b.Grow(len(data) + len(data)/3)
	at := int64(0)
	for _, e := range d.edits {
		b.Write(data[at:e.start])
		b.Write(e.with)
		at = e.end
	}
	b.Write(data[at:])
	return bytesMsg{bytes.NewReader(b.Bytes())}, true, nil
}

// containsFold reports whether b contains word, ignoring ASCII case.
func containsFold(b []byte, word string) bool {
	for i := 0; i+len(word) <= len(b); i++ {
		if b[i]|0x20 == word[0] && strings.EqualFold(string(b[i:i+len(word)]), word) {
			return true
		}
	}
	return false
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
	peer  level // what the peer takes
	edits []edit
}

// level is what a body needs: 7-bit lines, 8-bit lines, or any bytes.
type level int

const (
	level7bit level = iota
	level8bit
	levelBinary
)

var levelNames = [...]string{"7bit", "8bit", "binary"}

func has8bit(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return true
		}
	}
	return false
}

func levelOf(b []byte) level {
	if has8bit(b) {
		return level8bit
	}
	return level7bit
}

// part converts p's leaves that need more than the peer takes and returns
// what p's content needs afterwards.
func (d *downgrader) part(p *mime.Part) level {
	switch {
	case len(p.Children) > 0:
		// The preamble, epilogue and boundary lines stay as they are.
		need := levelOf8bitOutside(d.data, p)
		for _, c := range p.Children {
			need = max(need, d.part(c))
		}
		d.declare(p, need)
		return need
	case p.Message != nil:
		need := d.message(p.Message)
		d.declare(p, need)
		return need
	}
	body := d.data[p.BodyStart:p.End]
	have := levelOf(body)
	if p.Encoding == "BINARY" {
		have = levelBinary
	}
	if have <= d.peer {
		return have
	}
	if p.Truncated || p.Type == "multipart" || p.Type == "message" {
		// RFC 2045 section 6.4: these are not encoded; a part the
		// parser did not split is left as it is.
		return have
	}
	switch p.Encoding {
	case "BINARY":
		d.edits = append(d.edits, edit{p.HeaderStart, p.BodyStart, d.header(p, "base64", nil)})
		d.edits = append(d.edits, edit{p.BodyStart, p.End, base64Lines(body)})
	case "7BIT", "8BIT":
		d.edits = append(d.edits, edit{p.HeaderStart, p.BodyStart, d.header(p, "quoted-printable", nil)})
		d.edits = append(d.edits, edit{p.BodyStart, p.End, quotedPrintable(body)})
	default:
		return have // 8-bit bytes inside base64 or quoted-printable: damaged, left alone
	}
	return level7bit
}

// message converts a message (the top level, or one inside a
// message/rfc822 part) and returns what it needs afterwards. One without
// MIME-Version is plain text to RFC 2045.
func (d *downgrader) message(m *mime.Part) level {
	need := level7bit
	switch {
	case m.Header.Has("MIME-Version"):
		need = d.part(m)
	case d.peer == level7bit && has8bit(d.data[m.BodyStart:m.End]):
		d.plain(m)
	default:
		need = levelOf(d.data[m.BodyStart:m.End])
	}
	return max(need, levelOf(d.data[m.HeaderStart:m.BodyStart]))
}

// levelOf8bitOutside is what a multipart's body needs outside its
// children (preamble, epilogue).
func levelOf8bitOutside(data []byte, p *mime.Part) level {
	at := p.BodyStart
	for _, c := range p.Children {
		if has8bit(data[at:c.HeaderStart]) {
			return level8bit
		}
		at = c.End
	}
	return levelOf(data[at:p.End])
}

// declare lowers a container's Content-Transfer-Encoding to what its
// content needs, when it declares more than the peer takes and the
// content now needs no more than that.
func (d *downgrader) declare(p *mime.Part, need level) {
	declared := level7bit
	switch p.Encoding {
	case "8BIT":
		declared = level8bit
	case "BINARY":
		declared = levelBinary
	}
	if declared <= d.peer || need > d.peer {
		return
	}
	d.edits = append(d.edits, edit{p.HeaderStart, p.BodyStart, d.header(p, levelNames[need], nil)})
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

// base64Lines encodes body in lines of 76 characters (RFC 2045 section
// 6.8), each ended by CRLF.
func base64Lines(body []byte) []byte {
	enc := base64.StdEncoding.EncodeToString(body)
	var b bytes.Buffer
	b.Grow(len(enc) + len(enc)/76*2 + 2)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc)
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
