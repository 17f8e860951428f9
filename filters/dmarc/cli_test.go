package dmarc_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"postern/filters/dkim"
	"postern/filters/dmarc"
)

func TestCheckMain(t *testing.T) {
	checkGoroutines(t)
	key, err := dkim.GenerateKey("ed25519", 0)
	if err != nil {
		t.Fatal(err)
	}
	k := dkim.Key{Domain: "example.org", Selector: "sel", Signer: key}
	rec, _ := dkim.DNSRecord(k)
	_, srv := world(t, strings.Replace(rec, " IN TXT ", " 300 IN TXT ", 1))

	run := func(msg string, args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		args = append([]string{"--dns", srv.Addr, "--authserv-id", "mx.example.net"}, args...)
		if code := dmarc.CheckMain(args, strings.NewReader(msg), &out, &errOut); code != dmarc.ExitOK {
			t.Fatalf("exit %d: %s", code, errOut.String())
		}
		return out.String()
	}
	contains := func(out string, want ...string) {
		t.Helper()
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("output lacks %q:\n%s", w, out)
			}
		}
	}

	// Forged: wrong client, no signature, p=reject.
	out := run(mail("Bank <service@example.org>"), "--ip", "198.51.100.7", "--helo", "evil.example", "--sender", "x@example.org")
	contains(out,
		"== SPF\nresult: fail\n",
		"== DKIM\nsignatures: 0\n",
		"== DMARC\nfrom domain: example.org\n",
		"record: _dmarc.example.org: v=DMARC1; p=reject; sp=quarantine",
		"spf aligned: no\n",
		"result: fail\npolicy: reject\ndisposition: reject\n",
		"smtp: 550 5.7.1 Rejected by DMARC policy for example.org\n",
		"Authentication-Results: mx.example.net;\n\tspf=fail",
		"\tdkim=none;\n\tdmarc=fail (p=reject dis=reject) header.from=example.org\n",
	)

	// Signed by example.org: DKIM aligned, passes though SPF fails.
	m := mail("service@example.org")
	field, err := dkim.NewSigner([]dkim.Key{k}).Sign(context.Background(), "example.org", strings.NewReader(m))
	if err != nil {
		t.Fatal(err)
	}
	out = run(field+"\r\n"+m, "--ip", "198.51.100.7", "--helo", "evil.example", "--sender", "x@example.org")
	contains(out, "signature 1: pass\n", "dkim aligned: yes\n", "result: pass\n", "smtp: no objection from DMARC\n",
		"dmarc=pass (p=reject dis=none) header.from=example.org")

	// Two From fields.
	out = run("From: a@example.org\r\nFrom: b@example.org\r\n\r\nx\r\n", "--ip", "192.0.2.1", "--helo", "mx.example.org", "--sender", "")
	contains(out, "== DMARC\nresult: permerror\n", "dmarc=permerror")

	var sink bytes.Buffer
	for _, args := range [][]string{{"--ip", "nonsense", "--helo", "h"}, {"--ip", "192.0.2.1"}, {"--ip", "192.0.2.1", "--helo", "h", "extra"}} {
		if code := dmarc.CheckMain(args, strings.NewReader(""), &sink, &sink); code != dmarc.ExitUsage {
			t.Errorf("%q: exit %d", args, code)
		}
	}
}
