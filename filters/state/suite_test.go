package state

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testStore is the one conformance suite: every Store implementation runs
// it and must behave the same.
func testStore(t *testing.T, s Store) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)

	t.Run("GetMany", func(t *testing.T) {
		if err := s.Set(ctx, "many:a", []byte("1"), 0); err != nil {
			t.Fatal(err)
		}
		if err := s.Set(ctx, "many:c", []byte("3"), time.Hour); err != nil {
			t.Fatal(err)
		}
		got, err := GetMany(ctx, s, []string{"many:a", "many:b", "many:c"})
		if err != nil || len(got) != 3 || string(got[0]) != "1" || got[1] != nil || string(got[2]) != "3" {
			t.Fatalf("GetMany = %q, %v; want [1 nil 3]", got, err)
		}
		if _, err := GetMany(ctx, s, make([]string, MaxGetMany+1)); !errors.Is(err, ErrInvalid) {
			t.Fatalf("GetMany of too many keys: %v; want ErrInvalid", err)
		}
		if _, err := GetMany(ctx, s, []string{"many:a", ""}); !errors.Is(err, ErrInvalid) {
			t.Fatalf("GetMany with an empty key: %v; want ErrInvalid", err)
		}
		if err := IncrMany(ctx, s, []string{"many:n1", "many:n2", "many:n1"}, 3); err != nil {
			t.Fatal(err)
		}
		if err := IncrMany(ctx, s, []string{"many:n2"}, -1); err != nil {
			t.Fatal(err)
		}
		got, err = GetMany(ctx, s, []string{"many:n1", "many:n2"})
		if err != nil || string(got[0]) != "6" || string(got[1]) != "2" {
			t.Fatalf("after IncrMany: %q, %v; want [6 2]", got, err)
		}
		s.Set(ctx, "many:x", []byte("abc"), 0)
		if err := IncrMany(ctx, s, []string{"many:n1", "many:x"}, 1); !errors.Is(err, ErrNotCounter) {
			t.Fatalf("IncrMany over a non-counter: %v; want ErrNotCounter", err)
		}
		for _, k := range []string{"many:a", "many:c", "many:n1", "many:n2", "many:x"} {
			s.Delete(ctx, k)
		}
	})

	t.Run("GetSetDelete", func(t *testing.T) {
		if _, found, err := s.Get(ctx, "absent"); err != nil || found {
			t.Fatalf("Get(absent) = found %v, err %v; want not found", found, err)
		}
		if err := s.Set(ctx, "k", []byte("v1"), 0); err != nil {
			t.Fatal(err)
		}
		if v, found, err := s.Get(ctx, "k"); err != nil || !found || string(v) != "v1" {
			t.Fatalf("Get(k) = %q, %v, %v; want v1", v, found, err)
		}
		if err := s.Set(ctx, "k", []byte("v2"), time.Hour); err != nil {
			t.Fatal(err)
		}
		if v, _, _ := s.Get(ctx, "k"); string(v) != "v2" {
			t.Fatalf("Get(k) after overwrite = %q; want v2", v)
		}
		if err := s.Set(ctx, "empty", nil, 0); err != nil {
			t.Fatal(err)
		}
		if v, found, err := s.Get(ctx, "empty"); err != nil || !found || len(v) != 0 {
			t.Fatalf("Get(empty) = %q, %v, %v; want empty value, found", v, found, err)
		}
		bin := []byte{0, 1, 2, 0xff, '\r', '\n'}
		if err := s.Set(ctx, "bin", bin, 0); err != nil {
			t.Fatal(err)
		}
		if v, _, _ := s.Get(ctx, "bin"); string(v) != string(bin) {
			t.Fatalf("binary value came back as %q", v)
		}
		for _, k := range []string{"k", "empty", "bin", "never-there"} {
			if err := s.Delete(ctx, k); err != nil {
				t.Fatalf("Delete(%s): %v", k, err)
			}
		}
		if _, found, _ := s.Get(ctx, "k"); found {
			t.Fatal("k still there after Delete")
		}
	})

	t.Run("InvalidInput", func(t *testing.T) {
		long := strings.Repeat("x", MaxKeyLen+1)
		for name, err := range map[string]error{
			"get empty key":  func() error { _, _, err := s.Get(ctx, ""); return err }(),
			"set long key":   s.Set(ctx, long, nil, 0),
			"set huge value": s.Set(ctx, "huge", make([]byte, MaxValueLen+1), 0),
			"setnx neg ttl":  func() error { _, err := s.SetNX(ctx, "neg", nil, -time.Second); return err }(),
			"incr empty key": func() error { _, err := s.Incr(ctx, "", 1, 0); return err }(),
		} {
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("%s: err = %v; want ErrInvalid", name, err)
			}
		}
	})

	t.Run("Expiry", func(t *testing.T) {
		if err := s.Set(ctx, "short", []byte("x"), 150*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		if err := s.Set(ctx, "long", []byte("y"), time.Hour); err != nil {
			t.Fatal(err)
		}
		if _, found, _ := s.Get(ctx, "short"); !found {
			t.Fatal("short-lived key gone at once")
		}
		waitGone(t, s, "short", 3*time.Second)
		if _, found, _ := s.Get(ctx, "long"); !found {
			t.Fatal("hour-long key gone too")
		}
		// An expired key is absent for SetNX and for Incr.
		if err := s.Set(ctx, "nx", []byte("old"), 100*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		if ok, err := s.SetNX(ctx, "nx", []byte("new"), 0); err != nil || ok {
			t.Fatalf("SetNX over a live key = %v, %v; want false", ok, err)
		}
		waitGone(t, s, "nx", 3*time.Second)
		if ok, err := s.SetNX(ctx, "nx", []byte("new"), time.Hour); err != nil || !ok {
			t.Fatalf("SetNX over an expired key = %v, %v; want true", ok, err)
		}
		if v, _, _ := s.Get(ctx, "nx"); string(v) != "new" {
			t.Fatalf("after SetNX: %q", v)
		}
		if err := s.Set(ctx, "ctr-exp", []byte("41"), 100*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		waitGone(t, s, "ctr-exp", 3*time.Second)
		if n, err := s.Incr(ctx, "ctr-exp", 1, time.Hour); err != nil || n != 1 {
			t.Fatalf("Incr on an expired counter = %d, %v; want 1", n, err)
		}
	})

	t.Run("IncrWindow", func(t *testing.T) {
		// The window is fixed: it starts at the counter's creation and
		// later increments do not extend it.
		const window = 400 * time.Millisecond
		start := time.Now()
		if n, err := s.Incr(ctx, "win", 5, window); err != nil || n != 5 {
			t.Fatalf("first Incr = %d, %v; want 5", n, err)
		}
		if v, _, _ := s.Get(ctx, "win"); string(v) != "5" {
			t.Fatalf("Get of a counter = %q; want its decimal text", v)
		}
		// Increments every 50 ms, far inside the window: had they
		// extended it, the counter would never start again at 1. The
		// test stops at the first new window, so a slow machine only
		// makes it longer, never wrong.
		for n := int64(0); n != 1; {
			if time.Since(start) > 10*time.Second {
				t.Fatalf("the counter kept counting for %v with increments every 50 ms; they must not extend its %v window", time.Since(start), window)
			}
			time.Sleep(50 * time.Millisecond)
			var err error
			if n, err = s.Incr(ctx, "win", 1, window); err != nil {
				t.Fatal(err)
			}
		}
		if el := time.Since(start); el < window {
			t.Fatalf("a new window began after %v, before the %v window ended", el, window)
		}
		// Negative deltas and no expiry.
		if n, _ := s.Incr(ctx, "forever", -3, 0); n != -3 {
			t.Fatalf("Incr(-3) = %d", n)
		}
		if n, _ := s.Incr(ctx, "forever", 10, time.Millisecond); n != 7 {
			t.Fatalf("Incr(10) = %d; want 7", n)
		}
		time.Sleep(20 * time.Millisecond)
		if _, found, _ := s.Get(ctx, "forever"); !found {
			t.Fatal("a counter created without ttl took the ttl of a later Incr")
		}
	})

	t.Run("IncrNotCounter", func(t *testing.T) {
		if err := s.Set(ctx, "text", []byte("hello"), 0); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Incr(ctx, "text", 1, 0); !errors.Is(err, ErrNotCounter) || errors.Is(err, ErrUnavailable) {
			t.Fatalf("Incr on text: %v; want ErrNotCounter", err)
		}
		if err := s.Set(ctx, "big", []byte(strconv.FormatInt(1<<62, 10)), 0); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Incr(ctx, "big", 1<<62, 0); !errors.Is(err, ErrNotCounter) {
			t.Fatalf("overflowing Incr: %v; want ErrNotCounter", err)
		}
		if v, _, _ := s.Get(ctx, "big"); string(v) != strconv.FormatInt(1<<62, 10) {
			t.Fatalf("a failed Incr changed the value to %q", v)
		}
	})

	t.Run("SetNXRace", func(t *testing.T) {
		for round := 0; round < 5; round++ {
			key := fmt.Sprintf("race-%d", round)
			const n = 32
			var wins atomic.Int32
			var winner atomic.Value
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := 0; i < n; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					ok, err := s.SetNX(ctx, key, []byte(strconv.Itoa(i)), time.Minute)
					if err != nil {
						t.Error(err)
						return
					}
					if ok {
						wins.Add(1)
						winner.Store(strconv.Itoa(i))
					}
				}()
			}
			close(start)
			wg.Wait()
			if w := wins.Load(); w != 1 {
				t.Fatalf("round %d: %d goroutines won SetNX; want exactly 1", round, w)
			}
			if v, _, _ := s.Get(ctx, key); string(v) != winner.Load().(string) {
				t.Fatalf("round %d: stored %q but the winner was %v", round, v, winner.Load())
			}
		}
	})

	t.Run("IncrRace", func(t *testing.T) {
		const goroutines, each = 16, 25
		var wg sync.WaitGroup
		seen := make([]atomic.Bool, goroutines*each*3+1)
		for i := 0; i < goroutines; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := 0; j < each; j++ {
					n, err := s.Incr(ctx, "race-ctr", 3, time.Minute)
					if err != nil {
						t.Error(err)
						return
					}
					if n%3 != 0 || n <= 0 || int(n) >= len(seen) || seen[n].Swap(true) {
						t.Errorf("Incr returned %d twice or out of range", n)
					}
				}
			}()
		}
		wg.Wait()
		v, _, err := s.Get(ctx, "race-ctr")
		if err != nil || string(v) != strconv.Itoa(goroutines*each*3) {
			t.Fatalf("total = %q, %v; want %d", v, err, goroutines*each*3)
		}
	})
}

// waitGone polls until key is absent, failing after limit.
func waitGone(t *testing.T, s Store, key string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		_, found, err := s.Get(context.Background(), key)
		if err != nil {
			t.Fatal(err)
		}
		if !found {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not expire within %v", key, limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkGoroutines fails the test if goroutines started during it are still
// running shortly after it ends.
func checkGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(3 * time.Second)
		for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > before {
			buf := make([]byte, 1<<16)
			t.Errorf("goroutines leaked: %d before, %d after\n%s", before, n, buf[:runtime.Stack(buf, true)])
		}
	})
}
