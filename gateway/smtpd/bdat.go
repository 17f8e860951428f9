package smtpd

import (
	"errors"
	"io"
	"strconv"
	"strings"
)

// parseBDATArg parses "chunk-size [LAST]" (RFC 3030 2).
func parseBDATArg(arg string) (size int64, last bool, err error) {
	f := strings.Fields(arg)
	if len(f) == 0 || len(f) > 2 {
		return 0, false, errors.New("BDAT: expected chunk-size [LAST]")
	}
	if len(f[0]) > 18 {
		return 0, false, errors.New("BDAT: chunk size too long")
	}
	for i := 0; i < len(f[0]); i++ {
		if f[0][i] < '0' || f[0][i] > '9' {
			return 0, false, errors.New("BDAT: chunk size not a number")
		}
	}
	size, err = strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		return 0, false, errors.New("BDAT: bad chunk size")
	}
	if len(f) == 2 {
		if !strings.EqualFold(f[1], "LAST") {
			return 0, false, errors.New("BDAT: expected LAST")
		}
		last = true
	}
	return size, last, nil
}

func (c *conn) cmdBDAT(arg string) bool {
	if !c.opt.EnableChunking {
		c.reply(502, "5.5.1", "Error: command not implemented")
		return true
	}
	size, last, err := parseBDATArg(arg)
	if err != nil {
		c.reply(501, "5.5.4", "Syntax: BDAT chunk-size [LAST]")
		return true
	}
	if size > c.opt.drainLimit() {
		// We cannot skip that many bytes to find the next command.
		c.reply(552, "5.3.4", "Error: chunk too large; closing connection")
		return false
	}
	if !c.inTx || c.rcpts == 0 {
		// RFC 3030 2: the chunk is read even when the command fails, so
		// that the next command is found.
		if !c.discard(size) {
			return false
		}
		c.readyForData()
		return true
	}
	br := &bdatReader{
		c:         c,
		remaining: size,
		chunk:     size,
		last:      last,
		binary:    c.mailParams.Body == "BINARYMIME",
		normalize: c.opt.BareLineEndings == BareLFNormalize,
		maxSize:   c.opt.MaxMessageSize,
		rawLimit:  c.opt.drainLimit(),
		raw:       size,
		bare:      &c.info.BareLF,
	}
	c.info.BareLF = false
	c.timeout = c.opt.DataTimeout
	n := c.rcpts
	rep, reps := c.sessionData(br)
	defer c.replied()
	leftover, err := br.drainChunk()
	c.timeout = c.opt.ReadTimeout
	c.endTx()
	if err != nil {
		c.readFailed(err)
		return false
	}
	if br.aborted {
		// RSET, QUIT, HELO or EHLO before BDAT LAST: the transaction is
		// gone; the command runs next.
		c.pendingLine, c.hasPendingLine = br.abortLine, true
		return true
	}
	c.messageReplies(rep, reps, n, br.err, leftover, br.size)
	return true
}

// discard skips n bytes of chunk data.
func (c *conn) discard(n int64) bool {
	c.timeout = c.opt.DataTimeout
	_, err := io.CopyN(io.Discard, c.br, n)
	c.timeout = c.opt.ReadTimeout
	if err != nil {
		c.readFailed(err)
		return false
	}
	return true
}

// bdatReader presents the chunks of one BDAT transaction (RFC 3030) as one
// stream. When a chunk is used up and it was not the LAST, it answers that
// chunk's BDAT with 250 and reads the next command itself: BDAT continues
// the stream, NOOP is answered, RSET/QUIT/HELO/EHLO abort the transaction
// (ErrTransactionAborted) and run next, anything else is 503.
//
// Unless BODY=BINARYMIME, bare CR and LF are handled as in DATA (rejected or
// normalised), so that a message relayed on with DATA cannot smuggle.
type bdatReader struct {
	c         *conn
	remaining int64 // bytes of the current chunk not yet read
	chunk     int64 // size of the current chunk
	last      bool  // the current chunk is the LAST
	binary    bool
	normalize bool
	maxSize   int64
	rawLimit  int64

	size    int64 // bytes delivered
	raw     int64 // chunk bytes announced so far
	buf     []byte
	out     []byte
	pending []byte
	heldCR  bool // the last byte read was a CR; its meaning depends on the next byte
	eof     bool
	bare    *bool // ConnInfo.BareLF

	err       error // sticky content error
	ioErr     error // fatal
	aborted   bool
	abortLine string
}

func (r *bdatReader) Read(p []byte) (int, error) {
	for len(r.pending) == 0 {
		switch {
		case r.err != nil:
			return 0, r.err
		case r.ioErr != nil:
			return 0, r.ioErr
		case r.aborted:
			return 0, ErrTransactionAborted
		case r.eof:
			return 0, io.EOF
		case r.remaining > 0:
			r.fill()
		case r.last:
			r.finish()
		default:
			r.nextChunk()
		}
	}
	n := copy(p, r.pending)
	r.pending = r.pending[n:]
	return n, nil
}

func (r *bdatReader) fill() {
	if r.buf == nil {
		r.buf = make([]byte, 32<<10)
	}
	n, err := r.c.br.Read(r.buf[:min(int64(len(r.buf)), r.remaining)])
	r.remaining -= int64(n)
	if n == 0 && err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		r.ioErr = err
		return
	}
	r.process(r.buf[:n])
}

// process checks line endings (unless binary) and queues the output.
func (r *bdatReader) process(b []byte) {
	if r.binary {
		r.emit(b)
		return
	}
	out := r.out[:0]
	if r.heldCR {
		r.heldCR = false
		if len(b) > 0 && b[0] == '\n' {
			b = b[1:]
		} else if !r.bareEnding() {
			return
		}
		out = append(out, '\r', '\n')
	}
	for i := 0; i < len(b); i++ {
		switch c := b[i]; c {
		case '\r':
			if i+1 == len(b) {
				r.heldCR = true
				continue
			}
			if b[i+1] == '\n' {
				i++
			} else if !r.bareEnding() {
				return
			}
			out = append(out, '\r', '\n')
		case '\n':
			if !r.bareEnding() {
				return
			}
			out = append(out, '\r', '\n')
		default:
			out = append(out, c)
		}
	}
	r.out = out
	r.emit(out)
}

// bareEnding records a bare CR or LF; false when the message is refused.
func (r *bdatReader) bareEnding() bool {
	*r.bare = true
	if !r.normalize {
		r.err = ErrBareLineEnding
		return false
	}
	return true
}

func (r *bdatReader) emit(b []byte) {
	if r.size+int64(len(b)) > r.maxSize {
		b = b[:r.maxSize-r.size]
		r.err = ErrTooBig
	}
	r.size += int64(len(b))
	r.pending = b
}

// finish ends the stream after the LAST chunk; a CR held back at the very
// end was a bare CR.
func (r *bdatReader) finish() {
	if r.heldCR {
		r.heldCR = false
		if !r.bareEnding() {
			return
		}
		r.emit(append(r.out[:0], '\r', '\n'))
		if len(r.pending) > 0 {
			return // EOF on the next call
		}
	}
	r.eof = true
}

// nextChunk acknowledges the finished chunk and waits for the next BDAT.
func (r *bdatReader) nextChunk() {
	c := r.c
	c.reply(250, "2.0.0", "Ok: %d octets received", r.chunk)
	for {
		if c.br.Buffered() == 0 {
			if err := c.flush(); err != nil {
				r.ioErr = err
				return
			}
		}
		c.timeout = c.opt.ReadTimeout
		line, err := c.readLine(c.opt.MaxLineLength)
		c.timeout = c.opt.DataTimeout
		if errors.Is(err, errLineTooLong) {
			c.reply(500, "5.5.2", "Error: line too long")
		} else if err != nil {
			r.ioErr = err
			return
		} else {
			verb, arg, _ := parseCommand(line)
			switch verb {
			case "BDAT":
				c.commands++
				c.srv.stats.commands.Add(1)
				size, last, err := parseBDATArg(arg)
				if err != nil {
					c.reply(501, "5.5.4", "Syntax: BDAT chunk-size [LAST]")
					break
				}
				if r.raw+size > r.rawLimit {
					r.ioErr = errDrainLimit
					return
				}
				r.raw += size
				r.remaining, r.chunk, r.last = size, size, last
				return
			case "RSET", "QUIT", "HELO", "EHLO":
				r.aborted, r.abortLine = true, line
				return
			case "NOOP":
				c.commands++
				c.srv.stats.commands.Add(1)
				c.reply(250, "2.0.0", "Ok")
			default:
				c.commands++
				c.srv.stats.commands.Add(1)
				c.reply(503, "5.5.1", "Error: BDAT expected")
			}
		}
		if c.errors >= c.opt.MaxErrors {
			r.ioErr = errTooManyErrors
			return
		}
		if c.commands > c.opt.MaxCommands {
			r.ioErr = errTooManyErrors
			return
		}
	}
}

// drainChunk discards what the session left of the current chunk. It
// returns how many bytes the session left unread (counting a missing LAST
// as one), or the connection's error.
func (r *bdatReader) drainChunk() (leftover int64, err error) {
	if r.ioErr != nil {
		return 0, r.ioErr
	}
	if r.aborted {
		return 0, nil
	}
	leftover = int64(len(r.pending)) + r.remaining
	if !r.last || (!r.eof && r.heldCR) {
		leftover++
	}
	r.pending = nil
	if r.remaining > 0 {
		n, err := io.CopyN(io.Discard, r.c.br, r.remaining)
		r.remaining -= n
		if err != nil {
			return leftover, err
		}
	}
	return leftover, nil
}
