package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"postern/filters/rejectlog"
	"postern/policy"
)

// postern rejects reads the server's rejection log: --since and --until
// bound it by a duration back from now or a UTC time, and the other
// conditions narrow it.
func TestRejectsCommand(t *testing.T) {
	dir := t.TempDir()
	if err := policy.Init(dir, "example.test", "mail.example.test", false); err != nil {
		t.Fatal(err)
	}
	etc := filepath.Join(dir, "etc")
	cfg, err := policy.Load(etc)
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Dir(rejectLogPath(cfg)), 0o750)
	l, err := rejectlog.Open(rejectLogPath(cfg), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	day := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	for _, r := range []rejectlog.Record{
		{Time: day.Add(8 * time.Hour), Client: "203.0.113.7", From: "early@spam.example", Stage: "RCPT", Reply: "550 5.7.1 listed"},
		{Time: day.Add(9 * time.Hour), Client: "203.0.113.8", From: "nine@spam.example", Stage: "RCPT", Reply: "550 5.7.1 listed"},
		{Time: time.Now().Add(-time.Minute), Client: "198.51.100.2", From: "now@spam.example", Stage: "MAIL", Reply: "451 4.7.1 greylisted"},
	} {
		if err := l.Add(r); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	senders := func(args ...string) string {
		t.Helper()
		code, out, errb := runCmd(t, "", append([]string{"--config", etc, "rejects", "--json"}, args...)...)
		if code != 0 {
			t.Fatalf("rejects %v: %d %s", args, code, errb)
		}
		var got []string
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if i := strings.Index(l, `"from":"`); i >= 0 {
				got = append(got, strings.SplitN(l[i+8:], `"`, 2)[0])
			}
		}
		return strings.Join(got, " ")
	}
	if got := senders(); got != "early@spam.example nine@spam.example now@spam.example" {
		t.Errorf("all: %q", got)
	}
	if got := senders("--since", "1h"); got != "now@spam.example" {
		t.Errorf("--since 1h: %q", got)
	}
	if got := senders("--since", "2026-11-25 08:30", "--until", "2026-11-25T09:00:00Z"); got != "nine@spam.example" {
		t.Errorf("a UTC window: %q", got)
	}
	if got := senders("--until", "2026-11-25", "--client", "203.0.113."); got != "" {
		t.Errorf("--until midnight: %q", got)
	}
	for _, bad := range []string{"yesterday", "-1h"} {
		if code, _, errb := runCmd(t, "", "--config", etc, "rejects", "--until", bad); code != 64 || !strings.Contains(errb, "--until") {
			t.Errorf("--until %q: %d %q", bad, code, errb)
		}
	}
}
