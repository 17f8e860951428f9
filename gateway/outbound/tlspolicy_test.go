package outbound

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"postern/gateway/outbound/mtasts"
)

// tlsSetup serves example.test's MX on 127.0.0.2 with a self-signed
// certificate for mx.example.test (trusted by no root unless a test says
// so), and a DNS server that marks the names in secure as validated (AD).
// extra gives more records once the server's port is known.
type tlsSetup struct {
	srv     *testServer
	zone    *adZone
	dnsAddr string
	cert    tls.Certificate
}

func newTLSSetup(t *testing.T, cfg serverConfig, extra func(s *tlsSetup) []string, secure ...string) *tlsSetup {
	t.Helper()
	s := &tlsSetup{}
	s.cert, _ = selfSigned(t, "mx.example.test")
	if cfg.tls == nil {
		cfg.tls = serverTLS(s.cert)
	}
	s.srv = startSMTP(t, cfg)
	s.zone = newADZone()
	s.zone.add(t,
		"example.test. 60 IN MX 10 mx.example.test.",
		"mx.example.test. 60 IN A 127.0.0.2",
	)
	if extra != nil {
		s.zone.add(t, extra(s)...)
	}
	secureNames(s, secure...)
	s.dnsAddr = startDNSHandler(t, s.zone)
	return s
}

func (s *tlsSetup) tlsaName() string {
	return "_" + strconv.Itoa(s.srv.port()) + "._tcp.mx.example.test."
}

// tlsaEE is a "3 1 1" record (DANE-EE, SPKI, SHA-256) for cert at s's port.
func (s *tlsSetup) tlsaEE(cert tls.Certificate) string {
	sum := sha256.Sum256(cert.Leaf.RawSubjectPublicKeyInfo)
	return fmt.Sprintf("%s 60 IN TLSA 3 1 1 %s", s.tlsaName(), hex.EncodeToString(sum[:]))
}

func (s *tlsSetup) client(t *testing.T, mod func(*Options)) *Client {
	return newTestClient(t, s.dnsAddr, s.srv.port(), func(o *Options) {
		o.DANE = true
		if mod != nil {
			mod(o)
		}
	})
}

// secureNames marks names as validated; the DNS server may be answering.
func secureNames(s *tlsSetup, names ...string) {
	s.zone.adMu.Lock()
	defer s.zone.adMu.Unlock()
	for _, n := range names {
		s.zone.secure[n] = true
	}
}

// A validated MX, address and TLSA record authenticate the host: the
// message goes over TLS although no CA vouches for the certificate.
func TestDANEAuthenticatesMX(t *testing.T) {
	checkGoroutines(t)
	s := newTLSSetup(t, serverConfig{}, func(s *tlsSetup) []string { return []string{s.tlsaEE(s.cert)} })
	secureNames(s, "example.test.", "mx.example.test.", s.tlsaName())
	c := s.client(t, nil)
	wantDelivered(t, deliver(t, c, env("a@sender.test"), rcpts("b@example.test"), testMessage)[0])
	if got := s.srv.messages(); len(got) != 1 || !got[0].TLS {
		t.Fatalf("server got %+v", got)
	}
}

// A certificate the TLSA records do not match is never sent to: temporary
// failure 4.7.5, no MAIL command, no fallback to plain text.
func TestDANEMismatchIsNotSentTo(t *testing.T) {
	checkGoroutines(t)
	other, _ := selfSigned(t, "mx.example.test")
	s := newTLSSetup(t, serverConfig{}, func(s *tlsSetup) []string { return []string{s.tlsaEE(other)} })
	secureNames(s, "example.test.", "mx.example.test.", s.tlsaName())
	c := s.client(t, nil)
	wantFailure(t, deliver(t, c, env("a@sender.test"), rcpts("b@example.test"), testMessage)[0], false, statusTLSFailed)
	if s.srv.mailCount() != 0 {
		t.Fatal("MAIL sent to a host the TLSA records do not match")
	}
	if c.Stats().ByReason["temporary/dane-verify"] != 1 {
		t.Errorf("stats %+v", c.Stats())
	}
}

// A DANE host that does not offer STARTTLS is not sent to in clear.
func TestDANEHostWithoutSTARTTLS(t *testing.T) {
	checkGoroutines(t)
	cert, _ := selfSigned(t, "mx.example.test")
	s := newTLSSetup(t, serverConfig{tls: nil}, func(s *tlsSetup) []string { return []string{s.tlsaEE(cert)} })
	s.srv.srv.TLSConfig = nil // no STARTTLS on offer
	secureNames(s, "example.test.", "mx.example.test.", s.tlsaName())
	c := s.client(t, nil)
	wantFailure(t, deliver(t, c, env("a@sender.test"), rcpts("b@example.test"), testMessage)[0], false, statusTLSFailed)
	if s.srv.mailCount() != 0 {
		t.Fatal("sent in clear to a host whose TLSA records require TLS")
	}
}

// RFC 7672 section 2.2: TLSA records under an MX RRset that is not
// validated are not used (they could have been forged with it); the
// delivery is opportunistic. The same when DANE is off.
func TestDANENeedsValidatedMX(t *testing.T) {
	checkGoroutines(t)
	other, _ := selfSigned(t, "mx.example.test")
	s := newTLSSetup(t, serverConfig{}, func(s *tlsSetup) []string { return []string{s.tlsaEE(other)} })
	secureNames(s, "mx.example.test.", s.tlsaName()) // the MX lookup is not
	wantDelivered(t, deliver(t, s.client(t, nil), env("a@sender.test"), rcpts("b@example.test"), testMessage)[0])
	secureNames(s, "example.test.")
	off := s.client(t, func(o *Options) { o.DANE = false })
	wantDelivered(t, deliver(t, off, env("a@sender.test"), rcpts("b@example.test"), testMessage)[0])
	if n := s.srv.mailCount(); n != 2 {
		t.Fatalf("%d messages delivered, want 2", n)
	}
}

// A TLSA lookup that fails (SERVFAIL) for a validated host makes the host
// one not to use: retried later, not sent without the records' say.
func TestDANETLSALookupFailure(t *testing.T) {
	checkGoroutines(t)
	s := newTLSSetup(t, serverConfig{}, nil)
	secureNames(s, "example.test.", "mx.example.test.")
	s.zone.mu.Lock()
	s.zone.servfail[s.tlsaName()] = true
	s.zone.mu.Unlock()
	wantFailure(t, deliver(t, s.client(t, nil), env("a@sender.test"), rcpts("b@example.test"), testMessage)[0], false, statusDNSTemporary)
	if s.srv.mailCount() != 0 {
		t.Fatal("sent although the TLSA lookup failed")
	}
}

// A validated "no TLSA record" (NXDOMAIN with AD) leaves the host to
// opportunistic TLS.
func TestDANESecureDenialIsOpportunistic(t *testing.T) {
	checkGoroutines(t)
	s := newTLSSetup(t, serverConfig{}, nil)
	secureNames(s, "example.test.", "mx.example.test.")
	secureNames(s, s.tlsaName())
	wantDelivered(t, deliver(t, s.client(t, nil), env("a@sender.test"), rcpts("b@example.test"), testMessage)[0])
}

// An MX host that is an alias (RFC 7672 section 2.2.2): the TLSA records
// at the end of its validated CNAME chain authenticate it, the
// certificate may carry that name, and it is the SNI sent. Without
// records there (securely denied), the MX name's own records are used.
func TestDANECNAMEdMXHost(t *testing.T) {
	checkGoroutines(t)
	var sni atomic.Value
	provider, _ := selfSigned(t, "smtp.provider.test")
	cfg := serverConfig{tls: serverTLS(provider)}
	cfg.tls.GetConfigForClient = func(h *tls.ClientHelloInfo) (*tls.Config, error) { sni.Store(h.ServerName); return nil, nil }
	s := newTLSSetup(t, cfg, func(s *tlsSetup) []string {
		sum := sha256.Sum256(provider.Leaf.RawSubjectPublicKeyInfo)
		return []string{
			"mail.example.test. 60 IN CNAME smtp.provider.test.",
			"smtp.provider.test. 60 IN A 127.0.0.2",
			fmt.Sprintf("_%d._tcp.smtp.provider.test. 60 IN TLSA 3 1 1 %s", s.srv.port(), hex.EncodeToString(sum[:])),
		}
	})
	s.zone.mu.Lock()
	s.zone.records["example.test."] = nil
	s.zone.mu.Unlock()
	s.zone.add(t, "example.test. 60 IN MX 10 mail.example.test.")
	target := "_" + strconv.Itoa(s.srv.port()) + "._tcp.smtp.provider.test."
	secureNames(s, "example.test.", "mail.example.test.", "smtp.provider.test.", target)
	c := s.client(t, nil)
	wantDelivered(t, deliver(t, c, env("a@sender.test"), rcpts("b@example.test"), testMessage)[0])
	if got := s.srv.messages(); len(got) != 1 || !got[0].TLS || sni.Load() != "smtp.provider.test" {
		t.Fatalf("server got %+v, SNI %v", got, sni.Load())
	}

	// The records move to the MX name: the target's are securely gone.
	s.zone.mu.Lock()
	delete(s.zone.records, strings.ToLower(target))
	s.zone.mu.Unlock()
	other, _ := selfSigned(t, "mail.example.test")
	sum := sha256.Sum256(other.Leaf.RawSubjectPublicKeyInfo)
	own := "_" + strconv.Itoa(s.srv.port()) + "._tcp.mail.example.test."
	s.zone.add(t, fmt.Sprintf("%s 60 IN TLSA 3 1 1 %s", own, hex.EncodeToString(sum[:])))
	secureNames(s, own)
	// They do not match the server's certificate: not sent (a new client,
	// not the first one's cached session).
	wantFailure(t, deliver(t, s.client(t, nil), env("a@sender.test"), rcpts("b@example.test"), testMessage)[0], false, statusTLSFailed)
	if n := s.srv.mailCount(); n != 1 {
		t.Fatalf("%d messages, want the first only", n)
	}
}

// stsServer publishes policy for example.test over HTTPS on 127.0.0.1, with a
// certificate for mta-sts.example.test, and adds the TXT and A records.
func stsServer(t *testing.T, s *tlsSetup, policy string) (*mtasts.Client, *atomic.Int32) {
	t.Helper()
	var hits atomic.Int32
	cert, roots := selfSigned(t, "mta-sts.example.test")
	hs := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(w, policy)
	}))
	hs.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	hs.StartTLS()
	t.Cleanup(hs.Close)
	_, port, _ := net.SplitHostPort(hs.Listener.Addr().String())
	p, _ := strconv.Atoi(port)
	s.zone.add(t, `_mta-sts.example.test. 60 IN TXT "v=STSv1; id=20261126"`, "mta-sts.example.test. 60 IN A 127.0.0.1")
	r := NewDNSResolver([]string{s.dnsAddr}, 2*time.Second)
	c, err := mtasts.New(mtasts.Options{LookupTXT: r.LookupTXT, IsNotFound: isNoSuchDomain, LookupIPAddr: r.LookupIPAddr,
		Port: p, RootCAs: roots, Dir: t.TempDir(), Timeout: 5 * time.Second, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return c, &hits
}

// MTA-STS enforce: the MX the policy names is used with a certificate
// verified for its name; an untrusted certificate is not sent to.
func TestMTASTSEnforce(t *testing.T) {
	checkGoroutines(t)
	s := newTLSSetup(t, serverConfig{}, nil)
	sts, hits := stsServer(t, s, "version: STSv1\nmode: enforce\nmx: mx.example.test\nmax_age: 86400\n")
	untrusting := s.client(t, func(o *Options) { o.MTASTS = sts })
	wantFailure(t, deliver(t, untrusting, env("a@sender.test"), rcpts("b@example.test"), testMessage)[0], false, statusTLSFailed)
	if s.srv.mailCount() != 0 {
		t.Fatal("sent to a host whose certificate does not verify under an enforced MTA-STS policy")
	}
	roots := s.cert.Leaf
	trusting := s.client(t, func(o *Options) {
		o.MTASTS = sts
		o.TLSConfig = &tls.Config{RootCAs: poolOf(roots)}
	})
	wantDelivered(t, deliver(t, trusting, env("a@sender.test"), rcpts("b@example.test"), testMessage)[0])
	if got := s.srv.messages(); len(got) != 1 || !got[0].TLS {
		t.Fatalf("server got %+v", got)
	}
	if hits.Load() != 1 {
		t.Errorf("policy fetched %d times, want 1 (cached)", hits.Load())
	}
}

// An enforced policy that names none of the MX hosts: temporary failure,
// nothing sent. In testing mode the same mismatch only is logged.
func TestMTASTSNoMatchingMX(t *testing.T) {
	checkGoroutines(t)
	s := newTLSSetup(t, serverConfig{}, nil)
	sts, _ := stsServer(t, s, "version: STSv1\nmode: enforce\nmx: *.elsewhere.test\nmax_age: 86400\n")
	c := s.client(t, func(o *Options) { o.MTASTS = sts })
	wantFailure(t, deliver(t, c, env("a@sender.test"), rcpts("b@example.test"), testMessage)[0], false, statusNoValidMX)
	if s.srv.mailCount() != 0 || c.Stats().ByReason["temporary/mta-sts"] != 1 {
		t.Fatalf("sent %d, stats %+v", s.srv.mailCount(), c.Stats())
	}

	s2 := newTLSSetup(t, serverConfig{}, nil)
	testing2, _ := stsServer(t, s2, "version: STSv1\nmode: testing\nmx: *.elsewhere.test\nmax_age: 86400\n")
	c2 := s2.client(t, func(o *Options) { o.MTASTS = testing2 })
	wantDelivered(t, deliver(t, c2, env("a@sender.test"), rcpts("b@example.test"), testMessage)[0])
}

// DANE takes precedence over MTA-STS (RFC 8461 section 2): with valid
// TLSA records the CA-less certificate is fine although the policy says
// enforce.
func TestDANEBeforeMTASTS(t *testing.T) {
	checkGoroutines(t)
	s := newTLSSetup(t, serverConfig{}, func(s *tlsSetup) []string { return []string{s.tlsaEE(s.cert)} })
	secureNames(s, "example.test.", "mx.example.test.", s.tlsaName())
	sts, hits := stsServer(t, s, "version: STSv1\nmode: enforce\nmx: mx.example.test\nmax_age: 86400\n")
	c := s.client(t, func(o *Options) { o.MTASTS = sts })
	wantDelivered(t, deliver(t, c, env("a@sender.test"), rcpts("b@example.test"), testMessage)[0])
	if hits.Load() != 0 {
		t.Errorf("MTA-STS policy fetched %d times for a DANE destination", hits.Load())
	}
}

func poolOf(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}
