package imap

import (
	"errors"

	"postern/internal/netserve"
	"postern/mailbox/acl"
	"postern/mailbox/maildir"
)

// Selecting and leaving a mailbox (RFC 3501 6.3.1, 6.3.2, 6.4.1-6.4.3),
// UNSELECT (RFC 3691) and UID EXPUNGE (RFC 4315).
func selectCommands() []*commandSpec {
	return []*commandSpec{
		{name: "SELECT", states: authenticated, caps: []string{"CONDSTORE", "QRESYNC"}, parse: parseSelect, exec: execSelect, noUpdates: true},
		{name: "EXAMINE", states: authenticated, parse: parseSelect, exec: execExamine, noUpdates: true},
		{name: "CLOSE", states: stateSelected, exec: execClose, noUpdates: true},
		{name: "UNSELECT", states: stateSelected, caps: []string{"UNSELECT"}, exec: execUnselect, noUpdates: true},
		{name: "CHECK", states: stateSelected, exec: execCheck, expungeOK: true, noUpdates: true},
		{name: "EXPUNGE", states: stateSelected, exec: execExpunge, expungeOK: true, noUpdates: true},
		{name: "UID EXPUNGE", states: stateSelected, caps: []string{"UIDPLUS"}, parse: parseSeqArg, exec: execExpunge, expungeOK: true, noUpdates: true},
	}
}

func execSelect(s *session, c *command) result  { return s.selectMailbox(c.args.(selectArgs), false) }
func execExamine(s *session, c *command) result { return s.selectMailbox(c.args.(selectArgs), true) }

func (s *session) selectMailbox(a selectArgs, readOnly bool) result {
	name := a.mailbox
	if a.qresync != nil && !s.qresyncOn() {
		// RFC 7162 3.2.5: QRESYNC must be enabled first.
		return bad("QRESYNC parameter without ENABLE QRESYNC")
	}
	if a.condstore {
		s.enableCondstore()
	}
	// A SELECT, even a failing one, leaves the current mailbox without
	// expunging (RFC 3501 6.3.1); with QRESYNC the client is told so, since
	// responses after this point belong to the new mailbox (RFC 7162
	// 3.2.11).
	if s.sel != nil && (s.qresyncOn() || s.rev2()) {
		s.w.line("* OK [CLOSED] Previous mailbox closed").end()
	}
	s.closeSelected()
	ref, r, found := s.resolveMailbox(name)
	if !found {
		return r
	}
	folder := ref.folder
	if ref.fs != nil && !ref.fs.view.Writable {
		// A filesystem-shared folder the user may not write: SELECT
		// opens it read-only, as Courier's does.
		readOnly = true
	}
	if !ref.rights.Has(acl.Read) {
		s.releaseRef(ref)
		return noPerm() // RFC 4314 4: SELECT and EXAMINE need "r"
	}
	f, err := ref.mail.Folder(folder)
	if err != nil {
		s.releaseRef(ref)
		return s.storageResult(err, "SELECT")
	}
	sel, err := s.openSelected(ref.name, f, readOnly)
	if err != nil {
		s.releaseRef(ref)
		return s.storageResult(err, "SELECT")
	}
	sel.rights, sel.ref = ref.rights, ref
	s.sel = sel
	s.state = stateSelected
	s.track.Update(func(i *netserve.SessionInfo) { i.Mailbox = ref.name })

	w := s.w
	s.writeFlagsResponse()
	s.writePermanentFlags()
	w.line("* ").num(uint64(len(sel.msgs))).raw(" EXISTS").end()
	recent, firstUnseen := len(sel.recent), sel.openFirstUnseen
	if s.rev2() {
		// RFC 9051 6.3.2: no RECENT and no UNSEEN; a LIST of the mailbox.
		s.writeSelectedList(sel.name, folder)
	} else {
		w.line("* ").num(uint64(recent)).raw(" RECENT").end()
		if firstUnseen > 0 {
			w.line("* OK [UNSEEN ").num(uint64(firstUnseen)).raw("] First unseen").end()
		}
	}
	w.line("* OK [UIDVALIDITY ").num(uint64(sel.uidValidity)).raw("] UIDs valid").end()
	w.line("* OK [UIDNEXT ").num(uint64(sel.uidNext)).raw("] Predicted next UID").end()
	// Mod-sequences are kept on disk for every folder, so HIGHESTMODSEQ is
	// always announced (RFC 7162 3.1.2.1).
	w.line("* OK [HIGHESTMODSEQ ").num(sel.index.highest()).raw("] Highest").end()
	if id := s.mailboxIDOf(f); id != "" {
		w.line("* OK [MAILBOXID (").raw(id).raw(")] Ok").end() // RFC 8474 4.2
	}
	if a.qresync != nil {
		if err := s.qresync(a.qresync); err != nil {
			return fatal()
		}
	}
	if readOnly {
		return okCode("READ-ONLY", "EXAMINE completed")
	}
	return okCode("READ-WRITE", "SELECT completed")
}

// execClose expunges silently (read-write only) and leaves the mailbox
// (RFC 3501 6.4.2).
func execClose(s *session, c *command) result {
	// Without "e" CLOSE only leaves the mailbox (RFC 4314 4).
	if !s.sel.readOnly && s.sel.rights.Has(acl.Expunge) {
		removed, err := s.removeDeleted(nil)
		if removed > 0 {
			s.srv.hub.notify(s.sel.folder.Path(), s)
		}
		if err != nil {
			s.closeSelected()
			return s.storageResult(err, "CLOSE")
		}
	}
	s.closeSelected()
	return ok("CLOSE completed")
}

func execUnselect(s *session, c *command) result {
	s.closeSelected()
	return ok("UNSELECT completed")
}

func execCheck(s *session, c *command) result {
	if r, failed := s.syncResult(s.sendUpdates(true, true)); failed {
		return r
	}
	return ok("CHECK completed")
}

// execExpunge removes the messages marked \Deleted (for UID EXPUNGE, only
// those in the UID set) and reports each removal.
func execExpunge(s *session, c *command) result {
	if s.sel.readOnly {
		return no("READ-ONLY", "Mailbox is read-only")
	}
	if !s.sel.rights.Has(acl.Expunge) {
		return noPerm() // RFC 4314 4
	}
	var limit []int
	if c.uid {
		limit = s.sel.resolve(s.sel.expand(c.args.(seqArg), true), true)
		if len(limit) == 0 {
			if r, failed := s.syncResult(s.sendUpdates(true, false)); failed {
				return r
			}
			return ok("UID EXPUNGE completed")
		}
	}
	removed, err := s.removeDeleted(limit)
	if removed > 0 {
		s.srv.hub.notify(s.sel.folder.Path(), s)
	}
	if err != nil {
		return s.storageResult(err, "EXPUNGE")
	}
	// The rescan reports the removed messages (and anything else that
	// changed) with EXPUNGE responses.
	if r, failed := s.syncResult(s.syncSelected(true)); failed {
		return r
	}
	return ok(c.name + " completed")
}

// removeDeleted deletes the \Deleted messages among the view indexes given
// (all when nil). Messages already gone are not an error.
func (s *session) removeDeleted(indexes []int) (int, error) {
	sel := s.sel
	removed := 0
	try := func(i int) error {
		m := &sel.msgs[i]
		if m.gone || !sel.hasFlag(i, maildir.FlagTrashed) {
			return nil
		}
		if sel.ref != nil && sel.ref.fs != nil {
			// Out of the sharable folder itself, where the permissions
			// allow; otherwise the message stays and loses \Deleted,
			// as in Courier.
			err := sel.folder.RemoveShared(m.key, s.identity())
			if errors.Is(err, maildir.ErrSharedPermission) {
				s.markChanged()
				return nil
			}
			if err != nil && !errors.Is(err, maildir.ErrNoMessage) {
				return err
			}
			removed++
			return nil
		}
		if err := sel.folder.Remove(m.key); err != nil && !errors.Is(err, maildir.ErrNoMessage) {
			return err
		}
		removed++
		return nil
	}
	if indexes == nil {
		for i := range sel.msgs {
			if err := try(i); err != nil {
				return removed, err
			}
		}
		return removed, nil
	}
	for _, i := range indexes {
		if err := try(i); err != nil {
			return removed, err
		}
	}
	return removed, nil
}

// parseSeqArg reads " sequence-set" or " $".
func parseSeqArg(d *decoder) (any, error) {
	if err := d.sp(); err != nil {
		return nil, err
	}
	return d.seqArg()
}

func (d *decoder) seqSet() (seqSet, error) {
	s, err := d.readWhile(isSeqSetChar, "sequence set")
	if err != nil {
		return nil, err
	}
	return parseSeqSet(s)
}

func isSeqSetChar(c byte) bool { return isDigit(c) || c == ':' || c == ',' || c == '*' }
