package state

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"strconv"

	"github.com/redis/go-redis/v9"

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

// MultiIncrementer is a Store that adds to many counters in one round
// trip: one bbolt transaction (all or nothing), one Redis MULTI/EXEC.
// A counter it creates never expires; one that exists keeps its expiry.
type MultiIncrementer interface {
	IncrMany(ctx context.Context, keys []string, delta int64) error
}

// IncrMany adds delta to the counters under keys, in one round trip when
// s can, else key by key (taking back what it added when one fails).
func IncrMany(ctx context.Context, s Store, keys []string, delta int64) error {
	if len(keys) > MaxGetMany {
		return fmt.Errorf("state: incrmany of %d keys (max %d): %w", len(keys), MaxGetMany, ErrInvalid)
	}
	if m, ok := s.(MultiIncrementer); ok {
		return m.IncrMany(ctx, keys, delta)
	}
	for i, k := range keys {
		if _, err := s.Incr(ctx, k, delta, 0); err != nil {
			undo := context.WithoutCancel(ctx)
			for _, done := range keys[:i] {
				s.Incr(undo, done, -delta, 0)
			}
			return err
		}
	}
	return nil
}

// IncrMany adds delta to every counter under keys in one transaction.
func (e *Embedded) IncrMany(ctx context.Context, keys []string, delta int64) error {
	if len(keys) > MaxGetMany {
		return fmt.Errorf("state %s: incrmany of %d keys (max %d): %w", e.path, len(keys), MaxGetMany, ErrInvalid)
	}
	for _, k := range keys {
		if err := checkKey(k); err != nil {
			return e.fail("incrmany", k, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return e.fail("incrmany", "", err)
	}
	var bad string
	err := e.update(func(b *bolt.Bucket) error {
		now := e.cfg.now()
		for _, key := range keys {
			raw := b.Get([]byte(key))
			cur, expires := int64(0), int64(0)
			if v, ok := live(raw, now.UnixNano()); ok {
				n, err := strconv.ParseInt(string(v), 10, 64)
				if err != nil {
					bad = key
					return fmt.Errorf("%q: %w", v, ErrNotCounter)
				}
				cur = n
				expires, _, _ = decodeRecord(raw)
			}
			if (delta > 0 && cur > math.MaxInt64-delta) || (delta < 0 && cur < math.MinInt64-delta) {
				bad = key
				return fmt.Errorf("%d%+d overflows: %w", cur, delta, ErrNotCounter)
			}
			if err := b.Put([]byte(key), encodeRecord(expires, strconv.AppendInt(nil, cur+delta, 10))); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return e.fail("incrmany", bad, err)
	}
	return nil
}

// IncrMany adds delta to every counter under keys with INCRBY in one
// MULTI/EXEC. (A key that holds no counter fails alone: Redis does not
// roll a transaction back.)
func (r *Redis) IncrMany(ctx context.Context, keys []string, delta int64) error {
	if len(keys) > MaxGetMany {
		return fmt.Errorf("state redis %s: incrmany of %d keys (max %d): %w", r.addr, len(keys), MaxGetMany, ErrInvalid)
	}
	if len(keys) == 0 {
		return nil
	}
	for _, k := range keys {
		if err := r.begin("incrmany", k); err != nil {
			return err
		}
	}
	_, err := r.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range keys {
			p.IncrBy(ctx, r.key(k), delta)
		}
		return nil
	})
	if err != nil {
		return r.fail("incrmany", keys[0], err)
	}
	r.succeeded()
	return nil
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
