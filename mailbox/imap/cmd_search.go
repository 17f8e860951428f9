package imap

import (
	"bytes"
	"errors"
	"strings"
	"time"

	"postern/mailbox/maildir"
	"postern/mailbox/mime"
)

// SEARCH and UID SEARCH (RFC 3501 6.4.4) with every RFC 3501 search key,
// and EMAILID, THREADID (RFC 8474 6) and the SAVED* keys (RFC 8514 4.2).
func searchCommands() []*commandSpec {
	return []*commandSpec{
		{name: "SEARCH", states: stateSelected, caps: []string{"ESEARCH", "SEARCHRES"}, parse: parseSearch, exec: execSearch},
		{name: "UID SEARCH", states: stateSelected, parse: parseSearch, exec: execSearch},
	}
}

// searchKey is one node of a parsed search program.
type searchKey struct {
	op       string // ALL, AND, OR, NOT, FLAG, UNFLAG, KEYWORD, UNKEYWORD, NEW, OLD, RECENT, SEQ, UID, LARGER, SMALLER, BEFORE, ON, SINCE, SENTBEFORE, SENTON, SENTSINCE, HEADER, BODY, TEXT
	letter   byte
	field    string // HEADER field name
	value    string // search string, lower-cased
	date     time.Time
	n        int64
	modseq   uint64
	set      seqSet
	last     bool // SEQ or UID with "$", the saved result (RFC 5182)
	children []*searchKey
}

type searchArgs struct {
	charset string
	// charsetGiven: SEARCH named a CHARSET (not the default).
	charsetGiven bool
	key          *searchKey
	// esearch: RETURN was given (RFC 4731); ret holds MIN MAX COUNT ALL
	// and SAVE (RFC 5182).
	esearch bool
	ret     map[string]bool
	// noCharsetKey: SORT and THREAD give the charset before the keys.
	noCharsetKey bool
}

const maxSearchKeys = 1000

func parseSearch(d *decoder) (any, error) {
	if err := d.sp(); err != nil {
		return nil, err
	}
	p := &searchParser{d: d}
	a := searchArgs{charset: "US-ASCII"}
	if err := p.searchReturn(&a); err != nil {
		return nil, err
	}
	if err := p.program(&a); err != nil {
		return nil, err
	}
	return a, nil
}

// program reads the search keys up to the end of the line into a.key.
func (p *searchParser) program(a *searchArgs) error {
	d := p.d
	root := &searchKey{op: "AND"}
	first := true
	for {
		b, err := d.peek()
		if err != nil {
			return err
		}
		if (b == '\r' || b == '\n') && p.pending == "" {
			break
		}
		if !first {
			if err := d.sp(); err != nil {
				return err
			}
		}
		k, err := p.key(0)
		if err != nil {
			return err
		}
		if k.op == "CHARSET" && (!first || a.noCharsetKey) {
			return syntaxErr("CHARSET must come first")
		}
		if first && k.op == "CHARSET" {
			a.charset, a.charsetGiven = strings.ToUpper(k.value), true
			first = false
			continue
		}
		first = false
		root.children = append(root.children, k)
	}
	if len(root.children) == 0 {
		return syntaxErr("SEARCH needs a search key")
	}
	a.key = root
	return nil
}

type searchParser struct {
	d     *decoder
	count int
	// pending is a key name already read (by searchReturn).
	pending string
}

func (p *searchParser) key(depth int) (*searchKey, error) {
	d := p.d
	if depth > maxListDepth {
		return nil, syntaxErr("search program nested too deeply")
	}
	if p.count++; p.count > maxSearchKeys {
		return nil, syntaxErr("search program too long")
	}
	var name string
	if p.pending != "" {
		name, p.pending = p.pending, ""
		return p.namedKey(strings.ToUpper(name), depth)
	}
	b, err := d.peek()
	if err != nil {
		return nil, err
	}
	if b == '(' {
		d.readByte()
		k := &searchKey{op: "AND"}
		for {
			c, err := p.key(depth + 1)
			if err != nil {
				return nil, err
			}
			k.children = append(k.children, c)
			b, err := d.peek()
			if err != nil {
				return nil, err
			}
			if b == ')' {
				d.readByte()
				return k, nil
			}
			if err := d.sp(); err != nil {
				return nil, err
			}
		}
	}
	if isDigit(b) || b == '*' || b == '$' {
		set, err := d.seqArg()
		if err != nil {
			return nil, err
		}
		return &searchKey{op: "SEQ", set: set.set, last: set.last}, nil
	}
	name, err = d.atom()
	if err != nil {
		return nil, err
	}
	return p.namedKey(strings.ToUpper(name), depth)
}

// namedKey reads the arguments of the search key called name.
func (p *searchParser) namedKey(name string, depth int) (*searchKey, error) {
	d := p.d
	var err error
	k := &searchKey{op: name}
	arg := func() (string, error) {
		if err := d.sp(); err != nil {
			return "", err
		}
		return d.astring()
	}
	dateArg := func() error {
		if err := d.sp(); err != nil {
			return err
		}
		s, err := d.astring()
		if err != nil {
			return err
		}
		t, err := time.Parse("2-Jan-2006", s)
		if err != nil {
			return syntaxErr("invalid date %q", truncate(s, 40))
		}
		k.date = t
		return nil
	}
	switch name {
	case "ALL", "NEW", "OLD", "RECENT":
	case "ANSWERED", "DELETED", "DRAFT", "FLAGGED", "SEEN":
		k.op, k.letter = "FLAG", flagLetter(name)
	case "UNANSWERED", "UNDELETED", "UNDRAFT", "UNFLAGGED", "UNSEEN":
		k.op, k.letter = "UNFLAG", flagLetter(name[2:])
	case "KEYWORD", "UNKEYWORD":
		if err := d.sp(); err != nil {
			return nil, err
		}
		if k.value, err = d.atom(); err != nil {
			return nil, err
		}
	case "BCC", "CC", "FROM", "SUBJECT", "TO":
		v, err := arg()
		if err != nil {
			return nil, err
		}
		k.op, k.field, k.value = "HEADER", name, strings.ToLower(v)
	case "HEADER":
		f, err := arg()
		if err != nil {
			return nil, err
		}
		v, err := arg()
		if err != nil {
			return nil, err
		}
		k.field, k.value = f, strings.ToLower(v)
	case "BODY", "TEXT":
		v, err := arg()
		if err != nil {
			return nil, err
		}
		k.value = strings.ToLower(v)
	case "CHARSET":
		if depth > 0 {
			return nil, syntaxErr("CHARSET must come first")
		}
		v, err := arg()
		if err != nil {
			return nil, err
		}
		k.value = v
	case "BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE", "SAVEDBEFORE", "SAVEDON", "SAVEDSINCE":
		// SAVED*: RFC 8514 4.2.
		if err := dateArg(); err != nil {
			return nil, err
		}
	case "SAVEDATESUPPORTED":
		// RFC 8514 4.2: every message, since every mailbox here has
		// save dates.
		k.op = "ALL"
	case "EMAILID", "THREADID":
		// RFC 8474 6: the objectid, compared exactly.
		if err := d.sp(); err != nil {
			return nil, err
		}
		if k.value, err = d.atom(); err != nil {
			return nil, err
		}
		if !validObjectID(k.value) {
			return nil, syntaxErr("invalid %s", name)
		}
	case "LARGER", "SMALLER":
		if err := d.sp(); err != nil {
			return nil, err
		}
		n, err := d.number()
		if err != nil {
			return nil, err
		}
		k.n = int64(n)
	case "UID":
		if err := d.sp(); err != nil {
			return nil, err
		}
		set, err := d.seqArg()
		if err != nil {
			return nil, err
		}
		k.set, k.last = set.set, set.last
	case "MODSEQ":
		// "MODSEQ [entry-name entry-type] mod-sequence" (RFC 7162 3.1.5);
		// flags have no separate mod-sequences here, so the entry is
		// checked for syntax and otherwise ignored.
		if err := d.sp(); err != nil {
			return nil, err
		}
		if b, err := d.peek(); err == nil && b == '"' {
			if _, err := d.str(); err != nil {
				return nil, err
			}
			if err := d.sp(); err != nil {
				return nil, err
			}
			typ, err := d.atom()
			if err != nil {
				return nil, err
			}
			switch strings.ToLower(typ) {
			case "priv", "shared", "all":
			default:
				return nil, syntaxErr("bad MODSEQ entry type")
			}
			if err := d.sp(); err != nil {
				return nil, err
			}
		}
		n, err := d.number64()
		if err != nil {
			return nil, err
		}
		k.modseq = n
	case "NOT":
		if err := d.sp(); err != nil {
			return nil, err
		}
		c, err := p.key(depth + 1)
		if err != nil {
			return nil, err
		}
		k.children = []*searchKey{c}
	case "OR":
		for range 2 {
			if err := d.sp(); err != nil {
				return nil, err
			}
			c, err := p.key(depth + 1)
			if err != nil {
				return nil, err
			}
			k.children = append(k.children, c)
		}
	default:
		return nil, syntaxErr("unknown search key %s", truncate(name, 40))
	}
	return k, nil
}

func flagLetter(name string) byte {
	for _, f := range systemFlags {
		if strings.EqualFold(f.name[1:], name) {
			return f.letter
		}
	}
	return 0
}

// searchReturn reads "RETURN (options) " before the criteria (RFC 4731 3).
// The first atom is read here; when it is not RETURN it is handed to the
// key parser as the first key's name.
func (p *searchParser) searchReturn(a *searchArgs) error {
	d := p.d
	b, err := d.peek()
	if err != nil || !(b >= 'A' && b <= 'Z' || b >= 'a' && b <= 'z') {
		return err
	}
	word, err := d.atom()
	if err != nil {
		return err
	}
	if !strings.EqualFold(word, "RETURN") {
		p.pending = word
		return nil
	}
	if err := d.sp(); err != nil {
		return err
	}
	if err := d.expect('(', "'('"); err != nil {
		return err
	}
	a.esearch, a.ret = true, map[string]bool{}
	for i := 0; ; i++ {
		b, err := d.peek()
		if err != nil {
			return err
		}
		if b == ')' {
			d.readByte()
			break
		}
		if i > 0 {
			if err := d.sp(); err != nil {
				return err
			}
		}
		if i > 8 {
			return syntaxErr("too many RETURN options")
		}
		opt, err := d.atom()
		if err != nil {
			return err
		}
		opt = strings.ToUpper(opt)
		switch opt {
		case "MIN", "MAX", "COUNT", "ALL", "SAVE":
			a.ret[opt] = true
		default:
			return syntaxErr("unknown RETURN option %s", truncate(opt, 40))
		}
	}
	if len(a.ret) == 0 {
		a.ret["ALL"] = true // RETURN () means ALL (RFC 4731 3.1)
	}
	return d.sp()
}

func execSearch(s *session, c *command) result {
	a := c.args.(searchArgs)
	sel := s.sel
	if s.rev2() {
		if err := rev2SearchKeys(a.key); err != nil {
			return bad(err.Error())
		}
		if !a.esearch {
			// RFC 9051 6.4.4: the answer is always ESEARCH; no RETURN
			// means ALL.
			a.esearch, a.ret = true, map[string]bool{"ALL": true}
		}
	}
	save := a.ret["SAVE"]
	if s.utf8Accept() && !s.rev2() && a.charsetGiven {
		// RFC 6855 3: after ENABLE UTF8=ACCEPT every string is UTF-8; a
		// CHARSET label conflicts with that.
		if save {
			sel.saved = nil
		}
		return bad("SEARCH CHARSET after ENABLE UTF8=ACCEPT")
	}
	switch a.charset {
	case "US-ASCII", "UTF-8":
	default:
		if save {
			sel.saved = nil // RFC 5182 2.1: a failed SAVE empties the variable
		}
		return no("BADCHARSET (US-ASCII UTF-8)", "Unsupported charset")
	}
	sel.resolveSavedKeys(a.key)
	matches, highest, err := s.search(a.key)
	if err != nil {
		if save {
			sel.saved = nil
		}
		return s.storageResult(err, "SEARCH")
	}
	if save {
		sel.saveResult(matches, a.ret)
		if len(a.ret) == 1 {
			// SAVE alone: no ESEARCH response (RFC 5182 2.4).
			return ok(c.name + " completed, result saved")
		}
	}
	number := func(i int) uint64 {
		if c.uid {
			return uint64(sel.msgs[i].uid)
		}
		return uint64(i + 1)
	}
	w := s.w
	if a.esearch {
		// RFC 4731 3.1: "* ESEARCH (TAG "t") [UID] MIN n MAX n COUNT n ALL set".
		w.line("* ESEARCH (TAG ")
		w.buf = appendString(w.buf, c.tag)
		w.byte(')')
		if c.uid {
			w.raw(" UID")
		}
		if len(matches) > 0 {
			if a.ret["MIN"] {
				w.raw(" MIN ").num(number(matches[0]))
			}
			if a.ret["MAX"] {
				w.raw(" MAX ").num(number(matches[len(matches)-1]))
			}
		}
		if a.ret["COUNT"] {
			w.raw(" COUNT ").num(uint64(len(matches)))
		}
		if a.ret["ALL"] && len(matches) > 0 {
			nums := make([]uint32, len(matches))
			for k, i := range matches {
				nums[k] = uint32(number(i))
			}
			w.raw(" ALL ")
			w.buf = appendUIDSet(w.buf, nums)
		}
		if highest > 0 && len(matches) > 0 {
			w.raw(" MODSEQ ").num(highest)
		}
		w.end()
		return ok(c.name + " completed")
	}
	w.line("* SEARCH")
	for _, i := range matches {
		w.byte(' ').num(number(i))
		if len(w.buf) > 32<<10 {
			// Long result lines go out in pieces.
			w.bw.Write(w.buf)
			w.buf = w.buf[:0]
		}
	}
	if highest > 0 && len(matches) > 0 {
		// RFC 7162 3.1.5: the highest mod-sequence of the matches.
		w.raw(" (MODSEQ ").num(highest).byte(')')
	}
	w.end()
	return ok(c.name + " completed")
}

// search evaluates a search program over the view and returns the
// matching view indexes, ascending. When the program has a MODSEQ key,
// highest is the largest mod-sequence among the matches. Header fields
// the folder index keeps are taken from it (read once per message and
// kept), so repeated searches on From, To, Cc, Subject or Date read no
// files.
func (s *session) search(key *searchKey) (matches []int, highest uint64, err error) {
	sel := s.sel
	var uses searchUses
	uses.scan(key)
	var modseqs []uint64
	if uses.modseq {
		s.enableCondstore() // RFC 7162 3.1: a CONDSTORE-enabling command
		modseqs = sel.index.modseqsOf(sel.msgs)
	}
	var headers map[uint32]*indexHeaders
	if uses.indexedHeader {
		uids := make([]uint32, 0, len(sel.msgs))
		for i := range sel.msgs {
			if !sel.msgs[i].gone {
				uids = append(uids, sel.msgs[i].uid)
			}
		}
		headers = sel.index.headers(uids, sel.folder.Open)
	}
	texts := s.prepareTextFilter(key)
	for i := range sel.msgs {
		m := &sel.msgs[i]
		ev := searchEval{s: s, m: m, seq: uint32(i + 1), texts: texts}
		if headers != nil {
			ev.hdr = headers[m.uid]
		}
		if modseqs != nil {
			ev.modseq = modseqs[i]
		}
		match, err := ev.match(key)
		if err != nil {
			return nil, 0, err
		}
		if match {
			matches = append(matches, i)
			if modseqs != nil {
				highest = max(highest, modseqs[i])
			}
		}
	}
	return matches, highest, nil
}

// searchUses tells what a search program needs beyond the view.
type searchUses struct {
	modseq        bool
	indexedHeader bool
}

func (u *searchUses) scan(k *searchKey) {
	switch k.op {
	case "MODSEQ":
		u.modseq = true
	case "HEADER":
		if indexedField(k.field) != nil {
			u.indexedHeader = true
		}
	case "SENTBEFORE", "SENTON", "SENTSINCE":
		u.indexedHeader = true
	}
	for _, c := range k.children {
		u.scan(c)
	}
}

// indexedField returns the accessor of a header field the index keeps.
func indexedField(name string) func(*indexHeaders) string {
	switch strings.ToLower(name) {
	case "subject":
		return func(h *indexHeaders) string { return h.subject }
	case "from":
		return func(h *indexHeaders) string { return h.from }
	case "to":
		return func(h *indexHeaders) string { return h.to }
	case "cc":
		return func(h *indexHeaders) string { return h.cc }
	case "date":
		return func(h *indexHeaders) string { return h.date }
	case "message-id":
		return func(h *indexHeaders) string { return h.messageID }
	case "in-reply-to":
		return func(h *indexHeaders) string { return h.inReplyTo }
	case "references":
		return func(h *indexHeaders) string { return h.references }
	}
	return nil
}

// searchEval evaluates a search program against one message, reading the
// message only when a key needs its header or text.
type searchEval struct {
	s      *session
	m      *viewMessage
	seq    uint32
	hdr    *indexHeaders // from the folder index, when the program uses it
	modseq uint64
	msg    *loadedMessage
	loaded bool
	text   *string
	texts  *textFilter // BODY/TEXT candidates from the text index
}

func (e *searchEval) load() (*loadedMessage, error) {
	if !e.loaded {
		e.loaded = true
		msg, err := e.s.loadMessage(e.m)
		if err != nil && !errors.Is(err, maildir.ErrNoMessage) {
			return nil, err
		}
		e.msg = msg
	}
	return e.msg, nil
}

func (e *searchEval) match(k *searchKey) (bool, error) {
	m := e.m
	sel := e.s.sel
	switch k.op {
	case "ALL":
		return true, nil
	case "AND":
		for _, c := range k.children {
			ok, err := e.match(c)
			if err != nil || !ok {
				return false, err
			}
		}
		return true, nil
	case "OR":
		for _, c := range k.children {
			ok, err := e.match(c)
			if err != nil || ok {
				return ok, err
			}
		}
		return false, nil
	case "NOT":
		ok, err := e.match(k.children[0])
		return !ok && err == nil, err
	case "FLAG":
		return strings.IndexByte(m.letters, k.letter) >= 0, nil
	case "UNFLAG":
		return strings.IndexByte(m.letters, k.letter) < 0, nil
	case "KEYWORD":
		return containsFold(m.keywords, k.value), nil
	case "UNKEYWORD":
		return !containsFold(m.keywords, k.value), nil
	case "NEW":
		return sel.isRecent(m) && strings.IndexByte(m.letters, maildir.FlagSeen) < 0, nil
	case "OLD":
		return !sel.isRecent(m), nil
	case "RECENT":
		return sel.isRecent(m), nil
	case "SEQ":
		return k.set.contains(e.seq, uint32(len(sel.msgs))), nil
	case "UID":
		return k.set.contains(m.uid, sel.maxUID()), nil
	case "MODSEQ":
		return e.modseq >= k.modseq, nil
	case "LARGER", "SMALLER":
		size, err := e.s.messageSize(m, nil)
		if err != nil {
			if errors.Is(err, maildir.ErrNoMessage) {
				return false, nil
			}
			return false, err
		}
		if k.op == "LARGER" {
			return size > k.n, nil
		}
		return size < k.n, nil
	case "BEFORE", "ON", "SINCE":
		// Internal date, by calendar day in its own zone (RFC 3501 6.4.4
		// compares dates, disregarding time).
		return compareDay(e.s.internalDate(m), k.op, k.date), nil
	case "SAVEDBEFORE", "SAVEDON", "SAVEDSINCE":
		t := e.s.saveDate(m)
		return !t.IsZero() && compareDay(t, k.op[5:], k.date), nil
	case "EMAILID", "THREADID":
		id, err := e.s.objectID(k.op, m)
		if errors.Is(err, maildir.ErrNoMessage) {
			return false, nil
		}
		return id == k.value, err
	case "SENTBEFORE", "SENTON", "SENTSINCE":
		var date string
		if e.hdr != nil {
			date = e.hdr.date
		} else {
			msg, err := e.load()
			if err != nil || msg == nil {
				return false, err
			}
			date = msg.root.Header.Get("Date")
		}
		t, ok := mime.ParseDate(date)
		if !ok {
			return false, nil
		}
		return compareDay(t, k.op[4:], k.date), nil
	case "HEADER":
		var values []string
		if get := indexedField(k.field); get != nil && e.hdr != nil {
			if v := get(e.hdr); v != "" {
				values = strings.Split(v, "\n")
			}
		} else {
			msg, err := e.load()
			if err != nil || msg == nil {
				return false, err
			}
			values = msg.root.Header.Values(k.field)
		}
		if k.value == "" {
			return len(values) > 0, nil
		}
		for _, v := range values {
			if strings.Contains(strings.ToLower(mime.DecodeHeaderValue(v)), k.value) ||
				strings.Contains(strings.ToLower(v), k.value) {
				return true, nil
			}
		}
		return false, nil
	case "BODY", "TEXT":
		if e.texts.excludes(k, int(e.seq-1)) {
			return false, nil // not a candidate: the message is not read
		}
		msg, err := e.load()
		if err != nil || msg == nil {
			return false, err
		}
		if k.op == "TEXT" {
			raw, decoded := searchHeaderTexts(msg)
			if bytes.Contains(raw, []byte(k.value)) || strings.Contains(decoded, k.value) {
				return true, nil
			}
		}
		if e.text == nil {
			t, err := searchBodyText(msg)
			if err != nil {
				return false, err
			}
			e.text = &t
		}
		return strings.Contains(*e.text, k.value), nil
	}
	return false, nil
}

// compareDay compares the calendar date of t (in its own zone) with day.
func compareDay(t time.Time, op string, day time.Time) bool {
	y, mo, d := t.Date()
	td := time.Date(y, mo, d, 0, 0, 0, 0, time.UTC)
	switch op {
	case "BEFORE":
		return td.Before(day)
	case "ON":
		return td.Equal(day)
	default: // SINCE: on or after
		return !td.Before(day)
	}
}
