package acme_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"postern/filters/dns/dnstest"
	"postern/internal/acme"
	"postern/internal/acme/acmetest"
)

// setup runs a DNS server and Pebble, and serves m's http-01 answers on
// the port Pebble checks; the returned function sets the Manager served.
func setup(t *testing.T) (*acmetest.CA, func(*acme.Manager)) {
	t.Helper()
	zone := dnstest.NewZone().Add(
		"mail.example.test. 300 IN A 127.0.0.1",
		"imap.example.test. 300 IN A 127.0.0.1",
		"elsewhere.example.test. 300 IN A 127.0.0.2", // nothing answers there
	)
	dns := dnstest.Start(t, zone)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var served *acme.Manager
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if served == nil {
			http.NotFound(w, r)
			return
		}
		served.ServeHTTP(w, r)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	ca := acmetest.Start(t, dns.Addr, ln.Addr().(*net.TCPAddr).Port)
	return ca, func(m *acme.Manager) { served = m }
}

func verify(t *testing.T, cert *tls.Certificate, host string, roots *x509.CertPool) {
	t.Helper()
	if cert == nil {
		t.Fatalf("no certificate for %s", host)
	}
	inter := x509.NewCertPool()
	for _, der := range cert.Certificate[1:] {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		inter.AddCert(c)
	}
	if _, err := cert.Leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: roots, Intermediates: inter}); err != nil {
		t.Fatalf("certificate for %s does not verify against the CA's root: %v", host, err)
	}
}

func TestIssueKeepAndRenew(t *testing.T) {
	ca, serve := setup(t)
	dir := t.TempDir()
	opt := acme.Options{
		Hosts: []string{"mail.example.test", "imap.example.test"}, Email: "postmaster@example.test",
		Directory: ca.Directory, HTTPClient: ca.Client, Dir: dir,
	}
	m, err := acme.New(opt)
	if err != nil {
		t.Fatal(err)
	}
	serve(m)
	if c := m.Certificate("mail.example.test"); c != nil {
		t.Fatal("a certificate before any was issued")
	}
	if err := m.Renew(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	for _, h := range opt.Hosts {
		verify(t, m.Certificate(h), h, ca.Roots())
		p := filepath.Join(dir, h+".pem")
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600 (it holds the private key)", p, st.Mode().Perm())
		}
		if _, err := tls.LoadX509KeyPair(p, p); err != nil {
			t.Errorf("%s is not in the tlscert format (chain then key): %v", p, err)
		}
	}
	if m.Certificate("MAIL.example.test.") == nil {
		t.Error("the lookup is not case- and dot-insensitive")
	}
	first := m.Certificate("mail.example.test").Leaf.SerialNumber

	// A restart finds the certificates on disk and asks the CA only for
	// its renewal information (RFC 9773), once per certificate.
	before, ariBefore := ca.Posts(), ca.RenewalInfoRequests()
	m2, err := acme.New(opt)
	if err != nil {
		t.Fatal(err)
	}
	if err := m2.Renew(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if n := ca.Posts() - before; n != 0 {
		t.Errorf("a restart with valid certificates made %d ACME requests", n)
	}
	if n := ca.RenewalInfoRequests() - ariBefore; n != 2 {
		t.Errorf("a restart asked for renewal information %d times, want once per certificate (2)", n)
	}
	if got := m2.Certificate("mail.example.test"); got == nil || got.Leaf.SerialNumber.Cmp(first) != 0 {
		t.Fatal("the kept certificate was not loaded")
	}

	// Renewal replaces the certificate and its file.
	serve(m2)
	if err := m2.Renew(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	renewed := m2.Certificate("mail.example.test")
	verify(t, renewed, "mail.example.test", ca.Roots())
	if renewed.Leaf.SerialNumber.Cmp(first) == 0 {
		t.Fatal("forced renewal kept the old certificate")
	}
	p := filepath.Join(dir, "mail.example.test.pem")
	onDisk, err := tls.LoadX509KeyPair(p, p)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(onDisk.Certificate[0])
	if leaf.SerialNumber.Cmp(renewed.Leaf.SerialNumber) != 0 {
		t.Error("the file still holds the old certificate")
	}

	// A certificate due for renewal (RenewBefore longer than its life) is
	// renewed without force.
	opt.RenewBefore = 10 * 365 * 24 * time.Hour
	m3, err := acme.New(opt)
	if err != nil {
		t.Fatal(err)
	}
	serve(m3)
	if err := m3.Renew(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if m3.Certificate("mail.example.test").Leaf.SerialNumber.Cmp(renewed.Leaf.SerialNumber) == 0 {
		t.Error("a certificate due for renewal was not renewed")
	}
	// No file left behind but the account key and the certificates.
	ents, _ := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != "account.pem imap.example.test.pem mail.example.test.pem" {
		t.Errorf("state directory holds %v", names)
	}
}

func TestFailedValidation(t *testing.T) {
	ca, serve := setup(t)
	m, err := acme.New(acme.Options{
		Hosts:     []string{"elsewhere.example.test", "mail.example.test"},
		Directory: ca.Directory, HTTPClient: ca.Client, Dir: t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	serve(m)
	err = m.Renew(context.Background(), false)
	if err == nil || !strings.Contains(err.Error(), "elsewhere.example.test") || !strings.Contains(err.Error(), "http-01") {
		t.Fatalf("want an http-01 failure for elsewhere.example.test, got %v", err)
	}
	if m.Certificate("elsewhere.example.test") != nil {
		t.Error("a certificate for a name whose challenge failed")
	}
	// The other host is not held up by the failure.
	verify(t, m.Certificate("mail.example.test"), "mail.example.test", ca.Roots())
	// The failed host waits before the next attempt.
	before := ca.Requests()
	if err := m.Renew(context.Background(), false); err != nil {
		t.Fatalf("an attempt during the pause: %v", err)
	}
	if n := ca.Requests() - before; n != 0 {
		t.Errorf("%d requests to the CA during the pause after a failure", n)
	}
	// Retry (a reload) ends the pause: the failed host is tried again at
	// once, the one with its certificate is left alone.
	m.Retry()
	before = ca.Requests()
	if err := m.Renew(context.Background(), false); err == nil || !strings.Contains(err.Error(), "elsewhere.example.test") {
		t.Fatalf("the attempt after Retry: %v", err)
	} else if strings.Contains(err.Error(), "mail.example.test") {
		t.Errorf("Retry renewed a host that has its certificate: %v", err)
	}
	if ca.Requests() == before {
		t.Error("no request to the CA after Retry")
	}
}

func TestCAUnreachable(t *testing.T) {
	ca, _ := setup(t)
	ca.Close()
	m, err := acme.New(acme.Options{Hosts: []string{"mail.example.test"}, Directory: ca.Directory, HTTPClient: ca.Client, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := m.Renew(ctx, false); err == nil {
		t.Fatal("no error with the CA down")
	}
	if m.Certificate("mail.example.test") != nil {
		t.Fatal("a certificate without a CA")
	}
}

func TestServeHTTPUnknown(t *testing.T) {
	m, err := acme.New(acme.Options{Hosts: []string{"mail.example.test"}, Directory: "https://127.0.0.1:1/dir", Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/", "/.well-known/acme-challenge/", "/.well-known/acme-challenge/nothing", "/../account.pem"} {
		req, _ := http.NewRequest("GET", "http://mail.example.test"+path, nil)
		rec := &recorder{header: http.Header{}}
		m.ServeHTTP(rec, req)
		if rec.code != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", path, rec.code)
		}
	}
}

type recorder struct {
	header http.Header
	code   int
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = 200
	}
	return len(b), nil
}
func (r *recorder) WriteHeader(c int) { r.code = c }

func TestCheckHost(t *testing.T) {
	for _, h := range []string{"mail.example.com", "a-b.example.co.uk", "xn--bcher-kva.example"} {
		if err := acme.CheckHost(h); err != nil {
			t.Errorf("%s: %v", h, err)
		}
	}
	for _, h := range []string{"", "localhost", "*.com", "a.*.example.com", "192.0.2.1", "-a.example.com", "a..example.com",
		"Mail.example.com", "a_b.example.com", "../x.example", "mail.example.com.", strings.Repeat("a", 64) + ".example"} {
		if err := acme.CheckHost(h); err == nil {
			t.Errorf("%q accepted", h)
		}
	}
	_, err := acme.New(acme.Options{Hosts: []string{"*.example.com"}, Dir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "dns-01") {
		t.Errorf("wildcard with http-01: %v", err)
	}
	if _, err := acme.New(acme.Options{Dir: t.TempDir()}); err == nil {
		t.Error("no hosts accepted")
	}
	// A damaged account key is reported, not replaced.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "account.pem"), []byte("garbage"), 0o600)
	if _, err := acme.New(acme.Options{Hosts: []string{"mail.example.com"}, Dir: dir}); err == nil || errors.Is(err, os.ErrNotExist) {
		t.Errorf("damaged account key: %v", err)
	}
}
