// Package netservetest holds what the protocol servers' tests share to
// check their connection limits (netserve.Limits) over real connections:
// reading a refusal to its end, and waiting for sessions to end; and a
// certificate for tests over real TLS.
package netservetest

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"testing"
	"time"
)

// ExpectRefusal reads from conn, a connection over a limit, and fails t
// unless the server says exactly line (with its line end) and closes.
func ExpectRefusal(t testing.TB, conn net.Conn, line string) {
	t.Helper()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(conn)
	if got, err := br.ReadString('\n'); err != nil || got != line {
		t.Fatalf("over the limit: %q, %v; want the refusal %q", got, err, line)
	}
	if rest, err := io.ReadAll(br); len(rest) > 0 || err != nil {
		t.Fatalf("after the refusal: %q, %v; want EOF", rest, err)
	}
}

// Dial connects to addr and closes the connection when t ends.
func Dial(t testing.TB, addr string) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// WaitActive waits until active reports n sessions: a session ends a
// moment after its client closes or logs out.
func WaitActive[N int | int64](t testing.TB, active func() N, n N) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); active() != n; {
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions, want %d", active(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TLSConfigs makes a self-signed certificate for host, and the other
// names or IP addresses in also, valid for an hour: server serves it,
// client trusts it and expects host.
func TLSConfigs(t testing.TB, host string, also ...string) (server, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: host},
		DNSNames:     []string{host},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, name := range also {
		if ip := net.ParseIP(name); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, name)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	server = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	client = &tls.Config{RootCAs: pool, ServerName: host}
	return server, client
}
