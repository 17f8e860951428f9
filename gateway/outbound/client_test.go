package outbound

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"postern/gateway/delivery"
	"postern/policy"
)

// mxSetup serves example.test with one MX pointing at 127.0.0.2 and starts
// a server there.
func mxSetup(t *testing.T, cfg serverConfig) (*testServer, *dnsZone, string) {
	t.Helper()
	srv := startSMTP(t, cfg)
	z := newZone()
	z.add(t,
		"example.test. 60 IN MX 10 mx.example.test.",
		"mx.example.test. 60 IN A 127.0.0.2",
	)
	return srv, z, startDNS(t, z)
}

func TestDeliverThroughMX(t *testing.T) {
	checkGoroutines(t)
	srv, _, dnsAddr := mxSetup(t, serverConfig{})
	c := newTestClient(t, dnsAddr, srv.port(), nil)

	res := deliver(t, c, env("alice@sender.test"), rcpts("bob@example.test", "carol@EXAMPLE.test"), testMessage)
	for _, r := range res {
		wantDelivered(t, r)
		if r.RemoteMTA != "dns; mx.example.test" {
			t.Errorf("RemoteMTA = %q", r.RemoteMTA)
		}
	}
	got := srv.messages()
	if len(got) != 1 {
		t.Fatalf("server got %d messages, want 1 (one transaction for all recipients)", len(got))
	}
	m := got[0]
	if m.From != "alice@sender.test" || len(m.Rcpts) != 2 || m.Rcpts[0].To != "bob@example.test" || m.Rcpts[1].To != "carol@EXAMPLE.test" {
		t.Errorf("envelope: from %q rcpts %+v", m.From, m.Rcpts)
	}
	if m.Helo != "out.sender.test" {
		t.Errorf("EHLO name %q", m.Helo)
	}
	if string(m.Data) != testMessage {
		t.Errorf("message bytes differ:\n got %q\nwant %q", m.Data, testMessage)
	}
	if m.MailOpts.Size != int64(len(testMessage)) {
		t.Errorf("SIZE=%d, want %d", m.MailOpts.Size, len(testMessage))
	}
	st := c.Stats()
	if st.Attempts != 1 || st.Delivered != 2 || st.Temporary != 0 || st.Permanent != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestNullSenderAndImplicitMX(t *testing.T) {
	checkGoroutines(t)
	srv := startSMTP(t, serverConfig{})
	z := newZone()
	z.add(t, "plain.test. 60 IN A 127.0.0.2") // no MX: the domain itself (RFC 5321 5.1)
	c := newTestClient(t, startDNS(t, z), srv.port(), nil)
	res := deliver(t, c, env(""), rcpts("x@plain.test"), testMessage)
	wantDelivered(t, res[0])
	if res[0].RemoteMTA != "dns; plain.test" {
		t.Errorf("RemoteMTA %q", res[0].RemoteMTA)
	}
	if got := srv.messages(); len(got) != 1 || got[0].From != "" {
		t.Fatalf("server got %+v", got)
	}
}

func TestMXPreferenceFirstHostDown(t *testing.T) {
	checkGoroutines(t)
	srv := startSMTP(t, serverConfig{})
	z := newZone()
	// 127.0.0.3 has nothing listening on the port: connection refused.
	z.add(t,
		"example.test. 60 IN MX 20 backup.example.test.",
		"example.test. 60 IN MX 10 primary.example.test.",
		"primary.example.test. 60 IN A 127.0.0.3",
		"backup.example.test. 60 IN A 127.0.0.2",
	)
	c := newTestClient(t, startDNS(t, z), srv.port(), nil)
	res := deliver(t, c, env("a@sender.test"), rcpts("b@example.test"), testMessage)
	wantDelivered(t, res[0])
	if res[0].RemoteMTA != "dns; backup.example.test" {
		t.Errorf("RemoteMTA %q, want the backup", res[0].RemoteMTA)
	}
	if st := c.Stats(); st.Attempts != 2 {
		t.Errorf("attempts %d, want 2 (primary refused, backup took it)", st.Attempts)
	}
}

func TestAllHostsDownIsTemporary(t *testing.T) {
	checkGoroutines(t)
	z := newZone()
	z.add(t,
		"example.test. 60 IN MX 10 mx.example.test.",
		"mx.example.test. 60 IN A 127.0.0.3",
	)
	c := newTestClient(t, startDNS(t, z), freePort(t), nil)
	res := deliver(t, c, env("a@sender.test"), rcpts("b@example.test"), testMessage)
	wantFailure(t, res[0], false, statusNoAnswer)
	if !strings.Contains(res[0].Diagnostic, "connect to mx.example.test[127.0.0.3]") {
		t.Errorf("diagnostic %q", res[0].Diagnostic)
	}
	if c.Stats().ByReason["temporary/connect"] != 1 {
		t.Errorf("stats %+v", c.Stats())
	}
}

func TestNullMXIsPermanent(t *testing.T) {
	checkGoroutines(t)
	z := newZone()
	z.add(t, "nomail.test. 60 IN MX 0 .")
	c := newTestClient(t, startDNS(t, z), 25, nil)
	res := deliver(t, c, env("a@sender.test"), rcpts("b@nomail.test"), testMessage)
	wantFailure(t, res[0], true, "5.1.10")
	if c.Stats().ByReason["permanent/null-mx"] != 1 {
		t.Errorf("stats %+v", c.Stats())
	}
}

func TestNXDomainIsPermanent(t *testing.T) {
	checkGoroutines(t)
	z := newZone()
	c := newTestClient(t, startDNS(t, z), 25, nil)
	res := deliver(t, c, env("a@sender.test"), rcpts("b@missing.test"), testMessage)
	wantFailure(t, res[0], true, "5.1.2")
	if !errors.Is(res[0].Err, ErrNoSuchDomain) {
		t.Errorf("error %v is not ErrNoSuchDomain", res[0].Err)
	}
}

func TestServfailIsTemporary(t *testing.T) {
	checkGoroutines(t)
	z := newZone()
	z.servfail["broken.test."] = true
	c := newTestClient(t, startDNS(t, z), 25, nil)
	res := deliver(t, c, env("a@sender.test"), rcpts("b@broken.test"), testMessage)
	wantFailure(t, res[0], false, "4.4.3")
	if !errors.Is(res[0].Err, ErrDNSTemporary) {
		t.Errorf("error %v is not ErrDNSTemporary", res[0].Err)
	}
}

func TestDNSTimeoutIsTemporary(t *testing.T) {
	checkGoroutines(t)
	z := newZone()
	z.silent["slow.test."] = true
	dnsAddr := startDNS(t, z)
	c := newTestClient(t, dnsAddr, 25, func(o *Options) {
		o.Resolver = NewDNSResolver([]string{dnsAddr}, 200*time.Millisecond)
	})
	start := time.Now()
	res := deliver(t, c, env("a@sender.test"), rcpts("b@slow.test"), testMessage)
	wantFailure(t, res[0], false, "4.4.3")
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %v; the DNS timeout is 200ms", d)
	}
}

func TestMXHostWithoutAddressIsTemporary(t *testing.T) {
	checkGoroutines(t)
	z := newZone()
	z.add(t, "example.test. 60 IN MX 10 gone.example.test.")
	c := newTestClient(t, startDNS(t, z), 25, nil)
	res := deliver(t, c, env("a@sender.test"), rcpts("b@example.test"), testMessage)
	wantFailure(t, res[0], false, statusUnableToRoute)
}

func TestRcptRejectedForOneOfTwo(t *testing.T) {
	checkGoroutines(t)
	srv, _, dnsAddr := mxSetup(t, serverConfig{})
	srv.rcptReject["nobody@example.test"] = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	c := newTestClient(t, dnsAddr, srv.port(), nil)
	res := deliver(t, c, env("a@sender.test"), rcpts("nobody@example.test", "bob@example.test"), testMessage)
	wantFailure(t, res[0], true, "5.1.1")
	if res[0].Diagnostic != "smtp; 550 5.1.1 no such user" || res[0].RemoteMTA != "dns; mx.example.test" {
		t.Errorf("diagnostic %q remote %q", res[0].Diagnostic, res[0].RemoteMTA)
	}
	var se *smtp.SMTPError
	if !errors.As(res[0].Err, &se) || se.Code != 550 {
		t.Errorf("error %v does not carry the SMTP reply", res[0].Err)
	}
	wantDelivered(t, res[1])
	got := srv.messages()
	if len(got) != 1 || len(got[0].Rcpts) != 1 || got[0].Rcpts[0].To != "bob@example.test" {
		t.Fatalf("server got %+v", got)
	}
}

func TestRcptTemporaryAndAllRejected(t *testing.T) {
	checkGoroutines(t)
	srv, _, dnsAddr := mxSetup(t, serverConfig{})
	srv.rcptReject["grey@example.test"] = &smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 7, 1}, Message: "greylisted"}
	srv.rcptReject["gone@example.test"] = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "gone"}
	c := newTestClient(t, dnsAddr, srv.port(), nil)
	res := deliver(t, c, env("a@sender.test"), rcpts("grey@example.test", "gone@example.test"), testMessage)
	wantFailure(t, res[0], false, "4.7.1")
	wantFailure(t, res[1], true, "5.1.1")
	if n := len(srv.messages()); n != 0 {
		t.Errorf("server stored %d messages with no recipient accepted", n)
	}
}

func TestData451IsTemporaryForAll(t *testing.T) {
	checkGoroutines(t)
	srv, _, dnsAddr := mxSetup(t, serverConfig{})
	srv.dataErr = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later"}
	c := newTestClient(t, dnsAddr, srv.port(), nil)
	res := deliver(t, c, env("a@sender.test"), rcpts("b@example.test", "c@example.test"), testMessage)
	for _, r := range res {
		wantFailure(t, r, false, "4.3.0")
		if r.Diagnostic != "smtp; 451 4.3.0 try again later" {
			t.Errorf("diagnostic %q", r.Diagnostic)
		}
	}
	if st := c.Stats(); st.Temporary != 2 || st.ByReason["temporary/data"] != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestMailFromRejected(t *testing.T) {
	checkGoroutines(t)
	srv, _, dnsAddr := mxSetup(t, serverConfig{})
	c := newTestClient(t, dnsAddr, srv.port(), nil)
	// go-smtp's server refuses a malformed reverse path with 553 5.1.7.
	res := deliver(t, c, env("bad address@"), rcpts("b@example.test"), testMessage)
	if res[0].Err == nil || !res[0].Permanent || !strings.HasPrefix(res[0].Diagnostic, "smtp; 5") {
		t.Fatalf("result %+v", res[0])
	}
}

func TestOpportunisticSTARTTLS(t *testing.T) {
	checkGoroutines(t)
	cert, _ := selfSigned(t, "mx.example.test")
	srv, _, dnsAddr := mxSetup(t, serverConfig{tls: serverTLS(cert)})
	c := newTestClient(t, dnsAddr, srv.port(), nil) // trusts no root
	res := deliver(t, c, env("a@sender.test"), rcpts("b@example.test"), testMessage)
	wantDelivered(t, res[0])
	got := srv.messages()
	if len(got) != 1 || !got[0].TLS {
		t.Fatalf("message not sent over TLS: %+v", got)
	}
	if got[0].Helo != "out.sender.test" {
		t.Errorf("EHLO after STARTTLS said %q", got[0].Helo)
	}
}

func TestSecurityNoneNeverStartsTLS(t *testing.T) {
	checkGoroutines(t)
	cert, _ := selfSigned(t, "mx.example.test")
	srv, _, dnsAddr := mxSetup(t, serverConfig{tls: serverTLS(cert)})
	c := newTestClient(t, dnsAddr, srv.port(), func(o *Options) {
		o.Routes = mustRoutes(t, "example.test: /SECURITY=NONE")
	})
	wantDelivered(t, deliver(t, c, env("a@sender.test"), rcpts("b@example.test"), testMessage)[0])
	if got := srv.messages(); len(got) != 1 || got[0].TLS {
		t.Fatalf("TLS used despite /SECURITY=NONE: %+v", got)
	}
}

func TestRequiredTLSWithUntrustedCertificate(t *testing.T) {
	checkGoroutines(t)
	cert, _ := selfSigned(t, "mx.example.test")
	srv, _, dnsAddr := mxSetup(t, serverConfig{tls: serverTLS(cert)})
	c := newTestClient(t, dnsAddr, srv.port(), func(o *Options) {
		o.Routes = mustRoutes(t, "example.test: mx.example.test /SECURITY=REQUIRED")
	})
	res := deliver(t, c, env("a@sender.test"), rcpts("b@example.test"), testMessage)
	wantFailure(t, res[0], false, statusTLSFailed)
	if srv.mailCount() != 0 {
		t.Fatal("MAIL sent although the certificate did not verify")
	}
	if c.Stats().ByReason["temporary/tls-verify"] != 1 {
		t.Errorf("stats %+v", c.Stats())
	}
}

func TestRequiredTLSWithTrustedCertificate(t *testing.T) {
	checkGoroutines(t)
	cert, roots := selfSigned(t, "mx.example.test")
	srv, _, dnsAddr := mxSetup(t, serverConfig{tls: serverTLS(cert)})
	c := newTestClient(t, dnsAddr, srv.port(), func(o *Options) {
		o.Routes = mustRoutes(t, "example.test: mx.example.test /SECURITY=REQUIRED")
		o.TLSConfig = &tls.Config{RootCAs: roots}
	})
	wantDelivered(t, deliver(t, c, env("a@sender.test"), rcpts("b@example.test"), testMessage)[0])
	if got := srv.messages(); len(got) != 1 || !got[0].TLS {
		t.Fatalf("server got %+v", got)
	}
}

func TestRequiredTLSNotOffered(t *testing.T) {
	checkGoroutines(t)
	srv, _, dnsAddr := mxSetup(t, serverConfig{}) // no STARTTLS
	c := newTestClient(t, dnsAddr, srv.port(), func(o *Options) {
		o.Routes = mustRoutes(t, "example.test: /SECURITY=STARTTLS")
	})
	res := deliver(t, c, env("a@sender.test"), rcpts("b@example.test"), testMessage)
	wantFailure(t, res[0], false, statusTLSFailed)
	if srv.mailCount() != 0 {
		t.Fatal("sent in clear")
	}
}

func TestSmarthostWithAuth(t *testing.T) {
	checkGoroutines(t)
	cert, _ := selfSigned(t, "relay.test")
	srv := startSMTP(t, serverConfig{tls: serverTLS(cert), users: map[string]string{"postern": "s3cret pass"}})
	z := newZone() // the smarthost route needs no DNS for a literal
	c := newTestClient(t, startDNS(t, z), 25, func(o *Options) {
		o.Routes = mustRoutes(t, "*: [127.0.0.2],"+itoa(srv.port())+" /SECURITY=STARTTLS /auth=isp")
		var err error
		o.Auth, err = ParseAuth([]policy.Line{{File: "smarthostauth", Num: 1, Text: "isp postern s3cret pass"}}, nil)
		if err != nil {
			t.Fatal(err)
		}
	})
	res := deliver(t, c, env("a@sender.test"), rcpts("someone@anywhere.test"), testMessage)
	wantDelivered(t, res[0])
	if res[0].RemoteMTA != "dns; 127.0.0.2" {
		t.Errorf("RemoteMTA %q", res[0].RemoteMTA)
	}
	got := srv.messages()
	if len(got) != 1 || got[0].AuthUser != "postern" || !got[0].TLS {
		t.Fatalf("server got %+v", got)
	}
}

func TestSmarthostWrongPasswordIsTemporary(t *testing.T) {
	checkGoroutines(t)
	cert, _ := selfSigned(t, "relay.test")
	srv := startSMTP(t, serverConfig{tls: serverTLS(cert), users: map[string]string{"postern": "right"}})
	c := newTestClient(t, startDNS(t, newZone()), 25, func(o *Options) {
		o.Routes = mustRoutes(t, ": [127.0.0.2],"+itoa(srv.port()))
		o.Auth = map[string]Credentials{"[127.0.0.2]": {User: "postern", Password: "wrong"}}
	})
	res := deliver(t, c, env("a@sender.test"), rcpts("someone@anywhere.test"), testMessage)
	wantFailure(t, res[0], false, "4.7.8")
	if !strings.Contains(res[0].Diagnostic, "535") {
		t.Errorf("diagnostic %q", res[0].Diagnostic)
	}
}

func TestCredentialsNeverSentInClear(t *testing.T) {
	checkGoroutines(t)
	srv := startSMTP(t, serverConfig{users: map[string]string{"postern": "pw"}})
	srv.srv.AllowInsecureAuth = true // the server would take it; we must not offer it
	c := newTestClient(t, startDNS(t, newZone()), 25, func(o *Options) {
		o.Routes = mustRoutes(t, "*: [127.0.0.2],"+itoa(srv.port())+" /auth=isp")
		o.Auth = map[string]Credentials{"isp": {User: "postern", Password: "pw"}}
	})
	res := deliver(t, c, env("a@sender.test"), rcpts("someone@anywhere.test"), testMessage)
	wantFailure(t, res[0], false, statusAuthNeedsTLS)
	if srv.mailCount() != 0 {
		t.Fatal("transaction went ahead without authentication")
	}
}

func TestSMTPSRelay(t *testing.T) {
	checkGoroutines(t)
	cert, roots := selfSigned(t, "127.0.0.2")
	srv := startSMTP(t, serverConfig{tls: serverTLS(cert), implicit: true})
	c := newTestClient(t, startDNS(t, newZone()), 25, func(o *Options) {
		o.Routes = mustRoutes(t, "*: [127.0.0.2],"+itoa(srv.port())+" /SECURITY=SMTPS")
		o.TLSConfig = &tls.Config{RootCAs: roots}
	})
	wantDelivered(t, deliver(t, c, env("a@sender.test"), rcpts("x@anywhere.test"), testMessage)[0])
}

func TestSMTPUTF8NeededButNotOffered(t *testing.T) {
	checkGoroutines(t)
	srv, _, dnsAddr := mxSetup(t, serverConfig{utf8: false})
	c := newTestClient(t, dnsAddr, srv.port(), nil)
	res := deliver(t, c, env("a@sender.test"), rcpts("jörg@example.test"), testMessage)
	wantFailure(t, res[0], true, statusNeedsSMTPUTF8)
	if srv.mailCount() != 0 {
		t.Fatal("MAIL sent without SMTPUTF8")
	}
	e := env("a@sender.test")
	e.SMTPUTF8 = true // UTF-8 in the header: needed even for ASCII addresses
	wantFailure(t, deliver(t, c, e, rcpts("b@example.test"), testMessage)[0], true, statusNeedsSMTPUTF8)
}

func TestSMTPUTF8Offered(t *testing.T) {
	checkGoroutines(t)
	srv, _, dnsAddr := mxSetup(t, serverConfig{utf8: true})
	c := newTestClient(t, dnsAddr, srv.port(), nil)
	wantDelivered(t, deliver(t, c, env("ålice@sender.test"), rcpts("jörg@example.test"), testMessage)[0])
	got := srv.messages()
	if len(got) != 1 || !got[0].MailOpts.UTF8 || got[0].Rcpts[0].To != "jörg@example.test" || got[0].From != "ålice@sender.test" {
		t.Fatalf("server got %+v", got)
	}
}

func TestUTF8DomainDowngradedToALabels(t *testing.T) {
	checkGoroutines(t)
	srv := startSMTP(t, serverConfig{utf8: false})
	z := newZone()
	z.add(t,
		"xn--bcher-kva.test. 60 IN MX 10 mx.example.test.",
		"mx.example.test. 60 IN A 127.0.0.2",
	)
	c := newTestClient(t, startDNS(t, z), srv.port(), nil)
	wantDelivered(t, deliver(t, c, env("a@sender.test"), rcpts("bob@bücher.test"), testMessage)[0])
	if got := srv.messages(); len(got) != 1 || got[0].Rcpts[0].To != "bob@xn--bcher-kva.test" || got[0].MailOpts.UTF8 {
		t.Fatalf("server got %+v", got)
	}
}

func TestDSNParametersPassedThrough(t *testing.T) {
	checkGoroutines(t)
	srv, _, dnsAddr := mxSetup(t, serverConfig{dsn: true})
	c := newTestClient(t, dnsAddr, srv.port(), nil)
	e := env("a@sender.test")
	e.Ret, e.EnvID = "HDRS", "QID+12345"
	rs := []delivery.Recipient{
		{Addr: "b@example.test", ORcpt: "rfc822;list@sender.test", Notify: delivery.NotifySuccess | delivery.NotifyFailure},
		{Addr: "c@example.test", Notify: delivery.NotifyNever},
	}
	res := deliver(t, c, e, rs, testMessage)
	wantDelivered(t, res[0])
	got := srv.messages()
	if len(got) != 1 {
		t.Fatalf("server got %d messages", len(got))
	}
	m := got[0]
	if m.MailOpts.Return != smtp.DSNReturnHeaders || m.MailOpts.EnvelopeID != "QID+12345" {
		t.Errorf("MAIL options %+v", m.MailOpts)
	}
	r0, r1 := m.Rcpts[0].Opts, m.Rcpts[1].Opts
	if len(r0.Notify) != 2 || r0.Notify[0] != smtp.DSNNotifySuccess || r0.Notify[1] != smtp.DSNNotifyFailure {
		t.Errorf("NOTIFY %v", r0.Notify)
	}
	if r0.OriginalRecipientType != smtp.DSNAddressTypeRFC822 || r0.OriginalRecipient != "list@sender.test" {
		t.Errorf("ORCPT %s;%s", r0.OriginalRecipientType, r0.OriginalRecipient)
	}
	if len(r1.Notify) != 1 || r1.Notify[0] != smtp.DSNNotifyNever {
		t.Errorf("NOTIFY %v", r1.Notify)
	}
}

func TestDSNParametersNotSentWithoutDSN(t *testing.T) {
	checkGoroutines(t)
	srv, _, dnsAddr := mxSetup(t, serverConfig{dsn: false})
	c := newTestClient(t, dnsAddr, srv.port(), nil)
	e := env("a@sender.test")
	e.Ret, e.EnvID = "FULL", "x"
	rs := []delivery.Recipient{{Addr: "b@example.test", ORcpt: "rfc822;o@sender.test", Notify: delivery.NotifySuccess}}
	// go-smtp's server refuses RET/NOTIFY when it has no DSN: delivery
	// proves they were left out.
	wantDelivered(t, deliver(t, c, e, rs, testMessage)[0])
}

func TestRequireTLS(t *testing.T) {
	checkGoroutines(t)
	cert, roots := selfSigned(t, "mx.example.test")

	t.Run("unverified certificate", func(t *testing.T) {
		srv, _, dnsAddr := mxSetup(t, serverConfig{tls: serverTLS(cert), requireTL: true})
		c := newTestClient(t, dnsAddr, srv.port(), nil)
		e := env("a@sender.test")
		e.RequireTLS = true
		res := deliver(t, c, e, rcpts("b@example.test"), testMessage)
		// The only host failed TLS verification: temporary, the certificate
		// may be fixed; nothing was sent.
		wantFailure(t, res[0], false, statusTLSFailed)
		if srv.mailCount() != 0 {
			t.Fatal("sent a REQUIRETLS message over unverified TLS")
		}
	})
	t.Run("peer without REQUIRETLS", func(t *testing.T) {
		srv, _, dnsAddr := mxSetup(t, serverConfig{tls: serverTLS(cert)})
		c := newTestClient(t, dnsAddr, srv.port(), func(o *Options) { o.TLSConfig = &tls.Config{RootCAs: roots} })
		e := env("a@sender.test")
		e.RequireTLS = true
		wantFailure(t, deliver(t, c, e, rcpts("b@example.test"), testMessage)[0], true, statusNeedsREQUIRETL)
		if srv.mailCount() != 0 {
			t.Fatal("MAIL sent")
		}
	})
	t.Run("verified and offered", func(t *testing.T) {
		srv, _, dnsAddr := mxSetup(t, serverConfig{tls: serverTLS(cert), requireTL: true})
		c := newTestClient(t, dnsAddr, srv.port(), func(o *Options) { o.TLSConfig = &tls.Config{RootCAs: roots} })
		e := env("a@sender.test")
		e.RequireTLS = true
		wantDelivered(t, deliver(t, c, e, rcpts("b@example.test"), testMessage)[0])
		if got := srv.messages(); len(got) != 1 || !got[0].MailOpts.RequireTLS {
			t.Fatalf("server got %+v", got)
		}
	})
	t.Run("route forbids TLS", func(t *testing.T) {
		c := newTestClient(t, "127.0.0.1:1", 25, func(o *Options) { o.Routes = mustRoutes(t, "example.test: /SECURITY=NONE") })
		e := env("a@sender.test")
		e.RequireTLS = true
		wantFailure(t, deliver(t, c, e, rcpts("b@example.test"), testMessage)[0], true, statusNeedsREQUIRETL)
	})
}

func TestMessageTooBigForPeer(t *testing.T) {
	checkGoroutines(t)
	srv, _, dnsAddr := mxSetup(t, serverConfig{maxSize: 50})
	c := newTestClient(t, dnsAddr, srv.port(), nil)
	wantFailure(t, deliver(t, c, env("a@sender.test"), rcpts("b@example.test"), testMessage)[0], true, statusTooBig)
	if srv.mailCount() != 0 {
		t.Fatal("MAIL sent for a message over the peer's SIZE")
	}
}

func TestBadRecipientAddress(t *testing.T) {
	checkGoroutines(t)
	c := newTestClient(t, "127.0.0.1:1", 25, nil)
	res := deliver(t, c, env("a@sender.test"), rcpts("no-at-sign", "x@[127.0.0.1]", "a\r\nb@example.test", "x@exa mple.test"), testMessage)
	for i, r := range res {
		if r.Err == nil || !r.Permanent || r.Status != statusBadAddress {
			t.Errorf("recipient %d: %+v", i, r)
		}
	}
}

func TestRoutesChooseRelayOverMX(t *testing.T) {
	checkGoroutines(t)
	relay := startSMTP(t, serverConfig{ip: "127.0.0.4"})
	direct := startSMTP(t, serverConfig{ip: "127.0.0.2", port: relay.port()})
	z := newZone()
	z.add(t,
		"example.test. 60 IN MX 10 mx.example.test.",
		"mx.example.test. 60 IN A 127.0.0.2",
		"other.test. 60 IN MX 10 mx.example.test.",
		"smarthost.test. 60 IN A 127.0.0.4",
	)
	c := newTestClient(t, startDNS(t, z), relay.port(), func(o *Options) {
		// Everything via the smarthost, except example.test, by MX.
		o.Routes = mustRoutes(t, "*: smarthost.test", "example.test:")
	})
	wantDelivered(t, deliver(t, c, env("a@sender.test"), rcpts("b@example.test"), testMessage)[0])
	wantDelivered(t, deliver(t, c, env("a@sender.test"), rcpts("b@other.test"), testMessage)[0])
	if len(direct.messages()) != 1 || len(relay.messages()) != 1 || relay.messages()[0].Rcpts[0].To != "b@other.test" {
		t.Fatalf("direct got %d, relay got %d", len(direct.messages()), len(relay.messages()))
	}
}

func TestContextCancelStopsAHungServer(t *testing.T) {
	checkGoroutines(t)
	l, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			accepted <- c // never greets
		}
		close(accepted)
	}()
	t.Cleanup(func() {
		l.Close()
		for c := range accepted {
			c.Close()
		}
	})
	port := l.Addr().(*net.TCPAddr).Port
	c := newTestClient(t, "127.0.0.1:1", port, func(o *Options) {
		o.Routes = mustRoutes(t, "*: [127.0.0.2]")
		o.CommandTimeout = time.Minute
	})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	res := c.Deliver(ctx, env("a@sender.test"), rcpts("x@anywhere.test"), message(testMessage))
	if time.Since(start) > 5*time.Second {
		t.Fatalf("Deliver ignored the context for %v", time.Since(start))
	}
	wantFailure(t, res[0], false, statusBadConnection)
}

func TestCommandTimeout(t *testing.T) {
	checkGoroutines(t)
	l, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			c.Write([]byte("220 slow.test ESMTP\r\n")) // then silence
			accepted <- c
		}
		close(accepted)
	}()
	t.Cleanup(func() {
		l.Close()
		for c := range accepted {
			c.Close()
		}
	})
	c := newTestClient(t, "127.0.0.1:1", l.Addr().(*net.TCPAddr).Port, func(o *Options) {
		o.Routes = mustRoutes(t, "*: [127.0.0.2]")
		o.CommandTimeout = 300 * time.Millisecond
	})
	start := time.Now()
	res := deliver(t, c, env("a@sender.test"), rcpts("x@anywhere.test"), testMessage)
	if time.Since(start) > 5*time.Second {
		t.Fatalf("EHLO waited %v", time.Since(start))
	}
	if res[0].Err == nil || res[0].Permanent {
		t.Fatalf("result %+v", res[0])
	}
}

func TestConcurrentDeliveries(t *testing.T) {
	checkGoroutines(t)
	srv, _, dnsAddr := mxSetup(t, serverConfig{})
	c := newTestClient(t, dnsAddr, srv.port(), nil)
	const n = 20
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		go func() {
			res := c.Deliver(context.Background(), env("a@sender.test"), rcpts("b@example.test"), message(testMessage))
			errs <- res[0].Err
		}()
	}
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if len(srv.messages()) != n || c.Stats().Delivered != n {
		t.Fatalf("server got %d, stats %+v", len(srv.messages()), c.Stats())
	}
}

func mustRoutes(t *testing.T, lines ...string) *Routes {
	t.Helper()
	var pl []policy.Line
	for i, l := range lines {
		pl = append(pl, policy.Line{File: "routes", Num: i + 1, Text: l})
	}
	r, err := ParseRoutes(pl)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// freePort returns a port with nothing listening on 127.0.0.3.
func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.3:0")
	if err != nil {
		t.Fatal(err)
	}
	p := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return p
}

func TestDeliverWithoutMessageDoesNotPanic(t *testing.T) {
	c := newTestClient(t, "127.0.0.1:1", 25, nil)
	res := c.Deliver(context.Background(), nil, rcpts("a@b.test"), nil)
	wantFailure(t, res[0], false, "4.3.0")
	if len(c.Deliver(context.Background(), env("a@b.test"), nil, message("x"))) != 0 {
		t.Error("results for no recipients")
	}
}

// RFC 5321 5.1: a backup MX (this host listed below another) hands mail
// only to the better hosts; when this host is the best MX, the mail would
// loop and fails for good.
func TestOwnMXRecordIsNotUsed(t *testing.T) {
	checkGoroutines(t)
	srv := startSMTP(t, serverConfig{})
	z := newZone()
	z.add(t,
		"backup.test. 60 IN MX 10 primary.backup.test.",
		"backup.test. 60 IN MX 20 OUT.sender.test.",
		"backup.test. 60 IN MX 30 worse.backup.test.",
		"primary.backup.test. 60 IN A 127.0.0.2",
		"worse.backup.test. 60 IN A 127.0.0.2",
		"best.test. 60 IN MX 10 out.sender.test.",
		"best.test. 60 IN MX 20 other.best.test.",
		"other.best.test. 60 IN A 127.0.0.2",
		"out.sender.test. 60 IN A 127.0.0.2",
	)
	c := newTestClient(t, startDNS(t, z), srv.port(), nil)
	res := deliver(t, c, env("a@sender.test"), rcpts("b@backup.test"), testMessage)
	wantDelivered(t, res[0])
	if res[0].RemoteMTA != "dns; primary.backup.test" {
		t.Errorf("RemoteMTA %q, want the primary", res[0].RemoteMTA)
	}
	res = deliver(t, c, env("a@sender.test"), rcpts("b@best.test"), testMessage)
	wantFailure(t, res[0], true, "5.4.6")
	if !strings.Contains(res[0].Diagnostic, "loops back to myself") {
		t.Errorf("diagnostic %q", res[0].Diagnostic)
	}
}

func TestDropSelfMX(t *testing.T) {
	kept, listed := dropSelfMX(mxList("10 a.test.", "20 me.test.", "20 b.test.", "30 c.test."), "ME.test")
	if !listed || len(kept) != 1 || kept[0].Host != "a.test." {
		t.Errorf("kept %v, listed %v", kept, listed)
	}
	if kept, listed := dropSelfMX(mxList("10 a.test."), "me.test"); listed || len(kept) != 1 {
		t.Errorf("not listed: kept %v, listed %v", kept, listed)
	}
}

// An MX host that resolves to an address this server receives mail on is
// this server under another name (RFC 5321 5.1): as the best MX the mail
// would loop (permanent 5.4.6, nothing sent); as a backup MX it and the
// hosts after it are dropped and the better one gets the mail.
func TestSelfMXByAddress(t *testing.T) {
	checkGoroutines(t)
	srv := startSMTP(t, serverConfig{})
	port := srv.port()
	self := []netip.AddrPort{netip.AddrPortFrom(netip.MustParseAddr("127.0.0.9"), uint16(port))}

	z := newZone()
	z.add(t,
		"example.test. 60 IN MX 10 other-name.example.test.",
		"other-name.example.test. 60 IN A 127.0.0.9",
		"backup.test. 60 IN MX 10 mx.example.test.",
		"backup.test. 60 IN MX 20 us.backup.test.",
		"mx.example.test. 60 IN A 127.0.0.2",
		"us.backup.test. 60 IN A 127.0.0.9",
	)
	c := newTestClient(t, startDNS(t, z), port, func(o *Options) { o.Self = self })
	res := deliver(t, c, env("a@sender.test"), rcpts("b@example.test"), testMessage)
	wantFailure(t, res[0], true, statusLoop)
	wantDelivered(t, deliver(t, c, env("a@sender.test"), rcpts("b@backup.test"), testMessage)[0])
	if n := srv.mailCount(); n != 1 {
		t.Fatalf("%d transactions at the real MX, want 1", n)
	}
}

// A route with /lmtp hands the mail to a mailbox server over LMTP (RFC
// 2033): LHLO, and each recipient's own answer after the message, so one
// full mailbox fails alone (permanently, 5.2.2) while the other recipient
// is delivered; the session is cached for the next message, still LMTP.
func TestRouteLMTP(t *testing.T) {
	checkGoroutines(t)
	srv := startSMTP(t, serverConfig{lmtp: true})
	srv.mu.Lock()
	srv.lmtpReject["full@example.test"] = &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 2, 2}, Message: "Mailbox full"}
	srv.mu.Unlock()
	c := newTestClient(t, "127.0.0.1:1", srv.port(), func(o *Options) {
		o.Routes = mustRoutes(t, "example.test: [127.0.0.2],"+strconv.Itoa(srv.port())+" /lmtp")
	})
	res := deliver(t, c, env("a@sender.test"), rcpts("ok@example.test", "full@example.test"), testMessage)
	wantDelivered(t, res[0])
	wantFailure(t, res[1], true, "5.2.2")
	wantDelivered(t, deliver(t, c, env("a@sender.test"), rcpts("ok@example.test"), testMessage)[0])
	got := srv.messages()
	if len(got) != 2 || len(got[0].Rcpts) != 1 || got[0].Rcpts[0].To != "ok@example.test" {
		t.Fatalf("server got %+v", got)
	}
	if _, err := ParseRoutes([]policy.Line{{Text: "example.test: /lmtp"}}); err == nil || !strings.Contains(err.Error(), "needs a relay") {
		t.Fatalf("/lmtp by MX: %v", err)
	}
	// Without a port, LMTP's own (RFC 2033 section 5).
	rt := mustRoutes(t, "example.test: [127.0.0.2] /lmtp")
	if r, _ := rt.Lookup("example.test"); c.port(r, SecurityOpportunistic) != 24 {
		t.Errorf("default LMTP port %d", c.port(r, SecurityOpportunistic))
	}
}
