package imap

import (
	"strings"
	"unicode/utf8"

	"postern/mailbox/maildir"
)

// Mailbox names travel in IMAP's modified UTF-7 (RFC 3501 section 5.1.3):
// printable ASCII stands for itself except "&", which is written "&-"; other
// characters are UTF-16BE in modified base64 ("," for "/") between "&" and
// "-". Courier keeps that form on disk, so do we: the wire name is the folder
// name. These helpers check names and convert UTF-8 from clients that send it.

var errBadUTF7 = maildir.ErrModifiedUTF7

// decodeMUTF7 and encodeMUTF7 are the Maildir library's codec.
var (
	decodeMUTF7 = maildir.DecodeModifiedUTF7
	encodeMUTF7 = maildir.EncodeModifiedUTF7
)

// wireMailboxName turns a mailbox name from a command into the canonical
// modified UTF-7 form: valid modified UTF-7 is kept as is; valid UTF-8 with
// non-ASCII characters (sent by clients that skip the encoding) is encoded.
// Such a name's "&-" is taken as "&": clients that see IMAP4rev2
// advertised but have not enabled it (go-imap) send UTF-8 names with only
// "&" escaped so.
func wireMailboxName(s string) (string, error) {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			if !utf8.ValidString(s) {
				return "", errBadUTF7
			}
			return encodeMUTF7(strings.ReplaceAll(s, "&-", "&")), nil
		}
	}
	if _, err := decodeMUTF7(s); err != nil {
		return "", err
	}
	return s, nil
}
