package imap

import (
	"log/slog"
	"path/filepath"
	"slices"
	"sync"

	"github.com/fsnotify/fsnotify"

	"postern/auth"
	"postern/mailbox/maildir"
)

// folderHub connects the sessions of this server that have the same folder
// selected: a session that changes a folder tells the others, so they report
// the change at their next chance without rescanning on every command; and
// one shared file-system watcher (inotify) wakes IDLE sessions when another
// process delivers or changes mail.
type folderHub struct {
	log *slog.Logger

	mu      sync.Mutex
	folders map[string]*sharedFolder // by folder directory
	// maildirs are shared by the sessions of one account, so the per-folder
	// caches of mailbox/maildir (UID db, file metadata) serve all of them.
	maildirs     map[string]*sharedMaildir
	idleMaildirs []string // released, oldest first
	// indexes are the open folder indexes by folder directory. An index no
	// session uses stays open (idleIndexes, oldest first) so that the next
	// SELECT is warm, up to maxIdleIndexes.
	indexes     map[string]*sharedIndex
	idleIndexes []string

	watcher   *fsnotify.Watcher
	watchErr  error // creating the watcher failed: IDLE polls
	watchRefs map[string]int
	watchDone chan struct{}
	closed    bool
}

// sharedFolder is the process-wide state of one folder.
type sharedFolder struct {
	path     string
	sessions map[*session]struct{}

	// recentMark: messages with a higher UID have not been shown to any
	// session yet, so the next session to see them gets \Recent
	// (RFC 3501 2.3.2). Maildir cannot record which session saw a message,
	// so this is kept while some session has the folder selected; the first
	// mark comes from what is still in new/.
	mu         sync.Mutex // guards recentMark, markSet, newClaimed
	recentMark uint32
	markSet    bool
	// newClaimed is the last snapshot a read-write session claimed: Sync
	// hands the same snapshot to later sessions while the folder does not
	// change, and its messages from new/ are no longer unclaimed then.
	newClaimed *maildir.Snapshot
}

func newFolderHub(log *slog.Logger) *folderHub {
	return &folderHub{log: log, folders: map[string]*sharedFolder{}, maildirs: map[string]*sharedMaildir{},
		indexes: map[string]*sharedIndex{}, watchRefs: map[string]int{}}
}

type sharedIndex struct {
	ix   *folderIndex
	refs int
}

// maxIdleIndexes bounds the indexes kept open with no session using them.
const maxIdleIndexes = 32

// openIndex returns the folder's index, shared by this server's sessions;
// release it with releaseIndex.
func (h *folderHub) openIndex(f *maildir.Folder) *folderIndex {
	path := f.Path()
	h.mu.Lock()
	e := h.indexes[path]
	if e != nil {
		e.refs++
		h.idleIndexes = slices.DeleteFunc(h.idleIndexes, func(p string) bool { return p == path })
		h.mu.Unlock()
		return e.ix
	}
	h.mu.Unlock()
	ix := openIndex(path, h.log) // file I/O outside the hub lock
	h.mu.Lock()
	defer h.mu.Unlock()
	if e := h.indexes[path]; e != nil { // another session was quicker
		e.refs++
		h.idleIndexes = slices.DeleteFunc(h.idleIndexes, func(p string) bool { return p == path })
		ix.close()
		return e.ix
	}
	h.indexes[path] = &sharedIndex{ix: ix, refs: 1}
	return ix
}

func (h *folderHub) releaseIndex(ix *folderIndex) {
	if ix == nil {
		return
	}
	path := filepath.Dir(ix.path)
	var evict []*folderIndex
	h.mu.Lock()
	if e := h.indexes[path]; e != nil && e.ix == ix {
		if e.refs--; e.refs <= 0 {
			h.idleIndexes = append(h.idleIndexes, path)
			for len(h.idleIndexes) > maxIdleIndexes || h.closed {
				old := h.idleIndexes[0]
				h.idleIndexes = h.idleIndexes[1:]
				if oe := h.indexes[old]; oe != nil {
					evict = append(evict, oe.ix)
					delete(h.indexes, old)
				}
				if len(h.idleIndexes) == 0 {
					break
				}
			}
		}
	}
	h.mu.Unlock()
	for _, ix := range evict {
		// A checkpoint if the folder is settled; a session waits for this,
		// so not for cur/ to settle.
		ix.closeCheckpointed(false)
	}
}

// forgetIndex drops a folder's index after the folder was deleted or
// renamed, so that a new folder by that name starts afresh.
func (h *folderHub) forgetIndex(path string) {
	h.mu.Lock()
	e := h.indexes[path]
	if e != nil && e.refs <= 0 {
		delete(h.indexes, path)
		h.idleIndexes = slices.DeleteFunc(h.idleIndexes, func(p string) bool { return p == path })
	} else {
		e = nil
	}
	h.mu.Unlock()
	if e != nil {
		e.ix.close() // the folder is gone
	}
}

type sharedMaildir struct {
	m    *maildir.Maildir
	refs int
}

// openMaildir returns the account's Maildir, shared with its other
// sessions; release it with releaseMaildir. A server running as root
// reads it with the account's rights (maildir.Options.Reader), whoever's
// session asks (the account's own, or another user's through an ACL).
func (h *folderHub) openMaildir(acct *auth.Account) (*maildir.Maildir, error) {
	return h.openMaildirOpts(acct.MaildirPath(), maildir.Options{Reader: maildir.ReaderFor(acct.UID, acct.GID)})
}

// openMaildirOpts is openMaildir with options for a Maildir not open yet
// (a filesystem-shared folder's private view; the options follow from
// its path, so a shared entry has the same ones).
func (h *folderHub) openMaildirOpts(path string, opt maildir.Options) (*maildir.Maildir, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if e := h.maildirs[path]; e != nil {
		if e.refs <= 0 {
			h.idleMaildirs = slices.DeleteFunc(h.idleMaildirs, func(p string) bool { return p == path })
		}
		e.refs++
		return e.m, nil
	}
	var m *maildir.Maildir
	var err error
	if opt.SharedFrom != "" {
		m, err = maildir.OpenWithOptions(path, opt)
	} else {
		m, err = openMaildir(path, opt)
	}
	if err != nil {
		return nil, err
	}
	h.maildirs[path] = &sharedMaildir{m: m, refs: 1}
	return m, nil
}

// releaseMaildir drops a session's reference. A Maildir no session uses is
// kept (the most recent maxIdleMaildirs of them): its folders' caches make
// the account's next login as fast as one made while others are on.
func (h *folderHub) releaseMaildir(path string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if e := h.maildirs[path]; e != nil {
		if e.refs--; e.refs <= 0 {
			h.idleMaildirs = append(h.idleMaildirs, path)
			for len(h.idleMaildirs) > maxIdleMaildirs {
				old := h.idleMaildirs[0]
				h.idleMaildirs = h.idleMaildirs[1:]
				if oe := h.maildirs[old]; oe != nil && oe.refs <= 0 {
					delete(h.maildirs, old)
				}
			}
		}
	}
}

// maxIdleMaildirs bounds the Maildirs kept with no session on them.
const maxIdleMaildirs = 64

// join registers sess as having f selected.
func (h *folderHub) join(f *maildir.Folder, sess *session) *sharedFolder {
	h.mu.Lock()
	sf := h.folders[f.Path()]
	if sf == nil {
		sf = &sharedFolder{path: f.Path(), sessions: map[*session]struct{}{}}
		h.folders[f.Path()] = sf
	}
	sf.sessions[sess] = struct{}{}
	h.mu.Unlock()
	return sf
}

func (h *folderHub) leave(sf *sharedFolder, sess *session) {
	if sf == nil {
		return
	}
	h.mu.Lock()
	delete(sf.sessions, sess)
	if len(sf.sessions) == 0 && h.folders[sf.path] == sf {
		// Forget the folder: the next session starts its recent mark from
		// new/ again, which is exact, since read-write sessions move what
		// they have seen out of new/.
		delete(h.folders, sf.path)
	}
	h.mu.Unlock()
}

// claimRecent returns the mark below which messages are not recent for the
// caller, and (for a read-write session) moves the mark past snap, so that
// no other session sees those messages as recent. Messages found in new/
// (snap.NewUIDs, returned as unclaimed) are recent whatever the mark: no
// reader has claimed them, unless a read-write session already had this
// same snapshot; the mark covers what arrives straight in cur/ (APPEND,
// COPY) while the folder is in use. The first mark is the snapshot's end.
func (sf *sharedFolder) claimRecent(snap *maildir.Snapshot, readOnly bool) (mark uint32, unclaimed []uint32) {
	sf.mu.Lock()
	defer sf.mu.Unlock()
	if !sf.markSet {
		sf.recentMark, sf.markSet = snap.UIDNext-1, true
	}
	mark = sf.recentMark
	if snap != sf.newClaimed {
		unclaimed = snap.NewUIDs
	}
	if !readOnly {
		if snap.UIDNext > 0 && snap.UIDNext-1 > sf.recentMark {
			sf.recentMark = snap.UIDNext - 1
		}
		sf.newClaimed = snap
	}
	return mark, unclaimed
}

// notify wakes every session with the folder at path selected, except one.
func (h *folderHub) notify(path string, except *session) {
	h.mu.Lock()
	defer h.mu.Unlock()
	sf := h.folders[path]
	if sf == nil {
		return
	}
	for s := range sf.sessions {
		if s != except {
			select {
			case s.changed <- struct{}{}:
			default:
			}
		}
	}
}

// watch starts file-system notifications for a folder's new/ and cur/. It
// returns false when the platform cannot watch; the caller then polls.
func (h *folderHub) watch(path string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed || h.watchErr != nil {
		return false
	}
	if h.watcher == nil {
		w, err := fsnotify.NewWatcher()
		if err != nil {
			h.watchErr = err
			h.log.Warn("imap: file watching unavailable, IDLE polls", "err", err)
			return false
		}
		h.watcher = w
		h.watchDone = make(chan struct{})
		go h.watchLoop(w, h.watchDone)
	}
	if h.watchRefs[path] == 0 {
		for _, sub := range []string{"new", "cur"} {
			if err := h.watcher.Add(filepath.Join(path, sub)); err != nil {
				h.log.Debug("imap: watch", "path", path, "err", err)
				return false
			}
		}
	}
	h.watchRefs[path]++
	return true
}

func (h *folderHub) unwatch(path string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.watcher == nil || h.watchRefs[path] == 0 {
		return
	}
	h.watchRefs[path]--
	if h.watchRefs[path] == 0 {
		delete(h.watchRefs, path)
		h.watcher.Remove(filepath.Join(path, "new"))
		h.watcher.Remove(filepath.Join(path, "cur"))
	}
}

func (h *folderHub) watchLoop(w *fsnotify.Watcher, done chan struct{}) {
	defer close(done)
	for {
		select {
		case ev, ok := <-w.Events:
			if !ok {
				return
			}
			// ev.Name is FOLDER/new/FILE or FOLDER/cur/FILE.
			h.notify(filepath.Dir(filepath.Dir(ev.Name)), nil)
		case err, ok := <-w.Errors:
			if !ok {
				return
			}
			h.log.Debug("imap: watch error", "err", err)
		}
	}
}

// close stops the watcher and waits for its goroutine, and closes the
// indexes no session uses.
func (h *folderHub) close() {
	h.mu.Lock()
	var idle []*folderIndex
	for _, p := range h.idleIndexes {
		if e := h.indexes[p]; e != nil {
			idle = append(idle, e.ix)
			delete(h.indexes, p)
		}
	}
	h.idleIndexes = nil
	h.mu.Unlock()
	// Each index records its folder's checkpoint, waiting for a recently
	// changed cur/ to settle; the folders wait side by side.
	var wg sync.WaitGroup
	for _, ix := range idle {
		wg.Go(func() { ix.closeCheckpointed(true) })
	}
	wg.Wait()
	h.mu.Lock()
	h.closed = true
	w, done := h.watcher, h.watchDone
	h.watcher = nil
	h.mu.Unlock()
	if w != nil {
		w.Close()
		<-done
	}
}
