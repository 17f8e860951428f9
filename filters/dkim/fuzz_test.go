package dkim_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"postern/filters/dkim"
	"postern/filters/dns/dnstest"
)

// FuzzVerify feeds whole messages, with hostile DKIM-Signature fields, to
// Verify against a DNS server that publishes a real key: whatever comes in,
// Verify must not panic or hang, must stay within its signature bound, and
// must give every signature one of the defined results.
func FuzzVerify(f *testing.F) {
	key, err := dkim.GenerateKey("ed25519", 0)
	if err != nil {
		f.Fatal(err)
	}
	k := dkim.Key{Domain: "example.org", Selector: "sel", Signer: key}
	rec, _ := dkim.DNSRecord(k)
	srv := dnstest.Start(f, dnstest.NewZone().Add(
		strings.Replace(rec, " IN TXT ", " 300 IN TXT ", 1),
		`bad._domainkey.example.org. 300 IN TXT "v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"`,
		`rev._domainkey.example.org. 300 IN TXT "v=DKIM1; p="`,
	))
	r := newResolver(f, srv.Addr)
	field, err := dkim.NewSigner([]dkim.Key{k}).Sign(context.Background(), "example.org", strings.NewReader(plainMessage))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(field + "\r\n" + plainMessage)
	f.Add("DKIM-Signature: v=1; a=ed25519-sha256; d=example.org; s=bad; h=from; bh=AA==; b=AA==\r\nFrom: x@example.org\r\n\r\nhi\r\n")
	f.Add("DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=rev; h=from; bh=AA==; b=AA==\r\nFrom: x\r\n\r\n")
	f.Add("DKIM-Signature: ;;;==;=\r\n\tcontinued\r\nFrom: x\r\n")
	f.Add("DKIM-Signature: v=1; a=-; d=; s=; h=:::; bh=; b=\r\n\r\n")
	f.Add("dkim-signature:v=1;a=ed25519-sha256;d=example.org;s=sel;h=from:from;bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;b=AAAA\nFrom: a\n\n")
	f.Add("\r\n\r\n")
	f.Add("")
	f.Fuzz(func(t *testing.T, msg string) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		v, err := dkim.Verify(ctx, r, strings.NewReader(msg), dkim.VerifyOptions{MaxSignatures: 3})
		if err != nil {
			return
		}
		if len(v.Signatures) > 3 {
			t.Fatalf("%d signatures checked, limit 3", len(v.Signatures))
		}
		for _, s := range v.Signatures {
			if s.Status < dkim.Pass || s.Status > dkim.PermError {
				t.Fatalf("signature status %v", s.Status)
			}
		}
		for _, ar := range v.AuthResults() {
			if strings.ContainsAny(ar, "\r\n") {
				t.Fatalf("auth result with a line break: %q", ar)
			}
		}
	})
}
