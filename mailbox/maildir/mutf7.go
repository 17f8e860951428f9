package maildir

import (
	"encoding/base64"
	"errors"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// Folder names on disk are IMAP's modified UTF-7 (RFC 3501 5.1.3), as
// Courier 4 and Postern keep them: printable ASCII stands for itself but
// "&", written "&-"; other characters are UTF-16BE in base64 ("," for "/")
// between "&" and "-". The IMAP and SMAP servers and the webmail convert
// with these two functions.

// ErrModifiedUTF7 is DecodeModifiedUTF7's error.
var ErrModifiedUTF7 = errors.New("invalid modified UTF-7 mailbox name")

// EncodeModifiedUTF7 converts a UTF-8 mailbox name to IMAP's modified
// UTF-7 (RFC 3501 5.1.3): printable ASCII stays, "&" becomes "&-", other
// characters are UTF-16BE in base64 with "," for "/", between "&" and "-".
func EncodeModifiedUTF7(s string) string {
	var out strings.Builder
	var pending []rune
	flush := func() {
		if len(pending) == 0 {
			return
		}
		units := utf16.Encode(pending)
		raw := make([]byte, 0, len(units)*2)
		for _, u := range units {
			raw = append(raw, byte(u>>8), byte(u))
		}
		out.WriteByte('&')
		out.WriteString(modifiedBase64Encoding.EncodeToString(raw))
		out.WriteByte('-')
		pending = pending[:0]
	}
	for _, r := range s {
		switch {
		case r == '&':
			flush()
			out.WriteString("&-")
		case r >= 0x20 && r <= 0x7e:
			flush()
			out.WriteRune(r)
		default:
			pending = append(pending, r)
		}
	}
	flush()
	return out.String()
}

// DecodeModifiedUTF7 converts a modified UTF-7 name to UTF-8, failing on
// anything RFC 3501 5.1.3 does not allow: raw 8-bit bytes or controls,
// unterminated or padded shifts, bad base64, an odd byte count, a lone
// surrogate, ASCII written in base64.
func DecodeModifiedUTF7(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); {
		c := s[i]
		if c < 0x20 || c > 0x7e {
			return "", ErrModifiedUTF7
		}
		if c != '&' {
			b.WriteByte(c)
			i++
			continue
		}
		end := strings.IndexByte(s[i+1:], '-')
		if end < 0 {
			return "", ErrModifiedUTF7
		}
		enc := s[i+1 : i+1+end]
		i += end + 2
		if enc == "" {
			b.WriteByte('&')
			continue
		}
		raw, err := modifiedBase64Encoding.DecodeString(enc)
		if err != nil || len(raw)%2 != 0 {
			return "", ErrModifiedUTF7
		}
		units := make([]uint16, len(raw)/2)
		for j := range units {
			units[j] = uint16(raw[2*j])<<8 | uint16(raw[2*j+1])
		}
		for _, r := range utf16.Decode(units) {
			if r == utf8.RuneError || (r >= 0x20 && r <= 0x7e) {
				return "", ErrModifiedUTF7
			}
			b.WriteRune(r)
		}
	}
	return b.String(), nil
}

var modifiedBase64Encoding = base64.NewEncoding("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,").WithPadding(base64.NoPadding)
