package main

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// postern dns records on a fresh postern init: the records an admin must
// publish, with the listen setting's ports, the DKIM key keygen made and
// the TLSA record of the certificate init wrote.
func TestDNSRecords(t *testing.T) {
	dir := t.TempDir()
	if code, out, errb := runCmd(t, "", "init", dir, "--domain", "example.com", "--hostname", "mail.example.com"); code != 0 {
		t.Fatalf("init: %d %s%s", code, out, errb)
	}
	etc := filepath.Join(dir, "etc")
	// No pop3 at all: its SRV records say "not offered".
	listen := "smtp 127.0.0.1:2525\nsubmission 0.0.0.0:587\nsubmissions 0.0.0.0:465\nimap 0.0.0.0:143\nimaps 0.0.0.0:993\nwebs 0.0.0.0:443\n"
	os.WriteFile(filepath.Join(etc, "listen"), []byte(listen), 0o644)
	os.WriteFile(filepath.Join(etc, "mtastspolicy"), []byte("example.com mode=enforce max_age=604800\n"), 0o644)
	if code, out, errb := runCmd(t, "", "--config", etc, "dkim", "keygen", "example.com", "--selector", "s1", "--type", "ed25519"); code != 0 {
		t.Fatalf("keygen: %d %s%s", code, out, errb)
	}
	_, dkimOut, _ := runCmd(t, "", "--config", etc, "dkim", "records")
	dkimRecord := strings.TrimSpace(dkimOut)

	code, out, errb := runCmd(t, "", "--config", etc, "dns", "records", "example.com")
	if code != 0 {
		t.Fatalf("dns records: %d %s", code, errb)
	}
	pemData, _ := os.ReadFile(filepath.Join(etc, "certs", "postern.pem"))
	block, _ := pem.Decode(pemData)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	spki := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	for _, want := range []string{
		"example.com. IN MX 10 mail.example.com.",
		`example.com. IN TXT "v=spf1 mx ~all"`,
		dkimRecord,
		`_dmarc.example.com. IN TXT "v=DMARC1; p=none"`,
		`_smtp._tls.example.com. IN TXT "v=TLSRPTv1; rua=mailto:postmaster@example.com"`,
		`_mta-sts.example.com. IN TXT "v=STSv1; id=`,
		"mta-sts.example.com. IN CNAME mail.example.com.",
		"autoconfig.example.com. IN CNAME mail.example.com.",
		"autodiscover.example.com. IN CNAME mail.example.com.",
		"_autodiscover._tcp.example.com. IN SRV 0 1 443 mail.example.com.",
		"_submissions._tcp.example.com. IN SRV 0 1 465 mail.example.com.",
		"_submission._tcp.example.com. IN SRV 10 1 587 mail.example.com.",
		"_imaps._tcp.example.com. IN SRV 0 1 993 mail.example.com.",
		"_imap._tcp.example.com. IN SRV 10 1 143 mail.example.com.",
		"_pop3s._tcp.example.com. IN SRV 0 0 0 .",
		"_pop3._tcp.example.com. IN SRV 0 0 0 .",
		"_25._tcp.mail.example.com. IN TLSA 3 1 1 " + hex.EncodeToString(spki[:]),
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q", want)
		}
	}
	if !strings.HasPrefix(dkimRecord, "s1._domainkey.example.com. IN TXT") {
		t.Errorf("dkim records printed %q", dkimRecord)
	}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l != "" && !strings.HasPrefix(l, ";") && !strings.Contains(l, " IN ") {
			t.Errorf("not a comment or a record: %q", l)
		}
	}

	// DMARC reports on: rua= to their address.
	os.WriteFile(filepath.Join(etc, "dmarcreports"), []byte("yes\n"), 0o644)
	_, out, _ = runCmd(t, "", "--config", etc, "dns", "records", "example.com")
	if !strings.Contains(out, `"v=DMARC1; p=none; rua=mailto:postmaster@example.com"`) {
		t.Errorf("with dmarcreports: %s", out)
	}

	if code, _, errb := runCmd(t, "", "--config", etc, "dns", "records", "example.net"); code != 1 || !strings.Contains(errb, "not a domain") {
		t.Errorf("foreign domain: %d %s", code, errb)
	}
	if code, out, _ := runCmd(t, "", "dns", "records", "--help"); code != 0 || !strings.Contains(out, "Usage: postern dns records") {
		t.Errorf("--help: %d %s", code, out)
	}
}
