package smtpd

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// sendBigMessage runs one transaction whose body spans many reads, trickled
// so that the server finds its socket empty between them.
func sendBigMessage(t *testing.T, c *rawClient) []byte {
	t.Helper()
	c.send("EHLO a.example\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n")
	c.expect("250 ")
	c.expect("250 2.1.0")
	c.expect("250 2.1.5")
	c.expect("354 ")
	var want bytes.Buffer
	for i := 0; i < 3000; i++ {
		fmt.Fprintf(&want, "line %04d %s\r\n", i, strings.Repeat("x", 60))
	}
	body := want.Bytes()
	for off := 0; off < len(body); off += 50000 {
		c.send(string(body[off:min(off+50000, len(body))]))
		time.Sleep(3 * time.Millisecond)
	}
	c.send(".\r\n")
	c.expect("250 2.0.0")
	return body
}

func TestQuietReads(t *testing.T) {
	for _, tc := range []struct {
		name     string
		sessions int
		quiet    bool
	}{{"on", 2, true}, {"off", -1, false}} {
		t.Run(tc.name, func(t *testing.T) {
			checkGoroutines(t)
			b := &testBackend{}
			o := testOptions(t)
			o.QuietSessions = tc.sessions
			o.QuietWait = time.Millisecond // shorter than the trickle's pauses: both ways taken
			s, addr := startServer(t, b, o)
			c := dialRaw(t, addr)
			c.expect("220 ")
			body := sendBigMessage(t, c)
			c.send("QUIT\r\n")
			c.expect("221 ")
			c.expectClosed()
			m, ok := b.lastMessage()
			if !ok || !bytes.Equal(m.Data, body) {
				t.Fatalf("stored %d bytes, sent %d (equal: %v)", len(m.Data), len(body), ok && bytes.Equal(m.Data, body))
			}
			if q := s.Stats().QuietReads; (q > 0) != tc.quiet {
				t.Fatalf("quiet reads: %d, want them %v", q, tc.quiet)
			}
		})
	}
}

// TestQuietReadsOnlyWhileFewSessions: a connection accepted while
// QuietSessions sessions are open is served through the runtime's poller.
func TestQuietReadsOnlyWhileFewSessions(t *testing.T) {
	checkGoroutines(t)
	o := testOptions(t)
	o.QuietSessions = 1
	s, addr := startServer(t, &testBackend{}, o)
	a := dialRaw(t, addr)
	a.expect("220 ")
	a.send("NOOP\r\n")
	a.expect("250 ")
	if s.Stats().QuietReads == 0 {
		t.Fatal("a lone session did not read quietly")
	}
	b := dialRaw(t, addr)
	b.expect("220 ")
	time.Sleep(20 * time.Millisecond) // a's session is back in its read
	before := s.Stats().QuietReads
	for range 5 {
		b.send("NOOP\r\n")
		b.expect("250 ")
	}
	if after := s.Stats().QuietReads; after != before {
		t.Fatalf("%d quiet reads by a session accepted while another was open, QuietSessions 1", after-before)
	}
	a.send("NOOP\r\n")
	a.expect("250 ")
}

// TestQuietReadTimeout: the read timeout holds while a session waits in the
// kernel, and a client that goes away ends its session.
func TestQuietReadTimeout(t *testing.T) {
	checkGoroutines(t)
	o := testOptions(t)
	o.QuietSessions = 2
	o.QuietWait = 50 * time.Millisecond
	o.ReadTimeout = 300 * time.Millisecond
	s, addr := startServer(t, &testBackend{}, o)
	c := dialRaw(t, addr)
	c.expect("220 ")
	start := time.Now()
	c.expect("421 4.4.2")
	if d := time.Since(start); d < 150*time.Millisecond || d > 3*time.Second {
		t.Fatalf("timed out after %v, want about 300ms", d)
	}
	c.expectClosed()

	gone := dialRaw(t, addr)
	gone.expect("220 ")
	gone.nc.Close()
	deadline := time.Now().Add(3 * time.Second)
	for s.Stats().Active > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if a := s.Stats().Active; a != 0 {
		t.Fatalf("%d sessions still open after their clients left", a)
	}
}

// TestQuietShutdown: Shutdown ends an idle session that waits in the
// kernel with 421, at the latest when that wait ends.
func TestQuietShutdown(t *testing.T) {
	checkGoroutines(t)
	o := testOptions(t)
	o.QuietSessions = 2
	o.QuietWait = 200 * time.Millisecond
	s, addr := startServer(t, &testBackend{}, o)
	c := dialRaw(t, addr)
	c.expect("220 ")
	c.send("NOOP\r\n")
	c.expect("250 ")
	time.Sleep(20 * time.Millisecond) // in ppoll now
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	start := time.Now()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	c.expect("421 4.3.2")
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Shutdown took %v", d)
	}
}
