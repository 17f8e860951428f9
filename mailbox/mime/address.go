package mime

import "strings"

// Placeholders for the parts of a broken address, as Dovecot writes them.
// IMAP's ENVELOPE gives a NIL host a meaning of its own (a group marker,
// RFC 3501 7.4.2), so a mailbox without a domain ("To: root") must not be
// rendered with an empty host.
const (
	MissingMailbox = "MISSING_MAILBOX"
	MissingDomain  = "MISSING_DOMAIN"
)

// maxAddresses bounds the addresses kept from one header field.
const maxAddresses = 5000

// ParseAddressList parses an address header value (RFC 5322 3.4) into the
// ENVELOPE form, leniently. net/mail and go-message's parser reject a whole
// header for one bad address, and mail in the wild is full of bad addresses
// (unquoted dots and commas in names, missing domains, stray brackets,
// encoded-words inside quotes), so this parser never fails: it keeps what it
// can recognise, in order, and fills MissingMailbox/MissingDomain for the
// rest. Display names are RFC 2047-decoded; a trailing comment is used as
// the name when there is no phrase (the old "user@host (Name)" form).
func ParseAddressList(value string) []Address {
	toks := tokenizeAddress(value)
	var out []Address
	inGroup := false
	var seg []addrToken
	angle := 0
	segHasAt := false // seg contains "@" (then ":" is not a group start)
	flush := func() {
		if len(seg) > 0 && len(out) < maxAddresses {
			if a, ok := buildAddress(seg); ok {
				out = append(out, a)
			}
		}
		seg = seg[:0]
		segHasAt = false
	}
	for _, t := range toks {
		if t.kind == tokSpecial {
			switch t.text {
			case "<":
				angle++
			case ">":
				if angle > 0 {
					angle--
				}
			case ",":
				if angle == 0 {
					flush()
					continue
				}
			case ":":
				// A colon outside angle brackets, before any "@", starts a
				// group (RFC 5322 3.4); inside brackets it ends a route.
				if angle == 0 && !inGroup && !segHasAt {
					out = append(out, Address{Mailbox: DecodeHeaderValue(phraseText(seg)), Group: true})
					inGroup = true
					seg = seg[:0]
					continue
				}
			case "@":
				segHasAt = true
			case ";":
				if angle == 0 {
					flush()
					if inGroup {
						out = append(out, Address{Group: true})
						inGroup = false
					}
					continue
				}
			}
		}
		seg = append(seg, t)
	}
	flush()
	if inGroup {
		out = append(out, Address{Group: true})
	}
	return out
}

type tokKind int

const (
	tokWord tokKind = iota
	tokQuoted
	tokComment
	tokSpecial
)

type addrToken struct {
	kind tokKind
	text string // word text; quoted/comment content without delimiters
	raw  string // as written (quotes kept), for local parts
}

// tokenizeAddress splits an address header into words, quoted strings,
// comments and the specials that structure addresses (RFC 5322 3.2.3).
// Dots stay inside words so that "John Q. Public" is one phrase.
func tokenizeAddress(s string) []addrToken {
	var toks []addrToken
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			i++
		case c == '"':
			start := i
			var b strings.Builder
			i++
			for i < len(s) && s[i] != '"' {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				b.WriteByte(s[i])
				i++
			}
			if i < len(s) {
				i++ // closing quote
			}
			toks = append(toks, addrToken{tokQuoted, b.String(), s[start:i]})
		case c == '(':
			depth := 0
			var b strings.Builder
			for i < len(s) {
				ch := s[i]
				if ch == '\\' && i+1 < len(s) {
					b.WriteByte(s[i+1])
					i += 2
					continue
				}
				i++
				if ch == '(' {
					depth++
					if depth == 1 {
						continue
					}
				} else if ch == ')' {
					depth--
					if depth == 0 {
						break
					}
				}
				b.WriteByte(ch)
			}
			toks = append(toks, addrToken{tokComment, b.String(), ""})
		case c == '[':
			end := strings.IndexByte(s[i:], ']')
			if end < 0 {
				end = len(s) - i - 1
			}
			lit := s[i : i+end+1]
			toks = append(toks, addrToken{tokWord, lit, lit})
			i += end + 1
		case strings.IndexByte("<>@,;:", c) >= 0:
			toks = append(toks, addrToken{tokSpecial, s[i : i+1], s[i : i+1]})
			i++
		default:
			start := i
			for i < len(s) && strings.IndexByte(" \t\r\n\"(<>@,;:[", s[i]) < 0 {
				i++
			}
			toks = append(toks, addrToken{tokWord, s[start:i], s[start:i]})
		}
	}
	return toks
}

// phraseText joins the words and quoted strings of toks with single spaces,
// the way a display name is read (RFC 5322 3.2.5). Comments are skipped.
func phraseText(toks []addrToken) string {
	var parts []string
	for _, t := range toks {
		switch t.kind {
		case tokWord, tokQuoted:
			parts = append(parts, t.text)
		case tokSpecial:
			if t.text == "@" || t.text == ":" {
				// stray specials in a broken phrase: keep them readable
				parts = append(parts, t.text)
			}
		}
	}
	return strings.Join(parts, " ")
}

// buildAddress turns the tokens of one address (no top-level commas) into
// an Address.
func buildAddress(seg []addrToken) (Address, bool) {
	lt := -1
	for i, t := range seg {
		if t.kind == tokSpecial && t.text == "<" {
			lt = i
			break
		}
	}
	var a Address
	var spec []addrToken
	if lt >= 0 {
		a.Name = DecodeHeaderValue(phraseText(seg[:lt]))
		inner := seg[lt+1:]
		for i, t := range inner {
			if t.kind == tokSpecial && t.text == ">" {
				inner = inner[:i]
				break
			}
		}
		// Source route: "@a,@b:" before the addr-spec (RFC 5322 4.4 obs-route).
		if len(inner) > 0 && inner[0].kind == tokSpecial && inner[0].text == "@" {
			for i, t := range inner {
				if t.kind == tokSpecial && t.text == ":" {
					a.ADL = joinRaw(inner[:i])
					inner = inner[i+1:]
					break
				}
			}
		}
		spec = inner
	} else {
		spec = seg
	}
	// Split the addr-spec at the last "@".
	at := -1
	for i, t := range spec {
		if t.kind == tokSpecial && t.text == "@" {
			at = i
		}
	}
	var local, domain []addrToken
	if at >= 0 {
		local, domain = spec[:at], spec[at+1:]
	} else {
		local = spec
	}
	a.Mailbox = joinLocalPart(local)
	a.Host = joinRaw(domain)
	if lt < 0 && at < 0 {
		// No "<" and no "@": a bare word or a name without an address.
		if a.Mailbox == "" {
			return Address{}, false
		}
	}
	if a.Name == "" {
		for _, t := range seg {
			if t.kind == tokComment && strings.TrimSpace(t.text) != "" {
				a.Name = DecodeHeaderValue(strings.TrimSpace(t.text))
				break
			}
		}
	}
	if a.Mailbox == "" {
		a.Mailbox = MissingMailbox
	}
	if a.Host == "" {
		a.Host = MissingDomain
	}
	return a, true
}

// joinLocalPart concatenates a local part with its quoting removed, as
// RFC 3501 7.4.2 asks of addr-mailbox ("local-part after removing
// [RFC-2822] quoting").
func joinLocalPart(toks []addrToken) string {
	var b strings.Builder
	for _, t := range toks {
		switch t.kind {
		case tokWord, tokQuoted:
			b.WriteString(t.text)
		case tokSpecial:
			if t.text == "@" || t.text == "," || t.text == ":" {
				b.WriteString(t.text)
			}
		}
	}
	return b.String()
}

// joinRaw concatenates the words, quoted strings (with their quotes) and
// stray specials of a local part, domain or route, dropping comments and
// whitespace.
func joinRaw(toks []addrToken) string {
	var b strings.Builder
	for _, t := range toks {
		switch t.kind {
		case tokWord, tokQuoted:
			b.WriteString(t.raw)
		case tokSpecial:
			if t.text == "@" || t.text == "," || t.text == ":" {
				b.WriteString(t.text)
			}
		}
	}
	return b.String()
}
