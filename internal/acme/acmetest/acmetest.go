// Package acmetest runs Let's Encrypt's test CA, Pebble, in the test's
// process: a real ACME server (RFC 8555) whose validation authority
// resolves names through the given DNS server, fetches http-01 challenges
// and makes tls-alpn-01 handshakes (RFC 8737) on the given ports, for tests of certificate issuance without
// the Internet. Only tests import it.
package acmetest

import (
	"crypto/x509"
	"encoding/pem"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
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
	requests atomic.Int64
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
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(c.srv.Close)
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

// Close stops the CA (a test of a CA that cannot be reached).
func (c *CA) Close() { c.srv.Close() }

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}
