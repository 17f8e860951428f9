// Package authtool holds the account administration commands behind
// "postern user", "postern authtest" and "postern makeuserdb", written as
// plain functions (args, streams, configuration directory in; exit status
// out) so cmd/postern only dispatches to them and tests run them directly.
//
// It owns the editing of the userdb source: every change is made under a
// lock, written to a temporary file, fsync'd and renamed into place, and
// followed by a recompile, so the server never sees half an edit.
package authtool

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Where the account files live, relative to the configuration directory.
const (
	SourceName   = "userdb"       // the source: a file, or a directory of files
	DBName       = "userdb.db"    // the compiled index
	LockName     = ".userdb.lock" // serialises edits and recompiles
	DatadirName  = "datadir"      // one line: the data directory
	OwnFileName  = "50-postern"   // the file "postern user" edits inside a userdb directory
	DefaultData  = "/var/lib/postern"
	maxDatadirSz = 4096
)

// Paths are the account files of one configuration directory.
type Paths struct {
	ConfigDir string
	Source    string
	DB        string
	Lock      string
}

// PathsFor returns the account files under configDir.
func PathsFor(configDir string) Paths {
	return Paths{
		ConfigDir: configDir,
		Source:    filepath.Join(configDir, SourceName),
		DB:        filepath.Join(configDir, DBName),
		Lock:      filepath.Join(configDir, LockName),
	}
}

// DataDir reads CONFIGDIR/datadir: the first line that is neither blank nor
// a "#" comment, relative paths taken from configDir. Without the file the
// default is /var/lib/postern (the policy package's default too).
func DataDir(configDir string) (string, error) {
	path := filepath.Join(configDir, DatadirName)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return DefaultData, nil
	}
	if err != nil {
		return "", fmt.Errorf("datadir %s: %w", path, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 256), maxDatadirSz)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if !filepath.IsAbs(line) {
			line = filepath.Join(configDir, line)
		}
		return filepath.Clean(line), nil
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("datadir %s: %w", path, err)
	}
	return "", fmt.Errorf("datadir %s: no path in file", path)
}

// lockEdits takes an exclusive flock on the lock file, so two "postern
// user" runs cannot lose each other's edits. The lock goes with the
// process, so a crash never leaves it stale.
func lockEdits(p Paths) (unlock func(), err error) {
	f, err := os.OpenFile(p.Lock, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("userdb lock %s: %w", p.Lock, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("userdb lock %s: %w", p.Lock, err)
	}
	return func() {
		unix.Flock(int(f.Fd()), unix.LOCK_UN)
		f.Close()
	}, nil
}

// writeFileAtomic replaces path with data: temporary file in the same
// directory, fsync, rename, fsync of the directory. The file holds
// password hashes, so it is written without group or world permissions
// (Courier's userdb insists on the same); an existing file keeps its owner
// bits.
func writeFileAtomic(path string, data []byte) error {
	mode := os.FileMode(0o600)
	if st, err := os.Stat(path); err == nil {
		mode = st.Mode().Perm() & 0o700
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmpPath := tmp.Name()
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmpPath)
		}
	}()
	if err := tmp.Chmod(mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmpPath, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	ok = true
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("write %s: sync directory: %w", path, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("write %s: sync directory: %w", path, err)
	}
	return nil
}
