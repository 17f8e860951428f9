// Package statetest opens the real state stores for tests of stateful
// filters: an embedded store in the test's temporary directory and the real
// Redis on 127.0.0.1:6379 under a key prefix of its own, so that every
// filter's tests run against both implementations.
package statetest

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"postern/filters/state"
)

// RedisAddr is where the tests find Redis (it runs on the development
// machines and in CI).
const RedisAddr = "127.0.0.1:6379"

// Embedded opens an embedded store in t.TempDir, closed when the test ends.
func Embedded(t testing.TB) *state.Embedded {
	t.Helper()
	s, err := state.OpenEmbedded(filepath.Join(t.TempDir(), "state", "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// RedisPrefix returns a key prefix no other test uses; the keys under it
// are deleted when the test ends. It skips the test when Redis is
// unreachable, or fails it when the CI environment variable is set: in CI
// the shared-state tests must run.
func RedisPrefix(t testing.TB) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", RedisAddr, time.Second)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("Redis at %s unreachable in CI: %v", RedisAddr, err)
		}
		t.Skipf("Redis at %s unreachable: %v", RedisAddr, err)
	}
	c.Close()
	prefix := fmt.Sprintf("postern-test:%s:%d:", strings.ReplaceAll(t.Name(), "/", "."), time.Now().UnixNano())
	t.Cleanup(func() {
		rc := redis.NewClient(&redis.Options{Addr: RedisAddr, Protocol: 2, DisableIdentity: true})
		defer rc.Close()
		ctx := context.Background()
		var keys []string
		iter := rc.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if len(keys) > 0 {
			rc.Del(ctx, keys...)
		}
	})
	return prefix
}

// Redis opens a Redis store under prefix (from RedisPrefix; two stores with
// the same prefix are two gateways sharing one picture).
func Redis(t testing.TB, prefix string) *state.Redis {
	t.Helper()
	s, err := state.OpenRedis(state.RedisOptions{Addr: RedisAddr, Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// Each runs f as a subtest once per store implementation ("embedded",
// "redis"), each with a fresh, empty store.
func Each(t *testing.T, f func(t *testing.T, s state.Store)) {
	t.Run("embedded", func(t *testing.T) { f(t, Embedded(t)) })
	t.Run("redis", func(t *testing.T) { f(t, Redis(t, RedisPrefix(t))) })
}

// Unavailable returns a Redis store pointed at a port where nothing listens:
// every call fails with state.ErrUnavailable.
func Unavailable(t testing.TB) state.Store {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	s, err := state.OpenRedis(state.RedisOptions{Addr: addr, DialTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
