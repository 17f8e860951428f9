package state

import (
	"bytes"
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// MaxGetMany bounds the keys of one GetMany call, so that a caller cannot
// turn one read into an unbounded transaction or Redis reply.
const MaxGetMany = 4096

// MultiGetter is a Store that reads many keys in one round trip (one bbolt
// read transaction, one Redis MGET). Both stores implement it; GetMany
// falls back to one Get per key for any other Store.
type MultiGetter interface {
	// GetMany returns the values under keys, in order; nil for a key that
	// is absent or expired.
	GetMany(ctx context.Context, keys []string) ([][]byte, error)
}

// GetMany reads keys from s in one round trip when s can, else key by key.
func GetMany(ctx context.Context, s Store, keys []string) ([][]byte, error) {
	if len(keys) > MaxGetMany {
		return nil, fmt.Errorf("state: getmany of %d keys (max %d): %w", len(keys), MaxGetMany, ErrInvalid)
	}
	if m, ok := s.(MultiGetter); ok {
		return m.GetMany(ctx, keys)
	}
	out := make([][]byte, len(keys))
	for i, k := range keys {
		v, found, err := s.Get(ctx, k)
		if err != nil {
			return nil, err
		}
		if found {
			out[i] = v
		}
	}
	return out, nil
}

// GetMany reads keys in one read-only transaction.
func (e *Embedded) GetMany(ctx context.Context, keys []string) ([][]byte, error) {
	if len(keys) > MaxGetMany {
		return nil, fmt.Errorf("state %s: getmany of %d keys (max %d): %w", e.path, len(keys), MaxGetMany, ErrInvalid)
	}
	for _, k := range keys {
		if err := checkKey(k); err != nil {
			return nil, e.fail("getmany", k, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, e.fail("getmany", "", err)
	}
	out := make([][]byte, len(keys))
	now := e.cfg.now().UnixNano()
	err := e.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketName)
		for i, k := range keys {
			if v, ok := live(b.Get([]byte(k)), now); ok {
				// bbolt's memory is valid only inside the transaction.
				out[i] = bytes.Clone(v)
				if out[i] == nil {
					out[i] = []byte{}
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, e.fail("getmany", "", err)
	}
	return out, nil
}

// GetMany reads keys with one MGET.
func (r *Redis) GetMany(ctx context.Context, keys []string) ([][]byte, error) {
	if len(keys) > MaxGetMany {
		return nil, fmt.Errorf("state redis %s: getmany of %d keys (max %d): %w", r.addr, len(keys), MaxGetMany, ErrInvalid)
	}
	out := make([][]byte, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	full := make([]string, len(keys))
	for i, k := range keys {
		if err := r.begin("getmany", k); err != nil {
			return nil, err
		}
		full[i] = r.key(k)
	}
	vals, err := r.client.MGet(ctx, full...).Result()
	if err != nil {
		return nil, r.fail("getmany", keys[0], err)
	}
	r.succeeded()
	for i, v := range vals {
		if s, ok := v.(string); ok {
			out[i] = []byte(s)
		}
	}
	return out, nil
}
