// Package acmetest runs Let's Encrypt's test CA, Pebble, in the test's
// process: a real ACME server (RFC 8555) whose validation authority
// resolves names through the given DNS server, fetches http-01 challenges
// and makes tls-alpn-01 handshakes (RFC 8737) on the given ports, for tests of certificate issuance without
// the Internet. Only tests import it.
package acmetest

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
)

// CA is a running Pebble.
type CA struct {
	// Directory is the ACME directory URL.
	Directory string
	// Client trusts the directory's HTTPS certificate.
	Client *http.Client

	ca       *ca.CAImpl
	srv      *httptest.Server
	mgmt     *httptest.Server // Pebble's management interface
	requests atomic.Int64
	posts    atomic.Int64 // ACME operations: every one is a signed POST
	ariGets  atomic.Int64 // renewal information asked for (RFC 9773)
}

// Start runs Pebble until the test ends. Its validation authority asks
// the DNS server at dnsAddr (TCP) for names' addresses and fetches http-01
// challenges on httpPort. Pebble's random pauses and refused nonces are
// off, so that tests are quick and repeatable.
func Start(t testing.TB, dnsAddr string, httpPort int) *CA {
	return StartPorts(t, dnsAddr, httpPort, 0)
}

// StartPorts is Start with the port of tls-alpn-01 handshakes too (443 at
// a real CA); 0 fails every tls-alpn-01 validation.
func StartPorts(t testing.TB, dnsAddr string, httpPort, tlsPort int) *CA {
	t.Setenv("PEBBLE_VA_NOSLEEP", "1")
	t.Setenv("PEBBLE_WFE_NONCEREJECT", "0")
	t.Setenv("PEBBLE_AUTHZREUSE", "0")
	logger := log.New(io.Discard, "", 0)
	if testing.Verbose() {
		logger = log.New(testWriter{t}, "pebble ", 0)
	}
	store := db.NewMemoryStore()
	authority := ca.New(logger, store, "", "ecdsa", 0, 1, map[string]ca.Profile{"default": {Description: "test"}})
	validator := va.New(logger, httpPort, tlsPort, false, dnsAddr, store)
	front := wfe.New(logger, store, validator, authority, []string{"pebble.letsencrypt.org"}, false, false, 0, 0)
	c := &CA{ca: authority}
	h := front.Handler()
	c.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.requests.Add(1)
		if r.Method == http.MethodPost {
			c.posts.Add(1)
		} else if strings.Contains(r.URL.Path, "renewalInfo/") {
			c.ariGets.Add(1)
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(c.srv.Close)
	c.mgmt = httptest.NewTLSServer(front.ManagementHandler())
	t.Cleanup(c.mgmt.Close)
	c.Directory = c.srv.URL + wfe.DirectoryPath
	c.Client = c.srv.Client()
	return c
}

// Roots is a pool holding the CA's root, to verify what it issued.
func (c *CA) Roots() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c.ca.GetRootCert(0).Cert)
	return p
}

// DirectoryCertPEM is the directory's HTTPS certificate, for a client
// configured with a file of trusted roots (the "acmeca" setting).
func (c *CA) DirectoryCertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.srv.Certificate().Raw})
}

// Requests counts the HTTP requests the CA has had.
func (c *CA) Requests() int64 { return c.requests.Load() }

// Posts counts the ACME operations (accounts, orders, challenges,
// certificates, revocations: all signed POSTs) the CA has had.
func (c *CA) Posts() int64 { return c.posts.Load() }

// RenewalInfoRequests counts the GETs of renewal information (RFC 9773).
func (c *CA) RenewalInfoRequests() int64 { return c.ariGets.Load() }

// SetRenewalInfo makes the CA answer renewalInfo for the certificate
// certPEM (its first PEM block) with body, verbatim: a window of the
// test's choosing, or garbage.
func (c *CA) SetRenewalInfo(t testing.TB, certPEM []byte, body string) {
	t.Helper()
	block, _ := pem.Decode(certPEM)
	if block == nil {
		t.Fatal("SetRenewalInfo: no PEM certificate")
	}
	req, _ := json.Marshal(map[string]string{
		"Certificate": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: block.Bytes})),
		"ARIResponse": body,
	})
	resp, err := c.mgmt.Client().Post(c.mgmt.URL+"/set-renewal-info/", "application/json", bytes.NewReader(req))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("SetRenewalInfo: %s %s", resp.Status, b)
	}
}

// Close stops the CA (a test of a CA that cannot be reached).
func (c *CA) Close() { c.srv.Close() }

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}
