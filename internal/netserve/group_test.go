package netserve

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"postern/internal/netserve/netservetest"
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

// Run serves a connection Serve did not accept on the caller's
// goroutine, tracked and counted while it runs; after Shutdown it
// returns Closed without running it. Serve returns Closed too, and
// Shutdown's deadline error names the group.
func TestGroupRunAndClosed(t *testing.T) {
	errServerClosed := errors.New("test: server closed")
	g := Group[*conn]{Name: "test", Closed: errServerClosed}
	sc, _ := tcpPair(t)
	s := &conn{c: sc}
	var lenInRun int
	if err := g.Run(s, func() { lenInRun = g.Len() }); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if lenInRun != 1 || g.Len() != 0 || g.Started() != 1 {
		t.Fatalf("Len in run %d, after %d, Started %d; want 1, 0, 1", lenInRun, g.Len(), g.Started())
	}

	// A session that ignores interrupt keeps Shutdown to its deadline.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() {
		served <- g.Serve(l, func(c net.Conn) (*conn, func()) {
			return &conn{c: c}, func() { io.Copy(io.Discard, c) }
		})
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for deadline := time.Now().Add(10 * time.Second); g.Len() != 1; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the session did not start")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err = g.Shutdown(ctx, func(*conn) {}, func(s *conn) { s.c.Close() })
	if !errors.Is(err, context.DeadlineExceeded) || err.Error() != "test: shutdown: context deadline exceeded" {
		t.Errorf("Shutdown: %v, want the group's name and the deadline", err)
	}
	if err := <-served; err != errServerClosed {
		t.Errorf("Serve after Shutdown: %v, want Closed", err)
	}
	if g.Started() != 2 {
		t.Errorf("Started %d, want 2", g.Started())
	}
	ran := false
	if err := g.Run(&conn{}, func() { ran = true }); err != errServerClosed || ran {
		t.Errorf("Run after Shutdown: %v, ran %v; want Closed, not run", err, ran)
	}
}

// ServeTLS: sessions run their handshake (Conn.Handshake), and a
// connection over the limits gets its refusal inside TLS, not in the
// clear.
func TestGroupServeTLS(t *testing.T) {
	serverConfig, clientConfig := netservetest.TLSConfigs(t, "mail.example.test")
	g := Group[*conn]{Name: "test"}
	g.Limits = func() Limits { return Limits{Total: 1} }
	g.Refusal = func(why string) string { return "BYE " + why + "\r\n" }
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() {
		served <- g.ServeTLS(l, serverConfig, func(c net.Conn) (*conn, func()) {
			return &conn{c: c}, func() {
				defer c.Close()
				sc := NewConn(c, 5*time.Second)
				if err := sc.Handshake(context.Background(), 5*time.Second); err != nil {
					return
				}
				io.WriteString(sc, "OK hello\r\n")
				io.Copy(io.Discard, sc)
			}
		})
	}()
	t.Cleanup(func() {
		g.Shutdown(context.Background(), func(s *conn) { s.c.Close() }, func(s *conn) { s.c.Close() })
		<-served
	})
	dial := func() string {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", l.Addr().String(), clientConfig)
		if err != nil {
			t.Fatalf("TLS dial: %v", err)
		}
		t.Cleanup(func() { c.Close() })
		line, err := readLine(c, bufio.NewReader(c))
		if err != nil {
			t.Fatalf("read over TLS: %v", err)
		}
		return line
	}
	if l := dial(); l != "OK hello" {
		t.Fatalf("first connection: %q, want the greeting", l)
	}
	if l := dial(); l != "BYE "+TooManyConnections {
		t.Fatalf("second connection: %q, want the refusal over TLS", l)
	}
}
