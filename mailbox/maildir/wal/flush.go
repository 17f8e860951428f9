package wal

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// How a record becomes durable, from the cheapest to the most general:
//
//   - ModeDirectFlush: one O_DIRECT write, then a disk cache flush issued
//     through fdatasync(2) of the file system's root directory. Only on
//     ext4 without a journal (see rootFlusher).
//   - ModeDirectSync: one O_DIRECT|O_DSYNC write (the write and the cache
//     flush in one system call).
//   - ModeBuffered: a write to the page cache, then fdatasync(2) of the log.
const (
	ModeDirectFlush = "direct+rootflush"
	ModeDirectSync  = "direct+dsync"
	ModeBuffered    = "buffered"
)

// rootFlusher is where flushes go for a log at path; tests replace it.
var rootFlusher = openRootFlusher

// openRootFlusher returns the root directory of the file system holding
// path, opened for fdatasync(2), when that file system is ext4 without a
// journal; else nil.
//
// Why: there, fdatasync of the log writes the log's inode as well whenever
// its timestamps moved (Linux's nojournal fsync writes the inode's table
// block whatever datasync asks), and on the build machine (Linux 6.18)
// they moved at nearly every record of a delivery. That is one more disk
// write, and one more wait, for every record: measured there (ext4
// without a journal over virtio) with a Maildir delivery between records,
// 371–430 µs per record against 243–267 µs without it. The records need
// no metadata (the file is preallocated and zero-filled, so an overwrite
// changes no block map), only their data written and the disk's cache
// flushed; a flush is for the whole device, so fdatasync of a file that
// has nothing to write (the root directory, which rarely changes; when it
// did, its inode is written first, no worse than before) gives exactly
// that. With a journal, ext4's fdatasync leaves timestamps to the
// journal and this is not needed; other file systems keep the O_DSYNC
// write, whose guarantee does not rest on how their fsync treats a clean
// file.
func openRootFlusher(path string) *os.File {
	var sfs unix.Statfs_t
	if unix.Statfs(path, &sfs) != nil || sfs.Type != unix.EXT4_SUPER_MAGIC {
		return nil
	}
	var st unix.Stat_t
	if unix.Stat(path, &st) != nil {
		return nil
	}
	if journaled, known := ext4Journaled(st.Dev); !known || journaled {
		return nil
	}
	root := mountRoot(path, st.Dev)
	d, err := os.OpenFile(root, os.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil
	}
	return d
}

// ext4Journaled reports whether the ext4 file system on device dev has a
// journal: /sys/fs/ext4/<device>/journal_task names the journal thread, or
// "<none>". known is false when sysfs does not say.
func ext4Journaled(dev uint64) (journaled, known bool) {
	link, err := os.Readlink(fmt.Sprintf("/sys/dev/block/%d:%d", unix.Major(dev), unix.Minor(dev)))
	if err != nil {
		return false, false
	}
	b, err := os.ReadFile(filepath.Join("/sys/fs/ext4", filepath.Base(link), "journal_task"))
	if err != nil {
		return false, false
	}
	return !bytes.Equal(bytes.TrimSpace(b), []byte("<none>")), true
}

// mountRoot is the topmost directory above path on device dev.
func mountRoot(path string, dev uint64) string {
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return "/"
	}
	for {
		parent := filepath.Dir(dir)
		var st unix.Stat_t
		if parent == dir || unix.Stat(parent, &st) != nil || st.Dev != dev {
			return dir
		}
		dir = parent
	}
}
