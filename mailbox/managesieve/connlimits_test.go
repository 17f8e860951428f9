package managesieve

import (
	"bufio"
	"io"
	"net"
	"testing"
	"time"

	"postern/internal/netserve"
)

func withLimits(lim netserve.Limits) func(*Options) {
	return func(o *Options) { o.ConnLimits = func() netserve.Limits { return lim } }
}

// expectRefusal dials and expects BYE (TRYLATER) instead of the greeting,
// then EOF.
func (e *testEnv) expectRefusal(why string) {
	e.t.Helper()
	c, err := net.DialTimeout("tcp", e.addr, 5*time.Second)
	if err != nil {
		e.t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	if line, err := br.ReadString('\n'); err != nil || line != `BYE (TRYLATER) "`+why+"\"\r\n" {
		e.t.Fatalf("over the limit: %q, %v; want the refusal %q", line, err, why)
	}
	if rest, err := io.ReadAll(br); len(rest) > 0 || err != nil {
		e.t.Fatalf("after the refusal: %q, %v; want EOF", rest, err)
	}
}

func (e *testEnv) waitActive(n int64) {
	e.t.Helper()
	for deadline := time.Now().Add(10 * time.Second); e.srv.Stats().ActiveSessions != n; {
		if time.Now().After(deadline) {
			e.t.Fatalf("%d sessions, want %d", e.srv.Stats().ActiveSessions, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
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
