package smap

import (
	"testing"

	"postern/internal/netserve"
	"postern/internal/netserve/netservetest"
)

func withLimits(lim netserve.Limits) func(*Options) {
	return func(o *Options) { o.ConnLimits = func() netserve.Limits { return lim } }
}

// expectRefusal dials and expects the refusal instead of the greeting,
// then EOF.
func (e *testEnv) expectRefusal(why string) {
	e.t.Helper()
	netservetest.ExpectRefusal(e.t, netservetest.Dial(e.t, e.addr), "-ERR "+why+"\r\n")
}

func (e *testEnv) waitActive(n int64) {
	e.t.Helper()
	netservetest.WaitActive(e.t, func() int64 { return e.srv.Stats().Active }, n)
}

func TestConnectionsPerAddressLimit(t *testing.T) {
	env := newTestEnv(t, withLimits(netserve.Limits{PerIP: 2}))
	first := env.dial()
	env.dial()
	env.expectRefusal(netserve.TooManyFromAddress)
	first.c.Close()
	env.waitActive(1)
	env.login()
	if st := env.srv.Stats(); st.ConnectionsRefused != 1 || st.LoginsRefused != 0 {
		t.Errorf("refused connections %d, logins %d; want 1, 0", st.ConnectionsRefused, st.LoginsRefused)
	}
}

func TestConnectionsTotalLimit(t *testing.T) {
	env := newTestEnv(t, withLimits(netserve.Limits{Total: 1}))
	first := env.login()
	env.expectRefusal(netserve.TooManyConnections)
	first.send("LOGOUT\n")
	env.waitActive(0)
	env.dial()
}

// A login over the per-user and address limit gets -ERR; the connection
// stays, and logs in once the user's other session has ended.
func TestLoginsPerUserAndAddressLimit(t *testing.T) {
	env := newTestEnv(t, withLimits(netserve.Limits{UserIP: 1}))
	first := env.login()
	cl := env.dial()
	if got := cl.cmd(`\SMAP1 LOGIN alice secret`); got != "-ERR "+netserve.TooManyForUser+".\r\n" {
		t.Fatalf("second login: %q", got)
	}
	if got := cl.cmd(`\SMAP1 LOGIN bob secret`); got != "+OK SMAP1 LOGIN Ok.\n" {
		t.Fatalf("another user: %q", got)
	}
	again := env.dial()
	first.send("LOGOUT\n")
	env.waitActive(2)
	if got := again.cmd(`\SMAP1 LOGIN alice secret`); got != "+OK SMAP1 LOGIN Ok.\n" {
		t.Fatalf("login after the other session ended: %q", got)
	}
	if st := env.srv.Stats(); st.LoginsRefused != 1 {
		t.Errorf("refused logins %d, want 1", st.LoginsRefused)
	}
}
