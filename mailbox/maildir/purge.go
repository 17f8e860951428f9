package maildir

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// PurgeOlder deletes the folder's messages whose status last changed
// (ctime) before cutoff: Courier's IMAP_EMPTYTRASH. ctime, not mtime, is
// what Courier goes by: moving a message into Trash renames it, which
// sets ctime, while mtime stays its delivery time; a message put in Trash
// today is kept for the whole period however old it is. Removal goes
// through Remove, so the quota's usage follows. It returns how many
// messages were deleted; a message gone meanwhile is not an error.
func (f *Folder) PurgeOlder(cutoff time.Time) (int, error) {
	removed := 0
	for _, sub := range []string{"cur", "new"} {
		dir := filepath.Join(f.path, sub)
		names, err := readNames(dir)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return removed, fmt.Errorf("maildir %s: purge: %w", f.path, err)
		}
		for _, n := range names {
			fi, err := os.Lstat(filepath.Join(dir, n))
			if err != nil || !fi.Mode().IsRegular() {
				continue // gone meanwhile, or not a message
			}
			st, ok := fi.Sys().(*syscall.Stat_t)
			if !ok || !time.Unix(st.Ctim.Unix()).Before(cutoff) {
				continue
			}
			key, _ := splitName(n)
			switch err := f.Remove(key); {
			case err == nil:
				removed++
			case errors.Is(err, ErrNoMessage):
			default:
				return removed, err
			}
		}
	}
	return removed, nil
}

// PurgeRule is one folder's retention: messages whose status changed
// longer ago than Age are deleted (Courier's IMAP_EMPTYTRASH FOLDER:DAYS).
type PurgeRule struct {
	Folder string
	Age    time.Duration
}

// Purger runs the retention rules on an account's Maildir when it logs in
// (IMAP, webmail), as Courier's imapd does at login: in the background,
// so the login is not held up by a stat of every file, and at most once
// per account per Every (a client that logs in every minute does not
// make the server list its Trash every minute). The zero Every is an
// hour. Rules is read at each run, so a reload applies.
type Purger struct {
	Rules  func() []PurgeRule
	Every  time.Duration
	Logger *slog.Logger // nil: slog.Default()

	mu     sync.Mutex
	last   map[string]time.Time
	closed bool
	wg     sync.WaitGroup
}

// maxPurgeAccounts bounds the throttle's memory: past it, entries older
// than Every are dropped.
const maxPurgeAccounts = 100000

// LoggedIn starts the purge of account's Maildir (opened with open) if
// the rules name any folder and it was not purged within Every.
func (p *Purger) LoggedIn(account string, open func() (*Maildir, error)) {
	if p == nil || p.Rules == nil {
		return
	}
	rules := p.Rules()
	if len(rules) == 0 {
		return
	}
	every := p.Every
	if every <= 0 {
		every = time.Hour
	}
	now := time.Now()
	p.mu.Lock()
	if p.closed || now.Sub(p.last[account]) < every {
		p.mu.Unlock()
		return
	}
	if p.last == nil {
		p.last = map[string]time.Time{}
	}
	if len(p.last) >= maxPurgeAccounts {
		for a, t := range p.last {
			if now.Sub(t) >= every {
				delete(p.last, a)
			}
		}
	}
	p.last[account] = now
	p.wg.Add(1)
	p.mu.Unlock()
	log := p.Logger
	if log == nil {
		log = slog.Default()
	}
	go func() {
		defer p.wg.Done()
		md, err := open()
		if err != nil {
			log.Warn("maildir: retention purge: open", "user", account, "err", err)
			return
		}
		for _, r := range rules {
			f, err := md.Folder(r.Folder)
			if err != nil {
				continue // the account has no such folder
			}
			n, err := f.PurgeOlder(now.Add(-r.Age))
			if err != nil {
				log.Warn("maildir: retention purge", "user", account, "folder", r.Folder, "err", err)
			}
			if n > 0 {
				log.Info("maildir: retention purge", "user", account, "folder", r.Folder, "deleted", n, "older_than", r.Age.String())
			}
		}
	}()
}

// Close stops new purges and waits for those running.
func (p *Purger) Close() {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.wg.Wait()
}
