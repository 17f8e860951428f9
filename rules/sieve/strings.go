package sieve

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// text is a string argument: constant, or (with "variables") a template of
// literal pieces and variable references expanded at run time.
type text struct {
	s     string     // the constant value (after encoded-character decoding)
	parts []textPart // nil: constant
}

// textPart is a literal piece or a ${name} reference (RFC 5229 section 3).
type textPart struct {
	lit  string
	name string // variable name, lower case ("" for a literal)
	num  int    // match variable index, or -1
}

// decodeEncodedCharacters replaces ${hex:...} and ${unicode:...}
// (RFC 5228 2.4.2.4). A malformed sequence stays as written, as the RFC
// says; a code point that is no Unicode scalar value is an error.
func decodeEncodedCharacters(s string, p Pos) (string, error) {
	if !strings.Contains(s, "${") {
		return s, nil
	}
	var b strings.Builder
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			return b.String(), nil
		}
		b.WriteString(s[:i])
		rest := s[i:]
		end := strings.IndexByte(rest, '}')
		if end < 0 {
			b.WriteString(rest)
			return b.String(), nil
		}
		body := rest[2:end]
		colon := strings.IndexByte(body, ':')
		decoded, ok, err := "", false, error(nil)
		if colon > 0 {
			switch strings.ToLower(body[:colon]) {
			case "hex":
				decoded, ok = decodeHexPairs(body[colon+1:])
			case "unicode":
				decoded, ok, err = decodeUnicodeHex(body[colon+1:], p)
			}
		}
		if err != nil {
			return "", err
		}
		if !ok {
			b.WriteString("${")
			s = rest[2:]
			continue
		}
		b.WriteString(decoded)
		s = rest[end+1:]
	}
}

func hexFields(s string) ([]string, bool) {
	f := strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == '\t' || r == '\r' || r == '\n' })
	if len(f) == 0 {
		return nil, false
	}
	for _, x := range f {
		for i := 0; i < len(x); i++ {
			if !isHex(x[i]) {
				return nil, false
			}
		}
	}
	return f, true
}

func isHex(c byte) bool { return isDigit(c) || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

func decodeHexPairs(s string) (string, bool) {
	f, ok := hexFields(s)
	if !ok {
		return "", false
	}
	var b strings.Builder
	for _, x := range f {
		if len(x) > 2 {
			return "", false
		}
		v, _ := strconv.ParseUint(x, 16, 8)
		b.WriteByte(byte(v))
	}
	return b.String(), true
}

func decodeUnicodeHex(s string, p Pos) (string, bool, error) {
	f, ok := hexFields(s)
	if !ok {
		return "", false, nil
	}
	var b strings.Builder
	for _, x := range f {
		x = strings.TrimLeft(x, "0")
		if len(x) > 6 {
			return "", false, parseErrorf(p, "encoded character ${unicode:%s} is not a Unicode character", x)
		}
		v, _ := strconv.ParseUint("0"+x, 16, 32)
		if v > utf8.MaxRune || v >= 0xD800 && v <= 0xDFFF {
			return "", false, parseErrorf(p, "encoded character U+%X is not a Unicode character", v)
		}
		b.WriteRune(rune(v))
	}
	return b.String(), true, nil
}

// parseTemplate splits s into literal text and variable references. A
// "${" that does not start a well-formed reference is literal (RFC 5229
// section 3).
func parseTemplate(s string) []textPart {
	if !strings.Contains(s, "${") {
		return nil
	}
	var parts []textPart
	lit := strings.Builder{}
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			lit.WriteString(s)
			break
		}
		lit.WriteString(s[:i])
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			lit.WriteString(s[i:])
			break
		}
		name := s[i+2 : i+end]
		ref, ok := variableRef(name)
		if !ok {
			lit.WriteString("${")
			s = s[i+2:]
			continue
		}
		if lit.Len() > 0 {
			parts = append(parts, textPart{lit: lit.String(), num: -1})
			lit.Reset()
		}
		parts = append(parts, ref)
		s = s[i+end+1:]
	}
	if lit.Len() > 0 {
		parts = append(parts, textPart{lit: lit.String(), num: -1})
	}
	for _, p := range parts {
		if p.name != "" || p.num >= 0 {
			return parts
		}
	}
	return nil // only literal text: the caller keeps the constant
}

// variableRef parses the inside of ${...}: a number (a match variable) or
// an identifier with optional namespaces ("global.name").
func variableRef(name string) (textPart, bool) {
	if name == "" {
		return textPart{}, false
	}
	if isDigits(name) {
		n, err := strconv.Atoi(name)
		if err != nil || n > 1000 {
			n = 1000 // beyond any match: expands to ""
		}
		return textPart{num: n}, true
	}
	if !isVariableName(name, true) {
		return textPart{}, false
	}
	return textPart{name: strings.ToLower(name), num: -1}, true
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

// isVariableName reports whether s is an identifier, or with namespaces
// allowed, identifiers joined by dots.
func isVariableName(s string, namespaces bool) bool {
	for i, part := range strings.Split(s, ".") {
		if i > 0 && !namespaces {
			return false
		}
		if part == "" || !(isAlpha(part[0]) || part[0] == '_') {
			return false
		}
		for j := 1; j < len(part); j++ {
			c := part[j]
			if !isAlpha(c) && !isDigit(c) && c != '_' {
				return false
			}
		}
	}
	return true
}
