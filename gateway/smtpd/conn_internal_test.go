package smtpd

import (
	"testing"
	"time"
)

func TestDeadlineRenewal(t *testing.T) {
	var d deadline
	var set []time.Time
	record := func(at time.Time) error { set = append(set, at); return nil }
	base := time.Unix(1000, 0)
	timeout := 5 * time.Minute
	d.renew(base, timeout, record) // first: always set
	d.renew(base.Add(500*time.Millisecond), timeout, record)
	if len(set) != 1 {
		t.Fatalf("a renewal half a second later was not skipped: %v", set)
	}
	d.renew(base.Add(2*time.Second), timeout, record) // more than the slack
	d.renew(base.Add(time.Second), timeout, record)   // earlier than the last: must be set
	if len(set) != 3 || !set[1].Equal(base.Add(2*time.Second)) || !set[2].Equal(base.Add(time.Second)) {
		t.Fatalf("set = %v", set)
	}
	// A short timeout gets a slack of an eighth of it.
	var s deadline
	set = nil
	s.renew(base, 80*time.Millisecond, record)
	s.renew(base.Add(5*time.Millisecond), 80*time.Millisecond, record)
	s.renew(base.Add(15*time.Millisecond), 80*time.Millisecond, record)
	if len(set) != 2 {
		t.Fatalf("80 ms timeout: set %d times, want 2 (the 5 ms move skipped, the 15 ms one set)", len(set))
	}
	s.forget()
	s.renew(base.Add(15*time.Millisecond), 80*time.Millisecond, record)
	if len(set) != 3 {
		t.Fatal("after forget the deadline was not set again")
	}
}
