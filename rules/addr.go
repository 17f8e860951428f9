package rules

import (
	"strings"
)

// A loose RFC 5322 section 3.4 address-list reader, as maildrop's getaddr,
// hasaddr and header canonicalisation need it: it never fails, it takes
// what it can (maildropfilter(7) BUGS: broken headers give unpredictable
// results — here, they give best-effort results).

type addrTokKind int

const (
	atAtom addrTokKind = iota
	atQuoted
	atComment
	atSpecial
	atLiteral // [domain literal]
)

type addrTok struct {
	kind addrTokKind
	text string // quoted/comment: the content without delimiters
}

const maxAddrTokens = 10000

func tokenizeAddresses(s string) []addrTok {
	var toks []addrTok
	for i := 0; i < len(s) && len(toks) < maxAddrTokens; {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			i++
		case c == '"':
			var b strings.Builder
			i++
			for i < len(s) && s[i] != '"' {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				b.WriteByte(s[i])
				i++
			}
			i++
			toks = append(toks, addrTok{kind: atQuoted, text: b.String()})
		case c == '(':
			var b strings.Builder
			depth := 0
			i++
			for i < len(s) {
				if s[i] == '\\' && i+1 < len(s) {
					b.WriteByte(s[i+1])
					i += 2
					continue
				}
				if s[i] == '(' {
					depth++
				} else if s[i] == ')' {
					if depth == 0 {
						break
					}
					depth--
				}
				b.WriteByte(s[i])
				i++
			}
			i++
			toks = append(toks, addrTok{kind: atComment, text: b.String()})
		case c == '[':
			j := strings.IndexByte(s[i:], ']')
			if j < 0 {
				j = len(s) - i - 1
			}
			toks = append(toks, addrTok{kind: atLiteral, text: s[i : i+j+1]})
			i += j + 1
		case strings.IndexByte("<>@,;:.", c) >= 0:
			toks = append(toks, addrTok{kind: atSpecial, text: string(c)})
			i++
		default:
			j := i
			for j < len(s) && strings.IndexByte(" \t\r\n\"()[]<>@,;:.", s[j]) < 0 {
				j++
			}
			toks = append(toks, addrTok{kind: atAtom, text: s[i:j]})
			i = j
		}
	}
	return toks
}

// addrItem is one element of an address list: a mailbox, or a group's
// opening ("name:") or closing (";").
type addrItem struct {
	name       string // display name (phrase, or the last comment)
	addr       string // "local@domain"; empty for group markers and bare names
	groupStart bool
	groupEnd   bool
	// prefix is text maildrop writes before this item: the comment that
	// followed the previous item's <address> (see parseMailbox). An item
	// with only a prefix is such a comment at the end of the list.
	prefix string
}

func isSpecial(t addrTok, c string) bool { return t.kind == atSpecial && t.text == c }

// parseAddressList splits a header value into mailboxes and group markers.
func parseAddressList(s string) []addrItem {
	toks := tokenizeAddresses(s)
	var items []addrItem
	var cur []addrTok
	inGroup := false
	carry := ""
	flush := func() {
		if len(cur) > 0 {
			if it, ok := parseMailbox(cur); ok {
				it.prefix, carry = carry, trailingComment(cur)
				items = append(items, it)
			}
		}
		cur = nil
	}
	angle := false
	for _, t := range toks {
		switch {
		case isSpecial(t, "<"):
			angle = true
		case isSpecial(t, ">"):
			angle = false
		}
		switch {
		case !angle && isSpecial(t, ","):
			flush()
		case !angle && isSpecial(t, ":") && !inGroup && !containsAt(cur):
			items = append(items, addrItem{name: phraseText(cur), groupStart: true})
			cur = nil
			inGroup = true
		case !angle && isSpecial(t, ";") && inGroup:
			flush()
			items = append(items, addrItem{groupEnd: true})
			inGroup = false
		default:
			cur = append(cur, t)
		}
	}
	flush()
	if carry != "" {
		items = append(items, addrItem{prefix: carry})
	}
	return items
}

// trailingComment is what maildrop 2.9.3 makes of comments after a
// mailbox's <address>: not part of the mailbox, but the last one's text and
// a blank, written before the next item ("Name <a@b> (c)" shows as
// "Name <a@b>, c ").
func trailingComment(toks []addrTok) string {
	gt := lastIndexSpecial(toks, ">")
	if gt < 0 {
		return ""
	}
	c := ""
	for _, t := range toks[gt+1:] {
		if t.kind == atComment {
			c = strings.TrimSpace(t.text) + " "
		}
	}
	return decode2047(c)
}

func containsAt(toks []addrTok) bool {
	for _, t := range toks {
		if isSpecial(t, "@") || isSpecial(t, "<") {
			return true
		}
	}
	return false
}

// phraseText joins display-name words with single spaces, RFC 2047-decoded;
// quoted words keep their quotes unless the whole phrase is one quoted
// string (Courier shows `Weird "Quoted" Name` as "Weird \"Quoted\" Name").
func phraseText(toks []addrTok) string {
	var words []string
	quoted := 0
	for _, t := range toks {
		switch t.kind {
		case atAtom:
			words = append(words, decode2047(t.text))
		case atQuoted:
			quoted++
			words = append(words, `"`+decode2047(t.text)+`"`)
		case atComment:
			// A comment in the phrase stays in the name, as in
			// maildrop 2.9.3 ("(pre) Name <a@b>").
			words = append(words, "("+strings.TrimSpace(t.text)+")")
		case atSpecial:
			if t.text == "." && len(words) > 0 {
				words[len(words)-1] += "."
			}
		}
	}
	p := strings.Join(words, " ")
	if quoted > 0 && len(p) >= 2 && p[0] == '"' && p[len(p)-1] == '"' {
		p = p[1 : len(p)-1]
	}
	return p
}

func parseMailbox(toks []addrTok) (addrItem, bool) {
	var it addrItem
	lastComment := ""
	for _, t := range toks {
		if isSpecial(t, ">") {
			break // comments after <address> are not this mailbox's
		}
		if t.kind == atComment {
			lastComment = strings.TrimSpace(t.text)
		}
	}
	lt := -1
	for i, t := range toks {
		if isSpecial(t, "<") {
			lt = i
			break
		}
	}
	if lt >= 0 {
		var inner []addrTok
		rest := toks[lt+1:]
		for i, t := range rest {
			if isSpecial(t, ">") {
				inner = rest[:i]
				break
			}
			inner = rest[:i+1]
		}
		it.addr = joinAddr(inner)
		it.name = phraseText(toks[:lt])
		if it.name == "" {
			it.name = decode2047(lastComment)
		}
		return it, it.addr != "" || it.name != ""
	}
	var plain []addrTok
	for _, t := range toks {
		if t.kind != atComment {
			plain = append(plain, t)
		}
	}
	if !containsAt(plain) {
		// A bare word ("From: Joe"): keep it as text, not as an address.
		it.name = phraseText(plain)
		if it.name == "" {
			it.name = decode2047(lastComment)
			return it, false
		}
		return it, true
	}
	it.addr = joinAddr(plain)
	it.name = decode2047(lastComment)
	return it, true
}

// joinAddr writes an addr-spec without the blanks and comments around its
// tokens ("a @ b . c" is "a@b.c"); source routes ("@a,@b:") are dropped.
func joinAddr(toks []addrTok) string {
	if i := lastIndexSpecial(toks, ":"); i >= 0 {
		toks = toks[i+1:]
	}
	var b strings.Builder
	for _, t := range toks {
		switch t.kind {
		case atComment:
		case atQuoted:
			b.WriteString(`"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(t.text) + `"`)
		default:
			b.WriteString(t.text)
		}
	}
	return b.String()
}

func lastIndexSpecial(toks []addrTok, c string) int {
	for i := len(toks) - 1; i >= 0; i-- {
		if isSpecial(toks[i], c) {
			return i
		}
	}
	return -1
}

// quoteName quotes a display name that contains RFC 5322 specials.
func quoteName(n string) string {
	if strings.ContainsAny(n, `()<>@,;:\".[]`) {
		return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(n) + `"`
	}
	return n
}

// canonicalAddressList renders an address header value the way maildrop's
// patterns see it: "Name <addr>" or "addr", joined with ", ".
func canonicalAddressList(s string) string {
	var b strings.Builder
	first := true
	for _, it := range parseAddressList(s) {
		switch {
		case it.groupStart:
			if !first {
				b.WriteString(", ")
			}
			b.WriteString(quoteName(it.name) + ": ")
			first = true
			continue
		case it.groupEnd:
			// maildrop writes the next item right after the ";".
			b.WriteString(";")
			first = true
			continue
		}
		if !first {
			b.WriteString(", ")
		}
		first = false
		b.WriteString(it.prefix)
		switch {
		case it.addr == "" && it.name == "":
		case it.addr == "":
			b.WriteString(it.name)
		case it.name != "":
			b.WriteString(quoteName(it.name) + " <" + it.addr + ">")
		default:
			b.WriteString(it.addr)
		}
	}
	return b.String()
}

// addresses returns the addr-specs of a header value (getaddr).
func addresses(s string) []string {
	var out []string
	for _, it := range parseAddressList(s) {
		if it.addr != "" {
			out = append(out, it.addr)
		}
	}
	return out
}
