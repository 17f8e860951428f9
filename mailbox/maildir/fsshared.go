package maildir

// Courier's filesystem permission-based shared folders (Courier's
// README.sharedfolders, "Filesystem permissions-based shared folders").
//
// A sharable maildir is an ordinary maildir made with "maildirmake -S";
// its folders made with "maildirmake -s read|write" carry group or world
// permissions. A user's Maildir names the sharable maildirs it may use in
// its shared-maildirs file ("NICK<TAB>PATH", written by "maildirmake
// --add"). Subscribing to folder F of NICK makes the private directory
// Maildir/shared-folders/NICK/F, a maildir whose "shared" symbolic link
// names the sharable folder (PATH/.F) and whose messages are symbolic links
// to the sharable folder's messages: the user's flags live in the names of
// those links, so each user keeps their own \Seen. SyncShared brings the
// links up to date. Who may read, add and remove is decided by the file
// permissions, for the user's uid and gid, as the kernel would for a
// Courier server running as the user.
//
// Nothing here trusts the files it reads: shared-maildirs lines, the
// "shared" link and the message links are checked before use, and a
// message is only ever opened as a regular file directly inside the
// sharable folder's cur/ or new/, with no symbolic link on the way.

import (
	"bufio"
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
	"unicode"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// File and directory names of Courier's layout.
const (
	SharedMaildirsName = "shared-maildirs" // in the user's Maildir: NICK<TAB>PATH lines
	SharedFoldersDir   = "shared-folders"  // in the user's Maildir: NICK/FOLDER private views
	sharedLinkName     = "shared"          // in a private view: link to the sharable folder
)

// Limits on shared-maildirs: a file is read whole, so it is bounded.
const (
	maxSharedMaildirsSize = 64 << 10
	maxSharedNickLen      = 255
)

// Errors of filesystem-shared folders.
var (
	ErrNoSharedFolder    = errors.New("maildir: no such shared folder")
	ErrSharedPermission  = errors.New("maildir: not permitted in the shared folder")
	ErrBadSharedMaildirs = errors.New("maildir: bad shared-maildirs line")
)

// SharedMaildir is one line of shared-maildirs: a sharable maildir under a
// nickname.
type SharedMaildir struct {
	Nick string
	Path string // absolute, as written (Courier's links are made from it)
}

// SharedLineError is a shared-maildirs line that was skipped.
type SharedLineError struct {
	Line   int
	Reason string
}

func (e *SharedLineError) Error() string {
	return fmt.Sprintf("line %d: %s", e.Line, e.Reason)
}

func (e *SharedLineError) Unwrap() error { return ErrBadSharedMaildirs }

// ParseSharedMaildirs reads the text of a shared-maildirs file as Courier
// does: "#" starts a comment, a line is a NICK, white space, and a PATH.
// Lines Postern cannot use safely are skipped and reported, never fatal:
// a NICK that is empty, holds ".", "/", white space or control characters,
// or is not UTF-8; a PATH that is not absolute or holds ".." components or
// control characters; a NICK given twice (the first wins, as in Courier).
func ParseSharedMaildirs(data []byte) ([]SharedMaildir, []error) {
	var out []SharedMaildir
	var bad []error
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), maxSharedMaildirsSize)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		i := strings.IndexFunc(line, unicode.IsSpace)
		if i < 0 {
			bad = append(bad, &SharedLineError{n, "no path after the name"})
			continue
		}
		nick, path := line[:i], strings.TrimSpace(line[i:])
		if err := validSharedNick(nick); err != nil {
			bad = append(bad, &SharedLineError{n, err.Error()})
			continue
		}
		if err := validSharedPath(path); err != nil {
			bad = append(bad, &SharedLineError{n, err.Error()})
			continue
		}
		if seen[nick] {
			bad = append(bad, &SharedLineError{n, fmt.Sprintf("%q given again", nick)})
			continue
		}
		seen[nick] = true
		out = append(out, SharedMaildir{Nick: nick, Path: path})
	}
	if err := sc.Err(); err != nil {
		bad = append(bad, &SharedLineError{n + 1, err.Error()})
	}
	return out, bad
}

// validSharedNick: the name becomes a directory under shared-folders and a
// level of the IMAP hierarchy, so it may not hold the hierarchy delimiter,
// a path separator or anything a file name or an IMAP name cannot carry.
func validSharedNick(nick string) error {
	switch {
	case nick == "":
		return errors.New("empty name")
	case len(nick) > maxSharedNickLen:
		return errors.New("name too long")
	case !utf8.ValidString(nick):
		return errors.New("name is not UTF-8")
	case strings.ContainsAny(nick, "./\\*%\"&"):
		return fmt.Errorf("name %q holds one of . / \\ * %% \" &", nick)
	}
	for _, r := range nick {
		if r < 0x20 || r == 0x7f || unicode.IsSpace(r) {
			return fmt.Errorf("name %q holds a control or space character", nick)
		}
	}
	return nil
}

func validSharedPath(path string) error {
	if !filepath.IsAbs(path) {
		return fmt.Errorf("path %q is not absolute", path)
	}
	for _, r := range path {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("path %q holds a control character", path)
		}
	}
	for _, part := range strings.Split(path, "/") {
		if part == ".." {
			return fmt.Errorf("path %q holds ..", path)
		}
	}
	return nil
}

// ReadSharedMaildirs reads root/shared-maildirs. A missing file is no
// sharable maildir and no error; skipped lines are returned beside the
// good ones, for the caller to log.
func ReadSharedMaildirs(root string) ([]SharedMaildir, []error, error) {
	path := filepath.Join(root, SharedMaildirsName)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("maildir %s: %w", root, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxSharedMaildirsSize+1))
	if err != nil {
		return nil, nil, fmt.Errorf("maildir %s: read %s: %w", root, SharedMaildirsName, err)
	}
	if len(data) > maxSharedMaildirsSize {
		return nil, nil, fmt.Errorf("maildir %s: %s is over %d bytes", root, SharedMaildirsName, maxSharedMaildirsSize)
	}
	good, bad := ParseSharedMaildirs(data)
	return good, bad, nil
}

// Identity is the user on whose behalf sharable folders are read: the
// file permissions are checked for this uid and gid (and the extra
// groups), as the kernel checks them for a process running as the user.
// Uid 0 may do anything, as root may.
type Identity struct {
	UID, GID int
	Groups   []int
}

// permits reports whether id has the permission bits want (4 read, 2
// write, 1 search/execute) on a file with st's owner and mode.
func (id Identity) permits(st *syscall.Stat_t, want uint32) bool {
	if id.UID == 0 {
		return true
	}
	mode := st.Mode & 0o777
	switch {
	case int(st.Uid) == id.UID:
		return (mode>>6)&want == want
	case int(st.Gid) == id.GID || slices.Contains(id.Groups, int(st.Gid)):
		return (mode>>3)&want == want
	}
	return mode&want == want
}

// reaches reports whether id can search every directory on the way to
// path (which must have no symbolic links: see resolveSharable) and has
// want on path itself.
func (id Identity) reaches(path string, want uint32) bool {
	dir := "/"
	parts := strings.Split(strings.TrimPrefix(path, "/"), "/")
	for i, part := range parts {
		st, err := lstatSys(dir)
		if err != nil || !id.permits(st, 1) {
			return false
		}
		dir = filepath.Join(dir, part)
		if i == len(parts)-1 {
			st, err := lstatSys(dir)
			return err == nil && st.Mode&syscall.S_IFMT != syscall.S_IFLNK && id.permits(st, want)
		}
	}
	return false
}

func lstatSys(path string) (*syscall.Stat_t, error) {
	var st syscall.Stat_t
	if err := syscall.Lstat(path, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// ErrNotReadable: a maildir, folder or message that the user the server
// reads for (Options.Reader) could not read themselves.
var ErrNotReadable = errors.New("not readable for the mailbox's user")

// reachesDir checks that id has want (5: list, 3: add files) on dir,
// after the links an administrator may have put on the way (/home to
// /srv/home, a Maildir link), with every directory on the way searchable
// for id.
func (id *Identity) reachesDir(dir string, want uint32) error {
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return err
	}
	if !id.reaches(real, want) {
		return fmt.Errorf("%s (as %s): uid %d: %w", dir, real, id.UID, ErrNotReadable)
	}
	return nil
}

// openRegular opens a message file that must be a regular file: a FIFO
// someone made in the maildir would block the reader for ever (it is
// opened without waiting, and refused).
func openRegular(path string) (int, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return -1, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		unix.Close(fd)
		return -1, fmt.Errorf("%s: not a regular file: %w", path, ErrNotReadable)
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// openForReader opens a message file for id: no link in the last place,
// a regular file (a FIFO would hang the reader), readable for id by its
// mode.
func openForReader(path string, id *Identity) (int, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		if err == unix.ELOOP {
			return -1, fmt.Errorf("%s: a symbolic link in a maildir is not served: %w", path, ErrNotReadable)
		}
		return -1, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFREG || !id.permits(&st, 4) {
		unix.Close(fd)
		return -1, fmt.Errorf("%s: not a regular file readable for uid %d: %w", path, id.UID, ErrNotReadable)
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// resolveSharable resolves the symbolic links an administrator may have
// on the way to a sharable maildir or folder, so that later opens can
// refuse every link (a link appearing later is someone's attack).
func resolveSharable(path string) (string, error) {
	if !filepath.IsAbs(path) {
		return "", fmt.Errorf("%q is not absolute: %w", path, ErrNoSharedFolder)
	}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", err
	}
	st, err := os.Lstat(real)
	if err != nil {
		return "", err
	}
	if !st.IsDir() {
		return "", fmt.Errorf("%s is not a directory: %w", path, ErrNoSharedFolder)
	}
	return real, nil
}

// SharableFolder is a folder of a sharable maildir that a user may read.
type SharableFolder struct {
	Nick   string // the sharable maildir's name in shared-maildirs
	Folder string // Maildir++ name in the sharable maildir ("Lists", "Lists.sub")
	// Path is the folder as Courier names it, PATH/.FOLDER with PATH as
	// written in shared-maildirs: the target of the private view's
	// "shared" link.
	Path     string
	Writable bool // the user may add messages (cur/, new/ and tmp/ writable)
}

// ListSharable lists the folders of a sharable maildir that id may read:
// the ".FOLDER" directories whose cur/ id can list, as Courier's list
// stats FOLDER/cur/. for the user. Folders reached through a symbolic
// link, and names that are not valid Maildir++ names, are left out.
func ListSharable(sm SharedMaildir, id Identity) ([]SharableFolder, error) {
	real, err := resolveSharable(sm.Path)
	if err != nil {
		return nil, fmt.Errorf("maildir: sharable maildir %s (%s): %w", sm.Nick, sm.Path, err)
	}
	if !id.reaches(real, 4|1) {
		return nil, nil // the user could not list it
	}
	entries, err := os.ReadDir(real)
	if err != nil {
		return nil, fmt.Errorf("maildir: sharable maildir %s (%s): %w", sm.Nick, sm.Path, err)
	}
	var out []SharableFolder
	for _, e := range entries {
		n := e.Name()
		if len(n) < 2 || n[0] != '.' || !e.IsDir() || ValidFolderName(n[1:]) != nil {
			continue
		}
		dir := filepath.Join(real, n)
		if !id.reaches(filepath.Join(dir, "cur"), 4|1) {
			continue
		}
		out = append(out, SharableFolder{
			Nick: sm.Nick, Folder: n[1:], Path: strings.TrimRight(sm.Path, "/") + "/" + n,
			Writable: sharableWritable(dir, id),
		})
	}
	return out, nil
}

// sharableWritable: adding a message needs tmp/, new/ and cur/ writable.
func sharableWritable(dir string, id Identity) bool {
	for _, sub := range []string{"tmp", "new", "cur"} {
		if !id.reaches(filepath.Join(dir, sub), 2|1) {
			return false
		}
	}
	return true
}

// FindSharable returns NICK's folder FOLDER when id may read it.
func FindSharable(shared []SharedMaildir, nick, folder string, id Identity) (SharableFolder, error) {
	if ValidFolderName(folder) != nil {
		return SharableFolder{}, ErrNoSharedFolder
	}
	for _, sm := range shared {
		if sm.Nick != nick {
			continue
		}
		list, err := ListSharable(sm, id)
		if err != nil {
			return SharableFolder{}, err
		}
		for _, f := range list {
			if f.Folder == folder {
				return f, nil
			}
		}
	}
	return SharableFolder{}, ErrNoSharedFolder
}

// SharedViewPath is the private view of NICK's FOLDER in the Maildir at
// root: root/shared-folders/NICK/FOLDER, Courier's layout.
func SharedViewPath(root, nick, folder string) (string, error) {
	if validSharedNick(nick) != nil || ValidFolderName(folder) != nil {
		return "", ErrNoSharedFolder
	}
	return filepath.Join(root, SharedFoldersDir, nick, folder), nil
}

// SubscribeShared makes the private view of a sharable folder, as
// Courier's subscription does: shared-folders/NICK/FOLDER with tmp/, new/,
// cur/ (mode 0700) and the "shared" link to the sharable folder. A view
// already there is left as it is.
func SubscribeShared(root string, sf SharableFolder) (string, error) {
	view, err := SharedViewPath(root, sf.Nick, sf.Folder)
	if err != nil {
		return "", err
	}
	if _, err := os.Lstat(filepath.Join(view, sharedLinkName)); err == nil {
		return view, nil
	}
	for _, d := range []string{filepath.Join(root, SharedFoldersDir), filepath.Dir(view), view} {
		if err := os.Mkdir(d, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return "", fmt.Errorf("maildir %s: subscribe %s.%s: %w", root, sf.Nick, sf.Folder, err)
		}
	}
	for _, sub := range []string{"tmp", "cur", "new"} {
		if err := os.Mkdir(filepath.Join(view, sub), 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return "", fmt.Errorf("maildir %s: subscribe %s.%s: %w", root, sf.Nick, sf.Folder, err)
		}
	}
	if err := os.Symlink(sf.Path, filepath.Join(view, sharedLinkName)); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("maildir %s: subscribe %s.%s: %w", root, sf.Nick, sf.Folder, err)
	}
	return view, nil
}

// UnsubscribeShared removes the private view (and the NICK directory when
// it is left empty), as Courier's unsubscription does. The messages'
// links go; the sharable folder is not touched.
func UnsubscribeShared(root, nick, folder string) error {
	view, err := SharedViewPath(root, nick, folder)
	if err != nil {
		return err
	}
	if _, err := os.Lstat(view); err != nil {
		return fmt.Errorf("maildir %s: unsubscribe %s.%s: %w", root, nick, folder, ErrNoSharedFolder)
	}
	// RemoveAll removes links, never what they point to.
	if err := os.RemoveAll(view); err != nil {
		return fmt.Errorf("maildir %s: unsubscribe %s.%s: %w", root, nick, folder, err)
	}
	os.Remove(filepath.Dir(view)) // only when empty
	return nil
}

// SubscribedShared lists the private views under root/shared-folders as
// "NICK.FOLDER" names, sorted, as Courier's list of subscribed shared
// folders does. Names that could not have been made by SubscribeShared
// are left out.
func SubscribedShared(root string) ([]string, error) {
	nicks, err := os.ReadDir(filepath.Join(root, SharedFoldersDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("maildir %s: %w", root, err)
	}
	var out []string
	for _, n := range nicks {
		if !n.IsDir() || validSharedNick(n.Name()) != nil {
			continue
		}
		folders, err := os.ReadDir(filepath.Join(root, SharedFoldersDir, n.Name()))
		if err != nil {
			continue
		}
		for _, f := range folders {
			if f.IsDir() && ValidFolderName(f.Name()) == nil {
				out = append(out, n.Name()+"."+f.Name())
			}
		}
	}
	slices.Sort(out)
	return out, nil
}

// sharedLink reads a private view's "shared" link: the sharable folder as
// written (for comparing message links, as Courier writes them) and
// resolved (for opening).
func sharedLink(view string) (text, real string, err error) {
	text, err = os.Readlink(filepath.Join(view, sharedLinkName))
	if err != nil {
		return "", "", fmt.Errorf("maildir %s: shared link: %w", view, err)
	}
	text = strings.TrimRight(text, "/")
	if validSharedPath(text) != nil {
		return "", "", fmt.Errorf("maildir %s: shared link %q: %w", view, text, ErrNoSharedFolder)
	}
	real, err = resolveSharable(text)
	if err != nil {
		return "", "", fmt.Errorf("maildir %s: shared link %q: %w", view, text, err)
	}
	for _, sub := range []string{"cur", "new"} {
		st, err := os.Lstat(filepath.Join(real, sub))
		if err != nil || !st.IsDir() {
			return "", "", fmt.Errorf("maildir %s: sharable folder %s: %s is not a directory: %w", view, real, sub, ErrNoSharedFolder)
		}
	}
	return text, real, nil
}

// SharedView is an open private view of a sharable folder.
type SharedView struct {
	View     string // the private maildir, shared-folders/NICK/FOLDER
	Link     string // the "shared" link as written
	Real     string // the sharable folder, symbolic links resolved
	Writable bool   // id may add messages to the sharable folder
	id       Identity
}

// OpenSharedView checks the private view at view for id: its "shared"
// link must lead, through no link the admin did not make, to a folder
// whose cur/ id may list.
func OpenSharedView(view string, id Identity) (*SharedView, error) {
	text, real, err := sharedLink(view)
	if err != nil {
		return nil, err
	}
	if !id.reaches(filepath.Join(real, "cur"), 4|1) {
		return nil, fmt.Errorf("maildir %s: %w", view, ErrNoSharedFolder)
	}
	return &SharedView{View: view, Link: text, Real: real, Writable: sharableWritable(real, id), id: id}, nil
}

// Options returns the maildir options that make the private view read
// its messages only through checked links (Options.SharedFrom).
func (v *SharedView) Options() Options {
	id := v.id
	return Options{SharedFrom: v.Link, sharedReal: v.Real, sharedID: &id}
}

// Sync brings the private view's links in line with the sharable folder,
// as Courier's maildir_shared_sync does: when id may write the folder,
// its new/ messages are first moved to cur/ (the first reader claims
// them, as Courier's README describes); then each link whose message is
// gone is removed, each link whose message moved is pointed at it again,
// and each message without a link gets one in the view's new/, named
// KEY:2, (no flags), so it shows as new to this user. Only regular files
// are linked; anything else in the sharable folder (links, devices) is
// ignored. Messages still in new/ (a read-only folder, or a claim that
// failed) are linked too, where Courier shows them only once in cur/.
func (v *SharedView) Sync() error {
	if v.Writable {
		v.claimNew()
	}
	have := map[string]string{} // key → "cur/NAME" or "new/NAME"
	for _, sub := range []string{"new", "cur"} {
		entries, err := os.ReadDir(filepath.Join(v.Real, sub))
		if err != nil {
			return fmt.Errorf("maildir %s: sync shared %s: %w", v.View, v.Real, err)
		}
		for _, e := range entries {
			n := e.Name()
			if n[0] == '.' || !e.Type().IsRegular() {
				continue
			}
			key, _ := splitName(n)
			if key == "" {
				continue
			}
			have[key] = sub + "/" + n
		}
	}
	for _, sub := range []string{"cur", "new"} {
		dir := filepath.Join(v.View, sub)
		entries, err := os.ReadDir(dir)
		if err != nil {
			return fmt.Errorf("maildir %s: sync shared: %w", v.View, err)
		}
		for _, e := range entries {
			n := e.Name()
			if n[0] == '.' {
				continue
			}
			key, _ := splitName(n)
			loc, ok := have[key]
			if !ok {
				os.Remove(filepath.Join(dir, n)) // gone from the sharable folder
				continue
			}
			delete(have, key)
			want := v.Link + "/" + loc
			if got, err := os.Readlink(filepath.Join(dir, n)); err == nil && got == want {
				continue
			}
			if err := v.relink(want, filepath.Join(dir, n)); err != nil {
				return err
			}
		}
	}
	keys := make([]string, 0, len(have))
	for k := range have {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, key := range keys {
		if err := v.relink(v.Link+"/"+have[key], filepath.Join(v.View, "new", key+":2,")); err != nil {
			return err
		}
	}
	return nil
}

// claimNew moves the sharable folder's new/ messages to cur/, ignoring
// failures (another reader moved them first).
func (v *SharedView) claimNew() {
	entries, err := os.ReadDir(filepath.Join(v.Real, "new"))
	if err != nil {
		return
	}
	for _, e := range entries {
		n := e.Name()
		if n[0] == '.' || !e.Type().IsRegular() || strings.Contains(n, ":") {
			continue
		}
		os.Rename(filepath.Join(v.Real, "new", n), filepath.Join(v.Real, "cur", n+":2,"))
	}
}

// relink points path at target atomically: a new link in tmp/, renamed
// over the old name.
func (v *SharedView) relink(target, path string) error {
	tmp := filepath.Join(v.View, "tmp", fmt.Sprintf("%d.%s.link", os.Getpid(), randomHex()))
	if err := os.Symlink(target, tmp); err != nil {
		return fmt.Errorf("maildir %s: sync shared: %w", v.View, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("maildir %s: sync shared: %w", v.View, err)
	}
	return nil
}

// messageTarget maps a private view's message file (a link) to the
// sharable folder's file it stands for, refusing any link that does not
// point directly into the sharable folder's cur/ or new/ as SharedView
// writes them. The result is under the resolved folder.
func (md *Maildir) messageTarget(private string) (string, error) {
	target, err := os.Readlink(private)
	if err != nil {
		return "", err
	}
	rest, ok := strings.CutPrefix(target, md.sharedFrom+"/")
	if !ok {
		return "", fmt.Errorf("maildir %s: link %s leaves the sharable folder: %w", md.root, filepath.Base(private), ErrSharedPermission)
	}
	sub, name, ok := strings.Cut(rest, "/")
	if !ok || (sub != "cur" && sub != "new") || name == "" || name[0] == '.' || strings.ContainsAny(name, "/\x00") {
		return "", fmt.Errorf("maildir %s: link %s leaves the sharable folder: %w", md.root, filepath.Base(private), ErrSharedPermission)
	}
	return filepath.Join(md.sharedReal, sub, name), nil
}

// openMessageFile opens a message file of the folder for reading. In a
// private view of a sharable folder the file is a link: it is followed
// only as messageTarget allows, and the target is opened with no
// symbolic link anywhere on its path and must be a regular file (a FIFO
// would hang the reader, a device would be worse).
func (f *Folder) openMessageFile(name string) (int, error) {
	path := filepath.Join(f.path, name)
	if f.md.sharedFrom == "" {
		if f.md.reader != nil {
			return openForReader(path, f.md.reader)
		}
		return openRegular(path)
	}
	target, err := f.md.messageTarget(path)
	if err != nil {
		return -1, err
	}
	how := &unix.OpenHow{Flags: unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOFOLLOW | unix.O_NONBLOCK, Resolve: unix.RESOLVE_NO_SYMLINKS}
	fd, err := unix.Openat2(unix.AT_FDCWD, target, how)
	if err == unix.ENOSYS {
		// Before Linux 5.6: the path was resolved when the view was
		// opened; O_NOFOLLOW still refuses a link in the last place.
		fd, err = unix.Open(target, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	}
	if err != nil {
		if err == unix.ELOOP || err == unix.EXDEV {
			return -1, fmt.Errorf("maildir %s: %s: symbolic link in the sharable folder: %w", f.path, name, ErrSharedPermission)
		}
		return -1, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		unix.Close(fd)
		return -1, fmt.Errorf("maildir %s: %s: not a regular file in the sharable folder: %w", f.path, name, ErrSharedPermission)
	}
	if id := f.md.sharedID; id != nil && !id.permits(&st, 4) {
		// The owner keeps this message to themselves (mode 0600): as
		// for Courier's server running as the user, it cannot be read.
		unix.Close(fd)
		return -1, fmt.Errorf("maildir %s: %s: not readable for uid %d: %w", f.path, name, id.UID, ErrSharedPermission)
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// RemoveShared expunges a message of a private view from the sharable
// folder, then its link, as Courier's maildir_unlinksharedmsg: removing
// needs write permission on the folder's directory and, where it is
// sticky (maildirmake -s write), owning the message or the folder. When
// that is missing the message stays, its \Deleted flag is cleared in the
// view (as Courier does), and ErrSharedPermission is returned.
func (f *Folder) RemoveShared(key string, id Identity) error {
	if f.md.sharedFrom == "" {
		return f.Remove(key)
	}
	var target string
	err := f.withFile(key, func(name string) error {
		t, err := f.md.messageTarget(filepath.Join(f.path, name))
		target = t
		return err
	})
	if err != nil {
		return err
	}
	if !mayUnlink(target, id) {
		f.clearTrashed(key)
		return fmt.Errorf("maildir %s: remove %s: %w", f.path, key, ErrSharedPermission)
	}
	if err := os.Remove(target); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("maildir %s: remove %s: %w", f.path, key, err)
	}
	return f.Remove(key)
}

// mayUnlink is the kernel's rule for unlink(2) for id: write and search
// on the directory and, in a sticky directory, owning the file or the
// directory.
func mayUnlink(path string, id Identity) bool {
	dir := filepath.Dir(path)
	if !id.reaches(dir, 2|1) {
		return false
	}
	dst, err := lstatSys(dir)
	if err != nil {
		return false
	}
	if id.UID == 0 || dst.Mode&syscall.S_ISVTX == 0 {
		return true
	}
	fst, err := lstatSys(path)
	if err != nil {
		return false
	}
	return int(fst.Uid) == id.UID || int(dst.Uid) == id.UID
}

// clearTrashed takes T off a message's flags (keeping the others).
func (f *Folder) clearTrashed(key string) {
	f.withFile(key, func(name string) error {
		if !strings.HasPrefix(name, "cur/") {
			return nil
		}
		_, info := splitName(name[4:])
		i := strings.IndexByte(info, FlagTrashed)
		if i < 0 {
			return nil
		}
		return os.Rename(filepath.Join(f.path, name), filepath.Join(f.path, "cur", key+":2,"+info[:i]+info[i+1:]))
	})
	f.mu.Lock()
	delete(f.names, key)
	f.mu.Unlock()
}

func randomHex() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on Linux
	return hex.EncodeToString(b[:])
}

// AdoptShared gives messages just added to a sharable folder (IMAP APPEND
// or COPY into it) the owner and mode a Courier server running as the
// user would have given them: the user's uid and gid (when this process
// may chown, that is runs as root), and read permission for the group and
// others as far as the folder's cur/ grants it, so that the other readers
// can read them and the user may remove them later from a sticky folder.
func (f *Folder) AdoptShared(keys []string, id Identity) {
	st, err := os.Stat(filepath.Join(f.path, "cur"))
	if err != nil {
		return
	}
	mode := 0o600 | st.Mode().Perm()&0o044
	for _, key := range keys {
		f.withFile(key, func(name string) error {
			p := filepath.Join(f.path, name)
			if err := os.Chmod(p, mode); err != nil {
				return err
			}
			if os.Geteuid() == 0 && id.UID > 0 {
				return os.Lchown(p, id.UID, id.GID)
			}
			return nil
		})
	}
}

// OpenSharedFolder opens NICK's FOLDER for id the way a server does when
// the user opens "shared.NICK.FOLDER" (IMAP SELECT, SMAP OPEN, the
// webmail's folder page): the folder must be one of shared's that id may
// read (FindSharable); the private view under root is made when missing,
// as Courier subscribes on open; and it is brought up to date with the
// sharable folder (SharedView.Sync). The caller opens the view's maildir
// with the view's Options, so that every message is read only through a
// checked link.
func OpenSharedFolder(root string, shared []SharedMaildir, nick, folder string, id Identity) (*SharedView, SharableFolder, error) {
	sf, err := FindSharable(shared, nick, folder, id)
	if err != nil {
		return nil, SharableFolder{}, err
	}
	path, err := SubscribeShared(root, sf)
	if err != nil {
		return nil, SharableFolder{}, err
	}
	view, err := OpenSharedView(path, id)
	if err != nil {
		return nil, SharableFolder{}, err
	}
	if err := view.Sync(); err != nil {
		return nil, SharableFolder{}, err
	}
	return view, sf, nil
}

// ListSharableMessages returns the files of sf's messages that a new
// private view would link (SharedView.Sync): the regular files of new/ and
// cur/, one per key, as absolute paths sorted by key. Nothing is written,
// no message is claimed and no view is made, so that asking about a
// shared folder (IMAP STATUS, LIST-STATUS) does not subscribe the user to
// it; only opening it does. The caller checked that the user may read sf
// (FindSharable).
func ListSharableMessages(sf SharableFolder) ([]string, error) {
	real, err := resolveSharable(sf.Path)
	if err != nil {
		return nil, fmt.Errorf("maildir: sharable folder %s.%s: %w", sf.Nick, sf.Folder, err)
	}
	have := map[string]string{}
	for _, sub := range []string{"new", "cur"} {
		entries, err := os.ReadDir(filepath.Join(real, sub))
		if err != nil {
			return nil, fmt.Errorf("maildir: sharable folder %s.%s: %w", sf.Nick, sf.Folder, err)
		}
		for _, e := range entries {
			n := e.Name()
			if n[0] == '.' || !e.Type().IsRegular() {
				continue
			}
			if key, _ := splitName(n); key != "" {
				have[key] = filepath.Join(real, sub, n)
			}
		}
	}
	keys := make([]string, 0, len(have))
	for k := range have {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	paths := make([]string, len(keys))
	for i, k := range keys {
		paths[i] = have[k]
	}
	return paths, nil
}

// InsertFolder opens the sharable folder itself, for adding messages to
// it (IMAP APPEND and COPY, SMAP ADD and COPY into a shared folder): new
// messages go there and reach every reader's view at their next sync, as
// in Courier. ErrSharedPermission when the user may not write it. Give
// what is added to the user with AdoptShared.
func (v *SharedView) InsertFolder(sf SharableFolder) (*Folder, error) {
	if !v.Writable {
		return nil, fmt.Errorf("maildir %s: add to %s.%s: %w", v.View, sf.Nick, sf.Folder, ErrSharedPermission)
	}
	md, err := Open(filepath.Dir(v.Real))
	if err != nil {
		return nil, err
	}
	return md.Folder(sf.Folder)
}
