package reformail

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// maxCacheFile bounds how much of a -D cache file is read.
const maxCacheFile = 64 << 20

// cacheSink picks the first Message-ID: field's value out of the header.
type cacheSink struct {
	catenate bool
	id       string
}

func (c *cacheSink) header(line string) error {
	if c.catenate {
		line = catenate(line)
	}
	if fieldKey(line) != "message-id:" {
		return nil
	}
	c.id = strings.TrimFunc(line[len("message-id:"):], func(r rune) bool { return r < 128 && isSpace(byte(r)) })
	return errStop
}

func (c *cacheSink) endOfHeader() error            { return errStop }
func (c *cacheSink) body([]byte, bool, bool) error { return errStop }

// checkDuplicate is -D: it reports whether the message's Message-ID is in
// the cache file, and records it there. A message without a Message-ID is
// never a duplicate and leaves the file alone.
func checkDuplicate(o *options, lr *lineReader, e env) (bool, error) {
	cs := &cacheSink{catenate: o.catenate}
	err := newPipeline(o, lr, e).run(cs)
	if err != nil && !errors.Is(err, errStop) {
		return false, err
	}
	// The rest of the message is read, as Courier does, so that the writer
	// into our pipe finishes cleanly.
	if _, err := io.Copy(io.Discard, lr.br); err != nil {
		return false, fmt.Errorf("read: %w", err)
	}
	if cs.id == "" {
		return false, nil
	}
	return updateCache(o.cacheFile, atol(o.cacheLen), cs.id)
}

// updateCache looks id up in the cache file and records it as the newest
// entry. The file is Courier's format, so that Courier's reformail can share
// it: Message-IDs each ending in a NUL, oldest first, an empty entry (a
// second NUL) ending the list. Oldest entries are dropped while the list is
// maxLen bytes or more, unless that would drop them all. The file is locked
// (fcntl, as Courier's liblock) for the whole read-modify-write.
func updateCache(path string, maxLen int64, id string) (bool, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return false, fmt.Errorf("cache %s: %w", path, err)
	}
	defer f.Close()
	lock := unix.Flock_t{Type: unix.F_WRLCK, Whence: io.SeekStart}
	for {
		err = unix.FcntlFlock(f.Fd(), unix.F_SETLKW, &lock)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		return false, fmt.Errorf("cache %s: lock: %w", path, err)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxCacheFile))
	if err != nil {
		return false, fmt.Errorf("cache %s: read: %w", path, err)
	}
	var kept [][]byte
	found := false
	for len(data) > 0 {
		entry, rest, _ := bytes.Cut(data, []byte{0})
		if len(entry) == 0 {
			break // the end-of-list marker
		}
		data = rest
		if string(entry) == id {
			found = true
			continue
		}
		kept = append(kept, entry)
	}
	kept = append(kept, []byte(id))
	total := int64(0)
	for _, e := range kept {
		total += int64(len(e)) + 1
	}
	drop := 0
	for drop < len(kept) && total >= maxLen {
		total -= int64(len(kept[drop])) + 1
		drop++
	}
	if drop == len(kept) {
		drop = 0
	}
	var out bytes.Buffer
	for _, e := range kept[drop:] {
		out.Write(e)
		out.WriteByte(0)
	}
	out.WriteByte(0)
	if _, err := f.WriteAt(out.Bytes(), 0); err != nil {
		return false, fmt.Errorf("cache %s: write: %w", path, err)
	}
	// Courier leaves stale bytes after the end marker; we cut them off.
	if err := f.Truncate(int64(out.Len())); err != nil {
		return false, fmt.Errorf("cache %s: truncate: %w", path, err)
	}
	return found, nil
}
