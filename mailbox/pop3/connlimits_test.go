package pop3

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"

	"postern/internal/netserve"
)

func withLimits(lim netserve.Limits) envOption {
	return func(o *Options) {
		o.AllowInsecureAuth = true
		o.ConnLimits = func() netserve.Limits { return lim }
	}
}

// waitActive waits until the server runs n sessions (a session ends a
// moment after its client closes).
func (e *testEnv) waitActive(n int64) {
	e.t.Helper()
	for deadline := time.Now().Add(10 * time.Second); e.srv.Stats().ActiveSessions != n; {
		if time.Now().After(deadline) {
			e.t.Fatalf("%d sessions, want %d", e.srv.Stats().ActiveSessions, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// expectRefusal reads the refusal instead of a greeting, then EOF.
func expectRefusal(t *testing.T, conn net.Conn, why string) {
	t.Helper()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(conn)
	line, err := br.ReadString('\n')
	if err != nil || line != "-ERR [SYS/TEMP] "+why+"\r\n" {
		t.Fatalf("over the limit: %q, %v; want the refusal %q", line, err, why)
	}
	if rest, err := io.ReadAll(br); len(rest) > 0 || err != nil {
		t.Fatalf("after the refusal: %q, %v; want EOF", rest, err)
	}
}

func (e *testEnv) dialRaw() net.Conn {
	e.t.Helper()
	conn, err := net.DialTimeout("tcp", e.addr, 5*time.Second)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { conn.Close() })
	return conn
}

func TestConnectionsPerAddressLimit(t *testing.T) {
	env := newTestEnv(t, withLimits(netserve.Limits{PerIP: 2}))
	first := env.dial()
	env.dial()
	expectRefusal(t, env.dialRaw(), netserve.TooManyFromAddress)
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
