package maildir

import (
	"os"
	"path/filepath"
	"strings"
)

// SpecialUseFolders are the Maildir++ folders that carry the special-use
// attributes of RFC 6154, by name: the IMAP server lists them with the
// attribute and creates the missing ones at login, and the delivery
// agent's Sieve finds them by attribute (RFC 8579).
var SpecialUseFolders = [...]struct{ Folder, Attr string }{
	{"Sent", `\Sent`},
	{"Drafts", `\Drafts`},
	{"Trash", `\Trash`},
	{"Junk", `\Junk`},
	{"Archive", `\Archive`},
}

// SpecialUseAttr returns the special-use attribute of a folder ("Junk":
// `\Junk`), or "".
func SpecialUseAttr(folder string) string {
	for _, f := range SpecialUseFolders {
		if f.Folder == folder {
			return f.Attr
		}
	}
	return ""
}

// SpecialUseFolder returns the folder that carries attr (`\Junk`: "Junk";
// the attribute's case does not matter), or "".
func SpecialUseFolder(attr string) string {
	for _, f := range SpecialUseFolders {
		if strings.EqualFold(f.Attr, attr) {
			return f.Folder
		}
	}
	return ""
}

// MailboxIDFile holds a folder's MAILBOXID (RFC 8474), one line, in the
// folder's directory (the Maildir's root for INBOX). The IMAP server
// makes it at a folder's first use; a RENAME moves it with the directory.
const MailboxIDFile = "postern-mailboxid"

// FolderByID returns the folder whose MAILBOXID is id ("" for INBOX), and
// false when no folder has it yet. It reads the id files, one a folder;
// an id is never created here.
func (m *Maildir) FolderByID(id string) (string, bool) {
	if id == "" {
		return "", false
	}
	folders, err := m.Folders()
	if err != nil {
		return "", false
	}
	for _, f := range folders {
		name := f
		if f == Inbox {
			name = ""
		}
		b, err := os.ReadFile(filepath.Join(m.folderDir(name), MailboxIDFile))
		if err == nil && strings.TrimSpace(string(b)) == id {
			return name, true
		}
	}
	return "", false
}
