package rejectlog

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
)

// Reading newest first, page by page, with a bound on the work: the web
// admin cannot read a 64 MiB log per request as Search does. The log is
// read backwards from its end (or from a cursor), line by line, and
// reading stops at a page of matches, at MaxRead records, or when the
// context ends, whichever comes first.

// maxLineLen bounds one line read backwards; a longer one is skipped
// (Add never writes one: records are a few hundred bytes).
const maxLineLen = 1 << 20

// chunkSize is how much is read from the file at a time.
const chunkSize = 64 << 10

// ErrCursorGone is returned for a cursor whose file has rotated out of
// the log (or was replaced): the page it named no longer exists.
var ErrCursorGone = errors.New("rejectlog: the log rotated past this position; start again from the newest")

// Cursor is a position in the log: the file generation, named by a
// checksum of its first line (which rotation does not change: the file is
// renamed whole), and the byte offset where the older records end. New
// records are appended after it and rotation renames the file, so a
// cursor keeps naming the same place while the server writes.
type Cursor struct {
	Gen    uint32
	Offset int64
}

// IsZero reports the zero cursor: from the newest record.
func (c Cursor) IsZero() bool { return c == Cursor{} }

// String is the cursor's text form, "GEN.OFFSET" (8 hex digits, decimal).
func (c Cursor) String() string {
	if c.IsZero() {
		return ""
	}
	return fmt.Sprintf("%08x.%d", c.Gen, c.Offset)
}

// ParseCursor reads String's form; "" is the zero cursor.
func ParseCursor(s string) (Cursor, error) {
	if s == "" {
		return Cursor{}, nil
	}
	gen, off, ok := strings.Cut(s, ".")
	if !ok || len(gen) != 8 || off == "" || len(off) > 19 {
		return Cursor{}, fmt.Errorf("rejectlog: cursor %q: want GEN.OFFSET", s)
	}
	g, err := strconv.ParseUint(gen, 16, 32)
	if err != nil {
		return Cursor{}, fmt.Errorf("rejectlog: cursor %q: bad generation", s)
	}
	for _, c := range off {
		if c < '0' || c > '9' {
			return Cursor{}, fmt.Errorf("rejectlog: cursor %q: bad offset", s)
		}
	}
	o, err := strconv.ParseInt(off, 10, 64)
	if err != nil {
		return Cursor{}, fmt.Errorf("rejectlog: cursor %q: bad offset", s)
	}
	c := Cursor{Gen: uint32(g), Offset: o}
	// Only the form String writes (lowercase, no leading zeros, never the
	// zero cursor): one position, one spelling.
	if c.IsZero() || c.String() != s {
		return Cursor{}, fmt.Errorf("rejectlog: cursor %q: not one this log wrote", s)
	}
	return c, nil
}

// PageQuery is what NewestPage reads.
type PageQuery struct {
	Query          // the conditions (Limit is ignored: Size is the page)
	From    Cursor // where to start; zero: the newest record
	Size    int    // matches per page (> 0)
	MaxRead int    // records read at most, matching or not (> 0)
}

// Page is one page of matches, newest first.
type Page struct {
	Records []Record // in the order written, newest first
	// At is each record's position: a page read from At[i] with Size 1
	// starts with Records[i].
	At []Cursor
	// Next is where the next, older page starts; zero when the log has
	// nothing older.
	Next Cursor
	// Read is how many lines were read (records and unparseable lines).
	Read int
	// Stopped says why reading ended before a full page: "" (a full page,
	// or the whole log), "limit" (MaxRead) or the context's error.
	Stopped string
}

// NewestPage reads the log newest first from q.From and returns up to
// q.Size matching records, reading at most q.MaxRead lines and stopping
// when ctx ends (the page read so far is returned with Stopped set, and
// Next continues after it).
func NewestPage(ctx context.Context, path string, q PageQuery) (Page, error) {
	if q.Size <= 0 || q.MaxRead <= 0 {
		return Page{}, errors.New("rejectlog: page size and read bound must be positive")
	}
	gens, err := openGenerations(path)
	if err != nil {
		return Page{}, err
	}
	defer func() {
		for _, g := range gens {
			g.f.Close()
		}
	}()
	start, off := 0, int64(-1)
	if !q.From.IsZero() {
		start = -1
		for i, g := range gens {
			if g.gen == q.From.Gen && q.From.Offset <= g.size {
				start, off = i, q.From.Offset
			}
		}
		if start < 0 {
			return Page{}, ErrCursorGone
		}
	}
	var p Page
	for i := start; i < len(gens); i++ {
		g := gens[i]
		end := g.size
		if i == start && off >= 0 {
			end = off
		}
		rl := &reverseLines{f: g.f, end: end, bufStart: end}
		stopped := false
		for !stopped {
			if len(p.Records) == q.Size {
				stopped = true
				break
			}
			if p.Read >= q.MaxRead || ctx.Err() != nil {
				p.Stopped = "limit"
				if err := ctx.Err(); err != nil {
					p.Stopped = err.Error()
				}
				stopped = true
				break
			}
			at := Cursor{Gen: g.gen, Offset: rl.end}
			line, ok, err := rl.prev()
			if err != nil {
				return Page{}, fmt.Errorf("rejectlog: %s: %w", g.name, err)
			}
			if !ok {
				break
			}
			p.Read++
			var rec Record
			if len(line) == 0 || json.Unmarshal(line, &rec) != nil {
				continue
			}
			if q.match(&rec, string(line)) {
				p.Records = append(p.Records, rec)
				p.At = append(p.At, at)
			}
		}
		if stopped {
			p.Next = position(gens, i, rl.end)
			break
		}
	}
	return p, nil
}

// position is the cursor for offset off in generation i. The start of a
// file is named as the end of the older one (or nothing when there is
// none), so that a cursor never points at an empty place.
func position(gens []generation, i int, off int64) Cursor {
	if off > 0 {
		return Cursor{Gen: gens[i].gen, Offset: off}
	}
	if i+1 < len(gens) {
		return Cursor{Gen: gens[i+1].gen, Offset: gens[i+1].size}
	}
	return Cursor{}
}

// generation is one file of the log, newest first.
type generation struct {
	name string
	f    *os.File
	gen  uint32
	size int64
}

// openGenerations opens the current file and the rotated one, newest
// first, leaving out those missing or empty.
func openGenerations(path string) ([]generation, error) {
	var out []generation
	for _, name := range []string{path, path + ".1"} {
		f, err := os.Open(name)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			for _, g := range out {
				g.f.Close()
			}
			return nil, fmt.Errorf("rejectlog: %w", err)
		}
		st, err := f.Stat()
		if err == nil && st.Size() > 0 {
			var gen uint32
			gen, err = firstLineSum(f)
			if err == nil {
				out = append(out, generation{name: name, f: f, gen: gen, size: st.Size()})
				continue
			}
		}
		f.Close()
		if err != nil {
			for _, g := range out {
				g.f.Close()
			}
			return nil, fmt.Errorf("rejectlog: %s: %w", name, err)
		}
	}
	return out, nil
}

// firstLineSum names a generation: a checksum of its first line (at most
// 4 KiB of it), which holds a time and a session ID and so differs from
// file to file.
func firstLineSum(f *os.File) (uint32, error) {
	buf := make([]byte, 4096)
	n, err := f.ReadAt(buf, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return 0, err
	}
	buf = buf[:n]
	if i := bytes.IndexByte(buf, '\n'); i >= 0 {
		buf = buf[:i]
	}
	return crc32.ChecksumIEEE(buf) | 1, nil // never 0: the zero cursor means "the newest"
}

// reverseLines reads a file's lines backwards from end.
type reverseLines struct {
	f        *os.File
	end      int64  // the lines before end are still to be read
	bufStart int64  // buf holds the file's bytes [bufStart, end)
	buf      []byte //
	skipping bool   // inside a line longer than maxLineLen
}

// prev returns the line that ends at r.end, without its newline; false
// at the start of the file. A line longer than maxLineLen comes back
// empty.
func (r *reverseLines) prev() ([]byte, bool, error) {
	for {
		if r.end <= 0 {
			return nil, false, nil
		}
		data := r.buf
		if !r.skipping && len(data) > 0 && data[len(data)-1] == '\n' {
			data = data[:len(data)-1]
		}
		if i := bytes.LastIndexByte(data, '\n'); i >= 0 || r.bufStart == 0 {
			line := data[i+1:]
			if r.skipping {
				line, r.skipping = nil, false
			}
			r.buf = r.buf[:i+1]
			r.end = r.bufStart + int64(i+1)
			return line, true, nil
		}
		if len(r.buf) > maxLineLen {
			// Drop what is held of the long line and look on for its start.
			r.skipping = true
			r.buf = nil
			r.end = r.bufStart
		}
		n := min(int64(chunkSize), r.bufStart)
		nb := make([]byte, n+int64(len(r.buf)))
		if _, err := r.f.ReadAt(nb[:n], r.bufStart-n); err != nil && !errors.Is(err, io.EOF) {
			return nil, false, err
		}
		copy(nb[n:], r.buf)
		r.buf, r.bufStart = nb, r.bufStart-n
	}
}
