package imap

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"

	"postern/mailbox/acl"
	"postern/mailbox/maildir"
)

// Courier's filesystem permission-based shared folders (maildir's
// fsshared.go, docs/sharedfolders.md): a user whose Maildir has a
// shared-maildirs file sees the folders of those sharable maildirs that
// the file permissions let them read as "shared.NICK.FOLDER", Courier's
// names for them, in both namespace modes. SELECT opens the user's private
// view (Maildir/shared-folders/NICK/FOLDER, made on first use as Courier
// does), brought up to date with the sharable folder first; flags are the
// user's own. A folder the user may not write is opened read-only
// whatever the command; EXPUNGE removes messages from the sharable folder
// itself, where the file permissions allow it.
const (
	fsSharedRoot   = "shared"
	fsSharedPrefix = fsSharedRoot + "."
)

// Rights shown for filesystem-shared folders: what the permissions allow,
// in ACL terms, so the ACL checks of each command apply unchanged.
const (
	fsReadRights  = acl.Lookup | acl.Read
	fsWriteRights = acl.Lookup | acl.Read | acl.Seen | acl.Write | acl.Insert | acl.DeleteMessages | acl.Expunge
)

// fsSharedRef is the filesystem-shared part of a mailboxRef.
type fsSharedRef struct {
	view *maildir.SharedView
	sf   maildir.SharableFolder
}

// identity is the user the file permissions are checked for: the
// account's uid and gid, as Courier's server runs as them.
func (s *session) identity() maildir.Identity {
	if s.account == nil {
		return maildir.Identity{UID: -1, GID: -1}
	}
	return maildir.Identity{UID: s.account.UID, GID: s.account.GID}
}

// sharedMaildirs reads the user's shared-maildirs; lines that cannot be
// used are logged and skipped.
func (s *session) sharedMaildirs() []maildir.SharedMaildir {
	if s.mail == nil {
		return nil
	}
	list, bad, err := maildir.ReadSharedMaildirs(s.mail.Root())
	if err != nil {
		s.log.Warn("imap: shared-maildirs", "err", err)
		return nil
	}
	for _, e := range bad {
		s.log.Warn("imap: shared-maildirs: line skipped", "maildir", s.mail.Root(), "err", e)
	}
	return list
}

// isFSSharedName reports whether name is in Courier's "shared." hierarchy
// of a user who has sharable maildirs.
func (s *session) isFSSharedName(name string) bool {
	if name != fsSharedRoot && !strings.HasPrefix(name, fsSharedPrefix) {
		return false
	}
	return len(s.sharedMaildirs()) > 0
}

// fsSharedName is the IMAP name of NICK's FOLDER for this session.
func (s *session) fsSharedName(nick, folder string) string {
	name := fsSharedPrefix + encodeMUTF7(nick) + "." + folder
	if s.utf8Names() {
		if dec, err := decodeMUTF7(name); err == nil {
			return dec
		}
	}
	return name
}

// splitFSSharedName parses "shared.NICK.FOLDER" into NICK (UTF-8) and the
// Maildir++ FOLDER.
func (s *session) splitFSSharedName(name string) (nick, folder string, err error) {
	if s.utf8Names() {
		name = encodeMUTF7(name)
	} else if name, err = wireMailboxName(name); err != nil {
		return "", "", errBadMailboxName
	}
	rest, ok := strings.CutPrefix(name, fsSharedPrefix)
	if !ok {
		return "", "", maildir.ErrNoSharedFolder
	}
	enc, folder, ok := strings.Cut(rest, ".")
	if !ok {
		return "", "", maildir.ErrNoSharedFolder
	}
	if nick, err = decodeMUTF7(enc); err != nil {
		return "", "", errBadMailboxName
	}
	if maildir.ValidFolderName(folder) != nil {
		return "", "", errBadMailboxName
	}
	return nick, folder, nil
}

// resolveFSShared opens "shared.NICK.FOLDER" for this session: the
// sharable folder must be readable for the user; the private view is made
// when missing (Courier subscribes on open too) and synced.
func (s *session) resolveFSShared(name string) (*mailboxRef, error) {
	nick, folder, err := s.splitFSSharedName(name)
	if err != nil {
		return nil, err
	}
	view, sf, err := maildir.OpenSharedFolder(s.mail.Root(), s.sharedMaildirs(), nick, folder, s.identity())
	if err != nil {
		return nil, err
	}
	mail, err := s.srv.hub.openMaildirOpts(view.View, view.Options())
	if err != nil {
		return nil, err
	}
	rights := fsReadRights
	if view.Writable {
		rights = fsWriteRights
	}
	return &mailboxRef{
		mail: mail, folder: maildir.Inbox, name: s.fsSharedName(nick, folder), owner: nick,
		rights: rights, shared: true, mailPath: view.View,
		fs: &fsSharedRef{view: view, sf: sf},
	}, nil
}

// fsSharedInsertTarget points an APPEND or COPY destination at the
// sharable folder itself: new messages go there, and reach the user's
// view (and everyone else's) at the next sync, as in Courier. Their UIDs
// in the view are not known yet, so no APPENDUID or COPYUID is given.
func (s *session) fsSharedInsertTarget(ref *mailboxRef) (*maildir.Folder, error) {
	return ref.fs.view.InsertFolder(ref.fs.sf)
}

// addFSSharedEntries adds the sharable folders the user may read, with
// their parents ("shared", "shared.NICK", ...), to a LIST hierarchy.
func (s *session) addFSSharedEntries(entries map[string]*listEntry) {
	shared := s.sharedMaildirs()
	if len(shared) == 0 {
		return
	}
	id := s.identity()
	parent := func(name string) {
		if pe := entries[name]; pe != nil {
			pe.children = true
			return
		}
		entries[name] = &listEntry{name: name, children: true}
	}
	for _, sm := range shared {
		folders, err := maildir.ListSharable(sm, id)
		if err != nil {
			s.log.Warn("imap: list sharable maildir", "nick", sm.Nick, "err", err)
			continue
		}
		for _, f := range folders {
			name := s.fsSharedName(f.Nick, f.Folder)
			e := entries[name]
			if e == nil {
				e = &listEntry{name: name}
				entries[name] = e
			}
			e.folder = name // selectable; never a special-use name
			base := s.fsSharedName(f.Nick, "")
			base = base[:len(base)-1]
			parent(fsSharedRoot)
			parent(base)
			part := name[len(base)+1:]
			for i := strings.LastIndexByte(part, delimiter); i > 0; i = strings.LastIndexByte(part[:i], delimiter) {
				parent(base + "." + part[:i])
			}
		}
	}
}

// subscriptions are the lines of courierimapsubscribed and, for the
// filesystem-shared folders, the private views that exist: Courier keeps
// those subscriptions as the views themselves, not in the file.
func (s *session) subscriptions() ([]string, error) {
	subs, err := s.mail.Subscriptions()
	if err != nil {
		return nil, err
	}
	views, err := maildir.SubscribedShared(s.mail.Root())
	if err != nil {
		s.log.Warn("imap: shared-folders", "err", err)
		return subs, nil
	}
	if len(views) > 0 && len(s.sharedMaildirs()) > 0 {
		for _, v := range views {
			nick, folder, _ := strings.Cut(v, ".")
			subs = append(subs, fsSharedPrefix+encodeMUTF7(nick)+"."+folder)
		}
	}
	return subs, nil
}

// subscribeFSShared (UN)SUBSCRIBEs a filesystem-shared folder by making or
// removing its private view, as Courier does.
func (s *session) subscribeFSShared(name string, on bool) result {
	if on {
		ref, err := s.resolveFSShared(name)
		if err != nil {
			return s.fsSharedResult(err, "SUBSCRIBE")
		}
		s.releaseRef(ref)
		return ok("SUBSCRIBE completed")
	}
	nick, folder, err := s.splitFSSharedName(name)
	if err != nil {
		return s.fsSharedResult(err, "UNSUBSCRIBE")
	}
	if err := maildir.UnsubscribeShared(s.mail.Root(), nick, folder); err != nil {
		return s.fsSharedResult(err, "UNSUBSCRIBE")
	}
	return ok("UNSUBSCRIBE completed")
}

// fsSharedResult maps the errors of filesystem-shared folders.
func (s *session) fsSharedResult(err error, what string) result {
	switch {
	case errors.Is(err, maildir.ErrNoSharedFolder), errors.Is(err, errBadMailboxName):
		return no("NONEXISTENT", "No such mailbox")
	case errors.Is(err, maildir.ErrSharedPermission):
		return noPerm()
	}
	return s.storageResult(err, what)
}

// writeUnsubscribedFSSharedStatus answers STATUS (and LIST-STATUS) for a
// "shared.NICK.FOLDER" the user has not subscribed to, from the sharable
// folder itself, making nothing: no private view, no claim of its new/
// messages. Courier's STATUS passes autosubscribe=0 (only SELECT is to
// subscribe, for clients like Pine that never do); Courier 5's
// decode_valid_mailbox no longer honours the flag, and Postern keeps the
// intent. The counts are what the user's view would show once made: every
// message new (\Recent), unseen and without \Deleted, numbered from 1, so
// UIDNEXT is one past the count. UIDVALIDITY, HIGHESTMODSEQ and MAILBOXID
// do not exist before the view does and are left out of the answer.
// handled is false when the name is not such a folder, or the view exists
// (the ordinary STATUS then reads it).
func (s *session) writeUnsubscribedFSSharedStatus(name string, items []string) (handled bool, err error) {
	if !s.isFSSharedName(name) {
		return false, nil
	}
	nick, folder, err := s.splitFSSharedName(name)
	if err != nil {
		return true, err
	}
	view, err := maildir.SharedViewPath(s.mail.Root(), nick, folder)
	if err != nil {
		return true, err
	}
	if _, err := os.Lstat(view); err == nil {
		return false, nil
	}
	sf, err := maildir.FindSharable(s.sharedMaildirs(), nick, folder, s.identity())
	if err != nil {
		return true, err
	}
	paths, err := maildir.ListSharableMessages(sf)
	if err != nil {
		return true, err
	}
	var size int64
	if slices.Contains(items, "SIZE") {
		for _, p := range paths {
			f, err := os.Open(p)
			if errors.Is(err, fs.ErrNotExist) {
				continue // removed meanwhile
			}
			if err != nil {
				return true, fmt.Errorf("imap: status %s: %w", name, err)
			}
			n, err := crlfSize(f)
			f.Close()
			if err != nil {
				return true, fmt.Errorf("imap: status %s: %w", name, err)
			}
			size += n
		}
	}
	count := uint64(len(paths))
	w := s.w.line("* STATUS ")
	w.buf = appendAstring(w.buf, s.fsSharedName(nick, folder))
	w.raw(" (")
	first := true
	for _, it := range items {
		var v uint64
		switch it {
		case "MESSAGES", "RECENT", "UNSEEN":
			v = count
		case "UIDNEXT":
			v = count + 1
		case "DELETED":
			v = 0
		case "SIZE":
			v = uint64(size)
		case "APPENDLIMIT":
			v = uint64(s.srv.opt.MaxLiteralSize)
		default: // UIDVALIDITY, HIGHESTMODSEQ, MAILBOXID: none yet
			continue
		}
		if !first {
			w.byte(' ')
		}
		first = false
		w.raw(it).byte(' ').num(v)
	}
	return true, w.byte(')').end()
}
