package arc_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"postern/filters/arc"
	"postern/filters/authres"
	"postern/filters/dkim"
	"postern/filters/dns"
	"postern/filters/dns/dnstest"
)

var (
	keysOnce sync.Once
	rsaKey   *rsa.PrivateKey
)

// testRSAKey is made once: RSA key generation is slow.
func testRSAKey(t testing.TB) *rsa.PrivateKey {
	keysOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		rsaKey = k
	})
	return rsaKey
}

func newResolver(t testing.TB, addr string) *dns.Resolver {
	t.Helper()
	r, err := dns.New(dns.Options{Servers: []string{addr}, Timeout: time.Second, Attempts: 1, CacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func publish(t testing.TB, zone *dnstest.Zone, k dkim.Key) {
	t.Helper()
	rec, err := dkim.DNSRecord(k)
	if err != nil {
		t.Fatal(err)
	}
	zone.Add(strings.Replace(rec, " IN TXT ", " 300 IN TXT ", 1))
}

const original = "From: Alice <alice@example.org>\r\n" +
	"To: list@lists.example.net\r\n" +
	"Subject: lunch\r\n" +
	"Date: Wed, 25 Nov 2026 12:00:00 +0000\r\n" +
	"Message-ID: <1@example.org>\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"\r\n" +
	"Shall we meet at noon?\r\n" +
	"-- \r\nAlice\r\n"

// hop is one handler on the way: its key and what it does to the message
// before sealing.
type hop struct {
	key    dkim.Key
	change func(string) string
}

// chainSetup publishes the keys of three handlers (two RSA, one Ed25519)
// and returns them with a resolver.
func chainSetup(t *testing.T) ([]dkim.Key, *dns.Resolver, *dnstest.Zone) {
	t.Helper()
	ed, err := dkim.GenerateKey("ed25519", 0)
	if err != nil {
		t.Fatal(err)
	}
	keys := []dkim.Key{
		{Domain: "lists.example.net", Selector: "arc1", Signer: testRSAKey(t)},
		{Domain: "forward.example.com", Selector: "ed", Signer: ed},
		{Domain: "relay.example.io", Selector: "s2026", Signer: testRSAKey(t)},
	}
	zone := dnstest.NewZone()
	for _, k := range keys {
		publish(t, zone, k)
	}
	srv := dnstest.Start(t, zone)
	return keys, newResolver(t, srv.Addr), zone
}

func verify(t *testing.T, r *dns.Resolver, msg string) arc.Verification {
	t.Helper()
	v, err := arc.Verify(context.Background(), r, strings.NewReader(msg), arc.VerifyOptions{})
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return v
}

// forward runs msg through hops: each verifies the chain, changes the
// message, adds its Received and Authentication-Results fields and seals.
func forward(t *testing.T, r *dns.Resolver, msg string, hops []hop) string {
	t.Helper()
	for n, h := range hops {
		v := verify(t, r, msg)
		if h.change != nil {
			msg = h.change(msg)
		}
		ar := []string{"spf=pass smtp.mailfrom=example.org", fmt.Sprintf("arc=%s", v.Status)}
		msg = fmt.Sprintf("Authentication-Results: mx%d.%s; %s\r\nReceived: from hop%d by %s; Wed, 25 Nov 2026 12:0%d:00 +0000\r\n",
			n, h.key.Domain, strings.Join(ar, "; "), n, h.key.Domain, n) + msg
		set, err := arc.Seal(context.Background(), strings.NewReader(msg), arc.SealOptions{
			Key: h.key, AuthservID: "mx." + h.key.Domain, AuthResults: ar, Chain: v,
		})
		if err != nil {
			t.Fatalf("hop %d: Seal: %v", n+1, err)
		}
		msg = set + msg
	}
	return msg
}

func TestRoundTrip(t *testing.T) {
	keys, r, _ := chainSetup(t)
	for n := 1; n <= 3; n++ {
		t.Run(fmt.Sprintf("%d hops", n), func(t *testing.T) {
			var hops []hop
			for i := range n {
				hops = append(hops, hop{key: keys[i]})
			}
			msg := forward(t, r, original, hops)
			v := verify(t, r, msg)
			if v.Status != arc.Pass {
				t.Fatalf("status %v (%s), want pass\n%s", v.Status, v.Reason, msg)
			}
			if v.Instances() != n || v.OldestPass != 0 {
				t.Errorf("instances %d oldest-pass %d, want %d and 0", v.Instances(), v.OldestPass, n)
			}
			if v.OldestSealer() != "lists.example.net" || v.NewestSealer() != keys[n-1].Domain {
				t.Errorf("sealers %q..%q", v.OldestSealer(), v.NewestSealer())
			}
			for i, s := range v.Sets {
				want := "pass"
				if i == 0 {
					want = "none"
				}
				if s.CV != want || s.Instance != i+1 {
					t.Errorf("set %d: i=%d cv=%s", i, s.Instance, s.CV)
				}
				if !strings.HasPrefix(s.AuthResults, "mx."+keys[i].Domain+"; spf=pass") {
					t.Errorf("set %d AAR %q", i, s.AuthResults)
				}
			}
		})
	}
}

// A mailing list that adds a footer breaks the earlier AMS but seals what
// it sends: the chain passes, and oldest-pass says where the body changed.
func TestOldestPassAfterFooter(t *testing.T) {
	keys, r, _ := chainSetup(t)
	footer := func(m string) string { return m + "--\r\nlist footer\r\n" }
	msg := forward(t, r, original, []hop{{key: keys[0]}, {key: keys[1], change: footer}, {key: keys[2]}})
	v := verify(t, r, msg)
	if v.Status != arc.Pass || v.OldestPass != 2 {
		t.Fatalf("status %v oldest-pass %d (%s), want pass and 2", v.Status, v.OldestPass, v.Reason)
	}
}

func TestTampering(t *testing.T) {
	keys, r, zone := chainSetup(t)
	two := forward(t, r, original, []hop{{key: keys[0]}, {key: keys[1]}})
	if v := verify(t, r, two); v.Status != arc.Pass {
		t.Fatalf("untouched chain: %v %s", v.Status, v.Reason)
	}
	_ = zone
	cases := []struct {
		name   string
		change func(string) string
		want   string // in the reason
	}{
		{"body changed", func(m string) string { return strings.Replace(m, "noon", "one", 1) }, "body hash did not verify"},
		{"body appended", func(m string) string { return m + "P.S. send money\r\n" }, "body hash did not verify"},
		{"subject changed", func(m string) string { return strings.Replace(m, "Subject: lunch", "Subject: dinner", 1) }, "ARC-Message-Signature i=2"},
		{"second From added", func(m string) string { return strings.Replace(m, "To: ", "From: mallory@evil.example\r\nTo: ", 1) }, "ARC-Message-Signature i=2"},
		{"older AAR edited", func(m string) string {
			return strings.Replace(m, "i=1; mx.lists.example.net;\r\n\tspf=pass", "i=1; mx.lists.example.net;\r\n\tspf=fail", 1)
		}, "ARC-Seal i=2"},
		{"cv changed", func(m string) string { return strings.Replace(m, "cv=pass", "cv=none", 1) }, "cv=none, want cv=pass"},
		{"set removed", func(m string) string { return removeField(m, "ARC-Authentication-Results: i=1") }, "no ARC-Authentication-Results"},
		{"newest set removed", func(m string) string {
			for _, f := range []string{"ARC-Seal: i=2", "ARC-Message-Signature: i=2", "ARC-Authentication-Results: i=2"} {
				m = removeField(m, f)
			}
			return m
		}, ""}, // a valid chain of one remains (what the second hop vouched for is gone, not forged)
		{"duplicate seal", func(m string) string { return firstField(m, "ARC-Seal: i=2") + m }, "two ARC-Seal fields with i=2"},
		{"instance 51", func(m string) string { return strings.Replace(m, "ARC-Seal: i=2;", "ARC-Seal: i=51;", 1) }, "from 1 to 50"},
		{"instance gap", func(m string) string {
			for _, f := range []string{"ARC-Seal: i=", "ARC-Message-Signature: i=", "ARC-Authentication-Results: i="} {
				m = strings.Replace(m, f+"2", f+"3", 1)
			}
			return m
		}, "i=2 missing"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			msg := c.change(two)
			if msg == two {
				t.Fatal("the change changed nothing")
			}
			v := verify(t, r, msg)
			if c.want == "" {
				if v.Status != arc.Pass || v.Instances() != 1 {
					t.Fatalf("status %v instances %d (%s)", v.Status, v.Instances(), v.Reason)
				}
				return
			}
			if v.Status != arc.Fail || !strings.Contains(v.Reason, c.want) {
				t.Fatalf("status %v reason %q, want fail with %q", v.Status, v.Reason, c.want)
			}
		})
	}
}

func TestKeys(t *testing.T) {
	keys, r, _ := chainSetup(t)
	msg := forward(t, r, original, []hop{{key: keys[0]}})
	cases := []struct {
		name   string
		zone   func(z *dnstest.Zone)
		status arc.Status
		want   string
	}{
		{"no key", func(z *dnstest.Zone) {}, arc.Fail, "no key at arc1._domainkey.lists.example.net"},
		{"revoked", func(z *dnstest.Zone) { z.Add(`arc1._domainkey.lists.example.net. 300 IN TXT "v=DKIM1; k=rsa; p="`) }, arc.Fail, "revoked"},
		{"wrong type", func(z *dnstest.Zone) {
			z.Add(`arc1._domainkey.lists.example.net. 300 IN TXT "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="`)
		}, arc.Fail, "the key is not RSA"},
		{"servfail", func(z *dnstest.Zone) { z.ServFail("arc1._domainkey.lists.example.net") }, arc.TempError, "temporarily"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			z := dnstest.NewZone()
			c.zone(z)
			srv := dnstest.Start(t, z)
			v := verify(t, newResolver(t, srv.Addr), msg)
			if v.Status != c.status || !strings.Contains(v.Reason, c.want) {
				t.Fatalf("status %v reason %q, want %v with %q", v.Status, v.Reason, c.status, c.want)
			}
		})
	}
}

func TestNoChain(t *testing.T) {
	_, r, _ := chainSetup(t)
	v := verify(t, r, original)
	if v.Status != arc.None || v.Instances() != 0 || v.OldestSealer() != "" {
		t.Fatalf("%+v", v)
	}
}

// A chain whose newest seal says cv=fail has failed for good: the verifier
// says fail without looking further, and a sealer refuses to add to it.
func TestFailedChain(t *testing.T) {
	keys, r, _ := chainSetup(t)
	one := forward(t, r, original, []hop{{key: keys[0]}})
	broken := strings.Replace(one, "noon", "one", 1)
	v := verify(t, r, broken)
	if v.Status != arc.Fail {
		t.Fatalf("tampered chain: %v", v.Status)
	}
	set, err := arc.Seal(context.Background(), strings.NewReader(broken), arc.SealOptions{Key: keys[1], AuthservID: "mx", Chain: v})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(set, "i=2;") || !strings.Contains(set, "cv=fail") {
		t.Fatalf("seal of a failed chain:\n%s", set)
	}
	sealed := set + broken
	if v := verify(t, r, sealed); v.Status != arc.Fail || !strings.Contains(v.Reason, "cv=fail") {
		t.Fatalf("after a cv=fail seal: %v %s", v.Status, v.Reason)
	}
	if _, err := arc.Seal(context.Background(), strings.NewReader(sealed), arc.SealOptions{Key: keys[2], AuthservID: "mx",
		Chain: verify(t, r, sealed)}); !errors.Is(err, arc.ErrNotSealable) {
		t.Fatalf("sealing over cv=fail: %v, want ErrNotSealable", err)
	}
	if _, err := arc.Seal(context.Background(), strings.NewReader(one), arc.SealOptions{Key: keys[1], AuthservID: "mx",
		Chain: arc.Verification{Status: arc.TempError}}); !errors.Is(err, arc.ErrNotSealable) {
		t.Fatalf("sealing after a temporary error: %v, want ErrNotSealable", err)
	}
}

func TestChainFull(t *testing.T) {
	keys, r, _ := chainSetup(t)
	hops := make([]hop, arc.MaxInstances)
	for i := range hops {
		hops[i] = hop{key: keys[i%2]}
	}
	msg := forward(t, r, original, hops)
	v := verify(t, r, msg)
	if v.Status != arc.Pass || v.Instances() != 50 {
		t.Fatalf("50 sets: %v %d %s", v.Status, v.Instances(), v.Reason)
	}
	if _, err := arc.Seal(context.Background(), strings.NewReader(msg), arc.SealOptions{Key: keys[0], AuthservID: "mx", Chain: v}); !errors.Is(err, arc.ErrChainFull) {
		t.Fatalf("51st set: %v", err)
	}
}

// Messages with LF line endings verify as with CRLF (a message read from
// a Maildir, or piped through sendmail).
func TestLFLineEndings(t *testing.T) {
	keys, r, _ := chainSetup(t)
	msg := forward(t, r, original, []hop{{key: keys[0]}, {key: keys[1]}})
	lf := strings.ReplaceAll(msg, "\r\n", "\n")
	if v := verify(t, r, lf); v.Status != arc.Pass {
		t.Fatalf("LF: %v %s", v.Status, v.Reason)
	}
}

func TestHeaderTooLarge(t *testing.T) {
	_, r, _ := chainSetup(t)
	msg := "X-Big: " + strings.Repeat("a", 2000) + "\r\n\r\nbody\r\n"
	_, err := arc.Verify(context.Background(), r, strings.NewReader(msg), arc.VerifyOptions{MaxHeaderBytes: 1000})
	if !errors.Is(err, arc.ErrHeaderTooLarge) {
		t.Fatalf("err %v", err)
	}
}

// removeField deletes the field starting with prefix (and its
// continuation lines).
func removeField(m, prefix string) string {
	f := firstField(m, prefix)
	return strings.Replace(m, f, "", 1)
}

func firstField(m, prefix string) string {
	i := strings.Index(m, prefix)
	if i < 0 {
		return ""
	}
	end := i
	for {
		nl := strings.Index(m[end:], "\r\n")
		end += nl + 2
		if end >= len(m) || m[end] != ' ' && m[end] != '\t' {
			return m[i:end]
		}
	}
}

// A chain that needs more keys than VerifyOptions.MaxKeys fails rather
// than costing a lookup per set.
func TestMaxKeys(t *testing.T) {
	keys, r, _ := chainSetup(t)
	msg := forward(t, r, original, []hop{{key: keys[0]}, {key: keys[1]}, {key: keys[2]}})
	v, err := arc.Verify(context.Background(), r, strings.NewReader(msg), arc.VerifyOptions{MaxKeys: 2})
	if err != nil {
		t.Fatal(err)
	}
	if v.Status != arc.Fail || !strings.Contains(v.Reason, "more than 2 keys") {
		t.Fatalf("status %v reason %q", v.Status, v.Reason)
	}
	if v := verify(t, r, msg); v.Status != arc.Pass {
		t.Fatalf("default bound: %v %s", v.Status, v.Reason)
	}
}

// What AuthResult writes into our Authentication-Results field reads back
// as the same status, a temporary error included (written as fail).
func TestStatusFromAuthResults(t *testing.T) {
	for _, v := range []arc.Verification{
		{Status: arc.None}, {Status: arc.Pass}, {Status: arc.Fail, Reason: "ARC-Seal i=1: signature did not verify"},
		{Status: arc.TempError, Reason: "key lookup: i/o timeout"},
	} {
		parts := []string{"spf=pass smtp.mailfrom=example.org", v.AuthResult("192.0.2.1"), "dmarc=none"}
		field := authres.Field("mx.example.net", parts) + "\r\n\r\n"
		got, ok := authres.Ours([]byte(field), "mx.example.net")
		if !ok {
			t.Fatal("own field not found")
		}
		st, found := arc.StatusFromAuthResults(got)
		if !found || st != v.Status {
			t.Errorf("%s: read back %v, %v", v.AuthResult(""), st, found)
		}
	}
	if _, found := arc.StatusFromAuthResults([]string{"spf=pass", "dkim=none"}); found {
		t.Error("an arc result found where the check did not run")
	}
}
