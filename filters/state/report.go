package state

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultReportEvery is how often a store that keeps failing logs it. A
// store that is down fails every call of every SMTP session; one loud line a
// minute (with the count of failures since the last one) tells the admin
// without drowning the log.
const DefaultReportEvery = time.Minute

// unavailableReporter logs ErrUnavailable failures loudly but at most once
// per interval, and logs once when the store answers again.
type unavailableReporter struct {
	log   *slog.Logger
	what  string
	every time.Duration
	now   func() time.Time

	mu         sync.Mutex
	last       time.Time // when the last report was logged
	suppressed int       // failures since then
	down       atomic.Bool
}

func newUnavailableReporter(log *slog.Logger, what string, every time.Duration, now func() time.Time) *unavailableReporter {
	if every <= 0 {
		every = DefaultReportEvery
	}
	return &unavailableReporter{log: log, what: what, every: every, now: now}
}

func (r *unavailableReporter) report(err error) {
	r.mu.Lock()
	now := r.now()
	r.down.Store(true)
	if !r.last.IsZero() && now.Sub(r.last) < r.every {
		r.suppressed++
		r.mu.Unlock()
		return
	}
	suppressed := r.suppressed
	r.last, r.suppressed = now, 0
	r.mu.Unlock()
	r.log.Error("state store unavailable: filters use their degraded behaviour",
		"store", r.what, "err", err, "failures_since_last_report", suppressed, "next_report_in", r.every)
}

// ok notes a successful call; the first after an outage is logged.
func (r *unavailableReporter) ok() {
	if !r.down.Load() {
		return // the common case: no lock
	}
	r.mu.Lock()
	if !r.down.Swap(false) {
		r.mu.Unlock()
		return
	}
	suppressed := r.suppressed
	r.last, r.suppressed = time.Time{}, 0
	r.mu.Unlock()
	r.log.Warn("state store answers again", "store", r.what, "failures_since_last_report", suppressed)
}
