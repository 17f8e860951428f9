package dkim_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"postern/filters/dkim"
	"postern/filters/dns/dnstest"
)

func runKeygen(t *testing.T, dir string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = dkim.KeygenMain(args, &out, &errOut, dir)
	return code, out.String(), errOut.String()
}

// TestKeygenThenSignThenVerify is the admin's path end to end: keygen
// writes the key and prints the record; the record, served by DNS, verifies
// what the loaded key signs.
func TestKeygenThenSignThenVerify(t *testing.T) {
	checkGoroutines(t)
	for _, typ := range []string{"rsa", "ed25519"} {
		t.Run(typ, func(t *testing.T) {
			dir := t.TempDir()
			code, out, errOut := runKeygen(t, dir, "Example.ORG", "--selector", "mail", "--type", typ)
			if code != dkim.ExitOK {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			keyPath := filepath.Join(dir, "dkim", "example.org.mail.key")
			info, err := os.Stat(keyPath)
			if err != nil {
				t.Fatal(err)
			}
			if info.Mode().Perm() != 0o600 {
				t.Errorf("key mode %04o, want 0600", info.Mode().Perm())
			}
			line := strings.TrimSpace(out)
			if !strings.HasPrefix(line, "mail._domainkey.example.org. IN TXT \"v=DKIM1; k="+typ+"; p=") {
				t.Fatalf("record %q", line)
			}
			for _, part := range strings.Split(line[strings.Index(line, `"`):], `" "`) {
				if n := len(strings.Trim(part, `"`)); n > 255 {
					t.Errorf("character-string of %d octets", n)
				}
			}
			if typ == "rsa" && strings.Count(line, `" "`) != 1 {
				t.Errorf("2048-bit record should take two strings: %s", line)
			}
			if !strings.Contains(errOut, keyPath) {
				t.Errorf("stderr does not name the key file: %s", errOut)
			}

			srv := dnstest.Start(t, dnstest.NewZone().Add(strings.Replace(line, " IN TXT ", " 300 IN TXT ", 1)))
			r := newResolver(t, srv.Addr)
			signer, err := dkim.LoadSigner(dir)
			if err != nil {
				t.Fatal(err)
			}
			field, err := signer.Sign(context.Background(), "example.org", strings.NewReader(plainMessage))
			if err != nil {
				t.Fatal(err)
			}
			wantOne(t, verify(t, r, field+"\r\n"+plainMessage), dkim.Pass)

			// Running it again does not destroy the key in use.
			if code, _, errOut := runKeygen(t, dir, "example.org", "--selector", "mail"); code != dkim.ExitFailure || !strings.Contains(errOut, "exists") {
				t.Errorf("second keygen: exit %d, %s", code, errOut)
			}
			if code, _, _ := runKeygen(t, dir, "--force", "--selector", "mail", "--type", "ed25519", "example.org"); code != dkim.ExitOK {
				t.Errorf("--force keygen: exit %d", code)
			}
		})
	}
}

func TestKeygenDefaultsAndUsage(t *testing.T) {
	dir := t.TempDir()
	code, out, _ := runKeygen(t, dir, "example.net")
	if code != 0 || !strings.HasPrefix(out, "s2") || !strings.Contains(out, "k=rsa") {
		t.Errorf("defaults: exit %d, %q", code, out)
	}
	for _, args := range [][]string{
		{},
		{"a.example", "b.example"},
		{"localhost"},
		{"bad_domain!.example"},
		{"example.org", "--type", "dsa"},
		{"example.org", "--bits", "1024"},
		{"example.org", "--selector", "a.b"},
		{"example.org", "--selector", "../../etc"},
		{"--nonsense"},
	} {
		if code, _, _ := runKeygen(t, dir, args...); code != dkim.ExitUsage {
			t.Errorf("%q: exit %d, want %d", args, code, dkim.ExitUsage)
		}
	}
}

func TestCheckMain(t *testing.T) {
	checkGoroutines(t)
	testKeys(t)
	signer, _, srv := signedSetup(t, dkim.Key{Domain: "example.org", Selector: "sel", Signer: rsaKey})
	msg := sign(t, signer, "example.org", plainMessage)
	msg = "DKIM-Signature: v=1; garbage\r\n" + msg

	var out, errOut bytes.Buffer
	code := dkim.CheckMain([]string{"--dns", srv.Addr, "--authserv-id", "mx.example.net"}, strings.NewReader(msg), &out, &errOut)
	if code != dkim.ExitOK {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	for _, want := range []string{
		"signatures: 2\n",
		"signature 1: neutral\n",
		"signature 2: pass\n",
		"  key: sel._domainkey.example.org TXT\n",
		"  algorithm: rsa-sha256\n",
		"result: pass\n",
		"passing domains: example.org\n",
		"Authentication-Results: mx.example.net;\n\tdkim=neutral (",
		"\tdkim=pass header.d=example.org header.s=sel",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}

	out.Reset()
	tampered := strings.Replace(msg, "noon", "dawn", 1)
	dkim.CheckMain([]string{"--dns", srv.Addr}, strings.NewReader(tampered), &out, &errOut)
	if !strings.Contains(out.String(), "signature 2: fail\n  domain: example.org") || !strings.Contains(out.String(), "reason: body hash did not verify") {
		t.Errorf("tampered output:\n%s", out.String())
	}

	if code := dkim.CheckMain([]string{"message.eml"}, strings.NewReader(""), &out, &errOut); code != dkim.ExitUsage {
		t.Errorf("positional argument: exit %d", code)
	}
}

func TestRecordsMain(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{{"example.org", "--selector", "a"}, {"example.org", "--selector", "b", "--type", "ed25519"}, {"other.example", "--selector", "c"}} {
		if code, _, errOut := runKeygen(t, dir, args...); code != 0 {
			t.Fatal(errOut)
		}
	}
	var out, errOut bytes.Buffer
	if code := dkim.RecordsMain(nil, &out, &errOut, dir); code != dkim.ExitOK {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "a._domainkey.example.org. IN TXT") || !strings.HasPrefix(lines[2], "c._domainkey.other.example.") {
		t.Fatalf("records:\n%s", out.String())
	}

	// Publish a's record, a wrong one for b, nothing for c.
	zone := dnstest.NewZone().Add(strings.Replace(lines[0], " IN TXT ", " 300 IN TXT ", 1))
	zone.Add(strings.Replace(strings.Replace(lines[2], "c._domainkey.other.example.", "b._domainkey.example.org.", 1), " IN TXT ", " 300 IN TXT ", 1))
	srv := dnstest.Start(t, zone)
	out.Reset()
	code := dkim.RecordsMain([]string{"--check", "--dns", srv.Addr}, &out, &errOut, dir)
	if code != dkim.ExitFailure {
		t.Errorf("exit %d with unpublished keys", code)
	}
	for _, want := range []string{
		"; published: a._domainkey.example.org serves this key",
		"; WRONG: b._domainkey.example.org serves a different key",
		"; NOT PUBLISHED: no TXT record at c._domainkey.other.example",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if code := dkim.RecordsMain([]string{"--check", "--dns", srv.Addr, "example.org"}, &out, &errOut, dir); code != dkim.ExitFailure || strings.Contains(out.String(), "other.example") {
		t.Errorf("domain filter: exit %d\n%s", code, out.String())
	}
	if code := dkim.RecordsMain(nil, &out, &errOut, t.TempDir()); code != dkim.ExitFailure {
		t.Errorf("no keys: exit %d", code)
	}
}
