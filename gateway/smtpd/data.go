package smtpd

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// errDrainLimit: the client sent far more than any message may be; the
// engine stops reading and closes the connection.
var errDrainLimit = errors.New("smtpd: message data exceeds the drain limit")

// dotReader reads DATA content (RFC 5321 4.1.1.4, 4.5.2): it removes the
// dot-stuffing and ends only at CRLF "." CRLF, where the CRLF before the dot
// is a real CRLF (the one after DATA counts for an empty message). A bare LF
// or bare CR never ends a line that could end the data, so "\n.\n",
// "\r.\r" and "\n.\r\n" are content, never the end (the SMTP smuggling
// class, CVE-2023-51766). Depending on the policy, a bare line ending makes
// the reader fail with ErrBareLineEnding or is rewritten to CRLF.
//
// Lines are bounded by maxLine, delivered bytes by maxSize and raw bytes
// read by rawLimit.
type dotReader struct {
	br        *bufio.Reader
	maxSize   int64
	maxLine   int
	rawLimit  int64
	normalize bool

	size      int64 // bytes delivered to the reader's caller
	raw       int64 // bytes read from the connection
	discarded int64 // content bytes thrown away while draining
	atCRLF    bool  // the previous line ended with CRLF (or the data just began)
	prevCR    bool  // the last fragment read ended with CR
	skipping  bool  // inside an over-long line, discarding to its end
	discard   bool  // draining: no more output
	line      []byte
	scratch   []byte
	pending   []byte

	done  bool  // the terminator was read
	err   error // sticky content error: ErrTooBig, ErrBareLineEnding, ErrLineTooLong
	ioErr error // the connection failed; fatal
	bare  *bool // set when a bare LF or CR is seen (ConnInfo.BareLF)
}

func newDotReader(br *bufio.Reader, o *Options, bare *bool) *dotReader {
	return &dotReader{
		br:        br,
		bare:      bare,
		maxSize:   o.MaxMessageSize,
		maxLine:   o.MaxDataLineLength,
		rawLimit:  o.drainLimit(),
		normalize: o.BareLineEndings == BareLFNormalize,
		atCRLF:    true,
	}
}

func (r *dotReader) Read(p []byte) (int, error) {
	for len(r.pending) == 0 {
		// A content error wins over the end of data: a session must
		// never see a refused message as complete.
		switch {
		case r.err != nil:
			return 0, r.err
		case r.ioErr != nil:
			return 0, r.ioErr
		case r.done:
			return 0, io.EOF
		}
		r.next()
	}
	n := copy(p, r.pending)
	r.pending = r.pending[n:]
	return n, nil
}

// next reads one line and turns it into pending output, or ends the data.
func (r *dotReader) next() {
	line, endsCRLF, ok := r.readLine()
	if !ok {
		return
	}
	terminator := r.atCRLF && len(line) == 3 && line[0] == '.' && line[1] == '\r' && line[2] == '\n'
	r.atCRLF = endsCRLF
	if terminator {
		r.done = true
		return
	}
	if r.discard || r.err != nil {
		r.discarded += int64(len(line))
		return
	}
	r.pending = r.process(line, endsCRLF)
}

// process unstuffs one complete line and checks its line ending.
func (r *dotReader) process(line []byte, endsCRLF bool) []byte {
	// RFC 5321 4.5.2: a leading dot with other characters after it is
	// removed. A lone dot before a bare line ending was not stuffing; it
	// stays.
	if line[0] == '.' && len(line) > 1 && line[1] != '\r' && line[1] != '\n' {
		line = line[1:]
	}
	n := len(line)
	// A clean line: ends in CRLF and has no other CR (LF only ends lines).
	if !(endsCRLF && n >= 2 && line[n-2] == '\r' && bytes.IndexByte(line[:n-2], '\r') < 0) {
		*r.bare = true
		if !r.normalize {
			r.err = ErrBareLineEnding
			return nil
		}
		line = r.normalizeLine(line)
	}
	if r.size+int64(len(line)) > r.maxSize {
		line = line[:r.maxSize-r.size]
		r.err = ErrTooBig
	}
	r.size += int64(len(line))
	return line
}

// normalizeLine rewrites every bare CR and bare LF in line to CRLF.
func (r *dotReader) normalizeLine(line []byte) []byte {
	out := r.scratch[:0]
	for i := 0; i < len(line); i++ {
		switch c := line[i]; c {
		case '\r':
			if i+1 < len(line) && line[i+1] == '\n' {
				i++
			}
			out = append(out, '\r', '\n')
		case '\n':
			out = append(out, '\r', '\n')
		default:
			out = append(out, c)
		}
	}
	r.scratch = out
	return out
}

// readLine returns the next complete line (up to and including its LF)
// and whether it ended with CRLF. Over-long lines are skipped with
// ErrLineTooLong recorded.
func (r *dotReader) readLine() (line []byte, endsCRLF, ok bool) {
	r.line = r.line[:0]
	for {
		frag, err := r.br.ReadSlice('\n')
		r.raw += int64(len(frag))
		if r.raw > r.rawLimit {
			r.ioErr = errDrainLimit
			return nil, false, false
		}
		if err != nil && err != bufio.ErrBufferFull {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			r.ioErr = err
			return nil, false, false
		}
		complete := err == nil
		if complete {
			n := len(frag)
			endsCRLF = n >= 2 && frag[n-2] == '\r' || n == 1 && r.prevCR
		}
		if len(frag) > 0 {
			r.prevCR = frag[len(frag)-1] == '\r'
		}
		if r.skipping {
			if complete {
				r.skipping = false
				r.atCRLF = endsCRLF
				r.line = r.line[:0]
			}
			continue
		}
		if complete && len(r.line) == 0 {
			if len(frag) > r.maxLine {
				r.tooLong()
				r.atCRLF = endsCRLF
				continue
			}
			return frag, endsCRLF, true
		}
		r.line = append(r.line, frag...)
		if len(r.line) > r.maxLine {
			r.tooLong()
			if complete {
				r.atCRLF = endsCRLF
			} else {
				r.skipping = true
			}
			r.line = r.line[:0]
			continue
		}
		if complete {
			return r.line, endsCRLF, true
		}
	}
}

func (r *dotReader) tooLong() {
	if r.err == nil && !r.discard {
		r.err = ErrLineTooLong
	}
}

// drain reads and discards the rest of the data up to the terminator. It
// returns how many content bytes the caller left unread.
func (r *dotReader) drain() (leftover int64, err error) {
	leftover = int64(len(r.pending))
	r.pending = nil
	r.discard = true
	for !r.done && r.ioErr == nil {
		r.next()
	}
	return leftover + r.discarded, r.ioErr
}
