// Package authres handles the Authentication-Results header field (RFC 8601)
// at the gateway's edge: it removes fields from incoming messages that
// claim to come from our own authentication service, and formats the one
// field the gateway adds.
//
// An Authentication-Results field starts with the authserv-id, the name of
// the service that did the checks (usually the receiving host name).
// Mail readers and delivery rules trust fields carrying their own site's
// authserv-id, so a sender could forge "dkim=pass" under our name; RFC 8601
// section 5 therefore requires the border MTA to delete any such field
// arriving from outside before adding its own.
package authres

import (
	"bytes"
	"strings"
)

// FieldName is the header field this package handles.
const FieldName = "Authentication-Results"

// maxCommentDepth bounds nested comments read before the authserv-id.
const maxCommentDepth = 16

// StripForgedAuthResults returns header without the Authentication-Results
// fields whose authserv-id equals authservID (compared without case and
// without a trailing dot). header is the header section with CRLF or LF
// line endings; anything after the blank line that ends it is kept as is,
// so the whole message may be passed. Fields whose authserv-id cannot be
// read are kept: they do not claim to be ours. When nothing is removed the
// input slice itself is returned.
func StripForgedAuthResults(header []byte, authservID string) []byte {
	ours := normalizeID(authservID)
	if ours == "" {
		return header
	}
	var out []byte
	removed := false
	pos := 0
	for pos < len(header) {
		// One field: its first line and the continuation lines after it.
		end := lineEnd(header, pos)
		if isBlankLine(header[pos:end]) {
			break // end of the header section; the rest is body
		}
		for end < len(header) && (header[end] == ' ' || header[end] == '\t') {
			end = lineEnd(header, end)
		}
		field := header[pos:end]
		if claimsID(field, ours) {
			if !removed {
				out = append(make([]byte, 0, len(header)), header[:pos]...)
				removed = true
			}
		} else if removed {
			out = append(out, field...)
		}
		pos = end
	}
	if !removed {
		return header
	}
	return append(out, header[pos:]...)
}

// lineEnd returns the offset just past the LF ending the line at pos, or
// len(b).
func lineEnd(b []byte, pos int) int {
	if i := bytes.IndexByte(b[pos:], '\n'); i >= 0 {
		return pos + i + 1
	}
	return len(b)
}

func isBlankLine(line []byte) bool {
	return len(bytes.TrimRight(line, "\r\n")) == 0
}

// claimsID reports whether field is an Authentication-Results field with
// authserv-id id (already normalized).
func claimsID(field []byte, id string) bool {
	colon := bytes.IndexByte(field, ':')
	if colon < 0 {
		return false
	}
	// RFC 5322 section 4.5.3 (obsolete syntax) allows white space before
	// the colon.
	name := strings.TrimRight(string(field[:colon]), " \t")
	if !strings.EqualFold(name, FieldName) {
		return false
	}
	got, ok := AuthservID(string(field[colon+1:]))
	return ok && normalizeID(got) == id
}

// AuthservID returns the authserv-id at the start of an
// Authentication-Results field value (RFC 8601 section 2.2: [CFWS]
// authserv-id, a token or quoted-string), unfolded.
func AuthservID(value string) (string, bool) {
	s := skipCFWS(value)
	if s == "" {
		return "", false
	}
	if s[0] == '"' {
		var b strings.Builder
		for i := 1; i < len(s); i++ {
			switch c := s[i]; c {
			case '\\':
				if i+1 < len(s) {
					i++
					b.WriteByte(s[i])
				}
			case '"':
				return b.String(), b.Len() > 0
			case '\r', '\n':
				// folding inside the quoted-string
			default:
				b.WriteByte(c)
			}
		}
		return "", false // unterminated
	}
	i := 0
	for i < len(s) && isTokenChar(s[i]) {
		i++
	}
	if i == 0 {
		return "", false
	}
	return s[:i], true
}

// skipCFWS skips white space, line breaks and (nested, bounded) comments.
func skipCFWS(s string) string {
	for {
		s = strings.TrimLeft(s, " \t\r\n")
		if s == "" || s[0] != '(' {
			return s
		}
		depth := 0
		i := 0
	comment:
		for ; i < len(s); i++ {
			switch s[i] {
			case '\\':
				i++
			case '(':
				depth++
				if depth > maxCommentDepth {
					return ""
				}
			case ')':
				depth--
				if depth == 0 {
					i++
					break comment
				}
			}
		}
		if depth != 0 {
			return "" // unterminated comment
		}
		s = s[min(i, len(s)):]
	}
}

// isTokenChar: RFC 2045 token characters (RFC 8601 uses its "value").
func isTokenChar(c byte) bool {
	return c > 0x20 && c < 0x7f && !strings.ContainsRune(`()<>@,;:\"/[]?=`, rune(c))
}

func normalizeID(id string) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(id), "."))
}

// Field formats the Authentication-Results field the gateway adds (without
// the final CRLF): our authserv-id, then each resinfo on a folded line; the
// "none" form when there is nothing to report (RFC 8601 section 2.2).
func Field(authservID string, resinfo []string) string {
	var b strings.Builder
	b.WriteString(FieldName)
	b.WriteString(": ")
	b.WriteString(authservID)
	if len(resinfo) == 0 {
		b.WriteString("; none")
		return b.String()
	}
	for _, r := range resinfo {
		b.WriteString(";\r\n\t")
		b.WriteString(r)
	}
	return b.String()
}

// Comment makes s safe inside a comment of the field (RFC 5322 section
// 3.2.2): no parentheses, backslashes or control characters, at most 120
// bytes (then "..."). The checks put their reasons there.
func Comment(s string) string {
	s = strings.Map(func(r rune) rune {
		switch {
		case r == '(' || r == ')' || r == '\\':
			return -1
		case r < 0x20 || r == 0x7f:
			return ' '
		}
		return r
	}, s)
	if len(s) > 120 {
		s = s[:120] + "..."
	}
	return s
}

// Value writes a property value (RFC 8601 section 2.2): as is when it is
// a token or a dot-atom / addr-spec-like string, else as a quoted-string.
func Value(s string) string {
	plain := s != ""
	for i := 0; i < len(s) && plain; i++ {
		c := s[i]
		plain = c > 0x20 && c < 0x7f && !strings.ContainsRune(`()<>,;:\"[]`, rune(c))
	}
	if plain {
		return s
	}
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			b.WriteByte(' ')
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// Ours returns the results of the topmost Authentication-Results field in
// header whose authserv-id is authservID: the resinfo parts as the
// gateway wrote them with Field, unfolded and trimmed ("spf=pass
// smtp.mailfrom=example.org", ...; none for "none"). header is a header
// section or a whole message. Because the gateway strips forged fields
// (StripForgedAuthResults) before adding its own, a field found here is
// the gateway's record of its checks: the delivery agent reads it to seal
// the copies it forwards. ok is false when no field claims the id.
func Ours(header []byte, authservID string) (resinfo []string, ok bool) {
	ours := normalizeID(authservID)
	if ours == "" {
		return nil, false
	}
	for pos := 0; pos < len(header); {
		end := lineEnd(header, pos)
		if isBlankLine(header[pos:end]) {
			break
		}
		for end < len(header) && (header[end] == ' ' || header[end] == '\t') {
			end = lineEnd(header, end)
		}
		field := header[pos:end]
		if claimsID(field, ours) {
			value := string(field[bytes.IndexByte(field, ':')+1:])
			return splitResinfo(value), true
		}
		pos = end
	}
	return nil, false
}

// splitResinfo splits a field value at the semicolons outside comments and
// quoted-strings (RFC 8601 section 2.2), drops the first part (the
// authserv-id and its version) and returns the rest unfolded and trimmed,
// without a lone "none".
func splitResinfo(value string) []string {
	var parts []string
	var b strings.Builder
	depth, quoted := 0, false
	for i := 0; i < len(value); i++ {
		c := value[i]
		switch {
		case c == '\r' || c == '\n':
			continue // unfolding: the white space after the break stays
		case c == '\\' && (quoted || depth > 0) && i+1 < len(value):
			b.WriteByte(c)
			i++
			c = value[i]
		case quoted:
			quoted = c != '"'
		case c == '"' && depth == 0:
			quoted = true
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case c == ';' && depth == 0:
			parts = append(parts, strings.TrimSpace(b.String()))
			b.Reset()
			continue
		}
		b.WriteByte(c)
	}
	parts = append(parts, strings.TrimSpace(b.String()))
	var out []string
	for _, p := range parts[1:] {
		if p != "" && !strings.EqualFold(p, "none") {
			out = append(out, p)
		}
	}
	return out
}

// Method returns the result one method reports in resinfo parts as Ours
// returns them ("pass" for method "arc" in "arc=pass (i=1) ..."), or false
// when no part is for that method. A method version ("arc/1=pass") is
// allowed; the result is lowercased.
func Method(resinfo []string, method string) (string, bool) {
	for _, p := range resinfo {
		name, rest, ok := strings.Cut(p, "=")
		if !ok {
			continue
		}
		name = strings.TrimSpace(name)
		if v := strings.IndexByte(name, '/'); v >= 0 {
			name = strings.TrimSpace(name[:v])
		}
		if !strings.EqualFold(name, method) {
			continue
		}
		rest = skipCFWS(rest)
		i := 0
		for i < len(rest) && isTokenChar(rest[i]) {
			i++
		}
		if i == 0 {
			return "", false
		}
		return strings.ToLower(rest[:i]), true
	}
	return "", false
}
