package proxy_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// python3 finds Python for the real-client tests: missing, the test is
// skipped, except in CI (.ci/run installs python3), where it fails.
func python3(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("python3")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("python3 is missing; .ci/run installs it")
		}
		t.Skip("python3 not installed")
	}
	return p
}

// runPython runs script with args and returns its output.
func runPython(t *testing.T, script string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, python3(t), append([]string{"-c", script}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	return string(out)
}

// TestPythonClientsThroughProxy: Python's imaplib and poplib, real
// clients, at the front see and change alice's mail on the backend.
func TestPythonClientsThroughProxy(t *testing.T) {
	cl := newCluster(t, nil)
	cl.back.deliver("alice", "hello from the backend")
	cl.back.deliver("alice", "second")
	host, port := splitAddr(t, cl.front.imapAddr)
	out := runPython(t, `
import imaplib, sys
m = imaplib.IMAP4(sys.argv[1], int(sys.argv[2]))
m.login("alice", "secret")
typ, data = m.select("INBOX")
print("EXISTS", data[0].decode())
typ, data = m.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
print(data[0][1].decode().strip())
m.store("2", "+FLAGS", "\\Deleted")
m.expunge()
m.logout()
`, host, port)
	if !strings.Contains(out, "EXISTS 2") || !strings.Contains(out, "Subject: hello from the backend") {
		t.Fatalf("imaplib saw:\n%s", out)
	}
	if n := cl.back.countMessages("alice"); n != 1 {
		t.Fatalf("backend has %d messages after imaplib's EXPUNGE, want 1", n)
	}

	host, port = splitAddr(t, cl.front.pop3Addr)
	out = runPython(t, `
import poplib, sys
p = poplib.POP3(sys.argv[1], int(sys.argv[2]))
p.user("alice")
p.pass_("secret")
print("STAT", p.stat()[0])
resp, lines, octets = p.retr(1)
print(b"\n".join(lines).decode())
p.dele(1)
p.quit()
`, host, port)
	if !strings.Contains(out, "STAT 1") || !strings.Contains(out, "Subject: hello from the backend") {
		t.Fatalf("poplib saw:\n%s", out)
	}
	waitFor(t, "the backend's POP3 session to end", func() bool { return cl.back.pop3.Stats().ActiveSessions == 0 })
	if n := cl.back.countMessages("alice"); n != 0 {
		t.Fatalf("backend has %d messages after poplib's DELE and QUIT, want 0", n)
	}
}

func splitAddr(t *testing.T, addr string) (string, string) {
	t.Helper()
	i := strings.LastIndexByte(addr, ':')
	return addr[:i], addr[i+1:]
}
