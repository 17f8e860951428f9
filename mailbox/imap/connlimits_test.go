package imap

import (
	"bufio"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"postern/internal/netserve"
	"postern/internal/netserve/netservetest"
)

// limitedEnv is a test server under fixed connection limits.
func limitedEnv(t *testing.T, lim netserve.Limits) *testEnv {
	return newTestEnv(t, func(o *Options) {
		o.ConnLimits = func() netserve.Limits { return lim }
	})
}

func (e *testEnv) waitActive(n int) {
	e.t.Helper()
	netservetest.WaitActive(e.t, func() int { return e.srv.Stats().SessionsActive }, n)
}

// refusedAtGreeting dials and expects the refusal instead of the greeting,
// then the connection's end.
func (e *testEnv) refusedAtGreeting(why string) {
	e.t.Helper()
	netservetest.ExpectRefusal(e.t, netservetest.Dial(e.t, e.addr), "* BYE [UNAVAILABLE] "+why+"\r\n")
}

func TestConnectionsPerAddressLimit(t *testing.T) {
	env := limitedEnv(t, netserve.Limits{PerIP: 2})
	first := env.dial()
	first.expect("* OK")
	env.dial().expect("* OK")
	env.refusedAtGreeting(netserve.TooManyFromAddress)
	first.c.Close()
	env.waitActive(1)
	env.login("alice", "secret")
	if st := env.srv.Stats(); st.ConnectionsRefused != 1 || st.LoginsRefused != 0 {
		t.Errorf("refused connections %d, logins %d; want 1, 0", st.ConnectionsRefused, st.LoginsRefused)
	}
}

func TestConnectionsTotalLimit(t *testing.T) {
	env := limitedEnv(t, netserve.Limits{Total: 1, PerIP: 5})
	first := env.login("alice", "secret")
	env.refusedAtGreeting(netserve.TooManyConnections)
	first.send("L2 LOGOUT\r\n")
	first.until("L2 OK")
	env.waitActive(0)
	env.dial().expect("* OK")
}

// RFC 5530's LIMIT answers a login over the per-user and address limit;
// the connection stays, and the same client logs in once another
// session of the user has ended.
func TestLoginsPerUserAndAddressLimit(t *testing.T) {
	env := limitedEnv(t, netserve.Limits{UserIP: 2})
	first := env.login("alice", "secret")
	env.login("alice", "secret")
	r := env.dial()
	r.expect("* OK")
	r.send("L1 LOGIN alice secret\r\n")
	r.expect("L1 NO [LIMIT] " + netserve.TooManyForUser)
	r.send("n1 NOOP\r\n")
	r.expect("n1 OK")
	env.login("bob", "hunter2") // another user is not held back
	first.send("L2 LOGOUT\r\n")
	first.until("L2 OK")
	env.waitActive(3)
	r.send("L3 LOGIN alice secret\r\n")
	r.expect("L3 OK")
	if st := env.srv.Stats(); st.LoginsRefused != 1 || st.ConnectionsRefused != 0 {
		t.Errorf("refused logins %d, connections %d; want 1, 0", st.LoginsRefused, st.ConnectionsRefused)
	}
}

// Zero limits are none.
func TestZeroConnectionLimits(t *testing.T) {
	env := limitedEnv(t, netserve.Limits{})
	for i := 0; i < 12; i++ {
		env.login("alice", "secret")
	}
	if st := env.srv.Stats(); st.ConnectionsRefused != 0 || st.LoginsRefused != 0 {
		t.Errorf("refused %d connections, %d logins with no limits", st.ConnectionsRefused, st.LoginsRefused)
	}
}

// On an imaps listener the refusal is written inside TLS, where the
// client can read it.
func TestRefusalOverImplicitTLS(t *testing.T) {
	cfg := selfSignedTLS(t)
	env := newTestEnv(t, func(o *Options) {
		o.TLSConfig = cfg
		o.ConnLimits = func() netserve.Limits { return netserve.Limits{PerIP: 1} }
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go env.srv.ServeTLS(l)
	first, err := tls.Dial("tcp", l.Addr().String(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	first.SetDeadline(time.Now().Add(5 * time.Second))
	if line, err := bufio.NewReader(first).ReadString('\n'); err != nil || !strings.HasPrefix(line, "* OK") {
		t.Fatalf("first connection: %q, %v", line, err)
	}
	c, err := tls.Dial("tcp", l.Addr().String(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	netservetest.ExpectRefusal(t, c, "* BYE [UNAVAILABLE] "+netserve.TooManyFromAddress+"\r\n")
}
