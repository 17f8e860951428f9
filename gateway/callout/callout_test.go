package callout

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"postern/filters/state"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (f *fakeClock) now() time.Time { f.mu.Lock(); defer f.mu.Unlock(); return f.t }
func (f *fakeClock) add(d time.Duration) {
	f.mu.Lock()
	f.t = f.t.Add(d)
	f.mu.Unlock()
}

// A probe's answer is kept for its TTL; the case of the domain does not
// make a new probe.
func TestCacheKeepsAnswers(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)}
	var calls atomic.Int32
	answers := map[string]Verdict{"bob@inner.example": Deliverable, "nobody@inner.example": Undeliverable}
	c := New(func(ctx context.Context, addr string) Result {
		calls.Add(1)
		return Result{answers[addr], "said so"}
	}, Options{Now: clock.now, PositiveTTL: time.Hour, NegativeTTL: time.Minute})
	defer c.Close()
	ctx := context.Background()
	if r := c.Check(ctx, "bob@inner.example"); r.Verdict != Deliverable {
		t.Fatalf("bob: %+v", r)
	}
	if r := c.Check(ctx, "bob@INNER.example"); r.Verdict != Deliverable || calls.Load() != 1 {
		t.Fatalf("bob again: %+v after %d probes", r, calls.Load())
	}
	if r := c.Check(ctx, "nobody@inner.example"); r.Verdict != Undeliverable || r.Text != "said so" {
		t.Fatalf("nobody: %+v", r)
	}
	clock.add(2 * time.Minute) // the negative answer has expired, the positive not
	answers["nobody@inner.example"] = Deliverable
	if r := c.Check(ctx, "nobody@inner.example"); r.Verdict != Deliverable {
		t.Fatalf("nobody after the negative TTL: %+v", r)
	}
	c.Check(ctx, "bob@inner.example")
	if calls.Load() != 3 {
		t.Fatalf("%d probes, want 3", calls.Load())
	}
}

// A slow probe: the session is answered Unknown after Wait, the probe goes
// on, and its answer serves the next Check; concurrent Checks share one
// probe.
func TestSlowProbeGoesOnInBackground(t *testing.T) {
	release := make(chan struct{})
	var calls atomic.Int32
	c := New(func(ctx context.Context, addr string) Result {
		calls.Add(1)
		<-release
		return Result{Deliverable, "ok"}
	}, Options{Wait: 20 * time.Millisecond})
	defer c.Close()
	var wg sync.WaitGroup
	for i := 0; i < 5; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if r := c.Check(context.Background(), "bob@inner.example"); r.Verdict != Unknown {
				t.Errorf("during the probe: %+v", r)
			}
		}()
	}
	wg.Wait()
	close(release)
	deadline := time.Now().Add(5 * time.Second)
	for {
		r := c.Check(context.Background(), "bob@inner.example")
		if r.Verdict == Deliverable {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("probe answer never arrived: %+v", r)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if calls.Load() != 1 {
		t.Fatalf("%d probes, want 1", calls.Load())
	}
}

// A deliverable answer is refreshed in the background after
// PositiveRefresh (the session gets the known answer at once); while the
// next hop is down it stays deliverable until PositiveTTL, then becomes
// Unknown.
func TestPositiveRefresh(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)}
	var down atomic.Bool
	var calls atomic.Int32
	c := New(func(ctx context.Context, addr string) Result {
		calls.Add(1)
		if down.Load() {
			return Result{Unknown, "connection refused"}
		}
		return Result{Deliverable, "ok"}
	}, Options{Now: clock.now, PositiveRefresh: time.Hour, PositiveTTL: 24 * time.Hour, UnknownTTL: time.Second})
	defer c.Close()
	ctx := context.Background()
	c.Check(ctx, "bob@inner.example")
	down.Store(true)
	clock.add(2 * time.Hour) // due for a refresh
	if r := c.Check(ctx, "bob@inner.example"); r.Verdict != Deliverable {
		t.Fatalf("refresh due: %+v", r)
	}
	waitProbes(t, c, &calls, 2)
	clock.add(2 * time.Second)
	if r := c.Check(ctx, "bob@inner.example"); r.Verdict != Deliverable {
		t.Fatalf("next hop down, verified 2h ago: %+v", r)
	}
	waitProbes(t, c, &calls, 3)
	clock.add(23 * time.Hour) // past PositiveTTL since the verification
	if r := c.Check(ctx, "bob@inner.example"); r.Verdict != Unknown {
		t.Fatalf("next hop down, verified 25h ago: %+v", r)
	}
}

// waitProbes waits until n probes have run and none is in flight (its
// answer recorded).
func waitProbes(t *testing.T, c *Cache, calls *atomic.Int32, n int32) {
	t.Helper()
	busy := func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, e := range c.entries {
			if e.done != nil {
				return true
			}
		}
		return false
	}
	deadline := time.Now().Add(5 * time.Second)
	for calls.Load() < n || busy() {
		if time.Now().After(deadline) {
			t.Fatalf("%d probes, want %d", calls.Load(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// Close stops a probe in flight (its context ends) and returns once it has.
func TestCloseCancelsProbes(t *testing.T) {
	started := make(chan struct{})
	c := New(func(ctx context.Context, addr string) Result {
		close(started)
		<-ctx.Done()
		return Result{Unknown, ctx.Err().Error()}
	}, Options{Wait: time.Millisecond})
	c.Check(context.Background(), "bob@inner.example")
	<-started
	done := make(chan struct{})
	go func() { c.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end the probe")
	}
}

// The cache stays within MaxEntries.
func TestCacheBounded(t *testing.T) {
	c := New(func(ctx context.Context, addr string) Result { return Result{Undeliverable, "no"} }, Options{MaxEntries: 100})
	defer c.Close()
	for i := 0; i < 1000; i++ {
		c.Check(context.Background(), fmt.Sprintf("u%d@inner.example", i))
	}
	c.mu.Lock()
	n := len(c.entries)
	c.mu.Unlock()
	if n > 100 {
		t.Fatalf("%d entries, max 100", n)
	}
}

// With a shared Store, a second cache (another gateway of a cluster, or
// this one after a restart) uses the first one's answers without probing:
// deliverable and undeliverable alike; an address it has not seen is
// still probed.
func TestCacheSharesAnswersThroughTheStore(t *testing.T) {
	st, err := state.OpenEmbedded(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var calls atomic.Int32
	answers := map[string]Verdict{"bob@inner.example": Deliverable, "nobody@inner.example": Undeliverable, "carol@inner.example": Deliverable}
	probe := func(ctx context.Context, addr string) Result {
		calls.Add(1)
		return Result{answers[addr], "next hop said so"}
	}
	a, b := New(probe, Options{}), New(probe, Options{})
	defer a.Close()
	defer b.Close()
	a.SetStore(st)
	b.SetStore(st)
	ctx := context.Background()
	a.Check(ctx, "bob@inner.example")
	a.Check(ctx, "nobody@inner.example")
	if calls.Load() != 2 {
		t.Fatalf("%d probes, want 2", calls.Load())
	}
	if r := b.Check(ctx, "bob@INNER.example"); r.Verdict != Deliverable || r.Text != "next hop said so" {
		t.Fatalf("bob from the store: %+v", r)
	}
	if r := b.Check(ctx, "nobody@inner.example"); r.Verdict != Undeliverable {
		t.Fatalf("nobody from the store: %+v", r)
	}
	if calls.Load() != 2 {
		t.Fatalf("the second cache probed again: %d probes", calls.Load())
	}
	if r := b.Check(ctx, "carol@inner.example"); r.Verdict != Deliverable || calls.Load() != 3 {
		t.Fatalf("carol: %+v after %d probes", r, calls.Load())
	}
}
