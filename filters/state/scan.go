package state

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// Scanner is a Store that lists its keys under a prefix a page at a time,
// for maintenance jobs (bayes token expiry) that must visit a large
// keyspace without holding it in memory or blocking the store: bbolt
// pages by key order, Redis by SCAN (never KEYS, which blocks Redis).
type Scanner interface {
	// ScanPrefix returns up to about count keys under prefix (without any
	// store-level prefix), starting at cursor ("" for the first page),
	// and the cursor of the next page, "" when the scan is done. A key
	// added or removed during a scan may or may not be returned; a key
	// present throughout is returned at least once.
	ScanPrefix(ctx context.Context, prefix, cursor string, count int) (keys []string, next string, err error)
}

// MultiSetter is a Store that stores many values (without expiry) in one
// round trip: one bbolt transaction, one Redis MSET.
type MultiSetter interface {
	SetMany(ctx context.Context, keys []string, values [][]byte) error
}

// MultiDeleter is a Store that removes many keys in one round trip: one
// bbolt transaction, one Redis DEL.
type MultiDeleter interface {
	DeleteMany(ctx context.Context, keys []string) error
}

// DeleteMany removes keys (absent ones are no error), in one round trip
// when s can, else key by key.
func DeleteMany(ctx context.Context, s Store, keys []string) error {
	if len(keys) > MaxGetMany {
		return fmt.Errorf("state: deletemany of %d keys (max %d): %w", len(keys), MaxGetMany, ErrInvalid)
	}
	if m, ok := s.(MultiDeleter); ok {
		return m.DeleteMany(ctx, keys)
	}
	for _, k := range keys {
		if err := s.Delete(ctx, k); err != nil {
			return err
		}
	}
	return nil
}

// DeleteMany removes keys in one transaction.
func (e *Embedded) DeleteMany(ctx context.Context, keys []string) error {
	for _, k := range keys {
		if err := checkKey(k); err != nil {
			return e.fail("deletemany", k, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return e.fail("deletemany", "", err)
	}
	err := e.update(func(b *bolt.Bucket) error {
		for _, k := range keys {
			if err := b.Delete([]byte(k)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return e.fail("deletemany", "", err)
	}
	return nil
}

// DeleteMany removes keys with one DEL.
func (r *Redis) DeleteMany(ctx context.Context, keys []string) error {
	if len(keys) == 0 {
		return nil
	}
	full := make([]string, len(keys))
	for i, k := range keys {
		if err := r.begin("deletemany", k); err != nil {
			return err
		}
		full[i] = r.key(k)
	}
	if err := r.client.Del(ctx, full...).Err(); err != nil {
		return r.fail("deletemany", keys[0], err)
	}
	r.succeeded()
	return nil
}

// SetMany stores values[i] under keys[i] without expiry, in one round
// trip when s can, else key by key.
func SetMany(ctx context.Context, s Store, keys []string, values [][]byte) error {
	if len(keys) != len(values) || len(keys) > MaxGetMany {
		return fmt.Errorf("state: setmany of %d keys, %d values (max %d): %w", len(keys), len(values), MaxGetMany, ErrInvalid)
	}
	if m, ok := s.(MultiSetter); ok {
		return m.SetMany(ctx, keys, values)
	}
	for i, k := range keys {
		if err := s.Set(ctx, k, values[i], 0); err != nil {
			return err
		}
	}
	return nil
}

// SetMany stores every value in one transaction.
func (e *Embedded) SetMany(ctx context.Context, keys []string, values [][]byte) error {
	for i, k := range keys {
		if err := checkKey(k); err != nil {
			return e.fail("setmany", k, err)
		}
		if err := checkValue(values[i]); err != nil {
			return e.fail("setmany", k, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return e.fail("setmany", "", err)
	}
	err := e.update(func(b *bolt.Bucket) error {
		for i, k := range keys {
			if err := b.Put([]byte(k), encodeRecord(0, values[i])); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return e.fail("setmany", "", err)
	}
	return nil
}

// ScanPrefix pages through the bucket in key order; the cursor is the last
// key returned.
func (e *Embedded) ScanPrefix(ctx context.Context, prefix, cursor string, count int) ([]string, string, error) {
	if err := ctx.Err(); err != nil {
		return nil, "", e.fail("scan", prefix, err)
	}
	count = max(count, 1)
	var keys []string
	now := e.cfg.now().UnixNano()
	err := e.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketName).Cursor()
		p := []byte(prefix)
		var k, v []byte
		if cursor == "" {
			k, v = c.Seek(p)
		} else {
			k, v = c.Seek([]byte(cursor))
			if k != nil && string(k) == cursor {
				k, v = c.Next()
			}
		}
		for ; k != nil && bytes.HasPrefix(k, p) && len(keys) < count; k, v = c.Next() {
			if _, ok := live(v, now); ok {
				keys = append(keys, string(k))
			}
		}
		if k == nil || !bytes.HasPrefix(k, p) {
			cursor = "" // nothing after this page
		} else if len(keys) > 0 {
			cursor = keys[len(keys)-1]
		}
		return nil
	})
	if err != nil {
		return nil, "", e.fail("scan", prefix, err)
	}
	if len(keys) == 0 {
		cursor = ""
	}
	return keys, cursor, nil
}

// ScanPrefix runs one SCAN step with MATCH on the (escaped) prefix; the
// cursor is Redis's. A page may be empty while the scan goes on.
func (r *Redis) ScanPrefix(ctx context.Context, prefix, cursor string, count int) ([]string, string, error) {
	if err := r.begin("scan", r.prefix+prefix); err != nil {
		return nil, "", err
	}
	var cur uint64
	if cursor != "" {
		n, err := strconv.ParseUint(cursor, 10, 64)
		if err != nil {
			return nil, "", fmt.Errorf("state redis %s: scan cursor %q: %w", r.addr, cursor, ErrInvalid)
		}
		cur = n
	}
	full, next, err := r.client.Scan(ctx, cur, globEscape(r.prefix+prefix)+"*", int64(max(count, 1))).Result()
	if err != nil {
		return nil, "", r.fail("scan", prefix, err)
	}
	r.succeeded()
	keys := make([]string, 0, len(full))
	for _, k := range full {
		keys = append(keys, strings.TrimPrefix(k, r.prefix))
	}
	if next == 0 {
		return keys, "", nil
	}
	return keys, strconv.FormatUint(next, 10), nil
}

// SetMany stores every value with one MSET (atomic in Redis).
func (r *Redis) SetMany(ctx context.Context, keys []string, values [][]byte) error {
	if len(keys) == 0 {
		return nil
	}
	pairs := make([]any, 0, 2*len(keys))
	for i, k := range keys {
		if err := r.begin("setmany", k); err != nil {
			return err
		}
		if err := checkValue(values[i]); err != nil {
			return fmt.Errorf("state redis %s: setmany %q: %w", r.addr, k, err)
		}
		pairs = append(pairs, r.key(k), values[i])
	}
	if err := r.client.MSet(ctx, pairs...).Err(); err != nil {
		return r.fail("setmany", keys[0], err)
	}
	r.succeeded()
	return nil
}

// globEscape quotes the glob characters of SCAN MATCH patterns.
func globEscape(s string) string {
	var b strings.Builder
	for _, c := range s {
		if strings.ContainsRune(`*?[]\^-`, c) {
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	return b.String()
}

var (
	_ Scanner      = (*Embedded)(nil)
	_ Scanner      = (*Redis)(nil)
	_ MultiSetter  = (*Embedded)(nil)
	_ MultiSetter  = (*Redis)(nil)
	_ MultiDeleter = (*Embedded)(nil)
	_ MultiDeleter = (*Redis)(nil)
)
