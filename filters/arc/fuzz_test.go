package arc_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"postern/filters/arc"
	"postern/filters/dkim"
	"postern/filters/dns/dnstest"
)

// FuzzVerify feeds whole messages with hostile ARC header fields to Verify,
// against a DNS server that publishes real keys: whatever comes in, Verify
// must not panic or hang, must give one of the defined results, and must
// give pass only with a structurally valid chain of 1 to 50 sets.
func FuzzVerify(f *testing.F) {
	ed, err := dkim.GenerateKey("ed25519", 0)
	if err != nil {
		f.Fatal(err)
	}
	k := dkim.Key{Domain: "example.net", Selector: "sel", Signer: ed}
	rec, _ := dkim.DNSRecord(k)
	srv := dnstest.Start(f, dnstest.NewZone().Add(valimailKey,
		strings.Replace(rec, " IN TXT ", " 300 IN TXT ", 1),
		`rev._domainkey.example.net. 300 IN TXT "v=DKIM1; p="`))
	r := newResolver(f, srv.Addr)

	sealed, err := arc.Seal(context.Background(), strings.NewReader(original), arc.SealOptions{
		Key: k, AuthservID: "mx.example.net", AuthResults: []string{"spf=pass smtp.mailfrom=example.org"}})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(sealed + original)
	for _, name := range []string{"cv_pass_i1_1.eml", "cv_pass_i2_1.eml"} {
		b, err := os.ReadFile(filepath.Join("testdata", "valimail", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	f.Add("ARC-Seal: i=1; cv=none; a=ed25519-sha256; d=example.net; s=rev; b=AA==\r\n" +
		"ARC-Message-Signature: i=1; a=ed25519-sha256; d=example.net; s=rev; h=from; bh=AA==; b=AA==\r\n" +
		"ARC-Authentication-Results: i=1; mx; none\r\nFrom: a\r\n\r\nhi\r\n")
	f.Add("ARC-Seal: ;;;==;=\r\n\tcontinued\r\nARC-Authentication-Results: i=\r\n\r\n")
	f.Add("arc-seal:i=50;cv=pass\narc-message-signature:i=50\narc-authentication-results:i=50;x\n\n")
	f.Add("ARC-Authentication-Results: i=0001; x\r\nARC-Seal: i=1; i=1\r\n")
	f.Add("\r\n\r\n")
	f.Add("")
	f.Fuzz(func(t *testing.T, msg string) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		start := time.Now()
		v, err := arc.Verify(ctx, r, strings.NewReader(msg), arc.VerifyOptions{MaxHeaderBytes: 64 * 1024})
		// Keys come from a DNS server on this machine: nothing may take
		// long.
		if d := time.Since(start); d > 3*time.Second {
			t.Fatalf("Verify took %v", d)
		}
		if err != nil {
			return
		}
		if v.Status < arc.None || v.Status > arc.TempError {
			t.Fatalf("status %v", v.Status)
		}
		if v.Status == arc.Pass && (v.Instances() < 1 || v.Instances() > arc.MaxInstances || v.OldestPass < 0 || v.OldestPass == 1 || v.OldestPass > v.Instances()) {
			t.Fatalf("pass with %d sets, oldest-pass %d", v.Instances(), v.OldestPass)
		}
		if v.Status != arc.Pass && v.Status != arc.None && v.Reason == "" {
			t.Fatalf("%v without a reason", v.Status)
		}
	})
}
