package maildir

import (
	"bufio"
	"io"
)

// LFReader returns r with every CR that precedes an LF removed: in a
// Maildir, messages use the local newline, as Courier and Dovecot store
// them (the IMAP and POP3 servers put the CRs back on the wire). A lone CR
// is kept. The SMTP gateway and the delivery agent both store through it.
func LFReader(r io.Reader) io.Reader {
	return &lfReader{src: bufio.NewReaderSize(r, 64*1024)}
}

type lfReader struct {
	src    *bufio.Reader
	pendCR bool
}

func (l *lfReader) Read(p []byte) (int, error) {

	n := 0
	for n < len(p) {
		b, err := l.src.ReadByte()
		if err != nil {
			if l.pendCR {
				p[n] = '\r'
				n++
				l.pendCR = false
			}
			if n > 0 {
				return n, nil
			}
			return 0, err
		}
		if l.pendCR {
			l.pendCR = false
			if b != '\n' {
				p[n] = '\r' // a bare CR stays
				n++
				if n == len(p) {
					l.src.UnreadByte()
					return n, nil
				}
			}
		}
		if b == '\r' {
			l.pendCR = true
			continue
		}
		p[n] = b
		n++
		if b == '\n' && l.src.Buffered() == 0 {
			return n, nil
		}
	}
	return n, nil
}
