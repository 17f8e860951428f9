package imap

import (
	"errors"
	"strings"
	"unicode/utf8"

	"postern/mailbox/maildir"
)

// The hierarchy delimiter, in both namespaces (Maildir++ uses "." on disk).
const delimiter = '.'

// courierPrefix is the personal namespace prefix in Courier mode.
const courierPrefix = "INBOX."

// Errors of name mapping; each becomes a NO with a response code.
var (
	errBadMailboxName  = errors.New("invalid mailbox name")
	errOutsideNS       = errors.New("mailbox name outside the personal namespace")
	errInboxNoChildren = errors.New("INBOX cannot have children in this namespace; use a top-level name")
	errSharedNS        = errors.New("mailbox name in the shared namespace")
)

// specialUseAttr is the RFC 6154 attribute of a Maildir++ folder (the
// names clients look for; maildir.SpecialUseFolders).
func specialUseAttr(folder string) string { return maildir.SpecialUseAttr(folder) }

// canonicalInbox upper-cases a leading "inbox" (any case) when it is the
// whole name or followed by the delimiter: INBOX is case-insensitive
// (RFC 3501 5.1), its children's names are not.
func canonicalInbox(name string) string {
	if len(name) >= 5 && strings.EqualFold(name[:5], "INBOX") && (len(name) == 5 || name[5] == delimiter) {
		return "INBOX" + name[5:]
	}
	return name
}

// folderName maps an IMAP mailbox name from a command to the Maildir++
// folder name. Names are checked here and again by maildir, so a hostile
// name ("..", "/", NUL, control characters, empty components) never reaches
// the file system.
func (sess *session) folderName(imapName string) (string, error) {
	name, err := wireMailboxName(imapName)
	if sess.utf8Names() {
		// IMAP4rev2 names are UTF-8, "&" included (RFC 9051 5.1); on disk
		// they stay modified UTF-7, as Courier keeps them.
		if !utf8.ValidString(imapName) {
			return "", errBadMailboxName
		}
		name, err = encodeMUTF7(imapName), nil
	}
	if err != nil {
		return "", errBadMailboxName
	}
	decoded, _ := decodeMUTF7(name)
	for _, r := range decoded {
		if r < 0x20 || r == 0x7f || r == '/' {
			return "", errBadMailboxName
		}
	}
	name = canonicalInbox(name)
	if name == "INBOX" {
		return maildir.Inbox, nil
	}
	if sess.isSharedName(name) || sess.isFSSharedName(name) {
		// "#shared" names other users' folders (shared.go); no personal
		// folder may take it.
		return "", errSharedNS
	}
	if sess.srv.opt.CourierNamespace {
		if !strings.HasPrefix(name, courierPrefix) {
			return "", errOutsideNS
		}
		name = name[len(courierPrefix):]
	} else if strings.HasPrefix(name, courierPrefix) {
		return "", errInboxNoChildren
	}
	if err := maildir.ValidFolderName(name); err != nil || strings.EqualFold(name, "INBOX") {
		return "", errBadMailboxName
	}
	return name, nil
}

// imapName maps a Maildir++ folder name to the name shown to the client:
// modified UTF-7 as on disk, or UTF-8 once IMAP4rev2 is enabled.
func (sess *session) imapName(folder string) string {
	name := folder
	switch {
	case folder == maildir.Inbox:
		return "INBOX"
	case sess.srv.opt.CourierNamespace:
		name = courierPrefix + folder
	}
	if sess.utf8Names() {
		if dec, err := decodeMUTF7(name); err == nil {
			return dec
		}
	}
	return name
}

// subscriptionName is the form kept in courierimapsubscribed: Courier's
// "INBOX.Name" in both namespaces, so the file moves between servers.
func subscriptionName(folder string) string {
	if folder == maildir.Inbox {
		return "INBOX"
	}
	return courierPrefix + folder
}

// folderFromSubscription reverses subscriptionName; ok is false for lines
// that are not in Courier's form.
func folderFromSubscription(s string) (string, bool) {
	s = canonicalInbox(s)
	if s == "INBOX" {
		return maildir.Inbox, true
	}
	if strings.HasPrefix(s, courierPrefix) && len(s) > len(courierPrefix) {
		return s[len(courierPrefix):], true
	}
	return "", false
}

// nameResult turns a mapping error into the tagged NO.
func nameResult(err error) result {
	switch {
	case errors.Is(err, errOutsideNS):
		return no("NONEXISTENT", "Mailbox names must start with INBOX. (Courier namespace)")
	case errors.Is(err, errInboxNoChildren):
		return no("CANNOT", err.Error())
	case errors.Is(err, errSharedNS):
		return no("NOPERM", "Not permitted in the shared namespace")
	}
	return no("CANNOT", "Invalid mailbox name: empty components, \"..\", \"/\", NUL and control characters are not allowed")
}

// matchPattern reports whether name matches a LIST pattern (RFC 3501
// 6.3.8): "*" matches anything, "%" anything but the delimiter. Dynamic
// programming keeps hostile patterns ("*a*a*a*...") linear per name.
func matchPattern(pattern, name string) bool {
	// prev[j]: pattern[:i] matches name[:j].
	prev := make([]bool, len(name)+1)
	cur := make([]bool, len(name)+1)
	prev[0] = true
	for i := 0; i < len(pattern); i++ {
		p := pattern[i]
		switch p {
		case '*', '%':
			cur[0] = prev[0]
			for j := 1; j <= len(name); j++ {
				cur[j] = prev[j] || (cur[j-1] && (p == '*' || name[j-1] != delimiter))
			}
		default:
			cur[0] = false
			for j := 1; j <= len(name); j++ {
				cur[j] = prev[j-1] && name[j-1] == p
			}
		}
		prev, cur = cur, prev
	}
	return prev[len(name)]
}
