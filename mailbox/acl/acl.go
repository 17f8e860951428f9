// Package acl implements the access control lists of IMAP (RFC 4314) over
// Maildir++ folders, stored the way Courier stores them so that a Maildir
// moved from Courier keeps its ACLs, and one written here reads back in
// Courier.
//
// Storage (Courier's maildir/maildiraclt): a folder's ACL is the file
// "courierimapacl" in the folder's directory (the Maildir root for INBOX,
// Maildir/.Name for a folder). Each line is "identifier rights": the
// identifier, one or more spaces, the rights letters. Identifiers are
// "owner", "anyone" (or its synonym "anonymous"), "user=NAME",
// "group=NAME", "administrators", each optionally preceded by "-" for a
// negative right. A folder without the file takes its parent's ACL, up to
// INBOX, whose default is "owner" with every right. Courier writes the
// obsolete RFC 2086 letter "c" for the right to create subfolders; it is
// read here as RFC 4314 "k" and written back as "c". Lines Courier would
// refuse (an empty identifier, one with a space or control character) are
// skipped, as Courier skips them.
//
// The package knows nothing of IMAP sessions: it parses and writes lists,
// parses rights strings, and computes one user's rights from a list.
package acl

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Rights is a set of RFC 4314 rights, one bit per letter.
type Rights uint16

// The rights of RFC 4314 section 2.1, in the order it lists them.
const (
	Lookup         Rights = 1 << iota // l: the mailbox is visible to LIST
	Read                              // r: SELECT, EXAMINE, STATUS, FETCH, SEARCH, COPY from
	Seen                              // s: keep \Seen
	Write                             // w: keep flags other than \Seen and \Deleted
	Insert                            // i: APPEND and COPY into
	Post                              // p: send mail to the submission address
	Create                            // k: CREATE children, RENAME into
	DeleteMailbox                     // x: DELETE, RENAME away
	DeleteMessages                    // t: set or clear \Deleted
	Expunge                           // e: EXPUNGE
	Admin                             // a: SETACL, DELETEACL, GETACL, LISTRIGHTS
)

// letters are the rights in the order of the Rights bits: the canonical
// order in which rights are written.
const letters = "lrswipkxtea"

// All is every right; the owner of a mailbox always has them.
const All Rights = 1<<len(letters) - 1

// ErrBadRights is returned for a rights string with a letter that is not
// a right (RFC 4314 2: an unknown right is an error, never ignored).
var ErrBadRights = errors.New("acl: unknown right")

// ErrBadIdentifier is returned for an identifier that cannot be stored.
var ErrBadIdentifier = errors.New("acl: invalid identifier")

// Has reports whether r includes every right of need.
func (r Rights) Has(need Rights) bool { return r&need == need }

// String returns the letters of r in canonical order. The obsolete "c" and
// "d" are not included; see WithObsolete.
func (r Rights) String() string {
	var b strings.Builder
	for i := 0; i < len(letters); i++ {
		if r&(1<<i) != 0 {
			b.WriteByte(letters[i])
		}
	}
	return b.String()
}

// WithObsolete returns r's letters followed by the RFC 2086 rights it
// implies (RFC 4314 2.1.1): "c" when r has "k", "d" when it has "e", "t"
// and "x". Clients written for RFC 2086 look for them in MYRIGHTS and
// GETACL.
func (r Rights) WithObsolete() string {
	s := r.String()
	if r.Has(Create) {
		s += "c"
	}
	if r.Has(Expunge | DeleteMessages | DeleteMailbox) {
		s += "d"
	}
	return s
}

// ParseRights reads a rights string of SETACL (RFC 4314 3.1) without its
// "+" or "-" modifier. The obsolete "c" means "k" and "d" means "e", "t"
// and "x" (RFC 4314 2.1.1, the mapping Courier's rights follow: "c"
// creates, "x" deletes folders). The digits 0-9 are rights an
// implementation may define; none are defined here, so they are refused
// like any other unknown letter.
func ParseRights(s string) (Rights, error) {
	var r Rights
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case 'c':
			r |= Create
		case 'd':
			r |= Expunge | DeleteMessages | DeleteMailbox
		default:
			j := strings.IndexByte(letters, c)
			if j < 0 {
				return 0, fmt.Errorf("%w %q", ErrBadRights, c)
			}
			r |= 1 << j
		}
	}
	return r, nil
}

// parseStoredRights reads rights as Courier stores them: unknown letters
// are skipped (Courier keeps any letter; a future one must not make the
// whole line unreadable).
func parseStoredRights(s string) Rights {
	var r Rights
	for i := 0; i < len(s); i++ {
		if x, err := ParseRights(s[i : i+1]); err == nil {
			r |= x
		}
	}
	return r
}

// storedRights writes r as Courier stores it: "c" for the create right,
// the letters in alphabetical order (Courier's maildiracl sorts them, and
// writes "owner aceilrstwx").
func storedRights(r Rights) string {
	b := []byte(strings.Replace(r.String(), "k", "c", 1))
	slices.Sort(b)
	return string(b)
}

// Entry is one identifier and its rights. ID is in Courier's stored form:
// "owner", "anyone", "user=bob", "-user=bob", ...
type Entry struct {
	ID     string
	Rights Rights
}

// Negative reports whether the entry takes rights away.
func (e Entry) Negative() bool { return strings.HasPrefix(e.ID, "-") }

// List is a folder's ACL in file order.
type List []Entry

// ValidID reports whether id (stored form) can be kept in the file: not
// empty, no space or control character (Courier's rule), and not absurdly
// long.
func ValidID(id string) bool {
	base := strings.TrimPrefix(id, "-")
	if base == "" || len(id) > 255 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] == 0x7f {
			return false
		}
	}
	return true
}

// Parse reads a courierimapacl file. Unreadable lines are skipped; a later
// line for the same identifier replaces the earlier one, as in Courier.
func Parse(data []byte) List {
	var l List
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 1024), 64<<10)
	for sc.Scan() {
		line := sc.Text()
		id, rights, _ := strings.Cut(line, " ")
		rights = strings.TrimLeft(rights, " ")
		if !ValidID(id) {
			continue
		}
		l = l.Set(id, parseStoredRights(rights))
	}
	return l
}

// Marshal writes l in Courier's file format.
func (l List) Marshal() []byte {
	var b bytes.Buffer
	for _, e := range l {
		b.WriteString(e.ID)
		b.WriteByte(' ')
		b.WriteString(storedRights(e.Rights))
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// Find returns the entry for id.
func (l List) Find(id string) (Entry, bool) {
	for _, e := range l {
		if e.ID == id {
			return e, true
		}
	}
	return Entry{}, false
}

// Set returns l with id's rights replaced (or the entry added at the end).
func (l List) Set(id string, r Rights) List {
	out := make(List, 0, len(l)+1)
	found := false
	for _, e := range l {
		if e.ID == id {
			e.Rights = r
			found = true
		}
		out = append(out, e)
	}
	if !found {
		out = append(out, Entry{ID: id, Rights: r})
	}
	return out
}

// Delete returns l without id.
func (l List) Delete(id string) List {
	out := make(List, 0, len(l))
	for _, e := range l {
		if e.ID != id {
			out = append(out, e)
		}
	}
	return out
}

// Default is the ACL of a folder without a file and without a parent that
// has one: Courier's INBOX default.
func Default() List { return List{{ID: "owner", Rights: All}} }

// Rights computes what user may do under l (Courier's ACL2=UNION): the
// union of the rights of "anyone", "anonymous" and "user=USER" (and of
// "owner" when isOwner), minus the union of their negative rights. The
// owner always has every right: Postern, like Courier, refuses to lock an
// owner out of their own folder.
func (l List) Rights(user string, isOwner bool) Rights {
	return l.RightsOf(user, nil, isOwner)
}

// Administrators is the group whose members have every right on every
// folder, as in Courier ("administrators" is "group=administrators").
const Administrators = "administrators"

// RightsOf is Rights for a user who belongs to groups (Courier's account
// option "group=NAME"): "group=NAME" entries count for the members of
// NAME, and a member of the administrators group has every right, like
// the owner.
func (l List) RightsOf(user string, groups []string, isOwner bool) Rights {
	if isOwner {
		return All
	}
	member := func(id string) bool {
		name, ok := strings.CutPrefix(id, "group=")
		if !ok {
			return false
		}
		for _, g := range groups {
			if g == name {
				return true
			}
		}
		return false
	}
	if member("group=" + Administrators) {
		return All
	}
	var plus, minus Rights
	for _, e := range l {
		id := strings.TrimPrefix(e.ID, "-")
		if id == Administrators {
			id = "group=" + Administrators
		}
		if id != "anyone" && id != "anonymous" && id != "user="+user && !member(id) {
			continue
		}
		if e.Negative() {
			minus |= e.Rights
		} else {
			plus |= e.Rights
		}
	}
	return plus &^ minus
}

// Grants reports whether l gives some right to someone other than the
// owner and the administrators: whether the folder is shared.
func (l List) Grants() bool {
	for _, e := range l {
		if e.Negative() || e.Rights == 0 {
			continue
		}
		if e.ID != "owner" && e.ID != "administrators" && e.ID != "group=administrators" {
			return true
		}
	}
	return false
}

// FileName is Courier's name for a folder's ACL file.
const FileName = "courierimapacl"

// folderDir is the directory of a Maildir++ folder ("" or "INBOX" is the
// root).
func folderDir(root, folder string) string {
	if folder == "" || folder == "INBOX" {
		return root
	}
	return filepath.Join(root, "."+folder)
}

// ReadFolder returns the ACL of folder (Maildir++ name, "INBOX" for the inbox) in
// the Maildir at root: its own file, else its nearest parent's, else
// Default. A missing file is not an error.
func ReadFolder(root, folder string) (List, error) {
	for {
		data, err := os.ReadFile(filepath.Join(folderDir(root, folder), FileName))
		if err == nil {
			return Parse(data), nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("acl: read %s: %w", folder, err)
		}
		if folder == "" || folder == "INBOX" {
			return Default(), nil
		}
		i := strings.LastIndexByte(folder, '.')
		if i < 0 {
			folder = "INBOX"
		} else {
			folder = folder[:i]
		}
	}
}

// WriteFolder replaces folder's ACL file: written to a temporary file, synced,
// renamed over the old one.
func WriteFolder(root, folder string, l List) error {
	dir := folderDir(root, folder)
	f, err := os.CreateTemp(dir, ".acl-*")
	if err != nil {
		return fmt.Errorf("acl: write %s: %w", folder, err)
	}
	tmp := f.Name()
	_, err = f.Write(l.Marshal())
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, FileName))
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("acl: write %s: %w", folder, err)
	}
	return nil
}
