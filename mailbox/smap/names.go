package smap

import (
	"errors"
	"strings"
	"unicode/utf16"
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
// valid modified UTF-7.
func decodeMUTF7(s string) (string, bool) {
	if !strings.Contains(s, "&") {
		return s, true
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '&' {
			if c < 0x20 || c > 0x7e {
				return "", false
			}
			b.WriteByte(c)
			continue
		}
		j := strings.IndexByte(s[i+1:], '-')
		if j < 0 {
			return "", false
		}
		enc := s[i+1 : i+1+j]
		i += j + 1
		if enc == "" {
			b.WriteByte('&')
			continue
		}
		var bits, nbits uint32
		var units []uint16
		for k := 0; k < len(enc); k++ {
			v := b64index(enc[k])
			if v < 0 {
				return "", false
			}
			bits = bits<<6 | uint32(v)
			nbits += 6
			if nbits >= 16 {
				nbits -= 16
				units = append(units, uint16(bits>>nbits))
				bits &= 1<<nbits - 1
			}
		}
		for _, r := range utf16.Decode(units) {
			if r == utf8.RuneError {
				return "", false
			}
			b.WriteRune(r)
		}
	}
	return b.String(), true
}

func b64index(c byte) int {
	switch {
	case c >= 'A' && c <= 'Z':
		return int(c - 'A')
	case c >= 'a' && c <= 'z':
		return int(c-'a') + 26
	case c >= '0' && c <= '9':
		return int(c-'0') + 52
	case c == '+':
		return 62
	case c == ',':
		return 63
	}
	return -1
}
