package state

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisAddr is the real Redis the tests use; it runs on this machine and in
// CI (.ci/run starts it).
const redisAddr = "127.0.0.1:6379"

// needRedis skips the test when Redis is unreachable, unless CI is set: in
// CI a missing Redis is a failure, not a reason to skip the shared-state
// tests.
func needRedis(t *testing.T) {
	t.Helper()
	c, err := net.DialTimeout("tcp", redisAddr, time.Second)
	if err == nil {
		c.Close()
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("Redis at %s unreachable in CI: %v", redisAddr, err)
	}
	t.Skipf("Redis at %s unreachable: %v", redisAddr, err)
}

// testPrefix is a key prefix no other test (or test run) uses; the keys
// under it are deleted when the test ends.
func testPrefix(t *testing.T) string {
	t.Helper()
	prefix := fmt.Sprintf("postern-test:%s:%d:", strings.ReplaceAll(t.Name(), "/", "."), time.Now().UnixNano())
	t.Cleanup(func() {
		c := redis.NewClient(&redis.Options{Addr: redisAddr, Protocol: 2, DisableIdentity: true})
		defer c.Close()
		ctx := context.Background()
		iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if len(keys) > 0 {
			c.Del(ctx, keys...)
		}
	})
	return prefix
}

func openRedis(t *testing.T, opt RedisOptions) *Redis {
	t.Helper()
	s, err := OpenRedis(opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestRedisConformance(t *testing.T) {
	needRedis(t)
	checkGoroutines(t)
	s := openRedis(t, RedisOptions{Addr: redisAddr, Prefix: testPrefix(t)})
	if err := s.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	testStore(t, s)
}

// Two gateways (two Store values, two connection pools) on one Redis see one
// counter, one SetNX winner, and each other's writes; a third with another
// prefix sees none of it.
func TestRedisTwoGatewaysShareState(t *testing.T) {
	needRedis(t)
	checkGoroutines(t)
	ctx := context.Background()
	prefix := testPrefix(t)
	gw1 := openRedis(t, RedisOptions{Addr: redisAddr, Prefix: prefix})
	gw2 := openRedis(t, RedisOptions{Addr: redisAddr, Prefix: prefix})
	other := openRedis(t, RedisOptions{Addr: redisAddr, Prefix: testPrefix(t)})

	var wg sync.WaitGroup
	for _, gw := range []*Redis{gw1, gw2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				if _, err := gw.Incr(ctx, "rate:198.51.100.0/24", 1, time.Hour); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if n, err := gw1.Incr(ctx, "rate:198.51.100.0/24", 0, time.Hour); err != nil || n != 100 {
		t.Fatalf("gateway 1 sees %d, %v; want 100 from both gateways", n, err)
	}
	if ok, _ := gw1.SetNX(ctx, "grey:triplet", []byte("gw1"), time.Hour); !ok {
		t.Fatal("gateway 1 lost SetNX on a fresh key")
	}
	if ok, _ := gw2.SetNX(ctx, "grey:triplet", []byte("gw2"), time.Hour); ok {
		t.Fatal("gateway 2 won SetNX on a key gateway 1 holds")
	}
	if v, _, _ := gw2.Get(ctx, "grey:triplet"); string(v) != "gw1" {
		t.Fatalf("gateway 2 reads %q; want gw1", v)
	}
	if _, found, _ := other.Get(ctx, "grey:triplet"); found {
		t.Fatal("a store with another prefix sees the key")
	}
}

// A store pointed where no Redis listens answers ErrUnavailable quickly,
// fails fast while marked down, and logs once rather than per call.
func TestRedisDownIsUnavailable(t *testing.T) {
	checkGoroutines(t)
	// A port that was just free: nothing listens there.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := l.Addr().String()
	l.Close()

	var logBuf syncBuffer
	s := openRedis(t, RedisOptions{
		Addr:   deadAddr,
		Logger: slog.New(slog.NewTextHandler(&logBuf, nil)),
	})
	ctx := context.Background()
	start := time.Now()
	calls := []func() error{
		func() error { _, _, err := s.Get(ctx, "k"); return err },
		func() error { return s.Set(ctx, "k", []byte("v"), 0) },
		func() error { _, err := s.SetNX(ctx, "k", []byte("v"), 0); return err },
		func() error { _, err := s.Incr(ctx, "k", 1, time.Minute); return err },
		func() error { return s.Delete(ctx, "k") },
		func() error { return s.Ping(ctx) },
	}
	for i := 0; i < 20; i++ {
		for j, call := range calls {
			if err := call(); !errors.Is(err, ErrUnavailable) {
				t.Fatalf("call %d/%d with Redis down: %v; want ErrUnavailable", i, j, err)
			}
		}
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("120 calls with Redis down took %v; the store should fail fast", el)
	}
	if n := bytes.Count(logBuf.Bytes(), []byte("state store unavailable")); n != 1 {
		t.Fatalf("logged the outage %d times; want once per minute:\n%s", n, logBuf.Bytes())
	}
	if !bytes.Contains(logBuf.Bytes(), []byte("level=ERROR")) {
		t.Fatalf("the outage is not logged loudly:\n%s", logBuf.Bytes())
	}
}

// A Redis that accepts connections but never answers (a hung server, a
// black-holed route) is ErrUnavailable within the read timeout.
func TestRedisHungIsUnavailable(t *testing.T) {
	checkGoroutines(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns sync.WaitGroup
	done := make(chan struct{})
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() { defer conns.Done(); <-done; c.Close() }()
		}
	}()
	t.Cleanup(func() { l.Close(); close(done); conns.Wait() })
	s := openRedis(t, RedisOptions{Addr: l.Addr().String(), ReadTimeout: 200 * time.Millisecond})
	start := time.Now()
	if _, err := s.Incr(context.Background(), "k", 1, time.Minute); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Incr against a hung server: %v; want ErrUnavailable", err)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Fatalf("took %v", el)
	}
}

// After an outage the store recovers by itself once Redis answers again.
func TestRedisRecoversAfterOutage(t *testing.T) {
	needRedis(t)
	checkGoroutines(t)
	var logBuf syncBuffer
	s := openRedis(t, RedisOptions{
		Addr: redisAddr, Prefix: testPrefix(t), RetryAfter: 100 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logBuf, nil)),
	})
	// Simulate the outage the way fail() records one.
	s.fail("incr", "k", errors.New("dial tcp: connection refused"))
	if _, err := s.Incr(context.Background(), "k", 1, time.Minute); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("inside the fail-fast window: %v", err)
	}
	time.Sleep(150 * time.Millisecond)
	if n, err := s.Incr(context.Background(), "k", 1, time.Minute); err != nil || n != 1 {
		t.Fatalf("after the window: %d, %v", n, err)
	}
	if !bytes.Contains(logBuf.Bytes(), []byte("state store answers again")) {
		t.Fatalf("recovery not logged:\n%s", logBuf.Bytes())
	}
}

func TestRedisBadPrefixRefused(t *testing.T) {
	if _, err := OpenRedis(RedisOptions{Prefix: "has space"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("err = %v; want ErrInvalid", err)
	}
}
