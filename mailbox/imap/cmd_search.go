package imap

import (
	"bytes"
	"errors"
	"strings"
	"time"

	"postern/mailbox/maildir"
	"postern/mailbox/mime"
)

// SEARCH and UID SEARCH (RFC 3501 6.4.4) with every RFC 3501 search key.
func searchCommands() []*commandSpec {
	return []*commandSpec{
		{name: "SEARCH", states: stateSelected, parse: parseSearch, exec: execSearch},
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
	set      seqSet
	children []*searchKey
}

type searchArgs struct {
	charset string
	key     *searchKey
}

const maxSearchKeys = 1000

func parseSearch(d *decoder) (any, error) {
	if err := d.sp(); err != nil {
		return nil, err
	}
	p := &searchParser{d: d}
	a := searchArgs{charset: "US-ASCII"}
	root := &searchKey{op: "AND"}
	first := true
	for {
		b, err := d.peek()
		if err != nil {
			return nil, err
		}
		if b == '\r' || b == '\n' {
			break
		}
		if !first {
			if err := d.sp(); err != nil {
				return nil, err
			}
		}
		k, err := p.key(0)
		if err != nil {
			return nil, err
		}
		if k.op == "CHARSET" && !first {
			return nil, syntaxErr("CHARSET must come first")
		}
		if first && k.op == "CHARSET" {
			a.charset = strings.ToUpper(k.value)
			first = false
			continue
		}
		first = false
		root.children = append(root.children, k)
	}
	if len(root.children) == 0 {
		return nil, syntaxErr("SEARCH needs a search key")
	}
	a.key = root
	return a, nil
}

type searchParser struct {
	d     *decoder
	count int
}

func (p *searchParser) key(depth int) (*searchKey, error) {
	d := p.d
	if depth > maxListDepth {
		return nil, syntaxErr("search program nested too deeply")
	}
	if p.count++; p.count > maxSearchKeys {
		return nil, syntaxErr("search program too long")
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
	if isDigit(b) || b == '*' {
		set, err := d.seqSet()
		if err != nil {
			return nil, err
		}
		return &searchKey{op: "SEQ", set: set}, nil
	}
	name, err := d.atom()
	if err != nil {
		return nil, err
	}
	name = strings.ToUpper(name)
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
	case "BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE":
		if err := dateArg(); err != nil {
			return nil, err
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
		if k.set, err = d.seqSet(); err != nil {
			return nil, err
		}
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

func execSearch(s *session, c *command) result {
	a := c.args.(searchArgs)
	switch a.charset {
	case "US-ASCII", "UTF-8":
	default:
		return no("BADCHARSET (US-ASCII UTF-8)", "Unsupported charset")
	}
	sel := s.sel
	w := s.w
	w.line("* SEARCH")
	for i := range sel.msgs {
		m := &sel.msgs[i]
		ev := searchEval{s: s, m: m, seq: uint32(i + 1)}
		match, err := ev.match(a.key)
		if err != nil {
			return s.storageResult(err, "SEARCH")
		}
		if !match {
			continue
		}
		w.byte(' ')
		if c.uid {
			w.num(uint64(m.uid))
		} else {
			w.num(uint64(i + 1))
		}
		if len(w.buf) > 32<<10 {
			// Long result lines go out in pieces.
			w.bw.Write(w.buf)
			w.buf = w.buf[:0]
		}
	}
	w.end()
	return ok(c.name + " completed")
}

// searchEval evaluates a search program against one message, reading the
// message only when a key needs its header or text.
type searchEval struct {
	s      *session
	m      *viewMessage
	seq    uint32
	msg    *loadedMessage
	loaded bool
	text   *string
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
		return m.recent && strings.IndexByte(m.letters, maildir.FlagSeen) < 0, nil
	case "OLD":
		return !m.recent, nil
	case "RECENT":
		return m.recent, nil
	case "SEQ":
		return k.set.contains(e.seq, uint32(len(sel.msgs))), nil
	case "UID":
		return k.set.contains(m.uid, sel.maxUID()), nil
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
		return compareDay(m.date, k.op, k.date), nil
	case "SENTBEFORE", "SENTON", "SENTSINCE":
		msg, err := e.load()
		if err != nil || msg == nil {
			return false, err
		}
		t, ok := mime.ParseDate(msg.root.Header.Get("Date"))
		if !ok {
			return false, nil
		}
		return compareDay(t, k.op[4:], k.date), nil
	case "HEADER":
		msg, err := e.load()
		if err != nil || msg == nil {
			return false, err
		}
		values := msg.root.Header.Values(k.field)
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
		msg, err := e.load()
		if err != nil || msg == nil {
			return false, err
		}
		if k.op == "TEXT" {
			hdr := msg.data[:min(msg.root.BodyStart, int64(len(msg.data)))]
			if bytes.Contains(bytes.ToLower(hdr), []byte(k.value)) ||
				strings.Contains(strings.ToLower(mime.DecodeHeaderValue(string(hdr))), k.value) {
				return true, nil
			}
		}
		if e.text == nil {
			t, err := msg.root.Text(bytes.NewReader(msg.data))
			if err != nil {
				return false, err
			}
			t = strings.ToLower(t)
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
