package maildir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// What an administration tool (postern mailbox, doveadm's counterpart)
// needs beyond what the servers use: a message's save date, and giving
// the account the state files a root process wrote for it.

// SaveDate is when the message was saved into this folder as Dovecot's
// Maildir storage and Courier's IMAP_EMPTYTRASH read it: the file's
// status change time (ctime). Delivery, COPY and MOVE create a new link,
// which sets it, while the internal date (mtime) stays the message's
// arrival. A flag change renames the file and sets ctime too, as it does
// for Dovecot and Courier. ErrNoMessage when the message is gone.
func (f *Folder) SaveDate(key string) (time.Time, error) {
	var ctime time.Time
	err := f.withFile(key, func(name string) error {
		fi, err := os.Lstat(filepath.Join(f.path, name))
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("maildir %s: %s: no status change time", f.path, name)
		}
		ctime = time.Unix(st.Ctim.Unix())
		return nil
	})
	return ctime, err
}

// GiveState hands the account (Options.Reader, set by OpenAs for a root
// process) the state files this package keeps in the root and in the
// named folders ("INBOX" or Maildir++ names; none: every folder) that
// root owns: the UID database and its lock, the keyword files, the
// subscriptions and maildirsize. Messages and folders are made as the
// account's already (Deliver, CreateFolder); these files are written in
// place or renamed over by code shared with the servers, which run as the
// mail user, and a root-owned one would lock the account's own processes
// (Courier's imapd, maildrop, a server with mailuser) out of its mailbox.
// Files of any other owner are left alone. Without a Reader it does
// nothing: the files are the process's own.
func (m *Maildir) GiveState(folders ...string) error {
	if m.reader == nil {
		return nil
	}
	if len(folders) == 0 {
		all, err := m.Folders()
		if err != nil {
			return err
		}
		folders = all
	}
	paths := []string{
		filepath.Join(m.root, subscribedName),
		filepath.Join(m.root, subscribedLock),
		filepath.Join(m.root, maildirsizeName),
	}
	for _, name := range folders {
		canon, err := canonicalName(name)
		if err != nil {
			return fmt.Errorf("maildir %s: give state: %w", m.root, err)
		}
		dir := m.folderDir(canon)
		paths = append(paths,
			filepath.Join(dir, uidDBName),
			filepath.Join(dir, uidLockName),
			filepath.Join(dir, keywordsName),
			filepath.Join(dir, courierKwDir))
		kw, err := os.ReadDir(filepath.Join(dir, courierKwDir))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("maildir %s: give state: %w", m.root, err)
		}
		for _, e := range kw {
			paths = append(paths, filepath.Join(dir, courierKwDir, e.Name()))
		}
	}
	for _, p := range paths {
		if err := m.giveRootOwned(p); err != nil {
			return fmt.Errorf("maildir %s: give state: %w", m.root, err)
		}
	}
	return nil
}

// giveRootOwned gives path to the Reader when root owns it; a missing
// path is no error.
func (m *Maildir) giveRootOwned(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || st.Uid != 0 {
		return nil
	}
	return os.Lchown(path, m.reader.UID, m.reader.GID)
}
