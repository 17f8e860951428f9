package main

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The body is made of printable US-ASCII lines well under the 998-octet
// limit of RFC 5322 section 2.1.1, none starting with "." (so nothing is
// dot-stuffed and the bytes on the wire equal the bytes delivered), each
// ended by CRLF (RFC 5322 section 2.3).
const (
	bodyAlphabet   = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	bodyLineChars  = 76
	bodyLineLength = bodyLineChars + 2 // with CRLF
)

// messageBuilder writes test messages of an exact size. One builder is
// shared by all workers; it holds no mutable state.
type messageBuilder struct {
	size       int64
	from       string // for the From: header
	runID      string
	bodyCycle  []byte // len(bodyAlphabet) distinct lines, repeated as needed
	headerHost string
}

func newMessageBuilder(size int64, from, runID string) *messageBuilder {
	b := &messageBuilder{size: size, from: from, runID: runID, headerHost: "smtpload.invalid"}
	if b.from == "" {
		// A null reverse-path (MAIL FROM:<>) still needs a From: field
		// (RFC 5322 section 3.6 requires one).
		b.from = "smtpload@smtpload.invalid"
	}
	for i := range len(bodyAlphabet) {
		b.bodyCycle = append(b.bodyCycle, alphabetRun(i, bodyLineChars)...)
		b.bodyCycle = append(b.bodyCycle, '\r', '\n')
	}
	return b
}

// alphabetRun returns n characters of bodyAlphabet cycled from offset.
func alphabetRun(offset, n int) []byte {
	out := make([]byte, n)
	for i := range out {
		out[i] = bodyAlphabet[(offset+i)%len(bodyAlphabet)]
	}
	return out
}

// header returns the RFC 5322 header section, including the empty line
// that ends it. extraSubject adds characters to the Subject so that a
// body of exactly one octet (which cannot be a CRLF-ended line) is never
// needed.
func (b *messageBuilder) header(seq int64, rcpts []string, date time.Time, extraSubject int) string {
	var h strings.Builder
	// RFC 5322 section 3.3 date-time; RFC1123Z has fixed-width fields.
	h.WriteString("Date: " + date.Format(time.RFC1123Z) + "\r\n")
	h.WriteString("From: <" + b.from + ">\r\n")
	h.WriteString("To: ")
	for i, r := range rcpts {
		if i > 0 {
			// Fold between addresses so that many recipients never make
			// a line longer than RFC 5322 section 2.1.1 allows.
			h.WriteString(",\r\n ")
		}
		h.WriteString("<" + r + ">")
	}
	h.WriteString("\r\n")
	h.WriteString("Message-ID: <" + b.runID + "." + strconv.FormatInt(seq, 10) + "@" + b.headerHost + ">\r\n")
	h.WriteString("Subject: smtpload message " + strconv.FormatInt(seq, 10) + strings.Repeat(".", extraSubject) + "\r\n")
	h.WriteString("\r\n")
	return h.String()
}

// minimumSize is the smallest -size for which every message of the run
// can be built exactly: the longest header (longest recipient set and
// widest sequence number) plus nothing.
func (b *messageBuilder) minimumSize(maxSeq int64, to []string, perMessage int) int64 {
	longest := append([]string(nil), to...)
	sort.Slice(longest, func(i, j int) bool { return len(longest[i]) > len(longest[j]) })
	if perMessage > 0 && perMessage < len(longest) {
		longest = longest[:perMessage]
	}
	return int64(len(b.header(maxSeq, longest, time.Unix(0, 0).UTC(), 1)))
}

// write writes message number seq to w and returns the number of octets
// written, which is b.size unless the header alone is larger.
func (b *messageBuilder) write(w io.Writer, seq int64, rcpts []string, date time.Time) (int64, error) {
	head := b.header(seq, rcpts, date, 0)
	body := b.size - int64(len(head))
	if body == 1 {
		head = b.header(seq, rcpts, date, 1)
		body = 0
	}
	if body < 0 {
		return 0, fmt.Errorf("message %d: header is %d octets, more than -size %d", seq, len(head), b.size)
	}
	written, err := io.WriteString(w, head)
	total := int64(written)
	if err != nil {
		return total, err
	}
	fullLines := body / bodyLineLength
	rest := int(body % bodyLineLength)
	var tail []byte
	switch {
	case rest == 1:
		// Lengthen the last line by one character instead.
		fullLines--
		tail = append(alphabetRun(int(fullLines), bodyLineChars+1), '\r', '\n')
	case rest >= 2:
		tail = append(alphabetRun(int(fullLines), rest-2), '\r', '\n')
	}
	for remaining := fullLines * bodyLineLength; remaining > 0; {
		chunk := b.bodyCycle
		if int64(len(chunk)) > remaining {
			chunk = chunk[:remaining]
		}
		n, err := w.Write(chunk)
		total += int64(n)
		remaining -= int64(n)
		if err != nil {
			return total, err
		}
	}
	n, err := w.Write(tail)
	total += int64(n)
	return total, err
}
