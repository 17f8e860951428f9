package proxy_test

import (
	"crypto/tls"
	"runtime"
	"strings"
	"testing"
	"time"

	"postern/mailbox/proxy"
)

// cluster is two mailbox hosts sharing one account database: the front
// (front.test) where clients connect, and the backend (127.0.0.1, the name
// alice's mailhost gives) where alice's mail is.
type cluster struct {
	db           *accountDB
	front, back  *host
	frontIMAP    *proxy.Config
	frontPOP3    *proxy.Config
	goroutinesAt int
}

func newCluster(t *testing.T, mutate func(front, back *hostOptions)) *cluster {
	t.Helper()
	c := &cluster{goroutinesAt: runtime.NumGoroutine()}
	c.db = &accountDB{
		password: map[string]string{"alice": "secret", "bob": "hunter2", "carol": "s3cret", "dave": "pw-front",
			"erin": "p\u00e4ss \"w\u00f6rd\""},
		mailhost: map[string]string{
			"alice": "127.0.0.1",
			"erin":  "127.0.0.1",
			"carol": "FRONT.test.", // this host, spelt otherwise: served here
			"dave":  "127.0.0.1",
		},
	}
	frontOpt := hostOptions{name: "front.test"}
	backOpt := hostOptions{name: "127.0.0.1",
		imapProxy: &proxy.Config{Enabled: true, Me: "127.0.0.1"},
		pop3Proxy: &proxy.Config{Enabled: true, Me: "127.0.0.1"},
		// The backend's copy of the database has another password for
		// dave: the front accepts dave, the backend refuses him.
		override: map[string]string{"dave": "pw-back"},
	}
	if mutate != nil {
		mutate(&frontOpt, &backOpt)
	}
	c.back = startHost(t, c.db, backOpt)
	c.frontIMAP = &proxy.Config{Enabled: true, Me: "front.test", Port: portOf(t, c.back.imapAddr),
		DialTimeout: 2 * time.Second, LoginTimeout: 2 * time.Second, Logger: testLogger()}
	c.frontPOP3 = &proxy.Config{Enabled: true, Me: "front.test", Port: portOf(t, c.back.pop3Addr),
		DialTimeout: 2 * time.Second, LoginTimeout: 2 * time.Second, Logger: testLogger()}
	if frontOpt.imapProxy != nil {
		// The test's own settings (TLS), with the backend's ports.
		frontOpt.imapProxy.Port, frontOpt.pop3Proxy.Port = c.frontIMAP.Port, c.frontPOP3.Port
		c.frontIMAP, c.frontPOP3 = frontOpt.imapProxy, frontOpt.pop3Proxy
	}
	frontOpt.imapProxy, frontOpt.pop3Proxy = c.frontIMAP, c.frontPOP3
	c.front = startHost(t, c.db, frontOpt)
	t.Cleanup(func() {
		c.front.stop()
		c.back.stop()
		waitGoroutines(t, c.goroutinesAt)
	})
	return c
}

func imapLogin(t *testing.T, addr, user, pass string) (*client, string) {
	t.Helper()
	c := dial(t, addr)
	if g := c.line(); !strings.HasPrefix(g, "* OK") {
		t.Fatalf("greeting %q", g)
	}
	_, tagged := c.imapCmd("a1", "LOGIN "+user+" "+pass)
	return c, tagged
}

func hasLine(lines []string, want string) bool {
	for _, l := range lines {
		if strings.Contains(l, want) {
			return true
		}
	}
	return false
}

// TestIMAPProxiedSession: alice logs in at the front and works on the
// backend's Maildir: SELECT and FETCH see a message that exists only
// there, IDLE sees one delivered there, STORE and EXPUNGE remove it from
// the backend's disk, LOGOUT ends both sessions.
func TestIMAPProxiedSession(t *testing.T) {
	cl := newCluster(t, nil)
	cl.back.deliver("alice", "only on the backend")
	cl.front.deliver("alice", "stale copy on the front") // must never be seen
	backBefore := cl.back.imap.Stats().SessionsTotal

	c, tagged := imapLogin(t, cl.front.imapAddr, "alice", "secret")
	if !strings.HasPrefix(tagged, "a1 OK [CAPABILITY IMAP4rev1") {
		t.Fatalf("LOGIN answer %q, want the backend's tagged OK with its capabilities", tagged)
	}
	if got := cl.back.imap.Stats().SessionsTotal - backBefore; got != 1 {
		t.Fatalf("backend sessions: %d new, want 1", got)
	}
	if st := cl.front.imap.Stats(); st.ProxiedSessions != 1 || st.ProxyFailures != 0 {
		t.Fatalf("front stats %+v, want 1 proxied session, 0 failures", st)
	}

	untagged, tagged := c.imapCmd("a2", "SELECT INBOX")
	if !strings.HasPrefix(tagged, "a2 OK") || !hasLine(untagged, "* 1 EXISTS") {
		t.Fatalf("SELECT: %q %q", untagged, tagged)
	}
	untagged, tagged = c.imapCmd("a3", "FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
	if !strings.HasPrefix(tagged, "a3 OK") || !hasLine(untagged, "Subject: only on the backend") {
		t.Fatalf("FETCH: %q %q", untagged, tagged)
	}

	c.send("a4 IDLE")
	if l := c.line(); !strings.HasPrefix(l, "+ ") {
		t.Fatalf("IDLE: %q", l)
	}
	cl.back.deliver("alice", "arrived during IDLE")
	if l := c.line(); l != "* 2 EXISTS" {
		t.Fatalf("IDLE update %q, want * 2 EXISTS", l)
	}
	c.send("DONE")
	if _, tagged := c.untilTagged("a4"); !strings.HasPrefix(tagged, "a4 OK") {
		t.Fatalf("IDLE end %q", tagged)
	}

	untagged, tagged = c.imapCmd("a5", `STORE 1 +FLAGS (\Deleted)`)
	if !strings.HasPrefix(tagged, "a5 OK") || !hasLine(untagged, `\Deleted`) {
		t.Fatalf("STORE: %q %q", untagged, tagged)
	}
	untagged, tagged = c.imapCmd("a6", "EXPUNGE")
	if !strings.HasPrefix(tagged, "a6 OK") || !hasLine(untagged, "* 1 EXPUNGE") {
		t.Fatalf("EXPUNGE: %q %q", untagged, tagged)
	}
	if n := cl.back.countMessages("alice"); n != 1 {
		t.Fatalf("backend has %d messages for alice after EXPUNGE, want 1", n)
	}
	if n := cl.front.countMessages("alice"); n != 1 {
		t.Fatalf("the front's own copy changed: %d messages, want 1", n)
	}

	untagged, tagged = c.imapCmd("a7", "LOGOUT")
	if !strings.HasPrefix(tagged, "a7 OK") || !hasLine(untagged, "* BYE") {
		t.Fatalf("LOGOUT: %q %q", untagged, tagged)
	}
	if !c.closed() {
		t.Fatal("front did not close the connection after LOGOUT")
	}
	waitFor(t, "both sessions to end", func() bool {
		return cl.front.imap.Stats().SessionsActive == 0 && cl.back.imap.Stats().SessionsActive == 0
	})
}

// TestIMAPServedLocally: accounts without a mailhost, or whose mailhost is
// this host (in another case, with a trailing dot), are served from the
// front's own Maildirs, and the backend is never contacted.
func TestIMAPServedLocally(t *testing.T) {
	cl := newCluster(t, nil)
	backBefore := cl.back.imap.Stats().SessionsTotal
	for _, u := range []struct{ name, pass string }{{"bob", "hunter2"}, {"carol", "s3cret"}} {
		cl.front.deliver(u.name, "local mail of "+u.name)
		cl.back.deliver(u.name, "backend mail of "+u.name)
		cl.back.deliver(u.name, "more backend mail of "+u.name)
		c, tagged := imapLogin(t, cl.front.imapAddr, u.name, u.pass)
		if !strings.HasPrefix(tagged, "a1 OK") {
			t.Fatalf("%s: LOGIN %q", u.name, tagged)
		}
		untagged, _ := c.imapCmd("a2", "SELECT INBOX")
		if !hasLine(untagged, "* 1 EXISTS") {
			t.Fatalf("%s: SELECT %q, want the front's one message", u.name, untagged)
		}
		c.imapCmd("a3", "LOGOUT")
	}
	if got := cl.back.imap.Stats().SessionsTotal - backBefore; got != 0 {
		t.Fatalf("backend got %d sessions for local users", got)
	}
	if st := cl.front.imap.Stats(); st.ProxiedSessions != 0 {
		t.Fatalf("front proxied %d sessions", st.ProxiedSessions)
	}
}

// TestIMAPWrongPasswordStaysAtFront: the front checks the password first,
// as Courier does; a wrong one never reaches the backend.
func TestIMAPWrongPasswordStaysAtFront(t *testing.T) {
	cl := newCluster(t, nil)
	backBefore := cl.back.imap.Stats().SessionsTotal
	_, tagged := imapLogin(t, cl.front.imapAddr, "alice", "wrong")
	if !strings.HasPrefix(tagged, "a1 NO [AUTHENTICATIONFAILED]") {
		t.Fatalf("LOGIN %q", tagged)
	}
	if got := cl.back.imap.Stats().SessionsTotal - backBefore; got != 0 {
		t.Fatalf("a wrong password reached the backend (%d sessions)", got)
	}
}

// TestIMAPBackendRefuses: the backend refuses a password the front took;
// the client gets the backend's NO at once, the session stays usable.
func TestIMAPBackendRefuses(t *testing.T) {
	cl := newCluster(t, nil)
	start := time.Now()
	c, tagged := imapLogin(t, cl.front.imapAddr, "dave", "pw-front")
	if !strings.HasPrefix(tagged, "a1 NO [AUTHENTICATIONFAILED]") {
		t.Fatalf("LOGIN %q, want the backend's NO", tagged)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("refusal took %v", d)
	}
	if st := cl.front.imap.Stats(); st.ProxyFailures != 1 || st.ProxiedSessions != 0 {
		t.Fatalf("front stats %+v", st)
	}
	if _, tagged := c.imapCmd("a2", "NOOP"); !strings.HasPrefix(tagged, "a2 OK") {
		t.Fatalf("NOOP after the refusal: %q", tagged)
	}
}

// TestIMAPBackendDown: a backend port nobody listens on, and a backend
// that accepts but never greets, give NO [UNAVAILABLE] within the
// timeouts, never a hang.
func TestIMAPBackendDown(t *testing.T) {
	cl := newCluster(t, nil)
	dead := deadPort(t)
	silent := silentListener(t)
	for _, tc := range []struct {
		name string
		port int
	}{{"refused", dead}, {"silent", silent}} {
		t.Run(tc.name, func(t *testing.T) {
			cl.frontIMAP.Port = tc.port
			cl.frontIMAP.LoginTimeout = 500 * time.Millisecond
			start := time.Now()
			c, tagged := imapLogin(t, cl.front.imapAddr, "alice", "secret")
			if !strings.HasPrefix(tagged, "a1 NO [UNAVAILABLE]") {
				t.Fatalf("LOGIN %q", tagged)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Fatalf("took %v", d)
			}
			c.imapCmd("a2", "LOGOUT")
		})
	}
	if st := cl.front.imap.Stats(); st.ProxyFailures != 2 {
		t.Fatalf("front stats %+v, want 2 failures", st)
	}
}

// TestIMAPFallbackToLocal: a mailhost list whose reachable entry is this
// host, after a dead one, is served here (Courier tries the list in
// order).
func TestIMAPFallbackToLocal(t *testing.T) {
	cl := newCluster(t, nil)
	cl.db.mu.Lock()
	cl.db.mailhost["alice"] = "127.0.0.1:" + itoa(deadPort(t)) + ",front.test"
	cl.db.mu.Unlock()
	cl.front.deliver("alice", "here")
	c, tagged := imapLogin(t, cl.front.imapAddr, "alice", "secret")
	if !strings.HasPrefix(tagged, "a1 OK") {
		t.Fatalf("LOGIN %q", tagged)
	}
	if untagged, _ := c.imapCmd("a2", "SELECT INBOX"); !hasLine(untagged, "* 1 EXISTS") {
		t.Fatalf("SELECT %q", untagged)
	}
}

// TestIMAPStartTLSToBackend: with STARTTLS to the backend, the login goes
// over TLS (this backend refuses logins without it) and the certificate
// is verified: an untrusted one makes the backend unavailable.
func TestIMAPStartTLSToBackend(t *testing.T) {
	serverTLS, pool := testCert(t)
	_, otherPool := testCert(t)
	var cl *cluster
	cl = newCluster(t, func(front, back *hostOptions) {
		back.tls, back.secureOnly = serverTLS, true
		front.imapProxy = &proxy.Config{Enabled: true, Me: "front.test", TLS: proxy.TLSStartTLS,
			TLSConfig: &tls.Config{RootCAs: pool}, DialTimeout: 2 * time.Second, LoginTimeout: 2 * time.Second}
		front.pop3Proxy = &proxy.Config{Enabled: true, Me: "front.test", TLS: proxy.TLSStartTLS,
			TLSConfig: &tls.Config{RootCAs: pool}, DialTimeout: 2 * time.Second, LoginTimeout: 2 * time.Second}
	})
	cl.back.deliver("alice", "over tls")
	c, tagged := imapLogin(t, cl.front.imapAddr, "alice", "secret")
	if !strings.HasPrefix(tagged, "a1 OK") {
		t.Fatalf("LOGIN %q", tagged)
	}
	if untagged, _ := c.imapCmd("a3", "SELECT INBOX"); !hasLine(untagged, "* 1 EXISTS") {
		t.Fatalf("SELECT %q", untagged)
	}
	untagged, _ := c.imapCmd("a4", "FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
	if !hasLine(untagged, "Subject: over tls") {
		t.Fatalf("FETCH %q", untagged)
	}
	c.imapCmd("a5", "LOGOUT")

	// Without STARTTLS this backend refuses the login outright.
	cl.frontIMAP.TLS = proxy.TLSNone
	if _, tagged := imapLogin(t, cl.front.imapAddr, "alice", "secret"); strings.HasPrefix(tagged, "a1 OK") {
		t.Fatalf("plain LOGIN to a TLS-only backend succeeded: %q", tagged)
	}
	// An untrusted certificate: unavailable.
	cl.frontIMAP.TLS = proxy.TLSStartTLS
	cl.frontIMAP.TLSConfig = &tls.Config{RootCAs: otherPool}
	if _, tagged := imapLogin(t, cl.front.imapAddr, "alice", "secret"); !strings.HasPrefix(tagged, "a1 NO [UNAVAILABLE]") {
		t.Fatalf("LOGIN with an untrusted backend certificate: %q", tagged)
	}
}

// TestIMAPShutdownDuringRelay: the front's graceful shutdown ends a
// proxied session: the backend's session ends, the client gets BYE and
// the connection closes, within Shutdown's deadline.
func TestIMAPShutdownDuringRelay(t *testing.T) {
	cl := newCluster(t, nil)
	c, tagged := imapLogin(t, cl.front.imapAddr, "alice", "secret")
	if !strings.HasPrefix(tagged, "a1 OK") {
		t.Fatalf("LOGIN %q", tagged)
	}
	c.imapCmd("a2", "SELECT INBOX")
	start := time.Now()
	cl.front.stop()
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("shutdown took %v", d)
	}
	if l := c.line(); l != "* BYE server shutting down" {
		t.Fatalf("after shutdown: %q", l)
	}
	if !c.closed() {
		t.Fatal("connection still open")
	}
	waitFor(t, "the backend session to end", func() bool { return cl.back.imap.Stats().SessionsActive == 0 })
}

// TestIMAPLiteralPassword: a password that cannot be a quoted string
// (8-bit) reaches the backend as a synchronizing literal.
func TestIMAPLiteralPassword(t *testing.T) {
	cl := newCluster(t, nil)
	cl.back.deliver("erin", "for erin")
	pass := "p\u00e4ss \"w\u00f6rd\""
	c := dial(t, cl.front.imapAddr)
	c.line()
	c.send("a1 LOGIN erin {" + itoa(len(pass)) + "}")
	if l := c.line(); !strings.HasPrefix(l, "+") {
		t.Fatalf("literal: %q", l)
	}
	c.send(pass)
	if _, tagged := c.untilTagged("a1"); !strings.HasPrefix(tagged, "a1 OK") {
		t.Fatalf("LOGIN %q", tagged)
	}
	if untagged, _ := c.imapCmd("a2", "SELECT INBOX"); !hasLine(untagged, "* 1 EXISTS") {
		t.Fatalf("SELECT %q", untagged)
	}
	if st := cl.front.imap.Stats(); st.ProxiedSessions != 1 {
		t.Fatalf("front stats %+v", st)
	}
}
