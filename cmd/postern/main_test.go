package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runCmd(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(append([]string{"postern"}, args...), &env{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb})
	return code, out.String(), errb.String()
}

// Every command answers --help with exit 0 and a usage text.
func TestEveryCommandHasHelp(t *testing.T) {
	for _, c := range commands() {
		// On standard output, where a pager or grep reads it.
		code, out, errb := runCmd(t, "", c.name, "--help")
		if code != 0 || !strings.Contains(strings.ToLower(out), "usage") {
			t.Errorf("postern %s --help: exit %d\nstdout: %s\nstderr: %s", c.name, code, out, errb)
		}
	}
	// Subcommands too, once each, without a configuration to read (the
	// default /etc/postern does not exist here).
	for _, sub := range [][]string{
		{"queue", "list"}, {"queue", "show"}, {"queue", "retry"}, {"user", "add"}, {"user", "passwd"},
		{"user", "list"}, {"user", "del"}, {"user", "show"}, {"dkim", "keygen"}, {"dkim", "records"}, {"check", "spf"},
		{"check", "dkim"}, {"check", "dmarc"}, {"check", "dnsbl"}, {"check", "arc"}, {"webadmin", "passwd"}, {"webadmin", "list"},
	} {
		code, out, errb := runCmd(t, "", append(sub, "--help")...)
		if n := strings.Count(strings.ToLower(out), "usage:"); code != 0 || n != 1 {
			t.Errorf("postern %s --help: exit %d, %d usage texts\n%s%s", strings.Join(sub, " "), code, n, out, errb)
		}
	}
	for _, help := range [][]string{{"help"}, {"--help"}, {"-h"}} {
		if code, out, _ := runCmd(t, "", help...); code != 0 || !strings.Contains(out, "maildirmake") {
			t.Errorf("postern %s: %d %s", help[0], code, out)
		}
	}
	if code, _, _ := runCmd(t, "", "no-such-command"); code != 64 {
		t.Errorf("unknown command: exit %d, want 64", code)
	}
}

func TestInitUserAuthtestConfig(t *testing.T) {
	dir := t.TempDir()
	if code, out, errb := runCmd(t, "", "init", dir, "--domain", "example.test"); code != 0 {
		t.Fatalf("init: %d %s %s", code, out, errb)
	}
	etc := filepath.Join(dir, "etc")
	if code, _, errb := runCmd(t, "pw123\n", "--config", etc, "user", "add", "bob@example.test"); code != 0 {
		t.Fatalf("user add: %s", errb)
	}
	code, out, errb := runCmd(t, "", "--config", etc, "authtest", "bob@example.test", "pw123")
	if code != 0 || !strings.Contains(out, "Authentication succeeded") {
		t.Fatalf("authtest: %d %s %s", code, out, errb)
	}
	if code, _, _ := runCmd(t, "", "--config", etc, "authtest", "bob@example.test", "wrong"); code == 0 {
		t.Fatal("authtest accepted a wrong password")
	}
	if code, out, errb := runCmd(t, "", "--config", etc, "authtest", "bob@example.test", "pw123", "pw456"); code != 0 || out != "" || errb != "Password change succeeded.\n" {
		t.Fatalf("authtest USER OLD NEW: %d %q %q", code, out, errb)
	}
	if code, _, errb := runCmd(t, "", "--config", etc, "authtest", "bob@example.test", "pw456"); code != 0 {
		t.Fatalf("the changed password: %d %s", code, errb)
	}
	// The accounts of the modules the server asks (here the userdb), in
	// Courier's authenumerate layout; as Courier's, not those of uid 0
	// (bob's, when the test runs as root).
	if code, _, errb := runCmd(t, "", "--config", etc, "user", "add", "carl@example.test", "--no-password", "--uid", "1234", "--gid", "1235", "--no-maildir"); code != 0 {
		t.Fatalf("user add carl: %s", errb)
	}
	code, out, errb = runCmd(t, "", "--config", etc, "authenumerate")
	bob := fmt.Sprintf("bob@example.test\t%d\t%d\t", os.Getuid(), os.Getgid())
	if code != 0 || !strings.Contains(out, "carl@example.test\t1234\t1235\t") || strings.Contains(out, bob) != (os.Getuid() != 0) || errb != "" {
		t.Fatalf("authenumerate: %d %q %q", code, out, errb)
	}
	os.WriteFile(filepath.Join(etc, "hosteddomains"), []byte("alias.test\texample.test\n"), 0o640)
	os.WriteFile(filepath.Join(etc, "esmtpacceptmailfor"), []byte("example.test\n.partner.test\n"), 0o640)
	code, out, _ = runCmd(t, "", "--config", etc, "config")
	if code != 0 || !strings.Contains(out, "auth       authuserdb (") || !strings.Contains(out, "domain     example.test\n") || !strings.Contains(out, "listen     smtp") ||
		!strings.Contains(out, "domain     alias.test (alias of example.test)") || !strings.Contains(out, "relay      .partner.test\n") || strings.Contains(out, "relay      example.test") {
		t.Fatalf("config: %d\n%s", code, out)
	}
	// Beyond the core settings, config reads what serve and reload read:
	// a mistake in milters, smtpaccess or routes is reported with its
	// file and line, and the exit status is 78.
	os.WriteFile(filepath.Join(etc, "milters"), []byte("rspamd inet:127.0.0.1:11332 authenticated=maybe\n"), 0o640)
	os.WriteFile(filepath.Join(etc, "filters"), []byte("milter:rspamd\n"), 0o640)
	os.WriteFile(filepath.Join(etc, "routes"), []byte("x.example [1.2.3\n"), 0o640)
	code, _, errb = runCmd(t, "", "--config", etc, "config")
	if code != 78 || !strings.Contains(errb, filepath.Join(etc, "milters")+":1: authenticated=maybe") || !strings.Contains(errb, "routes: "+filepath.Join(etc, "routes")+":1:") {
		t.Fatalf("config with bad milters and routes: %d\n%s", code, errb)
	}
	// reload checks the same before it signals the server.
	if code, _, errb := runCmd(t, "", "--config", etc, "reload"); code != 78 || !strings.Contains(errb, "authenticated=maybe") {
		t.Fatalf("reload with a bad milters line: %d\n%s", code, errb)
	}
	if code, _, errb := runCmd(t, "", "init", dir, "--domain", "example.test"); code == 0 || !strings.Contains(errb, "already") {
		t.Fatalf("second init without --force: %d %s", code, errb)
	}
}

// Called through a link named like Courier's tool, the binary is that tool.
func TestArgv0Tools(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "Maildir")
	var out, errb bytes.Buffer
	if code := run([]string{"/usr/bin/maildirmake", dir}, &env{stdout: &out, stderr: &errb}); code != 0 {
		t.Fatalf("maildirmake: %d %s", code, errb.String())
	}
	msg := "Subject: x\n\nbody\n"
	if code := run([]string{"deliverquota", dir}, &env{stdin: strings.NewReader(msg), stdout: &out, stderr: &errb}); code != 0 {
		t.Fatalf("deliverquota: %d %s", code, errb.String())
	}
	matches, _ := filepath.Glob(filepath.Join(dir, "new", "*"))
	if len(matches) != 1 {
		t.Fatalf("deliverquota delivered %d files", len(matches))
	}
	key := filepath.Base(matches[0])
	if code := run([]string{"/usr/local/bin/maildirkw", dir, key, "Work"}, &env{stdout: &out, stderr: &errb}); code != 0 {
		t.Fatalf("maildirkw: %d %s", code, errb.String())
	}
	out.Reset()
	if code := run([]string{"maildirkw", "-L", dir}, &env{stdout: &out, stderr: &errb}); code != 0 || out.String() != key+" Work\n" {
		t.Fatalf("maildirkw -L: %d %q %s", code, out.String(), errb.String())
	}
	if code := run([]string{"maildiracl", "-set", dir, "INBOX", "user=bob", "lr"}, &env{stdout: &out, stderr: &errb}); code != 0 {
		t.Fatalf("maildiracl: %d %s", code, errb.String())
	}
	out.Reset()
	if code := run([]string{"maildiracl", "-compute", dir, "INBOX", "user=bob"}, &env{stdout: &out, stderr: &errb}); code != 0 || out.String() != "lr\n" {
		t.Fatalf("maildiracl -compute: %d %q %s", code, out.String(), errb.String())
	}
}

// "postern dotforward" and a link named dotforward read ~/.forward from
// HOME, the recipient from DTLINE, as the delivery agent runs them.
func TestDotforwardCommand(t *testing.T) {
	home := t.TempDir()
	if err := os.WriteFile(filepath.Join(home, ".forward"), []byte("\\alice, joe@example.org\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOME", home)
	t.Setenv("DTLINE", "Delivered-To: alice@example.test\n")
	for _, argv := range [][]string{{"postern", "dotforward"}, {"/usr/lib/courier/bin/dotforward"}} {
		var out, errb bytes.Buffer
		code := run(argv, &env{stdin: strings.NewReader("Subject: x\n\nbody\n"), stdout: &out, stderr: &errb})
		if code != 0 || out.String() != "!joe@example.org\n" {
			t.Fatalf("%q: exit %d, %q %s", argv, code, out.String(), errb.String())
		}
	}
}

// postern config shows the ACME hosts and whether their certificates are
// issued, and says when nothing on port 80 can answer the CA.
func TestConfigShowsACME(t *testing.T) {
	dir := t.TempDir()
	if code, _, errb := runCmd(t, "", "init", dir, "--domain", "example.test"); code != 0 {
		t.Fatal(errb)
	}
	etc := filepath.Join(dir, "etc")
	os.WriteFile(filepath.Join(etc, "acmehosts"), []byte("mail.example.test\n"), 0o640)
	code, out, errb := runCmd(t, "", "--config", etc, "config")
	if code != 0 || !strings.Contains(out, "acme       https://acme-v02.api.letsencrypt.org/directory\n") ||
		!strings.Contains(out, "acme       mail.example.test (not issued yet)\n") || !strings.Contains(out, "no acme or web listener on port 80") {
		t.Fatalf("config: %d\n%s%s", code, out, errb)
	}
	listen, _ := os.ReadFile(filepath.Join(etc, "listen"))
	os.WriteFile(filepath.Join(etc, "listen"), append(listen, "acme 0.0.0.0:80\n"...), 0o640)
	if _, out, _ := runCmd(t, "", "--config", etc, "config"); strings.Contains(out, "no acme or web listener on port 80") ||
		!strings.Contains(out, "acme       challenge http-01\n") {
		t.Errorf("the note stays with an acme listener on port 80, or the challenge is not http-01:\n%s", out)
	}
	// tls-alpn-01, forced, needs a TLS listener on port 443.
	os.WriteFile(filepath.Join(etc, "acmechallenge"), []byte("tls-alpn-01\n"), 0o640)
	if _, out, _ := runCmd(t, "", "--config", etc, "config"); !strings.Contains(out, "acme       challenge tls-alpn-01\n") ||
		!strings.Contains(out, "no TLS listener (webs) on port 443") {
		t.Errorf("tls-alpn-01 without a listener on 443:\n%s", out)
	}
	os.WriteFile(filepath.Join(etc, "listen"), append(listen, "webs 0.0.0.0:443\n"...), 0o640)
	os.Remove(filepath.Join(etc, "acmechallenge"))
	if _, out, _ := runCmd(t, "", "--config", etc, "config"); !strings.Contains(out, "acme       challenge tls-alpn-01\n") ||
		strings.Contains(out, "note:") {
		t.Errorf("webs on 443 and nothing on port 80: want tls-alpn-01, no note:\n%s", out)
	}
}
