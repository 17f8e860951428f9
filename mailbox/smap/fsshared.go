package smap

import (
	"errors"
	"slices"
	"strings"

	"postern/mailbox/maildir"
)

// Courier's filesystem permission-based shared folders (maildir's
// fsshared.go, docs/sharedfolders.md) over SMAP. A user whose Maildir has
// a shared-maildirs file sees, beside INBOX and public, the directory
// "shared": its children are the sharable maildirs' names (NICK), and
// below each the folders of that maildir the file permissions let the
// user read, one word per level, as for INBOX. So IMAP's
// "shared.team.Lists.2024" is SMAP's path "shared team Lists 2024".
//
// This is Postern's own: Courier's SMAP server resolves only "INBOX" and
// "public" paths (maildir_info_smap_find) and never shows these folders,
// though its IMAP server and sqwebmail do. The open, the view and the
// permission checks are the IMAP server's (maildir.OpenSharedFolder):
// opening makes the user's private view and brings it up to date; flags
// are the user's own; a folder the user may not write refuses every
// change.
//
// Without a shared-maildirs file "shared" is no more than any other word
// outside INBOX (Invalid argument), exactly as before and as in Courier.

// sharedWord is the top of the hierarchy: Courier's IMAP name for it.
const sharedWord = "shared"

// errReadOnly is a change refused in a shared folder the user may not
// write: Courier's server, running as the user, would get EACCES.
var errReadOnly = errors.New("read-only shared folder")

// fsShared is an open filesystem-shared folder: the user's private view
// (whose INBOX the openFolder reads) and the sharable folder it follows.
type fsShared struct {
	view *maildir.SharedView
	sf   maildir.SharableFolder
}

// identity is the user the file permissions are checked for: the
// account's uid and gid, as Courier's server runs as them.
func (sess *session) identity() maildir.Identity {
	return maildir.Identity{UID: sess.acct.UID, GID: sess.acct.GID}
}

// sharedMaildirs reads the user's shared-maildirs; lines that cannot be
// used are logged and skipped.
func (sess *session) sharedMaildirs() []maildir.SharedMaildir {
	list, bad, err := maildir.ReadSharedMaildirs(sess.md.Root())
	if err != nil {
		sess.log.Warn("smap: shared-maildirs", "err", err)
		return nil
	}
	for _, e := range bad {
		sess.log.Warn("smap: shared-maildirs: line skipped", "maildir", sess.md.Root(), "err", e)
	}
	return list
}

// isSharedPath reports whether a path is in the "shared" hierarchy of a
// user who has sharable maildirs.
func (sess *session) isSharedPath(path []string) bool {
	return len(path) > 0 && path[0] == sharedWord && len(sess.sharedMaildirs()) > 0
}

// sharedFolderName maps "shared NICK level..." to NICK and the Maildir++
// folder in the sharable maildir, each level on disk as encodeLevel
// writes it. "shared" and "shared NICK" are directories, not folders.
func sharedFolderName(path []string) (nick, folder string, err error) {
	if len(path) < 3 {
		return "", "", errNoFolder
	}
	levels := make([]string, 0, len(path)-2)
	for _, p := range path[2:] {
		l, err := encodeLevel(p)
		if err != nil {
			return "", "", err
		}
		levels = append(levels, l)
	}
	folder = strings.Join(levels, ".")
	if maildir.ValidFolderName(folder) != nil {
		return "", "", errBadName
	}
	return path[1], folder, nil
}

// sharedKey names an open shared folder in openFolder.name: it holds "/",
// so it never equals a Maildir++ name of the user's own folders.
func sharedKey(nick, folder string) string { return sharedWord + "/" + nick + "/" + folder }

// openShared opens a shared folder's private view (made when missing and
// synced, as the IMAP server and Courier do on open) and returns its
// folder for reading.
func (sess *session) openShared(path []string) (string, *maildir.Folder, *fsShared, error) {
	nick, folder, err := sharedFolderName(path)
	if err != nil {
		return "", nil, nil, err
	}
	view, sf, err := maildir.OpenSharedFolder(sess.md.Root(), sess.sharedMaildirs(), nick, folder, sess.identity())
	if err != nil {
		return "", nil, nil, err
	}
	md, err := maildir.OpenWithOptions(view.View, view.Options())
	if err != nil {
		return "", nil, nil, err
	}
	f, err := md.Folder(maildir.Inbox)
	if err != nil {
		return "", nil, nil, err
	}
	return sharedKey(nick, folder), f, &fsShared{view: view, sf: sf}, nil
}

// insertTarget is the folder ADD and COPY put messages into: the user's
// own folder, or for a shared path the sharable folder itself (the
// message reaches every reader's view at their next sync), which the
// user must be allowed to write. shared reports the latter: the new
// files are then given to the user (maildir's AdoptShared).
func (sess *session) insertTarget(path []string) (f *maildir.Folder, shared bool, err error) {
	if !sess.isSharedPath(path) {
		name, err := folderName(path)
		if err != nil {
			return nil, false, err
		}
		f, err := sess.md.Folder(name)
		return f, false, err
	}
	_, _, fs, err := sess.openShared(path)
	if err != nil {
		return nil, true, err
	}
	if !fs.view.Writable {
		return nil, true, errReadOnly
	}
	f, err = fs.view.InsertFolder(fs.sf)
	return f, true, err
}

// readOnly reports whether the open folder refuses changes: a shared
// folder the user may not write.
func (of *openFolder) readOnly() bool { return of.fs != nil && !of.fs.view.Writable }

// removeMessage expunges one message of the open folder: from a shared
// folder, out of the sharable folder where the permissions allow it (a
// message the user may not remove stays, without DELETED, as in Courier).
func (sess *session) removeMessage(key string) error {
	of := sess.cur
	if of.fs == nil {
		return of.f.Remove(key)
	}
	err := of.f.RemoveShared(key, sess.identity())
	if errors.Is(err, maildir.ErrSharedPermission) {
		sess.log.Info("smap: message of a shared folder kept: not permitted to remove it", "folder", of.name, "key", key)
		return nil
	}
	return err
}

// listShared answers LIST below "shared": the sharable maildirs with a
// folder the user may read, or the levels of their folders.
func (sess *session) listShared(path []string) {
	const isFolder, isDir = 1, 2
	found := map[string]int{}
	for _, sm := range sess.sharedMaildirs() {
		if len(path) > 1 && sm.Nick != path[1] {
			continue
		}
		folders, err := maildir.ListSharable(sm, sess.identity())
		if err != nil {
			sess.log.Warn("smap: list sharable maildir", "nick", sm.Nick, "err", err)
			continue
		}
		if len(path) == 1 {
			if len(folders) > 0 {
				found[sm.Nick] |= isDir
			}
			continue
		}
		prefix := make([]string, 0, len(path)-2)
		for _, p := range path[2:] {
			l, err := encodeLevel(p)
			if err != nil {
				return
			}
			prefix = append(prefix, l)
		}
		for _, f := range folders {
			levels := strings.Split(f.Folder, ".")
			if len(levels) <= len(prefix) || !slices.Equal(levels[:len(prefix)], prefix) {
				continue
			}
			child := decodeLevel(levels[len(prefix)])
			if len(levels) == len(prefix)+1 {
				found[child] |= isFolder
			} else {
				found[child] |= isDir
			}
		}
	}
	names := make([]string, 0, len(found))
	for n := range found {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		line := "* LIST " + quote(n) + " " + quote(n)
		if found[n]&isFolder != 0 {
			line += " FOLDER"
		}
		if found[n]&isDir != 0 {
			line += " DIRECTORY"
		}
		sess.writeString(line + "\n")
	}
}

// hasSharable reports whether the user may read any shared folder: only
// then does the top level show "shared".
func (sess *session) hasSharable() bool {
	for _, sm := range sess.sharedMaildirs() {
		if folders, err := maildir.ListSharable(sm, sess.identity()); err == nil && len(folders) > 0 {
			return true
		}
	}
	return false
}
