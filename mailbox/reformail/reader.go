package reformail

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// Bounds on what reformail holds in memory. A body line of any length is
// streamed in chunks; header fields are held whole, so they are bounded.
const (
	readChunk      = 64 << 10 // body lines longer than this are passed on in pieces
	maxHeaderLine  = 1 << 20  // one unfolded header field
	maxHeaderBlock = 8 << 20  // the whole header, held only by -f1
)

// ErrHeaderTooLong is returned when a header field or (for -f1) the header
// block is larger than reformail will hold in memory.
var ErrHeaderTooLong = errors.New("header too long")

// lineReader yields the message's physical lines. Like Courier's, it accepts
// LF or CRLF endings: one CR before the LF is removed, and the caller adds
// the ending chosen by -d.
type lineReader struct {
	br      *bufio.Reader
	peeked  []byte // a whole line read ahead by the header reader
	hasPeek bool
	eof     bool
}

func newLineReader(r io.Reader) *lineReader {
	return &lineReader{br: bufio.NewReaderSize(r, readChunk)}
}

// line returns the next whole line without its ending, refusing lines longer
// than limit. ok is false at the end of input.
func (lr *lineReader) line(limit int) (line []byte, ok bool, err error) {
	if lr.hasPeek {
		lr.hasPeek = false
		return lr.peeked, true, nil
	}
	var buf []byte
	for {
		frag, err := lr.br.ReadSlice('\n')
		if len(buf)+len(frag) > limit+2 {
			return nil, false, fmt.Errorf("line of more than %d bytes: %w", limit, ErrHeaderTooLong)
		}
		buf = append(buf, frag...)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF {
			lr.eof = true
			if len(buf) == 0 {
				return nil, false, nil
			}
			return trimEnding(buf), true, nil
		}
		if err != nil {
			return nil, false, fmt.Errorf("read: %w", err)
		}
		return trimEnding(buf), true, nil
	}
}

// unread gives a line back, to be returned by the next call to line.
func (lr *lineReader) unread(line []byte) {
	lr.peeked, lr.hasPeek = line, true
}

// trimEnding removes the LF and one CR before it.
func trimEnding(b []byte) []byte {
	b = bytes.TrimSuffix(b, []byte("\n"))
	return bytes.TrimSuffix(b, []byte("\r"))
}

// chunk returns the next piece of a body line: at most readChunk bytes, with
// end set when the piece finishes its line (the ending removed). A CR that
// happens to be the last byte of a full piece is held back so that a CRLF
// split across pieces is still recognised.
func (lr *lineReader) chunk(pendingCR *bool) (piece []byte, end, ok bool, err error) {
	if lr.hasPeek {
		lr.hasPeek = false
		return lr.peeked, true, true, nil
	}
	frag, rerr := lr.br.ReadSlice('\n')
	out := frag
	if *pendingCR {
		out = append([]byte{'\r'}, frag...)
		*pendingCR = false
	}
	switch {
	case rerr == bufio.ErrBufferFull:
		if n := len(out); n > 0 && out[n-1] == '\r' {
			out = out[: n-1 : n-1]
			*pendingCR = true
		}
		return out, false, true, nil
	case rerr == io.EOF:
		lr.eof = true
		if len(out) == 0 {
			return nil, false, false, nil
		}
		return trimEnding(out), true, true, nil
	case rerr != nil:
		return nil, false, false, fmt.Errorf("read: %w", rerr)
	}
	return trimEnding(out), true, true, nil
}
