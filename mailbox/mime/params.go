package mime

import (
	"sort"
	"strconv"
	"strings"
)

// maxParams bounds the parameters kept per header field.
const maxParams = 100

// parseContentType splits a Content-Type value (RFC 2045 5.1) into lower-case
// type and subtype and its parameters. ok is false when the type/subtype is
// unusable, in which case RFC 2045 5.2 says to treat the part as text/plain.
func parseContentType(v string) (typ, sub string, params []Param, ok bool) {
	v = stripComments(v)
	head, rest, _ := strings.Cut(v, ";")
	t, s, found := strings.Cut(strings.TrimSpace(head), "/")
	t, s = strings.TrimSpace(t), strings.TrimSpace(s)
	if !found || !isToken(t) || !isToken(s) {
		return "", "", nil, false
	}
	return strings.ToLower(t), strings.ToLower(s), parseParams(rest), true
}

// parseDisposition splits a Content-Disposition value (RFC 2183).
func parseDisposition(v string) (disp string, params []Param) {
	v = stripComments(v)
	head, rest, _ := strings.Cut(v, ";")
	head = strings.TrimSpace(head)
	if !isToken(head) {
		return "", nil
	}
	return strings.ToLower(head), parseParams(rest)
}

// rawParam is one attribute=value pair before RFC 2231 processing.
type rawParam struct {
	name, value string
}

// parseParams reads "; a=b; c="d"" leniently: junk between parameters is
// skipped, an unterminated quoted string runs to the end, and a parameter
// without "=" is dropped.
func parseParams(s string) []Param {
	var raws []rawParam
	for len(s) > 0 && len(raws) < maxParams {
		s = strings.TrimLeft(s, " \t\r\n;")
		if s == "" {
			break
		}
		end := strings.IndexAny(s, "=;")
		if end < 0 {
			break
		}
		if s[end] == ';' {
			s = s[end:] // attribute without value: skip it
			continue
		}
		name := strings.TrimSpace(s[:end])
		s = strings.TrimLeft(s[end+1:], " \t\r\n")
		var value string
		if strings.HasPrefix(s, "\"") {
			value, s = readQuoted(s)
		} else {
			stop := strings.IndexByte(s, ';')
			if stop < 0 {
				stop = len(s)
			}
			value, s = strings.TrimSpace(s[:stop]), s[stop:]
		}
		if name != "" {
			raws = append(raws, rawParam{name, value})
		}
	}
	return combineRFC2231(raws)
}

// readQuoted reads a quoted-string at the start of s (RFC 5322 3.2.4) and
// returns its content without quotes and backslash escapes, and the rest.
func readQuoted(s string) (value, rest string) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			if i+1 < len(s) {
				i++
				b.WriteByte(s[i])
			}
		case '"':
			return b.String(), s[i+1:]
		case '\r', '\n':
			// folding inside a quoted string: drop the line break
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), ""
}

// combineRFC2231 applies RFC 2231: "name*0", "name*1*"... continuations are
// joined in section order, "name*" and "name*0*" values are percent-decoded
// and converted from their declared charset to UTF-8. Each parameter keeps
// the position of its first appearance; when a plain and an RFC 2231 form of
// the same name are both present, the RFC 2231 value wins (RFC 2231 4.1
// suggests senders give both for old readers).
func combineRFC2231(raws []rawParam) []Param {
	type section struct {
		num     int
		encoded bool
		value   string
	}
	type group struct {
		name     string
		plain    string
		hasPlain bool
		sections []section
	}
	var order []*group
	byName := map[string]*group{}
	for _, rp := range raws {
		base, num, encoded, extended := splitExtendedName(rp.name)
		key := strings.ToLower(base)
		g := byName[key]
		if g == nil {
			g = &group{name: base}
			byName[key] = g
			order = append(order, g)
		}
		if !extended {
			if !g.hasPlain {
				g.plain, g.hasPlain = rp.value, true
			}
			continue
		}
		g.sections = append(g.sections, section{num, encoded, rp.value})
	}
	params := make([]Param, 0, len(order))
	for _, g := range order {
		if len(g.sections) == 0 {
			params = append(params, Param{Name: g.name, Value: g.plain})
			continue
		}
		sort.SliceStable(g.sections, func(i, j int) bool { return g.sections[i].num < g.sections[j].num })
		var charset string
		var raw []byte
		for i, sec := range g.sections {
			v := sec.value
			if sec.encoded {
				if i == 0 {
					// charset'language'value (RFC 2231 4)
					if cs, rest, ok := strings.Cut(v, "'"); ok {
						if _, rest2, ok := strings.Cut(rest, "'"); ok {
							charset, v = cs, rest2
						}
					}
				}
				raw = append(raw, percentDecode(v)...)
			} else {
				raw = append(raw, v...)
			}
		}
		value := string(raw)
		if charset != "" {
			value = toUTF8(charset, raw)
		}
		params = append(params, Param{Name: g.name, Value: value})
	}
	return params
}

// splitExtendedName parses an RFC 2231 attribute name: "title*" (encoded,
// section 0), "title*2" (section 2), "title*2*" (section 2, encoded).
func splitExtendedName(name string) (base string, num int, encoded, extended bool) {
	star := strings.IndexByte(name, '*')
	if star <= 0 {
		return name, 0, false, false
	}
	base, rest := name[:star], name[star+1:]
	if rest == "" {
		return base, 0, true, true
	}
	encoded = strings.HasSuffix(rest, "*")
	rest = strings.TrimSuffix(rest, "*")
	n, err := strconv.Atoi(rest)
	if err != nil || n < 0 || n > 999 {
		return name, 0, false, false // not RFC 2231: keep the name as written
	}
	return base, n, encoded, true
}

// percentDecode decodes %XX escapes; a malformed escape is kept as written.
func percentDecode(s string) []byte {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			if hi, ok1 := unhex(s[i+1]); ok1 {
				if lo, ok2 := unhex(s[i+2]); ok2 {
					out = append(out, hi<<4|lo)
					i += 2
					continue
				}
			}
		}
		out = append(out, s[i])
	}
	return out
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// isToken reports whether s is a non-empty RFC 2045 token.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?=`, c) >= 0 {
			return false
		}
	}
	return true
}

// stripComments removes RFC 5322 comments "(...)" (nested, with quoted
// pairs) outside quoted strings. An unterminated comment runs to the end.
func stripComments(s string) string {
	if strings.IndexByte(s, '(') < 0 {
		return s
	}
	var b strings.Builder
	depth, inQuote := 0, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && (inQuote || depth > 0):
			if depth == 0 {
				b.WriteByte(c)
				if i+1 < len(s) {
					b.WriteByte(s[i+1])
				}
			}
			i++
		case inQuote:
			if c == '"' {
				inQuote = false
			}
			b.WriteByte(c)
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
			if depth == 0 {
				b.WriteByte(' ')
			}
		case depth > 0:
		case c == '"':
			inQuote = true
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
