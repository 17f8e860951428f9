package milter

import (
	"bytes"
	"fmt"
	"strings"

	"postern/filters"
)

// MaxBody bounds a body a milter sends to replace the message's: more is
// a broken milter, treated as a failure (Config.OnError).
const MaxBody = 64 << 20

// editor applies a milter's header and body changes to the message as
// received, in the order the milter sent them, as libmilter describes
// them: smfi_chgheader's index counts the fields of that name (1 is the
// first), an empty value deletes the field and an index past the last
// adds one; smfi_insheader's index is a position in the header;
// smfi_replacebody's chunks make the new body.
type editor struct {
	header       []field
	body         []byte
	newBody      bytes.Buffer
	bodyReplaced bool
	changed      bool
	changes      int // header fields changed, deleted, inserted
}

func fieldBytes(name, value string) []byte {
	return []byte(name + ": " + normalizeFolding(value) + "\r\n")
}

// change sets the index-th field called name (0 counts as 1) to value, or
// deletes it when value is empty; with fewer such fields, a non-empty
// value is added at the end of the header.
func (e *editor) change(name string, index int, value string) {
	index = max(index, 1)
	for i, f := range e.header {
		if !strings.EqualFold(f.name, name) {
			continue
		}
		if index--; index > 0 {
			continue
		}
		if strings.TrimSpace(value) == "" {
			e.header = append(e.header[:i], e.header[i+1:]...)
		} else {
			e.header[i] = field{name: name, value: value, raw: fieldBytes(name, value)}
		}
		e.changed = true
		e.changes++
		return
	}
	if strings.TrimSpace(value) != "" {
		e.header = append(e.header, field{name: name, value: value, raw: fieldBytes(name, value)})
		e.changed = true
		e.changes++
	}
}

// insert puts a field before the index-th field the milter saw (lines
// that are not fields do not count), or at the end of the header.
func (e *editor) insert(index int, name, value string) {
	at, seen := len(e.header), 0
	for i, f := range e.header {
		if f.name == "" {
			continue
		}
		if seen == index {
			at = i
			break
		}
		seen++
	}
	e.header = append(e.header[:at], append([]field{{name: name, value: value, raw: fieldBytes(name, value)}}, e.header[at:]...)...)
	e.changed = true
	e.changes++
}

// replaceBody adds one chunk of the new body; line ends become CRLF.
func (e *editor) replaceBody(chunk []byte) error {
	if e.newBody.Len()+len(chunk) > MaxBody {
		return fmt.Errorf("the body it sent is over %d bytes", MaxBody)
	}
	e.newBody.Write(chunk)
	e.bodyReplaced, e.changed = true, true
	return nil
}

// message is the rewritten message: the header, the empty line and the
// body, with CRLF line ends throughout what was changed.
func (e *editor) message() []byte {
	body := e.body
	if e.bodyReplaced {
		body = crlf(e.newBody.Bytes())
	}
	var b bytes.Buffer
	b.Grow(len(body) + 64*len(e.header))
	for _, f := range e.header {
		b.Write(f.raw)
		if !bytes.HasSuffix(f.raw, []byte("\n")) {
			b.WriteString("\r\n")
		}
	}
	b.WriteString("\r\n")
	b.Write(body)
	if len(body) > 0 && !bytes.HasSuffix(body, []byte("\r\n")) {
		b.WriteString("\r\n")
	}
	return b.Bytes()
}

func (e *editor) summary() string {
	var parts []string
	if e.changes > 0 {
		parts = append(parts, fmt.Sprintf("%d header field(s) changed", e.changes))
	}
	if e.bodyReplaced {
		parts = append(parts, "body replaced")
	}
	return strings.Join(parts, ", ")
}

// crlf makes every line end in b a CRLF.
func crlf(b []byte) []byte {
	var out bytes.Buffer
	out.Grow(len(b) + len(b)/32)
	for len(b) > 0 {
		i := bytes.IndexAny(b, "\r\n")
		if i < 0 {
			out.Write(b)
			break
		}
		out.Write(b[:i])
		out.WriteString("\r\n")
		if b[i] == '\r' && i+1 < len(b) && b[i+1] == '\n' {
			i++
		}
		b = b[i+1:]
	}
	return out.Bytes()
}

// envelopeAddress reads an address a milter gives for the envelope
// ("<user@example.org>" or bare). The null sender is allowed only as a
// sender; spaces, controls and a missing domain are refused.
func envelopeAddress(s string, sender bool) (string, bool) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "<") && strings.HasSuffix(s, ">") {
		s = s[1 : len(s)-1]
	}
	if s == "" {
		return "", sender
	}
	if len(s) > 512 || strings.ContainsAny(s, "<> \t\r\n\x00") {
		return "", false
	}
	at := strings.LastIndexByte(s, '@')
	if at <= 0 || at == len(s)-1 {
		return "", false
	}
	return s, true
}

func envelope(e *filters.EnvelopeChange) *filters.EnvelopeChange {
	if e == nil {
		return &filters.EnvelopeChange{}
	}
	return e
}
