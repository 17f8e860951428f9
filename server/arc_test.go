package server

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"postern/filters/arc"
	"postern/filters/dkim"
	"postern/filters/dns"
	"postern/filters/dns/dnstest"
	"postern/policy"
)

// TestARCVerifyOverrideAndSealForward: a message from a p=reject domain
// reaches us through a mailing list that added a footer (its DKIM
// signature breaks) and sealed it, from an address outside the domain's
// SPF. With the list a trusted sealer, DMARC's reject is overridden and
// the message taken; our alias forwards it to another host, sealed by us
// (i=2, cv=pass) with our Authentication-Results in the AAR, and the
// chain the next host sees verifies. Without the trust, it is refused.
func TestARCVerifyOverrideAndSealForward(t *testing.T) {
	remote := startRemoteMTA(t)
	_, port, _ := net.SplitHostPort(remote.addr)

	genKey := func(domain, sel string) dkim.Key {
		s, err := dkim.GenerateKey("ed25519", 0)
		if err != nil {
			t.Fatal(err)
		}
		return dkim.Key{Domain: domain, Selector: sel, Signer: s}
	}
	author, list, ours := genKey("example.org", "a1"), genKey("lists.example.net", "l1"), genKey("example.test", "s1")
	zone := dnstest.NewZone().Add(
		"remote.example. 300 IN MX 10 mx.remote.example.",
		"mx.remote.example. 300 IN A 127.0.0.2",
		`_dmarc.example.org. 300 IN TXT "v=DMARC1; p=reject"`,
		`example.org. 300 IN TXT "v=spf1 ip4:192.0.2.1 -all"`,
	)
	for _, k := range []dkim.Key{author, list, ours} {
		rec, _ := dkim.DNSRecord(k)
		zone.Add(strings.Replace(rec, " IN TXT ", " 300 IN TXT ", 1))
	}
	dnsSrv := dnstest.Start(t, zone)
	resolver, err := dns.New(dns.Options{Servers: []string{dnsSrv.Addr}, CacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}

	// The list's copy: signed by the author, footer added, sealed.
	orig := "From: Alice <alice@example.org>\r\nTo: team@example.test\r\nSubject: plans\r\n" +
		"Date: Tue, 24 Nov 2026 10:00:00 +0000\r\nMessage-ID: <plans@example.org>\r\n\r\nSee you at noon.\r\n"
	sig, err := dkim.NewSigner([]dkim.Key{author}).Sign(context.Background(), "example.org", strings.NewReader(orig))
	if err != nil {
		t.Fatal(err)
	}
	viaList := "Authentication-Results: mx.lists.example.net; dkim=pass header.d=example.org; dmarc=pass\r\n" +
		sig + "\r\n" + orig + "--\r\nTeam list: https://lists.example.net/team\r\n"
	set, err := arc.Seal(context.Background(), strings.NewReader(viaList), arc.SealOptions{Key: list, AuthservID: "mx.lists.example.net",
		AuthResults: []string{"dkim=pass header.d=example.org", "dmarc=pass header.from=example.org"}})
	if err != nil {
		t.Fatal(err)
	}
	viaList = set + viaList

	start := func(trusted string) *harness {
		h := &harness{t: t, dir: t.TempDir(), user: "alice@example.test", pass: "s3cret pass"}
		h.etc = filepath.Join(h.dir, "etc")
		if err := writeInit(h); err != nil {
			t.Fatal(err)
		}
		h.writeSetting("resolvers", dnsSrv.Addr+"\n")
		h.writeSetting("remoteport", port+"\n")
		// SPF fails (the list sends from its own address): scored, not refused.
		h.writeSetting("filters", "spf score\ndkim\narc\ndmarc\n")
		h.writeSetting("arc", trusted)
		h.writeSetting("aliases", "team: bob@remote.example\n")
		// The failing SPF and DKIM must not file the message as spam
		// (Junk is not where Sieve runs).
		h.writeSetting("spamscore", "reject 100\nquarantine 50\n")
		der, err := x509.MarshalPKCS8PrivateKey(ours.Signer)
		if err != nil {
			t.Fatal(err)
		}
		os.MkdirAll(filepath.Join(h.etc, dkim.KeyDir), 0o700)
		if err := os.WriteFile(filepath.Join(h.etc, dkim.KeyDir, dkim.KeyFileName("example.test", "s1")),
			pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		h.start()
		t.Cleanup(h.stop)
		return h
	}

	// Not trusted: DMARC's reject stands.
	h := start("# no trusted sealers\n")
	err = h.send("alice@example.org", []string{"team@example.test"}, []byte(viaList))
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 550 || !strings.Contains(se.Message, "DMARC") {
		t.Fatalf("untrusted list: %v, want a DMARC refusal", err)
	}
	h.stop()

	h = start("trusted lists.example.net\n")
	if err := h.send("alice@example.org", []string{"team@example.test"}, []byte(viaList)); err != nil {
		t.Fatalf("trusted list: %v", err)
	}
	waitFor(t, "the forwarded copy", func() bool { return len(remote.messages()) == 1 })
	fwd := remote.messages()[0].data
	if !bytes.HasPrefix(fwd, []byte("ARC-Seal: i=2; a=ed25519-sha256; ")) {
		t.Fatalf("forwarded copy not sealed:\n%.600s", fwd)
	}
	v, err := arc.Verify(context.Background(), resolver, bytes.NewReader(fwd), arc.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if v.Status != arc.Pass || v.Instances() != 2 || v.NewestSealer() != "example.test" || v.Sets[1].CV != "pass" {
		t.Fatalf("chain at the next hop: %v %d %q (%s)", v.Status, v.Instances(), v.NewestSealer(), v.Reason)
	}
	aar := v.Sets[1].AuthResults
	for _, want := range []string{"mail.example.test;", "dkim=fail", "arc=pass (i=1) header.oldest-pass=0 smtp.remote-ip=127.0.0.1", "dmarc=fail (p=reject dis=none policy.override=arc) header.from=example.org"} {
		if !strings.Contains(aar, want) {
			t.Errorf("our AAR lacks %q: %s", want, aar)
		}
	}

	// A forward the delivery agent makes (here alice's Sieve redirect) is
	// sealed the same way, from the Authentication-Results the stored
	// message carries.
	h.srv.mta.Local.Agent.SetSendmail([]string{buildPostern(t), "--config", h.etc, "sendmail"})
	home := filepath.Join(h.dir, "data", "mail", "example.test", "alice")
	if err := os.WriteFile(filepath.Join(home, ".dovecot.sieve"), []byte("redirect \"bob@remote.example\";\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := h.send("alice@example.org", []string{"alice@example.test"}, []byte(viaList)); err != nil {
		t.Fatalf("to alice: %v", err)
	}
	waitFor(t, "alice's redirected copy", func() bool { return len(remote.messages()) == 2 })
	fwd = remote.messages()[1].data
	v, err = arc.Verify(context.Background(), resolver, bytes.NewReader(fwd), arc.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if v.Status != arc.Pass || v.Instances() != 2 || v.NewestSealer() != "example.test" || v.Sets[1].CV != "pass" {
		t.Fatalf("redirected copy's chain: %v %d %q (%s)\n%.800s", v.Status, v.Instances(), v.NewestSealer(), v.Reason, fwd)
	}
	if aar := v.Sets[1].AuthResults; !strings.Contains(aar, "arc=pass (i=1)") || !strings.Contains(aar, "policy.override=arc") {
		t.Errorf("redirected copy's AAR: %s", aar)
	}
	h.stop()

	// With "seal no" the copy goes on as it came, its chain ending at i=1.
	h = start("trusted lists.example.net\nseal no\n")
	if err := h.send("alice@example.org", []string{"team@example.test"}, []byte(viaList)); err != nil {
		t.Fatalf("seal no: %v", err)
	}
	waitFor(t, "the second forwarded copy", func() bool { return len(remote.messages()) == 3 })
	fwd = remote.messages()[2].data
	if bytes.Contains(fwd, []byte("i=2;")) || !bytes.Contains(fwd, []byte("ARC-Seal: i=1;")) {
		t.Fatalf("seal no: copy sealed again:\n%.600s", fwd)
	}
}

// DMARC reads the ARC result: a list that runs dmarc first is refused
// with the line to fix.
func TestFilterListARCBeforeDMARC(t *testing.T) {
	lines := func(names ...string) []policy.Line {
		var out []policy.Line
		for i, n := range names {
			out = append(out, policy.Line{File: "filters", Num: i + 1, Text: n})
		}
		return out
	}
	if _, err := parseFilterList(lines("spf", "dkim", "arc", "dmarc")); err != nil {
		t.Errorf("arc before dmarc: %v", err)
	}
	if _, err := parseFilterList(lines("arc")); err != nil {
		t.Errorf("arc alone: %v", err)
	}
	_, err := parseFilterList(lines("dkim", "dmarc", "arc score"))
	if err == nil || !strings.Contains(err.Error(), "filters:3:") || !strings.Contains(err.Error(), "before dmarc") {
		t.Errorf("dmarc before arc: %v", err)
	}
}
