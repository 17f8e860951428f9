package queue

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestSchedIndexOrderWaitingAndRelease(t *testing.T) {
	x := newSchedIndex()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	x.note("c", t0.Add(3*time.Minute))
	x.note("a", t0.Add(1*time.Minute))
	x.note("b", t0.Add(2*time.Minute))
	x.note("a", t0.Add(4*time.Minute)) // moved later
	if got := x.nextDue(); !got.Equal(t0.Add(2 * time.Minute)) {
		t.Fatalf("nextDue %v", got)
	}
	if e := x.popDue(t0.Add(time.Minute)); e != nil {
		t.Fatalf("popped %s before it was due", e.id)
	}
	var order []string
	for e := x.popDue(t0.Add(time.Hour)); e != nil; e = x.popDue(t0.Add(time.Hour)) {
		order = append(order, e.id)
	}
	if fmt.Sprint(order) != "[b c a]" {
		t.Fatalf("order %v", order)
	}
	busy := func(string) bool { return true }
	b, c, a := x.entries["b"], x.entries["c"], x.entries["a"]
	x.note("b", time.Time{}) // changed while in flight
	x.done(b, true, t0.Add(time.Hour), nil, busy)
	if b.state != stateQueued || !b.due.IsZero() {
		t.Errorf("recheck not honoured: %+v", b)
	}
	x.done(c, true, time.Time{}, []string{"busy.example"}, busy)
	x.done(a, true, time.Time{}, []string{"busy.example", "other.example"}, busy)
	if c.state != stateWaiting || a.state != stateWaiting {
		t.Fatalf("not waiting: %v %v", c.state, a.state)
	}
	x.release("busy.example", 1) // one slot: the oldest waiter only
	if c.state != stateQueued || a.state != stateWaiting {
		t.Errorf("release 1: c %v a %v", c.state, a.state)
	}
	x.release("other.example", 4)
	if a.state != stateQueued {
		t.Errorf("a not released through its other domain: %v", a.state)
	}
	x.release("busy.example", 4) // a's stale pointer is skipped
	if len(x.waiting) != 0 {
		t.Errorf("waiting FIFOs left: %v", x.waiting)
	}
	// A slot that freed before the worker finished: no waiting.
	e := x.popDue(t0.Add(time.Hour))
	x.done(e, true, time.Time{}, []string{"free.example"}, func(string) bool { return false })
	if e.state != stateQueued {
		t.Errorf("waited for a free domain: %v", e.state)
	}
	x.forget(x.entries["b"])
	x.done(x.popDue(t0.Add(time.Hour)), false, time.Time{}, nil, busy)
	if x.len() != 1 || len(x.due) != 1 || x.entries["c"] == nil {
		t.Errorf("after forget/done: %d entries, %d in heap", x.len(), len(x.due))
	}
}

// BenchmarkDispatchLargeQueue: with 100,000 deferred messages a pass of
// the scheduler (after each Enqueue or Kick) must not walk them all.
func BenchmarkDispatchLargeQueue(b *testing.B) {
	q, err := Open(Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	now := time.Now()
	for i := range 100000 {
		q.index.note(fmt.Sprintf("%023x", i), now.Add(time.Hour+time.Duration(i)*time.Millisecond))
	}
	slots := make(chan struct{}, 20)
	var wg sync.WaitGroup
	for b.Loop() {
		q.dispatch(context.Background(), slots, &wg)
	}
	wg.Wait()
}
