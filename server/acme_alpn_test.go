package server

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"postern/filters/dns/dnstest"
	"postern/internal/acme/acmetest"
)

// TestACMETLSALPN01 runs the server with acmehosts and acmechallenge
// tls-alpn-01 against Pebble, whose tls-alpn-01 handshake reaches the
// webs listener (through a relay: the CA's port is fixed before the
// server binds). When the CA's handshake arrives, the relay first checks,
// while the name is being validated, what other clients of the server's
// TLS listeners see; then the certificate is issued and served.
func TestACMETLSALPN01(t *testing.T) {
	h := &harness{t: t, dir: t.TempDir(), user: "alice@example.test", pass: "s3cret pass"}
	h.etc = filepath.Join(h.dir, "etc")
	if err := writeInit(h); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.stop)
	relay, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dns := dnstest.Start(t, dnstest.NewZone().Add("mail.example.test. 300 IN A 127.0.0.1"))
	ca := acmetest.StartPorts(t, dns.Addr, 0, relay.Addr().(*net.TCPAddr).Port)

	listen, _ := os.ReadFile(filepath.Join(h.etc, "listen"))
	h.writeSetting("listen", string(listen)+"webs 127.0.0.1:0\nsubmissions 127.0.0.1:0\n")
	h.writeSetting("acmehosts", "mail.example.test\n")
	h.writeSetting("acmechallenge", "tls-alpn-01\n")
	h.writeSetting("acmedirectory", ca.Directory+"\n")
	os.WriteFile(filepath.Join(h.etc, "acme-directory-ca.pem"), ca.DirectoryCertPEM(), 0o644)
	h.writeSetting("acmeca", "acme-directory-ca.pem\n")

	addrs := map[string]string{}
	ready := make(chan struct{}) // addrs is filled (or the test is over)
	var readyOnce sync.Once
	closeReady := func() { readyOnce.Do(func() { close(ready) }) }
	var (
		mu      sync.Mutex
		checked bool
		during  []error
	)
	var relayWG sync.WaitGroup
	t.Cleanup(func() { relay.Close(); closeReady(); relayWG.Wait() })
	relayWG.Add(1)
	go func() {
		defer relayWG.Done()
		for {
			caConn, err := relay.Accept()
			if err != nil {
				return
			}
			<-ready
			mu.Lock()
			if !checked {
				checked = true
				during = checkDuringValidation(addrs, ca.Directory)
			}
			mu.Unlock()
			relayWG.Add(1)
			go func() {
				defer relayWG.Done()
				relayTo(caConn, addrs["webs"])
			}()
		}
	}()

	h.start()
	for _, name := range []string{"webs", "imaps", "submissions", "web"} {
		addrs[name] = h.addr(name)
	}
	closeReady()

	deadline := time.Now().Add(60 * time.Second)
	for h.srv.acme.Load().Certificate("mail.example.test") == nil {
		if time.Now().After(deadline) {
			t.Fatal("no certificate after 60 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	mu.Lock()
	if !checked {
		t.Error("the CA's handshake did not come through the relay")
	}
	for _, err := range during {
		t.Error(err)
	}
	mu.Unlock()

	// The issued certificate is served on HTTPS and IMAPS.
	verified := &tls.Config{ServerName: "mail.example.test", RootCAs: ca.Roots()}
	for _, name := range []string{"webs", "imaps"} {
		conn, err := tls.Dial("tcp", addrs[name], verified)
		if err != nil {
			t.Fatalf("%s with the CA's root: %v", name, err)
		}
		conn.Close()
	}
	// The authorization is over: no challenge certificate any more.
	cs, _, err := alpnHello(addrs["webs"], "mail.example.test", "acme-tls/1")
	if err != nil || cs.NegotiatedProtocol != "" || isChallengeCert(cs.PeerCertificates[0]) {
		t.Errorf("after the authorization: %v, negotiated %q", err, cs.NegotiatedProtocol)
	}
}

// checkDuringValidation is run when the CA's handshake arrives, before
// it is passed on: mail.example.test is being validated.
func checkDuringValidation(addrs map[string]string, caURL string) []error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	// The CA's hello on every implicit-TLS listener: the challenge
	// certificate, "acme-tls/1", and the connection closed with nothing
	// sent (no greeting, no HTTP).
	for _, name := range []string{"webs", "imaps", "submissions"} {
		cs, rest, err := alpnHello(addrs[name], "mail.example.test", "acme-tls/1")
		switch {
		case err != nil:
			fail("%s: the CA's hello: %v", name, err)
		case cs.NegotiatedProtocol != "acme-tls/1" || !isChallengeCert(cs.PeerCertificates[0]):
			fail("%s: the CA's hello got no challenge certificate (negotiated %q)", name, cs.NegotiatedProtocol)
		case rest != "":
			fail("%s: the challenge connection carried %q; want it closed after the handshake", name, rest)
		}
	}
	// Other names, other protocol lists: the usual certificate, nothing
	// negotiated.
	for _, c := range []struct {
		name, listener, sni string
		protos              []string
	}{
		{"acme-tls/1 for a name not being validated", "webs", "other.example.test", []string{"acme-tls/1"}},
		{"acme-tls/1 without a name", "imaps", "", []string{"acme-tls/1"}},
		{"acme-tls/1 among others", "webs", "mail.example.test", []string{"h2", "acme-tls/1"}},
		{"an HTTPS client", "webs", "mail.example.test", []string{"h2", "http/1.1"}},
		{"an IMAPS client", "imaps", "mail.example.test", nil},
	} {
		conn, err := tls.Dial("tcp", addrs[c.listener], &tls.Config{ServerName: c.sni, NextProtos: c.protos, InsecureSkipVerify: true})
		if err != nil {
			fail("%s: %v", c.name, err)
			continue
		}
		cs := conn.ConnectionState()
		if cs.NegotiatedProtocol != "" || isChallengeCert(cs.PeerCertificates[0]) {
			fail("%s: negotiated %q, challenge certificate %v", c.name, cs.NegotiatedProtocol, isChallengeCert(cs.PeerCertificates[0]))
		}
		if c.listener == "imaps" {
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			if line, err := bufio.NewReader(conn).ReadString('\n'); err != nil || !strings.HasPrefix(line, "* OK") {
				fail("%s: greeting %q, %v", c.name, line, err)
			}
		}
		conn.Close()
	}
	// A browser gets its page.
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := client.Get("https://" + addrs["webs"] + "/metrics")
	if err != nil {
		fail("HTTPS GET during validation: %v", err)
	} else {
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			fail("HTTPS GET during validation: %s", resp.Status)
		}
	}
	return errs
}

// alpnHello makes a TLS handshake with addr asking for sni and protos,
// then reads until the server closes: what it sent.
func alpnHello(addr, sni string, protos ...string) (tls.ConnectionState, string, error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr,
		&tls.Config{ServerName: sni, NextProtos: protos, InsecureSkipVerify: true})
	if err != nil {
		return tls.ConnectionState{}, "", err
	}
	defer conn.Close()
	cs := conn.ConnectionState()
	if cs.NegotiatedProtocol != "acme-tls/1" {
		return cs, "", nil
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second)) // a bound, not a wait: the server closes at once
	rest, err := io.ReadAll(conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return cs, string(rest), errors.New("the server kept the challenge connection open")
	}
	return cs, string(rest), nil
}

var idPeACMEIdentifier = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 31} // RFC 8737 section 3

func isChallengeCert(c *x509.Certificate) bool {
	for _, e := range c.Extensions {
		if e.Id.Equal(idPeACMEIdentifier) {
			return true
		}
	}
	return false
}

// relayTo passes a connection on to addr, both ways, until either side
// closes.
func relayTo(c net.Conn, addr string) {
	defer c.Close()
	up, err := net.Dial("tcp", addr)
	if err != nil {
		return
	}
	defer up.Close()
	done := make(chan struct{})
	go func() {
		io.Copy(up, c)
		up.(*net.TCPConn).CloseWrite()
		close(done)
	}()
	io.Copy(c, up)
	c.Close()
	<-done
}
