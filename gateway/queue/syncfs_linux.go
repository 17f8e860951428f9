package queue

import (
	"os"

	"golang.org/x/sys/unix"
)

// haveSyncfs: group commit may use syncfs(2).
const haveSyncfs = true

// syncFilesystem flushes every dirty page and inode of the filesystem that
// holds dir: syncfs(2). Since Linux 5.8 it reports writeback errors.
func syncFilesystem(dir *os.File) error {
	return unix.Syncfs(int(dir.Fd()))
}
