package webmail

import (
	"errors"
	"strings"
	"unicode/utf8"

	"postern/mailbox/maildir"
)

// The special folders: the names the IMAP server creates at first login
// (RFC 6154's special-use folders), so that both see the same ones.
const (
	folderSent   = "Sent"
	folderDrafts = "Drafts"
	folderTrash  = "Trash"
	// folderJunk is where the Junk button files mail, and where the
	// gateway quarantines it (delivery.Target.Folder).
	folderJunk = "Junk"
)

// protectedFolders cannot be deleted or renamed from the webmail: the
// webmail and IMAP clients put mail there.
var protectedFolders = map[string]bool{maildir.Inbox: true, folderSent: true, folderDrafts: true, folderTrash: true}

var errBadFolder = errors.New("invalid folder name")

// maxFolderParam bounds a folder parameter before anything else looks at it.
const maxFolderParam = 1024

// folderParam checks a folder named by a request (URL or form) and returns
// its Maildir++ name: "INBOX", or a name maildir accepts, which never holds
// "/" or an empty component, so it cannot leave the user's own Maildir.
// The name is as on disk (modified UTF-7).
func folderParam(s string) (string, error) {
	if s == "" {
		return maildir.Inbox, nil
	}
	if len(s) > maxFolderParam || !utf8.ValidString(s) {
		return "", errBadFolder
	}
	if strings.EqualFold(s, maildir.Inbox) {
		return maildir.Inbox, nil
	}
	if err := maildir.ValidFolderName(s); err != nil {
		return "", errBadFolder
	}
	if _, err := decodeMUTF7(s); err != nil {
		return "", errBadFolder
	}
	return s, nil
}

// newFolderName turns a name a user typed (UTF-8, "." separating levels)
// into the Maildir++ name on disk: modified UTF-7, as IMAP clients and
// Courier write it. Control characters, "/", empty levels and INBOX are
// refused.
func newFolderName(typed string) (string, error) {
	typed = strings.TrimSpace(typed)
	if typed == "" || len(typed) > 200 || !utf8.ValidString(typed) {
		return "", errBadFolder
	}
	for _, r := range typed {
		if r < 0x20 || r == 0x7f || r == '/' || r == '\\' || (r >= 0x80 && r < 0xa0) || r == utf8.RuneError {
			return "", errBadFolder
		}
	}
	name := maildir.EncodeModifiedUTF7(typed)
	if strings.EqualFold(name, maildir.Inbox) || maildir.ValidFolderName(name) != nil {
		return "", errBadFolder
	}
	return name, nil
}

// displayName is how a folder is shown: UTF-8, INBOX as "Inbox". A name
// that is not valid modified UTF-7 is shown as it is.
func displayName(name string) string {
	if name == maildir.Inbox {
		return "Inbox"
	}
	if nick, folder, ok, err := parseSharedParam(name); ok && err == nil {
		return "shared." + clean(nick) + "." + displayName(folder)
	}
	if d, err := decodeMUTF7(name); err == nil {
		return d
	}
	return clean(name)
}

// leafName is the last level of a folder's display name.
func leafName(name string) string {
	d := displayName(name)
	if i := strings.LastIndexByte(d, '.'); i >= 0 && name != maildir.Inbox {
		return d[i+1:]
	}
	return d
}

// depth is how many levels a folder sits below the top.
func depth(name string) int {
	if name == maildir.Inbox {
		return 0
	}
	return strings.Count(name, ".")
}

// decodeMUTF7 decodes IMAP's modified UTF-7 (RFC 3501 5.1.3), strictly.
var decodeMUTF7 = maildir.DecodeModifiedUTF7
