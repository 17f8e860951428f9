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
	set    seqSet
	op     storeOp
	silent bool
	flags  flagSet
}

func parseStore(d *decoder) (any, error) {
	if err := d.sp(); err != nil {
		return nil, err
	}
	set, err := d.seqSet()
	if err != nil {
		return nil, err
	}
	if err := d.sp(); err != nil {
		return nil, err
	}
	item, err := d.readWhile(func(c byte) bool { return isFetchNameChar(c) || c == '+' || c == '-' }, "store item")
	if err != nil {
		return nil, err
	}
	a := storeArgs{set: set}
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
	if !c.uid && !sel.seqInRange(a.set) {
		return bad("Invalid sequence number")
	}
	for _, k := range a.flags.keywords {
		if err := maildir.ValidKeyword(k); err != nil {
			return bad("Invalid keyword " + truncate(k, 40))
		}
	}
	w := s.w
	changed, gone := false, false
	for _, i := range sel.resolve(a.set, c.uid) {
		m := &sel.msgs[i]
		if m.gone {
			gone = true
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
		if !sameFlags(letters, keywords, m.letters, m.keywords) {
			if err := sel.folder.SetFlags(m.key, letters, keywords); err != nil {
				if errors.Is(err, maildir.ErrNoMessage) {
					gone = true
					s.markChanged() // report the expunge at the next chance
					continue
				}
				if changed {
					s.srv.hub.notify(sel.folder.Path(), s)
				}
				return s.storageResult(err, "STORE")
			}
			m.letters, m.keywords = letters, keywords
			changed = true
			s.announceKeywords(keywords)
		}
		if !a.silent {
			w.line("* ").num(uint64(i + 1)).raw(" FETCH (")
			if c.uid {
				w.raw("UID ").num(uint64(m.uid)).byte(' ')
			}
			w.raw("FLAGS ")
			w.buf = appendFlags(w.buf, m.letters, m.keywords, m.recent)
			if err := w.byte(')').end(); err != nil {
				return fatal()
			}
		}
	}
	if changed {
		s.srv.hub.notify(sel.folder.Path(), s)
	}
	if gone {
		return no("EXPUNGEISSUED", "Some messages were expunged meanwhile")
	}
	return ok(c.name + " completed")
}
