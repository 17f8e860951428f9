package pop3

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"postern/mailbox/maildir"
)

// dropMessage is one message of the maildrop as the session sees it. The
// list is fixed at login (RFC 1939 section 4: message numbers do not change
// during a session).
type dropMessage struct {
	key      string
	flags    string
	keywords []string
	size     int64 // POP3 size: CRLF line endings, as RETR sends it
	uidl     string
	deleted  bool
}

// maildrop is the user's INBOX for one session.
type maildrop struct {
	folder   *maildir.Folder
	messages []*dropMessage
}

// openMaildrop opens the account's INBOX, moves new/ to cur/ (as Courier's
// pop3d does at login) and gives every message its size and unique-id from
// the size list, measuring and numbering messages the list does not know.
func openMaildrop(ctx context.Context, root string, reader *maildir.Identity, log *slog.Logger) (*maildrop, error) {
	md, err := maildir.OpenWithOptions(root, maildir.Options{Reader: reader})
	if err != nil {
		return nil, fmt.Errorf("pop3 maildrop %s: %w", root, err)
	}
	folder, err := md.Folder(maildir.Inbox)
	if err != nil {
		return nil, fmt.Errorf("pop3 maildrop %s: %w", root, err)
	}
	snap, err := folder.Sync(true)
	if err != nil {
		return nil, fmt.Errorf("pop3 maildrop %s: sync: %w", root, err)
	}
	purgeStaleTmp(filepath.Join(folder.Path(), "tmp"), time.Now().Add(-staleTmpAge), log)
	lock, err := lockSizeList(folder.Path())
	if err != nil {
		return nil, err
	}
	defer lock.unlock()
	list, err := lock.read(time.Now())
	if err != nil {
		return nil, err
	}

	drop := &maildrop{folder: folder}
	entries := make([]sizeEntry, 0, len(snap.Messages))
	known := make([]bool, 0, len(snap.Messages))
	changed := list.version != sizeListVersion || len(list.byKey) != len(snap.Messages)
	for _, m := range snap.Messages {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("pop3 maildrop %s: %w", root, err)
		}
		base := filepath.Base(m.Name)
		e, ok := list.byKey[m.Key]
		if ok {
			if e.name != base {
				e.name = base
				changed = true
			}
		} else {
			size, utf8Head, err := measureStored(folder, m.Key)
			if errors.Is(err, maildir.ErrNoMessage) {
				continue // removed by someone else since Sync
			}
			if err != nil {
				return nil, err
			}
			e = sizeEntry{name: base, size: size, uid: list.nextUID, uidv: list.uidValidity, utf8Head: utf8Head}
			list.nextUID++
			changed = true
		}
		entries = append(entries, e)
		known = append(known, ok)
		drop.messages = append(drop.messages, &dropMessage{
			key: m.Key, flags: m.Flags, keywords: m.Keywords, size: e.size, uidl: e.uidl(),
		})
	}
	if changed {
		if err := lock.replace(list.marshal(entries)); err != nil {
			// Courier's recovery: without a saved list the new messages'
			// unique-ids would change next time and clients would fetch
			// them twice, so hide them until the list can be written
			// (usually after the user deletes something on a full disk).
			log.Error("pop3: cannot save size list; hiding new messages", "maildir", root, "err", err)
			kept := drop.messages[:0]
			for i, m := range drop.messages {
				if known[i] {
					kept = append(kept, m)
				}
			}
			drop.messages = kept
		}
	}
	return drop, nil
}

// staleTmpAge is how old a file in tmp/ must be before a login removes it:
// Courier's pop3d clears tmp/ of files older than 48 hours ("like every good
// Maildir reader"), the leftovers of deliveries that died half-way.
const staleTmpAge = 48 * time.Hour

// purgeStaleTmp removes regular files in dir last modified before cutoff.
// Failures only leave litter behind, so they are logged and ignored.
func purgeStaleTmp(dir string, cutoff time.Time, log *slog.Logger) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil || !info.ModTime().Before(cutoff) {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
			log.Warn("pop3: purge tmp", "file", filepath.Join(dir, e.Name()), "err", err)
		}
	}
}

func measureStored(folder *maildir.Folder, key string) (int64, bool, error) {
	f, err := folder.Open(key)
	if err != nil {
		return 0, false, fmt.Errorf("pop3 maildrop: open %s: %w", key, err)
	}
	defer f.Close()
	size, utf8Head, err := measureMessage(f)
	if err != nil {
		return 0, false, fmt.Errorf("pop3 maildrop: measure %s: %w", key, err)
	}
	return size, utf8Head, nil
}

// totals counts the messages not marked deleted and their octets (STAT).
func (d *maildrop) totals() (count int, octets int64) {
	for _, m := range d.messages {
		if !m.deleted {
			count++
			octets += m.size
		}
	}
	return count, octets
}

// markSeen adds the Seen flag after a RETR, as Courier does. Failure is not
// the client's problem: the message was delivered.
func (d *maildrop) markSeen(m *dropMessage) error {
	if strings.IndexByte(m.flags, maildir.FlagSeen) >= 0 {
		return nil
	}
	flags := addFlag(m.flags, maildir.FlagSeen)
	if err := d.folder.SetFlags(m.key, flags, m.keywords); err != nil {
		return fmt.Errorf("pop3 maildrop: mark %s seen: %w", m.key, err)
	}
	m.flags = flags
	return nil
}

// addFlag inserts flag into a sorted flag string.
func addFlag(flags string, flag byte) string {
	i := 0
	for i < len(flags) && flags[i] < flag {
		i++
	}
	if i < len(flags) && flags[i] == flag {
		return flags
	}
	return flags[:i] + string(flag) + flags[i:]
}

// expunge is the UPDATE state (RFC 1939 section 6): remove every message
// marked deleted. A message already gone (another session removed it) is
// not an error. It returns how many were removed and the first real error.
func (d *maildrop) expunge() (removed int, err error) {
	for _, m := range d.messages {
		if !m.deleted {
			continue
		}
		rerr := d.folder.Remove(m.key)
		switch {
		case rerr == nil:
			removed++
		case errors.Is(rerr, maildir.ErrNoMessage):
		case err == nil:
			err = fmt.Errorf("pop3 maildrop: remove %s: %w", m.key, rerr)
		}
	}
	return removed, err
}
