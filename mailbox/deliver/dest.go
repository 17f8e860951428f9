package deliver

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"postern/mailbox/maildir"
)

// Errors a destination can be refused with; callers test them with errors.Is.
var (
	// ErrOutsideHome: the path leaves the account's home and Maildir
	// ("../../etc/x", an absolute path elsewhere, a symlink out).
	ErrOutsideHome = errors.New("deliver: destination outside the account's home")
	// ErrBadDestination: empty, NUL or control characters, a bad folder
	// name, or an address that cannot be forwarded to.
	ErrBadDestination = errors.New("deliver: invalid destination")
)

// DestKind says what a destination is.
type DestKind int

const (
	DestMaildir DestKind = iota // a Maildir (INBOX) or one of its Maildir++ folders
	DestMbox                    // an mbox file
	DestProgram                 // "|command": the message on the command's stdin
	DestForward                 // "!addr ..." or an address: resend with sendmail
)

func (k DestKind) String() string {
	switch k {
	case DestMaildir:
		return "maildir"
	case DestMbox:
		return "mbox"
	case DestProgram:
		return "program"
	case DestForward:
		return "forward"
	}
	return fmt.Sprintf("DestKind(%d)", int(k))
}

// Destination is what a delivery target means on disk.
type Destination struct {
	Kind DestKind
	// Root is the maildir root and Folder "INBOX" or the Maildir++ folder
	// name (DestMaildir).
	Root   string
	Folder string
	// Path is the mbox file (DestMbox), or the maildir folder's directory.
	Path string
	// Command is the shell command without the "|" (DestProgram).
	Command string
	// Addresses are the forwarding addresses (DestForward).
	Addresses []string
}

// String is the destination as logs and Outcome.Delivered show it.
func (d Destination) String() string {
	switch d.Kind {
	case DestMaildir:
		if d.Folder == maildir.Inbox {
			return d.Root
		}
		return d.Root + " folder " + d.Folder
	case DestMbox:
		return d.Path
	case DestProgram:
		return "|" + d.Command
	default:
		return "!" + strings.Join(d.Addresses, " ")
	}
}

// Confinement says where path destinations may be: inside Home or inside
// Maildir (which may live elsewhere, e.g. /var/mail/vhosts/...). An empty
// Confinement (both fields empty) allows any path — maildrop's manual mode,
// where the invoking user's own permissions are the limit.
type Confinement struct {
	Home    string
	Maildir string
}

// ResolveDestination maps a delivery target as filters and .courier files
// write it to what it means. dir is the directory relative paths start from
// (the home in delivery mode). "|cmd" is a program, "!a b" a forward; a path
// ending in "/" or naming an existing directory is a maildir: the account's
// Maildir itself is INBOX, "Maildir/.Work.Sub" the folder "Work.Sub", any
// other directory a maildir of its own. Any other path is an mbox file.
// Paths are cleaned and, after following symlinks of the part that exists,
// must stay inside the confinement: "../../etc/x" is ErrOutsideHome.
func ResolveDestination(dir string, conf Confinement, dest string) (Destination, error) {
	t := strings.TrimSpace(dest)
	if t == "" || strings.ContainsAny(t, "\x00\r\n") {
		return Destination{}, fmt.Errorf("%w: %q", ErrBadDestination, dest)
	}
	switch t[0] {
	case '|':
		cmd := strings.TrimSpace(t[1:])
		if cmd == "" {
			return Destination{}, fmt.Errorf("%w: empty command", ErrBadDestination)
		}
		return Destination{Kind: DestProgram, Command: cmd}, nil
	case '!':
		addrs, err := splitAddresses(t[1:])
		if err != nil {
			return Destination{}, err
		}
		return Destination{Kind: DestForward, Addresses: addrs}, nil
	}
	for _, r := range t {
		if r < 0x20 || r == 0x7f {
			return Destination{}, fmt.Errorf("%w: control character in %q", ErrBadDestination, dest)
		}
	}
	wantDir := strings.HasSuffix(t, "/")
	p := t
	if !filepath.IsAbs(p) {
		p = filepath.Join(dir, p)
	}
	p = filepath.Clean(p)
	real, err := realPath(p)
	if err != nil {
		return Destination{}, fmt.Errorf("destination %s: %w", p, err)
	}
	root := ""
	if conf.Maildir != "" {
		if root, err = realPath(filepath.Clean(conf.Maildir)); err != nil {
			return Destination{}, fmt.Errorf("maildir %s: %w", conf.Maildir, err)
		}
	}
	if conf.Home != "" || conf.Maildir != "" {
		home := ""
		if conf.Home != "" {
			if home, err = realPath(filepath.Clean(conf.Home)); err != nil {
				return Destination{}, fmt.Errorf("home %s: %w", conf.Home, err)
			}
		}
		if !within(real, home) && !within(real, root) {
			return Destination{}, fmt.Errorf("%w: %q", ErrOutsideHome, dest)
		}
	}
	fi, statErr := os.Stat(real)
	isDir := statErr == nil && fi.IsDir()
	if !wantDir && !isDir {
		if statErr == nil && !fi.Mode().IsRegular() {
			return Destination{}, fmt.Errorf("%w: %s is not a regular file", ErrBadDestination, p)
		}
		if real == root {
			// The account's Maildir is always a maildir, even before it exists.
			return Destination{Kind: DestMaildir, Root: real, Folder: maildir.Inbox, Path: real}, nil
		}
		return Destination{Kind: DestMbox, Path: real}, nil
	}
	if statErr == nil && !isDir {
		return Destination{}, fmt.Errorf("%w: %s is not a directory", ErrBadDestination, p)
	}
	if root != "" && real == root {
		return Destination{Kind: DestMaildir, Root: real, Folder: maildir.Inbox, Path: real}, nil
	}
	if root != "" && filepath.Dir(real) == root && strings.HasPrefix(filepath.Base(real), ".") {
		name := filepath.Base(real)[1:]
		if err := maildir.ValidFolderName(name); err != nil {
			return Destination{}, fmt.Errorf("%w: folder %q: %w", ErrBadDestination, name, err)
		}
		return Destination{Kind: DestMaildir, Root: root, Folder: name, Path: real}, nil
	}
	// A maildir of its own (maildrop delivers to any directory with
	// tmp/new/cur). A Maildir++ folder of another maildir is still
	// delivered to as a maildir: its tmp/new/cur are all that matter.
	return Destination{Kind: DestMaildir, Root: real, Folder: maildir.Inbox, Path: real}, nil
}

// within reports whether p is base or below it.
func within(p, base string) bool {
	if base == "" {
		return false
	}
	if p == base {
		return true
	}
	rel, err := filepath.Rel(base, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../") && !filepath.IsAbs(rel)
}

// realPath resolves symlinks in the longest existing prefix of p, so that
// a link inside the home pointing outside is seen for what it is. The part
// that does not exist yet is appended unchanged (it is already clean).
func realPath(p string) (string, error) {
	rest := ""
	cur := p
	for {
		r, err := filepath.EvalSymlinks(cur)
		if err == nil {
			if rest == "" {
				return r, nil
			}
			return filepath.Join(r, rest), nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return "", err
		}
		parent := filepath.Dir(cur)
		if parent == cur {
			return p, nil
		}
		rest = filepath.Join(filepath.Base(cur), rest)
		cur = parent
	}
}

// maxForwardAddresses bounds one forwarding line.
const maxForwardAddresses = 100

// splitAddresses splits a forwarding list on blanks and commas and checks
// each address can safely be a sendmail argument.
func splitAddresses(s string) ([]string, error) {
	fields := strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == '\t' || r == ',' })
	if len(fields) == 0 {
		return nil, fmt.Errorf("%w: no address to forward to", ErrBadDestination)
	}
	if len(fields) > maxForwardAddresses {
		return nil, fmt.Errorf("%w: more than %d forwarding addresses", ErrBadDestination, maxForwardAddresses)
	}
	for _, a := range fields {
		if err := checkAddress(a); err != nil {
			return nil, err
		}
	}
	return fields, nil
}

// checkAddress refuses what sendmail would read as an option or what is no
// address at all.
func checkAddress(a string) error {
	if a == "" || a[0] == '-' || len(a) > 512 {
		return fmt.Errorf("%w: forwarding address %q", ErrBadDestination, a)
	}
	for _, r := range a {
		if r <= 0x20 || r == 0x7f || r == '<' || r == '>' {
			return fmt.Errorf("%w: forwarding address %q", ErrBadDestination, a)
		}
	}
	return nil
}
