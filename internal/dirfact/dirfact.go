// Package dirfact remembers a fact about the names in a directory (these
// files are absent, those subdirectories exist) for as long as the
// directory is unchanged, so that a hot path can replace several stat(2)
// calls by one.
//
// Creating, removing or renaming an entry updates the directory's mtime and
// ctime, so a fact about which names exist holds while the directory's
// inode, mtime and ctime stay the same. File-system timestamps are coarse
// (a clock tick, a second on some file systems): a change in the same tick
// as the look that established the fact would leave them equal. A fact is
// therefore only remembered once the directory has been unchanged for
// Settle, as git does for its index.
package dirfact

import (
	"io/fs"
	"sync"
	"syscall"
	"time"
)

// Settle is how long a directory must have been unchanged before a fact
// about it is remembered.
const Settle = 2 * time.Second

// maxEntries bounds the memory: past it the cache starts over.
const maxEntries = 50000

// Cache holds facts, one per directory path. The zero Cache is ready.
type Cache struct {
	mu sync.Mutex
	m  map[string]stamp
}

type stamp struct {
	dev, ino     uint64
	mtime, ctime int64
}

func stampOf(st fs.FileInfo) (stamp, bool) {
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok || !st.IsDir() {
		return stamp{}, false
	}
	return stamp{uint64(sys.Dev), sys.Ino, sys.Mtim.Nano(), sys.Ctim.Nano()}, true
}

// Holds reports whether the fact remembered for dir still holds, st being
// what stat(2) says of dir now.
func (c *Cache) Holds(dir string, st fs.FileInfo) bool {
	s, ok := stampOf(st)
	if !ok {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old, found := c.m[dir]
	return found && old == s
}

// Remember records that the fact holds for dir as seen with st (taken
// before the fact was established), unless dir changed less than Settle
// before now.
func (c *Cache) Remember(dir string, st fs.FileInfo, now time.Time) {
	s, ok := stampOf(st)
	if !ok {
		return
	}
	settled := now.Add(-Settle).UnixNano()
	if s.mtime > settled || s.ctime > settled {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxEntries {
		c.m = make(map[string]stamp)
	}
	c.m[dir] = s
}

// Forget drops what is remembered for dir.
func (c *Cache) Forget(dir string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, dir)
}
