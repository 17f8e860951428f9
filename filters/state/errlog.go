package state

import (
	"sync"
	"time"
)

// ErrorLog paces the logging of a check's store failures: during an
// outage every session fails the same way, so one line a minute says it,
// with the count of the failures not logged since. The zero value is
// ready; safe for concurrent use.
type ErrorLog struct {
	mu       sync.Mutex
	last     time.Time
	unlogged int
}

// Due reports whether a failure happening now is to be logged, and how
// many were not logged since the last one that was.
func (e *ErrorLog) Due() (skipped int, due bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := time.Now()
	if !e.last.IsZero() && now.Sub(e.last) < time.Minute {
		e.unlogged++
		return 0, false
	}
	skipped = e.unlogged
	e.last, e.unlogged = now, 0
	return skipped, true
}
