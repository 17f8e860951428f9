package smap

import (
	"bufio"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"postern/auth"
	"postern/internal/netserve/netservetest"
)

// STARTTLS before login, as Courier's SMAP offers it, then LOGIN over TLS
// where it is refused in the clear.
func TestStartTLSThenLogin(t *testing.T) {
	serverTLS, _ := netservetest.TLSConfigs(t, "test.example") // the client does not verify it
	e := newTestEnv(t, func(o *Options) {
		o.AllowInsecureAuth = false
		o.TLSConfig = serverTLS
	})
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	cl := &client{t: t, c: c, r: bufio.NewReader(c)}
	expect(t, "greeting", cl.line(), "* OK [CAPABILITY SMAP1 STARTTLS] test.example Postern SMAP1 ready\r\n")
	expect(t, "clear login", cl.cmd(`\SMAP1 LOGIN alice secret`), "-ERR STARTTLS required\r\n")
	expect(t, "STARTTLS", cl.cmd(`\SMAP1 STARTTLS`), "+OK Begin SSL/TLS negotiation now.\r\n")
	tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	cl = &client{t: t, c: tc, r: bufio.NewReader(tc)}
	expect(t, "CAPABILITY over TLS", cl.cmd(`\SMAP1 CAPABILITY`), "* CAPABILITY SMAP1\r\n+OK CAPABILITY completed\r\n")
	expect(t, "login", cl.cmd(`\SMAP1 LOGIN alice secret`), "+OK SMAP1 LOGIN Ok.\n")
	expect(t, "LIST", cl.cmd("LIST public"), "+OK LIST completed\n")
}

// Failed logins count in the authentication service's Guard, across
// connections and protocols: once the client is blocked, even the right
// password is refused and the connection closed.
func TestGuardBlocksAfterFailedLogins(t *testing.T) {
	e := newTestEnv(t)
	e.auth.SetGuard(auth.NewGuard(auth.GuardConfig{Failures: 3, Window: time.Hour, Block: time.Hour}))
	for i := 0; i < 3; i++ {
		cl := e.dial()
		expect(t, "wrong password", cl.cmd(`\SMAP1 LOGIN alice wrong`), "-ERR Login failed.\r\n")
	}
	cl := e.dial()
	expect(t, "blocked", cl.cmd(`\SMAP1 LOGIN alice secret`), "-ERR Too many failed logins from your address, try again later.\r\n")
	if l := cl.line(); l != "* BYE Too many failed logins\r\n" {
		t.Errorf("after the refusal: %q", l)
	}
}
