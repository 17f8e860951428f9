// Package groupcommit gathers concurrent requests into batches so that one
// expensive flush (an fsync, a syncfs, a log write) serves many callers.
//
// There is no goroutine of its own: the first caller to arrive while no
// batch is being flushed becomes the leader, takes everything pending
// (itself included) and flushes it; callers arriving meanwhile wait and form
// the next batch, whose first member leads it once the current flush is
// done. With a single caller there is no added wait; under load each flush
// covers many requests.
package groupcommit

import "sync"

// Batcher batches requests of type T for its Flush function.
type Batcher[T any] struct {
	// Flush handles a whole batch; it records each request's outcome in
	// the request itself. Batches are flushed one at a time, in order.
	Flush func(batch []T)

	mu      sync.Mutex
	pending []*waiter[T]
	busy    bool
}

type waiter[T any] struct {
	req  T
	wake chan bool // true: lead the next batch; false: your batch is done
}

// Do returns once req's batch has been flushed.
func (b *Batcher[T]) Do(req T) {
	w := &waiter[T]{req: req, wake: make(chan bool, 1)}
	b.mu.Lock()
	b.pending = append(b.pending, w)
	if b.busy {
		b.mu.Unlock()
		if lead := <-w.wake; !lead {
			return
		}
		b.mu.Lock()
	} else {
		b.busy = true
	}
	batch := b.pending
	b.pending = nil
	b.mu.Unlock()

	reqs := make([]T, len(batch))
	for i, x := range batch {
		reqs[i] = x.req
	}
	b.Flush(reqs)
	for _, x := range batch {
		if x != w {
			x.wake <- false
		}
	}

	b.mu.Lock()
	if len(b.pending) > 0 {
		next := b.pending[0]
		b.mu.Unlock()
		next.wake <- true // it takes everything pending, itself included
		return
	}
	b.busy = false
	b.mu.Unlock()
}

// Idle reports whether no batch is being flushed or waiting.
func (b *Batcher[T]) Idle() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return !b.busy && len(b.pending) == 0
}
