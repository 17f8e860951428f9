package smtpd

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
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

// A goroutine whose session ended serves the next connection; after
// Shutdown the waiting ones exit.
func TestConnectionGoroutinesAreReused(t *testing.T) {
	checkGoroutines(t)
	b := &testBackend{}
	s, addr := startServer(t, b, testOptions(t))
	for i := 0; i < 10; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		r := bufio.NewReader(c)
		if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "220 ") {
			t.Fatalf("banner %q, %v", line, err)
		}
		fmt.Fprintf(c, "QUIT\r\n")
		if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "221 ") {
			t.Fatalf("QUIT: %q, %v", line, err)
		}
		io.Copy(io.Discard, r) // until the server closes
		c.Close()
		time.Sleep(50 * time.Millisecond) // the goroutine goes back to waiting
	}
	if n := s.workers.Load(); n != 1 {
		t.Fatalf("%d goroutines started for 10 connections one after the other, want 1", n)
	}
}
