package imap

import (
	"bytes"
	"errors"
	"html"
	"strings"
	"unicode"
	"unicode/utf8"

	"postern/mailbox/maildir"
	"postern/mailbox/mime"
)

// PREVIEW (RFC 8970): a short plain-text abstract of a message, for
// clients' message lists. It is the first text part that is not an
// attachment (text/plain, else text/html with the markup taken out),
// decoded from its transfer encoding and charset, with runs of white
// space made one space, at most previewMaxChars characters. A preview
// never changes, so each is computed once per message file and kept in
// the folder index's memory (objectid.go's derived values).

// previewMaxChars is RFC 8970 3's limit: 256 characters, not octets.
const previewMaxChars = 256

// previewLazyLimit: with PREVIEW (LAZY) a message this big whose preview
// is not cached gets NIL (RFC 8970 3.1: "not readily available"); the
// client asks again without LAZY when it wants the work done.
const previewLazyLimit = 1 << 20

// previewMaxInput bounds the decoded text looked at: enough for a
// preview even behind a long HTML head, and linear work on hostile input.
const previewMaxInput = 256 << 10

// previewModifiers reads PREVIEW's optional "(LAZY)" (RFC 8970 5:
// fetch-att =/ "PREVIEW" [SP "(" preview-mod *(SP preview-mod) ")"]).
// A following "(" that does not start with LAZY is left alone: at the end
// of a FETCH it starts the command's modifiers (RFC 7162 CHANGEDSINCE).
func (d *decoder) previewModifiers(it *fetchItem) error {
	if b, err := d.peek(); err != nil || b != ' ' {
		return nil
	}
	// After a space the line goes on, so these peeks do not wait on a
	// client that has sent all it means to: " (" is followed by at least
	// an atom and ")" in any valid command.
	if b, err := d.br.Peek(2); err != nil || b[1] != '(' {
		return nil
	}
	if b, err := d.br.Peek(6); err != nil || !strings.EqualFold(string(b[2:]), "LAZY") {
		return nil
	}
	d.sp()
	d.readByte() // "("
	for {
		a, err := d.atom()
		if err != nil {
			return err
		}
		if !strings.EqualFold(a, "LAZY") {
			return syntaxErr("unknown PREVIEW modifier %s", truncate(a, 40))
		}
		it.lazy = true
		b, err := d.peek()
		if err != nil {
			return err
		}
		if b == ')' {
			d.readByte()
			return nil
		}
		if err := d.sp(); err != nil {
			return err
		}
	}
}

// preview returns m's preview; ok is false for NIL (the message is gone,
// or LAZY and the preview is not at hand). msg is the message when the
// FETCH loaded it anyway.
func (s *session) preview(m *viewMessage, msg *loadedMessage, lazy bool) (text string, ok bool, err error) {
	ix := s.sel.index
	if p := ix.cachedDerived(m.key).preview; p != nil {
		return *p, true, nil
	}
	if msg == nil || msg.headerOnly || msg.root == nil {
		if m.gone || lazy && m.size > previewLazyLimit {
			return "", false, nil
		}
		msg, err = s.loadMessage(m)
		if errors.Is(err, maildir.ErrNoMessage) {
			return "", false, nil
		}
		if err != nil {
			return "", false, err
		}
	}
	p, err := previewOf(msg.data, msg.root)
	if err != nil {
		return "", false, err
	}
	ix.updateDerived(m.key, func(v *derivedValues) { v.preview = &p })
	return p, true, nil
}

// previewOf computes the preview of the parsed message data.
func previewOf(data []byte, root *mime.Part) (string, error) {
	part := previewPart(root, 0)
	if part == nil {
		return "", nil
	}
	// Only the start of the part is decoded: a copy of it cut where the
	// encoded text (quoted-printable at most 3 octets a character) holds
	// more than previewMaxInput; the lenient decoders take the cut.
	leaf := *part
	leaf.End = min(leaf.End, leaf.BodyStart+3*previewMaxInput)
	text, err := leaf.Text(bytes.NewReader(data))
	if err != nil {
		return "", err
	}
	if len(text) > previewMaxInput {
		text = text[:previewMaxInput]
	}
	if part.Subtype == "html" {
		text = stripHTML(text)
	}
	return collapsePreview(text), nil
}

// previewPart finds the first text/plain or text/html leaf that is not an
// attachment, depth first; embedded messages are not looked into (their
// text is not this message's).
func previewPart(p *mime.Part, depth int) *mime.Part {
	if depth > 32 {
		return nil
	}
	if len(p.Children) > 0 {
		for _, c := range p.Children {
			if found := previewPart(c, depth+1); found != nil {
				return found
			}
		}
		return nil
	}
	if p.Type != "text" || p.Truncated || strings.EqualFold(p.Disposition, "attachment") {
		return nil
	}
	if p.Subtype == "plain" || p.Subtype == "html" || p.Subtype == "" {
		return p
	}
	return nil
}

// stripHTML reduces HTML to its text: tags removed (the content of style
// and script elements with them), character references decoded.
func stripHTML(s string) string {
	var b strings.Builder
	for len(s) > 0 {
		lt := strings.IndexByte(s, '<')
		if lt < 0 {
			b.WriteString(s)
			break
		}
		b.WriteString(s[:lt])
		s = s[lt:]
		for _, skip := range []string{"style", "script", "head"} {
			if len(s) > len(skip)+1 && strings.EqualFold(s[1:1+len(skip)], skip) {
				end := indexFold(s, "</"+skip)
				if end < 0 {
					return html.UnescapeString(b.String()) // unclosed: the rest is markup
				}
				s = s[end:]
				break
			}
		}
		gt := strings.IndexByte(s, '>')
		if gt < 0 {
			break
		}
		b.WriteByte(' ')
		s = s[gt+1:]
	}
	return html.UnescapeString(b.String())
}

// indexFold is strings.Index ignoring ASCII case (byte offsets stay
// those of s, which lower-casing all of s would not promise).
func indexFold(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(sub)], sub) {
			return i
		}
	}
	return -1
}

// collapsePreview makes text a preview: valid UTF-8, no control
// characters, white space runs as one space, trimmed, and at most
// previewMaxChars characters (RFC 8970 3).
func collapsePreview(text string) string {
	var b strings.Builder
	n := 0
	space := false
	for _, r := range text {
		if r == utf8.RuneError || unicode.IsSpace(r) || unicode.IsControl(r) {
			space = b.Len() > 0
			continue
		}
		if space {
			if n+1 >= previewMaxChars {
				break
			}
			b.WriteByte(' ')
			n++
			space = false
		}
		b.WriteRune(r)
		n++
		if n >= previewMaxChars {
			break
		}
	}
	return b.String()
}
