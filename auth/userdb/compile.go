package userdb

import (
	"fmt"
	"sort"
	"strings"

	bolt "go.etcd.io/bbolt"

	"postern/internal/boltindex"
)

// The compiled file is a bbolt database: readers get O(log n) lookups from
// a memory map with no parsing of the source, bbolt is already a dependency
// of the project, and its read-only opens take a shared lock only, so any
// number of server processes can read while makeuserdb builds the next file
// beside it.
var bucketUsers = []byte("users") // name -> "field=value|field=value"

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
// The file is private (0600): it holds password hashes.
func WriteDB(entries []Entry, dbPath, source string) error {
	sorted := make([]Entry, len(entries))
	copy(sorted, entries)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	return boltindex.Write(dbPath, boltindex.WriteOptions{Name: ModuleName, Mode: 0o600}, func(tx *bolt.Tx) error {
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
		return boltindex.PutMeta(tx, formatVersion, len(sorted), source)
	})
}
