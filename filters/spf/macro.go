package spf

import (
	"net/netip"
	"strconv"
	"strings"
)

// macroToken is one piece of a macro-string (RFC 7208 section 7.1): a
// literal run, or a macro-expand.
type macroToken struct {
	literal    string
	letter     byte   // lower-case macro letter; 0 for a literal
	upper      bool   // upper-case letter: URL-escape the value (section 7.3)
	digits     int    // keep this many right-hand parts; 0 = all
	reverse    bool   // the "r" transformer
	delimiters string // split on these; "" = "."
}

const maxMacroTokens = 256

// parseMacroString tokenizes s. explanation allows the letters c, r and t,
// which only exp= explanation strings may use (section 7.2).
func parseMacroString(s string, explanation bool) ([]macroToken, error) {
	var toks []macroToken
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			toks = append(toks, macroToken{literal: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '%' {
			// macro-literal = %x21-24 / %x26-7E; explanation text may also
			// hold spaces (section 6.2: explain-string = *( macro-string / SP )).
			if (c < 0x21 || c > 0x7e) && !(explanation && c == ' ') {
				return nil, syntaxErr("invalid character 0x%02x in %q", c, s)
			}
			lit.WriteByte(c)
			continue
		}
		if i+1 >= len(s) {
			return nil, syntaxErr("lone %% at the end of %q", s)
		}
		switch s[i+1] {
		case '%':
			lit.WriteByte('%')
			i++
			continue
		case '_':
			lit.WriteByte(' ')
			i++
			continue
		case '-':
			lit.WriteString("%20")
			i++
			continue
		case '{':
		default:
			return nil, syntaxErr("invalid macro %q in %q", s[i:i+2], s)
		}
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			return nil, syntaxErr("unterminated macro in %q", s)
		}
		body := s[i+2 : i+end]
		tok, err := parseMacroExpand(body, explanation)
		if err != nil {
			return nil, err
		}
		flush()
		toks = append(toks, tok)
		if len(toks) > maxMacroTokens {
			return nil, syntaxErr("too many macros in %q", s)
		}
		i += end
	}
	flush()
	if len(toks) == 0 {
		toks = append(toks, macroToken{})
	}
	return toks, nil
}

// parseMacroExpand parses macro-letter transformers *delimiter.
func parseMacroExpand(body string, explanation bool) (macroToken, error) {
	if body == "" {
		return macroToken{}, syntaxErr("empty macro %%{}")
	}
	t := macroToken{letter: body[0] | 0x20, upper: body[0] >= 'A' && body[0] <= 'Z'}
	switch t.letter {
	case 's', 'l', 'o', 'd', 'i', 'p', 'h', 'v':
	case 'c', 'r', 't':
		if !explanation {
			return macroToken{}, syntaxErr("macro %%{%c} is only allowed in explanations", body[0])
		}
	default:
		return macroToken{}, syntaxErr("unknown macro letter %q", body[:1])
	}
	if !isAlpha(body[0]) {
		return macroToken{}, syntaxErr("unknown macro letter %q", body[:1])
	}
	rest := body[1:]
	j := 0
	for j < len(rest) && isDigitByte(rest[j]) {
		j++
	}
	if j > 0 {
		n, err := strconv.Atoi(rest[:min(j, 4)])
		if err != nil || n == 0 {
			// Section 7.3: if a DIGIT is given, the value MUST be nonzero.
			return macroToken{}, syntaxErr("bad digit transformer in %%{%s}", body)
		}
		t.digits = n
	}
	rest = rest[j:]
	if rest != "" && (rest[0] == 'r' || rest[0] == 'R') {
		t.reverse = true
		rest = rest[1:]
	}
	for k := 0; k < len(rest); k++ {
		if !strings.ContainsRune(".-+,/_=", rune(rest[k])) {
			return macroToken{}, syntaxErr("invalid delimiter %q in %%{%s}", rest[k], body)
		}
	}
	t.delimiters = rest
	return t, nil
}

// macroValues are the inputs of macro expansion for one check_host() call.
type macroValues struct {
	sender   string // %{s}
	local    string // %{l}
	domainS  string // %{o}
	domain   string // %{d}
	ip       netip.Addr
	helo     string        // %{h}
	ptr      func() string // %{p}, computed only when used
	receiver string        // %{r}
	now      int64         // %{t}
}

// expand renders tokens with values (RFC 7208 section 7.3).
func expand(toks []macroToken, v *macroValues) string {
	var b strings.Builder
	for _, t := range toks {
		if t.letter == 0 {
			b.WriteString(t.literal)
			continue
		}
		val := v.letter(t.letter)
		if t.digits > 0 || t.reverse || t.delimiters != "" {
			val = transform(val, t)
		}
		if t.upper {
			val = urlEscape(val)
		}
		b.WriteString(val)
	}
	return b.String()
}

func (v *macroValues) letter(l byte) string {
	switch l {
	case 's':
		return v.sender
	case 'l':
		return v.local
	case 'o':
		return v.domainS
	case 'd':
		return v.domain
	case 'i':
		return dottedIP(v.ip)
	case 'p':
		if v.ptr == nil {
			return "unknown"
		}
		return v.ptr()
	case 'v':
		if v.ip.Is4() {
			return "in-addr"
		}
		return "ip6"
	case 'h':
		return v.helo
	case 'c':
		return v.ip.String()
	case 'r':
		if v.receiver == "" {
			return "unknown"
		}
		return v.receiver
	case 't':
		return strconv.FormatInt(v.now, 10)
	}
	return ""
}

// dottedIP is %{i}: dotted-quad for IPv4, dot-separated nibbles for IPv6
// (section 7.3).
func dottedIP(ip netip.Addr) string {
	if ip.Is4() {
		return ip.String()
	}
	// Upper-case nibbles, as the RFC 7208 test suite expects (v-macro-ip6);
	// DNS names compare case-insensitively, so only explanations show it.
	const hexDigits = "0123456789ABCDEF"
	a := ip.As16()
	b := make([]byte, 0, 63)
	for i, x := range a {
		if i > 0 {
			b = append(b, '.')
		}
		b = append(b, hexDigits[x>>4], '.', hexDigits[x&0xf])
	}
	return string(b)
}

// transform splits on the delimiters, reverses, keeps the right-hand parts
// and joins with "." (section 7.3).
func transform(val string, t macroToken) string {
	delims := t.delimiters
	if delims == "" {
		delims = "."
	}
	parts := splitAny(val, delims)
	if t.reverse {
		for i, j := 0, len(parts)-1; i < j; i, j = i+1, j-1 {
			parts[i], parts[j] = parts[j], parts[i]
		}
	}
	if t.digits > 0 && t.digits < len(parts) {
		parts = parts[len(parts)-t.digits:]
	}
	return strings.Join(parts, ".")
}

func splitAny(s, delims string) []string {
	var parts []string
	start := 0
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(delims, s[i]) >= 0 {
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	return append(parts, s[start:])
}

// urlEscape escapes everything but RFC 3986 unreserved characters, as
// section 7.3 asks for upper-case macro letters.
func urlEscape(s string) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isAlnum(c) || c == '-' || c == '.' || c == '_' || c == '~' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&0xf])
	}
	return b.String()
}

// truncateDomain applies section 7.3's rule for expanded domain names longer
// than 253 characters: drop labels from the left until it fits.
func truncateDomain(d string) string {
	d = strings.TrimSuffix(d, ".")
	for len(d) > 253 {
		i := strings.IndexByte(d, '.')
		if i < 0 {
			return ""
		}
		d = d[i+1:]
	}
	return d
}
