package state

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Defaults of the embedded store.
const (
	DefaultSweepInterval = time.Minute
	DefaultSweepBatch    = 5000
	// DefaultBatchDelay is how long a write waits for others to share its
	// transaction (and its fsync). Measured on the 2-core test machine
	// (see docs/state.md): one fsync'd bbolt transaction per write gives
	// a few hundred writes/s whatever the concurrency; batching lets 32
	// concurrent SMTP sessions share one fsync at the cost of this much
	// latency for a lone writer.
	DefaultBatchDelay = 2 * time.Millisecond
	// DefaultOpenTimeout bounds the wait for the file lock that bbolt holds
	// while another process has the database open.
	DefaultOpenTimeout = 5 * time.Second
)

var bucketName = []byte("state")

// EmbeddedOption tunes OpenEmbedded.
type EmbeddedOption func(*embeddedConfig)

type embeddedConfig struct {
	sweepInterval time.Duration
	sweepBatch    int
	batchDelay    time.Duration
	noSync        bool
	openTimeout   time.Duration
	now           func() time.Time
	log           *slog.Logger
}

// WithSweepInterval sets how often the background sweep looks for expired
// keys; 0 or less turns the sweep off (expired keys are then only replaced
// lazily by writes).
func WithSweepInterval(d time.Duration) EmbeddedOption {
	return func(c *embeddedConfig) { c.sweepInterval = d }
}

// WithSweepBatch bounds how many keys one sweep pass examines, so that a
// large database is cleaned a slice at a time and never holds the write lock
// for long.
func WithSweepBatch(n int) EmbeddedOption {
	return func(c *embeddedConfig) {
		if n > 0 {
			c.sweepBatch = n
		}
	}
}

// WithBatchDelay sets how long a write may wait to share a transaction with
// concurrent writes (bbolt's DB.Batch). 0 commits every write in its own
// transaction (db.Update): lowest latency for one writer, one fsync per write.
func WithBatchDelay(d time.Duration) EmbeddedOption {
	return func(c *embeddedConfig) { c.batchDelay = d }
}

// WithNoSync skips the fsync after each commit. Filter state is not mail: a
// crash then loses at most the last few seconds of greylist triplets and
// counters, and the database stays consistent (bbolt's meta pages). Off by
// default.
func WithNoSync(noSync bool) EmbeddedOption {
	return func(c *embeddedConfig) { c.noSync = noSync }
}

// WithClock replaces time.Now, for tests of expiry.
func WithClock(now func() time.Time) EmbeddedOption {
	return func(c *embeddedConfig) {
		if now != nil {
			c.now = now
		}
	}
}

// WithLogger sets where sweep failures and unavailability are reported.
func WithLogger(l *slog.Logger) EmbeddedOption {
	return func(c *embeddedConfig) {
		if l != nil {
			c.log = l
		}
	}
}

// Embedded is the single-machine Store: one bbolt file (by convention
// DATADIR/state/state.db). Each record is stored as an 8-byte big-endian
// expiry in Unix nanoseconds (0 = never) followed by the value. Reads are
// lock-free bbolt read transactions; writes are serialised by bbolt's single
// writer, which is what makes SetNX and Incr atomic.
type Embedded struct {
	db   *bolt.DB
	path string
	cfg  embeddedConfig
	rep  *unavailableReporter

	stopSweep chan struct{}
	sweepDone chan struct{}
	closeOnce sync.Once
	closeErr  error

	sweepMu     sync.Mutex // guards sweepCursor
	sweepCursor []byte
}

var _ Store = (*Embedded)(nil)

// OpenEmbedded opens (creating if needed, with its directory) the embedded
// store at path and starts its background sweep.
func OpenEmbedded(path string, opt ...EmbeddedOption) (*Embedded, error) {
	cfg := embeddedConfig{
		sweepInterval: DefaultSweepInterval,
		sweepBatch:    DefaultSweepBatch,
		batchDelay:    DefaultBatchDelay,
		openTimeout:   DefaultOpenTimeout,
		now:           time.Now,
		log:           slog.New(slog.DiscardHandler),
	}
	for _, o := range opt {
		o(&cfg)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("state %s: open: %w", path, err)
	}
	db, err := bolt.Open(path, 0o640, &bolt.Options{Timeout: cfg.openTimeout, NoSync: cfg.noSync})
	if err != nil {
		return nil, fmt.Errorf("state %s: open: %w", path, err)
	}
	if cfg.batchDelay > 0 {
		db.MaxBatchDelay = cfg.batchDelay
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketName)
		return err
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("state %s: create bucket: %w", path, err)
	}
	e := &Embedded{
		db:        db,
		path:      path,
		cfg:       cfg,
		rep:       newUnavailableReporter(cfg.log, "embedded "+path, DefaultReportEvery, cfg.now),
		stopSweep: make(chan struct{}),
		sweepDone: make(chan struct{}),
	}
	if cfg.sweepInterval > 0 {
		go e.sweepLoop()
	} else {
		close(e.sweepDone)
	}
	return e, nil
}

// record helpers --------------------------------------------------------

func encodeRecord(expires int64, value []byte) []byte {
	b := make([]byte, 8+len(value))
	binary.BigEndian.PutUint64(b, uint64(expires))
	copy(b[8:], value)
	return b
}

// decodeRecord splits a stored record; ok is false for a corrupt record,
// which is treated as absent (and overwritten by the next write).
func decodeRecord(b []byte) (expires int64, value []byte, ok bool) {
	if len(b) < 8 {
		return 0, nil, false
	}
	return int64(binary.BigEndian.Uint64(b)), b[8:], true
}

func (e *Embedded) expiry(now time.Time, ttl time.Duration) int64 {
	if ttl <= 0 {
		return 0
	}
	return now.Add(ttl).UnixNano()
}

// live returns the value of a stored record if it is present and unexpired.
func live(raw []byte, now int64) ([]byte, bool) {
	if raw == nil {
		return nil, false
	}
	exp, v, ok := decodeRecord(raw)
	if !ok || (exp != 0 && exp <= now) {
		return nil, false
	}
	return v, true
}

func (e *Embedded) fail(op, key string, err error) error {
	if errors.Is(err, ErrNotCounter) || errors.Is(err, ErrInvalid) {
		return fmt.Errorf("state %s: %s %q: %w", e.path, op, key, err)
	}
	// Disk or closed database: the store cannot answer now.
	wrapped := fmt.Errorf("state %s: %s %q: %w: %w", e.path, op, key, ErrUnavailable, err)
	if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		e.rep.report(wrapped) // a caller's ended context is not an outage
	}
	return wrapped
}

func (e *Embedded) update(fn func(*bolt.Bucket) error) error {
	wrapped := func(tx *bolt.Tx) error { return fn(tx.Bucket(bucketName)) }
	if e.cfg.batchDelay > 0 {
		return e.db.Batch(wrapped)
	}
	return e.db.Update(wrapped)
}

// Store methods -----------------------------------------------------------

// Get reads key in a read-only transaction: it never waits for writers.
// An expired record reads as absent; the sweep or the next write removes it.
func (e *Embedded) Get(ctx context.Context, key string) ([]byte, bool, error) {
	if err := checkKey(key); err != nil {
		return nil, false, e.fail("get", key, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, false, e.fail("get", key, err)
	}
	var out []byte
	var found bool
	now := e.cfg.now().UnixNano()
	err := e.db.View(func(tx *bolt.Tx) error {
		v, ok := live(tx.Bucket(bucketName).Get([]byte(key)), now)
		if ok {
			// bbolt's memory is valid only inside the transaction.
			out, found = bytes.Clone(v), true
			if out == nil {
				out = []byte{}
			}
		}
		return nil
	})
	if err != nil {
		return nil, false, e.fail("get", key, err)
	}
	return out, found, nil
}

// Set stores value under key; ttl 0 means no expiry.
func (e *Embedded) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := errors.Join(checkKey(key), checkValue(value), checkTTL(ttl)); err != nil {
		return e.fail("set", key, err)
	}
	if err := ctx.Err(); err != nil {
		return e.fail("set", key, err)
	}
	rec := encodeRecord(e.expiry(e.cfg.now(), ttl), value)
	if err := e.update(func(b *bolt.Bucket) error { return b.Put([]byte(key), rec) }); err != nil {
		return e.fail("set", key, err)
	}
	return nil
}

// SetNX stores value only if key is absent or expired.
func (e *Embedded) SetNX(ctx context.Context, key string, value []byte, ttl time.Duration) (bool, error) {
	if err := errors.Join(checkKey(key), checkValue(value), checkTTL(ttl)); err != nil {
		return false, e.fail("setnx", key, err)
	}
	if err := ctx.Err(); err != nil {
		return false, e.fail("setnx", key, err)
	}
	var stored bool
	err := e.update(func(b *bolt.Bucket) error {
		stored = false // Batch may run this function more than once
		now := e.cfg.now()
		if _, ok := live(b.Get([]byte(key)), now.UnixNano()); ok {
			return nil
		}
		stored = true
		return b.Put([]byte(key), encodeRecord(e.expiry(now, ttl), value))
	})
	if err != nil {
		return false, e.fail("setnx", key, err)
	}
	return stored, nil
}

// Incr adds delta to the counter under key; see Store.Incr.
func (e *Embedded) Incr(ctx context.Context, key string, delta int64, ttl time.Duration) (int64, error) {
	if err := errors.Join(checkKey(key), checkTTL(ttl)); err != nil {
		return 0, e.fail("incr", key, err)
	}
	if err := ctx.Err(); err != nil {
		return 0, e.fail("incr", key, err)
	}
	var result int64
	err := e.update(func(b *bolt.Bucket) error {
		now := e.cfg.now()
		raw := b.Get([]byte(key))
		cur, expires := int64(0), e.expiry(now, ttl)
		if v, ok := live(raw, now.UnixNano()); ok {
			n, err := strconv.ParseInt(string(v), 10, 64)
			if err != nil {
				return fmt.Errorf("%q: %w", v, ErrNotCounter)
			}
			cur = n
			expires, _, _ = decodeRecord(raw) // keep the window's expiry
		}
		if (delta > 0 && cur > math.MaxInt64-delta) || (delta < 0 && cur < math.MinInt64-delta) {
			return fmt.Errorf("%d%+d overflows: %w", cur, delta, ErrNotCounter)
		}
		result = cur + delta
		return b.Put([]byte(key), encodeRecord(expires, strconv.AppendInt(nil, result, 10)))
	})
	if err != nil {
		return 0, e.fail("incr", key, err)
	}
	return result, nil
}

// Delete removes key.
func (e *Embedded) Delete(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return e.fail("delete", key, err)
	}
	if err := ctx.Err(); err != nil {
		return e.fail("delete", key, err)
	}
	if err := e.update(func(b *bolt.Bucket) error { return b.Delete([]byte(key)) }); err != nil {
		return e.fail("delete", key, err)
	}
	return nil
}

// Close stops the sweep and closes the file. It is safe to call twice.
func (e *Embedded) Close() error {
	e.closeOnce.Do(func() {
		close(e.stopSweep)
		<-e.sweepDone
		if err := e.db.Close(); err != nil {
			e.closeErr = fmt.Errorf("state %s: close: %w", e.path, err)
		}
	})
	return e.closeErr
}

// sweep ---------------------------------------------------------------------

func (e *Embedded) sweepLoop() {
	defer close(e.sweepDone)
	t := time.NewTicker(e.cfg.sweepInterval)
	defer t.Stop()
	for {
		select {
		case <-e.stopSweep:
			return
		case <-t.C:
			if _, err := e.Sweep(); err != nil {
				e.cfg.log.Warn("state: sweep of expired keys failed", "path", e.path, "err", err)
			}
		}
	}
}

// Sweep runs one bounded pass of the expiry sweep: it examines at most the
// configured batch of keys, starting where the previous pass stopped, and
// deletes those that have expired. It returns how many it deleted. The
// background sweep calls it; it is exported for tests and for an admin
// command that wants the file compact now.
func (e *Embedded) Sweep() (int, error) {
	e.sweepMu.Lock()
	defer e.sweepMu.Unlock()
	now := e.cfg.now().UnixNano()
	var expired [][]byte
	var next []byte
	// Find candidates in a read transaction so writers are not held up ...
	err := e.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketName).Cursor()
		k, v := c.First()
		if e.sweepCursor != nil {
			k, v = c.Seek(e.sweepCursor)
		}
		for n := 0; k != nil && n < e.cfg.sweepBatch; n++ {
			if _, ok := live(v, now); !ok {
				expired = append(expired, bytes.Clone(k))
			}
			k, v = c.Next()
		}
		next = bytes.Clone(k) // nil: wrap around next time
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("state %s: sweep: %w", e.path, err)
	}
	e.sweepCursor = next
	if len(expired) == 0 {
		return 0, nil
	}
	// ... then delete them in one write, re-checking: a key may have been
	// rewritten in between.
	deleted := 0
	err = e.db.Update(func(tx *bolt.Tx) error {
		deleted = 0
		b := tx.Bucket(bucketName)
		for _, k := range expired {
			if _, ok := live(b.Get(k), now); ok {
				continue
			}
			if err := b.Delete(k); err != nil {
				return err
			}
			deleted++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("state %s: sweep: %w", e.path, err)
	}
	return deleted, nil
}

// Len returns the number of stored records, expired ones included (they
// count until swept). For tests and statistics.
func (e *Embedded) Len() (int, error) {
	var n int
	err := e.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketName).Stats().KeyN
		return nil
	})
	return n, err
}
