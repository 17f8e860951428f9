package proxyproto

import (
	"bufio"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func listen(t *testing.T, trusted bool, timeout time.Duration) *Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := NewListener(ln, func(netip.Addr) bool { return trusted }, timeout, nil)
	t.Cleanup(func() { l.Close() })
	return l
}

func dial(t *testing.T, l *Listener, first string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if first != "" {
		io.WriteString(c, first)
	}
	return c
}

func accept(t *testing.T, l *Listener) net.Conn {
	t.Helper()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() { c, err := l.Accept(); ch <- res{c, err} }()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatal(r.err)
		}
		t.Cleanup(func() { r.c.Close() })
		return r.c
	case <-time.After(5 * time.Second):
		t.Fatal("no connection accepted")
	}
	return nil
}

// The header's addresses become the connection's, and bytes sent in the
// same segment as the header are read after it.
func TestListenerV1AndFollowingBytes(t *testing.T) {
	l := listen(t, true, 0)
	dial(t, l, "PROXY TCP4 192.0.2.7 198.51.100.1 40000 143\r\na1 CAPABILITY\r\n")
	c := accept(t, l)
	if got := c.RemoteAddr().String(); got != "192.0.2.7:40000" {
		t.Fatalf("RemoteAddr %s", got)
	}
	if got := c.LocalAddr().String(); got != "198.51.100.1:143" {
		t.Fatalf("LocalAddr %s", got)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != "a1 CAPABILITY\r\n" {
		t.Fatalf("first line %q %v", line, err)
	}
}

// An untrusted peer, a missing header and a silent peer are dropped, and
// none of them holds up a good connection behind it.
func TestListenerDropsBadPeersWithoutStalling(t *testing.T) {
	l := listen(t, true, 300*time.Millisecond)
	silent := dial(t, l, "")
	bad := dial(t, l, "a1 LOGIN x y\r\n")
	dial(t, l, "PROXY TCP6 2001:db8::5 2001:db8::1 5555 993\r\n")
	c := accept(t, l)
	if got := c.RemoteAddr().String(); got != "[2001:db8::5]:5555" {
		t.Fatalf("RemoteAddr %s: the good connection came out, the bad ones not", got)
	}
	for name, conn := range map[string]net.Conn{"silent": silent, "no header": bad} {
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := conn.Read(make([]byte, 1)); err == nil {
			t.Fatalf("%s: read %d bytes, want the connection closed", name, n)
		}
	}

	u := listen(t, false, 0)
	peer := dial(t, u, "PROXY TCP4 192.0.2.7 198.51.100.1 40000 143\r\n")
	peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := peer.Read(make([]byte, 1)); err == nil {
		t.Fatal("an untrusted peer's connection stayed open")
	}
}

// LOCAL (v2) keeps the connection's own addresses; Close ends Accept.
func TestListenerLocalAndClose(t *testing.T) {
	l := listen(t, true, 0)
	dial(t, l, "\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00hello\n")
	c := accept(t, l)
	if !strings.HasPrefix(c.RemoteAddr().String(), "127.0.0.1:") {
		t.Fatalf("LOCAL changed the address: %s", c.RemoteAddr())
	}
	if line, _ := bufio.NewReader(c).ReadString('\n'); line != "hello\n" {
		t.Fatalf("after LOCAL: %q", line)
	}
	done := make(chan error, 1)
	go func() { _, err := l.Accept(); done <- err }()
	l.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Accept after Close returned a connection")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Accept did not return after Close")
	}
}
