package server

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"postern/filters/policyd/policydtest"
)

// startScriptedPolicy runs a policy server on 127.0.0.1 that answers
// each request with action=answer(request).
func startScriptedPolicy(t *testing.T, answer func(req map[string]string) string) *policydtest.Server {
	t.Helper()
	return policydtest.Start(t, "tcp", "127.0.0.1:0", policydtest.Action(answer))
}

// A reload closes the replaced policy service's kept connections at once;
// a session that began before the reload still gets its answers (over a
// connection that is closed when the answer is in), and the new service
// keeps its own connection.
func TestPolicyServiceReloadClosesKeptConnections(t *testing.T) {
	ps := startScriptedPolicy(t, func(map[string]string) string { return "DUNNO" })
	h := newFilterHarness(t, baseZone(), map[string]string{
		"filters":        "policy:p\n",
		"policyservices": "p inet:" + ps.Addr() + "\n",
	})
	old := dialRaw(t, h.addr("smtp"))
	old.as("192.0.2.7", "mail.good.test")
	if code, text := old.cmd("MAIL FROM:<x@good.test>"); code != 250 {
		t.Fatalf("MAIL: %d %s", code, text)
	}
	if code, text := old.cmd("RCPT TO:<%s>", h.user); code != 250 {
		t.Fatalf("RCPT: %d %s", code, text)
	}
	if n := ps.Open.Load(); n != 1 {
		t.Fatalf("%d connections to the policy server after one request, want 1 kept", n)
	}
	if err := h.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the kept connection closed by the reload", func() bool { return ps.Open.Load() == 0 })

	// The session from before the reload asks the old service again.
	asked := len(ps.Requests())
	if code, text := old.cmd("RCPT TO:<%s>", h.user); code != 250 {
		t.Fatalf("RCPT after the reload: %d %s", code, text)
	}
	if len(ps.Requests()) != asked+1 {
		t.Fatalf("the old session's RCPT was not asked about")
	}
	waitFor(t, "the old service's connection closed after its answer", func() bool { return ps.Open.Load() == 0 })

	// A new session uses the new service, which keeps its connection.
	c := dialRaw(t, h.addr("smtp"))
	c.as("192.0.2.7", "mail.good.test")
	if code, text := c.send("x@good.test", h.user, testMessage("after reload", "hello\r\n")); code != 250 {
		t.Fatalf("after the reload: %d %s", code, text)
	}
	if n := ps.Open.Load(); n != 1 {
		t.Fatalf("%d connections after the new service was asked, want 1 kept", n)
	}
}

// DEFER_IF_PERMIT and DEFER_IF_REJECT as in Postfix, with the real
// postgrey: its greylisting DEFER_IF_PERMIT gives way to a reject by a
// later policy service (a 5xx, not a 450), and is applied when the later
// one has no objection; a DEFER_IF_REJECT turns the later reject into a
// 450 with its own text.
func TestPolicyServiceConditionalDeferrals(t *testing.T) {
	addr, _ := startPostgrey(t, 60)
	var rejectAll atomic.Bool
	verdict := startScriptedPolicy(t, func(req map[string]string) string {
		if strings.HasPrefix(req["sender"], "spammer@") || rejectAll.Load() {
			return "REJECT 5.7.1 Known spammer"
		}
		return "DUNNO"
	})
	ifReject := startScriptedPolicy(t, func(req map[string]string) string {
		if strings.HasPrefix(req["sender"], "unsure@") {
			return "DEFER_IF_REJECT 4.7.0 Blocklist lookup failed, try later"
		}
		return "DUNNO"
	})
	h := newFilterHarness(t, baseZone(), map[string]string{
		"filters": "policy:ifreject\npolicy:postgrey\npolicy:verdict\n",
		"policyservices": "postgrey inet:" + addr + " timeout=5s\n" +
			"verdict inet:" + verdict.Addr() + "\n" +
			"ifreject inet:" + ifReject.Addr() + "\n",
	})
	c := dialRaw(t, h.addr("smtp"))
	c.as("192.0.2.7", "mail.good.test")
	if code, text := c.send("spammer@good.test", h.user, testMessage("x", "x\r\n")); code != 554 || text != "5.7.1 Known spammer" {
		t.Fatalf("greylisted, then rejected: %d %s", code, text)
	}
	if code, text := c.send("x@good.test", h.user, testMessage("x", "x\r\n")); code != 450 || !strings.HasPrefix(text, "4.2.0 Greylisted") {
		t.Fatalf("greylisted, no objection after: %d %s", code, text)
	}
	if code, text := c.send("unsure@good.test", h.user, testMessage("x", "x\r\n")); code != 450 || !strings.HasPrefix(text, "4.2.0 Greylisted") {
		t.Fatalf("DEFER_IF_REJECT with no reject after it, greylisted: %d %s", code, text)
	}
	c2 := dialRaw(t, h.addr("smtp"))
	c2.as("192.0.2.8", "mail.good.test")
	// "unsure" rejected by the later service: the reject is deferred.
	rejectAll.Store(true)
	if code, text := c2.send("unsure@good.test", h.user, testMessage("x", "x\r\n")); code != 450 || text != "4.7.0 Blocklist lookup failed, try later" {
		t.Fatalf("DEFER_IF_REJECT, then a reject: %d %s", code, text)
	}
}

// REDIRECT: the message goes to the redirect address only, whichever
// recipient's RCPT the policy service answered it for; the redirect
// target is routed like any recipient: a remote one is relayed even for
// an unauthenticated client (the admin's policy server chose it, as in
// Postfix). One that cannot be routed refuses the message for now.
func TestPolicyServiceRedirect(t *testing.T) {
	redirect := atomic.Pointer[string]{}
	ps := startScriptedPolicy(t, func(req map[string]string) string {
		if req["recipient"] == "carol@example.test" {
			return "REDIRECT " + *redirect.Load()
		}
		return "DUNNO"
	})
	h, remote := newMTAHarnessWith(t, func(h *harness) {
		h.writeSetting("filters", "policy:p\n")
		h.writeSetting("policyservices", "p inet:"+ps.Addr()+"\n")
		h.addUser("carol@example.test", "pw")
		h.addUser("quarantine@example.test", "pw")
	})
	send := func(rcpts ...string) (int, string) {
		c := dialRaw(t, h.addr("smtp"))
		c.cmd("EHLO client.example.net")
		if code, text := c.cmd("MAIL FROM:<x@sender.example>"); code != 250 {
			return code, text
		}
		for _, r := range rcpts {
			if code, text := c.cmd("RCPT TO:<%s>", r); code != 250 {
				return code, text
			}
		}
		c.cmd("DATA")
		c.conn.Write(testMessage("redirected", "hello\r\n"))
		return c.cmd(".")
	}
	to := "quarantine@example.test"
	redirect.Store(&to)
	// Alice's RCPT comes first and is not redirected by itself; carol's
	// REDIRECT takes the whole message.
	if code, text := send(h.user, "carol@example.test"); code != 250 {
		t.Fatalf("redirected message: %d %s", code, text)
	}
	if n := len(inboxMessages(t, h, "quarantine@example.test")); n != 1 {
		t.Fatalf("redirect target has %d messages, want 1", n)
	}
	if n := len(inboxMessages(t, h, h.user)) + len(inboxMessages(t, h, "carol@example.test")); n != 0 {
		t.Fatalf("the original recipients got %d messages, want none", n)
	}

	remoteTo := "<archive@remote.example>"
	redirect.Store(&remoteTo)
	if code, text := send("carol@example.test"); code != 250 {
		t.Fatalf("redirected to a remote address: %d %s", code, text)
	}
	waitFor(t, "the redirected copy relayed", func() bool { return len(remote.messages()) == 1 })
	if m := remote.messages()[0]; strings.Join(m.rcpts, ",") != "archive@remote.example" {
		t.Fatalf("relayed to %v", m.rcpts)
	}
	if n := len(inboxMessages(t, h, "carol@example.test")); n != 0 {
		t.Fatalf("carol got %d messages", n)
	}

	unknown := "nobody@example.test"
	redirect.Store(&unknown)
	if code, text := send("carol@example.test"); code != 451 || text != "4.3.5 Server configuration problem" {
		t.Fatalf("redirected to an unknown user: %d %s", code, text)
	}
	bad := "not-an-address"
	redirect.Store(&bad)
	if code, text := send("carol@example.test"); code != 451 || !strings.HasPrefix(text, "4.3.5 ") {
		t.Fatalf("REDIRECT without an address (a broken policy server): %d %s", code, text)
	}
}

// BCC: one copy to the address, besides the recipients; of two BCCs in
// one transaction only the last counts, as in Postfix 3.x.
func TestPolicyServiceBcc(t *testing.T) {
	ps := startScriptedPolicy(t, func(req map[string]string) string {
		switch req["recipient"] {
		case "carol@example.test":
			return "BCC first-archive@example.test"
		case "dave@example.test":
			return "BCC archive@example.test"
		}
		return "DUNNO"
	})
	h := newFilterHarness(t, baseZone(), map[string]string{
		"filters":        "policy:p\n",
		"policyservices": "p inet:" + ps.Addr() + "\n",
	})
	for _, u := range []string{"carol", "dave", "archive", "first-archive"} {
		h.addUser(u+"@example.test", "pw")
	}
	c := dialRaw(t, h.addr("smtp"))
	c.as("192.0.2.7", "mail.good.test")
	c.cmd("MAIL FROM:<x@good.test>")
	for _, r := range []string{"carol@example.test", "dave@example.test"} {
		if code, text := c.cmd("RCPT TO:<%s>", r); code != 250 {
			t.Fatalf("RCPT %s: %d %s", r, code, text)
		}
	}
	c.cmd("DATA")
	c.conn.Write(testMessage("copied", "hello\r\n"))
	if code, text := c.cmd("."); code != 250 {
		t.Fatalf("DATA: %d %s", code, text)
	}
	for user, want := range map[string]int{"carol": 1, "dave": 1, "archive": 1, "first-archive": 0} {
		if n := len(inboxMessages(t, h, user+"@example.test")); n != want {
			t.Errorf("%s has %d messages, want %d", user, n, want)
		}
	}
}

// testCA makes a certificate authority and its key.
func testCA(t *testing.T, cn string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return cert, key
}

// clientCert issues a client certificate for cn under ca (self-signed
// when ca is nil).
func clientCert(t *testing.T, cn string, ca *x509.Certificate, caKey *ecdsa.PrivateKey) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	parent, signer := ca, caKey
	if ca == nil {
		parent, signer = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// opensslFingerprints are the certificate's and its public key's SHA-256
// fingerprints as openssl(1) prints them, the way postconf(5) tells
// Postfix admins to compute them for check_ccert_access.
func opensslFingerprints(t *testing.T, der []byte) (string, string) {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	file := filepath.Join(t.TempDir(), "cert.pem")
	os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	out, err := exec.Command("openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", file).Output()
	if err != nil {
		t.Fatal(err)
	}
	_, cert, _ := strings.Cut(strings.TrimSpace(string(out)), "=")
	out, err = exec.Command("sh", "-c", "openssl x509 -in "+file+" -noout -pubkey | openssl pkey -pubin -outform DER | openssl dgst -sha256 -c").Output()
	if err != nil {
		t.Fatal(err)
	}
	_, pub, _ := strings.Cut(strings.TrimSpace(string(out)), "= ")
	return cert, strings.ToUpper(pub)
}

// The encryption_* and ccert_* attributes, from a real STARTTLS session:
// the protocol, cipher and key size by OpenSSL's names; with a client
// certificate (tlsclientcerts ask CAFILE) its SHA-256 fingerprints as
// openssl prints them, and the CommonNames, xtext-encoded, only when it
// verifies against CAFILE, as Postfix sends them.
func TestPolicyServiceTLSAttributes(t *testing.T) {
	ps := startScriptedPolicy(t, func(map[string]string) string { return "DUNNO" })
	ca, caKey := testCA(t, "Test Client CA")
	trusted := clientCert(t, "mx.client.example", ca, caKey)
	selfSigned := clientCert(t, "self signed", nil, nil)
	h := newFilterHarness(t, baseZone(), map[string]string{
		"filters":        "policy:p\n",
		"policyservices": "p inet:" + ps.Addr() + "\n",
		"tlsclientcerts": "ask clientca.pem\n",
		"clientca.pem":   string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw})),
	})
	ask := func(cfg *tls.Config) map[string]string {
		t.Helper()
		cfg.InsecureSkipVerify = true
		c, err := smtp.DialStartTLS(h.addr("smtp"), cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Mail("x@good.test", nil); err != nil {
			t.Fatal(err)
		}
		if err := c.Rcpt(h.user, nil); err != nil {
			t.Fatal(err)
		}
		reqs := ps.Requests()
		return reqs[len(reqs)-1]
	}
	check := func(what string, req map[string]string, want map[string]string) {
		t.Helper()
		for k, v := range want {
			if req[k] != v {
				t.Errorf("%s: %s=%q, want %q", what, k, req[k], v)
			}
		}
	}
	certFP, pubFP := opensslFingerprints(t, trusted.Certificate[0])
	req := ask(&tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384},
		Certificates: []tls.Certificate{trusted}})
	check("verified certificate", req, map[string]string{
		"encryption_protocol": "TLSv1.2", "encryption_cipher": "ECDHE-ECDSA-AES256-GCM-SHA384", "encryption_keysize": "256",
		"ccert_subject": "mx.client.example", "ccert_issuer": "Test+20Client+20CA",
		"ccert_fingerprint": certFP, "ccert_pubkey_fingerprint": pubFP,
	})
	if len(certFP) != 95 {
		t.Errorf("fingerprint %q is not SHA-256 in colon-separated hex", certFP)
	}

	certFP, pubFP = opensslFingerprints(t, selfSigned.Certificate[0])
	req = ask(&tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{selfSigned}})
	check("unverified certificate", req, map[string]string{
		"encryption_protocol": "TLSv1.3", "ccert_subject": "", "ccert_issuer": "",
		"ccert_fingerprint": certFP, "ccert_pubkey_fingerprint": pubFP,
	})
	if c := req["encryption_cipher"]; !strings.HasPrefix(c, "TLS_") || req["encryption_keysize"] != map[bool]string{true: "128", false: "256"}[strings.Contains(c, "AES_128")] {
		t.Errorf("TLS 1.3 cipher %q, key size %q", c, req["encryption_keysize"])
	}

	req = ask(&tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}})
	check("no certificate", req, map[string]string{
		"encryption_protocol": "TLSv1.2", "encryption_cipher": "ECDHE-ECDSA-CHACHA20-POLY1305", "encryption_keysize": "256",
		"ccert_subject": "", "ccert_issuer": "", "ccert_fingerprint": "", "ccert_pubkey_fingerprint": "",
	})

	// Without TLS, all empty.
	c := dialRaw(t, h.addr("smtp"))
	c.as("192.0.2.7", "mail.good.test")
	c.send("x@good.test", h.user, testMessage("plain", "x\r\n"))
	reqs := ps.Requests()
	check("no TLS", reqs[len(reqs)-1], map[string]string{
		"encryption_protocol": "", "encryption_cipher": "", "encryption_keysize": "0", "ccert_fingerprint": "",
	})
}

// A DEFER_IF_PERMIT at MAIL (stage=mail) lets MAIL through and defers
// each RCPT, as Postfix does with its sender restrictions'; the next
// transaction starts afresh.
func TestPolicyServiceDeferIfPermitAtMail(t *testing.T) {
	ps := startScriptedPolicy(t, func(req map[string]string) string {
		if strings.HasPrefix(req["sender"], "grey@") {
			return "DEFER_IF_PERMIT 4.7.1 Sender greylisted"
		}
		return "DUNNO"
	})
	h := newFilterHarness(t, baseZone(), map[string]string{
		"filters":        "policy:p\n",
		"policyservices": "p inet:" + ps.Addr() + " stage=mail\n",
	})
	c := dialRaw(t, h.addr("smtp"))
	c.as("192.0.2.7", "mail.good.test")
	if code, text := c.cmd("MAIL FROM:<grey@good.test>"); code != 250 {
		t.Fatalf("MAIL: %d %s", code, text)
	}
	for i := 0; i < 2; i++ {
		if code, text := c.cmd("RCPT TO:<%s>", h.user); code != 450 || text != "4.7.1 Sender greylisted" {
			t.Fatalf("RCPT %d: %d %s", i, code, text)
		}
	}
	c.cmd("RSET")
	if code, text := c.send("x@good.test", h.user, testMessage("x", "x\r\n")); code != 250 {
		t.Fatalf("the next transaction: %d %s", code, text)
	}
}
