package queue

import (
	"container/heap"
	"time"
)

// The scheduler's index: what it keeps in memory about each queued
// message. The envelope on disk stays the truth (the worker rereads it
// under the message lock); the index only says when to look next. It is a
// min-heap by due time, so finding due work costs O(log n) however many
// messages wait, plus one FIFO per busy destination of the messages
// waiting for a free slot there. All methods need q.mu.

type entryState uint8

const (
	stateQueued   entryState = iota // in the heap
	stateInFlight                   // a worker has it
	stateWaiting                    // in the FIFOs of its busy destinations
	stateGone                       // removed; stale FIFO pointers skip it
)

type indexEntry struct {
	id      string
	due     time.Time // zero: now
	state   entryState
	heapIdx int
	recheck bool      // the spool changed while in flight: look again at once
	noted   time.Time // (real time) when the entry was last set
}

type dueHeap []*indexEntry

func (h dueHeap) Len() int { return len(h) }
func (h dueHeap) Less(i, j int) bool {
	if !h[i].due.Equal(h[j].due) {
		return h[i].due.Before(h[j].due)
	}
	return h[i].id < h[j].id
}
func (h dueHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx, h[j].heapIdx = i, j
}
func (h *dueHeap) Push(x any) {
	e := x.(*indexEntry)
	e.heapIdx = len(*h)
	*h = append(*h, e)
}
func (h *dueHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.heapIdx = -1
	return e
}

type schedIndex struct {
	entries map[string]*indexEntry
	due     dueHeap
	waiting map[string][]*indexEntry // by destination domain, oldest first
}

func newSchedIndex() schedIndex {
	return schedIndex{entries: map[string]*indexEntry{}, waiting: map[string][]*indexEntry{}}
}

func (x *schedIndex) len() int { return len(x.entries) }

func (x *schedIndex) queue(e *indexEntry, due time.Time) {
	e.due = due
	if e.state == stateQueued && e.heapIdx >= 0 {
		heap.Fix(&x.due, e.heapIdx)
		return
	}
	e.state = stateQueued
	heap.Push(&x.due, e)
}

// note records that message id is due at due (zero: now).
func (x *schedIndex) note(id string, due time.Time) {
	e, ok := x.entries[id]
	if !ok {
		e = &indexEntry{id: id, heapIdx: -1}
		x.entries[id] = e
	}
	e.noted = time.Now()
	if e.state == stateInFlight {
		e.recheck = true
		return
	}
	x.queue(e, due)
}

// forget drops message id (it left the spool).
func (x *schedIndex) forget(e *indexEntry) {
	if e.state == stateQueued && e.heapIdx >= 0 {
		heap.Remove(&x.due, e.heapIdx)
	}
	e.state = stateGone
	delete(x.entries, e.id)
}

// popDue takes the earliest entry due at now, or returns nil.
func (x *schedIndex) popDue(now time.Time) *indexEntry {
	if len(x.due) == 0 || x.due[0].due.After(now) {
		return nil
	}
	e := heap.Pop(&x.due).(*indexEntry)
	e.state = stateInFlight
	return e
}

// nextDue is the earliest due time in the heap (zero if empty).
func (x *schedIndex) nextDue() time.Time {
	if len(x.due) == 0 {
		return time.Time{}
	}
	return x.due[0].due
}

// done files an entry whose worker finished: gone, due again, or waiting
// for one of the destinations in wait (busy says which still are).
func (x *schedIndex) done(e *indexEntry, keep bool, due time.Time, wait []string, busy func(string) bool) {
	if !keep {
		x.forget(e)
		return
	}
	if e.recheck {
		e.recheck = false
		x.queue(e, time.Time{})
		return
	}
	if len(wait) == 0 {
		x.queue(e, due)
		return
	}
	for _, d := range wait {
		if !busy(d) {
			// A slot freed while the worker finished: no release will
			// come for it, so go again now.
			x.queue(e, time.Time{})
			return
		}
	}
	e.state = stateWaiting
	for _, d := range wait {
		x.waiting[d] = append(x.waiting[d], e)
	}
}

// release moves up to n messages waiting for domain back to the heap, due
// now (n: the slots just freed there).
func (x *schedIndex) release(domain string, n int) {
	fifo := x.waiting[domain]
	for n > 0 && len(fifo) > 0 {
		e := fifo[0]
		fifo = fifo[1:]
		if e.state != stateWaiting {
			continue // released through another domain, or gone
		}
		x.queue(e, time.Time{})
		n--
	}
	if len(fifo) == 0 {
		delete(x.waiting, domain)
	} else {
		x.waiting[domain] = fifo
	}
}
