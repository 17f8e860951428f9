package pop3

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// sizeListName is the file Courier's pop3d keeps in the maildir to give
// every message a persistent POP3 unique-id and to remember its POP3 size,
// so that a login does not have to read every message. We read and write
// the same file, so a maildrop served by Courier keeps its UIDLs (clients
// that "leave mail on the server" do not download everything again), and
// Courier and Postern can serve one maildir side by side.
//
// Format (version 3; version 2 lacks the ":utf8" field):
//
//	/3 NEXTUID UIDVALIDITY
//	FILENAME SIZE UID:UIDV:UTF8
//
// FILENAME is the message's base name in cur/ (flags included; only the part
// before ':' identifies it), SIZE the octet count with CRLF line endings, and
// the POP3 UIDL is "UID<UID>-<UIDV>".
const (
	sizeListName         = "courierpop3dsizelist"
	sizeListVersion      = 3
	sizeListMaxLine      = 2048 // Courier's own line buffer
	sizeListMaxFileBytes = 64 << 20
)

// sizeEntry is one line of the size list.
type sizeEntry struct {
	name     string // base file name as last written (may carry ":2,flags")
	size     int64
	uid      uint64
	uidv     uint64
	utf8Head bool
}

// sizeList is the parsed file.
type sizeList struct {
	version     int
	nextUID     uint64
	uidValidity uint64
	byKey       map[string]sizeEntry
}

// keyOf is the part of a maildir file name that identifies the message.
func keyOf(name string) string {
	name = filepath.Base(name)
	if i := strings.IndexByte(name, ':'); i >= 0 {
		return name[:i]
	}
	return name
}

// parseSizeList reads a size list. A file with a missing or unknown header
// yields an empty list (Courier starts afresh in that case too); malformed
// entry lines are skipped.
func parseSizeList(r io.Reader, now time.Time) *sizeList {
	l := &sizeList{version: sizeListVersion, nextUID: 1, uidValidity: uint64(now.Unix()), byKey: map[string]sizeEntry{}}
	br := bufio.NewReaderSize(io.LimitReader(r, sizeListMaxFileBytes), 4096)
	first := true
	for {
		line, tooLong, err := readBoundedLine(br, sizeListMaxLine)
		if err != nil && line == "" {
			return l
		}
		if first {
			first = false
			version, next, uidv, ok := parseSizeListHeader(line)
			if !ok {
				return l
			}
			l.version, l.nextUID, l.uidValidity = version, next, uidv
			continue
		}
		if !tooLong {
			if e, ok := parseSizeEntry(line); ok {
				l.byKey[keyOf(e.name)] = e
			}
		}
		if err != nil {
			return l
		}
	}
}

// readBoundedLine reads one LF-terminated line, keeping at most max octets of
// it; the rest of an overlong line is read and dropped.
func readBoundedLine(br *bufio.Reader, max int) (line string, tooLong bool, err error) {
	var buf []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(buf)+len(chunk) > max {
			tooLong = true
		} else {
			buf = append(buf, chunk...)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		return strings.TrimSuffix(string(buf), "\n"), tooLong, err
	}
}

func parseSizeListHeader(line string) (version int, nextUID, uidv uint64, ok bool) {
	rest, found := strings.CutPrefix(line, "/")
	if !found {
		return 0, 0, 0, false
	}
	f := strings.Fields(rest)
	if len(f) < 2 {
		return 0, 0, 0, false
	}
	v, err := strconv.Atoi(f[0])
	if err != nil || (v != sizeListVersion && v != sizeListVersion-1) {
		return 0, 0, 0, false
	}
	next, err := strconv.ParseUint(f[1], 10, 32)
	if err != nil || next == 0 {
		return 0, 0, 0, false
	}
	uidv = 0
	if len(f) >= 3 {
		if uidv, err = strconv.ParseUint(f[2], 10, 32); err != nil {
			return 0, 0, 0, false
		}
	}
	return v, next, uidv, true
}

// parseSizeEntry reads "NAME SIZE UID:UIDV[:UTF8]". The name is everything
// before the last two space-separated fields, as Courier splits it.
func parseSizeEntry(line string) (sizeEntry, bool) {
	i := strings.LastIndexByte(line, ' ')
	if i <= 0 {
		return sizeEntry{}, false
	}
	ids := line[i+1:]
	head := line[:i]
	j := strings.LastIndexByte(head, ' ')
	if j <= 0 {
		return sizeEntry{}, false
	}
	name, sizeText := head[:j], head[j+1:]
	if strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
		return sizeEntry{}, false
	}
	size, err := strconv.ParseInt(sizeText, 10, 64)
	if err != nil || size < 0 {
		return sizeEntry{}, false
	}
	parts := strings.Split(ids, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return sizeEntry{}, false
	}
	uid, err := strconv.ParseUint(parts[0], 10, 32)
	if err != nil || uid == 0 {
		return sizeEntry{}, false
	}
	uidv, err := strconv.ParseUint(parts[1], 10, 32)
	if err != nil {
		return sizeEntry{}, false
	}
	e := sizeEntry{name: name, size: size, uid: uid, uidv: uidv}
	if len(parts) == 3 {
		e.utf8Head = parts[2] != "" && parts[2] != "0"
	}
	return e, true
}

// uidl is the POP3 unique-id of the entry, Courier's "UID<n>-<uidv>": only
// characters 0x21-0x7E and at most 22 of them, as RFC 1939 section 7 asks.
func (e sizeEntry) uidl() string {
	if e.uidv == 0 {
		return "UID" + strconv.FormatUint(e.uid, 10)
	}
	return "UID" + strconv.FormatUint(e.uid, 10) + "-" + strconv.FormatUint(e.uidv, 10)
}

// marshal writes the list in Courier's version 3 format, entries in the
// given order.
func (l *sizeList) marshal(entries []sizeEntry) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "/%d %d %d\n", sizeListVersion, l.nextUID, l.uidValidity)
	for _, e := range entries {
		utf8 := 0
		if e.utf8Head {
			utf8 = 1
		}
		fmt.Fprintf(&b, "%s %d %d:%d:%d\n", e.name, e.size, e.uid, e.uidv, utf8)
	}
	return b.Bytes()
}

// lockedSizeList is the size list file held under an exclusive flock, so
// that two of our sessions logging in at once assign one UID per message.
// (Courier does not lock; it only ever replaces the file by rename, and so
// do we, so a Courier pop3d beside us never sees a half-written file.)
type lockedSizeList struct {
	dir  string
	file *os.File
}

// lockSizeList opens (creating if needed) and locks dir's size list. The
// file is replaced by rename while locked, so after taking the lock we check
// that we hold the file that is still at the path, and retry if not.
func lockSizeList(dir string) (*lockedSizeList, error) {
	path := filepath.Join(dir, sizeListName)
	for attempt := 0; attempt < 20; attempt++ {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("pop3 size list %s: open: %w", path, err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
			f.Close()
			return nil, fmt.Errorf("pop3 size list %s: lock: %w", path, err)
		}
		held, err1 := f.Stat()
		atPath, err2 := os.Stat(path)
		if err1 == nil && err2 == nil && os.SameFile(held, atPath) {
			return &lockedSizeList{dir: dir, file: f}, nil
		}
		f.Close() // replaced while we waited: lock the new one
	}
	return nil, fmt.Errorf("pop3 size list %s: lock: file keeps changing", path)
}

func (l *lockedSizeList) read(now time.Time) (*sizeList, error) {
	if _, err := l.file.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("pop3 size list %s: %w", l.dir, err)
	}
	return parseSizeList(l.file, now), nil
}

// replace writes data to a new file in the maildir's tmp/, syncs it and
// renames it over the list, as Courier does.
func (l *lockedSizeList) replace(data []byte) error {
	tmp, err := os.CreateTemp(filepath.Join(l.dir, "tmp"), fmt.Sprintf("%d.pop3.*", time.Now().Unix()))
	if err != nil {
		return fmt.Errorf("pop3 size list %s: create: %w", l.dir, err)
	}
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), filepath.Join(l.dir, sizeListName))
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("pop3 size list %s: write: %w", l.dir, err)
	}
	return nil
}

func (l *lockedSizeList) unlock() {
	// Closing the descriptor drops the flock.
	l.file.Close()
}
