package groupcommit

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type req struct {
	id    int
	batch int // which flush handled it
}

func TestEveryRequestFlushedOnceAndBatched(t *testing.T) {
	var flushes atomic.Int32
	var inFlush atomic.Int32
	b := &Batcher[*req]{}
	b.Flush = func(batch []*req) {
		if inFlush.Add(1) != 1 {
			t.Error("two flushes at once")
		}
		n := int(flushes.Add(1))
		time.Sleep(2 * time.Millisecond) // a slow flush lets the next batch gather
		for _, r := range batch {
			if r.batch != 0 {
				t.Errorf("request %d flushed twice", r.id)
			}
			r.batch = n
		}
		inFlush.Add(-1)
	}
	const n = 200
	reqs := make([]*req, n)
	var wg sync.WaitGroup
	for i := range reqs {
		reqs[i] = &req{id: i}
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.Do(reqs[i])
			if reqs[i].batch == 0 {
				t.Errorf("Do returned before request %d was flushed", i)
			}
		}()
	}
	wg.Wait()
	if !b.Idle() {
		t.Fatal("not idle after every Do returned")
	}
	if f := flushes.Load(); f >= n/2 {
		t.Fatalf("%d flushes for %d concurrent requests: no batching", f, n)
	}
}

func TestLoneRequestFlushedAtOnce(t *testing.T) {
	flushed := 0
	b := &Batcher[int]{Flush: func(batch []int) { flushed += len(batch) }}
	for i := range 3 {
		b.Do(i)
	}
	if flushed != 3 {
		t.Fatalf("flushed %d", flushed)
	}
}
