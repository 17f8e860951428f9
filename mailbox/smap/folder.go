package smap

import (
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"

	"postern/internal/netserve"
	"postern/mailbox/maildir"
)

// openFolder is the session's view of its open folder: messages numbered
// from 1 in UID order, as the client last heard of them.
type openFolder struct {
	name string // maildir name
	f    *maildir.Folder
	snap *maildir.Snapshot // the Sync the view was last compared with
	msgs []viewMsg
	// unwatch stops the file-system notifications for this folder.
	unwatch func()
	changed <-chan struct{}
	// snapshots: opened with SOPEN, so NOOP saves snapshots (snapshot.go);
	// dirty: the view changed since the last one was saved.
	snapshots, dirty bool
	// fs: a filesystem-shared folder (fsshared.go); f is then the
	// user's private view of it.
	fs *fsShared
}

type viewMsg struct {
	uid      uint32
	key      string
	flags    string // maildir letters, sorted
	keywords []string
	size     int64
}

func viewOf(m *maildir.Message) viewMsg {
	return viewMsg{uid: m.UID, key: m.Key, flags: m.Flags, keywords: m.Keywords, size: m.Size}
}

// cmdOpen opens a folder (OPEN path, SOPEN snapshot path; snapshot.go).
func (sess *session) cmdOpen(cmd string, w *words) {
	sess.closeFolder()
	snapID := ""
	if cmd == "SOPEN" {
		snapID = w.next()
	}
	path := w.path()
	if len(path) == 0 {
		sess.writeString("-ERR Invalid folder: Invalid argument\n")
		return
	}
	var name string
	var f *maildir.Folder
	var fs *fsShared
	var err error
	if sess.isSharedPath(path) {
		name, f, fs, err = sess.openShared(path)
		if err != nil && !errors.Is(err, errBadName) {
			sess.writeString("-ERR Cannot open the folder: " + errText(err) + "\n")
			return
		}
	} else {
		name, err = folderName(path)
	}
	if err != nil {
		sess.writeString("-ERR Invalid folder: " + errText(err) + "\n")
		return
	}
	if f == nil {
		f, err = sess.md.Folder(name)
	}
	var snap *maildir.Snapshot
	if err == nil {
		// A read-only shared folder is read as IMAP's EXAMINE reads:
		// its new messages stay new.
		snap, err = f.Sync(fs == nil || fs.view.Writable)
	}
	if err != nil {
		sess.writeString("-ERR Cannot open the folder: " + errText(err) + "\n")
		return
	}
	of := &openFolder{name: name, f: f, snap: snap, msgs: make([]viewMsg, len(snap.Messages)), fs: fs}
	for i := range snap.Messages {
		of.msgs[i] = viewOf(&snap.Messages[i])
	}
	watched := f.Path()
	if fs != nil {
		// Others change the sharable folder; the view follows it at
		// the next sync.
		watched = fs.view.Real
	}
	of.changed, of.unwatch = sess.srv.watch.add(watched)
	sess.cur = of
	sess.track.Update(func(i *netserve.SessionInfo) { i.Mailbox = f.Name() })
	if cmd == "SOPEN" {
		of.snapshots, of.dirty = true, true
		if saved, ok := of.loadSnapshot(snapID); ok {
			// The client's view as it was: report what changed since.
			of.msgs, of.snap = saved, nil
			sess.log.Debug("smap: folder opened from a snapshot", "folder", name, "messages", len(saved))
			sess.writeString("* SNAPSHOTEXISTS " + quote(snapID) + "\n")
			of.dirty = sess.noop()
			sess.writeString("+OK Folder updated\n")
			return
		}
	}
	sess.log.Debug("smap: folder opened", "folder", name, "messages", len(of.msgs))
	sess.writeString("* EXISTS " + strconv.Itoa(len(of.msgs)) + "\n+OK Folder opened\n")
}

func (sess *session) cmdClose(string, *words) {
	sess.closeFolder()
	sess.writeString("+OK Folder closed\n")
}

func (sess *session) closeFolder() {
	if sess.cur != nil {
		sess.cur.unwatch()
		sess.cur = nil
		sess.track.Update(func(i *netserve.SessionInfo) { i.Mailbox = "" })
	}
	sess.cache = nil
}

// noop compares the folder with the view and reports the difference as
// Courier's doNoop does: removed messages as "* EXPUNGE" ranges (numbered
// as the client knows them after the ranges before them on the same line
// are gone; a new line every 100 or so), then "* EXISTS" with the new
// count when messages arrived, then "* FETCH" with the flags and keywords
// of messages changed elsewhere.
//
// It reports whether anything was sent.
func (sess *session) noop() bool {
	of := sess.cur
	if of == nil {
		return false
	}
	if of.fs != nil {
		// The view's links follow the sharable folder first (messages
		// others added or removed).
		if err := of.fs.view.Sync(); err != nil {
			sess.log.Warn("smap: sync shared folder", "folder", of.name, "err", err)
		}
	}
	snap, err := of.f.Sync(!of.readOnly())
	if err != nil {
		sess.log.Warn("smap: rescan", "folder", of.name, "err", err)
		return false
	}
	if snap == of.snap {
		return false
	}
	of.snap = snap
	next := make([]viewMsg, 0, len(snap.Messages))
	var changed []int // indexes into next
	var line strings.Builder
	count, bias, expunged := 0, 0, 0
	last, run := 0, 0
	flushRun := func() {
		if run > 0 {
			line.WriteString("-" + strconv.Itoa(last+run-bias+1))
		}
	}
	j := 0
	for i, old := range of.msgs {
		for j < len(snap.Messages) && snap.Messages[j].UID < old.uid {
			// A message older than one we know: should not happen.
			next = append(next, viewOf(&snap.Messages[j]))
			changed = append(changed, len(next)-1)
			j++
		}
		if j >= len(snap.Messages) || snap.Messages[j].UID > old.uid {
			if count > 100 {
				flushRun()
				line.WriteString("\n")
				count = 0
			}
			switch {
			case count == 0:
				bias = expunged
				line.WriteString("* EXPUNGE " + strconv.Itoa(i+1-bias))
				last, run = i, 0
			case last+run+1 == i:
				run++
			default:
				flushRun()
				line.WriteString(" " + strconv.Itoa(i+1-bias))
				last, run = i, 0
			}
			count++
			expunged++
			continue
		}
		m := viewOf(&snap.Messages[j])
		if m.flags != old.flags || !slices.Equal(m.keywords, old.keywords) {
			changed = append(changed, len(next))
		}
		next = append(next, m)
		j++
	}
	if count > 0 {
		flushRun()
		line.WriteString("\n")
	}
	sess.writeString(line.String())
	added := j < len(snap.Messages)
	for ; j < len(snap.Messages); j++ {
		next = append(next, viewOf(&snap.Messages[j]))
	}
	of.msgs = next
	if sess.cache != nil && !slices.ContainsFunc(next, func(m viewMsg) bool { return m.key == sess.cache.key }) {
		sess.cache = nil
	}
	if added {
		sess.writeString("* EXISTS " + strconv.Itoa(len(next)) + "\n")
	}
	for _, i := range changed {
		sess.writeString(fetchFlagsLine(i, &next[i], true, true))
	}
	reported := count > 0 || added || len(changed) > 0
	if reported {
		of.dirty = true
	}
	return reported
}

// cmdNoop reports changes; in a folder opened with SOPEN, a NOOP that found
// none saves a snapshot of the view when it changed since the last one.
func (sess *session) cmdNoop(string, *words) {
	if !sess.noop() {
		if of := sess.cur; of != nil && of.snapshots && of.dirty {
			if id, err := of.saveSnapshot(); err != nil {
				sess.log.Warn("smap: save snapshot", "folder", of.name, "err", err)
			} else {
				of.dirty = false
				sess.writeString("* SNAPSHOT " + quote(id) + "\n")
			}
		}
	}
	sess.writeString("+OK Folder updated\n")
}

// flagNames are SMAP's flag words by maildir letter, in the order Courier
// writes them.
var flagNames = []struct {
	letter rune
	name   string
}{
	{maildir.FlagDraft, "DRAFT"},
	{maildir.FlagFlagged, "MARKED"},
	{maildir.FlagReplied, "REPLIED"},
	{maildir.FlagSeen, "SEEN"},
	{maildir.FlagTrashed, "DELETED"},
}

func flagWords(letters string) string {
	var out []string
	for _, f := range flagNames {
		if strings.ContainsRune(letters, f.letter) {
			out = append(out, f.name)
		}
	}
	return strings.Join(out, ",")
}

// fetchFlagsLine is "* FETCH n FLAGS=... "KEYWORDS=..."" for message
// index i.
func fetchFlagsLine(i int, m *viewMsg, flags, keywords bool) string {
	s := "* FETCH " + strconv.Itoa(i+1)
	if flags {
		s += " FLAGS=" + flagWords(m.flags)
	}
	if keywords {
		s += ` "KEYWORDS=` + quoteInner(strings.Join(m.keywords, ",")) + `"`
	}
	return s + "\n"
}

// cmdExpunge removes the messages marked DELETED, or with a message set
// the messages in it whatever their flags (smapexpunge).
func (sess *session) cmdExpunge(_ string, w *words) {
	set, next, has, ok := parseMsgSet(w)
	if !ok || next != "" {
		sess.writeString("-ERR Syntax error.\n")
		return
	}
	of := sess.cur
	if of.readOnly() {
		sess.writeString("-ERR Cannot expunge messages: " + errText(errReadOnly) + "\n")
		return
	}
	for i := range of.msgs {
		m := &of.msgs[i]
		if has && !inSet(set, i) || !has && !strings.ContainsRune(m.flags, maildir.FlagTrashed) {
			continue
		}
		if err := sess.removeMessage(m.key); err != nil && !isGone(err) {
			sess.log.Warn("smap: expunge", "folder", of.name, "key", m.key, "err", err)
		}
	}
	sess.noop()
	sess.writeString("+OK Folder updated\n")
}

// inSet reports whether message index i (0-based) is in the set.
func inSet(set []msgRange, i int) bool {
	n := uint32(i + 1)
	for _, r := range set {
		if n >= r.lo && n <= r.hi {
			return true
		}
	}
	return false
}

// each calls fn for every message of the set that exists, in order; fn's
// error stops it.
func (of *openFolder) each(set []msgRange, fn func(i int) error) error {
	for _, r := range set {
		for n := uint64(r.lo); n <= uint64(r.hi) && n <= uint64(len(of.msgs)); n++ {
			if err := fn(int(n - 1)); err != nil {
				return err
			}
		}
	}
	return nil
}

// cmdIdle reports changes as they happen until the client sends RESUME
// (smapusingfolders). The folder is watched with inotify through the
// server's watcher, and rescanned every minute when it cannot be.
func (sess *session) cmdIdle(string, *words) {
	sess.writeString("+OK Entering idle mode...\n")
	sess.noop()
	if sess.flush() != nil {
		return
	}
	type lineResult struct {
		line string
		err  error
	}
	got := make(chan lineResult, 1)
	go func() {
		l, err := sess.readCommand(sess.srv.opt.IdleTimeout)
		got <- lineResult{l, err}
	}()
	poll := sess.srv.opt.testIdlePoll
	if poll <= 0 {
		poll = idlePoll
	}
	tick := time.NewTicker(poll)
	defer tick.Stop()
	var changed <-chan struct{}
	if sess.cur != nil {
		changed = sess.cur.changed
	}
	done, kicked := sess.srv.group.Done(), sess.track.Kicked()
	for {
		select {
		case r := <-got:
			if r.err != nil {
				// The reader ends the session: leave the error for the
				// main loop by closing the connection's read side.
				sess.readFailed(r.err, "\n")
				sess.conn.Close()
				return
			}
			if upper(newWords(r.line).next()) == "RESUME" {
				sess.writeString("+OK Resumed...\n")
			} else {
				sess.writeString("-ERR RESUME is required to follow IDLE\n")
			}
			return
		case <-changed:
			sess.noop()
		case <-tick.C:
			sess.noop()
		case <-done:
			// Shutdown: wake the reader, which ends the session with BYE.
			done = nil
			sess.interrupt()
			continue
		case <-kicked:
			kicked = nil
			sess.interrupt()
			continue
		}
		if sess.flush() != nil {
			sess.conn.Close()
			<-got
			return
		}
	}
}
