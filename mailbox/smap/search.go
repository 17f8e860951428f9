package smap

import (
	"bytes"
	"slices"
	"strconv"
	"strings"
	"time"

	"postern/mailbox/maildir"
	"postern/mailbox/mime"
)

// criterion is one SEARCH condition (smapsearch): SMAP searches with one
// condition, optionally negated, limited to all messages, the MARKED or
// UNMARKED ones, or a message set.
type criterion struct {
	not   bool
	kind  string // REPLIED, DELETED, DRAFT, SEEN, KEYWORD, HEADER, BODY, TEXT, BEFORE, ON, SINCE, SENT*, SMALLER, LARGER
	field string // HEADER's field name, upper case
	arg   string
	date  time.Time
	size  int64
}

// parseSearch reads "[MARKED|UNMARKED|ALL|msgset] [NOT] CONDITION ARG...".
// marked is +1 for MARKED, -1 for UNMARKED; set is nil without a set.
func parseSearch(w *words, count int) (c criterion, marked int, set []bool, ok bool) {
	first := upper(w.next())
	switch first {
	case "MARKED":
		marked = 1
	case "UNMARKED":
		marked = -1
	case "ALL":
	default:
		set, ok = imapSet(first, count)
		if !ok {
			return c, 0, nil, false
		}
	}
	kind := upper(w.next())
	if kind == "NOT" {
		c.not = true
		kind = upper(w.next())
	}
	c.kind = kind
	switch kind {
	case "REPLIED", "DELETED", "DRAFT", "SEEN":
	case "KEYWORD", "BODY", "TEXT":
		c.arg = w.next()
	case "FROM", "TO", "CC", "BCC", "SUBJECT":
		c.kind, c.field, c.arg = "HEADER", kind, w.next()
	case "HEADER":
		c.field, c.arg = upper(w.next()), w.next()
	case "BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE":
		d, ok := parseSearchDate(w.next())
		if !ok {
			return c, 0, nil, false
		}
		c.date = d
	case "SMALLER", "LARGER":
		n, err := strconv.ParseInt(w.next(), 10, 64)
		if err != nil {
			return c, 0, nil, false
		}
		c.size = n
	default:
		return c, 0, nil, false
	}
	return c, marked, set, true
}

// imapSet reads the message set of a SEARCH: SMAP's "1-3" written as IMAP's
// "1:3" (Courier turns one into the other), commas and "*" allowed.
func imapSet(s string, count int) ([]bool, bool) {
	if s == "" {
		return nil, false
	}
	in := make([]bool, count+1)
	for _, part := range strings.Split(strings.ReplaceAll(s, "-", ":"), ",") {
		lo, hi, isRange := strings.Cut(part, ":")
		a, ok1 := seqNum(lo, count)
		b := a
		ok2 := true
		if isRange {
			b, ok2 = seqNum(hi, count)
		}
		if !ok1 || !ok2 {
			return nil, false
		}
		if a > b {
			a, b = b, a
		}
		for n := a; n <= b && n <= count; n++ {
			in[n] = true
		}
	}
	return in, true
}

func seqNum(s string, count int) (int, bool) {
	if s == "*" {
		return count, true
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, false
	}
	return n, true
}

func parseSearchDate(s string) (time.Time, bool) {
	for _, layout := range []string{"2-Jan-2006", "02-Jan-2006"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, true
		}
	}
	if t, ok := mime.ParseDate(s); ok {
		y, m, d := t.Date()
		return time.Date(y, m, d, 0, 0, 0, 0, time.Local), true
	}
	return time.Time{}, false
}

// cmdSearch answers "* SEARCH" with the matching message numbers as ranges
// (a new line every hundred ranges), then "+OK Search completed.".
func (sess *session) cmdSearch(_ string, w *words) {
	of := sess.cur
	c, marked, set, ok := parseSearch(w, len(of.msgs))
	if !ok {
		sess.writeString("-ERR SEARCH failed: Invalid argument\n")
		return
	}
	var hits []int
	for i := range of.msgs {
		m := &of.msgs[i]
		if set != nil && !set[i+1] {
			continue
		}
		flagged := strings.ContainsRune(m.flags, maildir.FlagFlagged)
		if marked > 0 && !flagged || marked < 0 && flagged {
			continue
		}
		if sess.matches(i, &c) != c.not {
			hits = append(hits, i+1)
		}
	}
	var b strings.Builder
	runs := 0
	for k := 0; k < len(hits); {
		e := k
		for e+1 < len(hits) && hits[e+1] == hits[e]+1 {
			e++
		}
		if runs > 100 {
			b.WriteString("\n")
			runs = 0
		}
		if runs == 0 {
			b.WriteString("* SEARCH")
		}
		b.WriteString(" " + strconv.Itoa(hits[k]))
		if e > k {
			b.WriteString("-" + strconv.Itoa(hits[e]))
		}
		runs++
		k = e + 1
	}
	if runs > 0 {
		b.WriteString("\n")
	}
	sess.writeString(b.String() + "+OK Search completed.\n")
}

// matches evaluates the condition (without its NOT) on message index i.
func (sess *session) matches(i int, c *criterion) bool {
	m := &sess.cur.msgs[i]
	switch c.kind {
	case "REPLIED":
		return strings.ContainsRune(m.flags, maildir.FlagReplied)
	case "DELETED":
		return strings.ContainsRune(m.flags, maildir.FlagTrashed)
	case "DRAFT":
		return strings.ContainsRune(m.flags, maildir.FlagDraft)
	case "SEEN":
		return strings.ContainsRune(m.flags, maildir.FlagSeen)
	case "KEYWORD":
		return slices.Contains(m.keywords, c.arg)
	case "SMALLER":
		return m.size < c.size
	case "LARGER":
		return m.size > c.size
	case "BEFORE", "ON", "SINCE":
		t, err := sess.cur.f.InternalDate(m.key)
		if err != nil {
			return false
		}
		return compareDay(t.Local(), c.date, c.kind)
	}
	// The rest reads the message.
	part, data, ok := sess.parsed(i)
	if !ok {
		return false
	}
	r := bytes.NewReader(data)
	switch c.kind {
	case "SENTBEFORE", "SENTON", "SENTSINCE":
		h, err := mime.ParseHeader(r, part.HeaderStart, part.BodyStart)
		if err != nil {
			return false
		}
		t, ok := mime.ParseDate(h.Get("Date"))
		if !ok {
			return false
		}
		return compareDay(t, c.date, strings.TrimPrefix(c.kind, "SENT"))
	case "HEADER":
		h, err := mime.ParseHeader(r, part.HeaderStart, part.BodyStart)
		if err != nil {
			return false
		}
		needle := strings.ToLower(c.arg)
		for _, v := range h.Values(c.field) {
			if strings.Contains(strings.ToLower(mime.DecodeHeaderValue(v)), needle) {
				return true
			}
		}
		return false
	case "BODY", "TEXT":
		needle := strings.ToLower(c.arg)
		if c.kind == "TEXT" {
			h, err := mime.ParseHeader(r, part.HeaderStart, part.BodyStart)
			if err == nil {
				for _, f := range h.Fields() {
					if strings.Contains(strings.ToLower(mime.DecodeHeaderValue(f.Value)), needle) {
						return true
					}
				}
			}
		}
		text, err := part.Text(r)
		return err == nil && strings.Contains(strings.ToLower(text), needle)
	}
	return false
}

// parsed reads message index i for SEARCH with mailbox/mime's parser.
func (sess *session) parsed(i int) (*mime.Part, []byte, bool) {
	msg, err := sess.message(i)
	if err != nil {
		return nil, nil, false
	}
	p, err := mime.Parse(bytes.NewReader(msg.data), int64(len(msg.data)))
	if err != nil {
		return nil, nil, false
	}
	return p, msg.data, true
}

// compareDay compares t's calendar day with day's: before, on or since.
func compareDay(t, day time.Time, how string) bool {
	y, m, d := t.Date()
	td := time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
	y, m, d = day.Date()
	dd := time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
	switch how {
	case "BEFORE":
		return td.Before(dd)
	case "ON":
		return td.Equal(dd)
	default: // SINCE
		return !td.Before(dd)
	}
}
