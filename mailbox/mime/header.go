package mime

import (
	"bytes"
	"fmt"
	"io"
	"strings"
)

// maxHeaderFields bounds how many fields of one header are kept. A header
// with more fields is still consumed (offsets stay exact), the extra fields
// are just not looked at.
const maxHeaderFields = 2000

// maxHeaderBytes bounds the header bytes kept per part for field parsing.
const maxHeaderBytes = 1 << 20

// Field is one header field as it appears in the message.
type Field struct {
	// Name is the field name as written (compare with strings.EqualFold).
	Name string
	// Raw is the whole field as written: name, colon, value and every
	// continuation line, each with its original line ending.
	Raw string
	// Value is the unfolded value (RFC 5322 2.2.3: line breaks before
	// whitespace removed), with surrounding whitespace trimmed. It is not
	// RFC 2047-decoded; see DecodeHeaderValue.
	Value string
}

// Header is a message or MIME part header: its fields in message order.
// Lines that are not fields (no colon, or a continuation line before any
// field) are skipped, as RFC 5322 gives them no meaning.
type Header struct {
	fields []Field
}

// Fields returns the fields in message order. The slice must not be modified.
func (h Header) Fields() []Field { return h.fields }

// Get returns the unfolded value of the first field named name
// (case-insensitive), or "" if there is none.
func (h Header) Get(name string) string {
	for i := range h.fields {
		if strings.EqualFold(h.fields[i].Name, name) {
			return h.fields[i].Value
		}
	}
	return ""
}

// Has reports whether a field named name is present, even with an empty
// value.
func (h Header) Has(name string) bool {
	for i := range h.fields {
		if strings.EqualFold(h.fields[i].Name, name) {
			return true
		}
	}
	return false
}

// Values returns the unfolded values of every field named name, in order.
func (h Header) Values(name string) []string {
	var vals []string
	for i := range h.fields {
		if strings.EqualFold(h.fields[i].Name, name) {
			vals = append(vals, h.fields[i].Value)
		}
	}
	return vals
}

// ParseHeader reads the header that occupies [start, end) of r, typically
// a Part's HeaderStart and BodyStart.
func ParseHeader(r io.ReaderAt, start, end int64) (Header, error) {
	if end < start {
		return Header{}, fmt.Errorf("mime: parse header: bad range %d-%d", start, end)
	}
	n := min(end-start, maxHeaderBytes)
	buf := make([]byte, n)
	got, err := r.ReadAt(buf, start)
	if err != nil && (err != io.EOF || int64(got) < n) {
		return Header{}, fmt.Errorf("mime: parse header at %d: %w", start, err)
	}
	return parseHeaderBytes(buf[:got]), nil
}

// parseHeaderBytes splits raw header bytes (possibly ending with the blank
// line) into fields.
func parseHeaderBytes(raw []byte) Header {
	var h Header
	var cur []byte // raw bytes of the field being collected
	flush := func() {
		if cur == nil {
			return
		}
		if f, ok := makeField(cur); ok && len(h.fields) < maxHeaderFields {
			h.fields = append(h.fields, f)
		}
		cur = nil
	}
	for len(raw) > 0 {
		i := bytes.IndexByte(raw, '\n')
		var line []byte
		if i < 0 {
			line, raw = raw, nil
		} else {
			line, raw = raw[:i+1], raw[i+1:]
		}
		content := bytes.TrimRight(line, "\r\n")
		if len(content) == 0 {
			break // the blank line ending the header
		}
		if (content[0] == ' ' || content[0] == '\t') && cur != nil {
			cur = cur[:len(cur)+len(line)] // continuation lines follow in the same buffer
			continue
		}
		flush()
		cur = line
	}
	flush()
	return h
}

// makeField builds a Field from the raw bytes of one field (first line plus
// continuation lines, which are contiguous in the input).
func makeField(raw []byte) (Field, bool) {
	colon := bytes.IndexByte(raw, ':')
	if colon <= 0 {
		return Field{}, false
	}
	name := bytes.TrimRight(raw[:colon], " \t")
	if len(name) == 0 || bytes.ContainsAny(name, " \t\r\n") {
		return Field{}, false
	}
	return Field{
		Name:  string(name),
		Raw:   string(raw),
		Value: unfold(raw[colon+1:]),
	}, true
}

// unfold removes the line breaks of a folded value (RFC 5322 2.2.3) and
// trims surrounding whitespace. A bare CR or LF not followed by whitespace
// (broken input) is also removed rather than kept.
func unfold(v []byte) string {
	if bytes.IndexAny(v, "\r\n") < 0 {
		return string(bytes.Trim(v, " \t"))
	}
	var b strings.Builder
	b.Grow(len(v))
	for _, c := range v {
		if c == '\r' || c == '\n' {
			continue
		}
		b.WriteByte(c)
	}
	return strings.Trim(b.String(), " \t")
}
