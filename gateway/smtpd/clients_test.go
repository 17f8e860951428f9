package smtpd

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Real third-party clients against the engine: swaks (the admin's SMTP
// Swiss army knife) and Python's smtplib. Skipped when not installed.

func TestSwaks(t *testing.T) {
	swaks, err := exec.LookPath("swaks")
	if err != nil {
		t.Skip("swaks not installed")
	}
	checkGoroutines(t)
	b := &testBackend{}
	o := testOptions(t)
	o.TLSConfig = testTLSConfig(t)
	_, addr := startServer(t, b, o)
	port := hostPort(addr)
	run := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, swaks, append([]string{"--server", "127.0.0.1", "--port", port, "--helo", "swaks.example.org"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("swaks %v: %v\n%s", args, err, out)
		}
		return string(out)
	}

	// STARTTLS, AUTH PLAIN, a body with a dot line.
	out := run("--tls", "--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "secret",
		"--from", "alice@example.test", "--to", "bob@example.test", "--body", "line one\n.\n..two\n")
	if !strings.Contains(out, "235 2.7.0 Authentication successful") || !strings.Contains(out, "250 2.0.0 Ok") {
		t.Fatalf("swaks transcript:\n%s", out)
	}
	m, _ := b.lastMessage()
	if !strings.Contains(string(m.Data), "\r\nline one\r\n.\r\n..two\r\n") {
		t.Fatalf("stored %q", m.Data)
	}
	if info := b.lastInfo(); info.AuthUser != "alice" || info.TLS == nil || info.HELO != "swaks.example.org" {
		t.Fatalf("info %+v", info)
	}

	// PIPELINING, AUTH LOGIN.
	out = run("--tls", "--pipeline", "--auth", "LOGIN", "--auth-user", "alice", "--auth-password", "secret",
		"--from", "alice@example.test", "--to", "c@example.test,d@example.test")
	if !strings.Contains(out, "250 2.0.0 Ok") {
		t.Fatalf("swaks transcript:\n%s", out)
	}
	m, _ = b.lastMessage()
	if strings.Join(m.Rcpts, ",") != "c@example.test,d@example.test" {
		t.Fatalf("recipients %v", m.Rcpts)
	}
	if b.lastInfo().PipeliningViolation {
		t.Fatal("swaks --pipeline flagged as a pipelining violation")
	}

	// A relay attempt is refused in the session.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rout, err := exec.CommandContext(ctx, swaks, "--server", "127.0.0.1", "--port", port, "--from", "x@example.org", "--to", "victim@elsewhere.example").CombinedOutput()
	if err == nil || !strings.Contains(string(rout), "554 5.7.1 <victim@elsewhere.example>: relay access denied") {
		t.Fatalf("relay attempt: %v\n%s", err, rout)
	}
}

func TestPythonSmtplib(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed")
	}
	checkGoroutines(t)
	b := &testBackend{}
	o := testOptions(t)
	o.TLSConfig = testTLSConfig(t)
	_, addr := startServer(t, b, o)
	script := `
import smtplib, ssl, sys
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=20)
s.ehlo("py.example.org")
s.starttls(context=ctx)
s.ehlo("py.example.org")
s.login("alice", "secret")
s.sendmail("alice@example.test", ["rcpt@example.test"], "Subject: py\r\n\r\n.dot\r\nend\r\n",
           mail_options=["SMTPUTF8"], rcpt_options=["NOTIFY=FAILURE"])
try:
    s.sendmail("alice@example.test", ["x@elsewhere.example"], "x")
    sys.exit("relay accepted")
except smtplib.SMTPRecipientsRefused as e:
    code, msg = e.recipients["x@elsewhere.example"]
    assert code == 554, code
s.quit()
`
	dir := t.TempDir()
	path := filepath.Join(dir, "send.py")
	if err := os.WriteFile(path, []byte(script), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, py, path, hostPort(addr)).CombinedOutput()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	m, ok := b.lastMessage()
	if !ok || string(m.Data) != "Subject: py\r\n\r\n.dot\r\nend\r\n" || !m.MailParams.SMTPUTF8 || m.RcptParams[0].Notify[0] != "FAILURE" {
		t.Fatalf("stored %+v", m)
	}
}
