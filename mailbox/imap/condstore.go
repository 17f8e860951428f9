package imap

import (
	"slices"
	"strconv"
	"strings"
)

// CONDSTORE and QRESYNC (RFC 7162): per-message mod-sequences kept in the
// folder index, CHANGEDSINCE and VANISHED fetch modifiers, conditional
// STORE, SELECT (CONDSTORE) and SELECT (QRESYNC ...), and VANISHED in place
// of EXPUNGE once QRESYNC is enabled.

// condstoreOn: the client enabled CONDSTORE, explicitly or by using it
// (RFC 7162 3.1: a CONDSTORE-enabling command); MODSEQ then goes into
// every unsolicited FETCH.
func (s *session) condstoreOn() bool { return s.enabled["CONDSTORE"] || s.enabled["QRESYNC"] }

// qresyncOn: expunges are reported as VANISHED (RFC 7162 3.2.10).
func (s *session) qresyncOn() bool { return s.enabled["QRESYNC"] }

func (s *session) enableCondstore() {
	if s.enabled == nil {
		s.enabled = map[string]bool{}
	}
	s.enabled["CONDSTORE"] = true
}

// number64 reads a mod-sequence value (RFC 7162: 1*DIGIT up to 2^63-1).
func (d *decoder) number64() (uint64, error) {
	s, err := d.readWhile(isDigit, "number")
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(s, 10, 63)
	if err != nil {
		return 0, syntaxErr("mod-sequence out of range")
	}
	return n, nil
}

// selectArgs are SELECT/EXAMINE's mailbox and optional parameters.
type selectArgs struct {
	mailbox   string
	condstore bool
	qresync   *qresyncParams
}

// qresyncParams is "(QRESYNC (uidvalidity modseq [known-uids
// [(seq-match uid-match)]]))" (RFC 7162 3.2.5).
type qresyncParams struct {
	uidValidity uint32
	modseq      uint64
	knownUIDs   seqSet
	seqMatch    seqSet
	uidMatch    seqSet
}

func parseSelect(d *decoder) (any, error) {
	if err := d.sp(); err != nil {
		return nil, err
	}
	mb, err := d.astring()
	if err != nil {
		return nil, err
	}
	a := selectArgs{mailbox: mb}
	if b, err := d.peek(); err != nil || b != ' ' {
		return a, nil
	}
	d.readByte()
	if err := d.expect('(', "'('"); err != nil {
		return nil, err
	}
	for i := 0; ; i++ {
		if i > 0 {
			b, err := d.peek()
			if err != nil {
				return nil, err
			}
			if b == ')' {
				d.readByte()
				return a, nil
			}
			if err := d.sp(); err != nil {
				return nil, err
			}
		}
		name, err := d.atom()
		if err != nil {
			return nil, err
		}
		switch strings.ToUpper(name) {
		case "CONDSTORE":
			a.condstore = true
		case "QRESYNC":
			if err := d.sp(); err != nil {
				return nil, err
			}
			q, err := d.qresyncParams()
			if err != nil {
				return nil, err
			}
			a.qresync = q
		default:
			return nil, syntaxErr("unknown SELECT parameter %s", truncate(name, 40))
		}
		if i > 4 {
			return nil, syntaxErr("too many SELECT parameters")
		}
	}
}

func (d *decoder) qresyncParams() (*qresyncParams, error) {
	if err := d.expect('(', "'('"); err != nil {
		return nil, err
	}
	q := &qresyncParams{}
	var err error
	if q.uidValidity, err = d.number(); err != nil {
		return nil, err
	}
	if q.uidValidity == 0 {
		return nil, syntaxErr("UIDVALIDITY must not be zero")
	}
	if err := d.sp(); err != nil {
		return nil, err
	}
	if q.modseq, err = d.number64(); err != nil {
		return nil, err
	}
	b, err := d.peek()
	if err != nil {
		return nil, err
	}
	if b == ' ' {
		d.readByte()
		b, err = d.peek()
		if err != nil {
			return nil, err
		}
		if b != '(' {
			if q.knownUIDs, err = d.seqSet(); err != nil {
				return nil, err
			}
			if b, err = d.peek(); err != nil {
				return nil, err
			}
			if b == ' ' {
				d.readByte()
				b = '('
			}
		}
		if b == '(' {
			if err := d.expect('(', "'('"); err != nil {
				return nil, err
			}
			if q.seqMatch, err = d.seqSet(); err != nil {
				return nil, err
			}
			if err := d.sp(); err != nil {
				return nil, err
			}
			if q.uidMatch, err = d.seqSet(); err != nil {
				return nil, err
			}
			if err := d.expect(')', "')'"); err != nil {
				return nil, err
			}
		}
	}
	if err := d.expect(')', "')'"); err != nil {
		return nil, err
	}
	return q, nil
}

// fetchModifiers are FETCH's "(CHANGEDSINCE n [VANISHED])" (RFC 7162 3.1.4,
// 3.2.6).
type fetchModifiers struct {
	changedSince uint64
	vanished     bool
}

func (d *decoder) fetchModifiers() (fetchModifiers, error) {
	var m fetchModifiers
	if err := d.expect('(', "'('"); err != nil {
		return m, err
	}
	for i := 0; ; i++ {
		if i > 0 {
			b, err := d.peek()
			if err != nil {
				return m, err
			}
			if b == ')' {
				d.readByte()
				break
			}
			if err := d.sp(); err != nil {
				return m, err
			}
		}
		if i > 4 {
			return m, syntaxErr("too many FETCH modifiers")
		}
		name, err := d.atom()
		if err != nil {
			return m, err
		}
		switch strings.ToUpper(name) {
		case "CHANGEDSINCE":
			if err := d.sp(); err != nil {
				return m, err
			}
			if m.changedSince, err = d.number64(); err != nil {
				return m, err
			}
			if m.changedSince == 0 {
				return m, syntaxErr("CHANGEDSINCE must not be zero")
			}
		case "VANISHED":
			m.vanished = true
		default:
			return m, syntaxErr("unknown FETCH modifier %s", truncate(name, 40))
		}
	}
	if m.vanished && m.changedSince == 0 {
		return m, syntaxErr("VANISHED needs CHANGEDSINCE")
	}
	return m, nil
}

// appendUIDSet writes ascending UIDs as a compact sequence set.
func appendUIDSet(b []byte, uids []uint32) []byte {
	for i := 0; i < len(uids); {
		j := i
		for j+1 < len(uids) && uids[j+1] == uids[j]+1 {
			j++
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendUint(b, uint64(uids[i]), 10)
		if j > i {
			b = append(b, ':')
			b = strconv.AppendUint(b, uint64(uids[j]), 10)
		}
		i = j + 1
	}
	return b
}

// writeVanished sends "* VANISHED [(EARLIER) ]uid-set" in pieces of at
// most a few thousand ranges, so that no response line grows unbounded.
func (s *session) writeVanished(uids []uint32, earlier bool) error {
	const chunk = 4096
	for len(uids) > 0 {
		n := min(len(uids), chunk)
		w := s.w.line("* VANISHED ")
		if earlier {
			w.raw("(EARLIER) ")
		}
		w.buf = appendUIDSet(w.buf, uids[:n])
		if err := w.end(); err != nil {
			return err
		}
		uids = uids[n:]
	}
	return nil
}

// vanishedIn returns the UIDs expunged after since that the set names
// (all of them when set is nil), widened to every UID of the set not in
// the mailbox when the index no longer remembers that far back (RFC 7162
// 3.2.5.2 lets the server send UIDs the client does not know).
func (s *session) vanishedIn(since uint64, set seqSet) []uint32 {
	sel := s.sel
	gone, complete := sel.index.vanishedSince(since)
	star := max(sel.uidNext-1, 1)
	if !complete && set != nil {
		// Every UID of the set below UIDNEXT that is not in the view.
		var out []uint32
		for _, r := range set {
			lo, hi := r.bounds(star)
			hi = min(hi, sel.uidNext-1)
			if hi-lo > 1<<20 {
				lo = hi - 1<<20 // bound the work; the client resyncs the rest
			}
			for u := lo; u <= hi && u != 0; u++ {
				if sel.indexOfUID(u) < 0 {
					out = append(out, u)
				}
			}
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	if set == nil {
		return gone
	}
	out := gone[:0:0]
	for _, u := range gone {
		if set.contains(u, star) {
			out = append(out, u)
		}
	}
	return out
}

// qresync answers SELECT's QRESYNC parameter (RFC 7162 3.2.5.1): the UIDs
// expunged since the client's mod-sequence as VANISHED (EARLIER), then the
// messages changed since as FETCH (UID FLAGS MODSEQ). Nothing when the
// client's UIDVALIDITY is stale: it must resync fully.
func (s *session) qresync(q *qresyncParams) error {
	sel := s.sel
	if q.uidValidity != sel.uidValidity {
		return nil
	}
	since := q.modseq
	// seq-match/uid-match tell which of the client's sequence numbers still
	// map to which UIDs; when they disagree with the view, the client's
	// mod-sequence cannot be trusted for the part before the mismatch, so
	// expunges are reported from the start (a superset is allowed).
	if q.seqMatch != nil && len(q.seqMatch) == len(q.uidMatch) {
		for i, r := range q.seqMatch {
			u := q.uidMatch[i]
			if r.lo != 0 && u.lo != 0 && int(r.lo) <= len(sel.msgs) && sel.msgs[r.lo-1].uid != u.lo {
				since = 0
				break
			}
		}
	}
	gone := s.vanishedIn(since, q.knownUIDs)
	if len(gone) > 0 {
		if err := s.writeVanished(gone, true); err != nil {
			return err
		}
	}
	modseqs := sel.index.modseqsOf(sel.msgs)
	for i := range sel.msgs {
		if modseqs[i] <= q.modseq {
			continue
		}
		m := &sel.msgs[i]
		if q.knownUIDs != nil && !q.knownUIDs.contains(m.uid, sel.maxUID()) {
			continue
		}
		w := s.w.line("* ").num(uint64(i + 1)).raw(" FETCH (UID ").num(uint64(m.uid)).raw(" FLAGS ")
		w.buf = appendFlags(w.buf, m.letters, m.keywords, sel.isRecent(m))
		w.raw(" MODSEQ (").num(modseqs[i]).raw("))")
		if err := w.end(); err != nil {
			return err
		}
	}
	return nil
}

// modseqsOf returns the current mod-sequence of each view message.
func (ix *folderIndex) modseqsOf(msgs []viewMessage) []uint64 {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	out := make([]uint64, len(msgs))
	for i := range msgs {
		if e := ix.byUID[msgs[i].uid]; e != nil {
			out[i] = e.modseq
		} else {
			out[i] = ix.highestModSeq // expunged: changed as late as anything
		}
	}
	return out
}

// modseqOf is one message's mod-sequence.
func (ix *folderIndex) modseqOf(uid uint32) uint64 {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if e := ix.byUID[uid]; e != nil {
		return e.modseq
	}
	return ix.highestModSeq
}
