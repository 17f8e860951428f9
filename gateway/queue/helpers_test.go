package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"postern/gateway/delivery"
)

// fakeClock is the queue's injected clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// deliveryCall is one Deliver call a recorder saw.
type deliveryCall struct {
	env   delivery.Envelope
	rcpts []delivery.Recipient
	body  []byte
}

// recorder is a real Deliverer written for the tests: it reads the whole
// message, records the call, and answers what decide says (success when
// decide is nil). It also measures how many calls run at once, overall
// and per domain.
type recorder struct {
	mu        sync.Mutex
	calls     []deliveryCall
	decide    func(env *delivery.Envelope, r delivery.Recipient) delivery.Result
	hold      chan struct{} // when set, each call waits for a value (or ctx)
	active    int
	maxActive int
	perDomain map[string]int
	maxDomain map[string]int
}

func (rec *recorder) Deliver(ctx context.Context, env *delivery.Envelope, rcpts []delivery.Recipient, msg delivery.Message) []delivery.Result {
	body, err := io.ReadAll(io.NewSectionReader(msg, 0, msg.Size()))
	if err != nil {
		panic(err)
	}
	domain := recipientDomain(rcpts[0].Addr)
	rec.mu.Lock()
	if rec.perDomain == nil {
		rec.perDomain, rec.maxDomain = map[string]int{}, map[string]int{}
	}
	rec.active++
	rec.maxActive = max(rec.maxActive, rec.active)
	rec.perDomain[domain]++
	rec.maxDomain[domain] = max(rec.maxDomain[domain], rec.perDomain[domain])
	hold, decide := rec.hold, rec.decide
	rec.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
		}
	}
	out := make([]delivery.Result, len(rcpts))
	for i, r := range rcpts {
		if ctx.Err() != nil {
			out[i] = delivery.Result{Err: ctx.Err(), Diagnostic: "x-test; shutting down"}
			continue
		}
		if decide != nil {
			out[i] = decide(env, r)
		}
	}
	rec.mu.Lock()
	rec.active--
	rec.perDomain[domain]--
	rec.calls = append(rec.calls, deliveryCall{env: *env, rcpts: rcpts, body: body})
	rec.mu.Unlock()
	return out
}

func (rec *recorder) snapshot() []deliveryCall {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]deliveryCall(nil), rec.calls...)
}

func (rec *recorder) setDecide(f func(env *delivery.Envelope, r delivery.Recipient) delivery.Result) {
	rec.mu.Lock()
	rec.decide = f
	rec.mu.Unlock()
}

// dsnCalls are the calls that carried a DSN (null sender).
func (rec *recorder) dsnCalls() []deliveryCall {
	var out []deliveryCall
	for _, c := range rec.snapshot() {
		if c.env.From == "" {
			out = append(out, c)
		}
	}
	return out
}

func tempFail(msg string) delivery.Result {
	return delivery.Result{Err: errors.New(msg), Status: "4.2.0", Diagnostic: "smtp; 451 4.2.0 " + msg, RemoteMTA: "dns; mx.example.org"}
}

func permFail(msg string) delivery.Result {
	return delivery.Result{Err: errors.New(msg), Permanent: true, Status: "5.1.1", Diagnostic: "smtp; 550 5.1.1 " + msg, RemoteMTA: "dns; mx.example.org"}
}

// harness is a queue on a real spool in a temporary directory, with
// recording deliverers and a fake clock.
type harness struct {
	t      *testing.T
	dir    string
	clock  *fakeClock
	local  *recorder
	remote *recorder
	q      *Queue
	cancel context.CancelFunc
	done   chan error
}

func newHarness(t *testing.T, configure func(*Options)) *harness {
	t.Helper()
	h := &harness{t: t, dir: t.TempDir(), clock: newFakeClock(), local: &recorder{}, remote: &recorder{}}
	opt := Options{
		Dir:      h.dir,
		Hostname: "mx.test.example",
		Local:    h.local,
		Remote:   h.remote,
		Now:      h.clock.Now,
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if testing.Verbose() {
		opt.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if configure != nil {
		configure(&opt)
	}
	q, err := Open(opt)
	if err != nil {
		t.Fatal(err)
	}
	q.pollInterval = 20 * time.Millisecond
	h.q = q
	t.Cleanup(func() {
		h.stop()
		q.Close()
	})
	return h
}

func (h *harness) start() {
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.done = make(chan error, 1)
	go func() { h.done <- h.q.Run(ctx) }()
}

func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		h.t.Error("Run did not return after cancel")
	}
	h.cancel = nil
}

func (h *harness) enqueue(env delivery.Envelope, body string) string {
	h.t.Helper()
	id, err := h.q.Enqueue(context.Background(), env, strings.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	return id
}

// advance moves the clock and kicks the scheduler.
func (h *harness) advance(d time.Duration) {
	h.clock.Advance(d)
	h.q.Kick()
}

func (h *harness) envelope(id string) *delivery.Envelope {
	h.t.Helper()
	env, err := Show(h.dir, id)
	if err != nil {
		h.t.Fatalf("Show %s: %v", id, err)
	}
	return env
}

func (h *harness) gone(id string) bool {
	_, err := Show(h.dir, id)
	return errors.Is(err, ErrNotFound)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	// Generous: the machine is shared; a passing test never waits this long.
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// checkNoGoroutineLeak fails the test if goroutines started during it are
// still running shortly after it ends.
func checkNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				n := runtime.Stack(buf, true)
				t.Errorf("goroutine leak: %d before, %d after\n%s", before, runtime.NumGoroutine(), buf[:n])
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

const testMessage = "From: Alice <alice@sender.example>\r\nTo: bob@example.org\r\nSubject: hello\r\nMessage-ID: <m1@sender.example>\r\n\r\nHello Bob.\r\n"

func env(from string, rcpts ...delivery.Recipient) delivery.Envelope {
	return delivery.Envelope{From: from, Rcpts: rcpts, ClientIP: "192.0.2.1", ClientHELO: "client.example"}
}

func local(addr string) delivery.Recipient  { return delivery.Recipient{Addr: addr, Local: true} }
func remote(addr string) delivery.Recipient { return delivery.Recipient{Addr: addr} }

func countFiles(t *testing.T, dir string) int {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

func mustContain(t *testing.T, haystack []byte, needle string) {
	t.Helper()
	if !bytes.Contains(haystack, []byte(needle)) {
		t.Errorf("missing %q in:\n%s", needle, haystack)
	}
}

var _ = fmt.Sprintf
