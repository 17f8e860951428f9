package imap

import (
	"errors"
	"fmt"
	"io"

	"postern/mailbox/acl"
	"postern/mailbox/maildir"
)

// REPLACE and UID REPLACE (RFC 8508): a new version of a message (a
// draft saved again) is appended to a mailbox and the old one is
// expunged from the selected mailbox, as one command. The new message
// is staged and committed first; only then is the old one removed, and
// if that fails the new one goes again, so the client finds either the
// old message or the new one, never both and never neither.
func replaceCommands() []*commandSpec {
	return []*commandSpec{
		{name: "REPLACE", states: stateSelected, caps: []string{"REPLACE"}, parse: parseReplace, exec: execReplace, ownsLineEnd: true, expungeOK: true, noUpdates: true},
		{name: "UID REPLACE", states: stateSelected, parse: parseReplace, exec: execReplace, ownsLineEnd: true, expungeOK: true, noUpdates: true},
	}
}

type replaceArgs struct {
	// target is the sequence number (REPLACE) or UID (UID REPLACE) of the
	// message replaced: one message, never a set (RFC 8508 6).
	target uint32
	msg    appendArgs
}

// parseReplace reads "SP seq-number SP mailbox SP append-message" up to
// the message literal's data, as APPEND's parser does.
func parseReplace(d *decoder) (any, error) {
	if err := d.sp(); err != nil {
		return nil, err
	}
	n, err := d.number()
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, syntaxErr("REPLACE needs a message number above zero")
	}
	if err := d.sp(); err != nil {
		return nil, err
	}
	a, err := d.mailboxAndMessage()
	if err != nil {
		return nil, err
	}
	return replaceArgs{target: n, msg: a}, nil
}

func execReplace(s *session, c *command) result {
	ra := c.args.(replaceArgs)
	a := ra.msg
	sel := s.sel
	// refuse answers before the literal is taken: a synchronizing one is
	// then never sent, a non-synchronizing one is skipped.
	refuse := func(r result) result { return s.refuseLiteral(c, a, "REPLACE", r) }
	if a.utf8 && !s.utf8Accept() {
		return refuse(bad("REPLACE UTF8 needs ENABLE UTF8=ACCEPT"))
	}
	// The message replaced: RFC 8508 3.2 has the command fail, before the
	// new message is taken, when it does not exist.
	idx := -1
	if c.uid {
		idx = sel.indexOfUID(ra.target)
	} else if int(ra.target) <= len(sel.msgs) {
		idx = int(ra.target) - 1
	} else {
		return refuse(bad("Invalid sequence number"))
	}
	if idx < 0 || sel.msgs[idx].gone {
		return refuse(no("NONEXISTENT", "No such message"))
	}
	if sel.readOnly {
		return refuse(no("READ-ONLY", "Mailbox is read-only"))
	}
	// RFC 4314 4 as for MOVE: removing the old message needs "t" and "e".
	if !sel.rights.Has(acl.DeleteMessages | acl.Expunge) {
		return refuse(noPerm())
	}
	old := sel.msgs[idx]
	ref, r, found := s.resolveMailbox(a.mailbox)
	if !found {
		return refuse(r)
	}
	defer s.releaseRef(ref)
	if !ref.rights.Has(acl.Insert) {
		return refuse(noPerm())
	}
	f, err := ref.mail.Folder(ref.folder)
	if err == nil && ref.fs != nil {
		f, err = s.fsSharedInsertTarget(ref)
	}
	if err != nil {
		if errors.Is(err, maildir.ErrNoFolder) {
			return refuse(no("TRYCREATE", "No such mailbox; create it first"))
		}
		return refuse(s.storageResult(err, "REPLACE"))
	}
	if a.size > s.srv.opt.MaxLiteralSize {
		return refuse(no("TOOBIG", fmt.Sprintf("Message exceeds the %d-byte limit", s.srv.opt.MaxLiteralSize)))
	}
	if err := s.continueLiteral(a.size, a.sync); err != nil {
		return fatal()
	}
	body := &exactReader{r: s.br, left: a.size}
	st, serr := f.Stage(body, maildir.DeliverOptions{Flags: a.flags.letters, Keywords: a.flags.keywords, InternalDate: a.date})
	if body.left > 0 {
		if _, err := io.CopyN(io.Discard, s.br, body.left); err != nil {
			return fatal()
		}
	}
	discard := func() {
		if serr == nil {
			st.Discard()
		}
	}
	if body.err != nil {
		discard()
		return fatal()
	}
	// The rest of the line: ")" after UTF8 data, then the end (one
	// message only: no MULTIAPPEND).
	tail := func() error {
		if a.utf8 {
			if err := s.d.expect(')', "')' after UTF8 data"); err != nil {
				return err
			}
		}
		return s.d.crlf()
	}
	if err := tail(); err != nil {
		discard()
		var pe *parseError
		if errors.As(err, &pe) {
			return s.badAppendTail(pe)
		}
		return fatal()
	}
	if serr != nil {
		return s.storageResult(serr, "REPLACE")
	}
	key, err := st.Commit()
	if err != nil {
		return s.storageResult(err, "REPLACE")
	}
	if err := sel.folder.Remove(old.key); err != nil && !errors.Is(err, maildir.ErrNoMessage) {
		// The old message stays: take the new one back.
		f.Remove(key)
		return s.storageResult(err, "REPLACE")
	}
	s.srv.hub.notify(f.Path(), s)
	if f.Path() != sel.folder.Path() {
		s.srv.hub.notify(sel.folder.Path(), s)
	}
	// RFC 8508 3.3: APPENDUID as an untagged OK, then the EXISTS and
	// EXPUNGE (or VANISHED) of the selected mailbox, then the tagged OK.
	if ref.fs != nil {
		f.AdoptShared([]string{key}, s.identity())
	} else if validity, uids, err := f.UIDs([]string{key}); err == nil && len(uids) == 1 && uids[0] != 0 {
		s.w.line("* OK [").raw(fmt.Sprintf("APPENDUID %d %d", validity, uids[0])).raw("] Replacement message ready").end()
	}
	if r, failed := s.syncResult(s.syncSelected(true)); failed {
		return r
	}
	return ok(c.name + " completed")
}
