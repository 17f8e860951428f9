package netserve

import (
	"errors"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// flakyListener fails with EMFILE a few times before it returns a conn.
type flakyListener struct {
	net.Listener
	fails atomic.Int32
}

func (f *flakyListener) Accept() (net.Conn, error) {
	if f.fails.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "accept", Err: syscall.EMFILE}
	}
	return f.Listener.Accept()
}

func TestAcceptRetriesTemporaryFailures(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	fl := &flakyListener{Listener: l}
	fl.fails.Store(3)
	go func() {
		if c, err := net.Dial("tcp", l.Addr().String()); err == nil {
			defer c.Close()
			time.Sleep(time.Second)
		}
	}()
	a := &Acceptor{Listener: fl, Name: "test"}
	c, err := a.Accept()
	if err != nil {
		t.Fatalf("after 3 EMFILE failures: %v", err)
	}
	c.Close()
	if a.backoff != 0 {
		t.Fatalf("backoff not reset after success: %v", a.backoff)
	}
}

func TestAcceptReportsClosing(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	closing := atomic.Bool{}
	a := &Acceptor{Listener: l, Name: "test", Closing: closing.Load}
	closing.Store(true)
	l.Close()
	if _, err := a.Accept(); !errors.Is(err, ErrClosing) {
		t.Fatalf("closed while closing: %v", err)
	}
	// A listener that fails for good while not closing: a real error.
	l2, _ := net.Listen("tcp", "127.0.0.1:0")
	l2.Close()
	a2 := &Acceptor{Listener: l2, Name: "test", Closing: func() bool { return false }}
	if _, err := a2.Accept(); err == nil || errors.Is(err, ErrClosing) {
		t.Fatalf("failed listener: %v", err)
	}
}

// Shutdown ends a pause at once.
func TestDoneEndsBackoff(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	defer l.Close()
	fl := &flakyListener{Listener: l}
	fl.fails.Store(1000)
	done := make(chan struct{})
	a := &Acceptor{Listener: fl, Name: "test", Done: done}
	go func() { time.Sleep(50 * time.Millisecond); close(done) }()
	start := time.Now()
	if _, err := a.Accept(); !errors.Is(err, ErrClosing) || time.Since(start) > 2*time.Second {
		t.Fatalf("Done did not end the pause: %v after %v", err, time.Since(start))
	}
}
