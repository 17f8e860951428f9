package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"postern/filters"
	"postern/policy"
	"postern/server"
)

// postern reputation show explains a client's score from the history the
// server keeps (the embedded store here), and reset forgets it.
func TestReputationShowAndReset(t *testing.T) {
	etc, _ := refusedForty(t, &filters.Session{ClientIP: netip.MustParseAddr("203.0.113.9"), From: "x@news.example",
		Results: []filters.Result{{Filter: "spf", Vars: map[string]string{"SPF": "pass", "SPF_DOMAIN": "news.example"}}}})

	code, out, errb := runCmd(t, "", "--config", etc, "reputation", "show", "203.0.113.9", "News.Example.")
	if code != 0 {
		t.Fatalf("show: exit %d\n%s%s", code, out, errb)
	}
	for _, want := range []string{
		"ip 203.0.113.9: bad, score +4.",
		"network 203.0.113.0/24: bad, score +4.",
		"domain news.example: bad",
		"outcomes (decayed, half-life 7d): good 0.0, bad 40.0",
		"bad share p = (bad+1)/(n+2) = 41.0/42.0 = 0.98",
		"confidence tanh(n/evidence) = tanh(40.0/10) = 1.00",
		"at or above the reject limit 4: MAIL is refused",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("show lacks %q:\n%s", want, out)
		}
	}
	if code, out, _ := runCmd(t, "", "--config", etc, "reputation", "reset", "203.0.113.9"); code != 0 || !strings.Contains(out, "ip 203.0.113.9: history forgotten") {
		t.Fatalf("reset: %d %s", code, out)
	}
	_, out, _ = runCmd(t, "", "--config", etc, "reputation", "show", "203.0.113.9")
	if !strings.Contains(out, "ip 203.0.113.9: new, score +0.00") || !strings.Contains(out, "network 203.0.113.0/24: bad") {
		t.Fatalf("after reset:\n%s", out)
	}
	if code, _, errb := runCmd(t, "", "--config", etc, "reputation", "show", "not a thing"); code != 65 || !strings.Contains(errb, "want an IP address") {
		t.Fatalf("bad target: %d %s", code, errb)
	}
	if code, _, _ := runCmd(t, "", "--config", etc, "reputation", "frobnicate"); code != 64 {
		t.Fatalf("unknown subcommand: %d", code)
	}
}

// postern config reports a mistake in the reputation setting with its
// file and line, as the server would refuse it.
func TestConfigChecksReputation(t *testing.T) {
	dir := t.TempDir()
	if err := policy.Init(dir, "example.test", "mail.example.test", false); err != nil {
		t.Fatal(err)
	}
	etc := filepath.Join(dir, "etc")
	os.WriteFile(filepath.Join(etc, "filters"), []byte("spf\nreputation\n"), 0o640)
	os.WriteFile(filepath.Join(etc, "reputation"), []byte("halflife 7d\nmaxscore lots\n"), 0o640)
	code, out, errb := runCmd(t, "", "--config", etc, "config")
	if code != 78 || !strings.Contains(out+errb, "reputation:2: reputation: maxscore \"lots\": want a number") {
		t.Fatalf("config with a bad reputation line: exit %d\n%s%s", code, out, errb)
	}
}

// With the server running, it holds the embedded store; postern
// reputation asks it over the control socket instead, with the same
// output, and a reset takes effect in the server at once.
func TestReputationWhileServerRuns(t *testing.T) {
	etc, cfg := refusedForty(t, &filters.Session{ClientIP: netip.MustParseAddr("198.51.100.7")})

	srv, err := server.New(etc, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	// The store is the server's now: opening it here must fail, so the
	// answers below can only have come through the server.
	if _, st, err := server.OpenReputation(cfg, slog.New(slog.DiscardHandler)); err == nil {
		st.Close()
		t.Fatal("opened the embedded store beside the running server")
	}

	code, out, errb := runCmd(t, "", "--config", etc, "reputation", "show", "198.51.100.7")
	if code != 0 || !strings.Contains(out, "ip 198.51.100.7: bad, score +4.") || !strings.Contains(out, "good 0.0, bad 40.0") {
		t.Fatalf("show while running: exit %d\n%s%s", code, out, errb)
	}
	if code, out, _ := runCmd(t, "", "--config", etc, "reputation", "reset", "198.51.100.7"); code != 0 || !strings.Contains(out, "ip 198.51.100.7: history forgotten") {
		t.Fatalf("reset while running: %d %s", code, out)
	}
	if _, out, _ := runCmd(t, "", "--config", etc, "reputation", "show", "198.51.100.7"); !strings.Contains(out, "ip 198.51.100.7: new, score +0.00") {
		t.Fatalf("after reset while running:\n%s", out)
	}
	if code, _, errb := runCmd(t, "", "--config", etc, "reputation", "show", "not a thing"); code != 65 || !strings.Contains(errb, "want an IP address") {
		t.Fatalf("bad target while running: %d %s", code, errb)
	}
	reply, err := server.Control(context.Background(), cfg.DataDir, server.ControlRequest{Command: "rm -rf"})
	if err != nil || reply.Status != 64 || !strings.Contains(reply.Stderr, "unknown command") {
		t.Fatalf("unknown control command: %+v %v", reply, err)
	}

	for _, junk := range []string{"not json\n", "{\"command\": 7}\n", strings.Repeat("x", 70<<10) + "\n"} {
		c, err := net.Dial("unix", filepath.Join(cfg.DataDir, server.ControlSocketName))
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte(junk))
		var r server.ControlReply
		err = json.NewDecoder(c).Decode(&r)
		c.Close()
		if err != nil || r.Status != 64 || !strings.Contains(r.Stderr, "bad request") {
			t.Fatalf("%.20q: %+v %v", junk, r, err)
		}
	}

	// Stopped, the command opens the store itself again.
	srv.Shutdown(context.Background())
	if code, out, errb := runCmd(t, "", "--config", etc, "reputation", "show", "198.51.100.7"); code != 0 || !strings.Contains(out, "new, score +0.00") {
		t.Fatalf("show after stop: %d %s%s", code, out, errb)
	}
}

// refusedForty makes an installation (reputation limit 4, SMTP on a free
// port) whose embedded store remembers 40 refusals of sess's client.
func refusedForty(t *testing.T, sess *filters.Session) (etc string, cfg *policy.Config) {
	t.Helper()
	dir := t.TempDir()
	if err := policy.Init(dir, "example.test", "mail.example.test", false); err != nil {
		t.Fatal(err)
	}
	etc = filepath.Join(dir, "etc")
	os.WriteFile(filepath.Join(etc, "reputation"), []byte("reject 4\n"), 0o640)
	os.WriteFile(filepath.Join(etc, "listen"), []byte("smtp 127.0.0.1:0\n"), 0o640)
	cfg, err := policy.Load(etc)
	if err != nil {
		t.Fatal(err)
	}
	rep, store, err := server.OpenReputation(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	for range 40 {
		rep.Outcome(context.Background(), sess, filters.Outcome{Stage: filters.StageRcpt, Verdict: filters.Reject, Filter: "dnsbl"})
	}
	return etc, cfg
}
