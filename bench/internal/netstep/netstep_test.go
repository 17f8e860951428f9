package netstep

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

// A peer that never answers makes Read fail after Timeout even when the
// caller cleared the deadline.
func TestReadTimesOutDespiteClearedDeadline(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			accepted <- c
		}
		close(accepted)
	}()
	raw, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := New(raw, 100*time.Millisecond)
	defer c.Close()
	peer := <-accepted
	if peer != nil {
		defer peer.Close()
	}
	_ = c.SetDeadline(time.Time{})
	start := time.Now()
	_, err = c.Read(make([]byte, 1))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read error %v, want a deadline error", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Read took %v with a 100ms timeout", took)
	}
	if _, err := c.Write([]byte("x")); err != nil {
		t.Errorf("Write to a live peer: %v", err)
	}
}
