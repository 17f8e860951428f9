package queue

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"postern/gateway/delivery"
)

func TestEnqueueWritesDurableFilesAndShowReadsThem(t *testing.T) {
	h := newHarness(t, nil)
	e := env("alice@sender.example", local("bob@example.org"), remote("carol@remote.example"))
	e.EnvID = "env-1"
	e.Ret = "HDRS"
	id := h.enqueue(e, testMessage)
	if !validID(id) {
		t.Fatalf("bad id %q", id)
	}
	got, err := os.ReadFile(filepath.Join(h.dir, "spool", id+".msg"))
	if err != nil || string(got) != testMessage {
		t.Fatalf("message file: %q, %v", got, err)
	}
	if n := countFiles(t, filepath.Join(h.dir, "tmp")); n != 0 {
		t.Errorf("%d files left in tmp/", n)
	}
	shown := h.envelope(id)
	if shown.ID != id || shown.From != "alice@sender.example" || shown.EnvID != "env-1" || shown.Ret != "HDRS" || len(shown.Rcpts) != 2 {
		t.Fatalf("Show: %+v", shown)
	}
	if !shown.Received.Equal(h.clock.Now()) {
		t.Errorf("Received %v, want %v", shown.Received, h.clock.Now())
	}
	if !shown.Rcpts[0].Local || shown.Rcpts[1].Local || shown.Rcpts[0].Status != delivery.StatusPending {
		t.Errorf("recipients: %+v", shown.Rcpts)
	}
}

func TestEnqueueRefusesBadEnvelopes(t *testing.T) {
	h := newHarness(t, nil)
	for name, e := range map[string]delivery.Envelope{
		"no recipients":  env("a@b.example"),
		"CRLF in rcpt":   env("a@b.example", remote("x@y.example\r\nRCPT TO:<z@z>")),
		"empty rcpt":     env("a@b.example", remote("")),
		"NUL in sender":  env("a\x00@b.example", remote("x@y.example")),
		"newline in ID":  {From: "a@b.example", EnvID: "x\ny", Rcpts: []delivery.Recipient{remote("x@y.example")}},
		"invalid UTF-8":  env("a\xff@b.example", remote("x@y.example")),
		"too long rcpt":  env("a@b.example", remote(strings.Repeat("x", 2000)+"@y.example")),
		"control in rcp": env("a@b.example", remote("x\x07@y.example")),
	} {
		_, err := h.q.Enqueue(context.Background(), e, strings.NewReader(testMessage))
		if !errors.Is(err, ErrBadEnvelope) {
			t.Errorf("%s: err %v, want ErrBadEnvelope", name, err)
		}
	}
	if n := countFiles(t, filepath.Join(h.dir, "spool")); n != 0 {
		t.Errorf("%d files in spool after refused enqueues", n)
	}
}

// failingReader fails after some bytes, like a client connection that
// drops in the middle of DATA.
type failingReader struct{ n int }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, errors.New("connection reset")
	}
	n := min(len(p), r.n)
	for i := range p[:n] {
		p[i] = 'x'
	}
	r.n -= n
	return n, nil
}

func TestEnqueueReaderErrorLeavesNothing(t *testing.T) {
	h := newHarness(t, nil)
	_, err := h.q.Enqueue(context.Background(), env("a@b.example", remote("x@y.example")), &failingReader{n: 100000})
	if err == nil {
		t.Fatal("Enqueue succeeded with a failing reader")
	}
	if n := countFiles(t, filepath.Join(h.dir, "spool")) + countFiles(t, filepath.Join(h.dir, "tmp")); n != 0 {
		t.Errorf("%d files left after a failed enqueue", n)
	}
}

func TestDeliveryGroupsLocalAndRemoteByDomain(t *testing.T) {
	checkNoGoroutineLeak(t)
	h := newHarness(t, nil)
	h.start()
	id := h.enqueue(env("alice@sender.example",
		local("bob@example.org"),
		remote("x1@Remote.Example"),
		local("dave@example.org"),
		remote("x2@remote.example"),
		remote("y1@other.example"),
	), testMessage)
	waitFor(t, "message removed", func() bool { return h.gone(id) })

	lc := h.local.snapshot()
	if len(lc) != 1 || len(lc[0].rcpts) != 2 || lc[0].rcpts[0].Addr != "bob@example.org" || lc[0].rcpts[1].Addr != "dave@example.org" {
		t.Fatalf("local calls: %+v", lc)
	}
	if lc[0].rcpts[0].DeliveryKey != id+".0" || lc[0].rcpts[1].DeliveryKey != id+".2" {
		t.Errorf("delivery keys %q %q", lc[0].rcpts[0].DeliveryKey, lc[0].rcpts[1].DeliveryKey)
	}
	if string(lc[0].body) != testMessage || lc[0].env.ID != id || lc[0].env.From != "alice@sender.example" {
		t.Errorf("local call saw env %+v body %q", lc[0].env, lc[0].body)
	}
	rc := h.remote.snapshot()
	byDomain := map[string][]string{}
	for _, c := range rc {
		d := recipientDomain(c.rcpts[0].Addr)
		if _, dup := byDomain[d]; dup {
			t.Errorf("two calls for domain %s", d)
		}
		for _, r := range c.rcpts {
			byDomain[d] = append(byDomain[d], r.Addr)
		}
	}
	want := map[string][]string{"remote.example": {"x1@Remote.Example", "x2@remote.example"}, "other.example": {"y1@other.example"}}
	if len(byDomain) != 2 || !slices.Equal(byDomain["remote.example"], want["remote.example"]) || !slices.Equal(byDomain["other.example"], want["other.example"]) {
		t.Errorf("remote calls by domain: %v", byDomain)
	}
	// The envelope goes first, the message file right after it.
	waitFor(t, "spool empty after delivery", func() bool { return countFiles(t, filepath.Join(h.dir, "spool")) == 0 })
}

func TestRetryScheduleThenSuccess(t *testing.T) {
	h := newHarness(t, nil)
	var mu sync.Mutex
	failures := 3
	h.remote.setDecide(func(_ *delivery.Envelope, r delivery.Recipient) delivery.Result {
		mu.Lock()
		defer mu.Unlock()
		if failures > 0 {
			failures--
			return tempFail("try later")
		}
		return delivery.Result{}
	})
	h.start()
	start := h.clock.Now()
	id := h.enqueue(env("alice@sender.example", remote("bob@remote.example")), testMessage)

	for attempt := 1; attempt <= 3; attempt++ {
		waitFor(t, "attempt recorded", func() bool { return h.envelope(id).Rcpts[0].Attempts == attempt })
		r := h.envelope(id).Rcpts[0]
		gap := r.NextAttempt.Sub(h.clock.Now())
		want := DefaultSchedule[attempt-1]
		if gap < want*9/10 || gap > want*11/10 {
			t.Errorf("attempt %d: next in %v, want %v ±10%%", attempt, gap, want)
		}
		if r.Status != delivery.StatusPending || !strings.Contains(r.LastResult, "451 4.2.0 try later") || r.RemoteMTA != "dns; mx.example.org" {
			t.Errorf("attempt %d: recipient %+v", attempt, r)
		}
		// Not due yet: nothing happens.
		h.advance(gap / 2)
		time.Sleep(60 * time.Millisecond)
		if got := h.envelope(id).Rcpts[0].Attempts; got != attempt {
			t.Fatalf("retried before due: attempts %d", got)
		}
		h.advance(gap)
	}
	waitFor(t, "delivered and removed", func() bool { return h.gone(id) })
	if n := len(h.remote.snapshot()); n != 4 {
		t.Errorf("%d delivery calls, want 4", n)
	}
	if len(h.remote.dsnCalls())+len(h.local.dsnCalls()) != 0 {
		t.Error("a DSN was sent for a message delivered within the delay-notice time")
	}
	_ = start
}

func TestRetryGapFollowsScheduleAndCaps(t *testing.T) {
	q := &Queue{opt: Options{Schedule: DefaultSchedule}}
	want := []time.Duration{5, 5, 5, 15, 30, 60, 120, 240, 240, 240}
	for i, w := range want {
		w *= time.Minute
		for range 50 {
			g := q.retryGap(i + 1)
			if g < w*9/10 || g > w*11/10 {
				t.Fatalf("gap after attempt %d = %v, want %v ±10%%", i+1, g, w)
			}
		}
	}
}

func TestPerDomainAndOverallConcurrencyLimits(t *testing.T) {
	checkNoGoroutineLeak(t)
	h := newHarness(t, func(o *Options) { o.PerDomain = 2; o.Concurrency = 6 })
	hold := make(chan struct{})
	h.remote.hold = hold
	h.local.hold = hold
	h.start()
	var ids []string
	for i := range 8 {
		ids = append(ids, h.enqueue(env("a@s.example", remote("r@busy.example")), testMessage))
		_ = i
	}
	ids = append(ids, h.enqueue(env("a@s.example", remote("r@quiet.example")), testMessage))
	// busy.example: 2 calls at most; quiet.example still gets its turn
	// (its message is started when a slot is free).
	waitFor(t, "two busy.example deliveries and one quiet.example", func() bool {
		h.remote.mu.Lock()
		defer h.remote.mu.Unlock()
		return h.remote.perDomain["busy.example"] == 2 && h.remote.perDomain["quiet.example"] == 1
	})
	time.Sleep(100 * time.Millisecond)
	h.remote.mu.Lock()
	if h.remote.maxDomain["busy.example"] != 2 {
		t.Errorf("max concurrent busy.example deliveries %d, want 2", h.remote.maxDomain["busy.example"])
	}
	h.remote.mu.Unlock()
	h.q.mu.Lock()
	inFlight := 0
	for _, e := range h.q.index.entries {
		if e.state == stateInFlight {
			inFlight++
		}
	}
	h.q.mu.Unlock()
	if inFlight > 6 {
		t.Errorf("%d messages in flight, Concurrency is 6", inFlight)
	}
	close(hold)
	for _, id := range ids {
		waitFor(t, "all delivered", func() bool { return h.gone(id) })
	}
	h.remote.mu.Lock()
	defer h.remote.mu.Unlock()
	if h.remote.maxActive > 6 {
		t.Errorf("max concurrent deliveries %d, want ≤ 6", h.remote.maxActive)
	}
}

func TestRunShutdownCancelsDeliveriesAfterDrain(t *testing.T) {
	checkNoGoroutineLeak(t)
	h := newHarness(t, func(o *Options) { o.DrainTimeout = 100 * time.Millisecond })
	h.remote.hold = make(chan struct{}) // never released: only ctx ends it
	h.start()
	id := h.enqueue(env("a@s.example", remote("r@slow.example")), testMessage)
	waitFor(t, "delivery started", func() bool {
		h.remote.mu.Lock()
		defer h.remote.mu.Unlock()
		return h.remote.active == 1
	})
	began := time.Now()
	h.stop()
	if d := time.Since(began); d > 3*time.Second {
		t.Errorf("shutdown took %v", d)
	}
	// The cancelled delivery is a temporary failure, kept for later.
	r := h.envelope(id).Rcpts[0]
	if r.Status != delivery.StatusPending || r.Attempts != 1 {
		t.Errorf("after shutdown: %+v", r)
	}
}

func TestStartupFindsQueuedMessages(t *testing.T) {
	h := newHarness(t, nil)
	id1 := h.enqueue(env("a@s.example", remote("r@x.example")), testMessage)
	id2 := h.enqueue(env("a@s.example", local("u@here.example")), testMessage)
	h.q.Close()
	// A new queue on the same spool, as after a restart.
	q2, err := Open(Options{Dir: h.dir, Local: h.local, Remote: h.remote, Now: h.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	h.q = q2
	h.start()
	waitFor(t, "both delivered", func() bool { return h.gone(id1) && h.gone(id2) })
	var got []string
	for _, c := range append(h.remote.snapshot(), h.local.snapshot()...) {
		got = append(got, c.env.ID)
	}
	sort.Strings(got)
	want := []string{id1, id2}
	sort.Strings(want)
	if !slices.Equal(got, want) {
		t.Errorf("delivered %v, want %v", got, want)
	}
}

func TestDelivererPanicAndShortAnswerAreTemporary(t *testing.T) {
	h := newHarness(t, func(o *Options) {
		o.Remote = delivery.DelivererFunc(func(context.Context, *delivery.Envelope, []delivery.Recipient, delivery.Message) []delivery.Result {
			panic("boom")
		})
		o.Local = delivery.DelivererFunc(func(context.Context, *delivery.Envelope, []delivery.Recipient, delivery.Message) []delivery.Result {
			return nil
		})
	})
	h.start()
	id := h.enqueue(env("a@s.example", remote("r@x.example"), local("u@here.example")), testMessage)
	waitFor(t, "both attempted", func() bool {
		e := h.envelope(id)
		return e.Rcpts[0].Attempts == 1 && e.Rcpts[1].Attempts == 1
	})
	e := h.envelope(id)
	for _, r := range e.Rcpts {
		if r.Status != delivery.StatusPending || r.NextAttempt.IsZero() {
			t.Errorf("%s: %+v", r.Addr, r)
		}
	}
	if !strings.Contains(e.Rcpts[0].LastResult, "boom") || !strings.Contains(e.Rcpts[1].LastResult, "0 results for 1") {
		t.Errorf("diagnostics %q / %q", e.Rcpts[0].LastResult, e.Rcpts[1].LastResult)
	}
}

func TestOneRunnerPerSpool(t *testing.T) {
	h := newHarness(t, nil)
	h.start()
	waitFor(t, "runner started", func() bool {
		_, err := os.Stat(filepath.Join(h.dir, "run.lock"))
		return err == nil
	})
	time.Sleep(50 * time.Millisecond)
	q2, err := Open(Options{Dir: h.dir})
	if err != nil {
		t.Fatal(err)
	}
	defer q2.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := q2.Run(ctx); !errors.Is(err, ErrAlreadyRunning) {
		t.Fatalf("second Run: %v, want ErrAlreadyRunning", err)
	}
	h.stop()
	// After the first stops, a runner may start.
	ctx2, cancel2 := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- q2.Run(ctx2) }()
	time.Sleep(50 * time.Millisecond)
	cancel2()
	if err := <-done; err != nil {
		t.Fatalf("Run after the first stopped: %v", err)
	}
}
