package imap

import (
	"errors"
	"slices"
	"strings"

	"postern/mailbox/maildir"
)

// STORE and UID STORE (RFC 3501 6.4.6, 6.4.8).
func storeCommands() []*commandSpec {
	return []*commandSpec{
		{name: "STORE", states: stateSelected, parse: parseStore, exec: execStore},
		{name: "UID STORE", states: stateSelected, parse: parseStore, exec: execStore},
	}
}

type storeOp int

const (
	storeReplace storeOp = iota
	storeAdd
	storeRemove
)

type storeArgs struct {
	set            seqArg
	op             storeOp
	silent         bool
	flags          flagSet
	unchangedSince uint64 // RFC 7162 3.1.3; 0: unconditional
	conditional    bool
}

func parseStore(d *decoder) (any, error) {
	if err := d.sp(); err != nil {
		return nil, err
	}
	set, err := d.seqArg()
	if err != nil {
		return nil, err
	}
	if err := d.sp(); err != nil {
		return nil, err
	}
	a := storeArgs{set: set}
	if b, err := d.peek(); err == nil && b == '(' {
		// store-modifiers: "(UNCHANGEDSINCE mod-sequence)" (RFC 7162 3.1.3).
		d.readByte()
		name, err := d.atom()
		if err != nil {
			return nil, err
		}
		if !strings.EqualFold(name, "UNCHANGEDSINCE") {
			return nil, syntaxErr("unknown STORE modifier %s", truncate(name, 40))
		}
		if err := d.sp(); err != nil {
			return nil, err
		}
		if a.unchangedSince, err = d.number64(); err != nil {
			return nil, err
		}
		a.conditional = true
		if err := d.expect(')', "')'"); err != nil {
			return nil, err
		}
		if err := d.sp(); err != nil {
			return nil, err
		}
	}
	item, err := d.readWhile(func(c byte) bool { return isFetchNameChar(c) || c == '+' || c == '-' }, "store item")
	if err != nil {
		return nil, err
	}
	item = strings.ToUpper(item)
	switch {
	case strings.HasPrefix(item, "+"):
		a.op, item = storeAdd, item[1:]
	case strings.HasPrefix(item, "-"):
		a.op, item = storeRemove, item[1:]
	}
	switch item {
	case "FLAGS":
	case "FLAGS.SILENT":
		a.silent = true
	default:
		return nil, syntaxErr("unknown STORE item")
	}
	if err := d.sp(); err != nil {
		return nil, err
	}
	var names []string
	b, err := d.peek()
	if err != nil {
		return nil, err
	}
	if b == '(' {
		if names, err = d.flagList(); err != nil {
			return nil, err
		}
	} else {
		// flag *(SP flag) without parentheses (RFC 3501 9, store-att-flags).
		for {
			f, err := d.flag()
			if err != nil {
				return nil, err
			}
			if len(names) >= maxKeywordsPerCommand+8 {
				return nil, syntaxErr("too many flags")
			}
			names = append(names, f)
			if b, err := d.peek(); err != nil || b != ' ' {
				break
			}
			d.readByte()
		}
	}
	if a.flags, err = parseFlagNames(names); err != nil {
		return nil, err
	}
	return a, nil
}

func execStore(s *session, c *command) result {
	a := c.args.(storeArgs)
	sel := s.sel
	if sel.readOnly {
		return no("READ-ONLY", "Mailbox is read-only")
	}
	if !sel.rights.Has(storeRights(a)) {
		return noPerm()
	}
	set := sel.expand(a.set, c.uid)
	if !c.uid && !sel.seqInRange(set) {
		return bad("Invalid sequence number")
	}
	for _, k := range a.flags.keywords {
		if err := maildir.ValidKeyword(k); err != nil {
			return bad("Invalid keyword " + truncate(k, 40))
		}
	}
	if a.conditional {
		s.enableCondstore() // RFC 7162 3.1: a CONDSTORE-enabling command
	}
	sel.ownView() // messages are changed in place below
	condstore := s.condstoreOn()
	indexes := sel.resolve(set, c.uid)
	var modseqs []uint64
	if condstore {
		view := make([]viewMessage, len(indexes))
		for k, i := range indexes {
			view[k].uid = sel.msgs[i].uid
		}
		modseqs = sel.index.modseqsOf(view)
	}
	var changes []flagChange
	changedAt := map[int]bool{}
	var modified []uint32 // failed the UNCHANGEDSINCE test: UIDs or sequence numbers
	gone := false
	var failure error
	for k, i := range indexes {
		m := &sel.msgs[i]
		if m.gone {
			gone = true
			continue
		}
		if a.conditional && modseqs[k] > a.unchangedSince {
			if c.uid {
				modified = append(modified, m.uid)
			} else {
				modified = append(modified, uint32(i+1))
			}
			continue
		}
		letters, keywords := m.letters, m.keywords
		switch a.op {
		case storeReplace:
			// "P" (passed) has no IMAP flag; a replace keeps it.
			keep := ""
			if strings.IndexByte(letters, maildir.FlagPassed) >= 0 {
				keep = string(maildir.FlagPassed)
			}
			letters = unionLetters(a.flags.letters, keep)
			keywords = slices.Clone(a.flags.keywords)
		case storeAdd:
			letters = unionLetters(letters, a.flags.letters)
			keywords = unionKeywords(keywords, a.flags.keywords)
		case storeRemove:
			letters = minusLetters(letters, a.flags.letters)
			keywords = minusKeywords(keywords, a.flags.keywords)
		}
		if sameFlags(letters, keywords, m.letters, m.keywords) {
			continue
		}
		if err := sel.folder.SetFlags(m.key, letters, keywords); err != nil {
			if errors.Is(err, maildir.ErrNoMessage) {
				gone = true
				s.markChanged() // report the expunge at the next chance
				continue
			}
			failure = err
			break
		}
		m.letters, m.keywords = letters, keywords
		changes = append(changes, flagChange{uid: m.uid, letters: letters, keywords: keywords})
		changedAt[i] = true
		s.announceKeywords(keywords)
	}
	var ms uint64
	if len(changes) > 0 {
		ms = sel.index.storeFlags(changes)
		s.srv.hub.notify(sel.folder.Path(), s)
	}
	w := s.w
	for k, i := range indexes {
		m := &sel.msgs[i]
		if m.gone || !changedAt[i] && (a.silent || a.conditional && modseqs[k] > a.unchangedSince) {
			continue
		}
		if a.silent && !condstore {
			continue
		}
		w.line("* ").num(uint64(i + 1)).raw(" FETCH (")
		if c.uid {
			w.raw("UID ").num(uint64(m.uid)).byte(' ')
		}
		if !a.silent {
			w.raw("FLAGS ")
			w.buf = appendFlags(w.buf, m.letters, m.keywords, sel.isRecent(m))
			if condstore {
				w.byte(' ')
			}
		}
		if condstore {
			// RFC 7162 3.1.3: even .SILENT reports the new MODSEQ.
			cur := modseqs[k]
			if changedAt[i] {
				cur = ms
			}
			w.raw("MODSEQ (").num(cur).byte(')')
		}
		if err := w.byte(')').end(); err != nil {
			return fatal()
		}
	}
	if failure != nil {
		return s.storageResult(failure, "STORE")
	}
	if len(modified) > 0 {
		slices.Sort(modified)
		// RFC 7162 3.1.3: the messages that failed the test, as a set.
		return okCode("MODIFIED "+string(appendUIDSet(nil, modified)), "Conditional STORE failed for some messages")
	}
	if gone {
		return no("EXPUNGEISSUED", "Some messages were expunged meanwhile")
	}
	return ok(c.name + " completed")
}
