package mime

import (
	"fmt"
	"io"
	"strings"
)

// MaxText bounds the decoded text Text returns: SEARCH over the first
// 16 MiB of a message's text is what any client can expect.
const MaxText = 16 << 20

// Text returns the decoded text of every text/* leaf under p (including
// inside embedded messages), in order, separated by newlines: the
// Content-Transfer-Encoding is undone (quoted-printable, base64, both
// leniently), and the charset converted to UTF-8 (unknown charsets are
// passed through). It is meant for SEARCH BODY/TEXT and never returns more
// than MaxText bytes. An error means r failed.
func (p *Part) Text(r io.ReaderAt) (string, error) {
	var b strings.Builder
	err := p.appendText(r, &b)
	return b.String(), err
}

func (p *Part) appendText(r io.ReaderAt, b *strings.Builder) error {
	if b.Len() >= MaxText {
		return nil
	}
	switch {
	case p.Message != nil:
		return p.Message.appendText(r, b)
	case len(p.Children) > 0:
		for _, c := range p.Children {
			if err := c.appendText(r, b); err != nil {
				return err
			}
		}
		return nil
	case p.Type != "text" || p.Truncated:
		return nil
	}
	room := MaxText - b.Len()
	// Encoded text is at most ~1.4x its decoded size (QP up to 3x); read
	// a bounded slice so a huge part costs no more than MaxText.
	n := min(p.End-p.BodyStart, int64(room)*3+1024)
	raw, err := readRange(r, p.BodyStart, p.BodyStart+n)
	if err != nil {
		return fmt.Errorf("mime: text: %w", err)
	}
	var data []byte
	switch p.Encoding {
	case "QUOTED-PRINTABLE":
		data = decodeQuotedPrintable(raw)
	case "BASE64":
		data = decodeBase64Lenient(raw)
	default:
		data = raw
	}
	if b.Len() > 0 {
		b.WriteByte('\n')
	}
	text := toUTF8(paramValue(p.Params, "charset"), data)
	if len(text) > room {
		text = text[:room]
	}
	b.WriteString(text)
	return nil
}

// decodeQuotedPrintable decodes RFC 2045 6.7 quoted-printable leniently:
// soft line breaks with CRLF or bare LF (and trailing padding before them),
// and an "=" that starts no valid escape is kept as text, as readers do.
func decodeQuotedPrintable(s []byte) []byte {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '=' {
			out = append(out, c)
			continue
		}
		// "=XX"
		if i+2 < len(s) {
			hi, ok1 := unhex(s[i+1])
			lo, ok2 := unhex(s[i+2])
			if ok1 && ok2 {
				out = append(out, hi<<4|lo)
				i += 2
				continue
			}
		}
		// Soft line break: "=" then optional whitespace then [CR]LF or EOF.
		j := i + 1
		for j < len(s) && (s[j] == ' ' || s[j] == '\t') {
			j++
		}
		if j == len(s) {
			i = j - 1
			continue
		}
		if s[j] == '\r' && j+1 < len(s) && s[j+1] == '\n' {
			i = j + 1
			continue
		}
		if s[j] == '\n' || s[j] == '\r' {
			i = j
			continue
		}
		out = append(out, c)
	}
	return out
}
