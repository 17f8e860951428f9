package main

import (
	"strings"
	"testing"

	"postern/filters/dns/dnstest"
)

// postern check dnsbl with --zone (no configuration needed) and a message
// on the standard input: the link domains of its body are asked.
func TestCheckDNSBLMessageOnStdin(t *testing.T) {
	dns := dnstest.Start(t, dnstest.NewZone().Add(
		"spamlink.example.uri.test. 300 IN A 127.0.1.2",
	))
	msg := "From: a@example.net\r\nSubject: x\r\n\r\nBuy at hxxp://www.SpamLink.example/now and http://ham.example/\r\n"
	code, out, errs := runCmd(t, msg, "check", "dnsbl", "--message", "-", "--zone", "uri.test on=body", "--dns", dns.Addr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{
		"body-domain: spamlink.example\n", "body-domain: ham.example\n",
		"verdict: reject\n", "reply: 550 5.7.1 Link domain spamlink.example is listed by uri.test\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
