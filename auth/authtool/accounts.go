package authtool

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"postern/auth/passwd"
	"postern/auth/userdb"
	"postern/mailbox/maildir"
)

// Accounts edits the userdb of one configuration directory: the functions
// behind "postern user" and the web admin's account pages, so both make the
// same change the same way (edit lock, atomic rewrite, recompile).
type Accounts struct {
	Paths Paths
}

// NewAccounts returns the account editor for configDir.
func NewAccounts(configDir string) *Accounts { return &Accounts{Paths: PathsFor(configDir)} }

// ErrNoAccount is returned (wrapped) for a name the source does not hold.
var ErrNoAccount = errors.New("no such account")

// ErrExists is returned (wrapped) by Add for a name already in the source.
var ErrExists = errors.New("already exists")

// NewAccount is what Add needs. The zero values are "postern user add"'s
// defaults: uid and gid of this process (UID and GID are used only when
// SetIDs is true), home DATADIR/mail/DOMAIN/LOCAL, the Maildir HOME/Maildir,
// bcrypt, no quota.
type NewAccount struct {
	Name       string
	Password   string // required unless NoPassword
	NoPassword bool
	Home       string
	Maildir    string // relative paths are under Home
	SetIDs     bool
	UID, GID   int
	Quota      string // Maildir++ quota, "10000000S,1000C"
	Scheme     string // passwd scheme; "" is bcrypt
	NoMaildir  bool   // do not create the Maildir
}

// Add creates an account and its Maildir, and returns its home directory.
func (a *Accounts) Add(n NewAccount) (home string, err error) {
	name := n.Name
	uid, gid := os.Getuid(), os.Getgid()
	if n.SetIDs {
		uid, gid = n.UID, n.GID
	}
	if uid < 0 || gid < 0 {
		return "", errors.New("uid and gid must not be negative")
	}
	if n.NoPassword && n.Password != "" {
		return "", errors.New("a password and no password contradict each other")
	}
	fields := map[string]string{
		userdb.FieldUID: strconv.Itoa(uid),
		userdb.FieldGID: strconv.Itoa(gid),
	}
	home = n.Home
	if home == "" {
		dataDir, err := DataDir(a.Paths.ConfigDir)
		if err != nil {
			return "", err
		}
		if home, err = defaultHome(dataDir, name); err != nil {
			return "", err
		}
	}
	absHome, err := filepath.Abs(home)
	if err != nil {
		return "", err
	}
	fields[userdb.FieldHome] = absHome
	if n.Maildir != "" {
		fields[userdb.FieldMail] = n.Maildir
	}
	if n.Quota != "" {
		fields[userdb.FieldQuota] = n.Quota
	}
	if !n.NoPassword {
		if n.Password == "" {
			return "", errors.New("empty password")
		}
		scheme := n.Scheme
		if scheme == "" {
			scheme = passwd.SchemeBcrypt
		}
		hash, err := passwd.Hash(n.Password, scheme)
		if err != nil {
			return "", err
		}
		fields[userdb.FieldSystemPW] = hash
	}
	entry := userdb.Entry{Name: name, Fields: fields}
	line, err := entry.Format()
	if err != nil {
		return "", fmt.Errorf("account %q: %w", name, err)
	}
	// The line must also read back: Format and the parser agree on rules.
	if _, _, err := userdb.ParseLine(line); err != nil {
		return "", fmt.Errorf("account %q: %w", name, err)
	}

	unlock, err := lockEdits(a.Paths)
	if err != nil {
		return "", err
	}
	defer unlock()
	entries, err := a.loadAll()
	if err != nil {
		return "", err
	}
	if e := find(entries, name); e != nil {
		return "", fmt.Errorf("%s %w (%s)", name, ErrExists, e.Location())
	}
	target, err := a.editTarget()
	if err != nil {
		return "", err
	}
	if !n.NoMaildir {
		maildirPath := filepath.Join(absHome, "Maildir")
		if m := n.Maildir; m != "" {
			maildirPath = m
			if !filepath.IsAbs(m) {
				maildirPath = filepath.Join(absHome, m)
			}
		}
		if err := makeHomeAndMaildir(absHome, maildirPath, uid, gid); err != nil {
			return "", err
		}
	}
	if err := a.rewrite(target, func(lines []string) ([]string, error) {
		return append(lines, line), nil
	}); err != nil {
		return "", err
	}
	return absHome, nil
}

// SetPassword sets name's systempw to a hash of password in scheme (""
// is bcrypt). It returns the per-service password fields the account also
// has, which still win for their service.
func (a *Accounts) SetPassword(name, password, scheme string) (others []string, err error) {
	if password == "" {
		return nil, errors.New("empty password")
	}
	if scheme == "" {
		scheme = passwd.SchemeBcrypt
	}
	hash, err := passwd.Hash(password, scheme)
	if err != nil {
		return nil, err
	}
	err = a.Change(name, func(e *userdb.Entry) error {
		e.Fields[userdb.FieldSystemPW] = hash
		for k := range e.Fields {
			if k != userdb.FieldSystemPW && strings.HasSuffix(k, userdb.PasswordFieldSuffix) {
				others = append(others, k)
			}
		}
		return nil
	})
	sort.Strings(others)
	return others, err
}

// SetQuota sets name's Maildir++ quota ("10000000S,1000C"); "" removes it.
func (a *Accounts) SetQuota(name, quota string) error {
	return a.Change(name, func(e *userdb.Entry) error {
		if quota == "" {
			delete(e.Fields, userdb.FieldQuota)
		} else {
			e.Fields[userdb.FieldQuota] = quota
		}
		return nil
	})
}

// Services an account's options can switch off ("disableimap=1"), as
// Courier's authlib reads them.
var Services = []string{"imap", "pop3", "smtp", "webmail"}

// SetDisabled switches services on or off for name through its options
// field ("disable<service>=1"), keeping its other options; services not in
// disabled are left as they are.
func (a *Accounts) SetDisabled(name string, disabled map[string]bool) error {
	for svc := range disabled {
		if !slices.Contains(Services, svc) {
			return fmt.Errorf("unknown service %q", svc)
		}
	}
	return a.Change(name, func(e *userdb.Entry) error {
		opts, err := userdb.ParseOptions(e.Fields[userdb.FieldOptions])
		if err != nil {
			return err
		}
		for svc, off := range disabled {
			if off {
				opts["disable"+svc] = "1"
			} else {
				delete(opts, "disable"+svc)
			}
		}
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(opts)) {
			parts = append(parts, k+"="+opts[k])
		}
		if len(parts) == 0 {
			delete(e.Fields, userdb.FieldOptions)
		} else {
			e.Fields[userdb.FieldOptions] = strings.Join(parts, ",")
		}
		return nil
	})
}

// Delete removes name from the userdb and returns its entry as it was.
// With removeMail, its Maildir goes too (and its home when that is then
// empty); the Maildir is removed only when it is one (it holds cur/), so a
// home or mail field pointing somewhere odd never costs other files.
func (a *Accounts) Delete(name string, removeMail bool) (*userdb.Entry, error) {
	var gone userdb.Entry
	err := a.change(name, func(e *userdb.Entry) (string, error) {
		gone = *e
		return "", nil
	})
	if err != nil || !removeMail {
		return &gone, err
	}
	home := gone.Fields[userdb.FieldHome]
	md := gone.Fields[userdb.FieldMail]
	switch {
	case md == "" && home != "":
		md = filepath.Join(home, "Maildir")
	case md != "" && !filepath.IsAbs(md) && home != "":
		md = filepath.Join(home, md)
	}
	if !filepath.IsAbs(md) || filepath.Clean(md) == "/" {
		return &gone, fmt.Errorf("%s deleted, but its Maildir %q is not an absolute path: left alone", name, md)
	}
	md = filepath.Clean(md)
	if st, err := os.Stat(filepath.Join(md, "cur")); err != nil || !st.IsDir() {
		return &gone, fmt.Errorf("%s deleted, but %s does not look like a Maildir (no cur/): left alone", name, md)
	}
	if err := os.RemoveAll(md); err != nil {
		return &gone, fmt.Errorf("%s deleted, but removing its Maildir: %w", name, err)
	}
	if home != "" && filepath.IsAbs(home) && filepath.Clean(home) != "/" {
		os.Remove(home) // only when empty
	}
	return &gone, nil
}

// List returns the accounts of the source, in source order.
func (a *Accounts) List() ([]userdb.Entry, error) { return a.loadAll() }

// Get returns name's entry.
func (a *Accounts) Get(name string) (*userdb.Entry, error) {
	entries, err := a.loadAll()
	if err != nil {
		return nil, err
	}
	e := find(entries, name)
	if e == nil {
		return nil, fmt.Errorf("%w %q", ErrNoAccount, name)
	}
	return e, nil
}

// Change edits name's fields with edit and writes the entry back.
func (a *Accounts) Change(name string, edit func(e *userdb.Entry) error) error {
	return a.change(name, func(e *userdb.Entry) (string, error) {
		if err := edit(e); err != nil {
			return "", err
		}
		line, err := e.Format()
		if err != nil {
			return "", err
		}
		if _, _, err := userdb.ParseLine(line); err != nil {
			return "", err
		}
		return line, nil
	})
}

// editTarget says which file is edited: the source itself when it is a
// file (created if missing), or OwnFileName inside it when it is a
// directory.
func (a *Accounts) editTarget() (string, error) {
	st, err := os.Stat(a.Paths.Source)
	switch {
	case err == nil && st.IsDir():
		return filepath.Join(a.Paths.Source, OwnFileName), nil
	case err == nil:
		return a.Paths.Source, nil
	case errors.Is(err, os.ErrNotExist):
		return a.Paths.Source, nil
	default:
		return "", err
	}
}

// loadAll reads the whole source (empty if it does not exist yet).
func (a *Accounts) loadAll() ([]userdb.Entry, error) {
	if _, err := os.Stat(a.Paths.Source); errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return userdb.LoadSource(a.Paths.Source)
}

func find(entries []userdb.Entry, name string) *userdb.Entry {
	for i := range entries {
		if entries[i].Name == name {
			return &entries[i]
		}
	}
	return nil
}

// editable refuses to change an entry that lives outside the file we edit.
func editable(e *userdb.Entry, target string) error {
	if filepath.Clean(e.File) != filepath.Clean(target) {
		return fmt.Errorf("%s is defined at %s, not in %s which postern user manages; edit that file by hand (then run postern makeuserdb) or move the line into %s", e.Name, e.Location(), target, target)
	}
	return nil
}

// rewrite changes the target file under the edit lock: change receives its
// lines (without newlines) and returns the new ones. Then the database is
// recompiled.
func (a *Accounts) rewrite(target string, change func(lines []string) ([]string, error)) error {
	var lines []string
	data, err := os.ReadFile(target)
	switch {
	case err == nil:
		text := strings.TrimSuffix(string(data), "\n")
		if text != "" {
			lines = strings.Split(text, "\n")
		}
	case errors.Is(err, os.ErrNotExist):
	default:
		return err
	}
	lines, err = change(lines)
	if err != nil {
		return err
	}
	out := strings.Join(lines, "\n")
	if out != "" {
		out += "\n"
	}
	if err := writeFileAtomic(target, []byte(out)); err != nil {
		return err
	}
	if err := userdb.Compile(a.Paths.Source, a.Paths.DB); err != nil {
		return fmt.Errorf("%s changed, but the recompile failed: %w", target, err)
	}
	return nil
}

// change replaces (or, when change returns "", removes) the line of
// name, which must live in the file postern user manages.
func (a *Accounts) change(name string, change func(e *userdb.Entry) (string, error)) error {
	unlock, err := lockEdits(a.Paths)
	if err != nil {
		return err
	}
	defer unlock()
	entries, err := a.loadAll()
	if err != nil {
		return err
	}
	e := find(entries, name)
	if e == nil {
		return fmt.Errorf("%w %q", ErrNoAccount, name)
	}
	target, err := a.editTarget()
	if err != nil {
		return err
	}
	if err := editable(e, target); err != nil {
		return err
	}
	newLine, err := change(e)
	if err != nil {
		return err
	}
	return a.rewrite(target, func(lines []string) ([]string, error) {
		i := e.Line - 1
		if i < 0 || i >= len(lines) {
			return nil, fmt.Errorf("%s changed under us; try again", target)
		}
		if newLine == "" {
			return append(lines[:i], lines[i+1:]...), nil
		}
		lines[i] = newLine
		return lines, nil
	})
}

// makeHomeAndMaildir creates the home directory and the Maildir, and when
// running as root hands them to the account's uid and gid.
func makeHomeAndMaildir(home, maildirPath string, uid, gid int) error {
	_, statErr := os.Stat(home)
	newHome := errors.Is(statErr, os.ErrNotExist)
	if err := os.MkdirAll(home, 0o700); err != nil {
		return fmt.Errorf("home %s: %w", home, err)
	}
	if err := maildir.Make(maildirPath); err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return nil
	}
	var paths []string
	if newHome {
		paths = append(paths, home)
	}
	paths = append(paths, maildirPath)
	for _, sub := range []string{"tmp", "new", "cur"} {
		paths = append(paths, filepath.Join(maildirPath, sub))
	}
	for _, p := range paths {
		if err := os.Lchown(p, uid, gid); err != nil {
			return fmt.Errorf("chown %s: %w", p, err)
		}
	}
	if uid != 0 {
		return letThrough(filepath.Dir(home))
	}
	return nil
}

// letThrough makes the directories above a home (a domain's directory
// under the mail root, the mail root, the data directory) that root owns
// and others cannot pass searchable (o+x, g+x: passing through, not
// listing), so that the account's own processes, and the server reading
// as the account, reach it, as a home under /home is reached. Three
// levels at most; it stops at the first that others can pass.
func letThrough(dir string) error {
	for range 3 {
		st, err := os.Stat(dir)
		if err != nil {
			return err
		}
		sys, ok := st.Sys().(*syscall.Stat_t)
		if !ok || st.Mode().Perm()&0o001 != 0 || sys.Uid != 0 {
			return nil
		}
		if err := os.Chmod(dir, st.Mode().Perm()|0o011); err != nil {
			return fmt.Errorf("chmod %s: %w", dir, err)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return nil
		}
		dir = parent
	}
	return nil
}
