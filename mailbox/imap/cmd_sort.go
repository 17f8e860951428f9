package imap

import (
	"cmp"
	"slices"
	"strings"
	"time"

	"postern/mailbox/mime"
)

// SORT and THREAD (RFC 5256), answered from the folder index: the header
// fields they compare are read once per message and kept.
func sortCommands() []*commandSpec {
	return []*commandSpec{
		{name: "SORT", states: stateSelected, caps: []string{"SORT"}, parse: parseSort, exec: execSort},
		{name: "UID SORT", states: stateSelected, parse: parseSort, exec: execSort},
		{name: "THREAD", states: stateSelected, caps: []string{"THREAD=ORDEREDSUBJECT", "THREAD=REFERENCES"}, parse: parseThread, exec: execThread},
		{name: "UID THREAD", states: stateSelected, parse: parseThread, exec: execThread},
	}
}

type sortCriterion struct {
	key     string // ARRIVAL CC DATE FROM SIZE SUBJECT TO
	reverse bool
}

type sortArgs struct {
	criteria []sortCriterion
	search   searchArgs
}

// parseSort reads "SP (criteria) SP charset SP search-keys".
func parseSort(d *decoder) (any, error) {
	if err := d.sp(); err != nil {
		return nil, err
	}
	if err := d.expect('(', "'('"); err != nil {
		return nil, err
	}
	var a sortArgs
	reverse := false
	for {
		name, err := d.atom()
		if err != nil {
			return nil, err
		}
		name = strings.ToUpper(name)
		switch name {
		case "REVERSE":
			if reverse {
				return nil, syntaxErr("REVERSE REVERSE")
			}
			reverse = true
			if err := d.sp(); err != nil {
				return nil, err
			}
			continue
		case "ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO":
		default:
			return nil, syntaxErr("unknown sort key %s", truncate(name, 40))
		}
		if len(a.criteria) >= 16 {
			return nil, syntaxErr("too many sort keys")
		}
		a.criteria = append(a.criteria, sortCriterion{name, reverse})
		reverse = false
		b, err := d.peek()
		if err != nil {
			return nil, err
		}
		if b == ')' {
			d.readByte()
			break
		}
		if err := d.sp(); err != nil {
			return nil, err
		}
	}
	if reverse {
		return nil, syntaxErr("REVERSE without a sort key")
	}
	if err := d.charsetAndKeys(&a.search); err != nil {
		return nil, err
	}
	return a, nil
}

// charsetAndKeys reads "SP charset SP search-keys" (SORT and THREAD).
func (d *decoder) charsetAndKeys(a *searchArgs) error {
	if err := d.sp(); err != nil {
		return err
	}
	cs, err := d.astring()
	if err != nil {
		return err
	}
	a.charset = strings.ToUpper(cs)
	a.noCharsetKey = true
	if err := d.sp(); err != nil {
		return err
	}
	p := &searchParser{d: d}
	return p.program(a)
}

// sortFacts are the values SORT and THREAD compare, per view index.
type sortFacts struct {
	s       *session
	headers map[uint32]*indexHeaders
	sizes   map[int]int64
}

func (s *session) sortFacts(indexes []int, needHeaders bool) *sortFacts {
	sel := s.sel
	f := &sortFacts{s: s}
	if needHeaders {
		uids := make([]uint32, len(indexes))
		for k, i := range indexes {
			uids[k] = sel.msgs[i].uid
		}
		f.headers = sel.index.headers(uids, sel.folder.Open)
	}
	return f
}

func (f *sortFacts) hdr(i int) *indexHeaders {
	if h := f.headers[f.s.sel.msgs[i].uid]; h != nil {
		return h
	}
	return &indexHeaders{}
}

// sentDate is the Date: header in UTC, or the internal date when it is
// missing or unparsable (RFC 5256 section 2.2).
func (f *sortFacts) sentDate(i int) time.Time {
	if t, ok := mime.ParseDate(f.hdr(i).date); ok {
		return t.UTC()
	}
	return f.s.internalDate(&f.s.sel.msgs[i]).UTC()
}

func (f *sortFacts) size(i int) int64 {
	if n, ok := f.sizes[i]; ok {
		return n
	}
	m := &f.s.sel.msgs[i]
	n, err := f.s.messageSize(m, nil)
	if err != nil {
		n = m.size
	}
	if f.sizes == nil {
		f.sizes = map[int]int64{}
	}
	f.sizes[i] = n
	return n
}

// firstMailbox is the addr-mailbox (local part) of the first address of a
// header, upper-cased for i;ascii-casemap (RFC 5256 section 3).
func firstMailbox(value string) string {
	if value == "" {
		return ""
	}
	for _, a := range mime.ParseAddressList(value) {
		if !a.Group {
			return strings.ToUpper(a.Mailbox)
		}
	}
	return ""
}

func execSort(s *session, c *command) result {
	a := c.args.(sortArgs)
	if r, bad := s.utf8AcceptCharset(a.search.charset); bad {
		return r
	}
	switch a.search.charset {
	case "US-ASCII", "UTF-8":
	default:
		return no("BADCHARSET (US-ASCII UTF-8)", "Unsupported charset")
	}
	s.sel.resolveSavedKeys(a.search.key) // "$" (RFC 5182)
	matches, _, err := s.search(a.search.key)
	if err != nil {
		return s.storageResult(err, "SORT")
	}
	needHeaders := false
	for _, cr := range a.criteria {
		switch cr.key {
		case "CC", "DATE", "FROM", "SUBJECT", "TO":
			needHeaders = true
		}
	}
	f := s.sortFacts(matches, needHeaders)
	sel := s.sel
	// Compare values computed once per message, not once per comparison.
	type row struct {
		i    int
		strs []string
		nums []int64
	}
	rows := make([]row, len(matches))
	for k, i := range matches {
		r := row{i: i}
		for _, cr := range a.criteria {
			switch cr.key {
			case "ARRIVAL":
				r.nums = append(r.nums, f.s.internalDate(&sel.msgs[i]).UnixNano())
			case "DATE":
				r.nums = append(r.nums, f.sentDate(i).UnixNano())
			case "SIZE":
				r.nums = append(r.nums, f.size(i))
			case "CC":
				r.strs = append(r.strs, firstMailbox(f.hdr(i).cc))
			case "FROM":
				r.strs = append(r.strs, firstMailbox(f.hdr(i).from))
			case "TO":
				r.strs = append(r.strs, firstMailbox(f.hdr(i).to))
			case "SUBJECT":
				base, _ := baseSubject(f.hdr(i).subject)
				r.strs = append(r.strs, strings.ToUpper(base))
			}
		}
		rows[k] = r
	}
	slices.SortStableFunc(rows, func(x, y row) int {
		si, ni := 0, 0
		for _, cr := range a.criteria {
			var c int
			switch cr.key {
			case "ARRIVAL", "DATE", "SIZE":
				c = cmp.Compare(x.nums[ni], y.nums[ni])
				ni++
			default:
				c = strings.Compare(x.strs[si], y.strs[si])
				si++
			}
			if cr.reverse {
				c = -c
			}
			if c != 0 {
				return c
			}
		}
		return cmp.Compare(x.i, y.i) // ties in sequence order
	})
	w := s.w.line("* SORT")
	for _, r := range rows {
		if c.uid {
			w.byte(' ').num(uint64(sel.msgs[r.i].uid))
		} else {
			w.byte(' ').num(uint64(r.i + 1))
		}
	}
	w.end()
	return ok(c.name + " completed")
}

// baseSubject extracts the base subject of RFC 5256 section 2.1 and tells
// whether the subject marked a reply or forward (a removed "Re:", "Fwd:",
// "(fwd)" or "[fwd: ...]").
func baseSubject(raw string) (string, bool) {
	// (1) decode encoded words, turn tabs and line breaks into spaces and
	// squeeze runs of spaces.
	s := mime.DecodeHeaderValue(raw)
	s = strings.Join(strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == '\t' || r == '\r' || r == '\n' }), " ")
	reply := false
	for {
		changed := true
		for changed {
			changed = false
			// (2) subj-trailer: "(fwd)" and spaces at the end.
			for {
				t := strings.TrimRight(s, " ")
				if len(t) >= 5 && strings.EqualFold(t[len(t)-5:], "(fwd)") {
					s = t[:len(t)-5]
					reply = true
					continue
				}
				s = t
				break
			}
			// (3)/(4) subj-leader and leading subj-blob.
			for {
				t := strings.TrimLeft(s, " ")
				if n := refwdLen(t); n > 0 {
					s = t[n:]
					reply = true
					changed = true
					continue
				}
				if n := blobLen(t); n > 0 && strings.TrimSpace(t[n:]) != "" {
					s = t[n:]
					changed = true
					continue
				}
				s = t
				break
			}
		}
		// (6) "[fwd:" base "]" wraps the subject of a forwarded message.
		if len(s) >= 6 && strings.EqualFold(s[:5], "[fwd:") && s[len(s)-1] == ']' {
			s = s[5 : len(s)-1]
			reply = true
			continue
		}
		return s, reply
	}
}

// blobLen is the length of a leading subj-blob: "[" *BLOBCHAR "]" *WSP.
func blobLen(s string) int {
	if !strings.HasPrefix(s, "[") {
		return 0
	}
	end := strings.IndexAny(s[1:], "[]")
	if end < 0 || s[1+end] != ']' {
		return 0
	}
	n := end + 2
	for n < len(s) && s[n] == ' ' {
		n++
	}
	return n
}

// refwdLen is the length of a leading subj-refwd: ("re" / "fw" / "fwd")
// *WSP [subj-blob] ":" (RFC 5256 section 5).
func refwdLen(s string) int {
	var n int
	switch {
	case len(s) >= 3 && strings.EqualFold(s[:3], "fwd"):
		n = 3
	case len(s) >= 2 && (strings.EqualFold(s[:2], "re") || strings.EqualFold(s[:2], "fw")):
		n = 2
	default:
		return 0
	}
	for n < len(s) && s[n] == ' ' {
		n++
	}
	n += blobLen(s[n:])
	if n < len(s) && s[n] == ':' {
		return n + 1
	}
	return 0
}
