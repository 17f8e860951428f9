package smap

import (
	"errors"
	"strings"
	"unicode/utf8"

	"postern/mailbox/maildir"
)

// SMAP names folders by paths of words: "INBOX" is the account's mail, its
// subfolders are "INBOX" followed by their names, one word per level, and
// "public" is the shared hierarchy. A name may hold any UTF-8 character but
// the controls U+0000 to U+001F (smapfolders).
//
// On disk a path is the Maildir++ folder the IMAP server uses for the same
// folder: each level's name in modified UTF-7 (RFC 3501 5.1.3, as Postern
// and Courier 4 keep IMAP names), the levels joined with ".". A "." or "/"
// inside a name, which IMAP cannot express, is written as Courier writes
// it: "\056" and "\057" (a backslash as "\134", so the escape cannot be
// forged). So a name like "../x" is one harmless directory ".\056\056\057x"
// inside the Maildir.

const (
	inboxWord  = "INBOX"
	publicWord = "public"
)

var (
	errBadName  = errors.New("Invalid argument")          // Courier's EINVAL
	errNoFolder = errors.New("No such file or directory") // ENOENT
)

// encodeLevel maps one level's name to its on-disk form.
func encodeLevel(name string) (string, error) {
	if name == "" || !utf8.ValidString(name) {
		return "", errBadName
	}
	var b strings.Builder
	for _, r := range name {
		switch {
		case r < 0x20 || r == 0x7f:
			return "", errBadName
		case r == '.':
			b.WriteString(`\056`)
		case r == '/':
			b.WriteString(`\057`)
		case r == '\\':
			b.WriteString(`\134`)
		default:
			b.WriteRune(r)
		}
	}
	return maildir.EncodeModifiedUTF7(b.String()), nil
}

// decodeLevel is the inverse of encodeLevel, for LIST. Names IMAP or other
// tools made that do not decode are shown as they are on disk.
func decodeLevel(disk string) string {
	s, ok := decodeMUTF7(disk)
	if !ok {
		s = disk
	}
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

// folderName maps a path to the maildir folder name ("INBOX" or
// "Level1.Level2"). errBadName for a path outside INBOX or with a bad
// level; errNoFolder for the public hierarchy, which has no folders here.
func folderName(path []string) (string, error) {
	if len(path) == 0 {
		return "", errBadName
	}
	switch path[0] {
	case inboxWord:
	case publicWord:
		return "", errNoFolder
	default:
		return "", errBadName
	}
	if len(path) == 1 {
		return maildir.Inbox, nil
	}
	levels := make([]string, 0, len(path)-1)
	for _, p := range path[1:] {
		l, err := encodeLevel(p)
		if err != nil {
			return "", err
		}
		levels = append(levels, l)
	}
	name := strings.Join(levels, ".")
	if maildir.ValidFolderName(name) != nil {
		return "", errBadName
	}
	return name, nil
}

// decodeMUTF7 decodes modified UTF-7; ok is false for text that is not
// (a name another tool wrote), which is then shown as it is on disk.
func decodeMUTF7(s string) (string, bool) {
	d, err := maildir.DecodeModifiedUTF7(s)
	return d, err == nil
}
