package proxy_test

import (
	"crypto/tls"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"postern/mailbox/proxy"
)

// pop3Login logs in at addr with USER/PASS, or AUTH PLAIN when sasl, and
// returns the answer to the login.
func pop3Login(t *testing.T, addr, user, pass string, sasl bool) (*client, string) {
	t.Helper()
	c := dial(t, addr)
	if g := c.line(); !strings.HasPrefix(g, "+OK") {
		t.Fatalf("greeting %q", g)
	}
	if sasl {
		c.send("AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00"+user+"\x00"+pass)))
		return c, c.line()
	}
	c.send("USER " + user)
	if l := c.line(); !strings.HasPrefix(l, "+OK") {
		t.Fatalf("USER: %q", l)
	}
	c.send("PASS " + pass)
	return c, c.line()
}

// multiline reads a POP3 multi-line answer's lines after the status line,
// without the final ".".
func (c *client) multiline() []string {
	c.t.Helper()
	var lines []string
	for {
		l := c.line()
		if l == "." {
			return lines
		}
		lines = append(lines, strings.TrimPrefix(l, "."))
	}
}

// TestPOP3ProxiedSession: alice logs in at the front (USER/PASS, then AUTH
// PLAIN) and STAT, LIST, RETR, DELE and QUIT act on the backend's Maildir.
func TestPOP3ProxiedSession(t *testing.T) {
	for _, sasl := range []bool{false, true} {
		name := "USER/PASS"
		if sasl {
			name = "AUTH PLAIN"
		}
		t.Run(name, func(t *testing.T) {
			cl := newCluster(t, nil)
			cl.back.deliver("alice", "first on the backend")
			cl.back.deliver("alice", "second on the backend")
			cl.front.deliver("alice", "stale copy on the front")
			backBefore := cl.back.pop3.Stats().Connections

			c, reply := pop3Login(t, cl.front.pop3Addr, "alice", "secret", sasl)
			if !strings.HasPrefix(reply, "+OK") || !strings.Contains(reply, "2 messages") {
				t.Fatalf("login answer %q, want the backend's (2 messages)", reply)
			}
			if got := cl.back.pop3.Stats().Connections - backBefore; got != 1 {
				t.Fatalf("backend connections: %d new, want 1", got)
			}
			c.send("STAT")
			if l := c.line(); !strings.HasPrefix(l, "+OK 2 ") {
				t.Fatalf("STAT %q", l)
			}
			c.send("LIST")
			if l := c.line(); !strings.HasPrefix(l, "+OK") {
				t.Fatalf("LIST %q", l)
			}
			if lines := c.multiline(); len(lines) != 2 {
				t.Fatalf("LIST %q", lines)
			}
			c.send("RETR 1")
			if l := c.line(); !strings.HasPrefix(l, "+OK") {
				t.Fatalf("RETR %q", l)
			}
			if msg := c.multiline(); !hasLine(msg, "Subject: first on the backend") {
				t.Fatalf("RETR %q", msg)
			}
			c.send("DELE 1")
			if l := c.line(); !strings.HasPrefix(l, "+OK") {
				t.Fatalf("DELE %q", l)
			}
			c.send("QUIT")
			if l := c.line(); !strings.HasPrefix(l, "+OK") {
				t.Fatalf("QUIT %q", l)
			}
			if !c.closed() {
				t.Fatal("connection open after QUIT")
			}
			waitFor(t, "both sessions to end", func() bool {
				return cl.front.pop3.Stats().ActiveSessions == 0 && cl.back.pop3.Stats().ActiveSessions == 0
			})
			if n := cl.back.countMessages("alice"); n != 1 {
				t.Fatalf("backend has %d messages after DELE and QUIT, want 1", n)
			}
			if n := cl.front.countMessages("alice"); n != 1 {
				t.Fatalf("front's own copy changed: %d messages", n)
			}
			if st := cl.front.pop3.Stats(); st.ProxiedSessions != 1 || st.ProxyFailures != 0 {
				t.Fatalf("front stats %+v", st)
			}
		})
	}
}

// TestPOP3ServedLocally: bob (no mailhost) and carol (mailhost = this
// host) are served from the front's Maildirs.
func TestPOP3ServedLocally(t *testing.T) {
	cl := newCluster(t, nil)
	for _, u := range []struct{ name, pass string }{{"bob", "hunter2"}, {"carol", "s3cret"}} {
		cl.front.deliver(u.name, "local")
		cl.back.deliver(u.name, "backend 1")
		cl.back.deliver(u.name, "backend 2")
		c, reply := pop3Login(t, cl.front.pop3Addr, u.name, u.pass, false)
		if !strings.Contains(reply, "1 messages") {
			t.Fatalf("%s: login %q, want the front's 1 message", u.name, reply)
		}
		c.send("QUIT")
		c.line()
	}
	if st := cl.back.pop3.Stats(); st.Connections != 0 {
		t.Fatalf("backend had %d connections", st.Connections)
	}
}

// TestPOP3Failures: a wrong password never reaches the backend; a backend
// refusal is an -ERR at once; a backend that is down or silent is
// -ERR [SYS/TEMP] within the timeouts.
func TestPOP3Failures(t *testing.T) {
	cl := newCluster(t, nil)
	_, reply := pop3Login(t, cl.front.pop3Addr, "alice", "wrong", false)
	if !strings.HasPrefix(reply, "-ERR [AUTH]") {
		t.Fatalf("wrong password: %q", reply)
	}
	if n := cl.back.pop3.Stats().Connections; n != 0 {
		t.Fatalf("a wrong password reached the backend (%d connections)", n)
	}

	c, reply := pop3Login(t, cl.front.pop3Addr, "dave", "pw-front", false)
	if !strings.HasPrefix(reply, "-ERR [AUTH]") {
		t.Fatalf("backend refusal: %q", reply)
	}
	c.send("NOOP") // still in AUTHORIZATION: not logged in
	if l := c.line(); !strings.HasPrefix(l, "-ERR") {
		t.Fatalf("NOOP after refusal: %q", l)
	}

	for _, port := range []int{deadPort(t), silentListener(t)} {
		cl.frontPOP3.Port = port
		cl.frontPOP3.LoginTimeout = 500 * time.Millisecond
		start := time.Now()
		_, reply := pop3Login(t, cl.front.pop3Addr, "alice", "secret", true)
		if !strings.HasPrefix(reply, "-ERR [SYS/TEMP]") {
			t.Fatalf("backend down: %q", reply)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Fatalf("took %v", d)
		}
	}
	if st := cl.front.pop3.Stats(); st.ProxyFailures != 3 || st.ProxiedSessions != 0 {
		t.Fatalf("front stats %+v, want 3 failures", st)
	}
}

// TestPOP3STLSToBackend: STLS to a backend that only takes logins over
// TLS, its certificate verified.
func TestPOP3STLSToBackend(t *testing.T) {
	serverTLS, pool := testCert(t)
	cl := newCluster(t, func(front, back *hostOptions) {
		back.tls, back.secureOnly = serverTLS, true
		front.imapProxy = &proxy.Config{Enabled: true, Me: "front.test", TLS: proxy.TLSStartTLS,
			TLSConfig: &tls.Config{RootCAs: pool}, DialTimeout: 2 * time.Second, LoginTimeout: 2 * time.Second}
		front.pop3Proxy = &proxy.Config{Enabled: true, Me: "front.test", TLS: proxy.TLSStartTLS,
			TLSConfig: &tls.Config{RootCAs: pool}, DialTimeout: 2 * time.Second, LoginTimeout: 2 * time.Second}
	})
	cl.back.deliver("alice", "over tls")
	c, reply := pop3Login(t, cl.front.pop3Addr, "alice", "secret", false)
	if !strings.Contains(reply, "1 messages") {
		t.Fatalf("login %q", reply)
	}
	c.send("RETR 1")
	c.line()
	if msg := c.multiline(); !hasLine(msg, "Subject: over tls") {
		t.Fatalf("RETR %q", msg)
	}
	c.send("QUIT")
	c.line()

	cl.frontPOP3.TLS = proxy.TLSNone
	if _, reply := pop3Login(t, cl.front.pop3Addr, "alice", "secret", false); strings.HasPrefix(reply, "+OK") {
		t.Fatalf("plain login to a TLS-only backend: %q", reply)
	}
}

// TestPOP3ShutdownDuringRelay: the front's shutdown ends a proxied
// session without QUIT, so the backend enters no UPDATE state and the
// message marked with DELE stays (RFC 1939 section 6).
func TestPOP3ShutdownDuringRelay(t *testing.T) {
	cl := newCluster(t, nil)
	cl.back.deliver("alice", "keep me")
	c, reply := pop3Login(t, cl.front.pop3Addr, "alice", "secret", false)
	if !strings.HasPrefix(reply, "+OK") {
		t.Fatalf("login %q", reply)
	}
	c.send("DELE 1")
	if l := c.line(); !strings.HasPrefix(l, "+OK") {
		t.Fatalf("DELE %q", l)
	}
	start := time.Now()
	cl.front.stop()
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("shutdown took %v", d)
	}
	if !c.closed() {
		t.Fatal("connection still open")
	}
	waitFor(t, "the backend session to end", func() bool { return cl.back.pop3.Stats().ActiveSessions == 0 })
	if n := cl.back.countMessages("alice"); n != 1 {
		t.Fatalf("backend has %d messages, want 1 (no QUIT, no UPDATE)", n)
	}
}
