package mime

import (
	"bytes"
	"fmt"
	"io"
	"strings"
)

// SectionSpec names a BODY[...] section (RFC 3501 6.4.5).
type SectionSpec struct {
	Path      []int    // part numbers; empty = whole message
	Specifier string   // "", "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME"
	Fields    []string // for HEADER.FIELDS[.NOT]
}

// Find returns the part that the section part numbers path name, or nil.
// Numbering follows RFC 3501 6.4.5: the children of a multipart are
// numbered from 1; a message (the top level, or the message of a
// message/rfc822 part) that is not a multipart has a single part 1, its own
// body; numbers after a message/rfc822 part count in its message. A leaf
// inside a multipart has no sub-parts. An empty path is p itself.
func (p *Part) Find(path []int) *Part {
	cur := p
	isMessage := true // cur is a message (the top level or an embedded one)
	for i, n := range path {
		if n < 1 {
			return nil
		}
		if i > 0 {
			// After a message/rfc822 part, numbers count in its message.
			isMessage = cur.Message != nil
			if isMessage {
				cur = cur.Message
			}
		}
		switch {
		case cur.Type == "multipart" && len(cur.Children) > 0:
			if n > len(cur.Children) {
				return nil
			}
			cur = cur.Children[n-1]
		case isMessage && n == 1:
			// Part 1 of a non-multipart message is its body: the same Part.
		default:
			return nil
		}
	}
	return cur
}

// ErrBadSpecifier is returned by Section for a specifier it does not know.
var ErrBadSpecifier = fmt.Errorf("mime: unknown section specifier")

// Section returns the content of BODY[spec] (RFC 3501 6.4.5): the whole
// message, a header (complete or filtered, always ending with the blank
// line), the text, a part's body or its MIME header. A section that names
// no existing part, or HEADER/TEXT of a part that is not a message/rfc822,
// yields empty content, not an error, as common servers do. The caller
// applies any <start.length> partial range. An error means r failed or the
// specifier is unknown (errors.Is ErrBadSpecifier).
func Section(r io.ReaderAt, root *Part, spec SectionSpec) ([]byte, error) {
	specifier := strings.ToUpper(spec.Specifier)
	switch specifier {
	case "", "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME":
	default:
		return nil, fmt.Errorf("%w %q", ErrBadSpecifier, spec.Specifier)
	}
	part := root.Find(spec.Path)
	if part == nil {
		return []byte{}, nil
	}
	// The message whose HEADER/TEXT is meant: the top level, or the
	// embedded message of a message/rfc822 part.
	msg := part
	if len(spec.Path) > 0 {
		msg = part.Message
	}
	switch specifier {
	case "":
		if len(spec.Path) == 0 {
			return readRange(r, part.HeaderStart, part.End)
		}
		return readRange(r, part.BodyStart, part.End)
	case "MIME":
		if len(spec.Path) == 0 {
			return []byte{}, nil // RFC 3501: MIME needs a part number
		}
		return readRange(r, part.HeaderStart, part.BodyStart)
	case "TEXT":
		if msg == nil {
			return []byte{}, nil
		}
		return readRange(r, msg.BodyStart, msg.End)
	case "HEADER":
		if msg == nil {
			return []byte{}, nil
		}
		return readRange(r, msg.HeaderStart, msg.BodyStart)
	default: // HEADER.FIELDS, HEADER.FIELDS.NOT
		if msg == nil {
			return []byte{}, nil
		}
		raw, err := readRange(r, msg.HeaderStart, msg.BodyStart)
		if err != nil {
			return nil, err
		}
		return filterHeader(raw, spec.Fields, specifier == "HEADER.FIELDS.NOT"), nil
	}
}

// maxSectionRead bounds one read for a section, so a corrupt offset can
// never allocate without limit.
const maxSectionRead = 1 << 31

func readRange(r io.ReaderAt, start, end int64) ([]byte, error) {
	if end <= start {
		return []byte{}, nil
	}
	if end-start > maxSectionRead {
		return nil, fmt.Errorf("mime: section %d-%d: too large", start, end)
	}
	buf := make([]byte, end-start)
	n, err := r.ReadAt(buf, start)
	if err != nil && !(err == io.EOF && n == len(buf)) {
		return nil, fmt.Errorf("mime: read section %d-%d: %w", start, end, err)
	}
	return buf, nil
}

// filterHeader keeps (or, with not, drops) the fields named in names,
// each with its continuation lines, in message order, and ends the result
// with a blank line (RFC 3501 6.4.5: "the header ... including the
// delimiting blank line"). Lines that are not fields are dropped either
// way. The blank line uses CRLF unless the header uses bare LF.
func filterHeader(raw []byte, names []string, not bool) []byte {
	eol := []byte("\r\n")
	if i := bytes.IndexByte(raw, '\n'); i >= 0 && (i == 0 || raw[i-1] != '\r') {
		eol = []byte("\n")
	}
	want := func(name string) bool {
		for _, n := range names {
			if strings.EqualFold(n, name) {
				return !not
			}
		}
		return not
	}
	var out []byte
	keep := false
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
			break
		}
		if content[0] == ' ' || content[0] == '\t' {
			if keep {
				out = append(out, line...)
			}
			continue
		}
		colon := bytes.IndexByte(content, ':')
		keep = false
		if colon > 0 {
			name := string(bytes.TrimRight(content[:colon], " \t"))
			keep = want(name)
		}
		if keep {
			out = append(out, line...)
			if line[len(line)-1] != '\n' {
				out = append(out, eol...) // header cut off without a line end
			}
		}
	}
	return append(out, eol...)
}
