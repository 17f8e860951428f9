package spf

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Bounds on what we parse, whatever DNS hands us. A TXT record can be up to
// 64 KiB on the wire; no sane SPF policy is a tenth of that.
const (
	maxRecordLen = 4096
	maxTerms     = 128
)

// errSyntax marks every record syntax error; all of them are permerror
// (RFC 7208 section 4.6: a syntax error anywhere in the record).
var errSyntax = errors.New("syntax error")

func syntaxErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errSyntax, fmt.Sprintf(format, args...))
}

// mechanism is one directive (RFC 7208 section 4.6.1, section 5).
type mechanism struct {
	term      string // as written, for reports
	qualifier byte   // '+', '-', '~' or '?'
	name      string // all, include, a, mx, ptr, ip4, ip6, exists (lower case)
	domain    string // domain-spec (unexpanded macro-string); "" means <domain>
	prefix    netip.Prefix
	cidr4     int // -1 when not given
	cidr6     int // -1 when not given
}

// record is a parsed SPF record.
type record struct {
	text      string
	mechs     []mechanism
	redirect  string // domain-spec, "" when absent
	exp       string // domain-spec, "" when absent
	hasRedir  bool
	hasExp    bool
	modifiers []string // unknown modifiers, kept for reports
}

// isSPFRecord reports whether a TXT string is an SPF version 1 record
// (RFC 7208 section 4.5: "v=spf1" then a space or the end, case-insensitive).
func isSPFRecord(txt string) bool {
	const v = "v=spf1"
	if len(txt) < len(v) || !strings.EqualFold(txt[:len(v)], v) {
		return false
	}
	return len(txt) == len(v) || txt[len(v)] == ' '
}

// parseRecord parses a whole record before anything is evaluated, so that a
// syntax error anywhere is a permerror even when an earlier term would match
// (RFC 7208 section 4.6).
func parseRecord(txt string) (*record, error) {
	if len(txt) > maxRecordLen {
		return nil, syntaxErr("record of %d octets, limit %d", len(txt), maxRecordLen)
	}
	if !isSPFRecord(txt) {
		return nil, syntaxErr("not an SPF record")
	}
	rec := &record{text: txt}
	// RFC 7208 section 4.6.1: terms are separated by one or more spaces, and
	// only by spaces (any other control character is a syntax error, found
	// below as an invalid character).
	terms := strings.Split(txt[len("v=spf1"):], " ")
	n := 0
	for _, term := range terms {
		if term == "" {
			continue
		}
		if n++; n > maxTerms {
			return nil, syntaxErr("more than %d terms", maxTerms)
		}
		if err := rec.parseTerm(term); err != nil {
			return nil, err
		}
	}
	return rec, nil
}

func (rec *record) parseTerm(term string) error {
	for i := 0; i < len(term); i++ {
		if c := term[i]; c < 0x21 || c > 0x7e {
			// RFC 7208 section 3.1: records are 7-bit ASCII; section 4.6.1:
			// only visible characters inside terms.
			return syntaxErr("invalid character 0x%02x in term %q", c, term)
		}
	}
	// modifier = name "=" macro-string; name = ALPHA *( ALPHA / DIGIT / "-" / "_" / "." )
	if i := strings.IndexByte(term, '='); i >= 0 {
		name := term[:i]
		if isModifierName(name) {
			return rec.parseModifier(strings.ToLower(name), term[i+1:], term)
		}
		if name == "" {
			return syntaxErr("modifier without a name: %q", term)
		}
		// Not a modifier name: fall through, it may be a mechanism with
		// a '=' in its domain-spec (exists:%{l}=x...), checked below.
	}
	m := mechanism{term: term, qualifier: '+', cidr4: -1, cidr6: -1}
	rest := term
	switch rest[0] {
	case '+', '-', '~', '?':
		m.qualifier = rest[0]
		rest = rest[1:]
	}
	j := 0
	for j < len(rest) && isAlnum(rest[j]) {
		j++
	}
	m.name = strings.ToLower(rest[:j])
	rest = rest[j:]
	var err error
	switch m.name {
	case "all":
		if rest != "" {
			return syntaxErr("unexpected %q after all", rest)
		}
	case "include", "exists":
		// include = "include" ":" domain-spec; exists = "exists" ":" domain-spec
		if !strings.HasPrefix(rest, ":") {
			return syntaxErr("%s needs a domain: %q", m.name, term)
		}
		m.domain = rest[1:]
		err = validateDomainSpec(m.domain)
	case "a", "mx":
		// A = "a" [ ":" domain-spec ] [ dual-cidr-length ]
		rest, m.cidr4, m.cidr6, err = cutDualCIDR(rest)
		if err == nil {
			m.domain, err = optionalDomain(rest, term)
		}
	case "ptr":
		m.domain, err = optionalDomain(rest, term)
	case "ip4", "ip6":
		m.prefix, err = parseIPNetwork(m.name, rest)
	default:
		return syntaxErr("unknown mechanism %q", term)
	}
	if err != nil {
		return fmt.Errorf("term %q: %w", term, err)
	}
	rec.mechs = append(rec.mechs, m)
	return nil
}

func (rec *record) parseModifier(name, value, term string) error {
	switch name {
	case "redirect", "exp":
		// RFC 7208 section 6: each may appear at most once.
		if (name == "redirect" && rec.hasRedir) || (name == "exp" && rec.hasExp) {
			return syntaxErr("%s given twice", name)
		}
		if err := validateDomainSpec(value); err != nil {
			return fmt.Errorf("term %q: %w", term, err)
		}
		if name == "redirect" {
			rec.redirect, rec.hasRedir = value, true
		} else {
			rec.exp, rec.hasExp = value, true
		}
	default:
		// Unknown modifiers are ignored (RFC 7208 section 6), but their value
		// must still be a valid macro-string (appendix A).
		if _, err := parseMacroString(value, false); err != nil {
			return fmt.Errorf("term %q: %w", term, err)
		}
		rec.modifiers = append(rec.modifiers, term)
	}
	return nil
}

func isAlpha(c byte) bool { return c|0x20 >= 'a' && c|0x20 <= 'z' }
func isDigitByte(c byte) bool {
	return c >= '0' && c <= '9'
}
func isAlnum(c byte) bool { return isAlpha(c) || isDigitByte(c) }

func isModifierName(s string) bool {
	if s == "" || !isAlpha(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '-' && c != '_' && c != '.' {
			return false
		}
	}
	return true
}

func optionalDomain(rest, term string) (string, error) {
	if rest == "" {
		return "", nil
	}
	if rest[0] != ':' {
		return "", syntaxErr("unexpected %q", rest)
	}
	d := rest[1:]
	return d, validateDomainSpec(d)
}

// cutDualCIDR removes a trailing dual-cidr-length ("/24", "//64",
// "/24//64") from s (RFC 7208 section 5.6).
func cutDualCIDR(s string) (rest string, cidr4, cidr6 int, err error) {
	cidr4, cidr6 = -1, -1
	if i := strings.LastIndex(s, "//"); i >= 0 && allDigits(s[i+2:]) {
		if cidr6, err = parseCIDRLength(s[i+2:], 128); err != nil {
			return "", 0, 0, err
		}
		s = s[:i]
	}
	if i := strings.LastIndexByte(s, '/'); i >= 0 && allDigits(s[i+1:]) {
		if cidr4, err = parseCIDRLength(s[i+1:], 32); err != nil {
			return "", 0, 0, err
		}
		s = s[:i]
	}
	return s, cidr4, cidr6, nil
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isDigitByte(s[i]) {
			return false
		}
	}
	return true
}

// parseCIDRLength: ip4-cidr-length = "/" ("0" / %x31-39 0*1DIGIT), no
// leading zeros, at most max.
func parseCIDRLength(s string, max int) (int, error) {
	if s == "" || len(s) > 3 || (len(s) > 1 && s[0] == '0') {
		return 0, syntaxErr("bad CIDR length %q", s)
	}
	n, err := strconv.Atoi(s)
	if err != nil || n > max {
		return 0, syntaxErr("bad CIDR length %q", s)
	}
	return n, nil
}

func parseIPNetwork(kind, rest string) (netip.Prefix, error) {
	if !strings.HasPrefix(rest, ":") {
		return netip.Prefix{}, syntaxErr("%s needs an address", kind)
	}
	rest = rest[1:]
	addrText, bits := rest, -1
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		max := 32
		if kind == "ip6" {
			max = 128
		}
		n, err := parseCIDRLength(rest[i+1:], max)
		if err != nil {
			return netip.Prefix{}, err
		}
		addrText, bits = rest[:i], n
	}
	addr, err := netip.ParseAddr(addrText)
	if err != nil || addr.Zone() != "" {
		return netip.Prefix{}, syntaxErr("bad %s address %q", kind, addrText)
	}
	if kind == "ip4" && !addr.Is4() || kind == "ip6" && !addr.Is6() {
		return netip.Prefix{}, syntaxErr("bad %s address %q", kind, addrText)
	}
	if bits < 0 {
		bits = addr.BitLen()
	}
	return netip.PrefixFrom(addr, bits).Masked(), nil
}

// validateDomainSpec checks domain-spec = macro-string domain-end, with
// domain-end = ( "." toplabel [ "." ] ) / macro-expand (RFC 7208 section 7.1).
func validateDomainSpec(spec string) error {
	if spec == "" {
		return syntaxErr("empty domain-spec")
	}
	toks, err := parseMacroString(spec, false)
	if err != nil {
		return err
	}
	last := toks[len(toks)-1]
	if last.letter != 0 {
		return nil // ends with a macro-expand
	}
	// The literal tail must end in "." toplabel [ "." ].
	tail := ""
	for i := len(toks) - 1; i >= 0 && toks[i].letter == 0; i-- {
		tail = toks[i].literal + tail
	}
	tail = strings.TrimSuffix(tail, ".")
	dot := strings.LastIndexByte(tail, '.')
	if dot < 0 {
		// "a:museum" is a single label: not a domain-end. A macro before the
		// literal ("%{d}com") is no dot either.
		return syntaxErr("domain-spec %q does not end in a top-level label", spec)
	}
	if !isTopLabel(tail[dot+1:]) {
		return syntaxErr("domain-spec %q: invalid top-level label %q", spec, tail[dot+1:])
	}
	return nil
}

// isTopLabel: toplabel = ( *alphanum ALPHA *alphanum ) /
// ( 1*alphanum "-" *( alphanum / "-" ) alphanum ).
func isTopLabel(s string) bool {
	if s == "" || !isAlnum(s[0]) || !isAlnum(s[len(s)-1]) {
		return false
	}
	hasAlpha, hasDash := false, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case isAlpha(c):
			hasAlpha = true
		case c == '-':
			hasDash = true
		case isDigitByte(c):
		default:
			return false
		}
	}
	return hasAlpha || hasDash
}
