package queue

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"postern/gateway/delivery"
)

// The admin functions are called on the spool directory, as the CLI in
// another process does, while Run is active; the clock is not moved, so
// only the admin action can make anything happen.

func deferredMessage(t *testing.T, h *harness, rcpts ...delivery.Recipient) string {
	t.Helper()
	id := h.enqueue(env("alice@sender.example", rcpts...), testMessage)
	waitFor(t, "first attempt deferred", func() bool { return h.envelope(id).Rcpts[0].Attempts == 1 })
	return id
}

func TestAdminRetryWhileRunning(t *testing.T) {
	checkNoGoroutineLeak(t)
	h := newHarness(t, nil)
	h.remote.setDecide(alwaysTempFail)
	h.start()
	id1 := deferredMessage(t, h, remote("a@one.example"))
	id2 := deferredMessage(t, h, remote("b@two.example"))
	if err := Retry(h.dir, id1); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	waitFor(t, "retried", func() bool { return h.envelope(id1).Rcpts[0].Attempts == 2 })
	if d := time.Since(began); d > 2*time.Second {
		t.Errorf("the running queue noticed the retry after %v", d)
	}
	if got := h.envelope(id2).Rcpts[0].Attempts; got != 1 {
		t.Errorf("message %s retried too: attempts %d", id2, got)
	}
	// "" retries every message.
	if err := Retry(h.dir, ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "all retried", func() bool {
		return h.envelope(id1).Rcpts[0].Attempts == 3 && h.envelope(id2).Rcpts[0].Attempts == 2
	})
}

func TestAdminDeleteWhileRunning(t *testing.T) {
	h := newHarness(t, nil)
	h.remote.setDecide(alwaysTempFail)
	h.start()
	id := deferredMessage(t, h, remote("a@one.example"))
	if err := Delete(h.dir, id); err != nil {
		t.Fatal(err)
	}
	if !h.gone(id) {
		t.Fatal("still there after Delete")
	}
	for _, f := range []string{id + ".msg", id + ".env"} {
		if _, err := os.Stat(filepath.Join(h.dir, "spool", f)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: %v", f, err)
		}
	}
	if err := Delete(h.dir, id); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Delete: %v, want ErrNotFound", err)
	}
	h.advance(time.Hour)
	time.Sleep(100 * time.Millisecond)
	if len(h.remote.snapshot()) != 1 || len(h.remote.dsnCalls()) != 0 {
		t.Errorf("deleted message was delivered or bounced: %d calls", len(h.remote.snapshot()))
	}
}

func TestAdminBounceWhileRunning(t *testing.T) {
	h := newHarness(t, nil)
	h.remote.setDecide(alwaysTempFail)
	h.start()
	id := deferredMessage(t, h, remote("a@one.example"), remote("b@two.example"))
	if err := Bounce(h.dir, id); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "bounced and removed", func() bool { return h.gone(id) && len(h.remote.dsnCalls()) == 1 })
	d := parseDSN(t, h.remote.dsnCalls()[0].body)
	checkDSNHeader(t, d, "alice@sender.example", "Undelivered Mail Returned to Sender")
	if len(d.perRcpt) != 2 {
		t.Fatalf("bounce covers %d recipients, want 2", len(d.perRcpt))
	}
	r := d.rcpt(t, "a@one.example")
	if r.Get("Action") != "failed" || r.Get("Status") != "5.0.0" || r.Get("Diagnostic-Code") != "x-postern; delivery cancelled by the administrator" {
		t.Errorf("bounced recipient: %v", r)
	}
	if !strings.Contains(d.human, "<a@one.example>: delivery cancelled by the administrator") {
		t.Errorf("human part:\n%s", d.human)
	}
}

func TestAdminWaitsForDeliveryInProgress(t *testing.T) {
	h := newHarness(t, nil)
	hold := make(chan struct{})
	h.remote.hold = hold
	h.remote.setDecide(alwaysTempFail)
	h.start()
	id := h.enqueue(env("alice@sender.example", remote("a@one.example")), testMessage)
	waitFor(t, "delivery running", func() bool {
		h.remote.mu.Lock()
		defer h.remote.mu.Unlock()
		return h.remote.active == 1
	})
	var wg sync.WaitGroup
	var delErr error
	wg.Go(func() { delErr = Delete(h.dir, id) })
	time.Sleep(100 * time.Millisecond)
	if h.gone(id) {
		t.Fatal("Delete did not wait for the delivery holding the message")
	}
	close(hold)
	wg.Wait()
	if delErr != nil {
		t.Fatal(delErr)
	}
	// The worker's envelope write happened before Delete; nothing
	// resurrects the message.
	time.Sleep(100 * time.Millisecond)
	if !h.gone(id) || countFiles(t, filepath.Join(h.dir, "spool")) != 0 {
		t.Error("message back after Delete")
	}
}

func TestAdminRejectsBadIDs(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(Options{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"../lock", "a/b", "ABC", "x.env", strings.Repeat("a", 65), "a\x00"} {
		if _, err := Show(dir, id); !errors.Is(err, ErrBadID) {
			t.Errorf("Show(%q): %v", id, err)
		}
		for name, f := range map[string]func(string, string) error{"Retry": Retry, "Delete": Delete, "Bounce": Bounce} {
			if err := f(dir, id); !errors.Is(err, ErrBadID) {
				t.Errorf("%s(%q): %v", name, id, err)
			}
		}
	}
	if err := Delete(dir, ""); !errors.Is(err, ErrBadID) {
		t.Errorf("Delete(\"\"): %v", err)
	}
	if err := Bounce(dir, ""); !errors.Is(err, ErrBadID) {
		t.Errorf("Bounce(\"\"): %v", err)
	}
	for name, f := range map[string]func(string, string) error{"Retry": Retry, "Delete": Delete, "Bounce": Bounce} {
		if err := f(dir, "0123456789abc"); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s(unknown): %v", name, err)
		}
	}
	if _, err := Show(dir, "0123456789abc"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Show(unknown): %v", err)
	}
}

func TestListSummaries(t *testing.T) {
	h := newHarness(t, nil)
	id1 := h.enqueue(env("alice@sender.example", remote("a@one.example"), local("u@here.example")), testMessage)
	h.clock.Advance(time.Minute)
	id2 := h.enqueue(env("", remote("b@two.example")), "short\r\n")
	list, err := List(h.dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].ID != id1 || list[1].ID != id2 {
		t.Fatalf("List: %+v", list)
	}
	s := list[0]
	if s.From != "alice@sender.example" || s.Size != int64(len(testMessage)) || len(s.Rcpts) != 2 || s.Rcpts[1].Addr != "u@here.example" {
		t.Errorf("summary %+v", s)
	}
	if age := s.Age(h.clock.Now()); age != time.Minute {
		t.Errorf("age %v", age)
	}
	empty, err := List(t.TempDir())
	if err == nil || len(empty) != 0 {
		t.Errorf("List of a non-spool: %v %v", empty, err)
	}
}

func TestRunIgnoresMessagesDeletedBehindItsBack(t *testing.T) {
	h := newHarness(t, nil)
	id := h.enqueue(env("a@s.example", remote("r@x.example")), testMessage)
	if err := Delete(h.dir, id); err != nil {
		t.Fatal(err)
	}
	h.start() // the index still has id from Enqueue
	id2 := h.enqueue(env("a@s.example", remote("r@x.example")), testMessage)
	waitFor(t, "second delivered", func() bool { return h.gone(id2) })
	for _, c := range h.remote.snapshot() {
		if c.env.ID == id {
			t.Error("deleted message delivered")
		}
	}
	_ = context.Background
}

func TestAdminFromAnotherProcess(t *testing.T) {
	h := newHarness(t, nil)
	h.remote.setDecide(alwaysTempFail)
	h.start()
	retried := deferredMessage(t, h, remote("a@one.example"))
	deleted := deferredMessage(t, h, remote("b@two.example"))
	bounced := deferredMessage(t, h, remote("c@three.example"))
	runAdminProcess(t, "retry", h.dir, retried)
	waitFor(t, "retried", func() bool { return h.envelope(retried).Rcpts[0].Attempts == 2 })
	runAdminProcess(t, "delete", h.dir, deleted)
	if !h.gone(deleted) {
		t.Error("not deleted")
	}
	runAdminProcess(t, "bounce", h.dir, bounced)
	waitFor(t, "bounced", func() bool { return h.gone(bounced) && len(h.remote.dsnCalls()) == 1 })
}

func TestCollectorReportsQueueAndDeliveries(t *testing.T) {
	h := newHarness(t, nil)
	h.remote.setDecide(func(env *delivery.Envelope, r delivery.Recipient) delivery.Result {
		if env.From == "" {
			return delivery.Result{}
		}
		return permFail("no")
	})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(h.q.Collector())
	h.enqueue(env("alice@sender.example", remote("a@one.example")), testMessage)
	if m := gathered(t, reg); !m["postern_queue_messages"] {
		t.Errorf("want postern_queue_messages 1 in %v", m)
	}
	h.start()
	waitFor(t, "DSN delivered and queue empty", func() bool {
		l, _ := List(h.dir)
		return len(h.remote.dsnCalls()) == 1 && len(l) == 0
	})
	time.Sleep(50 * time.Millisecond)
	m := gathered(t, reg)
	for _, want := range []string{
		`postern_queue_messages 0`,
		`postern_queue_enqueued_total 2`,
		`postern_queue_deliveries_total{destination="remote",outcome="bounced"} 1`,
		`postern_queue_deliveries_total{destination="remote",outcome="sent"} 1`,
		`postern_queue_dsns_total{action="failed"} 1`,
	} {
		if !m[want] {
			t.Errorf("missing %s in %v", want, m)
		}
	}
}

// gathered returns the registry's samples as "name{labels} value" (and
// the bare name for a value of 1 on an unlabelled gauge, for convenience).
func gathered(t *testing.T, reg *prometheus.Registry) map[string]bool {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
			name := mf.GetName()
			if len(labels) > 0 {
				name += "{" + strings.Join(labels, ",") + "}"
			}
			out[fmt.Sprintf("%s %g", name, v)] = true
			if v == 1 && len(labels) == 0 {
				out[name] = true
			}
		}
	}
	return out
}

func TestFilesRootCreatesBelongToTheSpoolOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to change owners")
	}
	const owner = 4321
	dir := filepath.Join(t.TempDir(), "queue")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, owner, owner); err != nil {
		t.Fatal(err)
	}
	q, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	id, err := q.Enqueue(context.Background(), env("a@s.example", remote("r@x.example")), strings.NewReader(testMessage))
	if err != nil {
		t.Fatal(err)
	}
	q.Close()
	if err := Retry(dir, id); err != nil { // rewrites the envelope, writes kick
		t.Fatal(err)
	}
	if err := Bounce(dir, id); err != nil {
		t.Fatal(err)
	}
	filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		if st := info.Sys().(*syscall.Stat_t); st.Uid != owner || st.Gid != owner {
			t.Errorf("%s belongs to %d:%d, want the spool owner %d", path, st.Uid, st.Gid, owner)
		}
		return nil
	})
}

// Hold (postsuper -h): a held message gets no delivery attempt, even when
// every message is retried, and neither a delay notice nor expiry while
// its lifetime passes; List reports it held. Release (postsuper -H)
// schedules it at once, and one past its lifetime then expires with a DSN.
func TestAdminHoldAndRelease(t *testing.T) {
	h := newHarness(t, nil)
	h.remote.setDecide(alwaysTempFail)
	h.start()
	id := deferredMessage(t, h, remote("a@one.example"))
	other := deferredMessage(t, h, remote("b@two.example"))
	if err := Hold(h.dir, id); err != nil {
		t.Fatal(err)
	}
	if err := Hold(h.dir, id); err != nil { // holding twice is harmless
		t.Fatal(err)
	}
	if err := Retry(h.dir, ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the other message retried", func() bool { return h.envelope(other).Rcpts[0].Attempts == 2 })
	h.clock.Advance(8 * 24 * time.Hour) // past the 7-day lifetime and the 4-hour delay notice
	h.q.Kick()
	waitFor(t, "the other message expired", func() bool { return h.gone(other) })
	time.Sleep(200 * time.Millisecond) // ten poll intervals
	if se := h.envelope(id); se.Rcpts[0].Attempts != 1 || se.Rcpts[0].Status != delivery.StatusPending {
		t.Fatalf("held message touched: %+v", se)
	}
	for _, c := range h.remote.dsnCalls() {
		if strings.Contains(string(c.body), "a@one.example") {
			t.Fatal("a DSN about the held message")
		}
	}
	list, err := List(h.dir)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(list, func(s Summary) bool { return s.ID == id && s.Held }) {
		t.Fatalf("List does not show %s held: %+v", id, list)
	}

	if err := Release(h.dir, id); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "released, expired and bounced", func() bool {
		return h.gone(id) && slices.ContainsFunc(h.remote.dsnCalls(), func(c deliveryCall) bool { return strings.Contains(string(c.body), "a@one.example") })
	})
	if err := Hold(h.dir, ""); !errors.Is(err, ErrBadID) {
		t.Errorf("Hold without an id: %v", err)
	}
}
