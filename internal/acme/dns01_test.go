package acme_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"postern/filters/dns/dnstest"
	"postern/internal/acme"
	"postern/internal/acme/acmetest"
)

const tsigSecret = "c2VjcmV0LXNoYXJlZC13aXRoLXRoZS1wcmltYXJ5LXNlcnZlcg=="

// dns01Setup runs a primary name server for example.test that applies
// updates signed with the key "acme-update." and Pebble validating
// through it (no HTTP or TLS port: dns-01 needs none).
func dns01Setup(t *testing.T) (*acmetest.CA, *dnstest.Server) {
	t.Helper()
	zone := dnstest.NewZone().Add(
		"example.test. 300 IN SOA ns.example.test. hostmaster.example.test. 1 3600 600 86400 300",
	).AllowUpdates("example.test", "acme-update.", tsigSecret)
	dns := dnstest.Start(t, zone)
	return acmetest.StartPorts(t, dns.Addr, 0, 0), dns
}

func TestDNS01IssuesWildcardAndPlainNames(t *testing.T) {
	ca, dns := dns01Setup(t)
	dir := t.TempDir()
	upd := &acme.RFC2136{Server: dns.Addr, KeyName: "acme-update", Algorithm: "hmac-sha256", Secret: tsigSecret}
	opt := acme.Options{
		Hosts:     []string{"*.example.test", "mail.example.test"},
		Directory: ca.Directory, HTTPClient: ca.Client, Dir: dir,
		Challenge: acme.DNS01, DNS: upd,
	}
	m, err := acme.New(opt)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Renew(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	// The zone was found by its SOA (no zone given), the records added
	// and then removed: nothing is left for the next order to trip on.
	if n := dns.Zone.Updates(); n < 4 {
		t.Errorf("%d updates applied, want an add and a removal per name (4)", n)
	}
	for _, name := range []string{"_acme-challenge.example.test", "_acme-challenge.mail.example.test"} {
		if rrs := dns.Zone.Records(name, mdns.TypeTXT); len(rrs) != 0 {
			t.Errorf("%s still has %v after the order", name, rrs)
		}
	}
	wild := m.Certificate("*.example.test")
	verify(t, wild, "imap.example.test", ca.Roots())
	if got := m.Certificate("imap.example.test"); got != wild {
		t.Error("a name under the wildcard does not get the wildcard certificate")
	}
	verify(t, m.Certificate("mail.example.test"), "mail.example.test", ca.Roots())
	if m.Certificate("mail.example.test") == wild {
		t.Error("a name with a certificate of its own got the wildcard one")
	}
	if m.Certificate("a.b.example.test") != nil || m.Certificate("example.test") != nil {
		t.Error("the wildcard certificate was given to a name it does not cover")
	}
	if _, err := os.Stat(filepath.Join(dir, "_wildcard.example.test.pem")); err != nil {
		t.Errorf("the wildcard certificate is not kept as _wildcard.example.test.pem: %v", err)
	}

	// A restart loads the wildcard certificate from its file.
	m2, err := acme.New(opt)
	if err != nil {
		t.Fatal(err)
	}
	if got := m2.Certificate("www.example.test"); got == nil || got.Leaf.SerialNumber.Cmp(wild.Leaf.SerialNumber) != 0 {
		t.Error("the kept wildcard certificate was not loaded at restart")
	}
}

func TestDNS01WrongKeyFailsClearly(t *testing.T) {
	ca, dns := dns01Setup(t)
	upd := &acme.RFC2136{Server: dns.Addr, Zone: "example.test", KeyName: "acme-update", Algorithm: "hmac-sha256",
		Secret: "d3Jvbmctc2VjcmV0", Propagation: 2 * time.Second}
	m, err := acme.New(acme.Options{
		Hosts: []string{"mail.example.test"}, Directory: ca.Directory, HTTPClient: ca.Client, Dir: t.TempDir(),
		Challenge: acme.DNS01, DNS: upd,
	})
	if err != nil {
		t.Fatal(err)
	}
	err = m.Renew(context.Background(), false)
	if err == nil {
		t.Fatal("a certificate with updates signed by the wrong secret")
	}
	if !strings.Contains(err.Error(), "dns update") {
		t.Errorf("error %q does not say the DNS update failed", err)
	}
	if m.Certificate("mail.example.test") != nil {
		t.Error("a certificate after a failed order")
	}
	if dns.Zone.Updates() != 0 {
		t.Errorf("the server applied %d updates signed with the wrong secret", dns.Zone.Updates())
	}
}

func TestWildcardNeedsDNS01(t *testing.T) {
	for _, ch := range []string{acme.HTTP01, acme.TLSALPN01} {
		if _, err := acme.New(acme.Options{Hosts: []string{"*.example.test"}, Dir: t.TempDir(), Challenge: ch}); err == nil {
			t.Errorf("a wildcard name accepted with %s", ch)
		}
	}
	if _, err := acme.New(acme.Options{Hosts: []string{"mail.example.test"}, Dir: t.TempDir(), Challenge: acme.DNS01}); err == nil {
		t.Error("dns-01 accepted with nothing to publish its records")
	}
	for _, h := range []string{"*.test", "*", "a.*.example.test", "**.example.test", "*.-x.example.test"} {
		if acme.CheckHost(h) == nil {
			t.Errorf("CheckHost(%q) accepted", h)
		}
	}
	if err := acme.CheckHost("*.example.test"); err != nil {
		t.Errorf("CheckHost(*.example.test): %v", err)
	}
}
