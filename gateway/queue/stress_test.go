package queue

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"postern/gateway/delivery"
)

// TestStressManyMessagesManyDomains runs 200 messages to recipients spread
// over 30 domains and the local agent, with a third of the attempts
// failing temporarily, and checks the limits held and that every recipient
// was delivered exactly once.
func TestStressManyMessagesManyDomains(t *testing.T) {
	checkNoGoroutineLeak(t)
	h := newHarness(t, func(o *Options) { o.Concurrency = 8; o.PerDomain = 2 })
	var mu sync.Mutex
	delivered := map[string]int{}
	decide := func(env *delivery.Envelope, r delivery.Recipient) delivery.Result {
		if rand.IntN(3) == 0 {
			return tempFail("busy")
		}
		mu.Lock()
		delivered[r.DeliveryKey]++
		mu.Unlock()
		return delivery.Result{}
	}
	h.remote.setDecide(decide)
	h.local.setDecide(decide)
	h.start()
	var ids []string
	want := 0
	for i := range 200 {
		var rcpts []delivery.Recipient
		for j := range 1 + rand.IntN(6) {
			if rand.IntN(5) == 0 {
				rcpts = append(rcpts, local(fmt.Sprintf("u%d-%d@here.example", i, j)))
			} else {
				rcpts = append(rcpts, remote(fmt.Sprintf("r%d-%d@d%d.example", i, j, rand.IntN(30))))
			}
		}
		want += len(rcpts)
		ids = append(ids, h.enqueue(env("", rcpts...), testMessage)) // null sender: no DSNs to count
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		left := 0
		for _, id := range ids {
			if !h.gone(id) {
				left++
			}
		}
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d messages still queued", left)
		}
		h.advance(6 * time.Minute)
		time.Sleep(30 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(delivered) != want {
		t.Errorf("%d recipients delivered, want %d", len(delivered), want)
	}
	for k, n := range delivered {
		if n != 1 {
			t.Errorf("%s delivered %d times", k, n)
		}
	}
	for _, rec := range []*recorder{h.remote, h.local} {
		rec.mu.Lock()
		if rec.maxActive > 8 {
			t.Errorf("%d deliveries at once, Concurrency is 8", rec.maxActive)
		}
		rec.mu.Unlock()
	}
	h.remote.mu.Lock()
	for d, n := range h.remote.maxDomain {
		if n > 2 {
			t.Errorf("%s: %d deliveries at once, PerDomain is 2", d, n)
		}
	}
	h.remote.mu.Unlock()
}
