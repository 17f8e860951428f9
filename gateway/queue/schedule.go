package queue

import (
	"math/rand/v2"
	"time"

	"postern/gateway/delivery"
)

// retryGap is the wait after a recipient's attempts-th failed attempt:
// Schedule[attempts-1], the last gap repeating, with ±10% jitter so that
// messages deferred together do not all retry in the same second.
func (q *Queue) retryGap(attempts int) time.Duration {
	s := q.opt.Schedule
	i := min(max(attempts-1, 0), len(s)-1)
	d := s[i]
	if j := int64(d) / 10; j > 0 {
		d += time.Duration(rand.Int64N(2*j+1) - j)
	}
	return d
}

// nextAttempt is when a recipient that failed temporarily at now is tried
// again: after its retry gap, but never later than the end of the
// message's lifetime, so the final attempt happens at expiry.
func (q *Queue) nextAttempt(se *spoolEnvelope, attempts int, now time.Time) time.Time {
	next := now.Add(q.retryGap(attempts))
	// The last attempt is at the end of the lifetime; past it (kept by
	// soft bounce) the usual gaps go on.
	if expiry := se.Received.Add(q.opt.Lifetime); next.After(expiry) && expiry.After(now) {
		next = expiry
	}
	return next
}

// Which DSNs a recipient's NOTIFY allows (RFC 3461 §4.1). With no NOTIFY
// the MTA decides: failures and delays are reported, successes are not.
// A null sender (a bounce itself) is never reported on.

func notifyFailure(from string, n delivery.Notify) bool {
	return from != "" && n&delivery.NotifyNever == 0 && (n == delivery.NotifyDefault || n&delivery.NotifyFailure != 0)
}

func notifyDelay(from string, n delivery.Notify) bool {
	return from != "" && n&delivery.NotifyNever == 0 && (n == delivery.NotifyDefault || n&delivery.NotifyDelay != 0)
}
