package reformime

import (
	"encoding/base64"
	"fmt"
	"strings"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/htmlindex"
	"golang.org/x/text/encoding/ianaindex"

	"postern/mailbox/mime"
)

// headerOption runs -h, -H, -o or -O on v and prints the result.
func (r *runner) headerOption(opt byte, v string) {
	var s string
	switch opt {
	case 'h':
		s = fromUTF8(r.opt.charset, decodeWords(v, r.opt.charset))
	case 'H':
		s = fromUTF8(r.opt.charset, joinAddresses(decodeAddresses(v, r.opt.charset), ", \n", " \n"))
	case 'o':
		s = encodeText(v, r.opt.charset)
	case 'O':
		s = joinAddresses(encodeAddresses(v, r.opt.charset), ",\n  ", "\n  ")
	}
	fmt.Fprintln(r.out, s)
}

func lookupCharset(name string) encoding.Encoding {
	if enc, err := ianaindex.MIME.Encoding(name); err == nil && enc != nil {
		return enc
	}
	if enc, err := htmlindex.Get(name); err == nil && enc != nil {
		return enc
	}
	return nil
}

func isUTF8Name(cs string) bool {
	switch strings.ToLower(cs) {
	case "utf-8", "utf8", "us-ascii", "ascii", "ansi_x3.4-1968":
		return true
	}
	return false
}

// fromUTF8 converts UTF-8 text to charset; what cannot be converted is
// left as it is.
func fromUTF8(charset, s string) string {
	if isUTF8Name(charset) {
		return s
	}
	enc := lookupCharset(charset)
	if enc == nil {
		return s
	}
	out, err := enc.NewEncoder().String(s)
	if err != nil {
		return s
	}
	return out
}

// decodeWords decodes the RFC 2047 encoded-words in an unstructured value
// to UTF-8. Blanks between two encoded-words go (RFC 2047 6.2); a word in
// a charset that is not known is decoded as it is, after a note, as
// Courier writes it.
func decodeWords(v, target string) string {
	var b strings.Builder
	pendingSpace := ""
	lastEncoded := false
	for i := 0; i < len(v); {
		if strings.HasPrefix(v[i:], "=?") {
			if text, n, ok := decodeWord(v[i:], target); ok {
				if !lastEncoded {
					b.WriteString(pendingSpace)
				}
				pendingSpace = ""
				b.WriteString(text)
				lastEncoded = true
				i += n
				continue
			}
		}
		c := v[i]
		if c == ' ' || c == '\t' || c == '\r' || c == '\n' {
			pendingSpace += string(c)
			i++
			continue
		}
		// Encoded-words are found anywhere, even glued to other text or
		// inside quotes, as Courier finds them.
		b.WriteString(pendingSpace)
		pendingSpace = ""
		b.WriteByte(c)
		lastEncoded = false
		i++
	}
	b.WriteString(pendingSpace)
	return b.String()
}

// decodeWord decodes one "=?charset?B|Q?text?=" at the start of s.
func decodeWord(s, target string) (string, int, bool) {
	// An encoded-word longer than this is not looked for, so that a value
	// full of stray "=?" costs linear time (RFC 2047 2 allows 75).
	if len(s) > maxEncodedWord {
		s = s[:maxEncodedWord]
	}
	rest := s[2:]
	q1 := strings.IndexByte(rest, '?')
	if q1 < 0 || q1+2 >= len(rest) || rest[q1+2] != '?' {
		return "", 0, false
	}
	charset := rest[:q1]
	if i := strings.IndexByte(charset, '*'); i >= 0 {
		charset = charset[:i] // RFC 2231 language
	}
	enc := rest[q1+1]
	text := rest[q1+3:]
	end := strings.Index(text, "?=")
	if end < 0 {
		return "", 0, false
	}
	text = text[:end]
	var raw []byte
	switch enc {
	case 'B', 'b':
		raw = decodeBase64([]byte(text))
	case 'Q', 'q':
		raw = decodeQP([]byte(strings.ReplaceAll(text, "_", " ")))
	default:
		return "", 0, false
	}
	n := 2 + q1 + 3 + end + 2
	if !isUTF8Name(charset) && lookupCharset(charset) == nil {
		return "[unknown character set: " + charset + " -> " + target + "]", n, true
	}
	return mime.ToUTF8(charset, raw), n, true
}

// needsEncoding says whether a word must become an encoded-word: 8-bit or
// control bytes, or characters that would make it look like one.
func needsEncoding(w string) bool {
	for i := 0; i < len(w); i++ {
		c := w[i]
		if c >= 0x7f || c < 0x20 || c == '_' || c == '=' || c == '?' || c == '"' {
			return true
		}
	}
	return false
}

// encodeText is -o: runs of words that need it become encoded-words in
// charset, Q or B, whichever is shorter; blanks between words stay.
func encodeText(v, charset string) string {
	type word struct {
		text   string
		space  bool
		encode bool
	}
	var words []word
	for i := 0; i < len(v); {
		j := i
		space := v[i] == ' ' || v[i] == '\t'
		for j < len(v) && (v[j] == ' ' || v[j] == '\t') == space {
			j++
		}
		words = append(words, word{text: v[i:j], space: space, encode: !space && needsEncoding(v[i:j])})
		i = j
	}
	var b strings.Builder
	for i := 0; i < len(words); i++ {
		if !words[i].encode {
			b.WriteString(words[i].text)
			continue
		}
		// Join the following words that need encoding, with the blanks
		// between them.
		run := words[i].text
		k := i
		for k+2 < len(words) && words[k+1].space && words[k+2].encode {
			run += words[k+1].text + words[k+2].text
			k += 2
		}
		b.WriteString(encodedWords(run, charset))
		i = k
	}
	return b.String()
}

// maxEncodedWord bounds the encoded-words decodeWord finds.
const maxEncodedWord = 4096

// maxWordText bounds the text of one encoded-word, so that none is longer
// than RFC 2047 2's 75 characters.
const maxWordText = 75

// encodedWords encodes s as one or more encoded-words, split on UTF-8
// character boundaries.
func encodedWords(s, charset string) string {
	prefixLen := len("=?" + charset + "?B?" + "?=")
	var parts []string
	for s != "" {
		n := len(s)
		for n > 0 && prefixLen+min(qLen(s[:n]), b64Len(n)) > maxWordText {
			n--
			for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 {
				n--
			}
		}
		if n == 0 {
			n = len(s)
		}
		parts = append(parts, encodeWord(s[:n], charset))
		s = s[n:]
	}
	return strings.Join(parts, " ")
}

func b64Len(n int) int { return (n + 2) / 3 * 4 }

func qChar(c byte) bool {
	return c >= 0x21 && c < 0x7f && c != '=' && c != '?' && c != '_' && c != '"'
}

func qLen(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		if qChar(s[i]) || s[i] == ' ' {
			n++
		} else {
			n += 3
		}
	}
	return n
}

func encodeWord(s, charset string) string {
	if qLen(s) < b64Len(len(s)) {
		var b strings.Builder
		for i := 0; i < len(s); i++ {
			switch c := s[i]; {
			case c == ' ':
				b.WriteByte('_')
			case qChar(c):
				b.WriteByte(c)
			default:
				fmt.Fprintf(&b, "=%02X", c)
			}
		}
		return "=?" + charset + "?Q?" + b.String() + "?="
	}
	return "=?" + charset + "?B?" + base64.StdEncoding.EncodeToString([]byte(s)) + "?="
}

// splitAddresses splits an address list at the commas outside quotes,
// comments and angle brackets, and after a group's ":".
func splitAddresses(v string) []string {
	var out []string
	depth, angle, quoted := 0, 0, false
	start := 0
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case quoted:
			if c == '\\' {
				i++
			} else if c == '"' {
				quoted = false
			}
		case c == '"':
			quoted = true
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case depth > 0:
		case c == '<':
			angle++
		case c == '>' && angle > 0:
			angle--
		case angle > 0:
		case c == ',':
			out = append(out, strings.TrimSpace(v[start:i])+",")
			start = i + 1
		case c == ':':
			out = append(out, strings.TrimSpace(v[start:i+1]))
			start = i + 1
		}
	}
	if s := strings.TrimSpace(v[start:]); s != "" {
		out = append(out, s)
	}
	for i, s := range out {
		out[i] = strings.TrimSpace(s)
	}
	return out
}

// phrase splits "Name <addr>" into the name (unquoted) and the rest.
func phrase(a string) (name, rest string, ok bool) {
	lt := strings.LastIndexByte(a, '<')
	if lt <= 0 {
		return "", a, false
	}
	name = strings.TrimSpace(a[:lt])
	if len(name) >= 2 && name[0] == '"' && name[len(name)-1] == '"' {
		name = strings.ReplaceAll(name[1:len(name)-1], `\"`, `"`)
	}
	return name, a[lt:], true
}

// quoteName quotes a display name when it holds specials (RFC 5322 3.2.3).
func quoteName(n string) string {
	if strings.ContainsAny(n, `()<>[]:;@\,."`) {
		return `"` + strings.ReplaceAll(n, `"`, `\"`) + `"`
	}
	return n
}

// decodeAddresses is -H: each address on its line, names decoded.
func decodeAddresses(v, target string) []string {
	var out []string
	for _, a := range splitAddresses(v) {
		if name, rest, ok := phrase(strings.TrimSuffix(a, ",")); ok {
			s := quoteName(decodeWords(name, target)) + " " + rest
			if strings.HasSuffix(a, ",") {
				s += ","
			}
			out = append(out, s)
			continue
		}
		out = append(out, decodeWords(a, target))
	}
	return joinFix(out)
}

// encodeAddresses is -O: names encoded where needed, quotes dropped when
// the name is made of atoms.
func encodeAddresses(v, charset string) []string {
	var out []string
	for _, a := range splitAddresses(v) {
		if name, rest, ok := phrase(strings.TrimSuffix(a, ",")); ok {
			var n string
			if needsEncoding(name) {
				n = encodeText(name, charset)
			} else {
				n = quoteName(name)
			}
			s := n + " " + rest
			if strings.HasSuffix(a, ",") {
				s += ","
			}
			out = append(out, s)
			continue
		}
		out = append(out, a)
	}
	return joinFix(out)
}

// joinFix drops the commas splitAddresses kept, for the caller's join.
func joinFix(items []string) []string {
	for i, s := range items {
		items[i] = strings.TrimSuffix(s, ",")
	}
	return items
}

// joinAddresses puts sep between addresses, and afterGroup after a group's
// "name:".
func joinAddresses(items []string, sep, afterGroup string) string {
	var b strings.Builder
	for i, s := range items {
		b.WriteString(s)
		if i == len(items)-1 {
			break
		}
		if strings.HasSuffix(s, ":") {
			b.WriteString(afterGroup)
		} else {
			b.WriteString(sep)
		}
	}
	return b.String()
}
