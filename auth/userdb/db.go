package userdb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"

	"postern/auth"
	"postern/auth/passwd"
)

// ModuleName is what DB.Name returns.
const ModuleName = "userdb"

// DefaultCheckInterval is how often a lookup may stat the compiled file to
// notice a recompile.
const DefaultCheckInterval = time.Second

// openTimeout bounds the wait for bbolt's shared file lock. Nothing holds an
// exclusive lock on a compiled file (Compile writes a fresh temporary file),
// so a wait means something foreign is locking it.
const openTimeout = 2 * time.Second

// ErrClosed is returned by lookups on a closed DB.
var ErrClosed = errors.New("userdb: database closed")

// timingDummyHash is a bcrypt (cost 10, the default Hash makes) of a
// password nobody uses; unknown names are checked against it.
const timingDummyHash = "$2a$10$XWrre.DjsBdrVUiNmFgIC.6VIxG19ivVmwaib2IhAjZQaYFpUDyVe"

// Option tunes Open.
type Option func(*DB)

// WithLogger sets where reloads and unusable hashes are reported.
func WithLogger(l *slog.Logger) Option { return func(d *DB) { d.log = l } }

// WithCheckInterval sets how often lookups look for a recompiled file
// (DefaultCheckInterval when not given; zero checks on every lookup).
func WithCheckInterval(interval time.Duration) Option {
	return func(d *DB) { d.interval = interval }
}

// fileIdentity tells a recompiled file from the one we have open: Compile
// renames a new inode over the path.
type fileIdentity struct {
	dev, ino uint64
	mtime    int64
	size     int64
}

func identityOf(st os.FileInfo) fileIdentity {
	id := fileIdentity{mtime: st.ModTime().UnixNano(), size: st.Size()}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		id.dev, id.ino = uint64(sys.Dev), uint64(sys.Ino)
	}
	return id
}

// DB is the userdb auth.Module: it answers from a compiled file and reopens
// the file when a recompile replaced it. Safe for concurrent use.
type DB struct {
	path     string
	log      *slog.Logger
	interval time.Duration

	lastCheck atomic.Int64 // unix nanoseconds of the last stat

	mu     sync.RWMutex // guards the fields below; readers hold it during a bolt read
	bolt   *bolt.DB
	ident  fileIdentity
	closed bool
}

var _ auth.Module = (*DB)(nil)

// Open opens the compiled database at dbPath read-only.
func Open(dbPath string, opts ...Option) (*DB, error) {
	d := &DB{path: dbPath, log: slog.Default(), interval: DefaultCheckInterval}
	for _, o := range opts {
		o(d)
	}
	b, id, err := openCompiled(dbPath)
	if err != nil {
		return nil, err
	}
	d.bolt, d.ident = b, id
	d.lastCheck.Store(time.Now().UnixNano())
	return d, nil
}

// openCompiled opens dbPath read-only (a shared lock, so many readers and
// the renamed-over file never block one another) and returns the identity
// of the very file it opened.
func openCompiled(dbPath string) (*bolt.DB, fileIdentity, error) {
	var opened *os.File
	b, err := bolt.Open(dbPath, 0o600, &bolt.Options{
		ReadOnly: true,
		Timeout:  openTimeout,
		OpenFile: func(name string, flag int, mode os.FileMode) (*os.File, error) {
			f, err := os.OpenFile(name, flag, mode)
			opened = f
			return f, err
		},
	})
	if err != nil {
		return nil, fileIdentity{}, fmt.Errorf("userdb %s: open: %w", dbPath, err)
	}
	st, err := opened.Stat()
	if err != nil {
		b.Close()
		return nil, fileIdentity{}, fmt.Errorf("userdb %s: open: %w", dbPath, err)
	}
	var format []byte
	err = b.View(func(tx *bolt.Tx) error {
		if m := tx.Bucket(bucketMeta); m != nil {
			format = append(format, m.Get(keyFormat)...)
		}
		if tx.Bucket(bucketUsers) == nil {
			return errors.New("no users bucket")
		}
		return nil
	})
	if err == nil && string(format) != formatVersion {
		err = fmt.Errorf("format %q, want %q", format, formatVersion)
	}
	if err != nil {
		b.Close()
		return nil, fileIdentity{}, fmt.Errorf("userdb %s: not a compiled userdb (run makeuserdb): %w", dbPath, err)
	}
	return b, identityOf(st), nil
}

// Name returns "userdb".
func (d *DB) Name() string { return ModuleName }

// Path returns the compiled file's path.
func (d *DB) Path() string { return d.path }

// Close releases the file. Lookups after Close return ErrClosed.
func (d *DB) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	return d.bolt.Close()
}

// maybeReload stats the file at most once per interval and swaps in the new
// file when its identity changed. Only one goroutine checks at a time; a
// failed reopen keeps serving the old file and is retried next interval.
func (d *DB) maybeReload() {
	now := time.Now().UnixNano()
	last := d.lastCheck.Load()
	if now-last < int64(d.interval) || !d.lastCheck.CompareAndSwap(last, now) {
		return
	}
	st, err := os.Stat(d.path)
	if err != nil {
		d.log.Warn("userdb: cannot stat compiled file; serving the loaded copy", "path", d.path, "err", err)
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
		d.log.Warn("userdb: cannot open recompiled file; serving the loaded copy", "path", d.path, "err", err)
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
	// No reader can still be inside old: each holds mu.RLock for its read.
	if err := old.Close(); err != nil {
		d.log.Warn("userdb: closing replaced file", "path", d.path, "err", err)
	}
	d.log.Info("userdb: reloaded recompiled file", "path", d.path)
}

// fields returns the stored fields of name.
func (d *DB) fields(ctx context.Context, name string) (map[string]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("userdb: lookup %q: %w", name, err)
	}
	d.maybeReload()
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed {
		return nil, ErrClosed
	}
	var raw string
	found := false
	err := d.bolt.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketUsers).Get([]byte(name))
		if v != nil {
			raw, found = string(v), true // copy: v lives in the mmap only during the tx
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("userdb %s: lookup %q: %w: %w", d.path, name, auth.ErrTemporary, err)
	}
	if !found {
		return nil, fmt.Errorf("userdb: %q: %w", name, auth.ErrNoSuchUser)
	}
	return decodeFields(raw), nil
}

// decodeFields splits a stored "field=value|..." string. The compiled file
// holds only entries that passed validation, so no checks are repeated.
func decodeFields(raw string) map[string]string {
	fields := make(map[string]string, strings.Count(raw, "|")+1)
	for item := range strings.SplitSeq(raw, "|") {
		if k, v, ok := strings.Cut(item, "="); ok {
			fields[k] = v
		}
	}
	return fields
}

// Lookup resolves name (matched exactly) to its account.
func (d *DB) Lookup(ctx context.Context, name string) (*auth.Account, error) {
	f, err := d.fields(ctx, name)
	if err != nil {
		return nil, err
	}
	return accountFrom(name, f), nil
}

// PasswordFields lists, in order of preference, the fields that hold the
// password for service: the per-service field first (Courier's authuserdb
// rule: "imappw" wins over "systempw" for IMAP), then systempw.
func PasswordFields(service string) []string {
	service = strings.ToLower(service)
	names := []string{service + PasswordFieldSuffix}
	if service == auth.ServiceSMTP {
		names = append(names, "esmtp"+PasswordFieldSuffix) // Courier's name for it
	}
	return append(names, FieldSystemPW)
}

// PasswordFor returns the hash that guards service for these fields, and
// whether there is one.
func PasswordFor(fields map[string]string, service string) (string, bool) {
	for _, k := range PasswordFields(service) {
		if h, ok := fields[k]; ok {
			return h, true
		}
	}
	return "", false
}

// Authenticate checks password for service against the account's
// per-service password if it has one, else its systempw. An account without
// either cannot log in (ErrBadPassword). A hash Postern cannot read is
// logged and refused with an error wrapping both auth.ErrBadPassword and the
// passwd error.
func (d *DB) Authenticate(ctx context.Context, service, name, password string) (*auth.Account, error) {
	f, err := d.fields(ctx, name)
	if err != nil {
		if errors.Is(err, auth.ErrNoSuchUser) {
			// Spend what a real bcrypt check would, so that response time
			// does not tell which names exist.
			passwd.Verify(timingDummyHash, password)
		}
		return nil, err
	}
	hash, ok := PasswordFor(f, service)
	if !ok {
		return nil, fmt.Errorf("userdb: %q has no password for %s: %w", name, service, auth.ErrBadPassword)
	}
	match, err := passwd.Verify(hash, password)
	if err != nil {
		d.log.Warn("userdb: unusable password hash", "user", name, "service", service, "err", err)
		return nil, fmt.Errorf("userdb: %q: %w: %w", name, auth.ErrBadPassword, err)
	}
	if !match {
		return nil, fmt.Errorf("userdb: %q: %w", name, auth.ErrBadPassword)
	}
	return accountFrom(name, f), nil
}

// accountFrom builds the auth.Account; Fields gets every stored field,
// password hashes included (authtest shows them, as Courier's does).
func accountFrom(name string, f map[string]string) *auth.Account {
	a := &auth.Account{
		Name:   name,
		Home:   f[FieldHome],
		Quota:  f[FieldQuota],
		Fields: f,
		Module: ModuleName,
	}
	a.UID, _ = parseID(f[FieldUID])
	a.GID, _ = parseID(f[FieldGID])
	if m := f[FieldMail]; m != "" {
		// Courier reads a relative maildir relative to the home directory.
		if !filepath.IsAbs(m) {
			m = filepath.Join(a.Home, m)
		}
		a.Maildir = m
	}
	a.Options, _ = ParseOptions(f[FieldOptions])
	return a
}
