package mime

import (
	"bytes"
	"fmt"
	"io"
	"strings"
)

// Limits that keep a hostile message from costing more than a sane one.
// What lies beyond them is kept as an opaque leaf (see Part.Truncated).
const (
	// MaxDepth is the deepest nesting of multiparts and embedded messages
	// that is parsed into parts.
	MaxDepth = 64
	// MaxParts is the most parts one message is split into.
	MaxParts = 10000
)

// parser holds the state of one Parse call.
type parser struct {
	lr    *lineReader
	parts int
	// boundaries is the stack of enclosing multipart delimiters, innermost
	// last, each already prefixed with "--".
	boundaries [][]byte
	// noEnvelopes: ParseStructure, no Part.Envelope.
	noEnvelopes bool
}

// boundaryMatch is the result of checking a line against the boundary stack.
type boundaryMatch struct {
	level int  // index into parser.boundaries, -1 when not a boundary
	final bool // "--boundary--"
}

// Parse reads the message of size bytes in r and returns its MIME tree. The
// message is read once, front to back, through a buffer; nothing is copied
// but the header fields. Broken MIME is never an error (see the package
// comment); an error means r failed.
func Parse(r io.ReaderAt, size int64) (*Part, error) {
	return parse(r, size, true)
}

// ParseStructure is Parse without the envelopes (Part.Envelope stays
// nil), for callers that only read the parts and their text, such as a
// search index: parsing the address fields is most of the work on small
// messages.
func ParseStructure(r io.ReaderAt, size int64) (*Part, error) {
	return parse(r, size, false)
}

func parse(r io.ReaderAt, size int64, envelopes bool) (*Part, error) {
	p := &parser{lr: newLineReader(r, 0, size), noEnvelopes: !envelopes}
	root := p.parsePart(false, 0)
	if p.lr.err != nil {
		return nil, fmt.Errorf("mime: parse: %w", p.lr.err)
	}
	if envelopes {
		root.Envelope = buildEnvelope(root.Header)
	}
	return root, nil
}

// matchBoundary checks whether line is a boundary line of an enclosing
// multipart. As Courier and Dovecot do, only the start of the line must
// match (RFC 2046 5.1.1 allows transport padding after it, and broken
// mailers add more); when boundaries are prefixes of each other the longest
// match wins, and on a tie the innermost.
func (p *parser) matchBoundary(line []byte) boundaryMatch {
	m := boundaryMatch{level: -1}
	if len(line) < 2 || line[0] != '-' || line[1] != '-' || len(p.boundaries) == 0 {
		return m
	}
	best := -1
	for i := len(p.boundaries) - 1; i >= 0; i-- {
		b := p.boundaries[i]
		if bytes.HasPrefix(line, b) && (best < 0 || len(b) > len(p.boundaries[best])) {
			best = i
		}
	}
	if best < 0 {
		return m
	}
	m.level = best
	m.final = bytes.HasPrefix(line[len(p.boundaries[best]):], []byte("--"))
	return m
}

// parsePart parses one part (header and body) starting at the reader's
// next line. It stops at the end of input or before a line that is an
// enclosing boundary, leaving that line to be read again by the caller.
// digestChild selects the multipart/digest default type.
func (p *parser) parsePart(digestChild bool, depth int) *Part {
	lr := p.lr
	p.parts++
	start := lr.offNext()
	part := &Part{HeaderStart: start}

	// Header: up to and including the first blank line. A message without
	// one (broken) is all header.
	var hdr []byte
	hdrEnd := start
	sawBlank := false
	for lr.next() {
		if lr.isBlank() {
			hdrEnd = lr.start + lr.length
			sawBlank = true
			break
		}
		if p.matchBoundary(lr.line).level >= 0 {
			// A boundary inside the header: the header ends, the body is
			// empty, and the line break before the boundary belongs to it.
			lr.unread()
			break
		}
		if len(hdr) < maxHeaderBytes {
			hdr = append(hdr, lr.line...)
			hdr = append(hdr, '\n')
		}
		hdrEnd = lr.start + lr.length
	}
	part.BodyStart, part.End = hdrEnd, hdrEnd
	if !sawBlank {
		// The header ran to EOF or to a boundary; the body is empty.
		p.closeBody(part, hdrEnd, start, lr.lfBeforeNext())
		part.BodyStart, part.Lines = part.End, 0
	}
	part.Header = parseHeaderBytes(hdr)
	applyHeader(part, part.Header, digestChild)

	switch {
	case !sawBlank:
		// No body at all: the header ran to EOF or to a boundary.
		if part.Type == "multipart" {
			demoteBrokenMultipart(part)
		}
	case part.Type == "multipart":
		boundary := paramValue(part.Params, "boundary")
		switch {
		case boundary == "":
			demoteBrokenMultipart(part)
			p.parseLeafBody(part)
		case depth >= MaxDepth || p.parts >= MaxParts:
			truncate(part)
			p.parseLeafBody(part)
		default:
			p.parseMultipartBody(part, boundary, depth)
		}
	case isEmbeddedMessage(part):
		if depth >= MaxDepth || p.parts >= MaxParts {
			part.Truncated = true
			p.parseLeafBody(part)
			break
		}
		bodyLF := lr.lfBeforeNext()
		msg := p.parsePart(false, depth+1)
		if !p.noEnvelopes {
			msg.Envelope = buildEnvelope(msg.Header)
		}
		part.Message = msg
		part.End = msg.End
		part.Lines = msg.lfEnd - bodyLF
		part.lfEnd = msg.lfEnd
	default:
		p.parseLeafBody(part)
	}
	part.Size = part.End - part.BodyStart
	return part
}

// parseLeafBody consumes a body up to the next enclosing boundary or EOF.
func (p *parser) parseLeafBody(part *Part) {
	lr := p.lr
	bodyLF := lr.lfBeforeNext()
	end := part.BodyStart
	for lr.next() {
		if p.matchBoundary(lr.line).level >= 0 {
			lr.unread()
			break
		}
		end = lr.start + lr.length
	}
	p.closeBody(part, end, part.BodyStart, bodyLF)
}

// skipEpilogue consumes the lines after a close delimiter up to a boundary
// of an enclosing multipart or EOF (RFC 2046 5.1.1: the epilogue is
// ignored) and returns the end of the last line consumed.
func (p *parser) skipEpilogue(own int, end int64) int64 {
	lr := p.lr
	for lr.next() {
		if m := p.matchBoundary(lr.line); m.level >= 0 && m.level < own {
			lr.unread()
			break
		}
		end = lr.start + lr.length
	}
	return end
}

// closeBody ends a body whose last line ends at end. When a boundary
// follows, RFC 2046 5.1.1 gives the line break before it to the boundary,
// so that line break is not part of the body, unless it lies at or before
// floor (the blank line ending a header, or a child part that already
// settled where it ends). Lines counts the LFs left in the body, as Dovecot
// does: a last line without its own line break is not counted.
func (p *parser) closeBody(part *Part, end, floor, bodyLF int64) {
	lr := p.lr
	lfEnd := lr.lfBeforeNext()
	if lr.pushedBack && lr.prevEOL > 0 {
		eol := int64(lr.prevEOL)
		if end == lr.prevEnd && end > floor {
			end -= eol
		}
		if end < lr.prevEnd && end >= lr.prevEnd-eol {
			lfEnd-- // that LF is the boundary's
		}
	}
	part.End = end
	part.Lines = lfEnd - bodyLF
	part.lfEnd = lfEnd
}

// parseMultipartBody splits a multipart body into children (RFC 2046
// 5.1.1): the preamble before the first delimiter and the epilogue after
// the close delimiter are ignored; a missing close delimiter is tolerated.
func (p *parser) parseMultipartBody(part *Part, boundary string, depth int) {
	lr := p.lr
	own := len(p.boundaries)
	p.boundaries = append(p.boundaries, []byte("--"+boundary))
	defer func() { p.boundaries = p.boundaries[:own] }()

	digest := part.Subtype == "digest"
	bodyLF := lr.lfBeforeNext()
	end := part.BodyStart
	floor := part.BodyStart
	found := false
	for lr.next() {
		m := p.matchBoundary(lr.line)
		if m.level == own {
			end = lr.start + lr.length
			found = !m.final
			if m.final {
				// "--b--" before any part: the rest is epilogue.
				end = p.skipEpilogue(own, end)
			}
			break
		}
		if m.level >= 0 {
			lr.unread() // an outer boundary: our body ends here
			break
		}
		end = lr.start + lr.length
	}
	if !found {
		// No delimiter at all: there are no parts, so the body is shown as
		// the text it is.
		demoteBrokenMultipart(part)
		p.closeBody(part, end, part.BodyStart, bodyLF)
		return
	}
	for {
		if p.parts >= MaxParts {
			// Too many parts: the rest of this multipart, delimiters
			// included, becomes one opaque last child.
			last := &Part{HeaderStart: lr.offNext(), BodyStart: lr.offNext(), Truncated: true,
				Type: "application", Subtype: "octet-stream", Encoding: "7BIT"}
			lastLF := lr.lfBeforeNext()
			lastEnd := last.BodyStart
			for lr.next() {
				if m := p.matchBoundary(lr.line); m.level >= 0 && m.level < own {
					lr.unread()
					break
				}
				lastEnd = lr.start + lr.length
			}
			p.closeBody(last, lastEnd, last.BodyStart, lastLF)
			last.Size = last.End - last.BodyStart
			part.Children = append(part.Children, last)
			end, floor = last.End, last.End
			break
		}
		child := p.parsePart(digest, depth+1)
		part.Children = append(part.Children, child)
		end = child.End
		if !lr.next() {
			break // EOF: missing close delimiter, tolerated
		}
		m := p.matchBoundary(lr.line)
		if m.level != own {
			lr.unread() // an outer boundary closes us too
			floor = end
			break
		}
		end = lr.start + lr.length
		if m.final {
			end = p.skipEpilogue(own, end)
			break
		}
	}
	p.closeBody(part, end, floor, bodyLF)
}

// applyHeader fills the content fields of part from its header (RFC 2045,
// RFC 2183, RFC 3066/3282, RFC 2557).
func applyHeader(part *Part, h Header, digestChild bool) {
	part.Type, part.Subtype = "text", "plain"
	if digestChild {
		// RFC 2046 5.1.5: in a digest the default is message/rfc822.
		part.Type, part.Subtype = "message", "rfc822"
	}
	if ct, present := firstValue(h, "Content-Type"); present {
		if t, s, params, ok := parseContentType(ct); ok {
			part.Type, part.Subtype, part.Params = t, s, params
		} else {
			// RFC 2045 5.2: an unparseable Content-Type means text/plain.
			part.Type, part.Subtype = "text", "plain"
		}
	}
	if part.Type == "text" && !hasParam(part.Params, "charset") {
		// RFC 2045 5.2 / RFC 2046 4.1.2: text without a charset is
		// us-ascii; say so, as Dovecot and Courier do in BODYSTRUCTURE.
		part.Params = append(part.Params, Param{Name: "charset", Value: "us-ascii"})
	}
	part.Encoding = "7BIT"
	if cte := strings.TrimSpace(stripComments(h.Get("Content-Transfer-Encoding"))); cte != "" {
		part.Encoding = strings.ToUpper(cte)
	}
	part.ID = h.Get("Content-ID")
	part.Description = h.Get("Content-Description")
	part.MD5 = h.Get("Content-MD5")
	part.Location = h.Get("Content-Location")
	if d := h.Get("Content-Disposition"); d != "" {
		part.Disposition, part.DispParams = parseDisposition(d)
	}
	if l := stripComments(h.Get("Content-Language")); strings.TrimSpace(l) != "" {
		for _, tag := range strings.Split(l, ",") {
			if tag = strings.TrimSpace(tag); tag != "" {
				part.Language = append(part.Language, tag)
			}
		}
	}
}

func firstValue(h Header, name string) (string, bool) {
	for _, f := range h.Fields() {
		if strings.EqualFold(f.Name, name) {
			return f.Value, true
		}
	}
	return "", false
}

func hasParam(params []Param, name string) bool {
	for _, p := range params {
		if strings.EqualFold(p.Name, name) {
			return true
		}
	}
	return false
}

// paramValue returns the value of the named parameter (case-insensitive).
func paramValue(params []Param, name string) string {
	for _, p := range params {
		if strings.EqualFold(p.Name, name) {
			return p.Value
		}
	}
	return ""
}

// isEmbeddedMessage reports whether part's body is a message to parse
// recursively. As Dovecot does, a message/rfc822 whose body is base64 or
// quoted-printable encoded (RFC 2046 5.2.1 forbids it, senders do it
// anyway) is left as an opaque leaf.
func isEmbeddedMessage(part *Part) bool {
	if part.Type != "message" || (part.Subtype != "rfc822" && part.Subtype != "global") {
		return false
	}
	switch part.Encoding {
	case "7BIT", "8BIT", "BINARY":
		return true
	}
	return false
}

// demoteBrokenMultipart turns a multipart without a usable boundary or
// without any part into RFC 2045's default type, so that it renders as a
// valid BODYSTRUCTURE leaf and its text stays searchable.
func demoteBrokenMultipart(part *Part) {
	part.Type, part.Subtype = "text", "plain"
	part.Params = []Param{{Name: "charset", Value: "us-ascii"}}
	part.Children = nil
}

// truncate turns a multipart beyond the parse limits into an opaque leaf.
func truncate(part *Part) {
	part.Type, part.Subtype = "application", "octet-stream"
	part.Params = nil
	part.Truncated = true
}
