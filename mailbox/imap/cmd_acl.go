package imap

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"postern/mailbox/acl"
	"postern/mailbox/maildir"
)

// The ACL commands of RFC 4314: SETACL, DELETEACL, GETACL, LISTRIGHTS and
// MYRIGHTS. ACLs live in Courier's courierimapacl files (mailbox/acl); a
// change also updates the shared-folder registry (shared.go). RIGHTS=texk
// says that "t", "e", "x" and "k" are rights of their own here (RFC 4314
// 2.1.1); the obsolete "c" and "d" are accepted and reported as well.
func aclCommands() []*commandSpec {
	return []*commandSpec{
		{name: "SETACL", states: authenticated, caps: []string{"ACL", "RIGHTS=texk"}, parse: parseSetACL, exec: execSetACL, expungeOK: true},
		{name: "DELETEACL", states: authenticated, parse: parseTwoMailboxes, exec: execDeleteACL, expungeOK: true},
		{name: "GETACL", states: authenticated, parse: parseMailboxArg, exec: execGetACL, expungeOK: true},
		{name: "LISTRIGHTS", states: authenticated, parse: parseTwoMailboxes, exec: execListRights, expungeOK: true},
		{name: "MYRIGHTS", states: authenticated, parse: parseMailboxArg, exec: execMyRights, expungeOK: true},
	}
}

// maxACLEntries bounds one folder's ACL, so that a user with the "a" right
// cannot grow the file (read at every LIST of a sharing owner) without end.
const maxACLEntries = 256

type setACLArgs struct {
	mailbox, identifier string
	mod                 byte // 0 (replace), '+' or '-'
	rights              acl.Rights
}

// parseSetACL reads "mailbox SP identifier SP mod-rights" (RFC 4314 3.1). An
// unknown right is a syntax error: RFC 4314 3.1 wants BAD, never a right
// silently dropped.
func parseSetACL(d *decoder) (any, error) {
	var a setACLArgs
	var err error
	if err = d.sp(); err != nil {
		return nil, err
	}
	if a.mailbox, err = d.astring(); err != nil {
		return nil, err
	}
	if err = d.sp(); err != nil {
		return nil, err
	}
	if a.identifier, err = d.astring(); err != nil {
		return nil, err
	}
	if err = d.sp(); err != nil {
		return nil, err
	}
	rights, err := d.astring()
	if err != nil {
		return nil, err
	}
	if rights != "" && (rights[0] == '+' || rights[0] == '-') {
		a.mod, rights = rights[0], rights[1:]
	}
	if a.rights, err = acl.ParseRights(rights); err != nil {
		return nil, syntaxErr("unknown right in %q", truncate(rights, 40))
	}
	return a, nil
}

// aclTarget resolves the mailbox of an ACL command and checks that the
// session may administer it ("a").
func (s *session) aclTarget(name string, need acl.Rights) (*mailboxRef, result, bool) {
	ref, r, found := s.resolveMailbox(name)
	if !found {
		return nil, r, false
	}
	if _, err := ref.mail.Folder(ref.folder); err != nil {
		s.releaseRef(ref)
		return nil, s.storageResult(err, "ACL"), false
	}
	if !ref.rights.Has(need) {
		s.releaseRef(ref)
		return nil, noPerm(), false
	}
	return ref, result{}, true
}

func noPerm() result {
	return no("NOPERM", "Permission denied")
}

// isOwnerID reports whether a stored identifier names the mailbox's owner,
// whose rights cannot be changed.
func isOwnerID(id, owner string) bool {
	base := strings.TrimPrefix(id, "-")
	return base == "owner" || base == "user="+owner
}

// aclChange prepares SETACL or DELETEACL (what) of identifier's entry on
// mailbox: the identifier is valid, the session may administer the
// mailbox, the identifier is not its owner's. It returns the mailbox (the
// caller releases it), the stored identifier and the current list; when
// proceed is false, r is the reply.
func (s *session) aclChange(mailbox, identifier, what string) (ref *mailboxRef, id string, list acl.List, r result, proceed bool) {
	id, valid := storedIdentifier(identifier)
	if !valid {
		return nil, "", nil, bad("Invalid identifier"), false
	}
	ref, r, found := s.aclTarget(mailbox, acl.Admin)
	if !found {
		return nil, "", nil, r, false
	}
	if isOwnerID(id, ref.owner) {
		s.releaseRef(ref)
		return nil, "", nil, no("CANNOT", "The owner of a mailbox always has every right"), false
	}
	list, err := acl.ReadFolder(ref.mail.Root(), ref.folder)
	if err != nil {
		s.releaseRef(ref)
		return nil, "", nil, s.storageResult(err, what), false
	}
	return ref, id, list, result{}, true
}

func execSetACL(s *session, c *command) result {
	a := c.args.(setACLArgs)
	ref, id, list, r, proceed := s.aclChange(a.mailbox, a.identifier, "SETACL")
	if !proceed {
		return r
	}
	defer s.releaseRef(ref)
	cur, _ := list.Find(id)
	rights := a.rights
	switch a.mod {
	case '+':
		rights = cur.Rights | a.rights
	case '-':
		rights = cur.Rights &^ a.rights
	}
	if rights == 0 {
		list = list.Delete(id)
	} else {
		if _, exists := list.Find(id); !exists && len(list) >= maxACLEntries {
			return no("LIMIT", fmt.Sprintf("At most %d entries in one mailbox's ACL", maxACLEntries))
		}
		list = list.Set(id, rights)
	}
	return s.saveACL(ref, list, "SETACL")
}

func execDeleteACL(s *session, c *command) result {
	args := c.args.([2]string)
	ref, id, list, r, proceed := s.aclChange(args[0], args[1], "DELETEACL")
	if !proceed {
		return r
	}
	defer s.releaseRef(ref)
	return s.saveACL(ref, list.Delete(id), "DELETEACL")
}

// saveACL writes the folder's ACL and records in the registry whether the
// folder is now shared.
func (s *session) saveACL(ref *mailboxRef, list acl.List, what string) result {
	if err := keepInherited(ref.mail, ref.folder); err != nil {
		return s.storageResult(err, what)
	}
	if err := acl.WriteFolder(ref.mail.Root(), ref.folder, list); err != nil {
		return s.storageResult(err, what)
	}
	if err := s.srv.shared.set(ref.owner, ref.folder, list.Grants()); err != nil {
		s.log.Error("imap: shared registry", "err", err)
	}
	return ok(what + " completed")
}

func execGetACL(s *session, c *command) result {
	ref, r, found := s.aclTarget(c.args.(string), acl.Admin)
	if !found {
		return r
	}
	defer s.releaseRef(ref)
	list, err := acl.ReadFolder(ref.mail.Root(), ref.folder)
	if err != nil {
		return s.storageResult(err, "GETACL")
	}
	// RFC 4314 3.3: "* ACL mailbox *(SP identifier SP rights)". The owner
	// is shown by name with every right; Courier's "owner" entry is
	// implied by that.
	w := s.w.line("* ACL ")
	w.buf = appendAstring(w.buf, ref.name)
	w.byte(' ')
	w.buf = appendAstring(w.buf, ref.owner)
	w.byte(' ').raw(acl.All.WithObsolete())
	for _, e := range list {
		if isOwnerID(e.ID, ref.owner) {
			continue
		}
		w.byte(' ')
		w.buf = appendAstring(w.buf, wireIdentifier(e.ID))
		w.byte(' ')
		w.buf = appendAstring(w.buf, e.Rights.WithObsolete())
	}
	w.end()
	return ok("GETACL completed")
}

func execListRights(s *session, c *command) result {
	args := c.args.([2]string)
	id, valid := storedIdentifier(args[1])
	if !valid {
		return bad("Invalid identifier")
	}
	ref, r, found := s.aclTarget(args[0], acl.Admin)
	if !found {
		return r
	}
	defer s.releaseRef(ref)
	// RFC 4314 3.4: the rights always granted, then the rights that may
	// be granted, each group a unit. The owner always has all of them;
	// anyone else may be granted each right on its own.
	w := s.w.line("* LISTRIGHTS ")
	w.buf = appendAstring(w.buf, ref.name)
	w.byte(' ')
	w.buf = appendAstring(w.buf, args[1])
	if isOwnerID(id, ref.owner) {
		w.byte(' ').raw(acl.All.String())
	} else {
		w.raw(` ""`)
		for _, l := range acl.All.String() {
			w.byte(' ').byte(byte(l))
		}
		w.raw(" c d") // RFC 4314 2.1.1
	}
	w.end()
	return ok("LISTRIGHTS completed")
}

func execMyRights(s *session, c *command) result {
	ref, r, found := s.resolveMailbox(c.args.(string))
	if !found {
		return r
	}
	defer s.releaseRef(ref)
	if _, err := ref.mail.Folder(ref.folder); err != nil {
		return s.storageResult(err, "MYRIGHTS")
	}
	w := s.w.line("* MYRIGHTS ")
	w.buf = appendAstring(w.buf, ref.name)
	w.byte(' ')
	w.buf = appendAstring(w.buf, ref.rights.WithObsolete())
	w.end()
	return ok("MYRIGHTS completed")
}

// aclFolderGone forgets the ACL of a deleted folder in the registry.
func (s *session) aclFolderGone(owner, folder string) {
	if folder == maildir.Inbox {
		return
	}
	if err := s.srv.shared.set(owner, folder, false); err != nil {
		s.log.Warn("imap: shared registry", "err", err)
	}
}

// createShared creates a child of another user's folder: RFC 4314 4 asks
// for "k" on the parent. The new folder has no ACL file of its own, so it
// takes its parent's (Courier's inheritance).
func (s *session) createShared(name string) result {
	i := strings.LastIndexByte(name, delimiter)
	if i <= len(sharedRoot) {
		return no("NOPERM", "Not permitted in the shared namespace")
	}
	leaf := name[i+1:]
	parent, r, found := s.resolveMailbox(name[:i])
	if !found {
		return r
	}
	defer s.releaseRef(parent)
	if !parent.rights.Has(acl.Create) {
		return noPerm()
	}
	if s.utf8Names() {
		leaf = encodeMUTF7(leaf)
	}
	folder := leaf
	if parent.folder != maildir.Inbox {
		folder = parent.folder + string(delimiter) + leaf
	}
	if err := maildir.ValidFolderName(folder); err != nil {
		return nameResult(errBadMailboxName)
	}
	if err := parent.mail.CreateFolder(folder); err != nil {
		return s.storageResult(err, "CREATE")
	}
	return s.createdResult(parent.mail, folder)
}

// deleteShared deletes another user's folder, with the "x" right on it
// (RFC 4314 4).
func (s *session) deleteShared(name string) result {
	ref, r, found := s.resolveMailbox(name)
	if !found {
		return r
	}
	defer s.releaseRef(ref)
	if !ref.rights.Has(acl.DeleteMailbox) {
		return noPerm()
	}
	if ref.folder == maildir.Inbox {
		return no("CANNOT", "INBOX cannot be deleted")
	}
	if s.sel != nil && s.sel.ref.shared && s.sel.folder.Path() == filepath.Join(ref.mail.Root(), "."+ref.folder) {
		return no("CANNOT", "Close the mailbox before deleting it")
	}
	if err := ref.mail.DeleteFolder(ref.folder); err != nil {
		return s.storageResult(err, "DELETE")
	}
	s.srv.hub.forgetIndex(filepath.Join(ref.mail.Root(), "."+ref.folder))
	s.aclFolderGone(ref.owner, ref.folder)
	return ok("DELETE completed")
}

// keepInherited gives each existing folder below folder (every folder, for
// INBOX) that has no ACL file of its own a copy of the ACL it inherits now,
// before folder's ACL changes. Courier copies a parent's ACL into a folder
// the first time it reads it, so there a change to a parent never reaches
// existing children; without the copy, "SETACL INBOX bob lr" would share
// every folder of the Maildir.
func keepInherited(mail *maildir.Maildir, folder string) error {
	folders, err := mail.Folders()
	if err != nil {
		return err
	}
	for _, g := range folders {
		if g == folder || g == maildir.Inbox {
			continue
		}
		if folder != maildir.Inbox && !strings.HasPrefix(g, folder+string(delimiter)) {
			continue
		}
		_, err := os.Stat(filepath.Join(folderPath(mail.Root(), g), acl.FileName))
		if !errors.Is(err, os.ErrNotExist) {
			continue // has its own (or cannot tell: leave it)
		}
		list, err := acl.ReadFolder(mail.Root(), g)
		if err != nil {
			return err
		}
		if err := acl.WriteFolder(mail.Root(), g, list); err != nil {
			return err
		}
	}
	return nil
}
