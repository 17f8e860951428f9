package mime

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// maxKeptLine bounds how much of one physical line the parser keeps in
// memory. Longer lines are still consumed and counted (their offsets stay
// exact), but only this prefix is looked at: enough for any header field a
// sane mailer writes and far more than a boundary line (RFC 2046 5.1.1 caps
// boundaries at 70 characters).
const maxKeptLine = 64 << 10

// lineReader hands out the message one physical line at a time, with the
// offset of each line and the length of its line ending, so the parser can
// build exact byte positions without holding the message in memory.
type lineReader struct {
	br  *bufio.Reader
	off int64 // offset of the next unread byte
	err error // sticky I/O error (not io.EOF)

	// The current line, valid until the next call to next.
	line   []byte // content without the line ending, at most maxKeptLine bytes
	start  int64  // offset of the line's first byte
	length int64  // full length including the line ending
	eol    int    // 0 (EOF without newline), 1 (LF) or 2 (CRLF)
	long   []byte // scratch for lines that do not fit bufio's buffer

	pushedBack bool

	// Bookkeeping for the parser: the line before the current one, whose
	// line ending belongs to a boundary that follows it (RFC 2046 5.1.1),
	// and the number of LFs in every line returned so far.
	prevEnd int64
	prevEOL int
	lfTotal int64
}

func newLineReader(r io.ReaderAt, start, end int64) *lineReader {
	// A small message gets a buffer of its size, not 8 KiB (one line more
	// than the section never has to fit).
	return &lineReader{
		br:  bufio.NewReaderSize(io.NewSectionReader(r, start, end-start), int(min(8<<10, max(end-start+1, 16)))),
		off: start,
	}
}

// unread makes the next call to next return the current line again. Only
// one line can be pushed back, which is all the recursive parser needs: a
// boundary line is seen by the innermost part and handed to its parent.
func (lr *lineReader) unread() { lr.pushedBack = true }

// next advances to the following line. It returns false at the end of input
// or on an I/O error (kept in lr.err).
func (lr *lineReader) next() bool {
	if lr.pushedBack {
		lr.pushedBack = false
		return true
	}
	if lr.err != nil {
		return false
	}
	lr.prevEnd, lr.prevEOL = lr.start+lr.length, lr.eol
	lr.start = lr.off
	chunk, err := lr.br.ReadSlice('\n')
	total := int64(len(chunk))
	if err != nil && err != io.EOF && !errors.Is(err, bufio.ErrBufferFull) {
		lr.err = fmt.Errorf("read at offset %d: %w", lr.off+total, err)
		return false
	}
	if total == 0 {
		return false
	}
	if !errors.Is(err, bufio.ErrBufferFull) {
		lr.off += total
		lr.length = total
		lr.eol = eolLength(chunk, 0)
		lr.line = chunk[:len(chunk)-lr.eol]
		lr.countLF()
		return true
	}
	// A line longer than the buffer: keep a bounded prefix, skip the rest.
	lr.long = append(lr.long[:0], chunk[:min(len(chunk), maxKeptLine)]...)
	last := chunk[len(chunk)-1]
	for errors.Is(err, bufio.ErrBufferFull) {
		chunk, err = lr.br.ReadSlice('\n')
		total += int64(len(chunk))
		if room := maxKeptLine - len(lr.long); room > 0 {
			lr.long = append(lr.long, chunk[:min(room, len(chunk))]...)
		}
		if len(chunk) > 0 {
			if len(chunk) == 1 {
				lr.eol = eolLength(chunk, last)
			}
			last = chunk[len(chunk)-1]
		}
	}
	if err != nil && err != io.EOF {
		lr.err = fmt.Errorf("read at offset %d: %w", lr.off+total, err)
		return false
	}
	lr.off += total
	lr.length = total
	if len(chunk) != 1 {
		lr.eol = eolLength(chunk, 0)
	}
	lr.line = lr.long
	if total <= int64(len(lr.long)) {
		lr.line = lr.long[:len(lr.long)-lr.eol]
	}
	lr.countLF()
	return true
}

func (lr *lineReader) countLF() {
	if lr.eol > 0 {
		lr.lfTotal++
	}
}

// lfBeforeNext is the number of LFs before the next line that next will
// return (which is the current line again after unread).
func (lr *lineReader) lfBeforeNext() int64 {
	if lr.pushedBack && lr.eol > 0 {
		return lr.lfTotal - 1
	}
	return lr.lfTotal
}

// offNext is the offset of the next line that next will return.
func (lr *lineReader) offNext() int64 {
	if lr.pushedBack {
		return lr.start
	}
	return lr.off
}

// eolOwnedByBoundary returns the length of the line ending that precedes
// the pushed-back boundary line at end, which RFC 2046 5.1.1 assigns to the
// boundary rather than to the body before it. It is 0 when no boundary
// follows or nothing precedes it after floor.
func (lr *lineReader) eolOwnedByBoundary(end, floor int64) int64 {
	if !lr.pushedBack || lr.prevEnd != end || end <= floor {
		return 0
	}
	return int64(lr.prevEOL)
}

// eolLength is the length of the line ending at the end of chunk: 2 for
// CRLF, 1 for a bare LF, 0 when the chunk does not end a line. before is the
// byte preceding chunk, for a chunk that is just "\n".
func eolLength(chunk []byte, before byte) int {
	n := len(chunk)
	if n == 0 || chunk[n-1] != '\n' {
		return 0
	}
	if (n > 1 && chunk[n-2] == '\r') || (n == 1 && before == '\r') {
		return 2
	}
	return 1
}

// isBlank reports whether the current line is the empty line that ends a
// header.
func (lr *lineReader) isBlank() bool { return len(lr.line) == 0 && lr.eol > 0 }
