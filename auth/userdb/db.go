package userdb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"postern/auth"
	"postern/auth/passwd"
	"postern/internal/boltindex"
)

// ModuleName is what DB.Name returns.
const ModuleName = "userdb"

// DefaultCheckInterval is how often a lookup may stat the compiled file to
// notice a recompile.
const DefaultCheckInterval = time.Second

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

// DB is the userdb auth.Module: it answers from a compiled file and reopens
// the file when a recompile replaced it (see boltindex). Safe for
// concurrent use.
type DB struct {
	log      *slog.Logger
	interval time.Duration
	index    *boltindex.Index
}

var _ auth.Module = (*DB)(nil)

// Open opens the compiled database at dbPath read-only.
func Open(dbPath string, opts ...Option) (*DB, error) {
	d := &DB{log: slog.Default(), interval: DefaultCheckInterval}
	for _, o := range opts {
		o(d)
	}
	if d.interval < 0 {
		d.interval = 0 // boltindex reads a negative interval as its default
	}
	x, err := boltindex.Open(dbPath, boltindex.Options{
		Name:     ModuleName,
		Interval: d.interval,
		Logger:   d.log,
		Validate: boltindex.RequireFormat(formatVersion, "not a compiled userdb (run makeuserdb)", bucketUsers),
	})
	if err != nil {
		return nil, err
	}
	d.index = x
	return d, nil
}

// Name returns "userdb".
func (d *DB) Name() string { return ModuleName }

// Path returns the compiled file's path.
func (d *DB) Path() string { return d.index.Path() }

// Close releases the file. Lookups after Close return ErrClosed.
func (d *DB) Close() error { return d.index.Close() }

// fields returns the stored fields of name.
func (d *DB) fields(ctx context.Context, name string) (map[string]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("userdb: lookup %q: %w", name, err)
	}
	var raw string
	found := false
	err := d.index.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketUsers).Get([]byte(name))
		if v != nil {
			raw, found = string(v), true // copy: v lives in the mmap only during the tx
		}
		return nil
	})
	if errors.Is(err, boltindex.ErrClosed) {
		return nil, ErrClosed
	}
	if err != nil {
		return nil, fmt.Errorf("userdb %s: lookup %q: %w: %w", d.index.Path(), name, auth.ErrTemporary, err)
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

// Enumerate calls each with every account of the compiled file, in name
// order (auth.Enumerator). The accounts are read in one read transaction
// and handed out after it ends, so that a slow consumer does not hold the
// file open across a recompile.
func (d *DB) Enumerate(ctx context.Context, each func(*auth.Account) error) error {
	type entry struct{ name, raw string }
	var entries []entry
	err := d.index.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketUsers).ForEach(func(k, v []byte) error {
			entries = append(entries, entry{string(k), string(v)})
			return ctx.Err()
		})
	})
	if errors.Is(err, boltindex.ErrClosed) {
		return ErrClosed
	}
	if err != nil {
		return fmt.Errorf("userdb %s: enumerate: %w", d.index.Path(), err)
	}
	for _, e := range entries {
		if err := each(accountFrom(e.name, decodeFields(e.raw))); err != nil {
			return err
		}
	}
	return nil
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
