package server

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"postern/filters/dns/dnstest"
	"postern/internal/acme/acmetest"
)

// TestACMEDNS01Wildcard runs the server with a wildcard in acmehosts and
// acmednsupdate naming a primary name server (a real one on 127.0.0.1
// that applies TSIG-signed updates) against Pebble: the server publishes
// the TXT record by DNS UPDATE, gets *.example.test, removes the record,
// and its TLS listeners serve the wildcard certificate to clients that ask
// for any name under example.test. No listener on port 80 or 443 is
// needed.
func TestACMEDNS01Wildcard(t *testing.T) {
	h := &harness{t: t, dir: t.TempDir(), user: "alice@example.test", pass: "s3cret pass"}
	h.etc = filepath.Join(h.dir, "etc")
	if err := writeInit(h); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.stop)
	const secret = "dGhlLXByaW1hcnktc2VydmVyJ3Mta2V5"
	zone := dnstest.NewZone().Add(
		"example.test. 300 IN SOA ns.example.test. hostmaster.example.test. 1 3600 600 86400 300",
	).AllowUpdates("example.test", "postern-acme.", secret)
	dns := dnstest.Start(t, zone)
	ca := acmetest.StartPorts(t, dns.Addr, 0, 0)

	h.writeSetting("acmehosts", "*.example.test\n")
	h.writeSetting("acmednsupdate", "server "+dns.Addr+"\nkey postern-acme hmac-sha256 "+secret+"\n")
	os.Chmod(filepath.Join(h.etc, "acmednsupdate"), 0o600)
	h.writeSetting("acmedirectory", ca.Directory+"\n")
	os.WriteFile(filepath.Join(h.etc, "acme-directory-ca.pem"), ca.DirectoryCertPEM(), 0o644)
	h.writeSetting("acmeca", "acme-directory-ca.pem\n")
	h.start()

	deadline := time.Now().Add(60 * time.Second)
	for h.srv.acme.Load().Certificate("*.example.test") == nil {
		if time.Now().After(deadline) {
			t.Fatal("no certificate after 60 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if zone.Updates() < 2 {
		t.Errorf("%d updates: want the record added and removed", zone.Updates())
	}
	if rrs := zone.Records("_acme-challenge.example.test", mdns.TypeTXT); len(rrs) != 0 {
		t.Errorf("the challenge record is still there: %v", rrs)
	}
	for _, name := range []string{"imap.example.test", "mail.example.test"} {
		conn, err := tls.Dial("tcp", h.addr("imaps"), &tls.Config{ServerName: name, RootCAs: ca.Roots()})
		if err != nil {
			t.Fatalf("IMAPS for %s with the CA's root: %v", name, err)
		}
		leaf := conn.ConnectionState().PeerCertificates[0]
		conn.Close()
		if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != "*.example.test" {
			t.Errorf("IMAPS for %s served %v", name, leaf.DNSNames)
		}
	}
}
