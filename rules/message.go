package rules

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"regexp"
	"strings"

	"github.com/emersion/go-message/charset"
)

// Message is the message being filtered. Its bytes are what gets
// delivered; patterns see a canonical view of it (unfolded, RFC 2047-decoded
// headers with address headers rewritten the way Courier's reformime -u
// shows them, and decoded text bodies), built lazily and rebuilt after
// xfilter replaces the message.
type Message struct {
	raw []byte

	view *messageView
}

type messageView struct {
	header []string // canonical header lines, top level and (MIME) every part
	body   []string // searchable body lines
	top    []headerField
	// text collects the decoded text parts while the view is built.
	text strings.Builder
}

type headerField struct {
	name, value string // value unfolded, leading blanks removed, not decoded
}

// Limits on how much of a message the matcher looks at.
const (
	maxMIMEDepth = 20
	maxMIMEParts = 1000
)

// NewMessage wraps raw message bytes. Carriage returns before line feeds
// are removed, as maildrop strips them on input.
func NewMessage(raw []byte) *Message {
	return &Message{raw: bytes.ReplaceAll(raw, []byte("\r\n"), []byte("\n"))}
}

// ReadMessage reads a message of at most max bytes (0: no limit).
func ReadMessage(r io.Reader, max int64) (*Message, error) {
	if max > 0 {
		r = io.LimitReader(r, max+1)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("rules: read message: %w", err)
	}
	if max > 0 && int64(len(b)) > max {
		return nil, fmt.Errorf("rules: read message: %w: larger than %d bytes", ErrLimit, max)
	}
	return NewMessage(b), nil
}

// Bytes returns the message as it would be delivered now (after any
// xfilter). Callers must not modify it.
func (m *Message) Bytes() []byte { return m.raw }

// Output is the message as it is handed on (deliveries, commands' standard
// input): with a line feed added at the end when it has none, as maildrop
// 2.9.3 hands it on; Size still counts what was read.
func (m *Message) Output() []byte {
	if len(m.raw) == 0 || m.raw[len(m.raw)-1] == '\n' {
		return m.raw
	}
	return append(m.raw[:len(m.raw):len(m.raw)], '\n')
}

// Size is the message size in bytes (maildrop's SIZE).
func (m *Message) Size() int { return len(m.raw) }

// Lines is the number of lines (maildrop's LINES): line feeds, so that an
// unterminated last line does not count, as in maildrop 2.9.3.
func (m *Message) Lines() int {
	return bytes.Count(m.raw, []byte("\n"))
}

// Header returns the first top-level header field with this name (case
// insensitive), unfolded but not decoded, and whether it exists.
func (m *Message) Header(name string) (string, bool) {
	for _, f := range m.v().top {
		if strings.EqualFold(f.name, name) {
			return f.value, true
		}
	}
	return "", false
}

func (m *Message) replace(raw []byte) {
	m.raw = bytes.ReplaceAll(raw, []byte("\r\n"), []byte("\n"))
	m.view = nil
}

func (m *Message) v() *messageView {
	if m.view == nil {
		m.view = buildView(m.raw)
	}
	return m.view
}

// splitHeader splits an entity into its unfolded header fields and body;
// the body is nil when no blank line ends the header.
func splitHeader(b []byte) ([]headerField, []byte) {
	var fields []headerField
	for len(b) > 0 {
		nl := bytes.IndexByte(b, '\n')
		var line []byte
		if nl < 0 {
			line, b = b, nil
		} else {
			line, b = b[:nl], b[nl+1:]
		}
		if len(line) == 0 {
			return fields, b
		}
		if (line[0] == ' ' || line[0] == '\t') && len(fields) > 0 {
			// RFC 5322 2.2.3 unfolding: maildrop joins with a space and
			// keeps the continuation's own blanks.
			fields[len(fields)-1].value += " " + string(line)
			continue
		}
		name, value, ok := strings.Cut(string(line), ":")
		if !ok {
			// Not a header line: keep it searchable as it is.
			fields = append(fields, headerField{name: string(line), value: "\x00"})
			continue
		}
		fields = append(fields, headerField{name: name, value: strings.TrimLeft(value, " \t")})
	}
	return fields, nil
}

var wordDecoder = &mime.WordDecoder{CharsetReader: charset.Reader}

var encodedWord = regexp.MustCompile(`=\?[^?\s]+\?[QqBb]\?[^?\s]*\?=`)

// decode2047 decodes RFC 2047 encoded words one by one, as maildrop 2.9.3
// (reformime) does: blanks between two encoded words go (RFC 2047 6.2), a
// word in an unknown character set becomes "[unknown character set: CS ->
// utf-8]", and a word that does not decode stays as it is.
func decode2047(s string) string {
	if !strings.Contains(s, "=?") {
		return s
	}
	var b strings.Builder
	last := 0
	prevWord := false
	for _, loc := range encodedWord.FindAllStringIndex(s, -1) {
		between := s[last:loc[0]]
		if !(prevWord && strings.Trim(between, " \t") == "") {
			b.WriteString(between)
		}
		word := s[loc[0]:loc[1]]
		d, err := wordDecoder.Decode(word)
		switch {
		case err == nil:
			b.WriteString(d)
		case strings.Contains(err.Error(), "charset"):
			cs := strings.SplitN(word[2:], "?", 2)[0]
			fmt.Fprintf(&b, "[unknown character set: %s -> utf-8]", cs)
		default:
			b.WriteString(word)
		}
		last, prevWord = loc[1], true
	}
	b.WriteString(s[last:])
	return b.String()
}

var addressHeaders = map[string]bool{
	"from": true, "to": true, "cc": true, "bcc": true,
	"resent-from": true, "resent-to": true, "resent-cc": true, "resent-bcc": true,
}

func canonicalLine(f headerField) string {
	if f.value == "\x00" {
		return f.name
	}
	if addressHeaders[strings.ToLower(f.name)] {
		return f.name + ": " + canonicalAddressList(f.value)
	}
	return f.name + ": " + decode2047(f.value)
}

func buildView(raw []byte) *messageView {
	top, body := splitHeader(raw)
	v := &messageView{top: top}
	for _, f := range top {
		// maildrop 2.9.3 matches UTF-8 text: bytes that are not UTF-8
		// are left out of what patterns see (never out of deliveries).
		v.header = append(v.header, strings.ToValidUTF8(canonicalLine(f), ""))
	}
	mimeVersion := false
	for _, f := range top {
		if strings.EqualFold(f.name, "mime-version") {
			mimeVersion = true
		}
	}
	if !mimeVersion {
		switch {
		case body == nil:
			// No blank line after the header: maildrop 2.9.3 searches
			// one empty body line, and not a last header line that has
			// no line feed.
			v.body = []string{""}
			if !bytes.HasSuffix(raw, []byte("\n")) && len(v.header) > 0 {
				v.header = v.header[:len(v.header)-1]
			}
		default:
			v.body = splitLines(strings.ToValidUTF8(string(body), ""))
			if len(body) > 0 && body[len(body)-1] != '\n' && len(v.body) > 0 {
				// Nor a last body line without a line feed.
				v.body = v.body[:len(v.body)-1]
			}
		}
		return v
	}
	parts := 0
	v.walk(top, body, 0, &parts, true)
	// The text parts run together, as maildrop 2.9.3 searches them: a
	// part that does not end in a line feed (quoted-printable or base64
	// text) continues on the next part's first line.
	v.body = splitLines(v.text.String())
	v.text.Reset()
	return v
}

func splitLines(s string) []string {
	s = strings.TrimSuffix(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func fieldValue(fields []headerField, name string) string {
	for _, f := range fields {
		if strings.EqualFold(f.name, name) {
			return f.value
		}
	}
	return ""
}

// walk adds an entity's searchable text: the headers of every part below the
// top level, and the decoded text of every text/* part (maildropfilter(7),
// "MIME encoding").
func (v *messageView) walk(fields []headerField, body []byte, depth int, parts *int, top bool) {
	*parts++
	if depth > maxMIMEDepth || *parts > maxMIMEParts {
		return
	}
	if !top {
		for _, f := range fields {
			v.header = append(v.header, canonicalLine(f))
		}
	}
	ctype := fieldValue(fields, "content-type")
	mediatype, params, err := mime.ParseMediaType(ctype)
	if ctype == "" || err != nil {
		mediatype, params = "text/plain", map[string]string{"charset": "us-ascii"}
	}
	switch {
	case strings.HasPrefix(mediatype, "multipart/"):
		boundary := params["boundary"]
		if boundary == "" {
			return
		}
		for _, part := range splitMultipart(body, boundary) {
			f, b := splitHeader(part)
			v.walk(f, b, depth+1, parts, false)
		}
	case mediatype == "message/rfc822":
		f, b := splitHeader(body)
		v.walk(f, b, depth+1, parts, false)
	case strings.HasPrefix(mediatype, "text/"):
		cte := fieldValue(fields, "content-transfer-encoding")
		v.text.WriteString(decodeBody(body, cte, params["charset"]))
		if enc := strings.ToLower(strings.TrimSpace(cte)); !top && enc != "quoted-printable" && enc != "base64" {
			// The line feed before the boundary belongs to the boundary
			// (RFC 2046 5.1.1), but maildrop keeps it for unencoded text.
			v.text.WriteByte('\n')
		}
	}
}

// splitMultipart returns the parts between "--boundary" lines (RFC 2046
// 5.1.1), ignoring the preamble and epilogue.
func splitMultipart(body []byte, boundary string) [][]byte {
	delim := "--" + boundary
	var parts [][]byte
	var cur []byte
	in := false
	for _, line := range bytes.SplitAfter(body, []byte("\n")) {
		l := strings.TrimRight(string(line), " \t\n")
		if l == delim || l == delim+"--" {
			if in {
				parts = append(parts, bytes.TrimSuffix(cur, []byte("\n")))
			}
			cur, in = nil, l == delim
			if !in {
				break
			}
			continue
		}
		if in {
			cur = append(cur, line...)
		}
	}
	if in && len(cur) > 0 {
		parts = append(parts, cur)
	}
	return parts
}

func decodeBody(body []byte, cte, cs string) string {
	var r io.Reader = bytes.NewReader(body)
	switch strings.ToLower(strings.TrimSpace(cte)) {
	case "quoted-printable":
		r = quotedprintable.NewReader(r)
	case "base64":
		r = base64.NewDecoder(base64.StdEncoding, &lenientBase64{r: r})
	}
	decoded, err := io.ReadAll(r)
	if err != nil && len(decoded) == 0 {
		decoded = body
	}
	cs = strings.ToLower(cs)
	if cs != "" && cs != "us-ascii" && cs != "utf-8" {
		if cr, err := charset.Reader(cs, bytes.NewReader(decoded)); err == nil {
			if u, err := io.ReadAll(cr); err == nil {
				decoded = u
			}
		}
	}
	return string(decoded)
}

// lenientBase64 drops line breaks and anything not in the base64 alphabet
// so that real-world bodies decode.
type lenientBase64 struct{ r io.Reader }

func (l *lenientBase64) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	j := 0
	for _, c := range p[:n] {
		if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '=' {
			p[j] = c
			j++
		}
	}
	return j, err
}
