// Package state is the shared state of the SMTP-time filters: greylist
// triplets, rate counters, temporary blocks, reputation. One small interface,
// two implementations with the same semantics: an embedded store (the
// default: one machine, survives restarts) and Redis (several gateways share
// one picture). The same test suite runs against both.
//
// CONTRACT FILE: filters code against Store. Add; do not change without
// telling every user.
package state

import (
	"context"
	"errors"
	"time"
)

// ErrUnavailable wraps every error that means "the store cannot answer now"
// (Redis down, timeout). Filters turn it into their configured degraded
// behaviour (tempfail or no opinion), never into accept-all or reject-all.
var ErrUnavailable = errors.New("state: store unavailable")

// ErrNotCounter is returned (wrapped) by Incr when the key holds a value that
// is not a decimal integer, or when the sum would overflow an int64. It is a
// programming or configuration error (two filters sharing one key), not
// unavailability.
var ErrNotCounter = errors.New("state: value is not a counter")

// ErrInvalid is returned (wrapped) for a key that is empty or longer than
// MaxKeyLen, or a value longer than MaxValueLen. Both implementations refuse
// the same inputs so that a filter behaves the same on either.
var ErrInvalid = errors.New("state: invalid key or value")

// Bounds on what a Store accepts.
const (
	MaxKeyLen   = 1024
	MaxValueLen = 64 * 1024
)

// Store is a key-value store with expiry and atomic counters. Keys are short
// printable strings ("grey:1.2.3.0/24|a@b|c@d"); values are small.
type Store interface {
	// Get returns the value under key; found is false when absent or expired.
	Get(ctx context.Context, key string) (value []byte, found bool, err error)
	// Set stores value under key; ttl 0 means no expiry.
	Set(ctx context.Context, key string, value []byte, ttl time.Duration) error
	// SetNX stores value only if key is absent (or expired) and reports
	// whether it did. Atomic across every user of the store.
	SetNX(ctx context.Context, key string, value []byte, ttl time.Duration) (bool, error)
	// Incr adds delta to the integer counter under key and returns the new
	// value. A counter that did not exist starts at 0 and expires ttl after
	// its creation (a fixed window); later increments keep that expiry.
	// Atomic across every user of the store. The counter is stored as its
	// decimal text, so Get of a counter returns e.g. "42".
	Incr(ctx context.Context, key string, delta int64, ttl time.Duration) (int64, error)
	// Delete removes key (no error if absent).
	Delete(ctx context.Context, key string) error
	// Close releases the store.
	Close() error
}
