package webmail

import (
	"errors"
	"strconv"
	"strings"
	"unicode/utf8"

	"postern/mailbox/maildir"
)

// Courier's filesystem permission-based shared folders (maildir's
// fsshared.go, docs/sharedfolders.md) in the webmail, as sqwebmail shows
// them: the folders of the sharable maildirs named in the user's
// shared-maildirs that the file permissions let the user read, the
// subscribed ones first. Subscribing makes the user's private view
// (Maildir/shared-folders/NICK/FOLDER), unsubscribing removes it;
// opening one subscribes too, as Courier's servers do. The open, the
// view and the permission checks are the IMAP server's
// (maildir.OpenSharedFolder); flags are the user's own, and a folder the
// user may not write is read-only here: no flag changes, no deletes, no
// moves in or out.
//
// In URLs and forms a shared folder is "shared/NICK/FOLDER" (FOLDER as
// on disk): a name with "/" can never be one of the user's own folders
// (maildir refuses it), so the two never meet, and the page shows it as
// IMAP and Courier name it, "shared.NICK.FOLDER".

const sharedParamPrefix = "shared/"

// errReadOnlyShared: a change in a shared folder the user may not write.
var errReadOnlyShared = errors.New("read-only shared folder")

// fsShared is an open shared folder: the user's private view and the
// sharable folder it follows.
type fsShared struct {
	view *maildir.SharedView
	sf   maildir.SharableFolder
}

// sharedParam is the request parameter naming NICK's FOLDER.
func sharedParam(nick, folder string) string { return sharedParamPrefix + nick + "/" + folder }

// parseSharedParam reads "shared/NICK/FOLDER". ok is false for any other
// name (one of the user's own folders); err for a shared name that is
// malformed. NICK is checked again against shared-maildirs, whose names
// maildir validated, before anything is opened.
func parseSharedParam(s string) (nick, folder string, ok bool, err error) {
	rest, ok := strings.CutPrefix(s, sharedParamPrefix)
	if !ok {
		return "", "", false, nil
	}
	nick, folder, found := strings.Cut(rest, "/")
	switch {
	case !found, nick == "", len(s) > maxFolderParam, !utf8.ValidString(s):
		return "", "", true, errBadFolder
	case maildir.ValidFolderName(folder) != nil:
		return "", "", true, errBadFolder
	}
	if _, err := decodeMUTF7(folder); err != nil {
		return "", "", true, errBadFolder
	}
	return nick, folder, true, nil
}

// identity is the user the file permissions are checked for, from the
// account's uid and gid kept at login. A session without them (from
// before they were kept) sees no shared folders: uid 0 would be allowed
// everything.
func (u *user) identity() (maildir.Identity, bool) {
	uid, err1 := strconv.Atoi(u.s.Get(keyUID))
	gid, err2 := strconv.Atoi(u.s.Get(keyGID))
	if err1 != nil || err2 != nil || u.s.Get(keyUID) == "" {
		return maildir.Identity{}, false
	}
	return maildir.Identity{UID: uid, GID: gid}, true
}

// sharedMaildirs reads the user's shared-maildirs; lines that cannot be
// used are logged and skipped.
func (h *Handler) sharedMaildirs(u *user) []maildir.SharedMaildir {
	list, bad, err := maildir.ReadSharedMaildirs(u.md.Root())
	if err != nil {
		h.log.Warn("webmail: shared-maildirs", "user", u.s.Login, "err", err)
		return nil
	}
	for _, e := range bad {
		h.log.Warn("webmail: shared-maildirs: line skipped", "user", u.s.Login, "err", e)
	}
	return list
}

// sharedInfo is one shared folder in the lists.
type sharedInfo struct {
	Name       string // the request parameter, shared/NICK/FOLDER
	Display    string // shared.NICK.FOLDER, UTF-8
	Subscribed bool
	Writable   bool
}

// sharedFolders lists the shared folders the user may read, subscribed
// ones first (sqwebmail's order), each group by name. A folder the user
// may no longer read is not shown, even when its view is still there.
func (h *Handler) sharedFolders(u *user) []sharedInfo {
	id, ok := u.identity()
	if !ok {
		return nil
	}
	shared := h.sharedMaildirs(u)
	if len(shared) == 0 {
		return nil
	}
	subs, err := maildir.SubscribedShared(u.md.Root())
	if err != nil {
		h.log.Warn("webmail: shared-folders", "user", u.s.Login, "err", err)
	}
	subscribed := map[string]bool{}
	for _, s := range subs {
		subscribed[s] = true
	}
	var on, off []sharedInfo
	for _, sm := range shared {
		folders, err := maildir.ListSharable(sm, id)
		if err != nil {
			h.log.Warn("webmail: list sharable maildir", "user", u.s.Login, "nick", sm.Nick, "err", err)
			continue
		}
		for _, f := range folders {
			si := sharedInfo{Name: sharedParam(f.Nick, f.Folder), Display: displayName(sharedParam(f.Nick, f.Folder)),
				Subscribed: subscribed[f.Nick+"."+f.Folder], Writable: f.Writable}
			if si.Subscribed {
				on = append(on, si)
			} else {
				off = append(off, si)
			}
		}
	}
	return append(on, off...)
}

// openShared opens NICK's FOLDER for reading through the user's private
// view, made when missing and brought up to date.
func (h *Handler) openShared(u *user, nick, folder string) (*maildir.Folder, *fsShared, error) {
	id, ok := u.identity()
	if !ok {
		return nil, nil, maildir.ErrNoSharedFolder
	}
	view, sf, err := maildir.OpenSharedFolder(u.md.Root(), h.sharedMaildirs(u), nick, folder, id)
	if err != nil {
		return nil, nil, err
	}
	md, err := maildir.OpenWithOptions(view.View, view.Options())
	if err != nil {
		return nil, nil, err
	}
	f, err := md.Folder(maildir.Inbox)
	if err != nil {
		return nil, nil, err
	}
	return f, &fsShared{view: view, sf: sf}, nil
}

// insertTarget opens the folder messages are moved into: one of the
// user's own, or a shared folder's sharable folder itself, which the user
// must be allowed to write (shared is then true: give the new files to
// the user with AdoptShared).
func (h *Handler) insertTarget(u *user, param string) (f *maildir.Folder, shared bool, err error) {
	nick, folder, isShared, err := parseSharedParam(param)
	if err != nil {
		return nil, true, err
	}
	if !isShared {
		name, err := folderParam(param)
		if err != nil {
			return nil, false, err
		}
		f, err := u.md.Folder(name)
		return f, false, err
	}
	_, fs, err := h.openShared(u, nick, folder)
	if err != nil {
		return nil, true, err
	}
	if !fs.view.Writable {
		return nil, true, errReadOnlyShared
	}
	f, err = fs.view.InsertFolder(fs.sf)
	return f, true, err
}

// removeFrom removes a message from a folder: from a shared folder, out
// of the sharable folder where the permissions allow it (else the message
// stays and kept is true).
func removeFrom(f *maildir.Folder, fs *fsShared, id maildir.Identity, key string) (kept bool, err error) {
	if fs == nil {
		return false, f.Remove(key)
	}
	err = f.RemoveShared(key, id)
	if errors.Is(err, maildir.ErrSharedPermission) {
		return true, nil
	}
	return false, err
}
