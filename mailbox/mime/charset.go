package mime

import (
	"bytes"
	"encoding/base64"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/htmlindex"
	"golang.org/x/text/encoding/ianaindex"
)

// lookupCharset finds a decoder for a MIME charset name. It tries the IANA
// registry first, then the WHATWG names browsers accept (which also cover
// the mislabelled names mailers really send, like "latin1" or "win-1252").
func lookupCharset(name string) encoding.Encoding {
	name = strings.Trim(strings.TrimSpace(name), `"`)
	if name == "" {
		return nil
	}
	if enc, err := ianaindex.MIME.Encoding(name); err == nil && enc != nil {
		return enc
	}
	if enc, err := htmlindex.Get(name); err == nil && enc != nil {
		return enc
	}
	return nil
}

// isUTF8Compatible reports whether text in charset can be used as UTF-8
// without conversion.
func isUTF8Compatible(charset string) bool {
	switch strings.ToLower(strings.Trim(strings.TrimSpace(charset), `"`)) {
	case "", "us-ascii", "ascii", "utf-8", "utf8", "ansi_x3.4-1968":
		return true
	}
	return false
}

// toUTF8 converts b from charset to UTF-8. Unknown charsets and conversion
// failures pass the bytes through unchanged: a search may still match, and
// nothing is lost.
func toUTF8(charset string, b []byte) string {
	if isUTF8Compatible(charset) {
		return string(b)
	}
	enc := lookupCharset(charset)
	if enc == nil {
		return string(b)
	}
	out, err := enc.NewDecoder().Bytes(b)
	if err != nil {
		return string(b)
	}
	return string(out)
}

// maxEncodedWords bounds the RFC 2047 words decoded in one header value.
const maxEncodedWords = 1000

// DecodeHeaderValue decodes the RFC 2047 encoded-words in a header value to
// UTF-8, for SEARCH and display. It is lenient the way mail readers are:
// encoded-words glued to other text are decoded too, whitespace between two
// adjacent encoded-words is dropped (RFC 2047 6.2), "B" words with bad
// padding decode as far as they can, and a word in an unknown charset or
// with a bad encoding is left as written. Raw 8-bit text is passed through.
func DecodeHeaderValue(raw string) string {
	if !strings.Contains(raw, "=?") {
		return raw
	}
	var b strings.Builder
	b.Grow(len(raw))
	spaceStart := -1 // start of the whitespace run after the last token
	lastWasWord := false
	words := 0
	for i := 0; i < len(raw); {
		if words < maxEncodedWords && strings.HasPrefix(raw[i:], "=?") {
			if text, n, ok := decodeEncodedWord(raw[i:]); ok {
				words++
				if !lastWasWord && spaceStart >= 0 {
					b.WriteString(raw[spaceStart:i])
				}
				spaceStart = -1
				b.WriteString(text)
				i += n
				lastWasWord = true
				continue
			}
		}
		c := raw[i]
		if c == ' ' || c == '\t' || c == '\r' || c == '\n' {
			if spaceStart < 0 {
				spaceStart = i
			}
			i++
			continue
		}
		if spaceStart >= 0 {
			b.WriteString(raw[spaceStart:i])
			spaceStart = -1
		}
		lastWasWord = false
		b.WriteByte(c)
		i++
	}
	if spaceStart >= 0 {
		b.WriteString(raw[spaceStart:])
	}
	return b.String()
}

// maxEncodedWordLen bounds the length of one encoded-word. RFC 2047 2 says
// 75; mailers exceed it, so allow much more, but not so much that a value
// full of stray "=?" costs quadratic time.
const maxEncodedWordLen = 1024

// decodeEncodedWord decodes "=?charset?B|Q?text?=" at the start of s and
// returns the UTF-8 text and the number of bytes consumed.
func decodeEncodedWord(s string) (string, int, bool) {
	// =?charset?enc?text?=
	rest := s[2:min(len(s), maxEncodedWordLen)]
	q1 := strings.IndexByte(rest, '?')
	if q1 <= 0 || q1+2 >= len(rest) || rest[q1+2] != '?' {
		return "", 0, false
	}
	charset := rest[:q1]
	if star := strings.IndexByte(charset, '*'); star >= 0 {
		charset = charset[:star] // RFC 2231 5: charset*language
	}
	encChar := rest[q1+1] | 0x20
	body := rest[q1+3:]
	end := strings.Index(body, "?=")
	if end < 0 {
		return "", 0, false
	}
	text := body[:end]
	if strings.ContainsAny(text, " \t\r\n") {
		return "", 0, false
	}
	consumed := 2 + q1 + 3 + end + 2
	var decoded []byte
	switch encChar {
	case 'b':
		decoded = decodeBase64Lenient([]byte(text))
	case 'q':
		decoded = decodeQEncoding(text)
	default:
		return "", 0, false
	}
	if !isUTF8Compatible(charset) && lookupCharset(charset) == nil {
		return "", 0, false
	}
	out := toUTF8(charset, decoded)
	if isUTF8Compatible(charset) && !utf8.ValidString(out) {
		out = strings.ToValidUTF8(out, "\uFFFD")
	}
	return out, consumed, true
}

// decodeQEncoding decodes RFC 2047 4.2 "Q": like quoted-printable, with "_"
// for space.
func decodeQEncoding(s string) []byte {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '_':
			out = append(out, ' ')
		case '=':
			if i+2 < len(s) {
				hi, ok1 := unhex(s[i+1])
				lo, ok2 := unhex(s[i+2])
				if ok1 && ok2 {
					out = append(out, hi<<4|lo)
					i += 2
					continue
				}
			}
			out = append(out, c)
		default:
			out = append(out, c)
		}
	}
	return out
}

// decodeBase64Lenient decodes base64, skipping characters outside the
// alphabet and tolerating missing or extra padding: mailers get this wrong
// and readers cope.
func decodeBase64Lenient(src []byte) []byte {
	clean := make([]byte, 0, len(src))
	for _, c := range src {
		switch {
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '+', c == '/':
			clean = append(clean, c)
		case c == '=':
			// padding: stop at the first one; anything after is a new
			// (broken) stream we do not try to join.
			goto done
		}
	}
done:
	// Drop an impossible trailing single character.
	if len(clean)%4 == 1 {
		clean = clean[:len(clean)-1]
	}
	out := make([]byte, base64.RawStdEncoding.DecodedLen(len(clean)))
	n, err := base64.RawStdEncoding.Decode(out, clean)
	if err != nil {
		return bytes.TrimRight(out[:n], "\x00")
	}
	return out[:n]
}
