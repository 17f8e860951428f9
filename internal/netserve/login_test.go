package netserve

import (
	"context"
	"testing"
	"time"
)

func TestLoginFailuresCountToMax(t *testing.T) {
	f := LoginFailures{Max: 3}
	for i := 1; i <= 3; i++ {
		tooMany := f.Fail(context.Background())
		if tooMany != (i == 3) || f.TooMany() != tooMany || f.Count() != i {
			t.Fatalf("failure %d: Fail %v, TooMany %v, Count %d", i, tooMany, f.TooMany(), f.Count())
		}
	}
	// Without Max a session is never cut off here.
	var unbounded LoginFailures
	for i := 0; i < 100; i++ {
		if unbounded.Fail(context.Background()) {
			t.Fatalf("failure %d ends a session without Max", i+1)
		}
	}
}

// Each failure is answered after Delay; a shutdown (ctx) cuts the pause.
func TestLoginFailuresDelay(t *testing.T) {
	f := LoginFailures{Max: 5, Delay: 150 * time.Millisecond}
	start := time.Now()
	f.Fail(context.Background())
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Fatalf("paused %v, want at least the delay", d)
	}

	f.Delay = time.Minute
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start = time.Now()
	f.Fail(ctx)
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("paused %v after ctx ended", d)
	}
	if f.Count() != 2 {
		t.Fatalf("Count %d, want 2", f.Count())
	}

	f.Delay = -time.Second // none
	start = time.Now()
	f.Fail(context.Background())
	if d := time.Since(start); d > time.Second {
		t.Fatalf("negative delay paused %v", d)
	}
}
