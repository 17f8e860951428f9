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
	return &lfReader{src: r}
}

// lfReader reads straight into the caller's buffer and removes the CRs in
// place: no buffer of its own, and a copy per run of bytes between CRs
// (one run per line in SMTP data).
type lfReader struct {
	src     io.Reader
	heldCR  bool // the last byte read was a CR: its fate depends on the next
	peek    byte // a byte read ahead to decide a held CR's fate (1-byte reads)
	hasPeek bool
	err     error
}

func (l *lfReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for empty := 0; ; empty++ {
		if l.heldCR && len(p) == 1 {
			return l.decideHeldCR(p)
		}
		start := 0
		if l.heldCR {
			p[0] = '\r' // back in front of the new bytes; compact decides
			start = 1
		}
		if l.hasPeek && start < len(p) {
			p[start] = l.peek
			start++
			l.hasPeek = false
		}
		if l.err != nil {
			if start > 0 {
				l.heldCR = false
				return compactCRLF(p[:start]), nil // a lone CR at the end stays
			}
			return 0, l.err
		}
		m, err := 0, error(nil)
		if start < len(p) {
			m, err = l.src.Read(p[start:])
		}
		l.err = err
		end := start + m
		l.heldCR = false
		if end > 0 && p[end-1] == '\r' && l.err == nil {
			l.heldCR = true // wait for the next byte
			end--
		}
		if n := compactCRLF(p[:end]); n > 0 {
			return n, nil
		}
		if l.err != nil && !l.heldCR {
			return 0, l.err
		}
		if empty > 100 {
			return 0, io.ErrNoProgress
		}
	}
}

// decideHeldCR answers a one-byte read while a CR is held: it reads one
// byte ahead to know whether the CR ends a line (dropped) or stands alone.
func (l *lfReader) decideHeldCR(p []byte) (int, error) {
	if !l.hasPeek && l.err == nil {
		var b [1]byte
		for empty := 0; ; empty++ {
			m, err := l.src.Read(b[:])
			l.err = err
			if m == 1 {
				l.peek, l.hasPeek = b[0], true
				break
			}
			if err != nil || empty > 100 {
				break
			}
		}
	}
	l.heldCR = false
	if l.hasPeek && l.peek == '\n' {
		l.hasPeek = false
		p[0] = '\n'
		return 1, nil
	}
	p[0] = '\r' // a lone CR; the peeked byte comes next
	return 1, nil
}

// compactCRLF removes, in place, each CR directly followed by LF in b and
// returns the new length.
func compactCRLF(b []byte) int {
	i := bytes.Index(b, []byte("\r\n"))
	if i < 0 {
		return len(b)
	}
	w := i
	for r := i + 1; r < len(b); {
		j := bytes.Index(b[r:], []byte("\r\n"))
		if j < 0 {
			w += copy(b[w:], b[r:])
			break
		}
		w += copy(b[w:], b[r:r+j])
		r += j + 1 // skip the CR, keep the LF for the next run
	}
	return w
}
