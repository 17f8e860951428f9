package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"postern/auth/authtool"
	"postern/filters/dns/dnstest"
	"postern/policy"
)

// postern check route and testmxlookup, against a real DNS server: an
// alias split into a local account and a remote address with its MX
// hosts in order, a routes rule to a relay, a null MX, a domain that
// does not exist, a refusal for an unauthenticated client.
func TestCheckRoute(t *testing.T) {
	dns := dnstest.Start(t, dnstest.NewZone().Add(
		"remote.example. 300 IN MX 20 mx2.remote.example.",
		"remote.example. 300 IN MX 10 mx1.remote.example.",
		"mx1.remote.example. 300 IN A 192.0.2.10",
		"mx1.remote.example. 300 IN AAAA 2001:db8::10",
		"mx2.remote.example. 300 IN A 192.0.2.20",
		"nullmx.example. 300 IN MX 0 .",
	))
	dir := t.TempDir()
	if err := policy.Init(dir, "example.test", "mail.example.test", false); err != nil {
		t.Fatal(err)
	}
	etc := filepath.Join(dir, "etc")
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(etc, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("resolvers", dns.Addr+"\n")
	write("routes", "relay.example: [192.0.2.50],587 /SECURITY=REQUIRED\n")
	write("aliases", "team: alice, bob@remote.example\n")
	var out bytes.Buffer
	if code := authtool.UserMain([]string{"add", "alice@example.test", "--password", "pw"}, strings.NewReader(""), &out, &out, etc); code != 0 {
		t.Fatalf("user add: %s", out.String())
	}
	check := func(argv []string, wantCode int, wants ...string) {
		t.Helper()
		var stdout, stderr bytes.Buffer
		code := run(argv, &env{stdout: &stdout, stderr: &stderr})
		if code != wantCode {
			t.Errorf("%v: exit %d, want %d\n%s%s", argv, code, wantCode, stdout.String(), stderr.String())
		}
		for _, w := range wants {
			if !strings.Contains(stdout.String(), w) {
				t.Errorf("%v: output lacks %q:\n%s", argv, w, stdout.String())
			}
		}
	}
	check([]string{"postern", "--config", etc, "check", "route", "team@example.test"}, 0,
		"From the internet: taken at RCPT TO\n",
		"alice@example.test: local account alice@example.test\n",
		"bob@remote.example: remote\n",
		"Domain remote.example: by MX (no routes rule)\n",
		"  1. mx1.remote.example port 25, TLS OPPORTUNISTIC\n       192.0.2.10\n       2001:db8::10\n",
		"  2. mx2.remote.example port 25, TLS OPPORTUNISTIC\n       192.0.2.20\n")
	check([]string{"postern", "--config", etc, "check", "route", "x@nullmx.example"}, 1,
		"From the internet: refused at RCPT TO: 554 5.7.1 Relay access denied (relay)\n",
		"Domain nullmx.example: by MX (no routes rule)\n  would bounce: 5.1.10 ")
	t.Setenv("POSTERN_CONFIG", etc)
	check([]string{"/usr/sbin/testmxlookup", "relay.example"}, 0,
		`Domain relay.example: relayed by SMTP to [192.0.2.50], routes rule "relay.example" (`+filepath.Join(etc, "routes")+":1), REQUIRED\n",
		"  1. 192.0.2.50 port 587, TLS REQUIRED\n")
	check([]string{"/usr/sbin/testmxlookup", "nosuch.example"}, 1, "would bounce: 5.1.2 ")
	check([]string{"postern", "--config", etc, "check", "route", "a@b@remote.example"}, 1,
		"Refused at RCPT TO by every client: 501 5.1.3 ")
	check([]string{"postern", "--config", etc, "check", "route", "@relay.example:team@example.test"}, 0,
		"alice@example.test: local account alice@example.test\n") // the source route is dropped, as RCPT TO drops it
	check([]string{"postern", "--config", etc, "check", "route"}, 64)
}

// check route --sender: the senderroutes rule that a sender gets, and that
// a routes rule for the recipient's domain still wins.
func TestCheckRouteSender(t *testing.T) {
	dns := dnstest.Start(t, dnstest.NewZone().Add(
		"remote.example. 300 IN MX 10 mx1.remote.example.",
		"mx1.remote.example. 300 IN A 192.0.2.10",
	))
	dir := t.TempDir()
	if err := policy.Init(dir, "example.test", "mail.example.test", false); err != nil {
		t.Fatal(err)
	}
	etc := filepath.Join(dir, "etc")
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(etc, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("resolvers", dns.Addr+"\n")
	write("routes", "relay.example: [192.0.2.50],587\n")
	write("senderroutes", "@cust1.example: [192.0.2.61],587 /SECURITY=STARTTLS /auth=cust1\n<>: [192.0.2.62]\n")
	sr := filepath.Join(etc, "senderroutes")
	var out bytes.Buffer
	if code := authtool.UserMain([]string{"add", "alice@example.test", "--password", "pw"}, strings.NewReader(""), &out, &out, etc); code != 0 {
		t.Fatalf("user add: %s", out.String())
	}
	check := func(argv []string, wantCode int, wants ...string) {
		t.Helper()
		var stdout, stderr bytes.Buffer
		code := run(argv, &env{stdout: &stdout, stderr: &stderr})
		if code != wantCode {
			t.Errorf("%v: exit %d, want %d\n%s%s", argv, code, wantCode, stdout.String(), stderr.String())
		}
		for _, w := range wants {
			if !strings.Contains(stdout.String()+stderr.String(), w) {
				t.Errorf("%v: output lacks %q:\n%s%s", argv, w, stdout.String(), stderr.String())
			}
		}
	}
	base := []string{"postern", "--config", etc, "check", "route"}
	check(append(base, "remote.example", "--sender", "a@cust1.example"), 0,
		"From a@cust1.example:\n",
		`Domain remote.example: relayed by SMTP to [192.0.2.61], senderroutes rule "cust1.example" (`+sr+":1), STARTTLS\n",
		"  1. 192.0.2.61 port 587, TLS STARTTLS\n")
	check(append(base, "remote.example", "--sender", "<>"), 0,
		"From <> (the null sender):\n",
		`senderroutes rule "<>" (`+sr+":2)")
	check(append(base, "remote.example", "--sender", "d@other.example"), 0,
		"Domain remote.example: by MX (no routes rule)\n")
	check(append(base, "relay.example", "--sender", "a@cust1.example"), 0,
		`Domain relay.example: relayed by SMTP to [192.0.2.50], routes rule "relay.example"`)
	check(append(base, "remote.example"), 0, "Domain remote.example: by MX (no routes rule)\n")
	t.Setenv("POSTERN_CONFIG", etc)
	check([]string{"testmxlookup", "remote.example", "--sender", "x@CUST1.example"}, 0, `senderroutes rule "cust1.example"`)

	write("senderroutes", "@cust1.example [192.0.2.61]\n")
	check(append(base, "remote.example", "--sender", "a@cust1.example"), 1, sr+":1", "no ':' found")
	// postern config reads senderroutes as serve and reload do.
	if code, _, errb := runCmd(t, "", "--config", etc, "config"); code != 78 || !strings.Contains(errb, "senderroutes: "+sr+":1: want SENDER:") {
		t.Fatalf("config with a bad senderroutes: %d\n%s", code, errb)
	}
}

// Courier's makesmtpaccess (and makehosteddomains, makeacceptmailfor):
// nothing to build, so the configuration is checked; a mistake is shown
// with its file and line and exit status 78; with no server running the
// file is read at start.
func TestCourierMakeTools(t *testing.T) {
	dir := t.TempDir()
	if err := policy.Init(dir, "example.test", "mail.example.test", false); err != nil {
		t.Fatal(err)
	}
	etc := filepath.Join(dir, "etc")
	t.Setenv("POSTERN_CONFIG", etc)
	var out, errb bytes.Buffer
	if code := run([]string{"/usr/lib/courier/sbin/makesmtpaccess"}, &env{stdout: &out, stderr: &errb}); code != 0 ||
		!strings.Contains(out.String(), "smtpaccess checked; no running server") {
		t.Fatalf("good configuration: exit %d\n%s%s", code, out.String(), errb.String())
	}
	file := filepath.Join(etc, "smtpaccess")
	if err := os.WriteFile(file, []byte("192.0.2.0/24\tallow\nnot an address\tallow\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	errb.Reset()
	if code := run([]string{"makehosteddomains"}, &env{stdout: &out, stderr: &errb}); code != 78 || !strings.Contains(errb.String(), file+":2") {
		t.Fatalf("bad smtpaccess: exit %d\n%s%s", code, out.String(), errb.String())
	}
}
