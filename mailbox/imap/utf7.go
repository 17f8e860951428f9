package imap

import (
	"encoding/base64"
	"errors"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// Mailbox names travel in IMAP's modified UTF-7 (RFC 3501 section 5.1.3):
// printable ASCII stands for itself except "&", which is written "&-"; other
// characters are UTF-16BE in modified base64 ("," for "/") between "&" and
// "-". Courier keeps that form on disk, so do we: the wire name is the folder
// name. These helpers check names and convert UTF-8 from clients that send it.

var mutf7Encoding = base64.NewEncoding("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,").WithPadding(base64.NoPadding)

var errBadUTF7 = errors.New("invalid modified UTF-7 mailbox name")

// decodeMUTF7 converts a modified UTF-7 name to UTF-8, failing on anything
// RFC 3501 5.1.3 does not allow (raw 8-bit bytes, unterminated or padded
// shifts, ASCII encoded in base64, empty shifts other than "&-").
func decodeMUTF7(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); {
		c := s[i]
		if c < 0x20 || c > 0x7e {
			return "", errBadUTF7
		}
		if c != '&' {
			b.WriteByte(c)
			i++
			continue
		}
		end := strings.IndexByte(s[i+1:], '-')
		if end < 0 {
			return "", errBadUTF7
		}
		enc := s[i+1 : i+1+end]
		i += end + 2
		if enc == "" {
			b.WriteByte('&')
			continue
		}
		raw, err := mutf7Encoding.DecodeString(enc)
		if err != nil || len(raw)%2 != 0 {
			return "", errBadUTF7
		}
		units := make([]uint16, len(raw)/2)
		for j := range units {
			units[j] = uint16(raw[2*j])<<8 | uint16(raw[2*j+1])
		}
		for _, r := range utf16.Decode(units) {
			if r == utf8.RuneError || (r >= 0x20 && r <= 0x7e) {
				return "", errBadUTF7
			}
			b.WriteRune(r)
		}
	}
	return b.String(), nil
}

// encodeMUTF7 converts a UTF-8 name to modified UTF-7.
func encodeMUTF7(s string) string {
	var b strings.Builder
	var pending []rune
	flush := func() {
		if len(pending) == 0 {
			return
		}
		units := utf16.Encode(pending)
		raw := make([]byte, 2*len(units))
		for i, u := range units {
			raw[2*i], raw[2*i+1] = byte(u>>8), byte(u)
		}
		b.WriteByte('&')
		b.WriteString(mutf7Encoding.EncodeToString(raw))
		b.WriteByte('-')
		pending = pending[:0]
	}
	for _, r := range s {
		if r >= 0x20 && r <= 0x7e {
			flush()
			if r == '&' {
				b.WriteString("&-")
			} else {
				b.WriteRune(r)
			}
			continue
		}
		pending = append(pending, r)
	}
	flush()
	return b.String()
}

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
