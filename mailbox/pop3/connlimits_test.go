package pop3

import (
	"crypto/tls"
	"net"
	"testing"
	"time"

	"postern/internal/netserve"
	"postern/internal/netserve/netservetest"
)

func withLimits(lim netserve.Limits) envOption {
	return func(o *Options) {
		o.AllowInsecureAuth = true
		o.ConnLimits = func() netserve.Limits { return lim }
	}
}

func (e *testEnv) waitActive(n int64) {
	e.t.Helper()
	netservetest.WaitActive(e.t, func() int64 { return e.srv.Stats().ActiveSessions }, n)
}

// expectRefusal reads the refusal instead of a greeting, then EOF.
func expectRefusal(t *testing.T, conn net.Conn, why string) {
	t.Helper()
	netservetest.ExpectRefusal(t, conn, "-ERR [SYS/TEMP] "+why+"\r\n")
}

func TestConnectionsPerAddressLimit(t *testing.T) {
	env := newTestEnv(t, withLimits(netserve.Limits{PerIP: 2}))
	first := env.dial()
	env.dial()
	expectRefusal(t, netservetest.Dial(t, env.addr), netserve.TooManyFromAddress)
	first.ok("QUIT")
	env.waitActive(1)
	env.login()
	if st := env.srv.Stats(); st.ConnectionsRefused != 1 || st.LoginsRefused != 0 {
		t.Errorf("refused connections %d, logins %d; want 1, 0", st.ConnectionsRefused, st.LoginsRefused)
	}
}

// The total counts both listeners (pop3 and pop3s), and on pop3s the
// refusal is written inside TLS.
func TestConnectionsTotalLimit(t *testing.T) {
	env := newTestEnv(t, withLimits(netserve.Limits{Total: 1}))
	first := env.dial()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", env.tlsAddr, env.clientTLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	expectRefusal(t, conn, netserve.TooManyConnections)
	first.conn.Close()
	env.waitActive(0)
	env.login()
}

// RFC 2449's IN-USE answers a login over the per-user and address
// limit; the session stays in AUTHORIZATION and logs in once the user's
// other session has ended.
func TestLoginsPerUserAndAddressLimit(t *testing.T) {
	env := newTestEnv(t, withLimits(netserve.Limits{UserIP: 1}))
	first := env.login()
	c := env.dial()
	c.ok("USER alice")
	if r := c.cmd("PASS secret pass"); r != "-ERR [IN-USE] "+netserve.TooManyForUser {
		t.Fatalf("second login: %q, want -ERR [IN-USE]", r)
	}
	c.ok("CAPA")
	c.multi()
	first.ok("QUIT")
	env.waitActive(1)
	c.ok("USER alice")
	c.ok("PASS secret pass")
	if st := env.srv.Stats(); st.LoginsRefused != 1 || st.ConnectionsRefused != 0 {
		t.Errorf("refused logins %d, connections %d; want 1, 0", st.LoginsRefused, st.ConnectionsRefused)
	}
}

func TestZeroConnectionLimits(t *testing.T) {
	env := newTestEnv(t, withLimits(netserve.Limits{}))
	for i := 0; i < 12; i++ {
		env.login()
	}
	if st := env.srv.Stats(); st.ConnectionsRefused != 0 || st.LoginsRefused != 0 {
		t.Errorf("refused %d connections, %d logins with no limits", st.ConnectionsRefused, st.LoginsRefused)
	}
}
