package imap

import (
	"bufio"
	"strconv"
)

// responseWriter encodes server responses (RFC 3501 section 7). Lines are
// built in a reused buffer and written to a buffered writer; nothing is
// allocated per message on the FETCH FLAGS path.
type responseWriter struct {
	bw  *bufio.Writer
	buf []byte
	// sync is flushed after bw: the compressor under it when COMPRESS is
	// active, so that each flush reaches the client.
	sync flusher
}

// flusher is a writer's buffer that can be pushed out.
type flusher interface{ Flush() error }

func newResponseWriter(bw *bufio.Writer) *responseWriter {
	return &responseWriter{bw: bw, buf: make([]byte, 0, 512)}
}

// line starts a new response line in the buffer.
func (w *responseWriter) line(prefix string) *responseWriter {
	w.buf = append(w.buf[:0], prefix...)
	return w
}

func (w *responseWriter) raw(s string) *responseWriter {
	w.buf = append(w.buf, s...)
	return w
}

func (w *responseWriter) byte(c byte) *responseWriter {
	w.buf = append(w.buf, c)
	return w
}

func (w *responseWriter) num(n uint64) *responseWriter {
	w.buf = strconv.AppendUint(w.buf, n, 10)
	return w
}

// str appends s as a quoted string when it may be one, else as a literal.
func (w *responseWriter) str(s string) *responseWriter {
	w.buf = appendString(w.buf, s)
	return w
}

// nstr appends s as a string, or NIL when empty.
func (w *responseWriter) nstr(s string) *responseWriter {
	if s == "" {
		w.buf = append(w.buf, "NIL"...)
		return w
	}
	return w.str(s)
}

// literal appends {N}CRLF and the bytes.
func (w *responseWriter) literal(b []byte) *responseWriter {
	w.buf = append(w.buf, '{')
	w.buf = strconv.AppendInt(w.buf, int64(len(b)), 10)
	w.buf = append(w.buf, "}\r\n"...)
	// Large literals go straight out instead of through the line buffer.
	if len(b) > 16<<10 {
		w.bw.Write(w.buf)
		w.buf = w.buf[:0]
		w.bw.Write(b)
		return w
	}
	w.buf = append(w.buf, b...)
	return w
}

// end terminates the line with CRLF and hands it to the buffered writer.
func (w *responseWriter) end() error {
	w.buf = append(w.buf, '\r', '\n')
	_, err := w.bw.Write(w.buf)
	w.buf = w.buf[:0]
	return err
}

func (w *responseWriter) flush() error {
	if err := w.bw.Flush(); err != nil {
		return err
	}
	if w.sync != nil {
		return w.sync.Flush()
	}
	return nil
}

// appendString writes s as a quoted string if it has no CR, LF, NUL or 8-bit
// bytes and is not too long; otherwise as a literal (RFC 3501 section 4.3).
func appendString(b []byte, s string) []byte {
	quotable := len(s) < 1024
	if quotable {
		for i := 0; i < len(s); i++ {
			c := s[i]
			if c == '\r' || c == '\n' || c == 0 || c >= 0x80 {
				quotable = false
				break
			}
		}
	}
	if !quotable {
		b = append(b, '{')
		b = strconv.AppendInt(b, int64(len(s)), 10)
		b = append(b, "}\r\n"...)
		return append(b, s...)
	}
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b = append(b, '\\')
		}
		b = append(b, s[i])
	}
	return append(b, '"')
}

// appendAstring writes s as an atom when it is one, else as a string.
func appendAstring(b []byte, s string) []byte {
	if s == "" || len(s) > 200 {
		return appendString(b, s)
	}
	for i := 0; i < len(s); i++ {
		if !isAStringChar(s[i]) {
			return appendString(b, s)
		}
	}
	if s == "NIL" || s == "nil" {
		return appendString(b, s)
	}
	return append(b, s...)
}
