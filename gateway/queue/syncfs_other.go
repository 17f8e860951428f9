//go:build !linux

package queue

import (
	"errors"
	"os"
)

// haveSyncfs: only Linux has syncfs(2); elsewhere Open uses per-file
// group commit (sync(2) may return before the data is written).
const haveSyncfs = false

func syncFilesystem(*os.File) error {
	return errors.New("syncfs is not available on this system")
}
