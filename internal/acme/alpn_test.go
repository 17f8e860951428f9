package acme_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"postern/filters/dns/dnstest"
	"postern/internal/acme"
	"postern/internal/acme/acmetest"
)

// idPeACMEIdentifier is the critical extension of a tls-alpn-01
// challenge certificate (RFC 8737 section 3).
var idPeACMEIdentifier = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 31}

func isChallengeCert(c *x509.Certificate) bool {
	for _, e := range c.Extensions {
		if e.Id.Equal(idPeACMEIdentifier) {
			return true
		}
	}
	return false
}

// alpnListener is a TLS listener as the server runs one: the Manager's
// certificate for the name asked, else a self-signed one; the challenge
// configuration for the CA's handshakes, which are closed once done.
// duringChallenge, when set, runs (once) inside the CA's handshake, while
// the name is being validated.
type alpnListener struct {
	addr            string
	port            int
	m               *acme.Manager
	duringChallenge func()
	ran             atomic.Bool   // duringChallenge has begun (not sync.Once: it makes the same handshake)
	challenges      chan struct{} // one value per challenge handshake completed
}

func startALPNListener(t *testing.T) *alpnListener {
	t.Helper()
	fallback := selfSigned(t, "fallback.example.test")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &alpnListener{addr: ln.Addr().String(), port: ln.Addr().(*net.TCPAddr).Port, challenges: make(chan struct{}, 16)}
	cfg := &tls.Config{
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			if c := l.m.Certificate(hello.ServerName); c != nil {
				return c, nil
			}
			return &fallback, nil
		},
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			c := l.m.ChallengeConfig(hello)
			if c != nil && l.duringChallenge != nil && l.ran.CompareAndSwap(false, true) {
				l.duringChallenge()
			}
			return c, nil
		},
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				tc := tls.Server(c, cfg)
				tc.SetDeadline(time.Now().Add(10 * time.Second))
				if tc.Handshake() != nil {
					return
				}
				if tc.ConnectionState().NegotiatedProtocol == "acme-tls/1" { // the CA's check: closed
					select {
					case l.challenges <- struct{}{}:
					default:
					}
					return
				}
				// Anything else: wait for the client to hang up.
				tc.Read(make([]byte, 1))
			}()
		}
	}()
	return l
}

func selfSigned(t *testing.T, name string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
	}, &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}}, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// hello makes a TLS handshake with addr as a client asking for name and
// protos, and returns what it negotiated.
func hello(addr, name string, protos ...string) (tls.ConnectionState, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr,
		&tls.Config{ServerName: name, NextProtos: protos, InsecureSkipVerify: true})
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	return c.ConnectionState(), nil
}

// TestTLSALPN01 has Pebble validate mail.example.test by tls-alpn-01 on
// the test's TLS listener, and checks what other clients of that listener
// see meanwhile and what is served afterwards.
func TestTLSALPN01(t *testing.T) {
	dns := dnstest.Start(t, dnstest.NewZone().Add(
		"mail.example.test. 300 IN A 127.0.0.1",
		"imap.example.test. 300 IN A 127.0.0.1",
	))
	l := startALPNListener(t)
	ca := acmetest.StartPorts(t, dns.Addr, 0, l.port) // http-01 cannot pass: port 0
	m, err := acme.New(acme.Options{
		Hosts: []string{"mail.example.test"}, Directory: ca.Directory, HTTPClient: ca.Client,
		Dir: t.TempDir(), Challenge: acme.TLSALPN01,
	})
	if err != nil {
		t.Fatal(err)
	}
	l.m = m

	// Checked inside the CA's handshake, while mail.example.test is
	// being validated.
	var during []error
	l.duringChallenge = func() {
		check := func(what string, cs tls.ConnectionState, err error) {
			switch {
			case err != nil:
				during = append(during, errors.New(what+": "+err.Error()))
			case cs.NegotiatedProtocol != "":
				during = append(during, errors.New(what+": negotiated "+cs.NegotiatedProtocol))
			case isChallengeCert(cs.PeerCertificates[0]):
				during = append(during, errors.New(what+": shown the challenge certificate"))
			}
		}
		cs, err := hello(l.addr, "mail.example.test")
		check("a client without ALPN", cs, err)
		cs, err = hello(l.addr, "mail.example.test", "h2", "http/1.1")
		check("an HTTPS client", cs, err)
		cs, err = hello(l.addr, "mail.example.test", "h2", "acme-tls/1")
		check("a client offering acme-tls/1 among others", cs, err)
		cs, err = hello(l.addr, "imap.example.test", "acme-tls/1")
		check("acme-tls/1 for a name not being validated", cs, err)
		cs, err = hello(l.addr, "", "acme-tls/1")
		check("acme-tls/1 without a name", cs, err)
		// The CA's own handshake gets the challenge certificate.
		cs, err = hello(l.addr, "mail.example.test", "acme-tls/1")
		if err != nil || cs.NegotiatedProtocol != "acme-tls/1" || !isChallengeCert(cs.PeerCertificates[0]) {
			during = append(during, errors.New("a second acme-tls/1 handshake for the name being validated got no challenge certificate"))
		}
	}

	if err := m.Renew(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if !l.ran.Load() || len(l.challenges) == 0 {
		t.Fatal("the CA's challenge handshake never reached the listener")
	}
	for _, err := range during {
		t.Error(err)
	}
	verify(t, m.Certificate("mail.example.test"), "mail.example.test", ca.Roots())

	// The issued certificate is served on the listener.
	cs, err := hello(l.addr, "mail.example.test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{DNSName: "mail.example.test", Roots: ca.Roots(),
		Intermediates: pool(cs.PeerCertificates[1:])}); err != nil {
		t.Errorf("the listener does not show the issued certificate: %v", err)
	}
	// The authorization is over: its challenge certificate is gone.
	cs, err = hello(l.addr, "mail.example.test", "acme-tls/1")
	if err != nil {
		t.Fatal(err)
	}
	if cs.NegotiatedProtocol != "" || isChallengeCert(cs.PeerCertificates[0]) {
		t.Error("the challenge certificate is still served after the authorization ended")
	}
}

func pool(certs []*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

// TestTLSALPN01Unreachable: with no TLS listener where the CA connects,
// the failure names the challenge and what the CA tried.
func TestTLSALPN01Unreachable(t *testing.T) {
	dns := dnstest.Start(t, dnstest.NewZone().Add("mail.example.test. 300 IN A 127.0.0.1"))
	probe, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := probe.Addr().(*net.TCPAddr).Port
	probe.Close() // nothing listens there
	ca := acmetest.StartPorts(t, dns.Addr, 0, port)
	m, err := acme.New(acme.Options{
		Hosts: []string{"mail.example.test"}, Directory: ca.Directory, HTTPClient: ca.Client,
		Dir: t.TempDir(), Challenge: acme.TLSALPN01,
	})
	if err != nil {
		t.Fatal(err)
	}
	err = m.Renew(context.Background(), false)
	if err == nil || !strings.Contains(err.Error(), "tls-alpn-01 for mail.example.test") || !strings.Contains(err.Error(), "port 443") {
		t.Fatalf("want a tls-alpn-01 failure saying where the CA connects, got %v", err)
	}
	if m.Certificate("mail.example.test") != nil {
		t.Error("a certificate without validation")
	}
}

func TestChooseChallenge(t *testing.T) {
	for _, c := range []struct {
		listeners map[string][]string
		tls443    bool
		want      string
	}{
		{map[string][]string{"acme": {"0.0.0.0:80"}}, true, acme.HTTP01},
		{map[string][]string{"web": {"[::]:80"}}, false, acme.HTTP01},
		{map[string][]string{"webs": {"0.0.0.0:443"}}, true, acme.TLSALPN01},
		{map[string][]string{"acme": {"127.0.0.1:8402"}}, true, acme.TLSALPN01},
		{map[string][]string{"acme": {"127.0.0.1:8402"}}, false, acme.HTTP01},
		{nil, false, acme.HTTP01},
	} {
		if got := acme.ChooseChallenge(c.listeners, c.tls443); got != c.want {
			t.Errorf("ChooseChallenge(%v, %v) = %s, want %s", c.listeners, c.tls443, got, c.want)
		}
	}
	if _, err := acme.New(acme.Options{Hosts: []string{"mail.example.test"}, Dir: t.TempDir(), Challenge: "dns-01"}); err == nil {
		t.Error("an unknown challenge accepted")
	}
}
