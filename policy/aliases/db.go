package aliases

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
)

// DefaultDBName is the compiled index's file name in the configuration
// directory (Courier calls its own aliases.dat).
const DefaultDBName = "aliases.db"

// CheckInterval is the most often a lookup stats the compiled file to
// notice that makealiases replaced it.
const CheckInterval = time.Second

// openTimeout bounds the wait for bbolt's shared lock; nothing takes an
// exclusive lock on a compiled file (Compile writes a new file and renames
// it), so a wait means a foreign process holds it.
const openTimeout = 2 * time.Second

// The compiled file is a bbolt database: a lookup is a B+tree read from a
// memory map, with no parsing of the source, and read-only opens take a
// shared lock so any number of processes read while the next file is built
// beside it.
var (
	bucketAliases = []byte("aliases") // folded name → encoded targets
	bucketMeta    = []byte("meta")
	keyFormat     = []byte("format")
	keyCount      = []byte("count")
	keySource     = []byte("source")
)

const formatVersion = "postern-aliases 1"

// ErrClosed is returned by lookups on a closed DB.
var ErrClosed = errors.New("aliases: database closed")

// ErrCorrupt is returned (wrapped) when a record in the compiled file
// cannot be decoded.
var ErrCorrupt = errors.New("aliases: corrupt record")

// Compile loads the aliases setting of configDir (see Load) and writes the
// compiled index to dbPath atomically: a temporary file in the same
// directory, fsync'd, renamed over dbPath, the directory fsync'd. A source
// with errors leaves dbPath untouched and returns every error.
func Compile(configDir, dbPath string) error {
	a, err := Load(configDir)
	if err != nil {
		return err
	}
	return a.WriteDB(dbPath, "", filepath.Join(configDir, SettingName))
}

// WriteDB writes the table to dbPath atomically (see Compile). tmpDir is
// where the temporary file goes ("" = dbPath's directory; it must be on the
// same file system). source is recorded for tools.
func (a *Aliases) WriteDB(dbPath, tmpDir, source string) error {
	dir := filepath.Dir(dbPath)
	if tmpDir == "" {
		tmpDir = dir
	}
	tmp, err := os.CreateTemp(tmpDir, "."+filepath.Base(dbPath)+".tmp-*")
	if err != nil {
		return fmt.Errorf("aliases %s: compile: %w", dbPath, err)
	}
	tmpPath := tmp.Name()
	tmp.Close()
	committed := false
	defer func() {
		if !committed {
			os.Remove(tmpPath)
		}
	}()
	// Readable by every mail process, as the source usually is.
	if err := os.Chmod(tmpPath, 0o644); err != nil {
		return fmt.Errorf("aliases %s: compile: %w", dbPath, err)
	}
	if err := a.writeBolt(tmpPath, source); err != nil {
		return fmt.Errorf("aliases %s: compile: %w", dbPath, err)
	}
	if err := syncPath(tmpPath); err != nil {
		return fmt.Errorf("aliases %s: compile: %w", dbPath, err)
	}
	if err := os.Rename(tmpPath, dbPath); err != nil {
		return fmt.Errorf("aliases %s: compile: %w", dbPath, err)
	}
	committed = true
	if err := syncPath(dir); err != nil {
		return fmt.Errorf("aliases %s: compile: sync directory: %w", dbPath, err)
	}
	return nil
}

func (a *Aliases) writeBolt(path, source string) error {
	db, err := bolt.Open(path, 0o644, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return err
	}
	keys := make([]string, 0, len(a.entries))
	for k := range a.entries {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket(bucketAliases)
		if err != nil {
			return err
		}
		b.FillPercent = 1.0 // keys arrive sorted: pack pages full
		for _, k := range keys {
			if err := b.Put([]byte(k), encodeTargets(a.entries[k])); err != nil {
				return fmt.Errorf("alias %q: %w", k, err)
			}
		}
		meta, err := tx.CreateBucket(bucketMeta)
		if err != nil {
			return err
		}
		for k, v := range map[string]string{string(keyFormat): formatVersion, string(keyCount): strconv.Itoa(len(keys)), string(keySource): source} {
			if err := meta.Put([]byte(k), []byte(v)); err != nil {
				return err
			}
		}
		return nil
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	return err
}

// encodeTargets packs targets as: uvarint count, then per target a kind
// byte and two uvarint-length-prefixed strings (value, origin).
func encodeTargets(ts []Target) []byte {
	buf := binary.AppendUvarint(nil, uint64(len(ts)))
	for _, t := range ts {
		buf = append(buf, byte(t.Kind))
		buf = binary.AppendUvarint(buf, uint64(len(t.Value)))
		buf = append(buf, t.Value...)
		buf = binary.AppendUvarint(buf, uint64(len(t.Origin)))
		buf = append(buf, t.Origin...)
	}
	return buf
}

// decodeTargets reverses encodeTargets, refusing anything malformed
// instead of trusting lengths read from the file.
func decodeTargets(b []byte) ([]Target, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)) {
		return nil, ErrCorrupt
	}
	b = b[k:]
	out := make([]Target, 0, n)
	readString := func() (string, bool) {
		l, k := binary.Uvarint(b)
		if k <= 0 || l > uint64(len(b)-k) {
			return "", false
		}
		s := string(b[k : k+int(l)])
		b = b[k+int(l):]
		return s, true
	}
	for range n {
		if len(b) == 0 {
			return nil, ErrCorrupt
		}
		t := Target{Kind: Kind(b[0])}
		b = b[1:]
		if t.Kind < Address || t.Kind > File {
			return nil, ErrCorrupt
		}
		var ok1, ok2 bool
		t.Value, ok1 = readString()
		t.Origin, ok2 = readString()
		if !ok1 || !ok2 {
			return nil, ErrCorrupt
		}
		out = append(out, t)
	}
	if len(b) != 0 {
		return nil, ErrCorrupt
	}
	return out, nil
}

func syncPath(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// fileIdentity tells a recompiled file from the open one: Compile renames a
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

// DB answers alias lookups from a compiled file and switches to a new file
// within CheckInterval of makealiases replacing it. Safe for concurrent use.
type DB struct {
	path string
	opts options
	log  *slog.Logger

	lastCheck atomic.Int64 // unix nanoseconds of the last stat

	mu     sync.RWMutex // readers hold it for the length of a bolt read
	bolt   *bolt.DB
	ident  fileIdentity
	closed bool
}

// OpenDB opens the compiled index at dbPath read-only.
func OpenDB(dbPath string, opts ...Option) (*DB, error) {
	d := &DB{path: dbPath, log: slog.Default()}
	for _, o := range opts {
		o(&d.opts)
	}
	if d.opts.log != nil {
		d.log = d.opts.log
	}
	b, id, err := openCompiled(dbPath)
	if err != nil {
		return nil, err
	}
	d.bolt, d.ident = b, id
	d.lastCheck.Store(time.Now().UnixNano())
	return d, nil
}

func openCompiled(dbPath string) (*bolt.DB, fileIdentity, error) {
	var opened *os.File
	b, err := bolt.Open(dbPath, 0o644, &bolt.Options{
		ReadOnly: true,
		Timeout:  openTimeout,
		OpenFile: func(name string, flag int, mode os.FileMode) (*os.File, error) {
			f, err := os.OpenFile(name, flag, mode)
			opened = f
			return f, err
		},
	})
	if err != nil {
		return nil, fileIdentity{}, fmt.Errorf("aliases %s: open: %w", dbPath, err)
	}
	st, err := opened.Stat()
	if err != nil {
		b.Close()
		return nil, fileIdentity{}, fmt.Errorf("aliases %s: open: %w", dbPath, err)
	}
	var format []byte
	err = b.View(func(tx *bolt.Tx) error {
		if m := tx.Bucket(bucketMeta); m != nil {
			format = append(format, m.Get(keyFormat)...)
		}
		if tx.Bucket(bucketAliases) == nil {
			return errors.New("no aliases bucket")
		}
		return nil
	})
	if err == nil && string(format) != formatVersion {
		err = fmt.Errorf("format %q, want %q", format, formatVersion)
	}
	if err != nil {
		b.Close()
		return nil, fileIdentity{}, fmt.Errorf("aliases %s: not a compiled alias file (run makealiases): %w", dbPath, err)
	}
	return b, identityOf(st), nil
}

// Path returns the compiled file's path.
func (d *DB) Path() string { return d.path }

// Close releases the file; later lookups return ErrClosed.
func (d *DB) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	return d.bolt.Close()
}

// Expand looks address up and returns the final targets and whether it is
// an alias. An alias with no targets (Courier's "postmaster:" placeholder)
// returns (nil, true, nil): the mail goes nowhere. The targets are final:
// they were expanded when compiled and must not be expanded again. Lookup
// order, first hit wins:
//
//  1. the whole address, "user@domain" (or "user" when given bare);
//  2. "user", when domain is local (see WithLocalDomains);
//  3. "@domain", a virtual domain: each target T becomes "T-user"
//     (or "Tuser" when T ends in "!").
//
// Names are case-insensitive. Extensions are not stripped: "user-ext" is
// an alias only if written so (Courier does the same; see SplitExtension
// for the caller's own fallback).
func (d *DB) Expand(ctx context.Context, address string) ([]Target, bool, error) {
	d.maybeReload()
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed {
		return nil, false, ErrClosed
	}
	// One read transaction for all the probes of this lookup.
	var ts []Target
	var found bool
	err := d.bolt.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAliases)
		var err error
		ts, found, err = expand(ctx, address, d.opts.isLocal, func(key string) ([]Target, bool, error) {
			v := b.Get([]byte(key))
			if v == nil {
				return nil, false, nil
			}
			t, err := decodeTargets(v)
			if err != nil {
				return nil, false, fmt.Errorf("aliases %s: lookup %q: %w", d.path, key, err)
			}
			if len(t) == 0 {
				t = nil
			}
			return t, true, nil
		})
		return err
	})
	return ts, found, err
}

// maybeReload stats the file at most once per CheckInterval and swaps in a
// replaced file. One goroutine checks at a time; a failed reopen keeps the
// old file and is retried at the next interval.
func (d *DB) maybeReload() {
	now := time.Now().UnixNano()
	last := d.lastCheck.Load()
	if now-last < int64(CheckInterval) || !d.lastCheck.CompareAndSwap(last, now) {
		return
	}
	st, err := os.Stat(d.path)
	if err != nil {
		d.log.Warn("aliases: cannot stat compiled file; serving the loaded copy", "path", d.path, "err", err)
		return
	}
	d.mu.RLock()
	same := identityOf(st) == d.ident || d.closed
	d.mu.RUnlock()
	if same {
		return
	}
	b, id, err := openCompiled(d.path)
	if err != nil {
		d.log.Warn("aliases: cannot open recompiled file; serving the loaded copy", "path", d.path, "err", err)
		return
	}
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		b.Close()
		return
	}
	old := d.bolt
	d.bolt, d.ident = b, id
	d.mu.Unlock()
	// Readers hold mu.RLock for their whole read, so none is inside old.
	if err := old.Close(); err != nil {
		d.log.Warn("aliases: closing replaced file", "path", d.path, "err", err)
	}
	d.log.Info("aliases: reloaded recompiled file", "path", d.path)
}

// WithLogger sets where DB reports reloads (slog.Default otherwise).
// It has no effect on Load.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.log = l }
}
