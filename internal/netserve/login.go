package netserve

import (
	"context"
	"time"
)

// LoginFailures counts one session's failed logins, so that a client
// guessing passwords is cut off after Max of them (as Courier and Dovecot
// close the connection), and slows it with a pause after each. The
// service-wide count, and blocking a client address across connections,
// are the auth package's.
type LoginFailures struct {
	Max   int           // failures that end the session; 0: no end
	Delay time.Duration // the pause after each failure; none when 0 or less
	n     int
}

// Fail counts a failed login and pauses for Delay before the session
// answers it, so that a client cannot race ahead; ctx ending (the server
// shutting down) cuts the pause short. It reports whether the session has
// now failed Max times and is to say so and close.
func (f *LoginFailures) Fail(ctx context.Context) (tooMany bool) {
	f.n++
	if f.Delay > 0 {
		t := time.NewTimer(f.Delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
	return f.TooMany()
}

// TooMany reports whether the session has failed Max times.
func (f *LoginFailures) TooMany() bool { return f.Max > 0 && f.n >= f.Max }

// Count is the number of failures so far.
func (f *LoginFailures) Count() int { return f.n }
