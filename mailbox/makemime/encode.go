package makemime

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"strings"
)

// maxLine is the longest line makemime sends as 7bit or 8bit; a longer
// one needs quoted-printable (RFC 5322 2.1.1 allows 998 with the CRLF; Courier
// keeps a margin).
const maxLine = 990

// chooseEncoding picks the transfer encoding as Courier does: base64 for
// data with NUL bytes, quoted-printable when a line is too long, 8bit for
// 8-bit or control bytes, else 7bit.
func chooseEncoding(data []byte) string {
	if bytes.IndexByte(data, 0) >= 0 {
		return "base64"
	}
	eight := false
	col := 0
	for _, c := range data {
		if c == '\n' {
			col = 0
			continue
		}
		col++
		if col > maxLine {
			return "quoted-printable"
		}
		if c >= 0x80 || (c < 0x20 && c != '\t' && c != '\r' && c != '\f') {
			eight = true
		}
	}
	if eight {
		return "8bit"
	}
	return "7bit"
}

// encodeBase64 writes 76-character lines, each ending in a newline.
func encodeBase64(data []byte) []byte {
	enc := base64.StdEncoding.EncodeToString(data)
	var b bytes.Buffer
	for len(enc) > 76 {
		b.WriteString(enc[:76])
		b.WriteByte('\n')
		enc = enc[76:]
	}
	if enc != "" {
		b.WriteString(enc)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// qpWidth is the column at which a quoted-printable line gets its soft
// break, before the next character or =XX (so a line holds 73 to 75).
const qpWidth = 73

// EncodeQP is quoted-printable (RFC 2045 6.7): "=", 8-bit and control
// bytes as =XX, a blank before a line end as =20 or =09, and soft breaks
// that never split an =XX.
func EncodeQP(data []byte) []byte {
	var b bytes.Buffer
	col := 0
	emit := func(tok string) {
		if col >= qpWidth {
			b.WriteString("=\n")
			col = 0
		}
		b.WriteString(tok)
		col += len(tok)
	}
	for i := 0; i < len(data); i++ {
		c := data[i]
		switch {
		case c == '\n':
			b.WriteByte('\n')
			col = 0
		case (c == ' ' || c == '\t') && (i+1 == len(data) || data[i+1] == '\n'):
			emit(fmt.Sprintf("=%02X", c))
		case c == '=' || c >= 0x7f || c < 0x20:
			emit(fmt.Sprintf("=%02X", c))
		default:
			emit(string(c))
		}
	}
	return b.Bytes()
}

// nameParam is the Content-Type name parameter: quoted when it is plain
// and short, else in RFC 2231's encoded, continued form.
func nameParam(name, charset string) string {
	if plainValue(name) {
		return `name="` + name + `"`
	}
	if charset == "" {
		charset = "utf-8"
	}
	var units []string
	for i := 0; i < len(name); i++ {
		c := name[i]
		if isAttrChar(c) {
			units = append(units, string(c))
		} else {
			units = append(units, fmt.Sprintf("%%%02X", c))
		}
	}
	var parts []string
	cur := charset + "''"
	limit := 56 + len(charset) + 2
	for _, u := range units {
		cur += u
		if len(cur) >= limit {
			parts = append(parts, cur)
			cur, limit = "", 63
		}
	}
	if cur != "" || len(parts) == 0 {
		parts = append(parts, cur)
	}
	var b strings.Builder
	for i, p := range parts {
		if i > 0 {
			b.WriteString(";\n  ")
		}
		fmt.Fprintf(&b, "name*%d*=%s", i, p)
	}
	return b.String()
}

// plainValue says whether a value can go as a quoted string on one line.
func plainValue(v string) bool {
	if len(v) > maxPlainName {
		return false
	}
	for i := 0; i < len(v); i++ {
		if !isAttrChar(v[i]) {
			return false
		}
	}
	return true
}

// maxPlainName is the longest name written without RFC 2231 continuations.
const maxPlainName = 70

// isAttrChar says whether Courier writes c as it is in a parameter value:
// printable ASCII but for a few of RFC 2045's tspecials and RFC 2231's
// "'" and "%".
func isAttrChar(c byte) bool {
	if c <= ' ' || c >= 0x7f {
		return false
	}
	return !strings.ContainsRune("'%();:\\\"=", rune(c))
}
