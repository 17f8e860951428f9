package smap

import (
	"bufio"
	"errors"
	"strings"
)

// Command line limits. The spec says commands may not exceed 8000
// characters; Courier reads them into an 8192-byte buffer, so that is what
// is accepted here. A longer line is answered with -ERR and skipped; past
// maxDiscard without a newline the connection is closed, so a client that
// streams junk costs one buffer and a bounded amount of reading.
const (
	maxCommand = 8192
	maxDiscard = 1 << 20
)

var (
	errLineTooLong = errors.New("smap: command line too long")
	errAbsurdInput = errors.New("smap: too much input without a newline")
)

// readLine reads one command line and returns it without its LF. A CR
// before the LF stays: it is whitespace to the word parser, as in Courier.
func readLine(br *bufio.Reader) (string, error) {
	var buf []byte
	for {
		frag, err := br.ReadSlice('\n')
		if len(buf)+len(frag) > maxCommand {
			if err == nil {
				return "", errLineTooLong
			}
			return "", discardLine(br, int64(len(buf)+len(frag)))
		}
		buf = append(buf, frag...)
		if err == nil {
			return string(buf[:len(buf)-1]), nil
		}
		if err != bufio.ErrBufferFull {
			return "", err
		}
	}
}

// discardLine skips the rest of an over-long line. It returns
// errLineTooLong when the newline came within maxDiscard, errAbsurdInput
// when it did not, or the read error.
func discardLine(br *bufio.Reader, seen int64) error {
	for seen < maxDiscard {
		frag, err := br.ReadSlice('\n')
		seen += int64(len(frag))
		if err == nil {
			return errLineTooLong
		}
		if err != bufio.ErrBufferFull {
			return err
		}
	}
	return errAbsurdInput
}

// words walks the words of one command line (smapsyntax: words separated
// by whitespace; a word with spaces or quotes is quoted, a quote inside is
// doubled). It follows Courier's getword: an unterminated quote runs to the
// end of the line, and text right after a closing quote starts the next
// word. The end of the line and an empty quoted word both read as "", which
// is how commands mark the end of a folder path.
type words struct {
	s   string
	pos int
}

func newWords(line string) *words { return &words{s: line} }

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f'
}

// next returns the next word, or "" at the end.
func (w *words) next() string {
	for w.pos < len(w.s) && isSpace(w.s[w.pos]) {
		w.pos++
	}
	if w.pos >= len(w.s) {
		return ""
	}
	if w.s[w.pos] != '"' {
		start := w.pos
		for w.pos < len(w.s) && !isSpace(w.s[w.pos]) {
			w.pos++
		}
		word := w.s[start:w.pos]
		if w.pos < len(w.s) {
			w.pos++ // the separator, as Courier overwrites it
		}
		return word
	}
	w.pos++
	var b strings.Builder
	for w.pos < len(w.s) {
		c := w.s[w.pos]
		if c == '"' {
			if w.pos+1 < len(w.s) && w.s[w.pos+1] == '"' {
				b.WriteByte('"')
				w.pos += 2
				continue
			}
			w.pos++
			break
		}
		b.WriteByte(c)
		w.pos++
	}
	return b.String()
}

// rest returns the words up to the first empty one: a folder path.
func (w *words) path() []string {
	var p []string
	for {
		x := w.next()
		if x == "" {
			return p
		}
		p = append(p, x)
	}
}

// quote writes a word for a reply: always quoted, quotes doubled.
func quote(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// quoteInner doubles the quotes of a value that goes inside an already
// quoted word ("UID=..." and the like).
func quoteInner(s string) string { return strings.ReplaceAll(s, `"`, `""`) }

// upper upper-cases ASCII letters only, as Courier's UC macro.
func upper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

// msgRange is one "A" or "A-B" of a message set.
type msgRange struct{ lo, hi uint32 }

// parseMsgSet reads a message set (ascending, non-overlapping numbers and
// ranges, each a separate word) and returns the first word after it. ok is
// false for a set that is out of order or malformed (Courier's EINVAL);
// has reports whether there was any number at all.
func parseMsgSet(w *words) (set []msgRange, next string, has, ok bool) {
	var last uint64
	for {
		word := w.next()
		if word == "" || word[0] < '0' || word[0] > '9' {
			return set, word, has, true
		}
		has = true
		i := 0
		num := func() uint64 {
			var n uint64
			for i < len(word) && word[i] >= '0' && word[i] <= '9' {
				if n < 1<<40 {
					n = n*10 + uint64(word[i]-'0')
				}
				i++
			}
			return n
		}
		a := num()
		b := a
		if i < len(word) && word[i] == '-' {
			i++
			b = num()
		}
		if a <= last || b < a || b > 1<<32-1 {
			return nil, "", has, false
		}
		last = b
		set = append(set, msgRange{uint32(a), uint32(b)})
	}
}
