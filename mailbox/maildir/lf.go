package maildir

import (
	"bytes"
	"io"
)

// LFReader returns r with every CR that precedes an LF removed: in a
// Maildir, messages use the local newline, as Courier and Dovecot store
// them (the IMAP and POP3 servers put the CRs back on the wire). A lone CR
// is kept. The SMTP gateway and the delivery agent both store through it.
func LFReader(r io.Reader) io.Reader {
	return &lfReader{src: r, buf: make([]byte, 32*1024)}
}

// lfReader copies whole runs of bytes between CRs (one per line in SMTP
// data), so it costs little more than a copy.
type lfReader struct {
	src     io.Reader
	buf     []byte
	pending []byte // read from src, not yet returned
	heldCR  bool   // a CR ended the last read: keep it unless an LF follows
	err     error
}

func (l *lfReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if len(l.pending) == 0 {
			if l.err != nil {
				break
			}
			m, err := l.src.Read(l.buf)
			l.pending, l.err = l.buf[:m], err
			if m == 0 {
				continue
			}
		}
		if l.heldCR {
			if l.pending[0] != '\n' {
				p[n] = '\r' // a lone CR stays
				n++
			}
			l.heldCR = false
			continue
		}
		i := bytes.IndexByte(l.pending, '\r')
		if i < 0 {
			c := copy(p[n:], l.pending)
			n += c
			l.pending = l.pending[c:]
			continue
		}
		c := copy(p[n:], l.pending[:i])
		n += c
		l.pending = l.pending[c:]
		if c < i {
			break // p is full before the CR
		}
		// At a CR: drop it if an LF follows, keep it otherwise; at the end
		// of what was read, decide with the next read.
		l.pending = l.pending[1:]
		if len(l.pending) == 0 || n == len(p) {
			l.heldCR = true // decide when the next byte (or room) is there
			continue
		}
		if l.pending[0] != '\n' {
			p[n] = '\r'
			n++
		}
	}
	if n == 0 && len(l.pending) == 0 && l.err != nil {
		if l.heldCR {
			l.heldCR = false
			if len(p) > 0 {
				p[0] = '\r'
				return 1, nil
			}
		}
		return 0, l.err
	}
	return n, nil
}
