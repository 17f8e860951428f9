package webmail

import (
	"encoding/base64"
	"errors"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"postern/mailbox/maildir"
)

// The special folders: the names the IMAP server creates at first login
// (RFC 6154's special-use folders), so that both see the same ones.
const (
	folderSent   = "Sent"
	folderDrafts = "Drafts"
	folderTrash  = "Trash"
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

var mutf7 = base64.NewEncoding("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,").WithPadding(base64.NoPadding)

// decodeMUTF7 decodes IMAP's modified UTF-7 (RFC 3501 5.1.3), strictly:
// an unterminated or empty shift, bad base64, an odd byte count, a lone
// surrogate or a shifted printable ASCII character is an error.
func decodeMUTF7(s string) (string, error) {
	bad := errors.New("bad modified UTF-7")
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e {
			return "", bad
		}
		if c != '&' {
			b.WriteByte(c)
			continue
		}
		end := strings.IndexByte(s[i+1:], '-')
		if end < 0 {
			return "", bad
		}
		enc := s[i+1 : i+1+end]
		i += end + 1
		if enc == "" {
			b.WriteByte('&')
			continue
		}
		raw, err := mutf7.DecodeString(enc)
		if err != nil || len(raw)%2 != 0 {
			return "", bad
		}
		units := make([]uint16, len(raw)/2)
		for j := range units {
			units[j] = uint16(raw[2*j])<<8 | uint16(raw[2*j+1])
		}
		for j := 0; j < len(units); j++ {
			u := units[j]
			var r rune
			switch {
			case utf16.IsSurrogate(rune(u)):
				if u >= 0xdc00 || j+1 >= len(units) {
					return "", bad
				}
				r = utf16.DecodeRune(rune(u), rune(units[j+1]))
				if r == utf8.RuneError {
					return "", bad
				}
				j++
			default:
				r = rune(u)
				if r >= 0x20 && r <= 0x7e {
					return "", bad // must have been written directly
				}
			}
			b.WriteRune(r)
		}
	}
	return b.String(), nil
}
