package sieve

import (
	"bytes"
	"io"
	stdmime "mime"
	"strings"
	"unicode/utf8"

	gomessage "github.com/emersion/go-message"
)

// The MIME part tree of RFC 5703: foreverypart walks it, the :mime tests
// read the header of its parts, extracttext the text of one.

// mimePart is one MIME entity of the message, the message itself first.
// The parts are kept in pre-order, so the descendants of part i are
// parts[i+1 : parts[i].end].
type mimePart struct {
	raw    []byte   // the entity: its header and body, as in the message
	head   *message // its header fields and undecoded body
	ctype  string   // "type/subtype", lower case; text/plain when missing
	depth  int
	end    int
	text   string // the decoded text, for extracttext
	decode bool   // text holds the decoded text
}

// loop is one running foreverypart.
type loop struct {
	name string
	part int // the part the block runs for now
}

// tree returns the message's MIME parts, building them once (again after
// editheader changed the header).
func (r *run) tree(p Pos) ([]mimePart, error) {
	if r.parts != nil && r.partsGen == r.msg.gen {
		return r.parts, nil
	}
	raw := r.msg.bytes(r.env.Message)
	r.parts = r.parts[:0]
	r.addPart(raw, 0, "text/plain")
	r.partsGen = r.msg.gen
	return r.parts, r.step(p, len(r.parts))
}

// addPart adds the entity raw and, for a multipart or message/rfc822,
// its parts (RFC 2046 5). A multipart whose boundary never appears is one
// part: broken MIME is read as well as it can be, never an error.
func (r *run) addPart(raw []byte, depth int, defaultType string) {
	head := newMessage(raw)
	ctype, params := defaultType, map[string]string(nil)
	if v, ok := head.first("Content-Type"); ok {
		if t, p, ok := parseStructured(v); ok && strings.Contains(t, "/") {
			ctype, params = t, p
		}
	}
	// Reading the part costs a step per 4 KiB and per 16 fields.
	r.msg.work += len(head.fields) + len(raw)>>8
	i := len(r.parts)
	r.parts = append(r.parts, mimePart{raw: raw, head: head, ctype: ctype, depth: depth})
	if depth < maxBodyDepth {
		switch {
		case strings.HasPrefix(ctype, "multipart/"):
			childType := "text/plain"
			if ctype == "multipart/digest" {
				childType = "message/rfc822" // RFC 2046 5.1.5
			}
			for _, body := range splitMultipart(head.body, params["boundary"]) {
				if len(r.parts) >= maxBodyParts {
					break
				}
				r.addPart(body, depth+1, childType)
			}
		case ctype == "message/rfc822" && len(r.parts) < maxBodyParts && !encodedBody(head):
			r.addPart(head.body, depth+1, "text/plain")
		}
	}
	r.parts[i].end = len(r.parts)
}

// encodedBody: a message/rfc822 body in base64 or quoted-printable is not
// read as a message (RFC 2046 5.2.1 forbids it; it is broken MIME).
func encodedBody(m *message) bool {
	cte, _ := m.first("Content-Transfer-Encoding")
	cte = strings.ToLower(strings.TrimSpace(cte))
	return cte == "base64" || cte == "quoted-printable"
}

// splitMultipart returns the body parts between the boundary delimiter
// lines of a multipart body (RFC 2046 5.1.1); the line end before a
// delimiter belongs to it. nil when the boundary is empty or no delimiter
// line is found. A missing close delimiter ends the last part at the end.
func splitMultipart(body []byte, boundary string) [][]byte {
	if boundary == "" {
		return nil
	}
	delim := []byte("--" + boundary)
	var parts [][]byte
	start := -1 // where the current part's content starts
	for off := 0; off < len(body); {
		lineEnd := bytes.IndexByte(body[off:], '\n')
		next := len(body)
		if lineEnd >= 0 {
			next = off + lineEnd + 1
		}
		line := body[off:next]
		if bytes.HasPrefix(line, delim) {
			rest := bytes.TrimRight(line[len(delim):], " \t\r\n")
			closing := bytes.Equal(rest, []byte("--"))
			if closing || len(rest) == 0 {
				if start >= 0 {
					end := off
					// The CRLF before the delimiter is part of it.
					if end > start && body[end-1] == '\n' {
						end--
						if end > start && body[end-1] == '\r' {
							end--
						}
					}
					parts = append(parts, body[start:end])
				}
				if closing {
					return parts
				}
				start = next
			}
		}
		off = next
	}
	if start >= 0 && start <= len(body) {
		parts = append(parts, body[start:])
	}
	return parts
}

// parseStructured splits a MIME structured field ("type/subtype; a=b",
// "inline; filename=x") into its lower-case value and parameters, RFC
// 2231 continuations and charsets decoded. Trailing semicolons are
// allowed; a value with broken parameters keeps its value.
func parseStructured(v string) (string, map[string]string, bool) {
	v = strings.TrimRight(strings.TrimSpace(v), "; \t")
	t, params, err := stdmime.ParseMediaType(v)
	if err != nil {
		value, _, _ := strings.Cut(v, ";")
		value = strings.ToLower(strings.TrimSpace(value))
		if value == "" {
			return "", nil, false
		}
		return value, nil, true
	}
	return t, params, true
}

// currentPart is the part the :mime tests and extracttext look at: the
// innermost loop's, or the whole message outside a loop.
func (r *run) currentPart() int {
	if len(r.loops) == 0 {
		return 0
	}
	return r.loops[len(r.loops)-1].part
}

// foreverypart runs the block once for every MIME part (RFC 5703 3): the
// outermost loop for the message and all its parts in pre-order, a loop
// inside another for the parts inside the other's current one. Each part
// costs a step.
func (r *run) foreverypart(n *node, f *frame) (control, error) {
	if len(r.loops) >= maxLoopNesting {
		return ctlStop, limitErrorf(n.pos, "foreverypart loops nested more than %d deep", maxLoopNesting)
	}
	parts, err := r.tree(n.pos)
	if err != nil {
		return ctlStop, err
	}
	first, end := 0, len(parts)
	if len(r.loops) > 0 {
		cur := r.currentPart()
		first, end = cur+1, parts[cur].end
	}
	name := ""
	if p := n.tags["name"]; p != nil {
		name = p.strs[0].s
	}
	r.loops = append(r.loops, loop{name: name})
	defer func() { r.loops = r.loops[:len(r.loops)-1] }()
	for i := first; i < end; i++ {
		if err := r.step(n.pos, 1); err != nil {
			return ctlStop, err
		}
		r.loops[len(r.loops)-1].part = i
		ctl, err := r.execBlock(n.block, f)
		if err != nil {
			return ctlStop, err
		}
		switch {
		case ctl == ctlBreak && (r.breakTo == "" || r.breakTo == name):
			r.breakTo = ""
			return ctlNext, nil
		case ctl != ctlNext:
			return ctl, nil // stop, return, or a break of an outer loop
		}
		// editheader may have rebuilt the tree: keep to its bounds.
		if parts, err = r.tree(n.pos); err != nil {
			return ctlStop, err
		}
		end = min(end, len(parts))
	}
	return ctlNext, nil
}

// mimeHeaders returns the header of the parts a :mime test looks at: the
// current part, and with :anychild every part inside it too (RFC 5703 4).
func (r *run) mimeHeaders(n *node) ([]*message, error) {
	parts, err := r.tree(n.pos)
	if err != nil {
		return nil, err
	}
	cur := r.currentPart()
	last := cur + 1
	if n.has("anychild") {
		last = parts[cur].end
	}
	out := make([]*message, 0, last-cur)
	for i := cur; i < last; i++ {
		out = append(out, parts[i].head)
	}
	if err := r.step(n.pos, len(out)); err != nil {
		return nil, err
	}
	if cur == 0 {
		out[0] = r.msg // the top level is the message, as editheader left it
	}
	return out, nil
}

// mimeFields returns the fields named by a test's header names in the
// parts :mime selects, :index applied per part and name.
func (r *run) mimeFields(n *node, f *frame) ([]*field, error) {
	names, err := r.expandParam(n.args[0], f)
	if err != nil {
		return nil, err
	}
	heads, err := r.mimeHeaders(n)
	if err != nil {
		return nil, err
	}
	var out []*field
	for _, h := range heads {
		for _, name := range names {
			out = append(out, selectFields(n, h.values(name))...)
		}
		r.chargeHead(h)
	}
	return out, nil
}

// chargeHead moves the fields a part's header scanned onto the run's
// account (the message's own header charges itself).
func (r *run) chargeHead(h *message) {
	if h != r.msg {
		r.msg.work += h.work
		h.work = 0
	}
}

// mimeValues turns header fields into the values a header test compares:
// with :type, :subtype, :contenttype or :param the pieces of the
// structured value (RFC 5703 4.1), else the decoded value.
func mimeValues(n *node, fields []*field, params []string) []string {
	values := make([]string, 0, len(fields))
	for _, fl := range fields {
		switch {
		case n.has("type"), n.has("subtype"), n.has("contenttype"), n.has("param"):
		default:
			values = append(values, fl.decoded())
			continue
		}
		value, p, ok := parseStructured(fl.unfolded())
		if !ok {
			continue
		}
		typ, sub, _ := strings.Cut(value, "/")
		switch {
		case n.has("type"):
			values = append(values, typ)
		case n.has("subtype"):
			values = append(values, sub)
		case n.has("contenttype"):
			values = append(values, value)
		default:
			for _, name := range params {
				if v, ok := p[strings.ToLower(name)]; ok {
					values = append(values, v)
				}
			}
		}
	}
	return values
}

// existsMIME: with :mime, true when the current part (with :anychild, any
// part inside it) has every named field.
func (r *run) existsMIME(n *node, f *frame) (bool, error) {
	names, err := r.expandParam(n.args[0], f)
	if err != nil {
		return false, err
	}
	heads, err := r.mimeHeaders(n)
	if err != nil {
		return false, err
	}
	for _, h := range heads {
		all := true
		for _, name := range names {
			if _, ok := h.first(name); !ok {
				all = false
				break
			}
		}
		r.chargeHead(h)
		if all {
			return true, nil
		}
	}
	return false, nil
}

// partText is the text of a part for extracttext (RFC 5703 7): a text/*
// leaf decoded (transfer encoding and charset), HTML reduced to its text;
// "" for any other part.
func (r *run) partText(i int) string {
	p := &r.parts[i]
	if p.decode {
		return p.text
	}
	p.decode = true
	if !strings.HasPrefix(p.ctype, "text/") {
		return ""
	}
	p.text = string(p.head.body)
	if e, err := gomessage.Read(bytes.NewReader(p.raw)); e != nil && (err == nil || gomessage.IsUnknownCharset(err)) {
		if body, err := io.ReadAll(e.Body); err == nil {
			p.text = string(body)
		}
	}
	if p.ctype == "text/html" {
		p.text = stripTags(p.text)
	}
	return p.text
}

// extracttext stores the current part's text, the first :first characters
// of it, with the modifiers of set applied, in a variable.
func (r *run) extracttext(n *node, f *frame) error {
	if _, err := r.tree(n.pos); err != nil {
		return err
	}
	text := r.partText(r.currentPart())
	if err := r.step(n.pos, len(text)>>12); err != nil {
		return err
	}
	if p := n.tags["first"]; p != nil && int64(utf8.RuneCountInString(text)) > p.num {
		text = string([]rune(text)[:p.num])
	}
	if len(text) > maxVariableSize {
		// Cut at a character boundary rather than fail: a part's text is
		// not the script's fault.
		text = strings.ToValidUTF8(text[:maxVariableSize], "")
	}
	return r.setVariable(n.pos, n.args[0].strs[0].s, applyModifiers(n, text), f)
}
