package aliases

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"

	"postern/internal/boltindex"
)

// DefaultDBName is the compiled index's file name in the configuration
// directory (Courier calls its own aliases.dat).
const DefaultDBName = "aliases.db"

// CheckInterval is the most often a lookup stats the compiled file to
// notice that makealiases replaced it.
const CheckInterval = time.Second

// The compiled file is a bbolt database: a lookup is a B+tree read from a
// memory map, with no parsing of the source, and read-only opens take a
// shared lock so any number of processes read while the next file is built
// beside it.
var bucketAliases = []byte("aliases") // folded name → encoded targets

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
	keys := make([]string, 0, len(a.entries))
	for k := range a.entries {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	// Readable by every mail process, as the source usually is.
	opts := boltindex.WriteOptions{Name: "aliases", Mode: 0o644, TmpDir: tmpDir}
	return boltindex.Write(dbPath, opts, func(tx *bolt.Tx) error {
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
		return boltindex.PutMeta(tx, formatVersion, len(keys), source)
	})
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

// DB answers alias lookups from a compiled file and switches to a new file
// within CheckInterval of makealiases replacing it (see boltindex). Safe
// for concurrent use.
type DB struct {
	opts  options
	index *boltindex.Index
}

// OpenDB opens the compiled index at dbPath read-only.
func OpenDB(dbPath string, opts ...Option) (*DB, error) {
	d := &DB{}
	for _, o := range opts {
		o(&d.opts)
	}
	x, err := boltindex.Open(dbPath, boltindex.Options{
		Name:     "aliases",
		Interval: CheckInterval,
		Logger:   d.opts.log, // nil: slog.Default
		Validate: boltindex.RequireFormat(formatVersion, "not a compiled alias file (run makealiases)", bucketAliases),
	})
	if err != nil {
		return nil, err
	}
	d.index = x
	return d, nil
}

// Path returns the compiled file's path.
func (d *DB) Path() string { return d.index.Path() }

// Close releases the file; later lookups return ErrClosed.
func (d *DB) Close() error { return d.index.Close() }

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
	// One read transaction for all the probes of this lookup.
	var ts []Target
	var found bool
	err := d.index.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAliases)
		var err error
		ts, found, err = expand(ctx, address, d.opts.isLocal, func(key string) ([]Target, bool, error) {
			v := b.Get([]byte(key))
			if v == nil {
				return nil, false, nil
			}
			t, err := decodeTargets(v)
			if err != nil {
				return nil, false, fmt.Errorf("aliases %s: lookup %q: %w", d.index.Path(), key, err)
			}
			if len(t) == 0 {
				t = nil
			}
			return t, true, nil
		})
		return err
	})
	if errors.Is(err, boltindex.ErrClosed) {
		return nil, false, ErrClosed
	}
	return ts, found, err
}

// WithLogger sets where DB reports reloads (slog.Default otherwise).
// It has no effect on Load.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.log = l }
}
