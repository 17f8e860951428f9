package managesieve

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
	netservetest.ExpectRefusal(e.t, netservetest.Dial(e.t, e.addr), `BYE (TRYLATER) "`+why+"\"\r\n")
}

func (e *testEnv) waitActive(n int64) {
	e.t.Helper()
	netservetest.WaitActive(e.t, func() int64 { return e.srv.Stats().ActiveSessions }, n)
}

func TestConnectionsPerAddressLimit(t *testing.T) {
	env := newTestEnv(t, withLimits(netserve.Limits{PerIP: 2}))
	first, _ := env.dial()
	env.dial()
	env.expectRefusal(netserve.TooManyFromAddress)
	first.expect("LOGOUT", "OK")
	env.waitActive(1)
	env.login("alice")
	if st := env.srv.Stats(); st.ConnectionsRefused != 1 || st.LoginsRefused != 0 {
		t.Errorf("refused connections %d, logins %d; want 1, 0", st.ConnectionsRefused, st.LoginsRefused)
	}
}

func TestConnectionsTotalLimit(t *testing.T) {
	env := newTestEnv(t, withLimits(netserve.Limits{Total: 1}))
	first := env.login("alice")
	env.expectRefusal(netserve.TooManyConnections)
	first.conn.Close()
	env.waitActive(0)
	env.dial()
}

// A login over the per-user and address limit gets NO (TRYLATER); the
// connection stays and logs in once the user's other session has ended.
func TestLoginsPerUserAndAddressLimit(t *testing.T) {
	env := newTestEnv(t, withLimits(netserve.Limits{UserIP: 1}))
	first := env.login("alice")
	c, _ := env.dial()
	c.startTLS(env)
	auth := `AUTHENTICATE "PLAIN" "` + plainResponse("", "alice", testPassword) + `"`
	if _, status := c.cmd(auth); status != `NO (TRYLATER) "`+netserve.TooManyForUser+`"` {
		t.Fatalf("second login: %q", status)
	}
	c.expect("NOOP", "OK")
	first.expect("LOGOUT", "OK")
	env.waitActive(1)
	c.expect(auth, "OK")
	if st := env.srv.Stats(); st.LoginsRefused != 1 {
		t.Errorf("refused logins %d, want 1", st.LoginsRefused)
	}
}
