package server

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
)

// needTool finds a real client program. CI installs them (.ci/run), so there
// a missing tool is a failure; on a developer machine the test is skipped
// with a note saying what to install.
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not installed; .ci/run should have installed it", name)
		}
		t.Skipf("%s not installed (apt-get install %s)", name, name)
	}
	return p
}

func runTool(t *testing.T, timeout time.Duration, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	err := cmd.Run()
	return out.String(), err
}

func hostPort(t *testing.T, addr string) (string, string) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return host, port
}

// The new user's path, with real clients: swaks sends, Python's imaplib
// reads it over IMAP, fetchmail downloads it over POP3.
func TestRealClients(t *testing.T) {
	swaks := needTool(t, "swaks")
	python := needTool(t, "python3")
	fetchmail := needTool(t, "fetchmail")
	h := newHarness(t)

	out, err := runTool(t, time.Minute, swaks, "--server", h.addr("smtp"), "--to", h.user, "--from", "bob@example.net",
		"--helo", "client.example.net", "--header", "Subject: sent by swaks", "--body", "Hello from swaks.")
	if err != nil {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	// swaks exits non-zero on any failure; its transcript shows the 250
	// after the message ("<-  250 ...").
	if !strings.Contains(out, "<-  250") {
		t.Fatalf("swaks transcript has no 250:\n%s", out)
	}

	host, port := hostPort(t, h.addr("imap"))
	script := fmt.Sprintf(`
import imaplib, sys
m = imaplib.IMAP4(%q, %s)
m.login(%q, %q)
typ, data = m.select("INBOX")
assert typ == "OK", (typ, data)
n = int(data[0])
typ, data = m.fetch(str(n), "(RFC822 FLAGS)")
assert typ == "OK", (typ, data)
body = data[0][1].decode()
assert "Subject: sent by swaks" in body, body
assert "Hello from swaks." in body, body
typ, data = m.store(str(n), "+FLAGS", "(\\Flagged)")
assert typ == "OK", (typ, data)
typ, data = m.search(None, "FLAGGED")
assert data[0].split() == [str(n).encode()], data
m.logout()
print("imaplib ok", n)
`, host, port, h.user, h.pass)
	out, err = runTool(t, time.Minute, python, "-c", script)
	if err != nil || !strings.Contains(out, "imaplib ok 1") {
		t.Fatalf("python imaplib: %v\n%s", err, out)
	}

	host, port = hostPort(t, h.addr("pop3"))
	dir := t.TempDir()
	mbox := filepath.Join(dir, "fetched")
	rc := filepath.Join(dir, "fetchmailrc")
	rcText := fmt.Sprintf("set no bouncemail\npoll %s protocol POP3 port %s auth password\n  user %q there with password %q is \"root\" here\n  no sslcertck\n  keep\n  mda \"/bin/sh -c 'cat >> %s'\"\n",
		host, port, h.user, h.pass, mbox)
	if err := os.WriteFile(rc, []byte(rcText), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = runTool(t, time.Minute, fetchmail, "-f", rc, "--nosyslog", "-v", "--pidfile", filepath.Join(dir, "pid"))
	if err != nil {
		t.Fatalf("fetchmail: %v\n%s", err, out)
	}
	got, err := os.ReadFile(mbox)
	if err != nil || !bytes.Contains(got, []byte("Subject: sent by swaks")) || !bytes.Contains(got, []byte("Hello from swaks.")) {
		t.Fatalf("fetchmail did not deliver the message: %v\n%s\n--- fetchmail said:\n%s", err, got, out)
	}
}
