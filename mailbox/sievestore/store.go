// Package sievestore keeps an account's Sieve scripts on disk in the layout
// of Dovecot's Pigeonhole, so that an existing Dovecot user's scripts keep
// working and a Dovecot installation can read what Postern stores:
//
//	HOME/sieve/NAME.sieve   one file per script
//	HOME/sieve/tmp/         temporary files of uploads in progress
//	HOME/.dovecot.sieve     the active script: a symlink to sieve/NAME.sieve
//
// No .dovecot.sieve (or a symlink that does not point into sieve/) means no
// script is active. A .dovecot.sieve that is a regular file is a script the
// user wrote by hand: delivery runs it, it is not listed, and the first
// SetActive moves it into the storage as "dovecot.orig" before replacing it
// with a symlink, as Pigeonhole does, so nothing the user wrote is lost.
//
// Every change is atomic: a script is written to a temporary file, fsync'd,
// renamed over its name and the directory fsync'd, and the active link is
// made under a temporary name and renamed over .dovecot.sieve, so a crash
// leaves the old script or the new one, whole, and the old active link or
// the new one. Changes to one storage are serialized by a lock on its
// directory, so two sessions cannot together exceed the quota.
//
// The package owns the names and the files; RFC 5804 (ManageSieve,
// mailbox/managesieve) is what exposes it to users, and the delivery agent
// reads the active script with Active.
package sievestore

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// File names inside the home directory (Pigeonhole's defaults).
const (
	storageDirName = "sieve"
	tmpDirName     = "tmp"
	activeLinkName = ".dovecot.sieve"
	binarySuffix   = ".svbin" // Pigeonhole's compiled script beside the source
	// LegacyName is the script a hand-made .dovecot.sieve file becomes when
	// it is moved into the storage (Pigeonhole's "dovecot.orig").
	LegacyName = "dovecot.orig"
)

// maxReadSize bounds what Get and Active read of a script whatever the
// limits say, so a huge file put there by other means cannot exhaust memory.
const maxReadSize = 16 << 20

// Errors the store returns; test them with errors.Is. The ManageSieve
// server turns them into RFC 5804 response codes (in parentheses).
var (
	ErrNotFound       = errors.New("no such script")                    // NONEXISTENT
	ErrExists         = errors.New("a script of that name exists")      // ALREADYEXISTS
	ErrActive         = errors.New("the script is active")              // ACTIVE
	ErrQuota          = errors.New("quota exceeded")                    // QUOTA
	ErrTooManyScripts = fmt.Errorf("%w: too many scripts", ErrQuota)    // QUOTA/MAXSCRIPTS
	ErrScriptTooLarge = fmt.Errorf("%w: script too large", ErrQuota)    // QUOTA/MAXSIZE
	ErrStorageFull    = fmt.Errorf("%w: script storage full", ErrQuota) // QUOTA
)

// Owner is who the files belong to. A process running as root makes new
// files and directories theirs (as mailbox/maildir does); any other
// process leaves ownership to the kernel.
type Owner struct {
	UID, GID int
}

// Limits bound one account's storage; zero means no limit.
type Limits struct {
	MaxScripts    int   // number of scripts
	MaxScriptSize int64 // octets of one script
	MaxStorage    int64 // octets of all scripts together
}

// Script is one stored script as List shows it.
type Script struct {
	Name   string
	Active bool
	Size   int64
}

// Store is one account's scripts. It holds no open files; the zero value is
// not usable, Open makes one.
type Store struct {
	home  string
	dir   string // home/sieve
	owner Owner
	lim   Limits
}

// Open returns the store of the account whose home directory is home. It
// touches nothing on disk: the storage directory is made by the first
// change.
func Open(home string, owner Owner, lim Limits) *Store {
	home = filepath.Clean(home)
	return &Store{home: home, dir: filepath.Join(home, storageDirName), owner: owner, lim: lim}
}

// Dir is the storage directory, HOME/sieve.
func (s *Store) Dir() string { return s.dir }

// Limits returns the limits the store enforces.
func (s *Store) Limits() Limits { return s.lim }

func (s *Store) scriptPath(name string) string { return filepath.Join(s.dir, name+scriptSuffix) }
func (s *Store) binaryPath(name string) string { return filepath.Join(s.dir, name+binarySuffix) }
func (s *Store) linkPath() string              { return filepath.Join(s.home, activeLinkName) }

func (s *Store) errorf(op string, err error) error {
	return fmt.Errorf("sievestore %s: %s: %w", s.home, op, err)
}

// List returns the scripts sorted by name, the active one marked.
func (s *Store) List() ([]Script, error) {
	scripts, err := s.scan()
	if err != nil {
		return nil, s.errorf("list", err)
	}
	active, _, err := s.activeState()
	if err != nil {
		return nil, s.errorf("list", err)
	}
	for i := range scripts {
		scripts[i].Active = scripts[i].Name == active
	}
	return scripts, nil
}

// scan reads the storage directory; a missing one holds no scripts.
func (s *Store) scan() ([]Script, error) {
	entries, err := os.ReadDir(s.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var scripts []Script
	for _, e := range entries {
		name, ok := nameOfFile(e.Name())
		if !ok || !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted while we listed
		}
		if err != nil {
			return nil, err
		}
		scripts = append(scripts, Script{Name: name, Size: info.Size()})
	}
	slices.SortFunc(scripts, func(a, b Script) int { return strings.Compare(a.Name, b.Name) })
	return scripts, nil
}

// Get returns the script's source.
func (s *Store) Get(name string) ([]byte, error) {
	if err := storableName(name); err != nil {
		return nil, err
	}
	src, err := s.readFile(s.scriptPath(name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("script %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return nil, s.errorf("get "+name, err)
	}
	return src, nil
}

// readFile reads a regular file without following a symlink in its last
// component, up to the read bound: scripts live in a directory the user
// owns, and a process running as root must not be led to read other files
// through it.
func (s *Store) readFile(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, syscall.ELOOP) {
		return nil, fmt.Errorf("%s: is a symbolic link: %w", path, fs.ErrNotExist)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file: %w", path, fs.ErrNotExist)
	}
	limit := max(int64(maxReadSize), s.lim.MaxScriptSize)
	if info.Size() > limit {
		return nil, fmt.Errorf("%s: %d octets, more than the %d this server reads", path, info.Size(), limit)
	}
	src, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(src)) > limit {
		return nil, fmt.Errorf("%s: grew past the %d octets this server reads", path, limit)
	}
	return src, nil
}

// HaveSpace reports whether a script of size octets may be stored as name
// (RFC 5804 section 2.5): nil, or an error wrapping ErrTooManyScripts,
// ErrScriptTooLarge or ErrStorageFull (all of which wrap ErrQuota), or
// ErrBadName.
func (s *Store) HaveSpace(name string, size int64) error {
	if err := storableName(name); err != nil {
		return err
	}
	if size < 0 {
		return fmt.Errorf("sievestore: negative script size %d", size)
	}
	if max := s.lim.MaxScriptSize; max > 0 && size > max {
		return fmt.Errorf("%w (%d octets, at most %d are allowed)", ErrScriptTooLarge, size, max)
	}
	if s.lim.MaxScripts <= 0 && s.lim.MaxStorage <= 0 {
		return nil
	}
	scripts, err := s.scan()
	if err != nil {
		return s.errorf("quota", err)
	}
	var total, replaced int64
	exists := false
	for _, sc := range scripts {
		total += sc.Size
		if sc.Name == name {
			exists, replaced = true, sc.Size
		}
	}
	if max := s.lim.MaxScripts; max > 0 && !exists && len(scripts)+1 > max {
		return fmt.Errorf("%w (at most %d are allowed)", ErrTooManyScripts, max)
	}
	if max := s.lim.MaxStorage; max > 0 && total-replaced+size > max {
		return fmt.Errorf("%w (%d octets in use, at most %d are allowed)", ErrStorageFull, total-replaced, max)
	}
	return nil
}

// Put stores src as the script name, replacing one of that name (which,
// if active, stays active). It checks the limits first; a crash at any
// point leaves the old script or the new one, never part of either.
func (s *Store) Put(name string, src []byte) error {
	if err := storableName(name); err != nil {
		return err
	}
	unlock, err := s.lock()
	if err != nil {
		return s.errorf("put "+name, err)
	}
	defer unlock()
	if err := s.HaveSpace(name, int64(len(src))); err != nil {
		return err
	}
	if err := s.writeScript(name, src); err != nil {
		return s.errorf("put "+name, err)
	}
	return nil
}

// writeScript writes src to sieve/tmp, makes it the owner's, fsyncs it,
// renames it to sieve/NAME.sieve and fsyncs the directory. A compiled
// binary of an older version is removed so that it cannot be run.
func (s *Store) writeScript(name string, src []byte) error {
	tmp, err := os.CreateTemp(filepath.Join(s.dir, tmpDirName), "put-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a failure; a no-op once renamed
	err = s.fillTemp(tmp, src)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), s.scriptPath(name)); err != nil {
		return err
	}
	if err := os.Remove(s.binaryPath(name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return syncDir(s.dir)
}

func (s *Store) fillTemp(f *os.File, src []byte) error {
	if _, err := f.Write(src); err != nil {
		return err
	}
	if os.Geteuid() == 0 {
		if err := f.Chown(s.owner.UID, s.owner.GID); err != nil {
			return err
		}
	}
	return f.Sync()
}

// SetActive makes name the active script, or, for "", deactivates the
// active one (RFC 5804 section 2.8). The link is replaced atomically.
func (s *Store) SetActive(name string) error {
	if name != "" {
		if err := storableName(name); err != nil {
			return err
		}
	}
	unlock, err := s.lock()
	if err != nil {
		return s.errorf("setactive", err)
	}
	defer unlock()
	if name != "" {
		info, err := os.Lstat(s.scriptPath(name))
		if errors.Is(err, fs.ErrNotExist) || err == nil && !info.Mode().IsRegular() {
			return fmt.Errorf("script %q: %w", name, ErrNotFound)
		}
		if err != nil {
			return s.errorf("setactive "+name, err)
		}
	}
	if err := s.rescueLegacy(); err != nil {
		return s.errorf("setactive", err)
	}
	if name == "" {
		return s.deactivate()
	}
	if err := s.link(name); err != nil {
		return s.errorf("setactive "+name, err)
	}
	return nil
}

// deactivate removes the active link; a link that is already gone is fine.
func (s *Store) deactivate() error {
	err := os.Remove(s.linkPath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return s.errorf("deactivate", err)
	}
	if err := syncDir(s.home); err != nil {
		return s.errorf("deactivate", err)
	}
	return nil
}

// link points .dovecot.sieve at sieve/NAME.sieve (a relative target, as
// Pigeonhole writes it): a symlink under a temporary name renamed over
// the old one, so the active script is never missing in between.
func (s *Store) link(name string) error {
	tmp := filepath.Join(s.home, activeLinkName+".tmp-"+randomSuffix())
	if err := os.Symlink(filepath.Join(storageDirName, name+scriptSuffix), tmp); err != nil {
		return err
	}
	if os.Geteuid() == 0 {
		if err := os.Lchown(tmp, s.owner.UID, s.owner.GID); err != nil {
			os.Remove(tmp)
			return err
		}
	}
	if err := os.Rename(tmp, s.linkPath()); err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(s.home)
}

// rescueLegacy moves a hand-made .dovecot.sieve regular file into the
// storage before it is replaced (Pigeonhole's rescue): as LegacyName, or
// LegacyName-2, -3 ... when that name holds another script. Quota is not
// checked: the script was already the user's. Anything else there is left
// for the caller to replace.
func (s *Store) rescueLegacy() error {
	info, err := os.Lstat(s.linkPath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !info.Mode().IsRegular() {
		return nil
	}
	src, err := s.readFile(s.linkPath())
	if err != nil {
		return fmt.Errorf("rescue %s: %w", activeLinkName, err)
	}
	for i := 1; i <= 100; i++ {
		name := LegacyName
		if i > 1 {
			name = fmt.Sprintf("%s-%d", LegacyName, i)
		}
		old, err := s.readFile(s.scriptPath(name))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return s.writeScript(name, src)
		case err == nil && bytes.Equal(old, src):
			return nil // rescued before; the link was not replaced then
		}
	}
	return fmt.Errorf("rescue %s: no free name for it", activeLinkName)
}

// Delete removes a script that is not active (RFC 5804 section 2.10).
func (s *Store) Delete(name string) error {
	if err := storableName(name); err != nil {
		return err
	}
	unlock, err := s.lock()
	if err != nil {
		return s.errorf("delete "+name, err)
	}
	defer unlock()
	active, _, err := s.activeState()
	if err != nil {
		return s.errorf("delete "+name, err)
	}
	if active == name {
		return fmt.Errorf("script %q: %w", name, ErrActive)
	}
	err = os.Remove(s.scriptPath(name))
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("script %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return s.errorf("delete "+name, err)
	}
	if err := os.Remove(s.binaryPath(name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return s.errorf("delete "+name, err)
	}
	if err := syncDir(s.dir); err != nil {
		return s.errorf("delete "+name, err)
	}
	return nil
}

// Rename gives a script a new name, which must be free (RFC 5804 section
// 2.11); an active script stays active under its new name. The new name
// is made by a hard link, which fails rather than replace a script that
// appeared meanwhile.
func (s *Store) Rename(oldName, newName string) error {
	if err := storableName(oldName); err != nil {
		return err
	}
	if err := storableName(newName); err != nil {
		return err
	}
	unlock, err := s.lock()
	if err != nil {
		return s.errorf("rename "+oldName, err)
	}
	defer unlock()
	oldPath, newPath := s.scriptPath(oldName), s.scriptPath(newName)
	if info, err := os.Lstat(oldPath); errors.Is(err, fs.ErrNotExist) || err == nil && !info.Mode().IsRegular() {
		return fmt.Errorf("script %q: %w", oldName, ErrNotFound)
	}
	moved, err := linkNoReplace(oldPath, newPath)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("script %q: %w", newName, ErrExists)
		}
		return s.errorf("rename "+oldName, err)
	}
	active, _, err := s.activeState()
	if err != nil {
		return s.errorf("rename "+oldName, err)
	}
	if active == oldName {
		if err := s.link(newName); err != nil {
			return s.errorf("rename "+oldName, err)
		}
	}
	if !moved {
		if err := os.Remove(oldPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return s.errorf("rename "+oldName, err)
		}
	}
	os.Remove(s.binaryPath(oldName)) // a stale binary is harmless; best effort
	if err := syncDir(s.dir); err != nil {
		return s.errorf("rename "+oldName, err)
	}
	return nil
}

// linkNoReplace makes newPath a second name of oldPath, failing with
// fs.ErrExist when newPath exists. On a file system without hard links it
// checks and renames instead (moved), which is right as long as only
// processes holding the storage lock make scripts.
func linkNoReplace(oldPath, newPath string) (moved bool, err error) {
	err = os.Link(oldPath, newPath)
	if err == nil || errors.Is(err, fs.ErrExist) || !linkUnsupported(err) {
		return false, err
	}
	if _, err := os.Lstat(newPath); err == nil {
		return false, fs.ErrExist
	}
	return true, os.Rename(oldPath, newPath)
}

func linkUnsupported(err error) bool {
	return errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EOPNOTSUPP) || errors.Is(err, syscall.ENOSYS)
}

// Active returns the script delivery is to run: its name and source. When
// there is none it returns "", nil, nil after one lstat(2). A hand-made
// .dovecot.sieve regular file is returned with the name "" and its
// source; src is nil only when no script is active. A link that does not
// point to a script in the storage counts as none.
func (s *Store) Active() (name string, src []byte, err error) {
	name, legacy, err := s.activeState()
	switch {
	case err != nil:
		return "", nil, s.errorf("active", err)
	case legacy:
		src, err = s.readFile(s.linkPath())
	case name != "":
		src, err = s.readFile(s.scriptPath(name))
	default:
		return "", nil, nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil, nil // removed meanwhile, or a dangling link
	}
	if err != nil {
		return "", nil, s.errorf("active", err)
	}
	if src == nil {
		src = []byte{}
	}
	return name, src, nil
}

// activeState reads .dovecot.sieve: the active script's name, or legacy
// when it is a regular file of its own.
func (s *Store) activeState() (name string, legacy bool, err error) {
	info, err := os.Lstat(s.linkPath())
	if errors.Is(err, fs.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	switch {
	case info.Mode().IsRegular():
		return "", true, nil
	case info.Mode()&fs.ModeSymlink == 0:
		return "", false, nil
	}
	target, err := os.Readlink(s.linkPath())
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.EINVAL) {
		return "", false, nil // replaced meanwhile
	}
	if err != nil {
		return "", false, err
	}
	name, _ = s.nameOfLink(target)
	return name, false, nil
}

// nameOfLink returns the script an active-link target names: sieve/X.sieve
// relative to the home directory (Pigeonhole's form) or the same path
// made absolute. Other targets are not ours and name no script.
func (s *Store) nameOfLink(target string) (string, bool) {
	rel := filepath.Clean(target)
	if filepath.IsAbs(rel) {
		r, err := filepath.Rel(s.home, rel)
		if err != nil {
			return "", false
		}
		rel = r
	}
	dir, file := filepath.Split(rel)
	if dir != storageDirName+string(filepath.Separator) {
		return "", false
	}
	return nameOfFile(file)
}

// lock makes the storage directories if needed and takes an exclusive
// flock(2) on the storage directory, serializing changes by every process
// that uses this package. The returned function releases it.
func (s *Store) lock() (unlock func(), err error) {
	if err := s.makeDirs(); err != nil {
		return nil, err
	}
	d, err := os.Open(s.dir)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(d.Fd()), syscall.LOCK_EX); err != nil {
		d.Close()
		return nil, fmt.Errorf("lock %s: %w", s.dir, err)
	}
	return func() {
		syscall.Flock(int(d.Fd()), syscall.LOCK_UN)
		d.Close()
	}, nil
}

// makeDirs makes HOME/sieve and HOME/sieve/tmp, owned by the owner. The
// home directory itself must exist: making it is the account tools' job.
func (s *Store) makeDirs() error {
	if info, err := os.Stat(s.home); err != nil {
		return fmt.Errorf("home directory: %w", err)
	} else if !info.IsDir() {
		return fmt.Errorf("home directory %s is not a directory", s.home)
	}
	for _, dir := range []string{s.dir, filepath.Join(s.dir, tmpDirName)} {
		err := os.Mkdir(dir, 0o700)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return err
		}
		if os.Geteuid() == 0 {
			if err := os.Lchown(dir, s.owner.UID, s.owner.GID); err != nil {
				return err
			}
		}
		if err := syncDir(filepath.Dir(dir)); err != nil {
			return err
		}
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func randomSuffix() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
