package imap

import (
	"errors"
	"fmt"
	"slices"

	"postern/mailbox/acl"
	"postern/mailbox/maildir"
)

// COPY, UID COPY (RFC 3501 6.4.7) with COPYUID (RFC 4315), and MOVE,
// UID MOVE (RFC 6851).
func copyCommands() []*commandSpec {
	return []*commandSpec{
		{name: "COPY", states: stateSelected, parse: parseCopy, exec: execCopy, expungeOK: true},
		{name: "UID COPY", states: stateSelected, parse: parseCopy, exec: execCopy, expungeOK: true},
		{name: "MOVE", states: stateSelected, caps: []string{"MOVE"}, parse: parseCopy, exec: execMove, expungeOK: true, noUpdates: true},
		{name: "UID MOVE", states: stateSelected, caps: []string{"MOVE"}, parse: parseCopy, exec: execMove, expungeOK: true, noUpdates: true},
	}
}

type copyArgs struct {
	set     seqArg
	mailbox string
}

func parseCopy(d *decoder) (any, error) {
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
	mb, err := d.astring()
	if err != nil {
		return nil, err
	}
	return copyArgs{set, mb}, nil
}

// copied is what copyMessages did: the source indexes copied, the COPYUID
// response code, and the messages the filing teaches JunkLearn, to be
// queued once the command has succeeded.
type copied struct {
	indexes []int
	code    string
	learn   []junkJob
}

// copyMessages copies the messages a set names into the mailbox.
func (s *session) copyMessages(c *command) (out copied, r result, failed bool) {
	a := c.args.(copyArgs)
	sel := s.sel
	set := sel.expand(a.set, c.uid)
	if !c.uid && !sel.seqInRange(set) {
		return copied{}, bad("Invalid sequence number"), true
	}
	ref, r, found := s.resolveMailbox(a.mailbox)
	if !found {
		return copied{}, r, true
	}
	defer s.releaseRef(ref)
	if !ref.rights.Has(acl.Insert) {
		return copied{}, noPerm(), true // RFC 4314 4: COPY into needs "i"
	}
	dst, err := ref.mail.Folder(ref.folder)
	if err == nil && ref.fs != nil {
		dst, err = s.fsSharedInsertTarget(ref)
	}
	if err != nil {
		if errors.Is(err, maildir.ErrNoFolder) {
			return copied{}, no("TRYCREATE", "No such mailbox; create it first"), true
		}
		return copied{}, s.storageResult(err, "COPY"), true
	}
	var newKeys []string
	var srcUIDs []uint32
	spam, learn := s.junkFiling(ref)
	undo := func() {
		for _, k := range newKeys {
			dst.Remove(k)
		}
	}
	for _, i := range sel.resolve(set, c.uid) {
		m := &sel.msgs[i]
		if m.gone {
			continue
		}
		key, err := sel.folder.CopyTo(dst, m.key)
		if err != nil {
			if errors.Is(err, maildir.ErrNoMessage) {
				continue
			}
			// COPY is all or nothing (RFC 3501 6.4.7).
			undo()
			return copied{}, s.storageResult(err, "COPY"), true
		}
		newKeys = append(newKeys, key)
		srcUIDs = append(srcUIDs, m.uid)
		out.indexes = append(out.indexes, i)
		if learn && m.size <= maxJunkLearnSize {
			out.learn = append(out.learn, junkJob{login: s.user, spam: spam, folder: dst, key: key})
		}
	}
	if len(newKeys) == 0 {
		return copied{}, result{}, false
	}
	s.srv.hub.notify(dst.Path(), s)
	if dst.Path() == sel.folder.Path() {
		s.markChanged()
	}
	if ref.fs != nil {
		dst.AdoptShared(newKeys, s.identity())
		return out, result{}, false // UIDs come with the view's next sync
	}
	validity, dstUIDs, err := dst.UIDs(newKeys)
	if err != nil || slices.Contains(dstUIDs, 0) {
		return out, result{}, false // copied; only the UIDs are unknown
	}
	out.code = fmt.Sprintf("COPYUID %d %s %s", validity, compactUIDs(srcUIDs), compactUIDs(dstUIDs))
	return out, result{}, false
}

func execCopy(s *session, c *command) result {
	out, r, failed := s.copyMessages(c)
	if failed {
		return r
	}
	s.learnJunk(out.learn)
	if out.code != "" {
		return okCode(out.code, c.name+" completed")
	}
	return ok(c.name + " completed")
}

// learnJunk queues what a COPY or MOVE taught (junklearn.go).
func (s *session) learnJunk(jobs []junkJob) {
	if s.srv.junk != nil {
		s.srv.junk.enqueue(jobs)
	}
}

// execMove copies, then expunges the originals: COPYUID goes out as an
// untagged OK before the EXPUNGE responses (RFC 6851 4.3).
func execMove(s *session, c *command) result {
	if s.sel.readOnly {
		return no("READ-ONLY", "Mailbox is read-only")
	}
	// RFC 6851 3.1 with RFC 4314 4: MOVE removes from the source, which
	// needs "t" and "e" there.
	if !s.sel.rights.Has(acl.DeleteMessages | acl.Expunge) {
		return noPerm()
	}
	out, r, failed := s.copyMessages(c)
	if failed {
		return r
	}
	if out.code != "" {
		s.w.line("* OK [").raw(out.code).raw("] Moved").end()
	}
	sel := s.sel
	for _, i := range out.indexes {
		if err := sel.folder.Remove(sel.msgs[i].key); err != nil && !errors.Is(err, maildir.ErrNoMessage) {
			return s.storageResult(err, "MOVE")
		}
	}
	if len(out.indexes) > 0 {
		s.srv.hub.notify(sel.folder.Path(), s)
	}
	// The messages are in their new folder whatever the sync below
	// reports: the user has filed them.
	s.learnJunk(out.learn)
	if r, failed := s.syncResult(s.syncSelected(true)); failed {
		return r
	}
	return ok(c.name + " completed")
}
