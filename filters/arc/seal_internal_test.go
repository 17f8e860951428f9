package arc

import (
	"bufio"
	"context"
	"strings"
	"testing"
	"time"

	"postern/filters/dkim"
	"postern/filters/dns"
	"postern/filters/dns/dnstest"
)

// A seal with cv=fail signs its own set only (RFC 8617 section 5.1.2):
// whatever the broken chain below it holds, the new seal verifies as if
// its set were the only one.
func TestSealCVFailSignsOwnSetOnly(t *testing.T) {
	signer, err := dkim.GenerateKey("ed25519", 0)
	if err != nil {
		t.Fatal(err)
	}
	k := dkim.Key{Domain: "example.net", Selector: "s", Signer: signer}
	rec, _ := dkim.DNSRecord(k)
	srv := dnstest.Start(t, dnstest.NewZone().Add(strings.Replace(rec, " IN TXT ", " 300 IN TXT ", 1)))
	r, err := dns.New(dns.Options{Servers: []string{srv.Addr}, Timeout: time.Second, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	// A chain with a gap (i=2 without i=1): structurally broken.
	broken := "ARC-Seal: i=2; cv=pass; a=ed25519-sha256; d=x.example; s=s; b=AA==\r\n" +
		"ARC-Message-Signature: i=2; a=ed25519-sha256; d=x.example; s=s; h=from; bh=AA==; b=AA==\r\n" +
		"ARC-Authentication-Results: i=2; x.example; none\r\n" +
		"From: a@example.org\r\n\r\nbody\r\n"
	set, err := Seal(context.Background(), strings.NewReader(broken), SealOptions{Key: k, AuthservID: "mx.example.net",
		Chain: Verification{Status: Fail}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(set, "ARC-Seal: i=3; ") || !strings.Contains(set, "cv=fail") {
		t.Fatalf("set:\n%s", set)
	}
	fields, err := readHeader(bufio.NewReader(strings.NewReader(set+broken)), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	var own Set
	for _, f := range fields[:3] {
		switch f.Name {
		case FieldAS:
			own.as = f
			own.asTags, _ = parseTags(f.value())
		case FieldAMS:
			own.ams = f
		case FieldAAR:
			own.aar = f
		}
	}
	keys := keyCache{r: r, got: map[string]keyResult{}}
	if st, why := verifyAS(context.Background(), &keys, []Set{own}, time.Now()); st != Pass {
		t.Fatalf("the cv=fail seal over its own set: %v %s", st, why)
	}
}
