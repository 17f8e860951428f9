package smap

import (
	"errors"
	"log/slog"
	"path/filepath"
	"sync"

	"github.com/fsnotify/fsnotify"

	"postern/mailbox/maildir"
)

// watcher is one inotify instance for the whole server: each open folder's
// new/ and cur/ are watched while some session has it open, and a change
// wakes those sessions (IDLE reports it at once). Changes made by other
// SMAP sessions, the IMAP server, deliveries and Courier's tools all reach
// a folder's directories, so this one mechanism carries them all.
type watcher struct {
	log *slog.Logger

	mu     sync.Mutex
	w      *fsnotify.Watcher
	err    error // creating the watcher failed: sessions poll
	subs   map[string]map[chan struct{}]struct{}
	done   chan struct{}
	closed bool
}

func newWatcher(log *slog.Logger) *watcher {
	return &watcher{log: log, subs: map[string]map[chan struct{}]struct{}{}}
}

// add subscribes to changes of the folder at path. The channel receives
// (without blocking the watcher) after each change; cancel unsubscribes.
// When the folder cannot be watched the channel never fires and the
// caller's polling finds the changes.
func (wt *watcher) add(path string) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	wt.mu.Lock()
	defer wt.mu.Unlock()
	if wt.closed {
		return ch, func() {}
	}
	if wt.w == nil && wt.err == nil {
		w, err := fsnotify.NewWatcher()
		if err != nil {
			wt.err = err
			wt.log.Warn("smap: file watching unavailable, IDLE polls", "err", err)
		} else {
			wt.w = w
			wt.done = make(chan struct{})
			go wt.loop(w, wt.done)
		}
	}
	if wt.w != nil && wt.subs[path] == nil {
		for _, sub := range []string{"new", "cur"} {
			if err := wt.w.Add(filepath.Join(path, sub)); err != nil {
				wt.log.Debug("smap: watch", "path", path, "err", err)
			}
		}
	}
	if wt.subs[path] == nil {
		wt.subs[path] = map[chan struct{}]struct{}{}
	}
	wt.subs[path][ch] = struct{}{}
	var once sync.Once
	return ch, func() { once.Do(func() { wt.remove(path, ch) }) }
}

func (wt *watcher) remove(path string, ch chan struct{}) {
	wt.mu.Lock()
	defer wt.mu.Unlock()
	delete(wt.subs[path], ch)
	if len(wt.subs[path]) == 0 {
		delete(wt.subs, path)
		if wt.w != nil {
			wt.w.Remove(filepath.Join(path, "new"))
			wt.w.Remove(filepath.Join(path, "cur"))
		}
	}
}

func (wt *watcher) loop(w *fsnotify.Watcher, done chan struct{}) {
	defer close(done)
	for {
		select {
		case ev, ok := <-w.Events:
			if !ok {
				return
			}
			// ev.Name is FOLDER/new/FILE or FOLDER/cur/FILE.
			wt.notify(filepath.Dir(filepath.Dir(ev.Name)))
		case err, ok := <-w.Errors:
			if !ok {
				return
			}
			wt.log.Debug("smap: watch error", "err", err)
		}
	}
}

func (wt *watcher) notify(path string) {
	wt.mu.Lock()
	defer wt.mu.Unlock()
	for ch := range wt.subs[path] {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// close stops the watcher and waits for its goroutine.
func (wt *watcher) close() {
	wt.mu.Lock()
	wt.closed = true
	w, done := wt.w, wt.done
	wt.w = nil
	wt.mu.Unlock()
	if w != nil {
		w.Close()
		<-done
	}
}

// isGone reports an error that only says the message was already removed
// (by another session or process).
func isGone(err error) bool { return errors.Is(err, maildir.ErrNoMessage) }
