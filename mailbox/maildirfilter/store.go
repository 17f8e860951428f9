package maildirfilter

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"unicode/utf8"
)

// Account is where one user's files are: the home (which holds
// .mailfilter, as sqwebmail's default maildirfilterconfig,
// MAILDIRFILTER=../.mailfilter, has it) and the Maildir (which holds
// autoresponses/), and who owns them.
type Account struct {
	Home    string
	Maildir string
	// UID and GID own what is written when the writer is root; -1 (or a
	// writer that is not root) leaves the writer's.
	UID, GID int
}

// filterName is the filter file's name in the home.
const filterName = ".mailfilter"

// FilterFile is the account's .mailfilter.
func (a Account) FilterFile() string { return filepath.Join(a.Home, filterName) }

// RecipeMaildir is the Maildir as the recipe names it: "./Maildir" for
// HOME/Maildir (filters run in the home), "./PATH" for another place in
// the home, else the absolute path.
func (a Account) RecipeMaildir() string {
	home, md := filepath.Clean(a.Home), filepath.Clean(a.Maildir)
	if rel, err := filepath.Rel(home, md); err == nil && rel != "." && !strings.HasPrefix(rel, "..") && filepath.IsLocal(rel) {
		return "./" + filepath.ToSlash(rel)
	}
	return md
}

// LoadRules reads the account's rules. No file is no rules; a file the
// webmail did not write is ErrForeign.
func (a Account) LoadRules() ([]Rule, []Problem, error) {
	data, err := readIn(a.Home, filterName, MaxFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	return Parse(data)
}

// errNotRegular is a file name that is a link, a directory or a device.
var errNotRegular = errors.New("not a regular file")

// readIn reads the regular file name (a path relative to dir) of at most
// max bytes. It is read through an os.Root: neither a link nor ".." can
// lead out of dir, and the file itself may not be a link at all, so a
// user who can change their home cannot make the webmail, root or not,
// read another file.
func readIn(dir, name string, max int64) ([]byte, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	lst, err := root.Lstat(name)
	if err != nil {
		return nil, err
	}
	if !lst.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, name), errNotRegular)
	}
	f, err := root.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !os.SameFile(st, lst) {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, name), errNotRegular)
	}
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, name), err)
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%s: larger than %d KiB", filepath.Join(dir, name), max>>10)
	}
	return data, nil
}

// InvalidError is a rule or a set of rules refused before anything was
// written; its text is for the user. Other errors of SaveRules are the
// file system's.
type InvalidError struct{ Err error }

func (e *InvalidError) Error() string { return e.Err.Error() }
func (e *InvalidError) Unwrap() error { return e.Err }

// SaveRules writes rs as the account's .mailfilter, unless the file there
// now is not one the webmail wrote (ErrForeign: a hand-written recipe is
// never replaced). The caller serialises saves of one account.
func (a Account) SaveRules(rs []Rule, rc Recipe) error {
	if len(rs) > MaxRules {
		return &InvalidError{fmt.Errorf("at most %d rules", MaxRules)}
	}
	data, err := Generate(rs, rc)
	if err != nil {
		return &InvalidError{err}
	}
	old, err := readIn(a.Home, filterName, MaxFile)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case errors.Is(err, errNotRegular):
		return ErrForeign
	case err != nil:
		return err
	case !bytes.HasPrefix(old, []byte(Marker)):
		return ErrForeign
	}
	if len(rs) == 0 {
		// No rules delivers as no file does; without the file the
		// account's Sieve script, if any, decides again (docs/sieve.md).
		return a.removeIn(a.Home, filterName)
	}
	return a.writeIn(a.Home, filterName, data)
}

// removeIn removes name (relative to dir) if it is there, and makes the
// removal durable.
func (a Account) removeIn(dir, name string) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	if err := root.Remove(name); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	d, err := root.Open(path.Dir(name))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// writeIn replaces name (a path relative to dir) atomically: a
// temporary file beside it (mode 0600, given to the account when the
// writer is root), fsync, rename, fsync of the directory. Everything goes
// through an os.Root, so that no link or ".." leads out of dir.
func (a Account) writeIn(dir, name string, data []byte) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return err
	}
	parent, base := path.Split(name)
	tmpName := parent + "." + base + ".tmp" + hex.EncodeToString(rnd[:])
	tmp, err := root.OpenFile(tmpName, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	defer root.Remove(tmpName) // after a failure; nothing once renamed
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if os.Geteuid() == 0 && a.UID >= 0 && a.GID >= 0 {
		// The delivery agent runs a .mailfilter only when the account
		// owns it (maildrop's rule).
		if err := tmp.Chown(a.UID, a.GID); err != nil {
			tmp.Close()
			return err
		}
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := root.Rename(tmpName, name); err != nil {
		return err
	}
	if parent == "" {
		parent = "."
	}
	d, err := root.Open(parent)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Autoresponses.

// autoresponsesDir is where the replies are, in the Maildir.
const autoresponsesDir = "autoresponses"

// MaxAutoresponse bounds one reply's file.
const MaxAutoresponse = 64 << 10

// CheckAutoresponseName refuses, as sqwebmail does, a name that could not
// be a file in autoresponses/ or a word in the recipe: empty, or holding
// ". / ' \" * ? [ ] ~", blanks or control characters. Postern also bounds
// it to 64 bytes of letters, digits, "-" and "_" and non-ASCII letters.
func CheckAutoresponseName(name string) error {
	if name == "" || len(name) > 64 || !utf8.ValidString(name) {
		return errors.New("an autoreply's name is one word of at most 64 bytes")
	}
	for _, c := range name {
		if c < 0x80 && !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '_') {
			return fmt.Errorf("an autoreply's name is one word of letters, digits, - and _; %.60q is not", name)
		}
		if c == 0xfffd || c >= 0x80 && c < 0xa0 {
			return errors.New("an autoreply's name is one word of letters, digits, - and _")
		}
	}
	return nil
}

// Autoresponses lists the replies' names, sorted (files with a dot are
// mailbot's databases and temporary files, as sqwebmail has it).
func (a Account) Autoresponses() ([]string, error) {
	ents, err := a.readAutoresponsesDir()
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if strings.Contains(e.Name(), ".") || !e.Type().IsRegular() || CheckAutoresponseName(e.Name()) != nil {
			continue
		}
		out = append(out, e.Name())
	}
	slices.Sort(out)
	return out, nil
}

// readAutoresponsesDir lists autoresponses/ through an os.Root of the
// Maildir, refusing a link in its place.
func (a Account) readAutoresponsesDir() ([]os.DirEntry, error) {
	root, err := os.OpenRoot(a.Maildir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	st, err := root.Lstat(autoresponsesDir)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("%s: not a directory", filepath.Join(a.Maildir, autoresponsesDir))
	}
	d, err := root.Open(autoresponsesDir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.ReadDir(-1)
}

// Autoresponse is a reply's text, read from its MIME part. Editable is
// false when the part is not plain text in UTF-8 or ASCII (a reply
// sqwebmail made with an attachment, say): then Text is empty and only
// deleting or replacing it is offered.
type Autoresponse struct {
	Name     string
	Text     string
	Editable bool
}

// ReadAutoresponse reads the reply name.
func (a Account) ReadAutoresponse(name string) (Autoresponse, error) {
	if err := CheckAutoresponseName(name); err != nil {
		return Autoresponse{}, err
	}
	data, err := readIn(a.Maildir, autoresponsesDir+"/"+name, MaxAutoresponse)
	if err != nil {
		return Autoresponse{}, err
	}
	ar := Autoresponse{Name: name}
	head, body, ok := bytes.Cut(data, []byte("\n\n"))
	if !ok {
		return ar, nil
	}
	for _, line := range strings.Split(unfold(string(head)), "\n") {
		k, v, _ := strings.Cut(line, ":")
		v = strings.ToLower(strings.TrimSpace(v))
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "content-type":
			t, params, _ := strings.Cut(v, ";")
			if strings.TrimSpace(t) != "text/plain" {
				return ar, nil
			}
			if cs := charsetOf(params); cs != "" && cs != "utf-8" && cs != "us-ascii" {
				return ar, nil
			}
		case "content-transfer-encoding":
			if v != "7bit" && v != "8bit" {
				return ar, nil
			}
		}
	}
	if !utf8.Valid(body) {
		return ar, nil
	}
	ar.Text, ar.Editable = string(body), true
	return ar, nil
}

func unfold(h string) string {
	return strings.NewReplacer("\n ", " ", "\n\t", " ").Replace(h)
}

func charsetOf(params string) string {
	for _, p := range strings.Split(params, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
		if strings.TrimSpace(k) == "charset" {
			return strings.Trim(strings.TrimSpace(v), `"`)
		}
	}
	return ""
}

// AutoresponseQuota bounds autoresponses/: files and bytes; 0 is no bound.
type AutoresponseQuota struct {
	Files int
	Bytes int64
}

// ErrQuota is a reply that would exceed the autoresponse quota.
var ErrQuota = errors.New("autoresponse quota exceeded")

// Quota is the account's autoresponse quota: def, with the counts of
// the Maildir's autoresponsesquota file ("NNNC" files, "NNNS" bytes, in
// either order, as Courier's webadmin writes it) in its place.
func (a Account) Quota(def AutoresponseQuota) AutoresponseQuota {
	data, err := readIn(a.Maildir, "autoresponsesquota", 4096)
	if err != nil {
		return def
	}
	line, _, _ := strings.Cut(string(data), "\n")
	if strings.HasPrefix(line, "#") {
		return def
	}
	n := int64(0)
	digits := false
	for _, c := range line {
		switch {
		case c >= '0' && c <= '9':
			if n < 1e15 {
				n = n*10 + int64(c-'0')
			}
			digits = true
		case (c == 'C' || c == 'c') && digits:
			def.Files, n, digits = int(n), 0, false
		case (c == 'S' || c == 's') && digits:
			def.Bytes, n, digits = n, 0, false
		default:
			n, digits = 0, false
		}
	}
	return def
}

// WriteAutoresponse writes the reply name with text (plain text,
// UTF-8), as the MIME part mailbot -m sends, within the quota q
// (ErrQuota). A name or text refused is an *InvalidError.
func (a Account) WriteAutoresponse(name, text string, q AutoresponseQuota) error {
	if err := CheckAutoresponseName(name); err != nil {
		return &InvalidError{err}
	}
	if !utf8.ValidString(text) || strings.ContainsRune(text, 0) {
		return &InvalidError{errors.New("the reply must be text")}
	}
	text = strings.ReplaceAll(text, "\r\n", "\n")
	if text != "" && !strings.HasSuffix(text, "\n") {
		text += "\n"
	}
	data := []byte("Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n" + text)
	if len(data) > MaxAutoresponse {
		return &InvalidError{fmt.Errorf("the reply is larger than %d KiB", MaxAutoresponse>>10)}
	}
	root, err := os.OpenRoot(a.Maildir)
	if err != nil {
		return err
	}
	defer root.Close()
	if err := root.Mkdir(autoresponsesDir, 0o700); err == nil {
		if os.Geteuid() == 0 && a.UID >= 0 && a.GID >= 0 {
			if err := root.Lchown(autoresponsesDir, a.UID, a.GID); err != nil {
				return err
			}
		}
	} else if !errors.Is(err, os.ErrExist) {
		return err
	}
	files, size := 1, int64(len(data))
	ents, err := a.readAutoresponsesDir()
	if err != nil {
		return err
	}
	for _, e := range ents {
		if e.Name() == name || strings.Contains(e.Name(), ".") {
			continue
		}
		if st, err := e.Info(); err == nil {
			files++
			size += st.Size()
		}
	}
	if (q.Files > 0 && files > q.Files) || (q.Bytes > 0 && size > q.Bytes) {
		return ErrQuota
	}
	return a.writeIn(a.Maildir, autoresponsesDir+"/"+name, data)
}

// DeleteAutoresponse removes the reply name and mailbot's files for it
// (name.dat.db, the once-per-sender database), as sqwebmail removes
// name.*.
func (a Account) DeleteAutoresponse(name string) error {
	if err := CheckAutoresponseName(name); err != nil {
		return err
	}
	ents, err := a.readAutoresponsesDir()
	if err != nil {
		return err
	}
	root, err := os.OpenRoot(a.Maildir)
	if err != nil {
		return err
	}
	defer root.Close()
	found := false
	for _, e := range ents {
		if e.Name() == name || strings.HasPrefix(e.Name(), name+".") {
			if err := root.Remove(autoresponsesDir + "/" + e.Name()); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
			found = found || e.Name() == name
		}
	}
	if !found {
		return os.ErrNotExist
	}
	return nil
}
