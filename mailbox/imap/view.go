package imap

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"postern/internal/netserve"
	"postern/mailbox/acl"
	"postern/mailbox/maildir"
)

// viewMessage is one message as this session's client knows it. Its index
// in selected.msgs plus one is its sequence number.
type viewMessage struct {
	uid      uint32
	key      string
	letters  string
	keywords []string
	size     int64
	vsize    int64 // CRLF size from the file name (",W="), 0 if unknown
	date     time.Time
	// gone: expunged by someone else, but the client has not been told yet
	// because an EXPUNGE response was not allowed at that moment.
	gone bool
}

// selected is the state of the selected mailbox (RFC 3501 state "Selected").
type selected struct {
	name        string // as the client named it, canonical
	folder      *maildir.Folder
	readOnly    bool
	uidValidity uint32
	uidNext     uint32
	msgs        []viewMessage
	shared      *sharedFolder
	index       *folderIndex
	keywords    map[string]bool // announced in FLAGS
	// hasGone: the view holds messages expunged elsewhere that the client
	// has not been told about; the next point where EXPUNGE is allowed
	// rescans even without a new change signal.
	hasGone bool
	// lastSnap is the snapshot the view was last compared with; the same
	// pointer again means the folder did not change on disk.
	lastSnap *maildir.Snapshot
	// sharedView: msgs is shared with other sessions (read-only); see
	// ownView.
	sharedView bool
	// recent are the UIDs, ascending, of the messages that are \Recent in
	// this session (RFC 3501 2.3.2): kept beside the view, not in it, so
	// that sessions with different recent messages share one view. May
	// name UIDs expunged since.
	recent []uint32
	// openFirstUnseen is the sequence number of the view's first unseen
	// message when it was opened, counted when the shared view was
	// published (firstUnseen), so that SELECT walks no message.
	openFirstUnseen int
	// saved is the search result variable of SEARCHRES (RFC 5182), as
	// UIDs, ascending; see searchres.go.
	saved []uint32
	// rights are the session's ACL rights on the mailbox (RFC 4314): all
	// of them on its own, what the owner granted on a shared one, whose
	// Maildir ref holds until the mailbox is closed.
	rights acl.Rights
	ref    *mailboxRef
}

var errUIDValidityChanged = errors.New("imap: UIDVALIDITY changed under the session")

func (sel *selected) hasFlag(i int, letter byte) bool {
	return strings.IndexByte(sel.msgs[i].letters, letter) >= 0
}

// isRecent says whether m has \Recent in this session.
func (sel *selected) isRecent(m *viewMessage) bool {
	_, found := slices.BinarySearch(sel.recent, m.uid)
	return found
}

// recentCount is the number of \Recent messages in the view (RFC 3501
// 7.3.2 RECENT).
func (sel *selected) recentCount() int {
	n := 0
	for _, uid := range sel.recent {
		if sel.indexOfUID(uid) >= 0 {
			n++
		}
	}
	return n
}

// recentUIDs returns the UIDs, ascending, of snap's messages that are
// \Recent for a session whose recent mark is mark and to which the
// messages from new/ in unclaimed were given (sharedFolder.claimRecent),
// and that are above floor: those from new/ and those above the mark.
func recentUIDs(snap *maildir.Snapshot, mark uint32, unclaimed []uint32, floor uint32) []uint32 {
	var uids []uint32
	for _, uid := range unclaimed {
		if uid > floor && uid <= mark {
			uids = append(uids, uid)
		}
	}
	// Messages are in UID order: those above the mark are a tail.
	msgs := snap.Messages
	i, _ := slices.BinarySearchFunc(msgs, max(mark, floor)+1, func(m maildir.Message, uid uint32) int { return cmp.Compare(m.UID, uid) })
	for ; i < len(msgs); i++ {
		uids = append(uids, msgs[i].UID)
	}
	return uids
}

// maxUID is the highest UID in the view.
func (sel *selected) maxUID() uint32 {
	if len(sel.msgs) == 0 {
		return 0
	}
	return sel.msgs[len(sel.msgs)-1].uid
}

// seqOfUID returns the index of uid in the view, or -1.
func (sel *selected) indexOfUID(uid uint32) int {
	lo, hi := 0, len(sel.msgs)
	for lo < hi {
		m := (lo + hi) / 2
		switch {
		case sel.msgs[m].uid == uid:
			return m
		case sel.msgs[m].uid < uid:
			lo = m + 1
		default:
			hi = m
		}
	}
	return -1
}

// resolve returns the view indexes a sequence set names, ascending and
// without duplicates. With uid, the set holds UIDs and "*" is the highest
// UID; UIDs not in the view are ignored (RFC 3501 6.4.8).
func (sel *selected) resolve(set seqSet, uid bool) []int {
	n := len(sel.msgs)
	if n == 0 {
		return nil
	}
	mark := make([]bool, n)
	count := 0
	for _, r := range set {
		if uid {
			lo, hi := r.bounds(sel.maxUID())
			// Binary search for the first message with uid >= lo.
			a, b := 0, n
			for a < b {
				m := (a + b) / 2
				if sel.msgs[m].uid < lo {
					a = m + 1
				} else {
					b = m
				}
			}
			for i := a; i < n && sel.msgs[i].uid <= hi; i++ {
				if !mark[i] {
					mark[i] = true
					count++
				}
			}
			continue
		}
		lo, hi := r.bounds(uint32(n))
		if lo > uint32(n) {
			continue
		}
		hi = min(hi, uint32(n))
		for i := lo - 1; i < hi; i++ {
			if !mark[i] {
				mark[i] = true
				count++
			}
		}
	}
	out := make([]int, 0, count)
	for i, m := range mark {
		if m {
			out = append(out, i)
		}
	}
	return out
}

// seqInRange reports whether every sequence number of a non-UID set exists;
// RFC 3501 makes a number beyond the mailbox size an error.
func (sel *selected) seqInRange(set seqSet) bool {
	n := uint32(len(sel.msgs))
	for _, r := range set {
		if (r.lo != 0 && r.lo > n) || (r.hi != 0 && r.hi > n) {
			return false
		}
		if n == 0 {
			return false
		}
	}
	return true
}

// openSelected syncs the folder and builds the initial view (SELECT/EXAMINE).
func (sess *session) openSelected(name string, f *maildir.Folder, readOnly bool) (*selected, error) {
	shared := sess.srv.hub.join(f, sess)
	ix := sess.srv.hub.openIndex(f)
	ix.feed(f)
	sel := &selected{name: name, folder: f, readOnly: readOnly, shared: shared, index: ix, keywords: map[string]bool{}}
	snap, err := f.Sync(!readOnly)
	if err != nil {
		sess.srv.hub.leave(shared, sess)
		sess.srv.hub.releaseIndex(ix)
		return nil, fmt.Errorf("imap: select %s: %w", name, err)
	}
	ix.merge(snap)
	sel.lastSnap = snap
	sel.uidValidity = snap.UIDValidity
	sel.uidNext = snap.UIDNext
	mark, unclaimed := shared.claimRecent(snap, readOnly)
	// IMAP4rev2 has no \Recent (RFC 9051): a rev2 session never has any.
	if !sess.rev2() {
		sel.recent = recentUIDs(snap, mark, unclaimed, 0)
	}
	// Every session's first view of a snapshot is the same (\Recent is
	// kept beside it): it is built once and shared, copied only when a
	// session changes it (ownView). A big folder's SELECT then costs no
	// per-message work, and many sessions on one folder share one view.
	msgs, kws, first := ix.sharedView(snap)
	sel.msgs, sel.sharedView, sel.openFirstUnseen = msgs, true, first
	for _, k := range kws {
		sel.keywords[k] = true
	}
	return sel, nil
}

// internalDate is m's internal date (RFC 3501 2.3.3). A folder's first
// open leaves the dates of files it did not have to stat unknown (zero in
// the view): such a date is taken from the index, else read from the file
// once and kept in the index.
func (sess *session) internalDate(m *viewMessage) time.Time {
	if !m.date.IsZero() {
		return m.date
	}
	ix := sess.sel.index
	if t := ix.date(m.uid); !t.IsZero() {
		return t
	}
	t, err := sess.sel.folder.InternalDate(m.key)
	if err != nil {
		// Gone (or unreadable): a date must still be given; the Unix
		// epoch says "unknown" without pretending to be one.
		return time.Unix(0, 0)
	}
	ix.setDate(m.uid, m.key, t)
	return t
}

// ownView gives the session its own copy of a shared view before it
// changes a message in it.
func (sel *selected) ownView() {
	if sel.sharedView {
		sel.msgs = slices.Clone(sel.msgs)
		sel.sharedView = false
	}
}

// closeSelected leaves the selected state without expunging.
func (sess *session) closeSelected() {
	if sess.sel == nil {
		return
	}
	sess.srv.hub.leave(sess.sel.shared, sess)
	sess.srv.hub.releaseIndex(sess.sel.index)
	sess.releaseRef(sess.sel.ref)
	sess.sel = nil
	sess.track.Update(func(i *netserve.SessionInfo) { i.Mailbox = "" })
	if sess.state == stateSelected {
		sess.state = stateAuth
	}
	// Drop a stale change signal meant for the old folder.
	select {
	case <-sess.changed:
	default:
	}
}

// sendUpdates reports changes to the selected folder as untagged responses
// if something signalled a change (or always, with force). expungeOK says
// whether EXPUNGE responses are allowed now (RFC 3501 7.4.1).
func (sess *session) sendUpdates(expungeOK, force bool) error {
	if sess.sel == nil {
		return nil
	}
	if !force && !(expungeOK && sess.sel.hasGone) {
		select {
		case <-sess.changed:
		default:
			return nil
		}
	}
	return sess.syncSelected(expungeOK)
}

// syncSelected rescans the folder and brings the client's view up to date:
// EXPUNGE for vanished messages (when allowed), FETCH FLAGS for flag changes
// made elsewhere, EXISTS and RECENT for new messages.
func (sess *session) syncSelected(expungeOK bool) error {
	sel := sess.sel
	if sel.ref != nil && sel.ref.fs != nil {
		// A filesystem-shared folder: the view's links follow the
		// sharable folder first (messages others added or removed).
		if err := sel.ref.fs.view.Sync(); err != nil {
			sess.log.Warn("imap: sync shared folder", "mailbox", sel.name, "err", err)
		}
	}
	snap, err := sel.folder.Sync(!sel.readOnly)
	if err != nil {
		return fmt.Errorf("imap: sync %s: %w", sel.name, err)
	}
	sel.index.merge(snap)
	if snap.UIDValidity != sel.uidValidity {
		return errUIDValidityChanged
	}
	if snap == sel.lastSnap && !sel.hasGone {
		return nil // unchanged since this view was built from it
	}
	if !sel.hasGone && sel.lastSnap != nil && extendsSnapshot(snap, sel.lastSnap) {
		return sess.appendToView(snap)
	}
	sel.lastSnap = snap
	w := sess.w
	old := sel.msgs
	msgs := make([]viewMessage, 0, max(len(snap.Messages), len(old)))
	expunged, kept := 0, 0
	var vanished []uint32
	j := 0
	snapMsgs := snap.Messages
	for i := range old {
		o := &old[i]
		for j < len(snapMsgs) && snapMsgs[j].UID < o.uid {
			j++ // a UID below what the client knows, not in the view: cannot be shown
		}
		if j < len(snapMsgs) && snapMsgs[j].UID == o.uid {
			m := &snapMsgs[j]
			j++
			nm := *o
			nm.gone = false
			if !sameFlags(o.letters, o.keywords, m.Flags, m.Keywords) {
				nm.letters, nm.keywords = m.Flags, m.Keywords
				sess.announceKeywords(m.Keywords)
				seq := uint64(len(msgs) + 1)
				w.line("* ").num(seq).raw(" FETCH (")
				if sess.enabledUIDInUpdates() {
					w.raw("UID ").num(uint64(nm.uid)).byte(' ')
				}
				w.raw("FLAGS ")
				w.buf = appendFlags(w.buf, nm.letters, nm.keywords, sel.isRecent(&nm))
				if sess.condstoreOn() {
					w.raw(" MODSEQ (").num(sel.index.modseqOf(nm.uid)).byte(')')
				}
				w.byte(')').end()
			}
			msgs = append(msgs, nm)
			continue
		}
		// Not in the folder any more.
		if !expungeOK {
			nm := *o
			nm.gone = true
			msgs = append(msgs, nm)
			kept++
			continue
		}
		if sess.qresyncOn() {
			vanished = append(vanished, o.uid)
		} else {
			w.line("* ").num(uint64(len(msgs) + 1)).raw(" EXPUNGE").end()
		}
		expunged++
	}
	if len(vanished) > 0 {
		// RFC 7162 3.2.10: with QRESYNC, expunges are VANISHED UID sets.
		if err := sess.writeVanished(vanished, false); err != nil {
			return err
		}
	}
	maxKnown := sel.maxUID()
	mark, unclaimed := sel.shared.claimRecent(snap, sel.readOnly)
	added := 0
	for ; j < len(snapMsgs); j++ {
		m := &snapMsgs[j]
		if m.UID <= maxKnown {
			continue
		}
		sess.announceKeywords(m.Keywords)
		msgs = append(msgs, viewMessage{
			uid: m.UID, key: m.Key, letters: m.Flags, keywords: m.Keywords,
			size: m.Size, vsize: m.VirtualSize, date: m.InternalDate,
		})
		added++
	}
	sel.msgs, sel.sharedView = msgs, false
	sel.uidNext = snap.UIDNext
	sel.hasGone = kept > 0
	if added > 0 && !sess.rev2() {
		// Above every UID the session knew, so the list stays ascending.
		sel.recent = append(sel.recent, recentUIDs(snap, mark, unclaimed, maxKnown)...)
	}
	if expunged > 0 {
		sel.recent = slices.DeleteFunc(sel.recent, func(uid uint32) bool { return sel.indexOfUID(uid) < 0 })
	}
	if added > 0 || expunged > 0 {
		if added > 0 {
			w.line("* ").num(uint64(len(msgs))).raw(" EXISTS").end()
		}
		if !sess.rev2() {
			w.line("* ").num(uint64(sel.recentCount())).raw(" RECENT").end()
		}
	}
	return nil
}

// appendToView is syncSelected for a snapshot that only added messages
// to the one the view was last brought up to date with (Sync wrote them
// past the end of its array): nothing the client knows changed, so only
// the new messages are looked at, and a session with the folder's shared
// view takes the index's, extended in place. An IDLE session on a big
// folder then costs nothing per message at each delivery.
func (sess *session) appendToView(snap *maildir.Snapshot) error {
	sel := sess.sel
	known := len(sel.lastSnap.Messages)
	added := snap.Messages[known:]
	maxKnown := sel.maxUID()
	mark, unclaimed := sel.shared.claimRecent(snap, sel.readOnly)
	sel.lastSnap, sel.uidNext = snap, snap.UIDNext
	if len(added) == 0 {
		return nil
	}
	for i := range added {
		sess.announceKeywords(added[i].Keywords)
	}
	if sel.sharedView && len(sel.msgs) == known {
		// The shared view of the last snapshot: the index's view of this
		// one starts with it.
		sel.msgs, _, _ = sel.index.sharedView(snap)
	} else {
		sel.ownView()
		for i := range added {
			sel.msgs = append(sel.msgs, viewOf(&added[i]))
		}
	}
	if !sess.rev2() {
		sel.recent = append(sel.recent, recentUIDs(snap, mark, unclaimed, maxKnown)...)
	}
	w := sess.w
	w.line("* ").num(uint64(len(sel.msgs))).raw(" EXISTS").end()
	if !sess.rev2() {
		w.line("* ").num(uint64(sel.recentCount())).raw(" RECENT").end()
	}
	return nil
}

// announceKeywords sends a new FLAGS response when a keyword appears that
// the client was not told about (RFC 3501 7.2.6).
func (sess *session) announceKeywords(kws []string) {
	sel := sess.sel
	fresh := false
	for _, k := range kws {
		if !sel.keywords[k] {
			sel.keywords[k] = true
			fresh = true
		}
	}
	if fresh {
		sess.writeFlagsResponse()
		sess.writePermanentFlags()
	}
}

func (sess *session) writeFlagsResponse() {
	w := sess.w
	w.line(`* FLAGS (\Answered \Flagged \Deleted \Seen \Draft`)
	for _, k := range sortedKeys(sess.sel.keywords) {
		w.byte(' ').raw(k)
	}
	w.byte(')').end()
}

// enabledUIDInUpdates: unsolicited FETCH carries the UID; harmless for
// IMAP4rev1 clients and required by CONDSTORE/QRESYNC later.
func (sess *session) enabledUIDInUpdates() bool { return true }

// markChanged makes the next update point rescan the selected folder.
func (sess *session) markChanged() {
	select {
	case sess.changed <- struct{}{}:
	default:
	}
}

// writePermanentFlags: the flags a client may store; "\*" means it may
// create keywords (RFC 3501 7.1).
func (sess *session) writePermanentFlags() {
	w := sess.w
	if sess.sel.readOnly {
		w.line(`* OK [PERMANENTFLAGS ()] Read-only mailbox`).end()
		return
	}
	if r := sess.sel.rights; !r.Has(acl.Seen | acl.Write | acl.DeleteMessages) {
		sess.writeLimitedPermanentFlags(r)
		return
	}
	w.line(`* OK [PERMANENTFLAGS (\Answered \Flagged \Deleted \Seen \Draft`)
	for _, k := range sortedKeys(sess.sel.keywords) {
		w.byte(' ').raw(k)
	}
	w.raw(` \*)] Flags permitted`).end()
}
