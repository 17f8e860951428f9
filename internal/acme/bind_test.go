package acme_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"postern/internal/acme"
	"postern/internal/acme/acmetest"
)

const bindSecret = "YmluZC1zaGFyZWQtc2VjcmV0LWZvci10aGUtdGVzdA=="

// startNamed runs BIND's named (Debian's bind9) in the foreground on a
// port of 127.0.0.1 as the primary of example.test, taking updates of
// TXT records signed with the key "postern-acme." (as docs/acme.md shows
// the grant). It returns the address, UDP and TCP on one port.
func startNamed(t *testing.T) string {
	t.Helper()
	named, err := exec.LookPath("named")
	if err != nil {
		named = "/usr/sbin/named"
	}
	if _, err := os.Stat(named); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("BIND's named is missing: .ci/run installs bind9")
		}
		t.Skip("BIND's named not installed (apt-get install bind9)")
	}
	if os.Geteuid() != 0 {
		t.Skip("named needs root here (its working files)")
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	port := freePort(t)
	zone := `$TTL 300
@ IN SOA ns.example.test. hostmaster.example.test. 1 3600 600 86400 300
@ IN NS ns.example.test.
ns IN A 127.0.0.1
mail IN A 127.0.0.1
`
	conf := fmt.Sprintf(`options {
	directory "%[1]s";
	pid-file "%[1]s/named.pid";
	listen-on port %[2]d { 127.0.0.1; };
	listen-on-v6 { none; };
	recursion no;
	dnssec-validation no;
	notify no;
};
controls { };
key "postern-acme" { algorithm hmac-sha256; secret "%[3]s"; };
zone "example.test" {
	type primary;
	file "%[1]s/example.test.zone";
	update-policy { grant postern-acme. zonesub TXT; };
};
`, dir, port, bindSecret)
	for name, body := range map[string]string{"named.conf": conf, "example.test.zone": zone} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	cmd := exec.Command(named, "-g", "-n", "1", "-c", filepath.Join(dir, "named.conf"))
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("named's output:\n%s", out.String())
		}
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(20 * time.Second)
	for {
		q := new(mdns.Msg)
		q.SetQuestion("example.test.", mdns.TypeSOA)
		c := &mdns.Client{Net: "tcp", Timeout: time.Second}
		if r, _, err := c.Exchange(q, addr); err == nil && r.Rcode == mdns.RcodeSuccess && len(r.Answer) == 1 {
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("named did not answer on %s:\n%s", addr, out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if pc, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			pc.Close()
			return port
		}
	}
	t.Fatal("no port free for both UDP and TCP")
	return 0
}

func txt(t *testing.T, addr, name string) []string {
	t.Helper()
	q := new(mdns.Msg)
	q.SetQuestion(name, mdns.TypeTXT)
	c := &mdns.Client{Net: "tcp", Timeout: 5 * time.Second}
	r, _, err := c.Exchange(q, addr)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, rr := range r.Answer {
		if x, ok := rr.(*mdns.TXT); ok {
			out = append(out, strings.Join(x.Txt, ""))
		}
	}
	return out
}

// TestRFC2136WithBIND: the updates BIND takes, signed with the key from
// tsig-keygen's format: a record added (and answered before Present
// returns), a second one beside it, one removed without touching the
// other; a wrong secret refused by BIND and reported as such.
func TestRFC2136WithBIND(t *testing.T) {
	addr := startNamed(t)
	ctx := context.Background()
	u := &acme.RFC2136{Server: addr, KeyName: "postern-acme", Algorithm: "hmac-sha256", Secret: bindSecret}
	name := "_acme-challenge.mail.example.test."
	if err := u.Present(ctx, name, "first-token"); err != nil {
		t.Fatal(err)
	}
	if got := txt(t, addr, name); len(got) != 1 || got[0] != "first-token" {
		t.Fatalf("after Present: %q", got)
	}
	if err := u.Present(ctx, name, "second-token"); err != nil {
		t.Fatal(err)
	}
	if err := u.CleanUp(ctx, name, "first-token"); err != nil {
		t.Fatal(err)
	}
	if got := txt(t, addr, name); len(got) != 1 || got[0] != "second-token" {
		t.Fatalf("after removing the first: %q", got)
	}
	if err := u.CleanUp(ctx, name, "second-token"); err != nil {
		t.Fatal(err)
	}
	if got := txt(t, addr, name); len(got) != 0 {
		t.Fatalf("after removing both: %q", got)
	}

	bad := &acme.RFC2136{Server: addr, Zone: "example.test", KeyName: "postern-acme", Algorithm: "hmac-sha256",
		Secret: "d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldA==", Propagation: time.Second}
	err := bad.Present(ctx, name, "forged")
	if err == nil {
		t.Fatal("BIND took an update signed with the wrong secret")
	}
	if !strings.Contains(err.Error(), `the server refused the signature (does it have the key "postern-acme" with this secret`) {
		t.Errorf("wrong secret: %v", err)
	}
	if got := txt(t, addr, name); len(got) != 0 {
		t.Fatalf("a record after the refused update: %q", got)
	}
	// An update outside the key's grant (an A record is not TXT) is
	// refused too: the key can do no more than dns-01 needs.
	m := new(mdns.Msg)
	m.SetUpdate("example.test.")
	rr, _ := mdns.NewRR("evil.example.test. 60 IN A 192.0.2.66")
	m.Insert([]mdns.RR{rr})
	m.SetTsig("postern-acme.", mdns.HmacSHA256, 300, time.Now().Unix())
	c := &mdns.Client{Net: "tcp", TsigSecret: map[string]string{"postern-acme.": bindSecret}}
	if r, _, err := c.Exchange(m, addr); err != nil || r.Rcode != mdns.RcodeRefused {
		t.Errorf("an A record update: %v, rcode %v; want REFUSED by the grant", err, r)
	}
}

// TestDNS01WithBINDAndPebble: a certificate for *.example.test and
// mail.example.test, the records published in BIND by DNS UPDATE and
// checked by Pebble through BIND.
func TestDNS01WithBINDAndPebble(t *testing.T) {
	addr := startNamed(t)
	ca := acmetest.StartPorts(t, addr, 0, 0)
	m, err := acme.New(acme.Options{
		Hosts:     []string{"*.example.test", "mail.example.test"},
		Directory: ca.Directory, HTTPClient: ca.Client, Dir: t.TempDir(),
		Challenge: acme.DNS01,
		DNS:       &acme.RFC2136{Server: addr, KeyName: "postern-acme", Algorithm: "hmac-sha256", Secret: bindSecret},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Renew(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	verify(t, m.Certificate("imap.example.test"), "imap.example.test", ca.Roots())
	verify(t, m.Certificate("mail.example.test"), "mail.example.test", ca.Roots())
	for _, n := range []string{"_acme-challenge.example.test.", "_acme-challenge.mail.example.test."} {
		if got := txt(t, addr, n); len(got) != 0 {
			t.Errorf("%s left in BIND: %q", n, got)
		}
	}
}
