// The "too weak" test needs a 512-bit RSA key, which Go refuses to make
// unless told otherwise.
//
//go:debug rsa1024min=0
package dkim_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"postern/filters"
	"postern/filters/dkim"
	"postern/filters/dns"
	"postern/filters/dns/dnstest"
)

// Test keys are made once per test binary: RSA generation is slow under -race.
var (
	keysOnce           sync.Once
	rsaKey, rsa1024Key crypto.Signer
	edKey              crypto.Signer
	rsa512Key          *rsa.PrivateKey
)

func testKeys(t testing.TB) {
	t.Helper()
	keysOnce.Do(func() {
		var err error
		if rsaKey, err = dkim.GenerateKey("rsa", 2048); err != nil {
			panic(err)
		}
		if edKey, err = dkim.GenerateKey("ed25519", 0); err != nil {
			panic(err)
		}
		k, err := rsa.GenerateKey(rand.Reader, 1024)
		if err != nil {
			panic(err)
		}
		rsa1024Key = k
		if rsa512Key, err = rsa.GenerateKey(rand.Reader, 512); err != nil {
			panic(err)
		}
	})
}

func newResolver(t testing.TB, addr string) *dns.Resolver {
	t.Helper()
	r, err := dns.New(dns.Options{Servers: []string{addr}, Timeout: time.Second, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// checkGoroutines fails the test if goroutines started during it are still
// running shortly after it ends.
func checkGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(3 * time.Second)
		for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > before {
			buf := make([]byte, 1<<16)
			t.Errorf("goroutines leaked: %d before, %d after\n%s", before, n, buf[:runtime.Stack(buf, true)])
		}
	})
}

func publish(t testing.TB, zone *dnstest.Zone, k dkim.Key) {
	t.Helper()
	rec, err := dkim.DNSRecord(k)
	if err != nil {
		t.Fatal(err)
	}
	// DNSRecord has no TTL; the zone parser wants one.
	zone.Add(strings.Replace(rec, " IN TXT ", " 300 IN TXT ", 1))
}

const plainMessage = "From: Alice <alice@example.org>\r\n" +
	"To: bob@example.net\r\n" +
	"Subject: lunch\r\n" +
	"Date: Wed, 25 Nov 2026 12:00:00 +0000\r\n" +
	"Message-ID: <1@example.org>\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"\r\n" +
	"Shall we meet at noon?\r\n" +
	"-- \r\nAlice\r\n"

// signedSetup starts DNS with the given keys published and returns a
// signer for them and a resolver.
func signedSetup(t *testing.T, keys ...dkim.Key) (*dkim.Signer, *dns.Resolver, *dnstest.Server) {
	t.Helper()
	zone := dnstest.NewZone()
	for _, k := range keys {
		publish(t, zone, k)
	}
	srv := dnstest.Start(t, zone)
	return dkim.NewSigner(keys), newResolver(t, srv.Addr), srv
}

func sign(t *testing.T, s *dkim.Signer, domain, msg string) string {
	t.Helper()
	field, err := s.Sign(context.Background(), domain, strings.NewReader(msg))
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	if strings.HasSuffix(field, "\r\n") || !strings.HasPrefix(field, "DKIM-Signature: ") {
		t.Fatalf("Sign returned %q, want a field without final CRLF", field)
	}
	return field + "\r\n" + msg
}

func verify(t *testing.T, r *dns.Resolver, msg string) dkim.Verification {
	t.Helper()
	v, err := dkim.Verify(context.Background(), r, strings.NewReader(msg), dkim.VerifyOptions{})
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return v
}

func wantOne(t *testing.T, v dkim.Verification, status dkim.Status) dkim.Signature {
	t.Helper()
	if len(v.Signatures) != 1 {
		t.Fatalf("got %d signatures, want 1: %+v", len(v.Signatures), v)
	}
	s := v.Signatures[0]
	if s.Status != status {
		t.Fatalf("status %s (%s), want %s", s.Status, s.Reason, status)
	}
	return s
}

func TestSignedMessagesPass(t *testing.T) {
	checkGoroutines(t)
	testKeys(t)
	for _, k := range []dkim.Key{
		{Domain: "example.org", Selector: "rsa2048", Signer: rsaKey},
		{Domain: "example.org", Selector: "ed", Signer: edKey},
	} {
		t.Run(k.Algorithm(), func(t *testing.T) {
			signer, r, _ := signedSetup(t, k)
			msg := sign(t, signer, "example.org", plainMessage)
			s := wantOne(t, verify(t, r, msg), dkim.Pass)
			if s.Domain != "example.org" || s.Selector != k.Selector || s.Algorithm != k.Algorithm()+"-sha256" {
				t.Errorf("signature facts %+v", s)
			}
			want := []string{"from", "from", "to", "subject", "date", "message-id", "mime-version", "content-type"}
			var got []string
			for _, h := range s.HeaderKeys {
				got = append(got, strings.ToLower(h))
			}
			for _, w := range want {
				if !strings.Contains(strings.Join(got, ":"), w) {
					t.Errorf("h= %v lacks %s", got, w)
				}
			}
			if n := strings.Count(strings.Join(got, ":"), "from"); n != 2 {
				t.Errorf("From signed %d times, want 2 (over-signed): %v", n, got)
			}
			if !strings.Contains(msg, "c=relaxed/relaxed") {
				t.Errorf("not relaxed/relaxed: %s", msg[:strings.Index(msg, "From:")])
			}
		})
	}
}

func TestRelaxedCanonicalizationSurvivesWhitespaceChanges(t *testing.T) {
	testKeys(t)
	signer, r, _ := signedSetup(t, dkim.Key{Domain: "example.org", Selector: "sel", Signer: rsaKey})
	msg := sign(t, signer, "example.org", plainMessage)
	// Relays may refold headers and change trailing white space (RFC 6376
	// section 3.4.2, 3.4.4).
	msg = strings.Replace(msg, "Subject: lunch", "Subject:   lunch  ", 1)
	msg = strings.Replace(msg, "at noon?", "at  noon?\t", 1)
	wantOne(t, verify(t, r, msg), dkim.Pass)
}

func TestTamperedMessagesFail(t *testing.T) {
	checkGoroutines(t)
	testKeys(t)
	signer, r, _ := signedSetup(t, dkim.Key{Domain: "example.org", Selector: "sel", Signer: rsaKey})
	signed := sign(t, signer, "example.org", plainMessage)
	cases := map[string]struct {
		tamper func(string) string
		reason string
	}{
		"body changed":    {func(m string) string { return strings.Replace(m, "noon", "one", 1) }, "body hash"},
		"body appended":   {func(m string) string { return m + "P.S. send money\r\n" }, "body hash"},
		"subject changed": {func(m string) string { return strings.Replace(m, "Subject: lunch", "Subject: invoice", 1) }, "signature did not verify"},
		"second From added": {func(m string) string {
			return strings.Replace(m, "To: bob", "From: mallory@example.org\r\nTo: bob", 1)
		}, "signature did not verify"},
		"signature value changed": {func(m string) string {
			i := strings.Index(m, " b=") + 3
			c := byte('A')
			if m[i] == 'A' {
				c = 'B'
			}
			return m[:i] + string(c) + m[i+1:]
		}, "signature did not verify"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			s := wantOne(t, verify(t, r, c.tamper(signed)), dkim.Fail)
			if !strings.Contains(s.Reason, c.reason) {
				t.Errorf("reason %q, want it to mention %q", s.Reason, c.reason)
			}
		})
	}
}

func TestKeyProblems(t *testing.T) {
	checkGoroutines(t)
	testKeys(t)
	good := dkim.Key{Domain: "example.org", Selector: "sel", Signer: rsaKey}
	signer := dkim.NewSigner([]dkim.Key{good, {Domain: "weak.example", Selector: "sel", Signer: rsa512Key},
		{Domain: "ed.example", Selector: "sel", Signer: edKey}})
	goodRec, _ := dkim.PublicKeyRecord(rsaKey.Public())
	weakRec, _ := dkim.PublicKeyRecord(rsa512Key.Public())

	cases := []struct {
		name   string
		domain string
		zone   func(z *dnstest.Zone)
		want   dkim.Status
		reason string
	}{
		{"no key published", "example.org", func(z *dnstest.Zone) {}, dkim.PermError, "no key"},
		{"key revoked", "example.org", func(z *dnstest.Zone) { z.Add(`sel._domainkey.example.org. 300 IN TXT "v=DKIM1; k=rsa; p="`) }, dkim.PermError, "revoked"},
		{"two key records", "example.org", func(z *dnstest.Zone) {
			z.Add(txt("sel._domainkey.example.org.", goodRec), txt("sel._domainkey.example.org.", goodRec))
		}, dkim.PermError, "multiple"},
		{"key garbage", "example.org", func(z *dnstest.Zone) { z.Add(`sel._domainkey.example.org. 300 IN TXT "v=DKIM1; p=!!!notbase64"`) }, dkim.PermError, "key syntax"},
		{"wrong key type", "ed.example", func(z *dnstest.Zone) { z.Add(txt("sel._domainkey.ed.example.", goodRec)) }, dkim.PermError, "algorithm"},
		{"rsa 512 too weak", "weak.example", func(z *dnstest.Zone) { z.Add(txt("sel._domainkey.weak.example.", weakRec)) }, dkim.PermError, "too short"},
		{"DNS SERVFAIL", "example.org", func(z *dnstest.Zone) { z.ServFail("sel._domainkey.example.org.") }, dkim.TempError, ""},
		{"DNS timeout", "example.org", func(z *dnstest.Zone) { z.Timeout("sel._domainkey.example.org.") }, dkim.TempError, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			z := dnstest.NewZone()
			c.zone(z)
			srv := dnstest.Start(t, z)
			r := newResolver(t, srv.Addr)
			msg := sign(t, signer, c.domain, plainMessage)
			s := wantOne(t, verify(t, r, msg), c.want)
			if !strings.Contains(s.Reason, c.reason) {
				t.Errorf("reason %q, want it to mention %q", s.Reason, c.reason)
			}
		})
	}
}

func TestRSA1024KeyStillVerifies(t *testing.T) {
	testKeys(t)
	signer, r, _ := signedSetup(t, dkim.Key{Domain: "old.example", Selector: "s1024", Signer: rsa1024Key})
	wantOne(t, verify(t, r, sign(t, signer, "old.example", plainMessage)), dkim.Pass)
}

func txt(name, value string) string {
	var parts []string
	for len(value) > 255 {
		parts = append(parts, `"`+value[:255]+`"`)
		value = value[255:]
	}
	parts = append(parts, `"`+value+`"`)
	return name + " 300 IN TXT " + strings.Join(parts, " ")
}

func TestUnsignedMessageIsNone(t *testing.T) {
	srv := dnstest.Start(t, dnstest.NewZone())
	r := newResolver(t, srv.Addr)
	v := verify(t, r, plainMessage)
	if len(v.Signatures) != 0 || v.Overall() != dkim.None {
		t.Fatalf("got %+v, want no signatures", v)
	}
	if got := v.AuthResults(); len(got) != 1 || got[0] != "dkim=none" {
		t.Errorf("AuthResults %q", got)
	}
	if srv.Total() != 0 {
		t.Errorf("%d DNS queries for an unsigned message", srv.Total())
	}
}

func TestGarbageSignaturesAreNeutralOrPolicy(t *testing.T) {
	checkGoroutines(t)
	testKeys(t)
	signer, r, _ := signedSetup(t, dkim.Key{Domain: "example.org", Selector: "sel", Signer: rsaKey})
	good := sign(t, signer, "example.org", plainMessage)
	cases := []struct {
		field string
		want  dkim.Status
	}{
		{"DKIM-Signature: garbage", dkim.Neutral},
		{"DKIM-Signature:", dkim.Neutral},
		{"DKIM-Signature: v=2; a=rsa-sha256; d=example.org; s=sel; h=from; bh=AA==; b=AA==", dkim.Neutral},
		{"DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=sel; bh=AA==; b=AA==", dkim.Neutral},
		{"DKIM-Signature: v=1; v=1; a=rsa-sha256; d=example.org; s=sel; h=from; bh=AA==; b=AA==", dkim.Neutral},
		{"DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=sel; h=from; l=10; bh=AA==; b=AA==", dkim.Policy},
		{"DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=sel; h=from; bh=%%%; b=AA==", dkim.PermError},
		{"DKIM-Signature: v=1; a=rsa-sha1; d=example.org; s=sel; h=from; bh=AA==; b=AA==", dkim.PermError},
		{"DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=sel; h=to; bh=AA==; b=AA==", dkim.PermError},
		{"DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=sel; h=from; x=1; bh=AA==; b=AA==", dkim.PermError},
	}
	for _, c := range cases {
		t.Run(c.field, func(t *testing.T) {
			// The broken signature comes first, the good one after: one
			// broken signature must not spoil another.
			v := verify(t, r, c.field+"\r\n"+good)
			if len(v.Signatures) != 2 {
				t.Fatalf("got %d signatures", len(v.Signatures))
			}
			if v.Signatures[0].Status != c.want {
				t.Errorf("broken signature: %s (%s), want %s", v.Signatures[0].Status, v.Signatures[0].Reason, c.want)
			}
			if v.Signatures[1].Status != dkim.Pass {
				t.Errorf("good signature: %s (%s)", v.Signatures[1].Status, v.Signatures[1].Reason)
			}
			if v.Overall() != dkim.Pass {
				t.Errorf("overall %s", v.Overall())
			}
		})
	}
}

func TestSignatureCountIsBounded(t *testing.T) {
	checkGoroutines(t)
	testKeys(t)
	key := dkim.Key{Domain: "example.org", Selector: "sel", Signer: edKey}
	signer, r, srv := signedSetup(t, key)
	msg := plainMessage
	for range 12 {
		msg = sign(t, signer, "example.org", msg)
	}
	v, err := dkim.Verify(context.Background(), r, strings.NewReader(msg), dkim.VerifyOptions{MaxSignatures: 5})
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Signatures) != 5 || v.Skipped != 7 {
		t.Fatalf("checked %d, skipped %d; want 5 and 7", len(v.Signatures), v.Skipped)
	}
	for i, s := range v.Signatures {
		// Later signatures were made over a header that already held the
		// earlier ones; all of them verify.
		if s.Status != dkim.Pass {
			t.Errorf("signature %d: %s (%s)", i, s.Status, s.Reason)
		}
	}
	if q := srv.Queries("sel._domainkey.example.org.", 16); q > 5 {
		t.Errorf("%d key lookups for 5 signatures", q)
	}
	if !strings.Contains(v.Summary(), "7 more") {
		t.Errorf("summary %q does not mention the skipped ones", v.Summary())
	}
}

func TestAuthResultsAndHeaderB(t *testing.T) {
	testKeys(t)
	signer, r, _ := signedSetup(t,
		dkim.Key{Domain: "example.org", Selector: "a", Signer: rsaKey},
	)
	msg := sign(t, signer, "example.org", plainMessage)
	v := verify(t, r, msg)
	ar := v.AuthResults()
	b := v.Signatures[0].B
	want := "dkim=pass header.d=example.org header.s=a header.a=rsa-sha256 header.b=" + b[:8]
	if len(ar) != 1 || ar[0] != want {
		t.Errorf("AuthResults %q, want %q", ar, want)
	}
	// Two signatures whose b= share a prefix get longer, distinct header.b.
	v.Signatures = append(v.Signatures, v.Signatures[0])
	v.Signatures[1].B = b[:10] + "zzzz"
	ar = v.AuthResults()
	if strings.Contains(ar[0], "header.b="+b[:8]+" ") || strings.HasSuffix(ar[0], "header.b="+b[:8]) {
		t.Errorf("header.b not lengthened for a shared prefix: %q", ar)
	}
}

func TestMessageWithoutBodyOrFinalNewline(t *testing.T) {
	testKeys(t)
	signer, r, _ := signedSetup(t, dkim.Key{Domain: "example.org", Selector: "sel", Signer: edKey})
	for _, m := range []string{
		"From: a@example.org\r\nSubject: x\r\n",
		"From: a@example.org\r\nSubject: x",
		"From: a@example.org\r\n\r\nno newline at the end",
	} {
		signed := sign(t, signer, "example.org", m)
		wantOne(t, verify(t, r, signed), dkim.Pass)
	}
}

func TestLFOnlyMessageVerifies(t *testing.T) {
	testKeys(t)
	signer, r, _ := signedSetup(t, dkim.Key{Domain: "example.org", Selector: "sel", Signer: rsaKey})
	signed := sign(t, signer, "example.org", plainMessage)
	// A message stored with LF endings (as a local tool may hand it over)
	// still verifies: canonicalization works on lines.
	wantOne(t, verify(t, r, strings.ReplaceAll(signed, "\r\n", "\n")), dkim.Pass)
}

func TestVerifyReadErrorAndCancel(t *testing.T) {
	checkGoroutines(t)
	testKeys(t)
	signer, r, _ := signedSetup(t, dkim.Key{Domain: "example.org", Selector: "sel", Signer: rsaKey})
	signed := sign(t, signer, "example.org", plainMessage)
	signed = sign(t, signer, "example.org", signed) // two signatures: the library's parallel path
	boom := errors.New("disk on fire")
	_, err := dkim.Verify(context.Background(), r, &failingReader{data: signed, after: len(signed) - 10, err: boom}, dkim.VerifyOptions{})
	if !errors.Is(err, boom) {
		t.Errorf("read error: got %v, want it wrapped", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = dkim.Verify(ctx, r, strings.NewReader(signed), dkim.VerifyOptions{})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: got %v", err)
	}
}

type failingReader struct {
	data  string
	after int
	err   error
	off   int
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.off >= f.after {
		return 0, f.err
	}
	n := copy(p, f.data[f.off:f.after])
	f.off += n
	return n, nil
}

func TestHeaderBound(t *testing.T) {
	srv := dnstest.Start(t, dnstest.NewZone())
	r := newResolver(t, srv.Addr)
	huge := "X-Junk: " + strings.Repeat("a", 5000) + "\r\n\r\nbody"
	_, err := dkim.Verify(context.Background(), r, strings.NewReader(huge), dkim.VerifyOptions{MaxHeaderBytes: 1000})
	if !errors.Is(err, dkim.ErrHeaderTooLarge) {
		t.Errorf("got %v, want ErrHeaderTooLarge", err)
	}
}

// bytesMessage is a filters.Message over a byte slice.
type bytesMessage struct{ *bytes.Reader }

func (m bytesMessage) Size() int64 { return int64(m.Len()) }

func newMessage(s string) filters.Message { return bytesMessage{bytes.NewReader([]byte(s))} }

func TestFilterCheckData(t *testing.T) {
	checkGoroutines(t)
	testKeys(t)
	signer, r, _ := signedSetup(t,
		dkim.Key{Domain: "example.org", Selector: "sel", Signer: rsaKey},
		dkim.Key{Domain: "esp.example", Selector: "ed", Signer: edKey},
	)
	f, err := dkim.New(dkim.Options{Resolver: r})
	if err != nil {
		t.Fatal(err)
	}
	var _ filters.DataChecker = f
	msg := sign(t, signer, "esp.example", sign(t, signer, "example.org", plainMessage))

	res := f.CheckData(context.Background(), &filters.Session{}, newMessage(msg))
	if res.Filter != "dkim" || res.Verdict != filters.NoOpinion {
		t.Errorf("result %+v", res)
	}
	if res.Vars["DKIM"] != "pass" || res.Vars["DKIM_DOMAINS"] != "esp.example example.org" || res.Vars["DKIM_SIGNATURES"] != "2" {
		t.Errorf("vars %v", res.Vars)
	}
	if len(res.AuthResults) != 2 || !strings.HasPrefix(res.AuthResults[0], "dkim=pass header.d=esp.example header.s=ed") {
		t.Errorf("auth results %q", res.AuthResults)
	}
	if res.Score >= 0 {
		t.Errorf("score %v for a pass", res.Score)
	}
	domains, st, ok := dkim.FromResults([]filters.Result{{Filter: "spf"}, res})
	if !ok || st != dkim.Pass || fmt.Sprint(domains) != "[esp.example example.org]" {
		t.Errorf("FromResults: %v %v %v", domains, st, ok)
	}

	tampered := strings.Replace(msg, "noon", "midnight", 1)
	res = f.CheckData(context.Background(), &filters.Session{}, newMessage(tampered))
	if res.Vars["DKIM"] != "fail" || res.Vars["DKIM_DOMAINS"] != "" || res.Score <= 0 {
		t.Errorf("tampered: %+v", res)
	}
	if !strings.Contains(res.AuthResults[0], "dkim=fail (body hash did not verify) header.d=esp.example") {
		t.Errorf("tampered auth results %q", res.AuthResults)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res = f.CheckData(ctx, &filters.Session{}, newMessage(msg))
	if res.Vars["DKIM"] != "temperror" || res.Verdict != filters.NoOpinion {
		t.Errorf("cancelled: %+v", res)
	}
}

func TestLoadSignerFromConfigDir(t *testing.T) {
	testKeys(t)
	dir := t.TempDir()
	keyDir := filepath.Join(dir, "dkim")
	if err := os.Mkdir(keyDir, 0o700); err != nil {
		t.Fatal(err)
	}
	write := func(name string, k crypto.Signer, mode os.FileMode) {
		data, err := dkim.MarshalPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(keyDir, name), data, mode); err != nil {
			t.Fatal(err)
		}
	}
	write("example.org.s20250101.key", rsa1024Key, 0o600)
	write("example.org.s20260101.key", rsaKey, 0o600)
	write("example.org.s20240101.key", edKey, 0o600)
	write("other.example.sel.key", rsaKey, 0o600)
	os.WriteFile(filepath.Join(keyDir, "README"), []byte("not a key"), 0o644)

	s, err := dkim.LoadSigner(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(s.Domains()); got != "[example.org other.example]" {
		t.Errorf("domains %s", got)
	}
	ks := s.KeysFor("Example.ORG.")
	if len(ks) != 2 || ks[0].Selector != "s20260101" || ks[0].Algorithm() != "rsa" || ks[1].Selector != "s20240101" || ks[1].Algorithm() != "ed25519" {
		t.Errorf("keys for example.org: %+v (want the newest RSA key, then the Ed25519 key)", ks)
	}
	if k, ok := s.KeyFor("lists.news.example.org"); !ok || k.Domain != "example.org" {
		t.Errorf("subdomain: %+v %v, want the parent's key", k, ok)
	}
	if _, ok := s.KeyFor("org"); ok {
		t.Error("a key for a top-level label")
	}
	if _, ok := s.KeyFor("badexample.org"); ok {
		t.Error("a key for a different domain with the same suffix")
	}
	if _, err := s.Sign(context.Background(), "nokey.example", strings.NewReader(plainMessage)); !errors.Is(err, dkim.ErrNoKey) {
		t.Errorf("sign without key: %v", err)
	}
	if _, err := s.Sign(context.Background(), "example.org", strings.NewReader("Subject: no from\r\n\r\nx")); err == nil {
		t.Error("signed a message without From")
	}

	write("bad.example.sel.key", rsaKey, 0o644)
	if _, err := dkim.LoadSigner(dir); !errors.Is(err, dkim.ErrBadKeyFile) || !strings.Contains(err.Error(), "bad.example.sel.key") {
		t.Errorf("world-readable key: %v", err)
	}
	os.Chmod(filepath.Join(keyDir, "bad.example.sel.key"), 0o600)
	os.WriteFile(filepath.Join(keyDir, "bad.example.sel.key"), []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0o600)
	if _, err := dkim.LoadSigner(dir); !errors.Is(err, dkim.ErrBadKeyFile) {
		t.Errorf("garbage key: %v", err)
	}
	os.Remove(filepath.Join(keyDir, "bad.example.sel.key"))
	os.WriteFile(filepath.Join(keyDir, "noselector.key"), []byte("x"), 0o600)
	if _, err := dkim.LoadSigner(dir); !errors.Is(err, dkim.ErrBadKeyFile) {
		t.Errorf("badly named key: %v", err)
	}
	if s, err := dkim.LoadSigner(filepath.Join(dir, "absent")); err != nil || len(s.Domains()) != 0 {
		t.Errorf("absent dir: %v %v", s, err)
	}
}

// TestDualSigning: a domain with an RSA and an Ed25519 key gets both
// signatures, and both verify.
func TestDualSigning(t *testing.T) {
	checkGoroutines(t)
	testKeys(t)
	signer, r, _ := signedSetup(t,
		dkim.Key{Domain: "example.org", Selector: "r1", Signer: rsaKey},
		dkim.Key{Domain: "example.org", Selector: "e1", Signer: edKey},
	)
	field, err := signer.Sign(context.Background(), "example.org", strings.NewReader(plainMessage))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(field, "DKIM-Signature: "); n != 2 || strings.HasSuffix(field, "\r\n") {
		t.Fatalf("%d fields in %q", n, field)
	}
	v := verify(t, r, field+"\r\n"+plainMessage)
	if len(v.Signatures) != 2 || v.Signatures[0].Algorithm != "rsa-sha256" || v.Signatures[1].Algorithm != "ed25519-sha256" {
		t.Fatalf("signatures %+v", v.Signatures)
	}
	for _, s := range v.Signatures {
		if s.Status != dkim.Pass {
			t.Errorf("%s: %s (%s)", s.Algorithm, s.Status, s.Reason)
		}
	}
}
