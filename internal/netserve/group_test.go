package netserve

import (
	"context"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// conn is a session that reads until its connection ends; interrupt asks
// it to stop (by closing), kill is counted.
type conn struct {
	c        net.Conn
	stubborn bool // ignores interrupt
}

func TestGroupServeAndShutdown(t *testing.T) {
	var g Group[*conn]
	g.Name = "test"
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var ran atomic.Int32
	stubborn := make(chan bool, 2)
	stubborn <- false
	stubborn <- true
	served := make(chan error, 1)
	go func() {
		served <- g.Serve(l, func(c net.Conn) (*conn, func()) {
			s := &conn{c: c, stubborn: <-stubborn}
			return s, func() {
				ran.Add(1)
				io.Copy(io.Discard, c) // until the connection closes
			}
		})
	}()
	var clients []net.Conn
	for i := 0; i < 2; i++ {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients = append(clients, c)
	}
	deadline := time.Now().Add(10 * time.Second)
	for g.Len() < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if g.Len() != 2 {
		t.Fatalf("%d sessions, want 2", g.Len())
	}
	var interrupted, killed atomic.Int32
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err = g.Shutdown(ctx,
		func(s *conn) {
			interrupted.Add(1)
			if !s.stubborn {
				s.c.Close()
			}
		},
		func(s *conn) { killed.Add(1); s.c.Close() })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown: %v, want the deadline (one session ignored the interrupt)", err)
	}
	if interrupted.Load() != 2 || killed.Load() != 1 || g.Len() != 0 || ran.Load() != 2 {
		t.Errorf("interrupted %d, killed %d, left %d, ran %d; want 2, 1, 0, 2", interrupted.Load(), killed.Load(), g.Len(), ran.Load())
	}
	if err := <-served; !errors.Is(err, ErrClosing) {
		t.Errorf("Serve after Shutdown: %v, want ErrClosing", err)
	}
	select {
	case <-g.Done():
	default:
		t.Error("Done not closed")
	}
	if g.Track(&conn{}) || !g.Closing() {
		t.Error("a session tracked after Shutdown")
	}
	l2, _ := net.Listen("tcp", "127.0.0.1:0")
	if err := g.Serve(l2, nil); !errors.Is(err, ErrClosing) {
		t.Errorf("Serve on a closed group: %v", err)
	}
	// A second Shutdown returns at once.
	if err := g.Shutdown(context.Background(), func(*conn) {}, func(*conn) {}); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
}
