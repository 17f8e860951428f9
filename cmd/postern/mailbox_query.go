package main

// The search query of postern mailbox expunge, search, fetch, move and
// flags: a subset of doveadm-search-query(7), parsed from the command's
// words (each shell word is one token) into a tree and evaluated per
// message. docs/mailbox.md has the grammar.

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"

	"postern/mailbox/maildir"
)

// queryKind is what a node of a parsed query tests.
type queryKind int

const (
	qAll queryKind = iota
	qAnd
	qOr
	qNot
	qMailbox
	qFlag     // a system flag set (want) or not set (!want)
	qKeyword  // an IMAP keyword set (want) or not set (!want)
	qBefore   // internal date (mtime) before when
	qSince    // internal date at or after when
	qSavedBef // save date (ctime) before when
	qSavedSin // save date at or after when
	qLarger   // size on disk above size
	qSmaller  // size on disk below size
	qHeader   // header field (a name) containing text
	qUID      // UID in uids
)

// queryNode is one node of a parsed query.
type queryNode struct {
	kind queryKind
	kids []*queryNode // qAnd, qOr: two or more; qNot: one
	word int          // 1-based position of the key's word, for messages

	flag  byte           // qFlag: the Maildir info letter
	want  bool           // qFlag, qKeyword: set or not set
	text  string         // qKeyword: the keyword; qHeader: the text, lower-cased; qMailbox: the pattern
	field string         // qHeader: the field name
	when  time.Time      // the date keys
	size  int64          // qLarger, qSmaller
	uids  []uidRange     // qUID
	match *regexp.Regexp // qMailbox: the pattern, compiled
}

// uidRange is one element of a UID set; hi 0 stands for "*", the
// folder's highest UID.
type uidRange struct{ lo, hi uint32 }

// Bounds on a query from the command line: it is typed by an admin, but
// a script may build one, and the parser recurses.
const (
	maxQueryDepth = 64
	maxUIDRanges  = 10000
)

// flagKeys are the keys that test a system flag.
var flagKeys = map[string]struct {
	letter byte
	want   bool
}{
	"seen": {maildir.FlagSeen, true}, "unseen": {maildir.FlagSeen, false},
	"flagged": {maildir.FlagFlagged, true}, "unflagged": {maildir.FlagFlagged, false},
	"deleted": {maildir.FlagTrashed, true}, "undeleted": {maildir.FlagTrashed, false},
	"answered": {maildir.FlagReplied, true}, "unanswered": {maildir.FlagReplied, false},
	"draft": {maildir.FlagDraft, true}, "undraft": {maildir.FlagDraft, false},
}

// dateKeys are the keys that compare a date.
var dateKeys = map[string]queryKind{
	"before": qBefore, "since": qSince, "savedbefore": qSavedBef, "savedsince": qSavedSin,
}

// headerKeys are the keys that search one header field.
var headerKeys = map[string]string{
	"from": "From", "to": "To", "cc": "Cc", "bcc": "Bcc", "subject": "Subject",
}

// queryParser holds the state of one parse.
type queryParser struct {
	words []string
	pos   int
	depth int
	now   time.Time
	names folderNames
}

// parseSearchQuery parses words into a query; intervals ("30d") count
// back from now, mailbox names are as names shows them. Errors say which
// word is wrong.
func parseSearchQuery(words []string, now time.Time, names folderNames) (*queryNode, error) {
	if len(words) == 0 {
		return nil, fmt.Errorf("search query: empty (use 'all' for every message)")
	}
	p := &queryParser{words: words, now: now, names: names}
	n, err := p.and()
	if err != nil {
		return nil, err
	}
	if p.pos < len(words) { // only a ")" stops and() early
		return nil, p.errorf("unexpected ')'")
	}
	return n, nil
}

// errorf is a parse error at the current word.
func (p *queryParser) errorf(format string, args ...any) error {
	return fmt.Errorf("search query: %s at word %d", fmt.Sprintf(format, args...), p.pos+1)
}

// and parses keys up to the end or a ")": all must match.
func (p *queryParser) and() (*queryNode, error) {
	var kids []*queryNode
	for p.pos < len(p.words) && p.words[p.pos] != ")" {
		n, err := p.or()
		if err != nil {
			return nil, err
		}
		kids = append(kids, n)
	}
	switch len(kids) {
	case 0:
		return nil, p.errorf("expected a search key")
	case 1:
		return kids[0], nil
	}
	return &queryNode{kind: qAnd, kids: kids, word: kids[0].word}, nil
}

// or parses KEY [OR KEY]...: OR binds tighter than the implicit AND, so
// "mailbox INBOX seen OR flagged" is INBOX and (seen or flagged).
func (p *queryParser) or() (*queryNode, error) {
	first, err := p.unary()
	if err != nil {
		return nil, err
	}
	kids := []*queryNode{first}
	for p.pos < len(p.words) && strings.EqualFold(p.words[p.pos], "OR") {
		p.pos++
		n, err := p.unary()
		if err != nil {
			return nil, err
		}
		kids = append(kids, n)
	}
	if len(kids) == 1 {
		return first, nil
	}
	return &queryNode{kind: qOr, kids: kids, word: first.word}, nil
}

// unary parses NOT KEY, ( QUERY ) or one key.
func (p *queryParser) unary() (*queryNode, error) {
	if p.pos >= len(p.words) {
		return nil, p.errorf("expected a search key")
	}
	w := p.words[p.pos]
	switch {
	case strings.EqualFold(w, "NOT"), w == "(":
		if p.depth++; p.depth > maxQueryDepth {
			return nil, p.errorf("nested deeper than %d", maxQueryDepth)
		}
		defer func() { p.depth-- }()
		start := p.pos
		p.pos++
		if w != "(" {
			kid, err := p.unary()
			if err != nil {
				return nil, err
			}
			return &queryNode{kind: qNot, kids: []*queryNode{kid}, word: start + 1}, nil
		}
		n, err := p.and()
		if err != nil {
			return nil, err
		}
		if p.pos >= len(p.words) {
			p.pos = start
			return nil, p.errorf("'(' without its ')'")
		}
		p.pos++ // ")"
		return n, nil
	case w == ")":
		return nil, p.errorf("unexpected ')'")
	case strings.EqualFold(w, "OR"):
		return nil, p.errorf("'OR' needs a search key before it")
	}
	return p.key()
}

// key parses one search key and its arguments.
func (p *queryParser) key() (*queryNode, error) {
	w := p.words[p.pos]
	name := strings.ToLower(w)
	n := &queryNode{word: p.pos + 1}
	p.pos++
	if f, ok := flagKeys[name]; ok {
		n.kind, n.flag, n.want = qFlag, f.letter, f.want
		return n, nil
	}
	if kind, ok := dateKeys[name]; ok {
		arg, err := p.arg(name, "a date (2026-01-31) or an interval (30d)")
		if err != nil {
			return nil, err
		}
		if n.when, err = parseQueryTime(arg, p.now); err != nil {
			return nil, p.argError(name, err)
		}
		n.kind = kind
		return n, nil
	}
	if field, ok := headerKeys[name]; ok {
		arg, err := p.arg(name, "the text to look for")
		if err != nil {
			return nil, err
		}
		n.kind, n.field, n.text = qHeader, field, strings.ToLower(arg)
		return n, nil
	}
	var err error
	switch name {
	case "all":
		n.kind = qAll
	case "mailbox":
		var arg string
		if arg, err = p.arg(name, "a mailbox name or pattern"); err == nil {
			n.kind, n.text, n.match = qMailbox, arg, p.names.pattern(arg)
		}
	case "keyword", "unkeyword":
		var arg string
		if arg, err = p.arg(name, "a keyword"); err == nil {
			if kerr := maildir.ValidKeyword(arg); kerr != nil {
				return nil, p.argError(name, kerr)
			}
			n.kind, n.text, n.want = qKeyword, arg, name == "keyword"
		}
	case "larger", "smaller":
		var arg string
		if arg, err = p.arg(name, "a size (10k, 2M)"); err == nil {
			if n.size, err = parseQuerySize(arg); err != nil {
				return nil, p.argError(name, err)
			}
			n.kind = qLarger
			if name == "smaller" {
				n.kind = qSmaller
			}
		}
	case "header":
		var field, text string
		if field, err = p.arg(name, "a header field name"); err == nil {
			if !validFieldName(field) {
				return nil, p.argError(name, fmt.Errorf("%s is not a header field name", quoteWord(field)))
			}
			if text, err = p.arg(name, "the text to look for"); err == nil {
				n.kind, n.field, n.text = qHeader, field, strings.ToLower(text)
			}
		}
	case "uid":
		var arg string
		if arg, err = p.arg(name, "a UID set (1,5:9,20:*)"); err == nil {
			if n.uids, err = parseUIDSet(arg); err != nil {
				return nil, p.argError(name, err)
			}
			n.kind = qUID
		}
	default:
		p.pos--
		return nil, p.errorf("unknown key %s", quoteWord(w))
	}
	if err != nil {
		return nil, err
	}
	return n, nil
}

// arg takes the argument of key, which needs what.
func (p *queryParser) arg(key, what string) (string, error) {
	if p.pos >= len(p.words) {
		return "", p.errorf("'%s' needs %s", key, what)
	}
	p.pos++
	return p.words[p.pos-1], nil
}

// argError reports a bad argument of key: at the argument's word.
func (p *queryParser) argError(key string, err error) error {
	return fmt.Errorf("search query: '%s' at word %d: %v", key, p.pos, err)
}

// quoteWord shows a word of the query in a message: in single quotes, or
// Go-quoted when it holds something unprintable.
func quoteWord(w string) string {
	const max = 60
	if len(w) > max {
		w = w[:max] + "..."
	}
	for _, r := range w {
		if !unicode.IsPrint(r) {
			return strconv.Quote(w)
		}
	}
	return "'" + w + "'"
}

// validFieldName: RFC 5322 2.2, printable ASCII but ":".
func validFieldName(s string) bool {
	if s == "" || len(s) > 200 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 33 || s[i] > 126 || s[i] == ':' {
			return false
		}
	}
	return true
}

// intervalUnits are the units of an interval ("30d"), as doveadm takes
// them.
var intervalUnits = map[string]time.Duration{
	"s": time.Second, "sec": time.Second, "secs": time.Second, "second": time.Second, "seconds": time.Second,
	"m": time.Minute, "min": time.Minute, "mins": time.Minute, "minute": time.Minute, "minutes": time.Minute,
	"h": time.Hour, "hour": time.Hour, "hours": time.Hour,
	"d": 24 * time.Hour, "day": 24 * time.Hour, "days": 24 * time.Hour,
	"w": 7 * 24 * time.Hour, "week": 7 * 24 * time.Hour, "weeks": 7 * 24 * time.Hour,
}

// maxInterval keeps an interval's arithmetic far from overflow.
const maxInterval = 200 * 365 * 24 * time.Hour

// parseQueryTime reads an interval back from now ("30d", "12h", "2w") or
// a day, at local midnight ("2026-01-31", IMAP's "31-Jan-2026").
func parseQueryTime(s string, now time.Time) (time.Time, error) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i > 0 && i < len(s) {
		if unit, ok := intervalUnits[strings.ToLower(s[i:])]; ok {
			n, err := strconv.ParseInt(s[:i], 10, 64)
			if err != nil || n > int64(maxInterval/unit) {
				return time.Time{}, fmt.Errorf("interval %s is too long", quoteWord(s))
			}
			return now.Add(-time.Duration(n) * unit), nil
		}
	}
	for _, layout := range []string{"2006-01-02", "2-Jan-2006"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%s is neither a date (2026-01-31, 31-Jan-2026) nor an interval (30d, 12h, 2w)", quoteWord(s))
}

// sizeUnits are the multipliers of a size ("10k"), powers of 1024.
var sizeUnits = map[string]int64{"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "m": 1 << 20, "mb": 1 << 20, "g": 1 << 30, "gb": 1 << 30, "t": 1 << 40, "tb": 1 << 40}

// parseQuerySize reads a size: a number and an optional unit.
func parseQuerySize(s string) (int64, error) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	unit, ok := sizeUnits[strings.ToLower(s[i:])]
	if i == 0 || !ok {
		return 0, fmt.Errorf("%s is not a size (10000, 10k, 2M, 1G)", quoteWord(s))
	}
	n, err := strconv.ParseInt(s[:i], 10, 64)
	if err != nil || n > (1<<62)/unit {
		return 0, fmt.Errorf("size %s is too large", quoteWord(s))
	}
	return n * unit, nil
}

// parseUIDSet reads an IMAP UID set: "1,5:9,20:*".
func parseUIDSet(s string) ([]uidRange, error) {
	var out []uidRange
	for part := range strings.SplitSeq(s, ",") {
		if len(out) == maxUIDRanges {
			return nil, fmt.Errorf("more than %d ranges in a UID set", maxUIDRanges)
		}
		lo, hi, isRange := strings.Cut(part, ":")
		a, err := parseUID(lo)
		if err != nil {
			return nil, err
		}
		b := a
		if isRange {
			if b, err = parseUID(hi); err != nil {
				return nil, err
			}
		}
		out = append(out, uidRange{a, b}) // either order: "9:5" is "5:9"
	}
	return out, nil
}

// parseUID reads one UID of a set; "*" is 0.
func parseUID(s string) (uint32, error) {
	if s == "*" {
		return 0, nil
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n == 0 || s[0] == '+' {
		return 0, fmt.Errorf("%s is not a UID (1 to 4294967295, or *)", quoteWord(s))
	}
	return uint32(n), nil
}

// contains reports whether the query has a key of kind anywhere.
func (n *queryNode) contains(kind queryKind) bool {
	if n.kind == kind {
		return true
	}
	for _, k := range n.kids {
		if k.contains(kind) {
			return true
		}
	}
	return false
}

// tri is a truth value that may not be known yet.
type tri int

const (
	triNo tri = iota
	triYes
	triMaybe
)

// folderMatch tells from a folder's names alone whether the query can
// match messages in it (no when the mailbox keys rule it out), so that
// folders a query does not name are not scanned.
func (n *queryNode) folderMatch(names [2]string) tri {
	switch n.kind {
	case qAll:
		return triYes
	case qMailbox:
		if n.match.MatchString(names[0]) || n.match.MatchString(names[1]) {
			return triYes
		}
		return triNo
	case qAnd, qOr:
		decided, other := triYes, triNo // qOr: any yes decides, else no
		if n.kind == qAnd {
			decided, other = triNo, triYes // any no decides, else yes
		}
		result := other
		for _, k := range n.kids {
			switch k.folderMatch(names) {
			case decided:
				return decided
			case triMaybe:
				result = triMaybe
			}
		}
		return result
	case qNot:
		switch n.kids[0].folderMatch(names) {
		case triYes:
			return triNo
		case triNo:
			return triYes
		}
	}
	return triMaybe
}

// messageFacts is what keys test about one message; the costly facts
// (header, save date) are read at the first key that needs them.
type messageFacts interface {
	folderNames() [2]string
	message() *maildir.Message
	maxUID() uint32
	saveDate() time.Time
	internalDate() time.Time
	headerValues(field string) []string // RFC 2047-decoded, lower-cased
}

// matches evaluates the query for one message.
func (n *queryNode) matches(m messageFacts) bool {
	switch n.kind {
	case qAll:
		return true
	case qAnd:
		for _, k := range n.kids {
			if !k.matches(m) {
				return false
			}
		}
		return true
	case qOr:
		for _, k := range n.kids {
			if k.matches(m) {
				return true
			}
		}
		return false
	case qNot:
		return !n.kids[0].matches(m)
	case qMailbox:
		return n.folderMatch(m.folderNames()) == triYes
	case qFlag:
		return (strings.IndexByte(m.message().Flags, n.flag) >= 0) == n.want
	case qKeyword:
		found := false
		for _, k := range m.message().Keywords {
			found = found || strings.EqualFold(k, n.text)
		}
		return found == n.want
	case qBefore:
		return m.internalDate().Before(n.when)
	case qSince:
		return !m.internalDate().Before(n.when)
	case qSavedBef:
		return m.saveDate().Before(n.when)
	case qSavedSin:
		return !m.saveDate().Before(n.when)
	case qLarger:
		return m.message().Size > n.size
	case qSmaller:
		return m.message().Size < n.size
	case qHeader:
		for _, v := range m.headerValues(n.field) {
			if strings.Contains(v, n.text) {
				return true
			}
		}
		return false
	case qUID:
		uid, top := m.message().UID, m.maxUID()
		for _, r := range n.uids {
			lo, hi := r.lo, r.hi
			if lo == 0 {
				lo = top
			}
			if hi == 0 {
				hi = top
			}
			if uid >= min(lo, hi) && uid <= max(lo, hi) {
				return true
			}
		}
		return false
	}
	return false
}
