package imap

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"

	"postern/auth"
	"postern/mailbox/acl"
	"postern/mailbox/maildir"
)

// The shared namespace (RFC 2342 "other users"): another user's folder that
// grants this user the "l" right appears as "#shared.OWNER.FOLDER", OWNER
// being the owner's login name and FOLDER the folder's name as its owner
// sees it without the personal prefix ("INBOX" for the owner's inbox). The
// same names serve both namespace modes; the delimiter stays ".".
const (
	sharedRoot   = "#shared"
	sharedPrefix = sharedRoot + "."
)

// Errors of the shared namespace.
var (
	errNoSuchShared = errors.New("no such shared mailbox")
)

// sharedRegistry remembers which owners have granted rights on which of
// their folders, so that LIST finds other users' shared folders without
// scanning every account. It is a hint: rights always come from the
// folder's own ACL file, read at each use. The file (Options.SharedRegistry)
// holds one "OWNER<TAB>FOLDER" line per shared folder; SETACL and DELETEACL
// keep it current. Without a path the registry lives in memory only.
type sharedRegistry struct {
	path string

	mu     sync.Mutex
	loaded bool
	grants map[[2]string]bool // {owner, Maildir++ folder}
	// scanned: owners whose Maildir was scanned for ACL files since the
	// server started (registerSharedFolders).
	scanned map[string]bool
}

// firstScan reports whether owner's Maildir has not been scanned yet since
// the server started, and marks it scanned.
func (r *sharedRegistry) firstScan(owner string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.scanned[owner] {
		return false
	}
	if r.scanned == nil {
		r.scanned = map[string]bool{}
	}
	r.scanned[owner] = true
	return true
}

func (r *sharedRegistry) load() error {
	if r.loaded {
		return nil
	}
	r.grants = map[[2]string]bool{}
	if r.path != "" {
		data, err := os.ReadFile(r.path)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("imap: shared registry %s: %w", r.path, err)
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(make([]byte, 0, 4096), 64<<10)
		for sc.Scan() {
			owner, folder, ok := strings.Cut(sc.Text(), "\t")
			if ok && owner != "" && folder != "" {
				r.grants[[2]string{owner, folder}] = true
			}
		}
	}
	r.loaded = true
	return nil
}

// set records whether owner's folder grants rights to others.
func (r *sharedRegistry) set(owner, folder string, shared bool) error {
	if strings.ContainsAny(owner, "\t\n") || strings.ContainsAny(folder, "\t\n") {
		return fmt.Errorf("imap: shared registry: unusable name %q %q", owner, folder)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.load(); err != nil {
		return err
	}
	k := [2]string{owner, folder}
	if r.grants[k] == shared {
		return nil
	}
	if shared {
		r.grants[k] = true
	} else {
		delete(r.grants, k)
	}
	if r.path == "" {
		return nil
	}
	keys := make([][2]string, 0, len(r.grants))
	for k := range r.grants {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b [2]string) int { return strings.Compare(a[0]+"\t"+a[1], b[0]+"\t"+b[1]) })
	var b bytes.Buffer
	for _, k := range keys {
		b.WriteString(k[0] + "\t" + k[1] + "\n")
	}
	return writeFileAtomic(r.path, b.Bytes())
}

// owners returns the owners that share some folder, sorted.
func (r *sharedRegistry) owners() ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.load(); err != nil {
		return nil, err
	}
	var out []string
	for k := range r.grants {
		if !slices.Contains(out, k[0]) {
			out = append(out, k[0])
		}
	}
	slices.Sort(out)
	return out, nil
}

// writeFileAtomic writes path through a synced temporary file and a rename.
func writeFileAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// mailboxRef is a mailbox a command names, resolved to the Maildir that
// holds it: the session's own, or another user's in the shared namespace.
type mailboxRef struct {
	mail   *maildir.Maildir
	folder string // Maildir++ name (maildir.Inbox for the inbox)
	name   string // the IMAP name as this session sees it
	owner  string // the owner's account name
	rights acl.Rights
	// shared: another user's Maildir, held through the hub; release it.
	shared   bool
	mailPath string
	// fs: a filesystem-shared folder (Courier's "shared.NICK.FOLDER",
	// fsshared.go); mail is then the user's private view of it.
	fs *fsSharedRef
}

// resolveMailbox maps a mailbox name from a command to its Maildir and
// folder and computes this user's rights on it. A shared mailbox the user
// may not see ("l") is reported as not existing (RFC 4314 4). Release the
// ref with releaseRef.
func (s *session) resolveMailbox(imapName string) (*mailboxRef, result, bool) {
	if s.isFSSharedName(imapName) {
		ref, err := s.resolveFSShared(imapName)
		if err != nil {
			return nil, s.fsSharedResult(err, "shared mailbox"), false
		}
		return ref, result{}, true
	}
	if !s.isSharedName(imapName) {
		folder, err := s.folderName(imapName)
		if err != nil {
			return nil, nameResult(err), false
		}
		return &mailboxRef{mail: s.mail, folder: folder, name: s.imapName(folder), owner: s.user, rights: acl.All}, result{}, true
	}
	ref, err := s.resolveShared(imapName)
	if err != nil {
		if errors.Is(err, errNoSuchShared) || errors.Is(err, errBadMailboxName) {
			return nil, no("NONEXISTENT", "No such mailbox"), false
		}
		return nil, s.storageResult(err, "shared mailbox"), false
	}
	return ref, result{}, true
}

func (s *session) releaseRef(ref *mailboxRef) {
	if ref != nil && ref.shared {
		s.srv.hub.releaseMaildir(ref.mailPath)
		ref.shared = false
	}
}

// isSharedName reports whether a name is in the shared namespace.
func (s *session) isSharedName(name string) bool {
	return name == sharedRoot || strings.HasPrefix(name, sharedPrefix)
}

// resolveShared finds "#shared.OWNER.FOLDER". Owner names may hold the
// delimiter ("alice@example.test"), so OWNER is found among the owners the
// registry knows, the longest that fits first.
func (s *session) resolveShared(name string) (*mailboxRef, error) {
	if !strings.HasPrefix(name, sharedPrefix) {
		return nil, errNoSuchShared
	}
	rest := name[len(sharedPrefix):]
	owners, err := s.srv.shared.owners()
	if err != nil {
		return nil, err
	}
	slices.SortFunc(owners, func(a, b string) int { return len(b) - len(a) })
	for _, owner := range owners {
		if owner == s.user || !strings.HasPrefix(rest, owner+".") {
			continue
		}
		ref, err := s.openShared(owner, rest[len(owner)+1:])
		if errors.Is(err, errNoSuchShared) {
			continue
		}
		return ref, err
	}
	if s.isAdministrator() {
		// An administrator reaches every account, not only those that
		// share something: OWNER is the longest prefix that names one.
		for i := len(rest) - 1; i > 0; i-- {
			if rest[i] != '.' || rest[:i] == s.user || slices.Contains(owners, rest[:i]) {
				continue
			}
			ref, err := s.openShared(rest[:i], rest[i+1:])
			if errors.Is(err, errNoSuchShared) || errors.Is(err, errBadMailboxName) {
				continue // not an account, or not a folder name after it
			}
			return ref, err
		}
	}
	return nil, errNoSuchShared
}

// isAdministrator reports whether the user is in the administrators group.
func (s *session) isAdministrator() bool {
	return slices.Contains(s.groups(), acl.Administrators)
}

// openShared opens owner's folder (the IMAP name without any prefix) for
// this session, when the session may see it.
func (s *session) openShared(owner, folderIMAP string) (*mailboxRef, error) {
	folder := canonicalInbox(folderIMAP)
	if folder != maildir.Inbox {
		var err error
		if s.utf8Names() {
			if !utf8.ValidString(folder) {
				return nil, errBadMailboxName
			}
			folder = encodeMUTF7(folder)
		}
		if err = maildir.ValidFolderName(folder); err != nil || strings.EqualFold(folder, "INBOX") {
			return nil, errBadMailboxName
		}
	}
	if s.srv.opt.Auth == nil {
		return nil, errNoSuchShared
	}
	ctx, cancel := context.WithTimeout(context.Background(), authTimeout)
	defer cancel()
	acct, err := s.srv.opt.Auth.Lookup(ctx, owner)
	if errors.Is(err, auth.ErrNoSuchUser) {
		return nil, errNoSuchShared
	}
	if err != nil {
		return nil, err
	}
	path := acct.MaildirPath()
	mail, err := s.srv.hub.openMaildir(acct)
	if err != nil {
		return nil, err
	}
	ref := &mailboxRef{mail: mail, folder: folder, owner: acct.Name, shared: true, mailPath: path}
	ref.name = sharedPrefix + acct.Name + "." + s.imapFolderPart(folder)
	list, err := acl.ReadFolder(mail.Root(), folder)
	if err == nil {
		ref.rights = list.RightsOf(s.user, s.groups(), false)
		if !ref.rights.Has(acl.Lookup) {
			err = errNoSuchShared
		} else if _, ferr := mail.Folder(folder); ferr != nil {
			err = errNoSuchShared
			if !errors.Is(ferr, maildir.ErrNoFolder) {
				err = ferr
			}
		}
	}
	if err != nil {
		s.releaseRef(ref)
		return nil, err
	}
	return ref, nil
}

// imapFolderPart is a folder's name inside the shared namespace: as its
// owner names it, without the personal prefix.
func (s *session) imapFolderPart(folder string) string {
	if folder == maildir.Inbox {
		return "INBOX"
	}
	if s.utf8Names() {
		if dec, err := decodeMUTF7(folder); err == nil {
			return dec
		}
	}
	return folder
}

// groups are the session user's ACL groups: Courier's account option
// "group=NAME" (one group, as in Courier).
func (s *session) groups() []string {
	if s.account == nil {
		return nil
	}
	if g := strings.TrimSpace(s.account.Options["group"]); g != "" {
		return []string{g}
	}
	return nil
}

// sharedEntries lists the other users' folders this user may see ("l"),
// by IMAP name. Only the owners in the registry are looked at; each of
// their folders is checked against its ACL file, inherited ACLs included.
func (s *session) sharedEntries() (map[string]*mailboxRef, error) {
	out := map[string]*mailboxRef{}
	owners, err := s.srv.shared.owners()
	if err != nil || s.srv.opt.Auth == nil {
		return out, err
	}
	for _, owner := range owners {
		if owner == s.user {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), authTimeout)
		acct, err := s.srv.opt.Auth.Lookup(ctx, owner)
		cancel()
		if err != nil {
			s.log.Debug("imap: shared folders of unknown owner", "owner", owner, "err", err)
			continue
		}
		path := acct.MaildirPath()
		mail, err := s.srv.hub.openMaildir(acct)
		if err != nil {
			s.log.Warn("imap: open shared Maildir", "owner", owner, "err", err)
			continue
		}
		folders, err := mail.Folders()
		if err != nil {
			s.srv.hub.releaseMaildir(path)
			continue
		}
		lists := effectiveACLs(mail.Root(), folders)
		for _, f := range folders {
			list, ok := lists[f]
			if !ok {
				continue
			}
			r := list.RightsOf(s.user, s.groups(), false)
			if !r.Has(acl.Lookup) {
				continue
			}
			name := sharedPrefix + acct.Name + "." + s.imapFolderPart(f)
			out[name] = &mailboxRef{folder: f, name: name, owner: acct.Name, rights: r}
		}
		s.srv.hub.releaseMaildir(path)
	}
	return out, nil
}

// Identifiers on the wire (RFC 4314 3) and in the file (Courier's form):
// a login name "bob" is stored as "user=bob"; "anyone", "anonymous",
// "owner", "administrators" and "group=NAME" are kept as they are; a
// leading "-" (negative rights) is kept in front.
func storedIdentifier(wire string) (string, bool) {
	neg := strings.HasPrefix(wire, "-")
	base := strings.TrimPrefix(wire, "-")
	switch {
	case base == "":
		return "", false
	case base == "anyone", base == "anonymous", base == "owner", base == "administrators":
	case strings.HasPrefix(base, "user=") || strings.HasPrefix(base, "group="):
		// The name must read back as itself: not empty, not "-..." (a
		// negative right), not a special identifier ("user=anyone" would
		// be shown as "anyone"), not another prefixed form.
		_, name, _ := strings.Cut(base, "=")
		switch {
		case name == "", strings.HasPrefix(name, "-"),
			name == "anyone", name == "anonymous", name == "owner", name == "administrators",
			strings.HasPrefix(name, "user="), strings.HasPrefix(name, "group="):
			return "", false
		}
	case strings.HasPrefix(base, "-"):
		return "", false
	default:
		base = "user=" + base
	}
	id := base
	if neg {
		id = "-" + base
	}
	if !acl.ValidID(id) || !utf8.ValidString(id) {
		return "", false
	}
	return id, true
}

// wireIdentifier reverses storedIdentifier.
func wireIdentifier(stored string) string {
	neg := strings.HasPrefix(stored, "-")
	base := strings.TrimPrefix(stored, "-")
	base = strings.TrimPrefix(base, "user=")
	if neg {
		return "-" + base
	}
	return base
}

// maySetSeen reports whether FETCH may set \Seen as a side effect: only
// with the "s" right (RFC 4314 4); without it the flag stays as it was.
func (sel *selected) maySetSeen() bool { return sel.rights.Has(acl.Seen) }

// storeRights are the rights a STORE needs (RFC 4314 4): "s" for \Seen,
// "t" for \Deleted, "w" for every other flag and keyword. Replacing the
// flags (STORE FLAGS) may change each of them, so it needs all three.
func storeRights(a storeArgs) acl.Rights {
	if a.op == storeReplace {
		return acl.Seen | acl.DeleteMessages | acl.Write
	}
	var need acl.Rights
	for i := 0; i < len(a.flags.letters); i++ {
		switch a.flags.letters[i] {
		case maildir.FlagSeen:
			need |= acl.Seen
		case maildir.FlagTrashed:
			need |= acl.DeleteMessages
		default:
			need |= acl.Write
		}
	}
	if len(a.flags.keywords) > 0 {
		need |= acl.Write
	}
	return need
}

// registerSharedFolders brings the registry up to date with the ACL files
// in the user's own Maildir at the user's first login since the server
// started: a Maildir moved from Courier, or ACLs set with Courier's
// maildiracl, are found without a full rebuild. Later logins skip it
// (changes made here update the registry directly); it reads one file per
// folder. Only the folders' own files count; inherited ACLs need no entry
// because LIST looks at every folder of a registered owner.
func (s *session) registerSharedFolders() {
	if !s.srv.shared.firstScan(s.user) {
		return
	}
	folders, err := s.mail.Folders()
	if err != nil {
		s.log.Warn("imap: list folders for the shared registry", "err", err)
		return
	}
	for _, f := range folders {
		data, err := os.ReadFile(filepath.Join(folderPath(s.mail.Root(), f), acl.FileName))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			s.log.Warn("imap: read ACL", "folder", f, "err", err)
			continue
		}
		if err := s.srv.shared.set(s.user, f, acl.Parse(data).Grants()); err != nil {
			s.log.Warn("imap: shared registry", "err", err)
		}
	}
}

// folderPath is a Maildir++ folder's directory.
func folderPath(root, folder string) string {
	if folder == maildir.Inbox {
		return root
	}
	return filepath.Join(root, "."+folder)
}

// writeLimitedPermanentFlags lists only the flags the ACL rights let the
// session store in a shared mailbox (RFC 4314 4: "s" for \Seen, "t" for
// \Deleted, "w" for the others and for new keywords, "\*").
func (sess *session) writeLimitedPermanentFlags(r acl.Rights) {
	var flags []string
	if r.Has(acl.Write) {
		flags = append(flags, `\Answered`, `\Flagged`)
	}
	if r.Has(acl.DeleteMessages) {
		flags = append(flags, `\Deleted`)
	}
	if r.Has(acl.Seen) {
		flags = append(flags, `\Seen`)
	}
	if r.Has(acl.Write) {
		flags = append(flags, `\Draft`)
		flags = append(flags, sortedKeys(sess.sel.keywords)...)
		flags = append(flags, `\*`)
	}
	sess.w.line(`* OK [PERMANENTFLAGS (`).raw(strings.Join(flags, " ")).raw(`)] Flags permitted by your rights`).end()
}

// effectiveACLs is acl.ReadFolder for every folder of a Maildir at once:
// each folder's own file is read once, and a folder without one takes its
// nearest parent's from the same pass. A folder whose file cannot be read
// is left out (not shared, as far as LIST knows).
func effectiveACLs(root string, folders []string) map[string]acl.List {
	out := make(map[string]acl.List, len(folders))
	bad := map[string]bool{}
	var get func(f string) (acl.List, bool)
	get = func(f string) (acl.List, bool) {
		if l, ok := out[f]; ok {
			return l, true
		}
		if bad[f] {
			return nil, false
		}
		data, err := os.ReadFile(filepath.Join(folderPath(root, f), acl.FileName))
		var l acl.List
		switch {
		case err == nil:
			l = acl.Parse(data)
		case !errors.Is(err, os.ErrNotExist):
			bad[f] = true
			return nil, false
		case f == maildir.Inbox:
			l = acl.Default()
		default:
			parent := maildir.Inbox
			if i := strings.LastIndexByte(f, delimiter); i > 0 {
				parent = f[:i]
			}
			var ok bool
			if l, ok = get(parent); !ok {
				bad[f] = true
				return nil, false
			}
		}
		out[f] = l
		return l, true
	}
	for _, f := range folders {
		get(f)
	}
	return out
}

// subscribeShared (UN)SUBSCRIBEs a shared mailbox. The name is kept in
// courierimapsubscribed as it is ("#shared.alice.Work", modified UTF-7),
// beside Courier's "INBOX.x" lines. Subscribing needs the mailbox to be
// visible; unsubscribing works for any name, so a client can drop a
// subscription to a folder that is no longer shared.
func (s *session) subscribeShared(name string, on bool) result {
	stored := name
	if s.utf8Names() {
		if !utf8.ValidString(name) {
			return nameResult(errBadMailboxName)
		}
		stored = encodeMUTF7(name)
	}
	if len(stored) > 1024 || strings.ContainsAny(stored, "\r\n\x00") {
		return nameResult(errBadMailboxName)
	}
	what := "UNSUBSCRIBE"
	if on {
		what = "SUBSCRIBE"
		ref, r, found := s.resolveMailbox(name)
		if !found {
			return r
		}
		stored = ref.name
		if s.utf8Names() {
			stored = encodeMUTF7(ref.name)
		}
		s.releaseRef(ref)
	}
	if err := s.mail.Subscribe(stored, on); err != nil {
		return s.storageResult(err, what)
	}
	return ok(what + " completed")
}

// subscribedName maps a line of courierimapsubscribed to the name shown to
// this session: a personal folder in Courier's "INBOX.x" form, or a
// shared mailbox kept by subscribeShared.
func (s *session) subscribedName(sub string) (string, bool) {
	if s.isSharedName(sub) || strings.HasPrefix(sub, fsSharedPrefix) {
		if s.utf8Names() {
			if dec, err := decodeMUTF7(sub); err == nil {
				return dec, true
			}
		}
		return sub, true
	}
	folder, ok := folderFromSubscription(sub)
	if !ok {
		return "", false
	}
	return s.imapName(folder), true
}
