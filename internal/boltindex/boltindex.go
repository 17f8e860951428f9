// Package boltindex owns the life cycle of a compiled, read-mostly bbolt
// index file such as the userdb or the alias table: building a new file
// beside the old one and renaming it into place (Write), and serving
// lookups from it in long-running processes that pick up a recompiled file
// without a restart (Open, Index.View).
//
// The writer never modifies a file a reader has open: it fills a fresh
// temporary file in the same directory, fsyncs it, renames it over the
// target and fsyncs the directory, so a crash leaves either the old or the
// new file, never half of one. Readers open read-only, which takes only a
// shared lock, so any number of processes read while the next file is being
// built. A reader stats the path at most once per interval and, when the
// identity (device, inode, mtime, size) changed, opens the new file and
// closes the old one once no lookup is inside it.
//
// What the index holds (its buckets and record encoding) belongs to the
// caller; this package only records a format string and a few facts in a
// "meta" bucket (PutMeta) and checks them on open (RequireFormat).
package boltindex

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
)

// DefaultInterval is how often, at most, Index.View stats the file when
// Options.Interval is negative.
const DefaultInterval = time.Second

// openTimeout bounds the wait for bbolt's shared lock. Nothing takes an
// exclusive lock on a compiled file (Write builds a new file and renames
// it), so a wait means a foreign process holds one.
const openTimeout = 2 * time.Second

// writeTimeout guards the exclusive lock on Write's own temporary file,
// which nobody else knows about: it cannot really wait.
const writeTimeout = 5 * time.Second

// ErrClosed is returned (wrapped) by View on a closed Index.
var ErrClosed = errors.New("boltindex: index closed")

// The meta bucket and its keys, shared by every compiled index.
var (
	bucketMeta = []byte("meta")
	keyFormat  = []byte("format")
	keyCount   = []byte("count")
	keySource  = []byte("source")
)

// WriteOptions tunes Write.
type WriteOptions struct {
	// Name prefixes error messages ("userdb", "aliases").
	Name string
	// Mode is the new file's permission bits (0o600 when zero).
	Mode os.FileMode
	// TmpDir is where the temporary file is built; "" means the target's
	// directory. It must be on the target's file system, or the rename
	// fails.
	TmpDir string
}

// Write builds a new index at path atomically: fill runs in a single
// read-write transaction on a fresh temporary file, which is then fsync'd,
// renamed over path, and the directory fsync'd. When fill or any step
// fails, path is left as it was and the temporary file is removed. Errors
// read "NAME PATH: compile: CAUSE".
func Write(path string, opts WriteOptions, fill func(*bolt.Tx) error) error {
	fail := func(err error) error {
		return fmt.Errorf("%s %s: compile: %w", opts.Name, path, err)
	}
	mode := opts.Mode
	if mode == 0 {
		mode = 0o600
	}
	dir := filepath.Dir(path)
	tmpDir := opts.TmpDir
	if tmpDir == "" {
		tmpDir = dir
	}
	tmp, err := os.CreateTemp(tmpDir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fail(err)
	}
	tmpPath := tmp.Name()
	tmp.Close()
	committed := false
	defer func() {
		if !committed {
			os.Remove(tmpPath)
		}
	}()
	// CreateTemp makes 0600; set the wanted bits exactly, whatever the umask.
	if err := os.Chmod(tmpPath, mode); err != nil {
		return fail(err)
	}
	if err := fillFile(tmpPath, mode, fill); err != nil {
		return fail(err)
	}
	if err := syncPath(tmpPath); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmpPath, path); err != nil {
		return fail(err)
	}
	committed = true
	// The rename is durable only once the directory entry is on disk.
	if err := syncPath(dir); err != nil {
		return fail(fmt.Errorf("sync directory: %w", err))
	}
	return nil
}

func fillFile(path string, mode os.FileMode, fill func(*bolt.Tx) error) error {
	db, err := bolt.Open(path, mode, &bolt.Options{Timeout: writeTimeout})
	if err != nil {
		return err
	}
	err = db.Update(fill)
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	return err
}

func syncPath(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// PutMeta records, inside a Write fill, the index's format string (checked
// by RequireFormat on every open), its record count and the source it was
// compiled from (for tools; may be empty).
func PutMeta(tx *bolt.Tx, format string, count int, source string) error {
	meta, err := tx.CreateBucketIfNotExists(bucketMeta)
	if err != nil {
		return fmt.Errorf("meta bucket: %w", err)
	}
	for _, kv := range [][2][]byte{
		{keyFormat, []byte(format)},
		{keyCount, []byte(strconv.Itoa(count))},
		{keySource, []byte(source)},
	} {
		if err := meta.Put(kv[0], kv[1]); err != nil {
			return fmt.Errorf("meta %s: %w", kv[0], err)
		}
	}
	return nil
}

// RequireFormat returns a validator for Options.Validate that refuses a
// file unless it records format (see PutMeta) and has every one of
// buckets. Its errors read "REFUSAL: CAUSE", so refusal should tell the
// reader what to do, e.g. "not a compiled userdb (run makeuserdb)".
func RequireFormat(format, refusal string, buckets ...[]byte) func(*bolt.Tx) error {
	return func(tx *bolt.Tx) error {
		var got []byte
		if m := tx.Bucket(bucketMeta); m != nil {
			got = m.Get(keyFormat)
		}
		for _, b := range buckets {
			if tx.Bucket(b) == nil {
				return fmt.Errorf("%s: no %s bucket", refusal, b)
			}
		}
		if string(got) != format {
			return fmt.Errorf("%s: format %q, want %q", refusal, got, format)
		}
		return nil
	}
}

// Options tunes Open.
type Options struct {
	// Name prefixes error and log messages ("userdb", "aliases").
	Name string
	// Interval is the most often View stats the path for a recompiled
	// file: zero checks on every View, negative means DefaultInterval.
	Interval time.Duration
	// Logger receives reloads and failed reloads (slog.Default when nil).
	Logger *slog.Logger
	// Validate, when set, runs in a read transaction on every file opened,
	// at Open and at each reload; an error refuses the file (Open fails; a
	// reload keeps serving the old file).
	Validate func(*bolt.Tx) error
}

// fileIdentity tells a recompiled file from the open one: Write renames a
// new inode over the path.
type fileIdentity struct {
	dev, ino    uint64
	mtime, size int64
}

func identityOf(st os.FileInfo) fileIdentity {
	id := fileIdentity{mtime: st.ModTime().UnixNano(), size: st.Size()}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		id.dev, id.ino = uint64(sys.Dev), uint64(sys.Ino)
	}
	return id
}

// Index serves reads from a compiled file and switches to a new file within
// Options.Interval of Write replacing it. Safe for concurrent use.
type Index struct {
	path     string
	name     string
	interval time.Duration
	log      *slog.Logger
	validate func(*bolt.Tx) error

	lastCheck atomic.Int64 // unix nanoseconds of the last stat

	mu     sync.RWMutex // guards the fields below; readers hold it for a whole bolt read
	db     *bolt.DB
	ident  fileIdentity
	closed bool
}

// Open opens the index at path read-only. Errors read "NAME PATH: open:
// CAUSE", or "NAME PATH: CAUSE" when opts.Validate refused the file.
func Open(path string, opts Options) (*Index, error) {
	x := &Index{path: path, name: opts.Name, interval: opts.Interval, log: opts.Logger, validate: opts.Validate}
	if x.interval < 0 {
		x.interval = DefaultInterval
	}
	if x.log == nil {
		x.log = slog.Default()
	}
	db, id, err := x.openFile()
	if err != nil {
		return nil, err
	}
	x.db, x.ident = db, id
	x.lastCheck.Store(time.Now().UnixNano())
	return x, nil
}

// openFile opens the path read-only and returns the identity of the very
// file it opened (not of whatever the path names a moment later).
func (x *Index) openFile() (*bolt.DB, fileIdentity, error) {
	var opened *os.File
	db, err := bolt.Open(x.path, 0o600, &bolt.Options{
		ReadOnly: true,
		Timeout:  openTimeout,
		OpenFile: func(name string, flag int, mode os.FileMode) (*os.File, error) {
			f, err := os.OpenFile(name, flag, mode)
			opened = f
			return f, err
		},
	})
	if err != nil {
		return nil, fileIdentity{}, fmt.Errorf("%s %s: open: %w", x.name, x.path, err)
	}
	st, err := opened.Stat()
	if err != nil {
		db.Close()
		return nil, fileIdentity{}, fmt.Errorf("%s %s: open: %w", x.name, x.path, err)
	}
	if x.validate != nil {
		if err := db.View(x.validate); err != nil {
			db.Close()
			return nil, fileIdentity{}, fmt.Errorf("%s %s: %w", x.name, x.path, err)
		}
	}
	return db, identityOf(st), nil
}

// Path returns the index file's path.
func (x *Index) Path() string { return x.path }

// View runs fn in a read transaction on the current file, first switching
// to a recompiled file if one is due to be noticed. Values fn reads live in
// the memory map only until fn returns: copy what you keep. fn's error is
// returned as it is; a closed Index returns an error wrapping ErrClosed.
func (x *Index) View(fn func(*bolt.Tx) error) error {
	x.maybeReload()
	x.mu.RLock()
	defer x.mu.RUnlock()
	if x.closed {
		return fmt.Errorf("%s %s: %w", x.name, x.path, ErrClosed)
	}
	return x.db.View(fn)
}

// Close releases the file; later Views return ErrClosed. Closing twice is
// harmless.
func (x *Index) Close() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.closed {
		return nil
	}
	x.closed = true
	return x.db.Close()
}

// maybeReload stats the file at most once per interval and swaps in a
// replaced file. One goroutine checks at a time (the others read the old
// file meanwhile); a failed reopen keeps the old file and is retried at the
// next interval.
func (x *Index) maybeReload() {
	now := time.Now().UnixNano()
	last := x.lastCheck.Load()
	if now-last < int64(x.interval) || !x.lastCheck.CompareAndSwap(last, now) {
		return
	}
	st, err := os.Stat(x.path)
	if err != nil {
		x.log.Warn(x.name+": cannot stat compiled file; serving the loaded copy", "path", x.path, "err", err)
		return
	}
	x.mu.RLock()
	same := identityOf(st) == x.ident || x.closed
	x.mu.RUnlock()
	if same {
		return
	}
	db, id, err := x.openFile()
	if err != nil {
		x.log.Warn(x.name+": cannot open recompiled file; serving the loaded copy", "path", x.path, "err", err)
		return
	}
	x.mu.Lock()
	if x.closed {
		x.mu.Unlock()
		db.Close()
		return
	}
	old := x.db
	x.db, x.ident = db, id
	x.mu.Unlock()
	// Readers hold mu.RLock for their whole read, so none is inside old.
	if err := old.Close(); err != nil {
		x.log.Warn(x.name+": closing replaced file", "path", x.path, "err", err)
	}
	x.log.Info(x.name+": reloaded recompiled file", "path", x.path)
}
