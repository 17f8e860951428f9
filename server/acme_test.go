package server

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"postern/filters/dns/dnstest"
	"postern/internal/acme/acmetest"
)

// TestACMECertificates runs the server with acmehosts against a real ACME
// CA (Pebble, in-process) whose validation authority resolves
// mail.example.test through a test DNS server and fetches the http-01
// challenge from the server's acme listener; then checks what TLS clients
// are shown.
func TestACMECertificates(t *testing.T) {
	h := &harness{t: t, dir: t.TempDir(), user: "alice@example.test", pass: "s3cret pass"}
	h.etc = filepath.Join(h.dir, "etc")
	if err := writeInit(h); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.stop)
	// The CA checks one fixed port: take a free one for the acme listener.
	probe, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := probe.Addr().(*net.TCPAddr).Port
	dns := dnstest.Start(t, dnstest.NewZone().Add("mail.example.test. 300 IN A 127.0.0.1"))
	ca := acmetest.Start(t, dns.Addr, port)

	listen, _ := os.ReadFile(filepath.Join(h.etc, "listen"))
	h.writeSetting("listen", string(listen)+fmt.Sprintf("acme 127.0.0.1:%d\n", port))
	h.writeSetting("acmehosts", "mail.example.test\n")
	h.writeSetting("acmeemail", "postmaster@example.test\n")
	h.writeSetting("acmedirectory", ca.Directory+"\n")
	os.WriteFile(filepath.Join(h.etc, "acme-directory-ca.pem"), ca.DirectoryCertPEM(), 0o644)
	h.writeSetting("acmeca", "acme-directory-ca.pem\n")
	// Held until now: closed earlier, the port could go to another test
	// while Pebble starts (it did once, under make test).
	probe.Close()
	h.start()

	deadline := time.Now().Add(60 * time.Second)
	for h.srv.acme.Load().Certificate("mail.example.test") == nil {
		if time.Now().After(deadline) {
			t.Fatal("no certificate after 60 s")
		}
		time.Sleep(50 * time.Millisecond)
	}

	// A client that checks the name, with SNI, on STARTTLS (submission)
	// and on implicit TLS (IMAPS).
	verified := &tls.Config{ServerName: "mail.example.test", RootCAs: ca.Roots()}
	if err := startTLS(h.addr("submission"), verified); err != nil {
		t.Fatalf("STARTTLS with the CA's root: %v", err)
	}
	conn, err := tls.Dial("tcp", h.addr("imaps"), verified)
	if err != nil {
		t.Fatalf("IMAPS with the CA's root: %v", err)
	}
	conn.Close()

	// An MTA that sends no SNI (Postfix by default) and one asking for
	// another name get the certificate of "me" (mail.example.test).
	for _, name := range []string{"", "other.example.test"} {
		leaf := peerLeaf(t, h.addr("smtp"), name)
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "mail.example.test", Roots: ca.Roots(), Intermediates: intermediates(t, h.addr("smtp"), name)}); err != nil {
			t.Errorf("SNI %q: shown %q from %q, not the ACME certificate: %v", name, leaf.Subject, leaf.Issuer, err)
		}
	}

	// Its expiry is exported for alerts.
	resp, err := http.Get("http://" + h.addr("web") + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `postern_acme_certificate_expiry_timestamp_seconds{host="mail.example.test"}`) ||
		!strings.Contains(string(body), "postern_acme_hosts_without_certificate 0") {
		t.Error("/metrics lacks the ACME certificate's expiry")
	}
	// The acme listener answers nothing but challenges.
	resp, err = http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("acme listener served /metrics: %d", resp.StatusCode)
	}

	// A restart takes the certificate from disk without asking the CA for
	// one (only for its renewal information, RFC 9773).
	before := ca.Posts()
	h.restart()
	if h.srv.acme.Load().Certificate("mail.example.test") == nil {
		t.Fatal("the certificate was not kept across a restart")
	}
	if err := startTLS(h.addr("submission"), verified); err != nil {
		t.Fatalf("STARTTLS after the restart: %v", err)
	}
	time.Sleep(200 * time.Millisecond) // the renewal loop's first pass
	if n := ca.Posts() - before; n != 0 {
		t.Errorf("the restart made %d ACME requests to the CA", n)
	}

	// Without acmehosts (a reload), the tlscert file's certificate is
	// shown again.
	os.Remove(filepath.Join(h.etc, "acmehosts"))
	if err := h.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	leaf := peerLeaf(t, h.addr("smtp"), "mail.example.test")
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: ca.Roots()}); err == nil {
		t.Error("the ACME certificate is still shown after acmehosts was removed")
	}
}

// peerLeaf is the certificate the SMTP server at addr shows on STARTTLS to
// a client asking for name ("" sends no SNI).
func peerLeaf(t *testing.T, addr, name string) *x509.Certificate {
	t.Helper()
	return peerChain(t, addr, name)[0]
}

func intermediates(t *testing.T, addr, name string) *x509.CertPool {
	t.Helper()
	p := x509.NewCertPool()
	for _, c := range peerChain(t, addr, name)[1:] {
		p.AddCert(c)
	}
	return p
}

func peerChain(t *testing.T, addr, name string) []*x509.Certificate {
	t.Helper()
	var chain []*x509.Certificate
	err := startTLS(addr, &tls.Config{ServerName: name, InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if name == "" && cs.ServerName != "" {
				return fmt.Errorf("SNI %q sent", cs.ServerName)
			}
			chain = cs.PeerCertificates
			return nil
		}})
	if err != nil {
		t.Fatalf("STARTTLS to %s: %v", addr, err)
	}
	if len(chain) == 0 {
		t.Fatal("no certificate shown")
	}
	return chain
}

// startTLS says EHLO and STARTTLS to the SMTP server at addr and completes
// the handshake (a NOOP over TLS): the handshake's error, or the NOOP's.
func startTLS(addr string, cfg *tls.Config) error {
	c, err := smtp.DialStartTLS(addr, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	return c.Noop()
}
