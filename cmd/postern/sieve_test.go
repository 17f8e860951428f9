package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"postern/policy"
)

func TestSieveCheckAndTest(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.sieve")
	bad := filepath.Join(dir, "bad.sieve")
	os.WriteFile(good, []byte("require [\"fileinto\", \"vacation\"];\nif header :contains \"subject\" \"report\" { fileinto \"Reports\"; }\nvacation :days 1 \"Away.\";\n"), 0o644)
	os.WriteFile(bad, []byte("require \"fileinto\";\nif header :contains \"subject\" { fileinto \"x\"; }\n"), 0o644)
	if code, out, errb := runCmd(t, "", "sieve", "check", good); code != 0 || out != "" {
		t.Fatalf("check good: %d %q %q", code, out, errb)
	}
	code, out, _ := runCmd(t, "", "sieve", "check", good, bad)
	if code != 1 || !strings.HasPrefix(out, bad+":2:") {
		t.Fatalf("check bad: %d %q, want FILE:LINE:COL", code, out)
	}
	msg := "From: bob@example.org\nTo: user@example.test\nSubject: monthly report\nMessage-ID: <1@example.org>\n\nnumbers\n"
	code, out, errb := runCmd(t, msg, "sieve", "test", "-f", "bob@example.org", good)
	if code != 0 || !strings.Contains(out, "fileinto Reports\n") || !strings.Contains(out, "vacation to=bob@example.org") || !strings.Contains(out, "  | Auto-Submitted: auto-replied") {
		t.Fatalf("test: %d %q %q", code, out, errb)
	}
	if strings.Contains(out, "implicit keep") {
		t.Fatalf("fileinto cancels the implicit keep: %q", out)
	}
	// A bounce gets no vacation reply.
	if _, out, _ := runCmd(t, msg, "sieve", "test", "-f", "", good); strings.Contains(out, "vacation") {
		t.Fatalf("vacation to the null sender: %q", out)
	}
}

func TestSieveStorageCommands(t *testing.T) {
	dir := t.TempDir()
	if err := policy.Init(dir, "example.test", "mail.example.test", false); err != nil {
		t.Fatal(err)
	}
	etc := filepath.Join(dir, "etc")
	if code, _, errb := runCmd(t, "", "--config", etc, "user", "add", "alice@example.test", "--password", "pw"); code != 0 {
		t.Fatal(errb)
	}
	os.WriteFile(filepath.Join(etc, "sievemaxscripts"), []byte("2\n"), 0o644)
	sv := func(stdin string, args ...string) (int, string, string) {
		return runCmd(t, stdin, append([]string{"--config", etc, "sieve"}, args...)...)
	}
	if code, _, errb := sv("keep;\n", "put", "-a", "alice@example.test", "main"); code != 0 {
		t.Fatalf("put: %s", errb)
	}
	if code, _, errb := sv("require \"fileinto\";\nfileinto :bogus \"x\";\n", "put", "alice@example.test", "broken"); code != 1 || !strings.Contains(errb, "broken:2:") {
		t.Fatalf("put of a bad script: %d %q", code, errb)
	}
	if code, _, _ := sv("discard;\n", "put", "alice@example.test", "other"); code != 0 {
		t.Fatal("put other")
	}
	if code, _, errb := sv("discard;\n", "put", "alice@example.test", "third"); code != 1 || !strings.Contains(errb, "too many scripts") {
		t.Fatalf("sievemaxscripts: %d %q", code, errb)
	}
	if _, out, _ := sv("", "list", "alice@example.test"); out != "main  ACTIVE\nother\n" {
		t.Fatalf("list %q", out)
	}
	link, err := os.Readlink(filepath.Join(dir, "data", "mail", "example.test", "alice", ".dovecot.sieve"))
	if err != nil || link != "sieve/main.sieve" {
		t.Fatalf("active link %q %v", link, err)
	}
	if code, _, errb := sv("", "delete", "alice@example.test", "main"); code != 1 || !strings.Contains(errb, "active") {
		t.Fatalf("delete of the active script: %d %q", code, errb)
	}
	if code, _, _ := sv("", "rename", "alice@example.test", "other", "spare"); code != 0 {
		t.Fatal("rename")
	}
	if _, out, _ := sv("", "get", "alice@example.test", "spare"); out != "discard;\n" {
		t.Fatalf("get %q", out)
	}
	if code, _, _ := sv("", "deactivate", "alice@example.test"); code != 0 {
		t.Fatal("deactivate")
	}
	if code, _, _ := sv("", "delete", "alice@example.test", "main"); code != 0 {
		t.Fatal("delete after deactivate")
	}
	if code, _, _ := sv("", "list", "nobody@example.test"); code != 67 {
		t.Fatalf("unknown account: exit %d, want 67", code)
	}
	if code, _, _ := sv("", "get", "alice@example.test", "../../etc/passwd"); code != 1 {
		t.Fatalf("hostile name: exit %d, want 1", code)
	}
	if code, _, _ := sv("", "list"); code != 64 {
		t.Fatalf("no account: exit %d, want 64", code)
	}
}
