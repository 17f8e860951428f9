package smap

import (
	"errors"
	"slices"
	"strconv"
	"strings"

	"postern/mailbox/maildir"
)

// errText is the reason a reply gives for an error: Courier prints
// strerror(errno), so the common cases read as the C library words them.
func errText(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, errBadName), errors.Is(err, maildir.ErrBadFolderName), errors.Is(err, maildir.ErrBadKeyword), errors.Is(err, maildir.ErrBadFlags):
		return "Invalid argument"
	case errors.Is(err, errNoFolder), errors.Is(err, maildir.ErrNoFolder), errors.Is(err, maildir.ErrNoMessage):
		return "No such file or directory"
	case errors.Is(err, maildir.ErrFolderExists):
		return "File exists"
	case errors.Is(err, maildir.ErrOverQuota):
		return "Disk quota exceeded"
	case errors.Is(err, maildir.ErrTooManyKeywords):
		return "Too many keywords"
	case errors.Is(err, maildir.ErrNoSharedFolder):
		return "No such file or directory"
	case errors.Is(err, errReadOnly), errors.Is(err, maildir.ErrSharedPermission), errors.Is(err, maildir.ErrNotReadable):
		return "Permission denied"
	}
	return "Input/output error"
}

// cmdList lists a folder directory's children (smapfolders "LIST"):
// without words, the top level Courier offers.
func (sess *session) cmdList(_ string, w *words) {
	path := w.path()
	if len(path) == 0 {
		sess.writeString(`* LIST "INBOX" "New Mail" FOLDER` + "\n")
		sess.writeString(`* LIST "INBOX" "Folders" DIRECTORY` + "\n")
		sess.writeString(`* LIST "public" "Public Folders" DIRECTORY` + "\n")
		if sess.hasSharable() {
			sess.writeString(`* LIST "shared" "Shared Folders" DIRECTORY` + "\n")
		}
		sess.writeString("+OK LIST completed\n")
		return
	}
	if sess.isSharedPath(path) {
		sess.listShared(path)
		sess.writeString("+OK LIST completed\n")
		return
	}
	if path[0] != inboxWord {
		// No shared hierarchy here, and nothing else at the top.
		sess.writeString("+OK LIST completed\n")
		return
	}
	prefix := make([]string, 0, len(path)-1)
	for _, p := range path[1:] {
		l, err := encodeLevel(p)
		if err != nil {
			sess.writeString("+OK LIST completed\n")
			return
		}
		prefix = append(prefix, l)
	}
	names, err := sess.md.Folders()
	if err != nil {
		sess.log.Warn("smap: list folders", "err", err)
	}
	const isFolder, isDir = 1, 2
	found := map[string]int{}
	for _, n := range names {
		if n == maildir.Inbox {
			continue
		}
		levels := strings.Split(n, ".")
		if len(levels) <= len(prefix) || !slices.Equal(levels[:len(prefix)], prefix) {
			continue
		}
		child := levels[len(prefix)]
		if len(levels) == len(prefix)+1 {
			found[child] |= isFolder
		} else {
			found[child] |= isDir
		}
	}
	children := make([]string, 0, len(found))
	for c := range found {
		children = append(children, c)
	}
	slices.SortFunc(children, func(a, b string) int { return strings.Compare(decodeLevel(a), decodeLevel(b)) })
	for _, c := range children {
		name := quote(decodeLevel(c))
		line := "* LIST " + name + " " + name
		if found[c]&isFolder != 0 {
			line += " FOLDER"
		}
		if found[c]&isDir != 0 {
			line += " DIRECTORY"
		}
		sess.writeString(line + "\n")
	}
	sess.writeString("+OK LIST completed\n")
}

// cmdStatus reports a folder's message and unseen counts. The first word
// (CHEAP or FULL in Cone) is not looked at, as in Courier.
func (sess *session) cmdStatus(_ string, w *words) {
	w.next()
	path := w.path()
	var name string
	var shared *maildir.Folder
	var err error
	if sess.isSharedPath(path) {
		name, shared, _, err = sess.openShared(path)
	} else {
		name, err = folderName(path)
	}
	if err != nil {
		sess.writeString("-ERR Cannot read folder status: " + errText(err) + "\n")
		return
	}
	var exists, unseen int
	if sess.cur != nil && sess.cur.name == name {
		exists = len(sess.cur.msgs)
		for _, m := range sess.cur.msgs {
			if !strings.ContainsRune(m.flags, maildir.FlagSeen) {
				unseen++
			}
		}
	} else {
		f, err := shared, error(nil)
		if f == nil {
			f, err = sess.md.Folder(name)
		}
		var snap *maildir.Snapshot
		if err == nil {
			snap, err = f.Sync(false)
		}
		if err != nil {
			sess.writeString("-ERR Cannot read folder status: " + errText(err) + "\n")
			return
		}
		exists = len(snap.Messages)
		for _, m := range snap.Messages {
			if !strings.ContainsRune(m.Flags, maildir.FlagSeen) {
				unseen++
			}
		}
	}
	sess.writeString("* STATUS EXISTS=" + strconv.Itoa(exists) + " UNSEEN=" + strconv.Itoa(unseen) + "\n+OK Folder status retrieved\n")
}

// newFolderName checks a path for CREATE, MKDIR and RMDIR: it must name a
// folder below INBOX.
func newFolderName(path []string) (string, error) {
	if len(path) < 2 {
		if len(path) == 1 && path[0] == inboxWord {
			return maildir.Inbox, nil
		}
		return "", errBadName
	}
	return folderName(path)
}

func (sess *session) cmdCreate(_ string, w *words) {
	name, err := newFolderName(w.path())
	if err == nil {
		if name == maildir.Inbox {
			err = errBadName // Courier: Invalid argument
		} else {
			err = sess.md.CreateFolder(name)
		}
	}
	if err != nil {
		sess.writeString("-ERR Cannot create folder: " + errText(err) + "\n")
		return
	}
	sess.log.Info("smap: folder created", "folder", name)
	sess.writeString("+OK Folder created\n")
}

// cmdMkdir: Maildir++ has no folder directories apart from folders, so a
// directory needs nothing on disk; Courier checks the name and says yes.
func (sess *session) cmdMkdir(_ string, w *words) {
	if _, err := newFolderName(w.path()); err != nil {
		sess.writeString("-ERR Cannot create folder: " + errText(err) + "\n")
		return
	}
	sess.writeString("+OK Folder created\n")
}

func (sess *session) cmdRmdir(_ string, w *words) {
	if _, err := newFolderName(w.path()); err != nil {
		sess.writeString("-ERR Cannot create folder: " + errText(err) + "\n")
		return
	}
	sess.writeString("+OK Folder deleted\n")
}

func (sess *session) cmdDelete(_ string, w *words) {
	name, err := folderName(w.path())
	if err != nil {
		sess.writeString("-ERR Unable to delete folder: " + errText(err) + "\n")
		return
	}
	if name == maildir.Inbox {
		sess.writeString("-ERR INBOX may not be deleted\n")
		return
	}
	if sess.cur != nil && sess.cur.name == name {
		sess.writeString("-ERR Cannot DELETE currently open folder.\n")
		return
	}
	// A folder that is not there: Courier 5.0.13 answers either way from
	// one run to the next; the error is the true answer.
	if err := sess.md.DeleteFolder(name); err != nil {
		sess.log.Warn("smap: delete folder", "folder", name, "err", err)
		sess.writeString("-ERR Cannot delete folder: " + errText(err) + "\n")
		return
	}
	sess.log.Info("smap: folder deleted", "folder", name)
	sess.writeString("+OK Folder deleted\n")
}

// cmdRename: RENAME source-path "" destination-path; subfolders move too.
func (sess *session) cmdRename(_ string, w *words) {
	src, dst := w.path(), w.path()
	if len(src) == 0 || len(dst) == 0 {
		sess.writeString("-ERR Invalid argument\n")
		return
	}
	from, err := folderName(src)
	if err != nil {
		sess.writeString("-ERR " + errText(err) + "\n")
		return
	}
	to, err := folderName(dst)
	if err != nil {
		sess.writeString("-ERR " + errText(err) + "\n")
		return
	}
	if to == maildir.Inbox {
		// Courier checks the right to create in the destination's
		// parent, and there is none above INBOX.
		sess.writeString(`-ERR Access denied: ACL "c" is required` + "\n")
		return
	}
	if from == maildir.Inbox {
		sess.writeString("-ERR INBOX may not be renamed\n")
		return
	}
	// Renaming a folder that is not there succeeds, as in Courier (whose
	// DELETE of a missing folder does too).
	if err := sess.md.RenameFolder(from, to); err != nil && !errors.Is(err, maildir.ErrNoFolder) {
		sess.writeString("-ERR Cannot rename folder: " + errText(err) + "\n")
		return
	}
	if sess.cur != nil && (sess.cur.name == from || strings.HasPrefix(sess.cur.name, from+".")) {
		// The open folder moved away under its name: close it, as it no
		// longer exists by the name it was opened with.
		sess.closeFolder()
	}
	sess.log.Info("smap: folder renamed", "from", from, "to", to)
	sess.writeString("+OK Folder renamed.\n")
}
