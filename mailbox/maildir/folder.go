package maildir

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// maxFolderNameLen keeps ".NAME" within one directory entry (255 bytes on
// every common filesystem) with room to spare.
const maxFolderNameLen = 250

// ValidFolderName reports whether name can be a Maildir++ folder: the whole
// dotted name becomes the single directory ".NAME" under the root, so it
// must not contain "/" or NUL, no component may be empty ("", "..", "A..B",
// ".A", "A."), no control characters (< 0x20, 0x7f), and the first
// component may not be "INBOX" in any case (INBOX is the root itself;
// ".INBOX.x" would shadow the IMAP name "INBOX.x"). Names are stored as
// given: IMAP passes modified UTF-7 and Courier keeps it that way on disk.
func ValidFolderName(name string) error {
	bad := func(why string) error {
		return fmt.Errorf("folder %q: %s: %w", name, why, ErrBadFolderName)
	}
	if name == "" {
		return bad("empty")
	}
	if len(name) > maxFolderNameLen {
		return bad("too long")
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '/':
			return bad(`contains "/"`)
		case c == 0:
			return bad("contains NUL")
		case c < 0x20 || c == 0x7f:
			return bad("contains a control character")
		}
	}
	parts := strings.Split(name, ".")
	for _, p := range parts {
		if p == "" {
			return bad("empty component")
		}
	}
	if strings.EqualFold(parts[0], Inbox) {
		return bad("INBOX is the root folder")
	}
	return nil
}

// folderDir is the directory of a valid Maildir++ name.
func (m *Maildir) folderDir(name string) string {
	if name == "" {
		return m.root
	}
	return filepath.Join(m.root, "."+name)
}

// Folders lists the folders: "INBOX" first, then the Maildir++ names
// sorted. A directory counts as a folder when its name is valid and it has
// a cur/ subdirectory (what Courier's own listing checks).
func (m *Maildir) Folders() ([]string, error) {
	entries, err := os.ReadDir(m.root)
	if err != nil {
		return nil, fmt.Errorf("maildir %s: folders: %w", m.root, err)
	}
	var names []string
	for _, e := range entries {
		n := e.Name()
		if len(n) < 2 || n[0] != '.' {
			continue
		}
		name := n[1:]
		if ValidFolderName(name) != nil {
			continue
		}
		if st, err := os.Stat(filepath.Join(m.root, n, "cur")); err != nil || !st.IsDir() {
			continue
		}
		names = append(names, name)
	}
	slices.Sort(names)
	return append([]string{Inbox}, names...), nil
}

// canonicalName maps "INBOX" (any case) to "" and validates other names.
func canonicalName(name string) (string, error) {
	if strings.EqualFold(name, Inbox) {
		return "", nil
	}
	if err := ValidFolderName(name); err != nil {
		return "", err
	}
	return name, nil
}

// Folder returns the named folder: "INBOX" in any case is the root.
// ErrNoFolder when the directory or its tmp/new/cur is absent.
func (m *Maildir) Folder(name string) (*Folder, error) {
	canon, err := canonicalName(name)
	if err != nil {
		return nil, fmt.Errorf("maildir %s: %w", m.root, err)
	}
	dir := m.folderDir(canon)
	if canon != "" {
		if err := checkMaildirDirs(dir); err != nil {
			if errors.Is(err, ErrNotMaildir) {
				return nil, fmt.Errorf("maildir %s: folder %q: %w", m.root, name, ErrNoFolder)
			}
			return nil, err
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if f, ok := m.folders[canon]; ok {
		return f, nil
	}
	if m.reader != nil {
		for _, sub := range []string{dir, filepath.Join(dir, "cur"), filepath.Join(dir, "new")} {
			if err := m.reader.reachesDir(sub, 5); err != nil {
				return nil, fmt.Errorf("maildir %s: folder %q: %w", m.root, name, err)
			}
		}
	}
	f := &Folder{md: m, name: canon, path: dir}
	m.folders[canon] = f
	return f, nil
}

// forget drops cached Folder objects for names that were deleted or renamed.
func (m *Maildir) forget(names ...string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, n := range names {
		delete(m.folders, n)
	}
}

// CreateFolder makes a Maildir++ folder as maildirmake -f does: .NAME with
// tmp/, new/, cur/ and an empty maildirfolder file. The directory is built
// under tmp/ and renamed into place, so other processes never see a half
// made folder. ErrFolderExists when it is already there.
func (m *Maildir) CreateFolder(name string) error {
	if strings.EqualFold(name, Inbox) {
		return fmt.Errorf("maildir %s: create %q: %w", m.root, name, ErrFolderExists)
	}
	if err := ValidFolderName(name); err != nil {
		return fmt.Errorf("maildir %s: create: %w", m.root, err)
	}
	dir := m.folderDir(name)
	if _, err := os.Lstat(dir); err == nil {
		return fmt.Errorf("maildir %s: create %q: %w", m.root, name, ErrFolderExists)
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	build := filepath.Join(m.root, "tmp", ".newfolder."+hex.EncodeToString(rnd[:]))
	if err := Make(build); err != nil {
		return fmt.Errorf("maildir %s: create %q: %w", m.root, name, err)
	}
	if err := os.WriteFile(filepath.Join(build, maildirfolderName), nil, 0o600); err != nil {
		os.RemoveAll(build)
		return fmt.Errorf("maildir %s: create %q: %w", m.root, name, err)
	}
	if m.reader != nil {
		// Root making a folder for the account (OpenAs): the account's
		// own, as maildirmake -f run by the user makes it, or the
		// reader check would refuse the folder it was just given.
		for _, p := range []string{build, filepath.Join(build, "tmp"), filepath.Join(build, "new"), filepath.Join(build, "cur"), filepath.Join(build, maildirfolderName)} {
			if err := os.Lchown(p, m.reader.UID, m.reader.GID); err != nil {
				os.RemoveAll(build)
				return fmt.Errorf("maildir %s: create %q: %w", m.root, name, err)
			}
		}
	}
	// rename(2) onto an existing non-empty directory fails, so a racing
	// creator makes one of us see ErrFolderExists.
	if err := os.Rename(build, dir); err != nil {
		os.RemoveAll(build)
		if errors.Is(err, fs.ErrExist) || errors.Is(err, errNotEmpty) {
			return fmt.Errorf("maildir %s: create %q: %w", m.root, name, ErrFolderExists)
		}
		return fmt.Errorf("maildir %s: create %q: %w", m.root, name, err)
	}
	if err := syncDir(m.root); err != nil {
		return fmt.Errorf("maildir %s: create %q: %w", m.root, name, err)
	}
	return nil
}

// DeleteFolder removes one folder directory (its messages and state files)
// but not its children ("A.x" survives deleting "A"). The directory is
// first renamed away under tmp/ so that it disappears atomically, then
// removed; the quota gets a negative line for the messages it held.
func (m *Maildir) DeleteFolder(name string) error {
	if strings.EqualFold(name, Inbox) {
		return fmt.Errorf("maildir %s: delete: %w", m.root, ErrInboxProtected)
	}
	if err := ValidFolderName(name); err != nil {
		return fmt.Errorf("maildir %s: delete: %w", m.root, err)
	}
	dir := m.folderDir(name)
	if _, err := os.Lstat(dir); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("maildir %s: delete %q: %w", m.root, name, ErrNoFolder)
		}
		return fmt.Errorf("maildir %s: delete %q: %w", m.root, name, err)
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	grave := filepath.Join(m.root, "tmp", ".deleted."+hex.EncodeToString(rnd[:]))
	if err := os.Rename(dir, grave); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("maildir %s: delete %q: %w", m.root, name, ErrNoFolder)
		}
		return fmt.Errorf("maildir %s: delete %q: %w", m.root, name, err)
	}
	m.forget(name)
	bytes, count := sumMessages(grave)
	if err := os.RemoveAll(grave); err != nil {
		return fmt.Errorf("maildir %s: delete %q: %w", m.root, name, err)
	}
	if name != trashFolder && (bytes != 0 || count != 0) {
		m.addQuotaUsage(-bytes, -count)
	}
	return syncDir(m.root)
}

// RenameFolder renames a folder and its children: "A" → "C" also moves
// "A.x" → "C.x", as IMAP RENAME requires (RFC 3501 6.3.5). INBOX cannot be
// renamed here (ErrInboxProtected); the IMAP layer implements RENAME INBOX
// by moving messages. All targets are checked before anything moves.
func (m *Maildir) RenameFolder(from, to string) error {
	if strings.EqualFold(from, Inbox) || strings.EqualFold(to, Inbox) {
		return fmt.Errorf("maildir %s: rename: %w", m.root, ErrInboxProtected)
	}
	if err := ValidFolderName(from); err != nil {
		return fmt.Errorf("maildir %s: rename: %w", m.root, err)
	}
	if err := ValidFolderName(to); err != nil {
		return fmt.Errorf("maildir %s: rename: %w", m.root, err)
	}
	if from == to {
		return fmt.Errorf("maildir %s: rename %q: %w", m.root, to, ErrFolderExists)
	}
	if _, err := os.Lstat(m.folderDir(from)); err != nil {
		return fmt.Errorf("maildir %s: rename %q: %w", m.root, from, ErrNoFolder)
	}
	entries, err := os.ReadDir(m.root)
	if err != nil {
		return fmt.Errorf("maildir %s: rename: %w", m.root, err)
	}
	type move struct{ from, to string }
	var moves []move
	for _, e := range entries {
		n := e.Name()
		if len(n) < 2 || n[0] != '.' || !e.IsDir() {
			continue
		}
		old := n[1:]
		if old != from && !strings.HasPrefix(old, from+".") {
			continue
		}
		newName := to + old[len(from):]
		if err := ValidFolderName(newName); err != nil {
			return fmt.Errorf("maildir %s: rename: %w", m.root, err)
		}
		if _, err := os.Lstat(m.folderDir(newName)); err == nil {
			return fmt.Errorf("maildir %s: rename to %q: %w", m.root, newName, ErrFolderExists)
		}
		moves = append(moves, move{old, newName})
	}
	for _, mv := range moves {
		if err := os.Rename(m.folderDir(mv.from), m.folderDir(mv.to)); err != nil {
			return fmt.Errorf("maildir %s: rename %q to %q: %w", m.root, mv.from, mv.to, err)
		}
		m.forget(mv.from, mv.to)
	}
	return syncDir(m.root)
}

var errNotEmpty = syscall.ENOTEMPTY
