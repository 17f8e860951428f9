package state

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func openEmbedded(t *testing.T, opt ...EmbeddedOption) (*Embedded, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "state", "state.db")
	s, err := OpenEmbedded(path, opt...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func TestEmbeddedConformance(t *testing.T) {
	checkGoroutines(t)
	s, _ := openEmbedded(t, WithSweepInterval(50*time.Millisecond))
	testStore(t, s)
}

func TestEmbeddedConformanceUnbatched(t *testing.T) {
	checkGoroutines(t)
	s, _ := openEmbedded(t, WithBatchDelay(0))
	testStore(t, s)
}

func TestEmbeddedSurvivesRestart(t *testing.T) {
	checkGoroutines(t)
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := OpenEmbedded(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Set(ctx, "grey:192.0.2.0/24|a@b|c@d", []byte("seen"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Incr(ctx, "ctr", 7, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	s2, err := OpenEmbedded(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if v, found, err := s2.Get(ctx, "grey:192.0.2.0/24|a@b|c@d"); err != nil || !found || string(v) != "seen" {
		t.Fatalf("after restart: %q %v %v", v, found, err)
	}
	if n, err := s2.Incr(ctx, "ctr", 1, time.Hour); err != nil || n != 8 {
		t.Fatalf("counter after restart = %d, %v; want 8", n, err)
	}
}

func TestEmbeddedSecondOpenTimesOut(t *testing.T) {
	checkGoroutines(t)
	_, path := openEmbedded(t)
	start := time.Now()
	if s, err := OpenEmbedded(path, func(c *embeddedConfig) { c.openTimeout = 200 * time.Millisecond }); err == nil {
		s.Close()
		t.Fatal("a second open of a locked database succeeded")
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Fatalf("second open waited %v", el)
	}
}

// fakeClock is a settable clock for expiry tests.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func TestEmbeddedSweepIsBoundedAndResumes(t *testing.T) {
	checkGoroutines(t)
	ctx := context.Background()
	clock := &fakeClock{now: time.Unix(1_800_000_000, 0)}
	s, _ := openEmbedded(t, WithSweepInterval(0), WithSweepBatch(40), WithClock(clock.Now))
	for i := 0; i < 100; i++ {
		ttl := time.Minute
		if i%2 == 0 {
			ttl = time.Hour
		}
		if err := s.Set(ctx, "k"+string(rune('A'+i%26))+string(rune('a'+i/26)), []byte("v"), ttl); err != nil {
			t.Fatal(err)
		}
	}
	if n, _ := s.Sweep(); n != 0 {
		t.Fatalf("swept %d live keys", n)
	}
	clock.Advance(2 * time.Minute)
	total := 0
	for pass := 0; pass < 4; pass++ { // 100 keys, 40 per pass: 3 passes cover them
		n, err := s.Sweep()
		if err != nil {
			t.Fatal(err)
		}
		if n > 40 {
			t.Fatalf("one pass deleted %d keys; bound is 40", n)
		}
		total += n
	}
	if total != 50 {
		t.Fatalf("swept %d keys in total; want the 50 expired", total)
	}
	if n, _ := s.Len(); n != 50 {
		t.Fatalf("%d records left; want 50", n)
	}
}

func TestEmbeddedBackgroundSweepRunsAndStops(t *testing.T) {
	checkGoroutines(t)
	ctx := context.Background()
	s, _ := openEmbedded(t, WithSweepInterval(20*time.Millisecond))
	if err := s.Set(ctx, "gone-soon", []byte("x"), 10*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		if n, _ := s.Len(); n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("background sweep did not remove the expired key")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Close stops the sweep goroutine; checkGoroutines verifies it.
}

func TestEmbeddedClosedIsUnavailableAndLoggedOnce(t *testing.T) {
	checkGoroutines(t)
	var logBuf syncBuffer
	log := slog.New(slog.NewTextHandler(&logBuf, nil))
	s, _ := openEmbedded(t, WithLogger(log))
	s.Close()
	for i := 0; i < 10; i++ {
		if _, _, err := s.Get(context.Background(), "k"); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("Get on a closed store: %v; want ErrUnavailable", err)
		}
	}
	if n := bytes.Count(logBuf.Bytes(), []byte("state store unavailable")); n != 1 {
		t.Fatalf("logged %d times for 10 failures; want once a minute:\n%s", n, logBuf.Bytes())
	}
}

func TestEmbeddedHonoursContext(t *testing.T) {
	s, _ := openEmbedded(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Incr(ctx, "k", 1, 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("Incr with a cancelled context: %v", err)
	}
}

// syncBuffer is a bytes.Buffer safe for the logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.b.Bytes())
}
