package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"postern/policy"
)

// postern quota get shows what a Maildir holds against the account's
// quota (the account's field over maildirsize), and recalc repairs a
// maildirsize that drifted from the messages on disk.
func TestQuotaGetAndRecalc(t *testing.T) {
	dir := t.TempDir()
	if err := policy.Init(dir, "example.test", "mail.example.test", false); err != nil {
		t.Fatal(err)
	}
	etc := filepath.Join(dir, "etc")
	for _, u := range [][]string{{"alice@example.test", "--quota", "10000S,10C"}, {"bob@example.test"}} {
		args := append([]string{"--config", etc, "user", "add", u[0], "--password", "pw"}, u[1:]...)
		if code, _, errb := runCmd(t, "", args...); code != 0 {
			t.Fatalf("user add %v: %d %s", u, code, errb)
		}
	}
	alice := filepath.Join(dir, "data", "mail", "example.test", "alice", "Maildir")
	bob := filepath.Join(dir, "data", "mail", "example.test", "bob", "Maildir")
	for i, size := range []int{1000, 2000, 500} {
		// Three messages in alice's INBOX and one in a folder; Trash is not counted.
		if code, _, errb := runCmd(t, strings.Repeat("x", size), "--config", etc, "deliverquota", alice); code != 0 {
			t.Fatalf("deliverquota %d: %d %s", i, code, errb)
		}
	}
	if code, _, errb := runCmd(t, "", "--config", etc, "maildirmake", "-f", "Trash", alice); code != 0 {
		t.Fatalf("maildirmake Trash: %s", errb)
	}
	os.WriteFile(filepath.Join(alice, ".Trash", "cur", "1.2.host,S=4000:2,S"), []byte(strings.Repeat("y", 4000)), 0o600)

	get := func(args ...string) []quotaReport {
		t.Helper()
		code, out, errb := runCmd(t, "", append([]string{"--config", etc, "quota"}, args...)...)
		if code != 0 {
			t.Fatalf("quota %v: %d %s", args, code, errb)
		}
		var r []quotaReport
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("quota %v: %v %q", args, err, out)
		}
		return r
	}
	r := get("get", "--json", "alice@example.test")
	if len(r) != 1 || r[0].Bytes != 3500 || r[0].Messages != 3 || r[0].BytesLimit != 10000 || r[0].MessagesLimit != 10 || r[0].Percent != 35 {
		t.Fatalf("get alice: %+v", r)
	}

	// Messages removed behind the servers' backs: maildirsize still
	// counts them until recalc.
	files, _ := filepath.Glob(filepath.Join(alice, "new", "*"))
	os.Remove(files[0])
	if r := get("get", "--json", "alice@example.test"); r[0].Messages != 3 {
		t.Fatalf("get before recalc should read maildirsize's count: %+v", r)
	}
	if r := get("recalc", "--json", "-A"); len(r) != 2 || r[0].Messages+r[1].Messages != 2 {
		t.Fatalf("recalc -A: %+v", r)
	}
	ms, _ := os.ReadFile(filepath.Join(alice, "maildirsize"))
	if lines := strings.Split(strings.TrimSpace(string(ms)), "\n"); len(lines) != 2 || lines[0] != "10000S,10C" {
		t.Errorf("maildirsize after recalc: %q", ms)
	}
	// bob has no quota: recalc counts and writes nothing.
	if _, err := os.Stat(filepath.Join(bob, "maildirsize")); err == nil {
		t.Error("recalc made a maildirsize for an account without a quota")
	}
	code, out, _ := runCmd(t, "", "--config", etc, "quota", "get", "alice@example.test")
	for _, want := range []string{"alice@example.test", "STORAGE", "MESSAGE"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("get's table lacks %q: %d\n%s", want, code, out)
		}
	}
	if !regexpLine(out, `alice@example.test\s+MESSAGE\s+2\s+10\s+20`) {
		t.Errorf("get's MESSAGE line:\n%s", out)
	}
	if code, _, errb := runCmd(t, "", "--config", etc, "quota", "get", "nobody@example.test"); code != 67 || !strings.Contains(errb, "no such account") {
		t.Errorf("unknown account: %d %q", code, errb)
	}
	for _, bad := range [][]string{{"quota"}, {"quota", "frob"}, {"quota", "get"}, {"quota", "get", "-A", "alice@example.test"}} {
		if code, _, _ := runCmd(t, "", append([]string{"--config", etc}, bad...)...); code != 64 {
			t.Errorf("%v: exit %d, want 64", bad, code)
		}
	}
}
