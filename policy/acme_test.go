package policy

import (
	"encoding/base64"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"postern/internal/acme"
)

func TestACMESettings(t *testing.T) {
	dir := validDir(t)
	cfg, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ACME != nil {
		t.Fatal("ACME on without acmehosts")
	}

	write(t, filepath.Join(dir, "acmehosts"), "Mail.Example.org. imap.example.org\n# comment\nmail.example.org\n")
	write(t, filepath.Join(dir, "acmeemail"), "postmaster@example.org\n")
	write(t, filepath.Join(dir, "acmedirectory"), "letsencrypt-staging\n")
	write(t, filepath.Join(dir, "acmeeab"), "kid-1 c2VjcmV0LWtleQ\n")
	write(t, filepath.Join(dir, "listen"), "imaps 127.0.0.1:2993\nacme 0.0.0.0:80\n")
	cfg, err = Load(dir)
	if err != nil {
		t.Fatal(err) // imaps needs no tlscert when ACME provides one
	}
	a := cfg.ACME
	if a == nil || strings.Join(a.Hosts, " ") != "mail.example.org imap.example.org" || a.Email != "postmaster@example.org" ||
		a.Directory != "https://acme-staging-v02.api.letsencrypt.org/directory" || a.EABKeyID != "kid-1" ||
		a.Dir != filepath.Join(cfg.DataDir, "state", "acme") || a.Roots != nil {
		t.Fatalf("ACME = %+v", a)
	}
	again, _ := Load(dir)
	if !a.Same(again.ACME) {
		t.Error("the same files load as a different setup")
	}
	write(t, filepath.Join(dir, "acmedirectory"), "https://ca.internal.example/acme/directory\n")
	changed, _ := Load(dir)
	if a.Same(changed.ACME) || changed.ACME.Directory != "https://ca.internal.example/acme/directory" {
		t.Error("a changed directory is not seen as a change")
	}
	if (*ACME)(nil).Same(a) || !(*ACME)(nil).Same(nil) {
		t.Error("Same with nil")
	}

	// Each mistake with its file and line.
	write(t, filepath.Join(dir, "acmehosts"), "mail.example.org\n*.example.org 192.0.2.1 localhost\n")
	write(t, filepath.Join(dir, "acmeemail"), "not an address\n")
	write(t, filepath.Join(dir, "acmedirectory"), "http://insecure.example/dir\n")
	write(t, filepath.Join(dir, "acmeeab"), "only-one-field\n")
	write(t, filepath.Join(dir, "acmeca"), "missing.pem\n")
	_, err = Load(dir)
	if err == nil {
		t.Fatal("bad ACME settings accepted")
	}
	for _, want := range []string{
		"acmehosts:2: acmehosts: *.example.org: a wildcard name needs the dns-01 challenge (acmednsupdate)",
		"acmehosts:2: acmehosts: 192.0.2.1 is an address",
		"acmehosts:2: acmehosts: localhost: a certificate authority only certifies full domain names",
		"acmeemail:1: acmeemail: want an address",
		"acmedirectory:1: acmedirectory: want an https:// URL or one of buypass, google, letsencrypt, letsencrypt-staging, zerossl",
		"acmeeab:1: acmeeab: want one line KEYID KEY",
		"acmeca:1: acmeca:",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	write(t, filepath.Join(dir, "acmeca"), "acmeca.pem\n")
	write(t, filepath.Join(dir, "acmeca.pem"), "not pem\n")
	write(t, filepath.Join(dir, "acmeeab"), "kid key!with*bad+chars\n")
	if _, err = Load(dir); err == nil || !strings.Contains(err.Error(), "no PEM certificate in") || !strings.Contains(err.Error(), "acmeeab:1: acmeeab: the key is not base64url") {
		t.Errorf("bad acmeca file or EAB key: %v", err)
	}
}

// FuzzACMESettings: any acme* files load or are refused; what loads is
// usable (hosts a CA can certify, an https directory).
func FuzzACMESettings(f *testing.F) {
	f.Add([]byte("mail.example.org\n"), []byte("letsencrypt\n"), []byte("kid c2VjcmV0\n"), []byte("a@example.org\n"))
	f.Add([]byte("*.x.org 1.2.3.4\n"), []byte("http://x\n"), []byte("a\n"), []byte("<>\n"))
	f.Add([]byte("\x00\xff"), []byte("https://ca.example/dir\n"), []byte("k ===\n"), []byte("\n"))
	f.Fuzz(func(t *testing.T, hosts, directory, eab, email []byte) {
		dir := validDir(t)
		os.WriteFile(filepath.Join(dir, "acmehosts"), hosts, 0o644)
		os.WriteFile(filepath.Join(dir, "acmedirectory"), directory, 0o644)
		os.WriteFile(filepath.Join(dir, "acmeeab"), eab, 0o644)
		os.WriteFile(filepath.Join(dir, "acmeemail"), email, 0o644)
		c, err := Load(dir)
		if err != nil || c.ACME == nil {
			return
		}
		for _, h := range c.ACME.Hosts {
			if acme.CheckHost(h) != nil {
				t.Fatalf("host %q loaded", h)
			}
		}
		if !strings.HasPrefix(c.ACME.Directory, "https://") {
			t.Fatalf("directory %q loaded", c.ACME.Directory)
		}
	})
}

// TestACMEChallenge: http-01 when a listener answers it on port 80, else
// tls-alpn-01 when a TLS listener is on port 443; acmechallenge forces
// one, and a change of it is a change of the setup.
func TestACMEChallenge(t *testing.T) {
	dir := validDir(t)
	write(t, filepath.Join(dir, "acmehosts"), "mail.example.org\n")
	for _, c := range []struct{ listen, force, want string }{
		{"acme 0.0.0.0:80\nwebs 0.0.0.0:443\n", "", acme.HTTP01},
		{"web [::]:80\n", "", acme.HTTP01},
		{"webs 0.0.0.0:443\nimaps 0.0.0.0:993\n", "", acme.TLSALPN01},
		{"imaps [::]:443\n", "", acme.TLSALPN01},
		{"smtp 0.0.0.0:443\n", "", acme.HTTP01}, // STARTTLS: the CA's handshake comes first
		{"imaps 0.0.0.0:993\n", "", acme.HTTP01},
		{"acme 0.0.0.0:80\nwebs 0.0.0.0:443\n", "tls-alpn-01\n", acme.TLSALPN01},
		{"webs 0.0.0.0:443\n", "HTTP-01\n", acme.HTTP01},
		{"webs 0.0.0.0:443\n", "auto\n", acme.TLSALPN01},
	} {
		write(t, filepath.Join(dir, "listen"), c.listen)
		os.Remove(filepath.Join(dir, "acmechallenge"))
		if c.force != "" {
			write(t, filepath.Join(dir, "acmechallenge"), c.force)
		}
		cfg, err := Load(dir)
		if err != nil {
			t.Fatalf("listen %q, acmechallenge %q: %v", c.listen, c.force, err)
		}
		forced := c.force != "" && c.force != "auto\n"
		if cfg.ACME.Challenge != c.want || cfg.ACME.ChallengeForced != forced {
			t.Errorf("listen %q, acmechallenge %q: %s (forced %v), want %s (forced %v)",
				c.listen, c.force, cfg.ACME.Challenge, cfg.ACME.ChallengeForced, c.want, forced)
		}
	}
	a, _ := Load(dir)
	write(t, filepath.Join(dir, "acmechallenge"), "http-01\n")
	b, _ := Load(dir)
	if a.ACME.Same(b.ACME) {
		t.Error("a changed challenge is not seen as a change")
	}
	write(t, filepath.Join(dir, "acmechallenge"), "dns-01\n")
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "acmechallenge:1: acmechallenge: dns-01 needs acmednsupdate") {
		t.Errorf("acmechallenge dns-01 without acmednsupdate: %v", err)
	}
	write(t, filepath.Join(dir, "acmechallenge"), "dns-02\n")
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "acmechallenge:1: acmechallenge: want auto, http-01, tls-alpn-01 or dns-01") {
		t.Errorf("acmechallenge dns-02: %v", err)
	}
}

// TestACMEDNSUpdate: acmednsupdate makes dns-01 the challenge (auto), lets
// wildcard names in, and each mistake is refused with its line.
func TestACMEDNSUpdate(t *testing.T) {
	dir := validDir(t)
	write(t, filepath.Join(dir, "acmehosts"), "*.example.org mail.example.org\n")
	write(t, filepath.Join(dir, "listen"), "acme 0.0.0.0:80\n")
	write(t, filepath.Join(dir, "acmednsupdate"), "# the primary\nserver 192.0.2.53\nzone Example.org.\nkey acme-update hmac-sha256 c2VjcmV0LXNoYXJlZA==\npropagation 2m\n")
	cfg, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	a := cfg.ACME
	if a.Challenge != acme.DNS01 || a.ChallengeForced || strings.Join(a.Hosts, " ") != "*.example.org mail.example.org" {
		t.Fatalf("challenge %s (forced %v), hosts %v", a.Challenge, a.ChallengeForced, a.Hosts)
	}
	u := a.DNSUpdate
	if u == nil || u.Server != "192.0.2.53:53" || u.Zone != "example.org." || u.KeyName != "acme-update." ||
		u.Algorithm != "hmac-sha256" || u.Secret != "c2VjcmV0LXNoYXJlZA==" || u.Propagation != 2*time.Minute {
		t.Fatalf("DNSUpdate = %+v", u)
	}
	again, _ := Load(dir)
	if !a.Same(again.ACME) {
		t.Error("the same files load as a different setup")
	}
	write(t, filepath.Join(dir, "acmednsupdate"), "server [2001:db8::53]:5353\n")
	changed, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if a.Same(changed.ACME) || changed.ACME.DNSUpdate.Server != "[2001:db8::53]:5353" || changed.ACME.DNSUpdate.KeyName != "" {
		t.Errorf("changed acmednsupdate: same %v, %+v", a.Same(changed.ACME), changed.ACME.DNSUpdate)
	}

	write(t, filepath.Join(dir, "acmednsupdate"), "zone example.org\nserver\nkey k hmac-md4 c2VjcmV0\nkey k2 hmac-sha256 !!\nzone x.org\nttl 5\npropagation forever\n")
	_, err = Load(dir)
	if err == nil {
		t.Fatal("bad acmednsupdate accepted")
	}
	for _, want := range []string{
		"acmednsupdate:2: acmednsupdate: want server ADDRESS[:PORT]",
		"acmednsupdate:3: acmednsupdate: unknown TSIG algorithm \"hmac-md4\"",
		"acmednsupdate:4: acmednsupdate: key given twice",
		"acmednsupdate:5: acmednsupdate: zone given twice",
		"acmednsupdate:6: acmednsupdate: unknown keyword \"ttl\"",
		"acmednsupdate:7: acmednsupdate: want propagation DURATION",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	write(t, filepath.Join(dir, "acmednsupdate"), "zone example.org\n")
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "acmednsupdate:1: acmednsupdate: no server line") {
		t.Errorf("no server: %v", err)
	}
	write(t, filepath.Join(dir, "acmednsupdate"), "server 192.0.2.53\nkey k hmac-sha256 !!notbase64\n")
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "acmednsupdate:2: acmednsupdate: the secret is not base64") {
		t.Errorf("bad secret: %v", err)
	}
	// Forcing another challenge with a wildcard host is refused.
	write(t, filepath.Join(dir, "acmednsupdate"), "server 192.0.2.53\n")
	write(t, filepath.Join(dir, "acmechallenge"), "http-01\n")
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "acmehosts:1: acmehosts: *.example.org: a wildcard name needs the dns-01 challenge") {
		t.Errorf("wildcard with http-01 forced: %v", err)
	}
}

// FuzzACMEDNSUpdate: any acmednsupdate file loads or is refused; what
// loads names a server with a port, a known algorithm and a base64
// secret when it has a key, and makes dns-01 the challenge.
func FuzzACMEDNSUpdate(f *testing.F) {
	f.Add([]byte("server 192.0.2.53\nzone example.org\nkey k hmac-sha256 c2VjcmV0\npropagation 30s\n"))
	f.Add([]byte("server [2001:db8::1]:5353\n"))
	f.Add([]byte("server\nkey a b c\nzone\n\x00"))
	f.Add([]byte("server ns.example.org:53 extra\npropagation -1s\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := validDir(t)
		os.WriteFile(filepath.Join(dir, "acmehosts"), []byte("*.example.org\n"), 0o644)
		os.WriteFile(filepath.Join(dir, "acmednsupdate"), data, 0o600)
		c, err := Load(dir)
		if err != nil {
			return
		}
		u := c.ACME.DNSUpdate
		if u == nil || c.ACME.Challenge != acme.DNS01 {
			t.Fatalf("loaded without a DNS update setup: %+v", c.ACME)
		}
		if host, port, err := net.SplitHostPort(u.Server); err != nil || host == "" || port == "" {
			t.Fatalf("server %q loaded", u.Server)
		}
		if u.KeyName != "" {
			if _, ok := acme.TSIGAlgorithm(u.Algorithm); !ok {
				t.Fatalf("algorithm %q loaded", u.Algorithm)
			}
			if _, err := base64.StdEncoding.DecodeString(u.Secret); err != nil {
				t.Fatalf("secret %q loaded", u.Secret)
			}
		}
		if u.Propagation < 0 || u.Propagation > time.Hour {
			t.Fatalf("propagation %v loaded", u.Propagation)
		}
	})
}
