package webmail

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime/quotedprintable"
	"net/url"
	"strings"
	"unicode/utf8"

	pmime "postern/mailbox/mime"
)

// vCard (RFC 6350) export and import of the address book. An entry is
// written as one vCard 4.0: one person (FN, NICKNAME, an EMAIL for each
// address) when its addresses share one name or have none, else a group
// (KIND:group, a MEMBER:mailto: for each address), which is what a list
// is. Each address carries its own name in X-POSTERN-NAME (RFC 6868
// encoded), so a book exported and imported again is the same book.
// Import reads vCard 2.1, 3.0 and 4.0 as mail clients and phones write
// them: folded lines, escapes, quoted-printable and other charsets
// (2.1), and takes FN (else N), NICKNAME, EMAIL and, of groups, the
// mailto: MEMBERs; everything else is passed by.

// Bounds of an import.
const (
	maxVCardFile  = maxBookFile // bytes of the uploaded file
	maxVCardProps = 2000        // properties of one card
	maxVCardLine  = 256 << 10   // bytes of one unfolded line
	maxVCards     = 20000       // cards read from one file
)

// vcardProp is one content line: NAME;PARAM=V,V:VALUE (RFC 6350 3.3).
type vcardProp struct {
	name   string              // upper case, without its group
	params map[string][]string // names upper case
	value  string              // raw: escapes not undone
}

func (p vcardProp) param(name string) string {
	if vs := p.params[name]; len(vs) > 0 {
		return vs[0]
	}
	return ""
}

// vcard is one card as read, or why it could not be read.
type vcard struct {
	line  int // of its BEGIN:VCARD
	props []vcardProp
	err   error
}

// parseVCards splits a vCard file into cards. Text outside any card is
// reported in problems; a card that cannot be read has err set. It never
// fails as a whole.
func parseVCards(data []byte) (cards []vcard, problems []bookProblem) {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	type logical struct {
		n    int
		text string
	}
	var lines []logical
	for i, l := range strings.Split(string(data), "\n") {
		l = strings.TrimSuffix(l, "\r")
		if len(lines) > 0 && l != "" && (l[0] == ' ' || l[0] == '\t') {
			// RFC 6350 3.2: a line break and one blank are taken out.
			last := &lines[len(lines)-1]
			if len(last.text)+len(l) <= maxVCardLine+1 {
				last.text += l[1:]
			} else {
				last.text = "\x00too long" // reported as such below
			}
			continue
		}
		if len(lines) > 0 && qpSoftBreak(lines[len(lines)-1].text) {
			// vCard 2.1: a quoted-printable value goes on after a
			// soft line break ("=" at the end) with no blank.
			last := &lines[len(lines)-1]
			if len(last.text)+len(l) <= maxVCardLine {
				last.text = last.text[:len(last.text)-1] + l
				continue
			}
		}
		lines = append(lines, logical{i + 1, l})
	}
	var cur *vcard
	depth := 0
	for _, l := range lines {
		if len(cards) >= maxVCards {
			problems = append(problems, bookProblem{Line: l.n, Reason: fmt.Sprintf("more than %d vCards: the rest is not read", maxVCards)})
			break
		}
		upper := strings.ToUpper(strings.TrimSpace(l.text))
		switch {
		case cur == nil && strings.TrimSpace(l.text) == "":
			continue
		case cur == nil && upper == "BEGIN:VCARD":
			cur, depth = &vcard{line: l.n}, 1
			continue
		case cur == nil:
			if len(problems) < maxVCards {
				problems = append(problems, bookProblem{Line: l.n, Reason: "not inside a vCard (BEGIN:VCARD ... END:VCARD)"})
			}
			continue
		case upper == "BEGIN:VCARD":
			depth++ // a vCard in a vCard (2.1's AGENT): the outer one is not read
			if cur.err == nil {
				cur.err = errors.New("it holds another vCard")
			}
			continue
		case upper == "END:VCARD":
			if depth--; depth == 0 {
				cards = append(cards, *cur)
				cur = nil
			}
			continue
		}
		if cur.err != nil || depth > 1 {
			continue
		}
		if strings.TrimSpace(l.text) == "" {
			continue
		}
		if len(cur.props) >= maxVCardProps {
			cur.err = fmt.Errorf("more than %d lines", maxVCardProps)
			continue
		}
		if strings.HasPrefix(l.text, "\x00") || len(l.text) > maxVCardLine {
			cur.err = fmt.Errorf("line %d is longer than %d KiB", l.n, maxVCardLine>>10)
			continue
		}
		p, err := parseVCardLine(l.text)
		if err != nil {
			cur.err = fmt.Errorf("line %d: %w", l.n, err)
			continue
		}
		cur.props = append(cur.props, p)
	}
	if cur != nil {
		cur.err = errors.New("it has no END:VCARD")
		cards = append(cards, *cur)
	}
	return cards, problems
}

// qpSoftBreak tells whether a vCard 2.1 line is quoted-printable and ends
// in a soft line break.
func qpSoftBreak(line string) bool {
	if !strings.HasSuffix(line, "=") {
		return false
	}
	head, _, ok := strings.Cut(line, ":")
	return ok && strings.Contains(strings.ToUpper(head), "QUOTED-PRINTABLE")
}

// parseVCardLine reads [group "."] name *(";" param) ":" value.
func parseVCardLine(s string) (vcardProp, error) {
	p := vcardProp{params: map[string][]string{}}
	i := strings.IndexAny(s, ";:")
	if i < 0 {
		return p, errors.New("no colon")
	}
	name := s[:i]
	if dot := strings.LastIndexByte(name, '.'); dot >= 0 {
		name = name[dot+1:] // the group (item1.EMAIL) says nothing we use
	}
	if name == "" || strings.ContainsFunc(name, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-')
	}) {
		return p, fmt.Errorf("%.40q is not a property name", name)
	}
	p.name = strings.ToUpper(name)
	rest := s[i:]
	for strings.HasPrefix(rest, ";") {
		rest = rest[1:]
		// A parameter: name, then "=" and values separated by commas,
		// each perhaps in quotes (which may hold ; : and ,).
		j := strings.IndexAny(rest, "=;:")
		if j < 0 {
			return p, errors.New("no colon")
		}
		pname := strings.ToUpper(strings.TrimSpace(rest[:j]))
		if rest[j] != '=' {
			// vCard 2.1: a bare type (EMAIL;INTERNET;PREF:...).
			p.params["TYPE"] = append(p.params["TYPE"], pname)
			rest = rest[j:]
			continue
		}
		rest = rest[j+1:]
		for {
			var v string
			if strings.HasPrefix(rest, `"`) {
				end := strings.IndexByte(rest[1:], '"')
				if end < 0 {
					return p, errors.New("a quote that is not closed")
				}
				v, rest = rest[1:1+end], rest[2+end:]
			} else {
				end := strings.IndexAny(rest, ",;:")
				if end < 0 {
					return p, errors.New("no colon")
				}
				v, rest = rest[:end], rest[end:]
			}
			p.params[pname] = append(p.params[pname], decodeParam(v))
			if !strings.HasPrefix(rest, ",") {
				break
			}
			rest = rest[1:]
		}
	}
	if !strings.HasPrefix(rest, ":") {
		return p, errors.New("no colon")
	}
	p.value = rest[1:]
	return p, nil
}

// decodeParam undoes RFC 6868's ^n, ^' and ^^.
func decodeParam(v string) string {
	if !strings.Contains(v, "^") {
		return v
	}
	return strings.NewReplacer("^n", "\n", "^N", "\n", "^'", `"`, "^^", "^").Replace(v)
}

// encodeParam is RFC 6868's encoding, for a quoted parameter value.
func encodeParam(v string) string {
	return strings.NewReplacer("^", "^^", "\n", "^n", `"`, "^'").Replace(v)
}

// vcardText is a property's value as text: transfer encoding and charset
// (vCard 2.1) undone, then the escapes \\ \, \; \n (RFC 6350 3.4). list
// splits it at unescaped commas (NICKNAME, CATEGORIES) instead.
func vcardText(p vcardProp, list bool) ([]string, error) {
	raw := p.value
	switch enc := strings.ToUpper(p.param("ENCODING")); enc {
	case "":
	case "QUOTED-PRINTABLE":
		b, err := io.ReadAll(quotedprintable.NewReader(strings.NewReader(raw)))
		if err != nil {
			return nil, errors.New("bad quoted-printable")
		}
		raw = string(b)
	default:
		return nil, fmt.Errorf("a %s value is not text", enc)
	}
	if cs := p.param("CHARSET"); cs != "" && !strings.EqualFold(cs, "utf-8") {
		raw = pmime.ToUTF8(cs, []byte(raw))
	}
	if !utf8.ValidString(raw) {
		return nil, errors.New("not UTF-8 text")
	}
	var out []string
	var b strings.Builder
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case c == '\\' && i+1 < len(raw):
			i++
			switch raw[i] {
			case 'n', 'N':
				b.WriteByte('\n')
			default:
				b.WriteByte(raw[i])
			}
		case c == ',' && list:
			out = append(out, b.String())
			b.Reset()
		default:
			b.WriteByte(c)
		}
	}
	return append(out, b.String()), nil
}

// escapeText is RFC 6350 3.4's escaping of a text value.
func escapeText(s string) string {
	return strings.NewReplacer(`\`, `\\`, ",", `\,`, ";", `\;`, "\n", `\n`, "\r", "").Replace(s)
}

// vcardEntry is a card read as an address book entry.
type vcardEntry struct {
	entry *bookEntry
	// nickGiven: the card had a usable NICKNAME (else it was made of the
	// first address, and may take a number to be unique).
	nickGiven bool
	label     string   // how the report names the card
	dropped   []string // addresses left out, with why
}

// vcardToEntry makes an entry of a card.
func vcardToEntry(c vcard) (*vcardEntry, error) {
	if c.err != nil {
		ve := &vcardEntry{}
		for _, p := range c.props {
			if t, err := vcardText(p, false); p.name == "FN" && err == nil {
				ve.label = bookName(t[0])
				break
			}
		}
		return ve, c.err
	}
	var fn, n, nick string
	group := false
	var emails, members []vcardProp
	for _, p := range c.props {
		switch p.name {
		case "VERSION":
			if v := strings.TrimSpace(p.value); v != "2.1" && v != "3.0" && v != "4.0" {
				return nil, fmt.Errorf("vCard version %.10q is not read", v)
			}
		case "FN":
			if fn == "" {
				if t, err := vcardText(p, false); err == nil {
					fn = t[0]
				}
			}
		case "N":
			// family;given;additional;prefixes;suffixes: "given family".
			if f := splitUnescaped(p.value); n == "" && len(f) >= 2 {
				given, err1 := vcardText(vcardProp{value: f[1], params: p.params}, false)
				family, err2 := vcardText(vcardProp{value: f[0], params: p.params}, false)
				if err1 == nil && err2 == nil {
					n = strings.TrimSpace(given[0] + " " + family[0])
				}
			}
		case "NICKNAME":
			if t, err := vcardText(p, true); err == nil && nick == "" {
				nick = strings.TrimSpace(t[0])
			}
		case "KIND", "X-ADDRESSBOOKSERVER-KIND":
			group = strings.EqualFold(strings.TrimSpace(p.value), "group")
		case "EMAIL":
			emails = append(emails, p)
		case "MEMBER", "X-ADDRESSBOOKSERVER-MEMBER":
			members = append(members, p)
		}
	}
	name := fn
	if strings.TrimSpace(name) == "" {
		name = n
	}
	name = bookName(name)
	ve := &vcardEntry{entry: &bookEntry{}}
	ve.label = name
	seen := map[string]bool{}
	add := func(p vcardProp, addr string) {
		addr = strings.TrimSpace(addr)
		if len(addr) > 7 && strings.EqualFold(addr[:7], "mailto:") {
			// RFC 6068: the address, then perhaps ?hfields; %hh escapes.
			to, _, _ := strings.Cut(addr[7:], "?")
			u, err := url.PathUnescape(to)
			if err != nil {
				ve.dropped = append(ve.dropped, fmt.Sprintf("%.60q: not an address", addr))
				return
			}
			addr = u
		}
		local, domain, ok := strings.Cut(addr, "@")
		if !ok || local == "" || domain == "" || strings.Contains(domain, "@") || checkBookAddr(addr) != nil {
			ve.dropped = append(ve.dropped, fmt.Sprintf("%.60q: not an address", addr))
			return
		}
		if seen[strings.ToLower(addr)] {
			return
		}
		seen[strings.ToLower(addr)] = true
		an := name
		if vs, ok := p.params["X-POSTERN-NAME"]; ok && len(vs) > 0 {
			an = bookName(vs[0])
		}
		ve.entry.Addrs = append(ve.entry.Addrs, bookAddress{Name: an, Addr: addr})
	}
	for _, p := range emails {
		t, err := vcardText(p, false)
		if err != nil {
			ve.dropped = append(ve.dropped, "an e-mail address: "+err.Error())
			continue
		}
		add(p, t[0])
	}
	if group {
		for _, p := range members {
			v := strings.TrimSpace(p.value)
			if len(v) < 7 || !strings.EqualFold(v[:7], "mailto:") {
				ve.dropped = append(ve.dropped, "a member that is another card, not an address")
				continue
			}
			add(p, v)
		}
	}
	if ve.label == "" && len(ve.entry.Addrs) > 0 {
		ve.label = ve.entry.Addrs[0].Addr
	}
	if len(ve.entry.Addrs) == 0 {
		return ve, errors.New("it has no e-mail address that can be used")
	}
	if len(ve.entry.Addrs) > maxRecipients {
		return ve, fmt.Errorf("it has more than %d addresses", maxRecipients)
	}
	if nick = strings.ToLower(nick); nick != "" && checkNick(nick) == nil {
		ve.entry.Nick, ve.nickGiven = nick, true
	} else {
		local, _, _ := strings.Cut(ve.entry.Addrs[0].Addr, "@")
		ve.entry.Nick = suggestNick(local)
		if checkNick(ve.entry.Nick) != nil {
			ve.entry.Nick = "contact"
		}
	}
	if ve.label == "" {
		ve.label = ve.entry.Nick
	}
	return ve, checkEntry(ve.entry)
}

// bookName makes a vCard's name one an entry can hold: one line, no
// control characters, at most maxBookName bytes.
func bookName(s string) string {
	s = oneLine(clean(s))
	if len(s) > maxBookName {
		s = strings.ToValidUTF8(s[:maxBookName], "")
	}
	return s
}

// splitUnescaped splits a structured value at semicolons that are not
// escaped, keeping the escapes.
func splitUnescaped(s string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case ';':
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// formatVCards writes entries as vCard 4.0 (CRLF, lines folded at 75
// octets, RFC 6350 3.2).
func formatVCards(entries []*bookEntry) []byte {
	var b bytes.Buffer
	line := func(s string) {
		room := 75 // a continuation line's blank counts too
		for len(s) > room {
			cut := room
			for cut > 1 && !utf8.RuneStart(s[cut]) {
				cut-- // never inside a UTF-8 sequence
			}
			b.WriteString(s[:cut] + "\r\n ")
			s, room = s[cut:], 74
		}
		b.WriteString(s + "\r\n")
	}
	for _, e := range entries {
		line("BEGIN:VCARD")
		line("VERSION:4.0")
		first, oneName := "", true
		for i, a := range e.Addrs {
			if i == 0 {
				first = a.Name
			} else if a.Name != first {
				oneName = false
			}
		}
		fn := first
		if !oneName || fn == "" {
			fn = e.Nick
		}
		if !oneName {
			line("KIND:group")
		}
		line("FN:" + escapeText(fn))
		line("NICKNAME:" + escapeText(e.Nick))
		for _, a := range e.Addrs {
			p := `;X-POSTERN-NAME="` + encodeParam(a.Name) + `"`
			if oneName {
				line("EMAIL" + p + ":" + escapeText(a.Addr))
			} else {
				line("MEMBER" + p + ":mailto:" + strings.NewReplacer("%", "%25", "?", "%3F", "#", "%23").Replace(a.Addr))
			}
		}
		line("END:VCARD")
	}
	return b.Bytes()
}
