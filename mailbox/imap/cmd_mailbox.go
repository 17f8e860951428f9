package imap

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"postern/mailbox/acl"
	"postern/mailbox/maildir"
)

// Mailbox management commands of the authenticated state (RFC 3501 6.3),
// NAMESPACE (RFC 2342). LIST carries CHILDREN (RFC 3348) and SPECIAL-USE
// (RFC 6154) attributes.
func mailboxCommands() []*commandSpec {
	return []*commandSpec{
		{name: "CREATE", states: authenticated, parse: parseMailboxArg, exec: execCreate, expungeOK: true},
		{name: "DELETE", states: authenticated, parse: parseMailboxArg, exec: execDelete, expungeOK: true},
		{name: "RENAME", states: authenticated, parse: parseTwoMailboxes, exec: execRename, expungeOK: true},
		{name: "SUBSCRIBE", states: authenticated, parse: parseMailboxArg, exec: execSubscribe, expungeOK: true},
		{name: "UNSUBSCRIBE", states: authenticated, parse: parseMailboxArg, exec: execUnsubscribe, expungeOK: true},
		{name: "LIST", states: authenticated, caps: []string{"CHILDREN", "SPECIAL-USE", "LIST-EXTENDED", "LIST-STATUS"}, parse: parseListExtended, exec: execList, expungeOK: true},
		{name: "LSUB", states: authenticated, parse: parseListArgs, exec: execLsub, expungeOK: true},
		{name: "STATUS", states: authenticated, caps: []string{"STATUS=SIZE"}, parse: parseStatus, exec: execStatus, expungeOK: true},
		{name: "NAMESPACE", states: authenticated, caps: []string{"NAMESPACE"}, exec: execNamespace, expungeOK: true},
	}
}

func parseMailboxArg(d *decoder) (any, error) {
	if err := d.sp(); err != nil {
		return nil, err
	}
	return d.astring()
}

func parseTwoMailboxes(d *decoder) (any, error) {
	if err := d.sp(); err != nil {
		return nil, err
	}
	a, err := d.astring()
	if err != nil {
		return nil, err
	}
	if err := d.sp(); err != nil {
		return nil, err
	}
	b, err := d.astring()
	if err != nil {
		return nil, err
	}
	return [2]string{a, b}, nil
}

func execCreate(s *session, c *command) result {
	name := c.args.(string)
	// A trailing delimiter only says the mailbox will hold children
	// (RFC 3501 6.3.3); Maildir++ needs nothing special for that.
	name = strings.TrimSuffix(name, string(delimiter))
	if s.isSharedName(name) {
		return s.createShared(name)
	}
	folder, err := s.folderName(name)
	if err != nil {
		return nameResult(err)
	}
	if folder == maildir.Inbox {
		return no("ALREADYEXISTS", "INBOX always exists")
	}
	if err := s.mail.CreateFolder(folder); err != nil {
		return s.storageResult(err, "CREATE")
	}
	return s.createdResult(s.mail, folder)
}

// createdResult is CREATE's answer for folder, just made in md: with the
// new mailbox's MAILBOXID (RFC 8474 4.1) when it can be had.
func (s *session) createdResult(md *maildir.Maildir, folder string) result {
	if f, err := md.Folder(folder); err == nil {
		if id := s.mailboxIDOf(f); id != "" {
			return okCode("MAILBOXID ("+id+")", "CREATE completed")
		}
	}
	return ok("CREATE completed")
}

func execDelete(s *session, c *command) result {
	if s.isSharedName(c.args.(string)) {
		return s.deleteShared(c.args.(string))
	}
	folder, err := s.folderName(c.args.(string))
	if err != nil {
		return nameResult(err)
	}
	if folder == maildir.Inbox {
		return no("CANNOT", "INBOX cannot be deleted")
	}
	selectedGone := s.sel != nil && !s.sel.ref.shared && s.sel.folder.Name() == folder
	if err := s.mail.DeleteFolder(folder); err != nil {
		return s.storageResult(err, "DELETE")
	}
	// A folder created later under this name starts with a fresh index
	// and no ACL.
	s.srv.hub.forgetIndex(filepath.Join(s.mail.Root(), "."+folder))
	s.aclFolderGone(s.user, folder)
	if selectedGone {
		// The client's view is of a mailbox that no longer exists, and
		// IMAP4rev1 has no way to say so in the selected state; as Dovecot
		// does, the session ends after the tagged OK.
		s.closeSelected()
		s.closeReason = "selected mailbox was deleted, have to disconnect"
	}
	return ok("DELETE completed")
}

func execRename(s *session, c *command) result {
	names := c.args.([2]string)
	from, err := s.folderName(names[0])
	if err != nil {
		return nameResult(err)
	}
	to, err := s.folderName(strings.TrimSuffix(names[1], string(delimiter)))
	if err != nil {
		return nameResult(err)
	}
	if to == maildir.Inbox {
		return no("ALREADYEXISTS", "INBOX always exists")
	}
	if from == maildir.Inbox {
		return s.renameInbox(to)
	}
	if err := s.mail.RenameFolder(from, to); err != nil {
		return s.storageResult(err, "RENAME")
	}
	// The index file moved with the directory; an idle cached index of the
	// old path is dropped so that the new name reopens it from its file.
	s.srv.hub.forgetIndex(filepath.Join(s.mail.Root(), "."+from))
	s.followRename(from, to)
	return ok("RENAME completed")
}

// followRename keeps the selected mailbox selected when it (or a parent of
// it) was renamed: the UID database moved with the directory, so the view
// stays valid under the new name.
func (s *session) followRename(from, to string) {
	sel := s.sel
	if sel == nil || sel.ref.shared {
		return
	}
	cur := sel.folder.Name()
	var renamed string
	switch {
	case cur == from:
		renamed = to
	case strings.HasPrefix(cur, from+string(delimiter)):
		renamed = to + cur[len(from):]
	default:
		return
	}
	f, err := s.mail.Folder(renamed)
	if err != nil {
		s.log.Warn("imap: selected folder renamed, cannot follow", "folder", renamed, "err", err)
		return
	}
	s.srv.hub.leave(sel.shared, s)
	sel.shared = s.srv.hub.join(f, s)
	sel.folder = f
	sel.name = s.imapName(renamed)
}

// renameInbox moves every message of INBOX to a new folder and leaves INBOX
// empty, as RFC 3501 6.3.5 defines renaming INBOX.
func (s *session) renameInbox(to string) result {
	if err := s.mail.CreateFolder(to); err != nil {
		return s.storageResult(err, "RENAME")
	}
	src, err := s.mail.Folder(maildir.Inbox)
	if err != nil {
		return s.storageResult(err, "RENAME")
	}
	dst, err := s.mail.Folder(to)
	if err != nil {
		return s.storageResult(err, "RENAME")
	}
	snap, err := src.Sync(false)
	if err != nil {
		return s.storageResult(err, "RENAME")
	}
	for _, m := range snap.Messages {
		if _, err := src.CopyTo(dst, m.Key); err != nil {
			if errors.Is(err, maildir.ErrNoMessage) {
				continue
			}
			return s.storageResult(err, "RENAME")
		}
		if err := src.Remove(m.Key); err != nil && !errors.Is(err, maildir.ErrNoMessage) {
			return s.storageResult(err, "RENAME")
		}
	}
	s.srv.hub.notify(src.Path(), s)
	if s.sel != nil && s.sel.folder.Path() == src.Path() {
		s.markChanged()
	}
	return ok("RENAME completed")
}

func execSubscribe(s *session, c *command) result {
	if s.isFSSharedName(c.args.(string)) {
		return s.subscribeFSShared(c.args.(string), true)
	}
	if s.isSharedName(c.args.(string)) {
		return s.subscribeShared(c.args.(string), true)
	}
	folder, err := s.folderName(c.args.(string))
	if err != nil {
		return nameResult(err)
	}
	if _, err := s.mail.Folder(folder); err != nil {
		return s.storageResult(err, "SUBSCRIBE")
	}
	if err := s.mail.Subscribe(subscriptionName(folder), true); err != nil {
		return s.storageResult(err, "SUBSCRIBE")
	}
	return ok("SUBSCRIBE completed")
}

func execUnsubscribe(s *session, c *command) result {
	if s.isFSSharedName(c.args.(string)) {
		return s.subscribeFSShared(c.args.(string), false)
	}
	if s.isSharedName(c.args.(string)) {
		return s.subscribeShared(c.args.(string), false)
	}
	folder, err := s.folderName(c.args.(string))
	if err != nil {
		// Let clients drop subscriptions to names we would refuse now.
		folder = c.args.(string)
	}
	if err := s.mail.Subscribe(subscriptionName(folder), false); err != nil {
		return s.storageResult(err, "UNSUBSCRIBE")
	}
	return ok("UNSUBSCRIBE completed")
}

type listArgs struct {
	ref, pattern string
	ext          *listExtended // nil for a plain RFC 3501 LIST or LSUB
}

func parseListArgs(d *decoder) (any, error) {
	if err := d.sp(); err != nil {
		return nil, err
	}
	ref, err := d.astring()
	if err != nil {
		return nil, err
	}
	if err := d.sp(); err != nil {
		return nil, err
	}
	pat, err := d.listMailbox()
	if err != nil {
		return nil, err
	}
	if len(ref)+len(pat) > 1024 {
		return nil, syntaxErr("LIST pattern too long")
	}
	return listArgs{ref: ref, pattern: pat}, nil
}

// listEntry is one name LIST or LSUB may return.
type listEntry struct {
	name     string // IMAP name
	folder   string // Maildir++ name, "" when the name only exists as a parent
	children bool
}

// hierarchy returns every folder and every implied parent, by IMAP name.
func (s *session) hierarchy() (map[string]*listEntry, error) {
	folders, err := s.mail.Folders()
	if err != nil {
		return nil, err
	}
	entries := map[string]*listEntry{}
	for _, f := range folders {
		name := s.imapName(f)
		e := entries[name]
		if e == nil {
			e = &listEntry{name: name}
			entries[name] = e
		}
		e.folder = f
		// Parents: "A.B.C" implies "A.B" and "A".
		for i := strings.LastIndexByte(name, delimiter); i > 0; i = strings.LastIndexByte(name[:i], delimiter) {
			p := name[:i]
			pe := entries[p]
			if pe == nil {
				pe = &listEntry{name: p}
				entries[p] = pe
			}
			pe.children = true
		}
	}
	s.addSharedEntries(entries)
	s.addFSSharedEntries(entries)
	return entries, nil
}

// addSharedEntries adds the other users' folders this user may see, with
// their parents: "#shared", "#shared.OWNER" and the folder's own parents.
// Owner names may contain the delimiter, so parents are not derived by
// splitting the whole name.
func (s *session) addSharedEntries(entries map[string]*listEntry) {
	shared, err := s.sharedEntries()
	if err != nil {
		s.log.Warn("imap: list shared folders", "err", err)
	}
	parent := func(name string) {
		if pe := entries[name]; pe != nil {
			pe.children = true
			return
		}
		entries[name] = &listEntry{name: name, children: true}
	}
	for name, ref := range shared {
		e := entries[name]
		if e == nil {
			e = &listEntry{name: name}
			entries[name] = e
		}
		// folder is the IMAP name here: never a special-use name, and
		// only tested for being non-empty (selectable).
		e.folder = name
		base := sharedPrefix + ref.owner
		parent(sharedRoot)
		parent(base)
		part := name[len(base)+1:]
		for i := strings.LastIndexByte(part, delimiter); i > 0; i = strings.LastIndexByte(part[:i], delimiter) {
			parent(base + "." + part[:i])
		}
	}
}

func listPattern(a listArgs) string {
	// RFC 3501 6.3.8: the reference is prefixed to the pattern.
	return canonicalInbox(a.ref + a.pattern)
}

func execList(s *session, c *command) result {
	a := c.args.(listArgs)
	if a.ext != nil {
		return s.listExtended(a)
	}
	if a.pattern == "" {
		// The hierarchy delimiter (RFC 3501 6.3.8).
		s.w.line(`* LIST (\Noselect) "." ""`).end()
		return ok("LIST completed")
	}
	entries, err := s.hierarchy()
	if err != nil {
		return s.storageResult(err, "LIST")
	}
	pattern := listPattern(a)
	trailingPercent := strings.HasSuffix(pattern, "%")
	for _, e := range sortedEntries(entries) {
		if !matchPattern(pattern, e.name) {
			continue
		}
		if e.folder == "" && !trailingPercent && !strings.Contains(pattern, "*") {
			continue
		}
		var attrs []string
		if e.folder == "" {
			// The name exists only as a parent. IMAP4rev2 calls that
			// \NonExistent (RFC 9051 7.3.1; it implies \Noselect).
			attrs = append(attrs, s.parentOnlyAttr())
		}
		if e.children {
			attrs = append(attrs, `\HasChildren`)
		} else {
			attrs = append(attrs, `\HasNoChildren`)
		}
		if su := specialUseAttr(e.folder); su != "" {
			attrs = append(attrs, su)
		}
		s.writeListLine("LIST", attrs, e.name)
	}
	return ok("LIST completed")
}

func (s *session) writeListLine(kind string, attrs []string, name string) {
	s.w.line("* ").raw(kind).raw(" (").raw(strings.Join(attrs, " ")).raw(`) "." `)
	s.w.buf = appendAstring(s.w.buf, name)
	s.w.end()
}

func sortedEntries(m map[string]*listEntry) []*listEntry {
	out := make([]*listEntry, 0, len(m))
	for _, e := range m {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool {
		// INBOX first, as clients expect.
		if (out[i].name == "INBOX") != (out[j].name == "INBOX") {
			return out[i].name == "INBOX"
		}
		return out[i].name < out[j].name
	})
	return out
}

func execLsub(s *session, c *command) result {
	a := c.args.(listArgs)
	if a.pattern == "" {
		s.w.line(`* LSUB (\Noselect) "." ""`).end()
		return ok("LSUB completed")
	}
	subs, err := s.subscriptions()
	if err != nil {
		return s.storageResult(err, "LSUB")
	}
	entries, err := s.hierarchy()
	if err != nil {
		return s.storageResult(err, "LSUB")
	}
	pattern := listPattern(a)
	seen := map[string]bool{}
	var names []string
	for _, sub := range subs {
		name, ok := s.subscribedName(sub)
		if !ok {
			continue
		}
		if !seen[name] {
			seen[name] = true
			names = append(names, name)
		}
	}
	slices.Sort(names)
	// RFC 3501 6.3.9: with "%", a parent of a subscribed name that is not
	// itself subscribed is returned with \Noselect.
	implied := map[string]bool{}
	if strings.HasSuffix(pattern, "%") {
		for _, n := range names {
			for i := strings.IndexByte(n, delimiter); i > 0; i = indexFrom(n, i+1) {
				p := n[:i]
				if !seen[p] && matchPattern(pattern, p) {
					implied[p] = true
				}
			}
		}
	}
	for _, n := range names {
		if !matchPattern(pattern, n) {
			continue
		}
		var attrs []string
		if e := entries[n]; e == nil || e.folder == "" {
			attrs = append(attrs, `\Noselect`)
		}
		s.writeListLine("LSUB", attrs, n)
	}
	for _, p := range sortedKeys(implied) {
		s.writeListLine("LSUB", []string{`\Noselect`}, p)
	}
	return ok("LSUB completed")
}

func indexFrom(s string, from int) int {
	if from >= len(s) {
		return -1
	}
	i := strings.IndexByte(s[from:], delimiter)
	if i < 0 {
		return -1
	}
	return from + i
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

type statusArgs struct {
	mailbox string
	items   []string
}

func parseStatus(d *decoder) (any, error) {
	if err := d.sp(); err != nil {
		return nil, err
	}
	mb, err := d.astring()
	if err != nil {
		return nil, err
	}
	if err := d.sp(); err != nil {
		return nil, err
	}
	items, err := d.statusItemList()
	if err != nil {
		return nil, err
	}
	return statusArgs{mb, items}, nil
}

// statusItemList reads "(item *(SP item))" of STATUS and LIST-STATUS.
func (d *decoder) statusItemList() ([]string, error) {
	if err := d.expect('(', "'('"); err != nil {
		return nil, err
	}
	var items []string
	for {
		a, err := d.atom()
		if err != nil {
			return nil, err
		}
		a = strings.ToUpper(a)
		switch a {
		case "MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "DELETED", "SIZE", "HIGHESTMODSEQ", "APPENDLIMIT", "MAILBOXID":
		default:
			return nil, syntaxErr("unknown STATUS item %s", truncate(a, 40))
		}
		if len(items) < 16 {
			items = append(items, a)
		}
		b, err := d.peek()
		if err != nil {
			return nil, err
		}
		if b == ')' {
			d.readByte()
			break
		}
		if err := d.sp(); err != nil {
			return nil, err
		}
	}
	return items, nil
}

func execStatus(s *session, c *command) result {
	a := c.args.(statusArgs)
	if s.rev2() && slices.Contains(a.items, "RECENT") {
		return bad("RECENT is not a STATUS item in IMAP4rev2")
	}
	// A filesystem-shared folder not subscribed to is answered without
	// subscribing to it (resolveMailbox would make its private view).
	if handled, err := s.writeUnsubscribedFSSharedStatus(a.mailbox, a.items); handled {
		if err != nil {
			return s.fsSharedResult(err, "STATUS")
		}
		return ok("STATUS completed")
	}
	ref, r, found := s.resolveMailbox(a.mailbox)
	if !found {
		return r
	}
	defer s.releaseRef(ref)
	if !ref.rights.Has(acl.Read) {
		return noPerm() // RFC 4314 4: STATUS needs "r"
	}
	f, err := ref.mail.Folder(ref.folder)
	if err == nil {
		err = s.writeStatusFolder(f, ref.name, a.items)
	}
	if err != nil {
		return s.storageResult(err, "STATUS")
	}
	return ok("STATUS completed")
}

// writeStatus sends "* STATUS name (items)" for a Maildir++ folder name of
// the session's own Maildir.
func (s *session) writeStatus(folder string, items []string) error {
	f, err := s.mail.Folder(folder)
	if err != nil {
		return err
	}
	return s.writeStatusFolder(f, s.imapName(folder), items)
}

// writeStatusByName is writeStatus for a mailbox by its IMAP name, the
// shared namespace included; a mailbox without "r" gets no STATUS.
func (s *session) writeStatusByName(name string, items []string) error {
	if handled, err := s.writeUnsubscribedFSSharedStatus(name, items); handled {
		return err
	}
	ref, _, found := s.resolveMailbox(name)
	if !found {
		return maildir.ErrNoFolder
	}
	defer s.releaseRef(ref)
	if !ref.rights.Has(acl.Read) {
		return nil
	}
	f, err := ref.mail.Folder(ref.folder)
	if err != nil {
		return err
	}
	return s.writeStatusFolder(f, ref.name, items)
}

// writeStatusFolder sends "* STATUS name (items)" for an open folder.
func (s *session) writeStatusFolder(f *maildir.Folder, name string, items []string) error {
	var err error
	wantHighest, wantSize := slices.Contains(items, "HIGHESTMODSEQ"), slices.Contains(items, "SIZE")
	var ix *folderIndex
	if _, serr := os.Stat(filepath.Join(f.Path(), indexFileName)); serr == nil || wantHighest || wantSize {
		// A folder with an index is taken up from it (a client's STATUS of
		// every folder after a restart lists no big cur/ again).
		ix = s.srv.hub.openIndex(f)
		defer s.srv.hub.releaseIndex(ix)
		ix.feed(f)
	}
	// STATUS does not move new/ to cur/: that would take \Recent away from
	// the session that selects the folder next (RFC 3501 6.3.10).
	snap, err := f.Sync(false)
	if err != nil {
		return err
	}
	var highest uint64
	var size int64
	if wantHighest || wantSize {
		ix.merge(snap)
		if wantHighest {
			s.enableCondstore() // RFC 7162 3.1: a CONDSTORE-enabling command
			highest = ix.highest()
		}
		if wantSize {
			size, err = mailboxSize(f, snap, ix)
		}
		if err != nil {
			return err
		}
	}
	var unseen, deleted uint64
	recent := uint64(len(snap.NewUIDs))
	for i := range snap.Messages {
		m := &snap.Messages[i]
		if strings.IndexByte(m.Flags, maildir.FlagSeen) < 0 {
			unseen++
		}
		if strings.IndexByte(m.Flags, maildir.FlagTrashed) >= 0 {
			deleted++
		}
	}
	var mbID string
	if slices.Contains(items, "MAILBOXID") {
		// RFC 8474 4.3; a folder whose id cannot be created (not
		// writable) answers without the item rather than fail.
		mbID = s.mailboxIDOf(f)
	}
	w := s.w.line("* STATUS ")
	w.buf = appendAstring(w.buf, name)
	w.raw(" (")
	first := true
	for _, it := range items {
		if it == "MAILBOXID" && mbID == "" {
			continue
		}
		if !first {
			w.byte(' ')
		}
		first = false
		w.raw(it).byte(' ')
		switch it {
		case "MAILBOXID":
			w.byte('(').raw(mbID).byte(')')
		case "MESSAGES":
			w.num(uint64(len(snap.Messages)))
		case "RECENT":
			w.num(recent)
		case "UIDNEXT":
			w.num(uint64(snap.UIDNext))
		case "UIDVALIDITY":
			w.num(uint64(snap.UIDValidity))
		case "UNSEEN":
			w.num(unseen)
		case "DELETED":
			w.num(deleted) // RFC 9051 6.3.11: messages with \Deleted
		case "SIZE":
			w.num(uint64(size)) // RFC 8438: the sum of RFC822.SIZE
		case "HIGHESTMODSEQ":
			w.num(highest)
		case "APPENDLIMIT":
			w.num(uint64(s.srv.opt.MaxLiteralSize)) // RFC 7889 4
		}
	}
	return w.byte(')').end()
}

// mailboxSize is STATUS SIZE (RFC 8438): the sum of the messages'
// RFC822.SIZE, the size in CRLF form. Each comes from the file name
// (",W="), else from the folder index; a message neither knows is counted
// once and its size kept in the index.
func mailboxSize(f *maildir.Folder, snap *maildir.Snapshot, ix *folderIndex) (int64, error) {
	var total int64
	for i := range snap.Messages {
		m := &snap.Messages[i]
		n := m.VirtualSize
		if n <= 0 {
			n = ix.crlfSize(m.UID)
		}
		if n <= 0 {
			file, err := f.Open(m.Key)
			if errors.Is(err, maildir.ErrNoMessage) {
				continue // expunged meanwhile
			}
			if err != nil {
				return 0, err
			}
			n, err = crlfSize(file)
			file.Close()
			if err != nil {
				return 0, fmt.Errorf("imap: size of message %d: %w", m.UID, err)
			}
			ix.setCRLFSize(m.UID, n)
		}
		total += n
	}
	return total, nil
}

// execNamespace (RFC 2342): the personal namespace, and the other users'
// shared folders under "#shared." (shared.go); no public namespace.
func execNamespace(s *session, c *command) result {
	prefix := ""
	if s.srv.opt.CourierNamespace {
		prefix = courierPrefix
	}
	w := s.w.line(`* NAMESPACE (("`).raw(prefix).raw(`" ".")) (("`).raw(sharedPrefix).raw(`" "."))`)
	if len(s.sharedMaildirs()) > 0 {
		// Courier's filesystem-shared folders (fsshared.go), in the
		// shared namespace where Courier shows them.
		w.raw(` (("`).raw(fsSharedPrefix).raw(`" "."))`).end()
	} else {
		w.raw(" NIL").end()
	}
	return ok("NAMESPACE completed")
}
