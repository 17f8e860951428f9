package userdb

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The compiled file is a bbolt database: readers get O(log n) lookups from
// a memory map with no parsing of the source, bbolt is already a dependency
// of the project, and its read-only opens take a shared lock only, so any
// number of server processes can read while makeuserdb builds the next file
// beside it.
var (
	bucketUsers = []byte("users") // name -> "field=value|field=value"
	bucketMeta  = []byte("meta")
	keyFormat   = []byte("format")
	keyCount    = []byte("count")
	keySource   = []byte("source")
)

// formatVersion marks the layout of the compiled file.
const formatVersion = "postern-userdb 1"

// Compile reads the source at sourcePath (file or directory) and writes the
// compiled database to dbPath atomically: a temporary file in the same
// directory, fsync'd, renamed over dbPath, and the directory fsync'd. A bad
// source leaves the old dbPath untouched.
func Compile(sourcePath, dbPath string) error {
	entries, err := LoadSource(sourcePath)
	if err != nil {
		return err
	}
	return WriteDB(entries, dbPath, sourcePath)
}

// WriteDB writes entries as a compiled database at dbPath, atomically (see
// Compile). source is recorded in the file for tools; it may be empty.
func WriteDB(entries []Entry, dbPath, source string) error {
	dir := filepath.Dir(dbPath)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(dbPath)+".tmp-*")
	if err != nil {
		return fmt.Errorf("userdb %s: compile: %w", dbPath, err)
	}
	tmpPath := tmp.Name()
	tmp.Close()
	committed := false
	defer func() {
		if !committed {
			os.Remove(tmpPath)
		}
	}()
	if err := os.Chmod(tmpPath, 0o600); err != nil {
		return fmt.Errorf("userdb %s: compile: %w", dbPath, err)
	}
	if err := writeBolt(tmpPath, entries, source); err != nil {
		return fmt.Errorf("userdb %s: compile: %w", dbPath, err)
	}
	if err := syncFile(tmpPath); err != nil {
		return fmt.Errorf("userdb %s: compile: %w", dbPath, err)
	}
	if err := os.Rename(tmpPath, dbPath); err != nil {
		return fmt.Errorf("userdb %s: compile: %w", dbPath, err)
	}
	committed = true
	if err := syncFile(dir); err != nil {
		return fmt.Errorf("userdb %s: compile: sync directory: %w", dbPath, err)
	}
	return nil
}

func writeBolt(path string, entries []Entry, source string) error {
	// The temporary file is ours alone, so the exclusive lock cannot wait;
	// the timeout is a guard, not a expected path.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return err
	}
	sorted := make([]Entry, len(entries))
	copy(sorted, entries)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	err = db.Update(func(tx *bolt.Tx) error {
		users, err := tx.CreateBucket(bucketUsers)
		if err != nil {
			return err
		}
		users.FillPercent = 1.0 // keys arrive in order: pack pages full
		for i := range sorted {
			e := &sorted[i]
			line, err := e.Format()
			if err != nil {
				return fmt.Errorf("%s: %w", e.Location(), err)
			}
			_, fields, _ := strings.Cut(line, "\t")
			if err := users.Put([]byte(e.Name), []byte(fields)); err != nil {
				return fmt.Errorf("%s: %w", e.Location(), err)
			}
		}
		meta, err := tx.CreateBucket(bucketMeta)
		if err != nil {
			return err
		}
		if err := meta.Put(keyFormat, []byte(formatVersion)); err != nil {
			return err
		}
		if err := meta.Put(keyCount, []byte(strconv.Itoa(len(sorted)))); err != nil {
			return err
		}
		return meta.Put(keySource, []byte(source))
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	return err
}

func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
