package reformime

import "strings"

// decodeBody undoes a transfer encoding (RFC 2045 6.7, 6.8) the lenient way
// Courier does: bad characters are skipped, never an error. Other
// encodings pass through.
func decodeBody(cte string, b []byte) []byte {
	switch cte {
	case "base64":
		return decodeBase64(b)
	case "quoted-printable":
		return decodeQP(b)
	}
	return b
}

func b64val(c byte) int {
	switch {
	case c >= 'A' && c <= 'Z':
		return int(c - 'A')
	case c >= 'a' && c <= 'z':
		return int(c-'a') + 26
	case c >= '0' && c <= '9':
		return int(c-'0') + 52
	case c == '+':
		return 62
	case c == '/':
		return 63
	}
	return -1
}

// decodeBase64 decodes groups of four base64 characters, skipping anything
// else. As Courier does, "=" anywhere in a group only drops the byte it
// ends in the third or fourth place.
func decodeBase64(b []byte) []byte {
	out := make([]byte, 0, len(b)*3/4)
	var q [4]int
	var eq [4]bool
	n := 0
	for _, c := range b {
		v := b64val(c)
		if c == '=' {
			v = 99 // Courier's table value for "="; its bits leak into the output
		} else if v < 0 {
			continue
		}
		q[n], eq[n] = v, c == '='
		n++
		if n < 4 {
			continue
		}
		n = 0
		out = append(out, byte(q[0]<<2|q[1]>>4))
		if !eq[2] {
			out = append(out, byte(q[1]<<4|q[2]>>2))
		}
		if !eq[3] {
			out = append(out, byte(q[2]<<6|q[3]))
		}
	}
	return out
}

func hexval(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	}
	return -1
}

// decodeQP decodes quoted-printable: "=XX" is a byte, "=" at the end of a
// line joins it to the next.
func decodeQP(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c != '=' {
			out = append(out, c)
			continue
		}
		// Soft line break: "=" then optional blanks then the line end.
		j := i + 1
		for j < len(b) && (b[j] == ' ' || b[j] == '\t') {
			j++
		}
		if j < len(b) && b[j] == '\r' && j+1 < len(b) && b[j+1] == '\n' {
			i = j + 1
			continue
		}
		if j < len(b) && b[j] == '\n' {
			i = j
			continue
		}
		if j == len(b) {
			i = j
			continue
		}
		// As Courier does: "=" before a non-hex character is dropped, and
		// so is "=h" when the second character is not hex.
		if hexval(b[i+1]) < 0 {
			continue
		}
		if i+2 < len(b) && hexval(b[i+2]) >= 0 {
			out = append(out, byte(hexval(b[i+1])<<4|hexval(b[i+2])))
		}
		i++
		if i+1 < len(b) && hexval(b[i+1]) >= 0 {
			i++
		}
	}
	return out
}

// DecodeBody undoes a transfer encoding the way Courier's rfc2045 library
// does: base64 and quoted-printable leniently (bad characters skipped,
// never an error), anything else passed through. cte is as Part.CTE holds
// it. The SMAP server's BODY.DECODED uses it.
func DecodeBody(cte string, b []byte) []byte {
	return decodeBody(strings.ToLower(cte), b)
}
