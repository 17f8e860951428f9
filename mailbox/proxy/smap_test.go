package proxy_test

import (
	"strings"
	"testing"
	"time"
)

// TestSMAPProxiedSession: a Courier SMAP client (Cone) switches the
// front's IMAP connection to SMAP and logs in; the front logs in at the
// backend's IMAP port the same way and relays, so OPEN sees the backend's
// INBOX; LOGOUT ends both.
func TestSMAPProxiedSession(t *testing.T) {
	cl := newCluster(t, nil)
	cl.back.deliver("alice", "one")
	cl.back.deliver("alice", "two")
	cl.front.deliver("alice", "stale")
	c := dial(t, cl.front.imapAddr)
	c.line() // IMAP greeting
	c.send(`\SMAP1 LOGIN alice secret`)
	if l := c.line(); !strings.HasPrefix(l, "+OK") {
		t.Fatalf("LOGIN %q", l)
	}
	c.send("OPEN INBOX")
	if l := c.line(); l != "* EXISTS 2" {
		t.Fatalf("OPEN %q, want the backend's 2 messages", l)
	}
	if l := c.line(); !strings.HasPrefix(l, "+OK") {
		t.Fatalf("OPEN %q", l)
	}
	c.send("LOGOUT")
	for {
		l, err := c.lineWithin(5 * time.Second)
		if err != nil {
			break
		}
		if strings.HasPrefix(l, "+OK") {
			break
		}
	}
	if !c.closed() {
		t.Fatal("connection open after LOGOUT")
	}
	if st := cl.front.smap.Stats(); st.ProxiedSessions != 1 || st.ProxyFailures != 0 {
		t.Fatalf("front SMAP stats %+v", st)
	}
	waitFor(t, "the backend session to end", func() bool { return cl.back.smap.Stats().Active == 0 })
}

// TestSMAPProxyFailures: a refusing backend and one that is down are
// -ERR answers, the session still at the login.
func TestSMAPProxyFailures(t *testing.T) {
	cl := newCluster(t, nil)
	c := dial(t, cl.front.imapAddr)
	c.line()
	c.send(`\SMAP1 LOGIN dave pw-front`)
	if l := c.line(); !strings.HasPrefix(l, "-ERR") {
		t.Fatalf("refused LOGIN %q", l)
	}
	cl.frontIMAP.Port = deadPort(t)
	c.send(`\SMAP1 LOGIN alice secret`)
	if l := c.line(); !strings.HasPrefix(l, "-ERR") || !strings.Contains(l, "try again later") {
		t.Fatalf("LOGIN with the backend down %q", l)
	}
	if st := cl.front.smap.Stats(); st.ProxyFailures != 2 {
		t.Fatalf("front SMAP stats %+v", st)
	}
}
