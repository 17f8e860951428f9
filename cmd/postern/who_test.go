package main

import (
	"bufio"
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"postern/policy"
	"postern/server"
)

// postern who and postern kick, as an admin types them, against a
// running server with one IMAP session.
func TestWhoAndKickCommands(t *testing.T) {
	dir := t.TempDir()
	if err := policy.Init(dir, "example.test", "mail.example.test", false); err != nil {
		t.Fatal(err)
	}
	etc := filepath.Join(dir, "etc")
	os.WriteFile(filepath.Join(etc, "listen"), []byte("imap 127.0.0.1:0\n"), 0o640)
	if code, _, errb := runCmd(t, "pw\npw\n", "--config", etc, "user", "add", "alice@example.test", "--password", "pw"); code != 0 {
		t.Fatalf("user add: %d %s", code, errb)
	}
	if code, _, errb := runCmd(t, "", "--config", etc, "who"); code != 69 || !strings.Contains(errb, "no running server") {
		t.Fatalf("who without a server: %d %q", code, errb)
	}
	srv, err := server.New(etc, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	c, err := net.DialTimeout("tcp", srv.Addrs("imap")[0].String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReader(c)
	r.ReadString('\n')
	c.Write([]byte("a LOGIN alice@example.test pw\r\n"))
	if l, _ := r.ReadString('\n'); !strings.HasPrefix(l, "a OK") {
		t.Fatalf("login: %q", l)
	}

	code, out, _ := runCmd(t, "", "--config", etc, "who")
	if code != 0 || !strings.Contains(out, "USER") || !regexpLine(out, `alice@example.test\s+1\s+imap\s+\(127.0.0.1\)`) {
		t.Fatalf("who: %d\n%s", code, out)
	}
	code, out, _ = runCmd(t, "", "--config", etc, "who", "-1", "alice@*")
	if code != 0 || !regexpLine(out, `alice@example.test\s+imap\s+127.0.0.1:\d+\s+127.0.0.1:\d+\s+no\s+\d{4}-`) {
		t.Fatalf("who -1: %d\n%s", code, out)
	}
	if code, out, _ = runCmd(t, "", "--config", etc, "who", "--json", "bob*"); code != 0 || strings.TrimSpace(out) != "[]" {
		t.Fatalf("who --json bob*: %d %q", code, out)
	}
	if code, _, _ := runCmd(t, "", "--config", etc, "kick"); code != 64 {
		t.Errorf("kick without a mask: %d", code)
	}
	if code, _, _ := runCmd(t, "", "--config", etc, "who", "x", "not-an-ip"); code != 64 {
		t.Errorf("who with a bad address: %d", code)
	}
	code, out, _ = runCmd(t, "", "--config", etc, "kick", "ALICE@example.test")
	if code != 0 || !strings.HasPrefix(out, "kicked alice@example.test imap 127.0.0.1:") {
		t.Fatalf("kick: %d %q", code, out)
	}
	if l, _ := r.ReadString('\n'); l != "* BYE disconnected by the administrator\r\n" {
		t.Errorf("the session was told %q", l)
	}
	if code, _, errb := runCmd(t, "", "--config", etc, "kick", "alice@example.test"); code != 1 || !strings.Contains(errb, "no session matched") {
		t.Errorf("kick with nothing left: %d %q", code, errb)
	}
}

// regexpLine reports whether some line of out matches pattern.
func regexpLine(out, pattern string) bool {
	re := regexp.MustCompile(pattern)
	for _, l := range strings.Split(out, "\n") {
		if re.MatchString(l) {
			return true
		}
	}
	return false
}
