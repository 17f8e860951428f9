package mime

import (
	"errors"
	"fmt"
	"io"
)

// ErrUnknownEncoding is returned by Decoded for a part whose
// Content-Transfer-Encoding this package cannot undo (IMAP answers
// NO [UNKNOWN-CTE], RFC 3516 4.3).
var ErrUnknownEncoding = errors.New("mime: unknown content transfer encoding")

// Decoded returns the content IMAP's BINARY[path] names (RFC 3516, RFC 9051
// 6.4.5): the body of the part that path numbers (as Find) with its
// Content-Transfer-Encoding undone. An empty path is the whole message as
// it is. A path that names no part gives empty content. Text parts
// (text/*) come with CRLF line ends even when base64 carried bare LFs, as
// RFC 9051 6.4.5 asks of textual sections. 7bit, 8bit and binary bodies
// are returned as they are, quoted-printable and base64 are decoded
// leniently (as for Text); any other encoding is ErrUnknownEncoding. Other
// errors mean r failed.
func Decoded(r io.ReaderAt, root *Part, path []int) ([]byte, error) {
	if len(path) == 0 {
		return readRange(r, root.HeaderStart, root.End)
	}
	part := root.Find(path)
	if part == nil {
		return []byte{}, nil
	}
	// Read nothing before knowing the encoding can be undone.
	switch part.Encoding {
	case "", "7BIT", "8BIT", "BINARY", "QUOTED-PRINTABLE", "BASE64":
	default:
		return nil, fmt.Errorf("%w %q", ErrUnknownEncoding, part.Encoding)
	}
	raw, err := readRange(r, part.BodyStart, part.End)
	if err != nil {
		return nil, err
	}
	var data []byte
	switch part.Encoding {
	case "QUOTED-PRINTABLE":
		data = decodeQuotedPrintable(raw)
	case "BASE64":
		data = decodeBase64Lenient(raw)
	default:
		return raw, nil
	}
	if part.Type == "text" {
		data = CRLF(data)
	}
	return data, nil
}

// CRLF returns b with every bare LF made CRLF; b itself when it is
// already clean.
func CRLF(b []byte) []byte {
	bare := 0
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			bare++
		}
	}
	if bare == 0 {
		return b
	}
	out := make([]byte, 0, len(b)+bare)
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			out = append(out, '\r')
		}
		out = append(out, c)
	}
	return out
}
