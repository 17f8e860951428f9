package netserve

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// lineSession is a tiny line protocol over a real connection: it greets
// with "OK hello", answers "LOGIN user" with AdmitLogin's verdict, and
// ends at "QUIT" or the client's close.
type lineSession struct {
	c     net.Conn
	track *Tracker
}

func (s *lineSession) Tracker() *Tracker { return s.track }

// limitedServer serves lineSessions on 127.0.0.1 under the limits lim
// holds; the test may change them while it runs.
type limitedServer struct {
	g    Group[*lineSession]
	lim  atomic.Pointer[Limits]
	addr string
}

func startLimited(t *testing.T, lim Limits) *limitedServer {
	t.Helper()
	srv := &limitedServer{}
	srv.lim.Store(&lim)
	srv.g.Name = "test"
	srv.g.Limits = func() Limits { return *srv.lim.Load() }
	srv.g.Refusal = func(why string) string { return "BYE " + why + "\r\n" }
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.addr = l.Addr().String()
	served := make(chan error, 1)
	go func() { served <- srv.g.Serve(l, srv.start) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.g.Shutdown(ctx, func(s *lineSession) { s.c.Close() }, func(s *lineSession) { s.c.Close() })
		<-served
	})
	return srv
}

func (srv *limitedServer) start(c net.Conn) (*lineSession, func()) {
	s := &lineSession{c: c, track: NewTracker("test", c.RemoteAddr().String(), c.LocalAddr().String(), false)}
	return s, func() {
		defer c.Close()
		io.WriteString(c, "OK hello\r\n")
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			cmd, arg, _ := strings.Cut(sc.Text(), " ")
			switch cmd {
			case "LOGIN", "SLOWLOGIN":
				if !AdmitLogin(&srv.g, s, arg) {
					io.WriteString(c, "NO "+TooManyForUser+"\r\n")
					continue
				}
				if cmd == "SLOWLOGIN" { // a login still at work after its admission
					time.Sleep(300 * time.Millisecond)
				}
				s.track.Update(func(i *SessionInfo) { i.User = arg })
				io.WriteString(c, "OK logged in\r\n")
			case "QUIT":
				return
			}
		}
	}
}

// client is one connection to a limitedServer, from the loopback address
// from (127.0.0.0/8 is all loopback on Linux, so each is another client).
type client struct {
	c  net.Conn
	br *bufio.Reader
}

func dialFrom(t *testing.T, addr, from string) *client {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial from %s: %v", from, err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return &client{c: c, br: bufio.NewReader(c)}
}

func (cl *client) line(t *testing.T) string {
	t.Helper()
	l, err := cl.br.ReadString('\n')
	if err != nil {
		t.Fatalf("read: %v (got %q)", err, l)
	}
	return strings.TrimRight(l, "\r\n")
}

// greeted dials and expects the greeting of an accepted connection.
func greeted(t *testing.T, addr, from string) *client {
	t.Helper()
	cl := dialFrom(t, addr, from)
	if l := cl.line(t); l != "OK hello" {
		t.Fatalf("connection from %s: %q, want the greeting", from, l)
	}
	return cl
}

// refused dials and expects the refusal line for why, then EOF.
func refused(t *testing.T, addr, from, why string) {
	t.Helper()
	cl := dialFrom(t, addr, from)
	if l := cl.line(t); l != "BYE "+why {
		t.Fatalf("connection from %s: %q, want the refusal %q", from, l, why)
	}
	if rest, err := io.ReadAll(cl.br); err != nil || len(rest) > 0 {
		t.Fatalf("after the refusal: %q, %v; want EOF", rest, err)
	}
}

// waitLen waits until g runs n sessions (a closed client's session ends
// a moment after the close).
func waitLen(t *testing.T, g *Group[*lineSession], n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); g.Len() != n; {
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions, want %d", g.Len(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestPerIPLimit(t *testing.T) {
	srv := startLimited(t, Limits{PerIP: 2})
	a := greeted(t, srv.addr, "127.0.0.1")
	greeted(t, srv.addr, "127.0.0.1")
	refused(t, srv.addr, "127.0.0.1", TooManyFromAddress)
	// Another address is not held back by the first one's sessions.
	greeted(t, srv.addr, "127.0.0.2")
	a.c.Close()
	waitLen(t, &srv.g, 2)
	greeted(t, srv.addr, "127.0.0.1")
	if n := srv.g.RefusedConnections(); n != 1 {
		t.Errorf("RefusedConnections = %d, want 1", n)
	}
}

func TestTotalLimit(t *testing.T) {
	srv := startLimited(t, Limits{Total: 2})
	greeted(t, srv.addr, "127.0.0.1")
	b := greeted(t, srv.addr, "127.0.0.2")
	refused(t, srv.addr, "127.0.0.3", TooManyConnections)
	refused(t, srv.addr, "127.0.0.1", TooManyConnections)
	b.c.Close()
	waitLen(t, &srv.g, 1)
	greeted(t, srv.addr, "127.0.0.3")
	if n := srv.g.RefusedConnections(); n != 2 {
		t.Errorf("RefusedConnections = %d, want 2", n)
	}
}

// Zero limits let any number in (a Group without Limits is
// TestGroupServeAndShutdown's).
func TestNoLimits(t *testing.T) {
	srv := startLimited(t, Limits{})
	for i := 0; i < 30; i++ {
		greeted(t, srv.addr, "127.0.0.1")
	}
	if n := srv.g.RefusedConnections(); n != 0 {
		t.Errorf("RefusedConnections = %d, want 0", n)
	}
}

// The limits are read at each accept: lowering them applies to the next
// connection, raising them lets it in again.
func TestLimitsChangeAtNextAccept(t *testing.T) {
	srv := startLimited(t, Limits{PerIP: 5})
	greeted(t, srv.addr, "127.0.0.1")
	greeted(t, srv.addr, "127.0.0.1")
	srv.lim.Store(&Limits{PerIP: 2})
	refused(t, srv.addr, "127.0.0.1", TooManyFromAddress)
	srv.lim.Store(&Limits{PerIP: 3})
	greeted(t, srv.addr, "127.0.0.1")
}

func (cl *client) login(t *testing.T, user string) string {
	t.Helper()
	fmt.Fprintf(cl.c, "LOGIN %s\r\n", user)
	return cl.line(t)
}

func TestUserIPLimit(t *testing.T) {
	srv := startLimited(t, Limits{UserIP: 2})
	a := greeted(t, srv.addr, "127.0.0.1")
	b := greeted(t, srv.addr, "127.0.0.1")
	c := greeted(t, srv.addr, "127.0.0.1")
	for _, cl := range []*client{a, b} {
		if r := cl.login(t, "alice"); r != "OK logged in" {
			t.Fatalf("login: %q", r)
		}
	}
	// The third login, whatever the case of the name, is refused; the
	// connection stays open for another try.
	if r := c.login(t, "ALICE"); r != "NO "+TooManyForUser {
		t.Fatalf("third login: %q, want the refusal", r)
	}
	if r := c.login(t, "bob"); r != "OK logged in" {
		t.Fatalf("another user on the refused connection: %q", r)
	}
	// From another address alice may log in.
	if r := greeted(t, srv.addr, "127.0.0.2").login(t, "alice"); r != "OK logged in" {
		t.Fatalf("alice from another address: %q", r)
	}
	fmt.Fprintf(a.c, "QUIT\r\n")
	waitLen(t, &srv.g, 3)
	d := greeted(t, srv.addr, "127.0.0.1")
	if r := d.login(t, "alice"); r != "OK logged in" {
		t.Fatalf("login after one logged out: %q", r)
	}
	if n := srv.g.RefusedLogins(); n != 1 {
		t.Errorf("RefusedLogins = %d, want 1", n)
	}
}

// Two logins that race are counted against each other: the second
// admission sees the first although the first has not yet set its User.
func TestUserIPLimitRacingLogins(t *testing.T) {
	srv := startLimited(t, Limits{UserIP: 1})
	a := greeted(t, srv.addr, "127.0.0.1")
	b := greeted(t, srv.addr, "127.0.0.1")
	fmt.Fprintf(a.c, "SLOWLOGIN alice\r\n")
	fmt.Fprintf(b.c, "SLOWLOGIN alice\r\n")
	ok, refused := 0, 0
	for _, cl := range []*client{a, b} {
		switch r := cl.line(t); r {
		case "OK logged in":
			ok++
		case "NO " + TooManyForUser:
			refused++
		default:
			t.Fatalf("login: %q", r)
		}
	}
	if ok != 1 || refused != 1 {
		t.Fatalf("%d logins admitted and %d refused, want one of each", ok, refused)
	}
}

// A flood of refusals logs one line per period, then says how many it
// held back.
func TestLogThrottle(t *testing.T) {
	var th logThrottle
	t0 := time.Now()
	if n, ok := th.allow(t0); !ok || n != 0 {
		t.Fatalf("first: %d, %v", n, ok)
	}
	for i := 1; i <= 3; i++ {
		if _, ok := th.allow(t0.Add(time.Duration(i) * time.Second)); ok {
			t.Fatalf("line %d within the period logged", i)
		}
	}
	if n, ok := th.allow(t0.Add(refusalLogEvery)); !ok || n != 3 {
		t.Fatalf("after the period: %d, %v; want 3 held back", n, ok)
	}
}
