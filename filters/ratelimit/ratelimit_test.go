package ratelimit

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"postern/filters"
	"postern/filters/state"
	"postern/filters/state/statetest"
	"postern/policy"
)

func rules(t *testing.T, text string) Config {
	t.Helper()
	var lines []policy.Line
	for i, l := range strings.Split(text, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, policy.Line{File: "ratelimit", Num: i + 1, Text: l})
		}
	}
	cfg, err := ParseConfig(lines)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func newLimiter(t *testing.T, s state.Store, text string) *Limiter {
	t.Helper()
	l, err := New(Options{Config: rules(t, text), Store: s})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func sess(ip, from, user string) *filters.Session {
	return &filters.Session{ID: "t", ClientIP: netip.MustParseAddr(ip), From: from, AuthUser: user}
}

func wantPass(t *testing.T, r filters.Result) {
	t.Helper()
	if r.Verdict != filters.NoOpinion {
		t.Fatalf("got %v: %s", r.Verdict, r.Reason)
	}
}

func wantLimited(t *testing.T, r filters.Result, what string) {
	t.Helper()
	if r.Verdict != filters.Tempfail || r.Code != 451 || r.Enhanced != "4.7.0" || r.Vars["RATELIMIT"] != what {
		t.Fatalf("got %v %d %s RATELIMIT=%q (%s); want 451 4.7.0 for %s", r.Verdict, r.Code, r.Enhanced, r.Vars["RATELIMIT"], r.Reason, what)
	}
	if !strings.Contains(strings.ToLower(r.Message), "rate limit exceeded") {
		t.Fatalf("message %q does not say the rate limit was exceeded", r.Message)
	}
}

func TestClientNetworkMessages(t *testing.T) {
	statetest.Each(t, func(t *testing.T, s state.Store) {
		ctx := context.Background()
		l := newLimiter(t, s, "client /24 messages 3/1h")
		for i := 0; i < 3; i++ {
			wantPass(t, l.CheckMail(ctx, sess("192.0.2."+string(rune('1'+i)), "a@example.org", "")))
		}
		r := l.CheckMail(ctx, sess("192.0.2.200", "b@example.org", ""))
		wantLimited(t, r, "messages")
		if !strings.Contains(r.Message, "client 192.0.2.0/24") || !strings.Contains(r.Message, "limit 3 per 1h") {
			t.Fatalf("message does not name the limit: %q", r.Message)
		}
		if r.Vars["RATELIMIT_RULE"] != "client /24 messages 3/1h" {
			t.Fatalf("RATELIMIT_RULE=%q", r.Vars["RATELIMIT_RULE"])
		}
		wantPass(t, l.CheckMail(ctx, sess("192.0.3.1", "a@example.org", "")))
		// IPv6 clients are grouped per /64 by "/24".
		for i := 0; i < 3; i++ {
			wantPass(t, l.CheckMail(ctx, sess("2001:db8:0:1::"+string(rune('a'+i)), "a@example.org", "")))
		}
		wantLimited(t, l.CheckMail(ctx, sess("2001:db8:0:1:ffff::1", "a@example.org", "")), "messages")
		wantPass(t, l.CheckMail(ctx, sess("2001:db8:0:2::1", "a@example.org", "")))
	})
}

func TestConnectionsAndRecipients(t *testing.T) {
	statetest.Each(t, func(t *testing.T, s state.Store) {
		ctx := context.Background()
		l := newLimiter(t, s, "client * connections 2/1m\nclient /24,/48 rcpts 3/1h\n")
		wantPass(t, l.CheckConnect(ctx, sess("198.51.100.1", "", "")))
		wantPass(t, l.CheckConnect(ctx, sess("198.51.100.1", "", "")))
		wantLimited(t, l.CheckConnect(ctx, sess("198.51.100.1", "", "")), "connections")
		wantPass(t, l.CheckConnect(ctx, sess("198.51.100.2", "", "")))
		// Connections and recipients are separate counters.
		for i := 0; i < 3; i++ {
			wantPass(t, l.CheckRcpt(ctx, sess("198.51.100.1", "a@x.example", ""), "r@example.net"))
		}
		wantLimited(t, l.CheckRcpt(ctx, sess("198.51.100.9", "a@x.example", ""), "r@example.net"), "rcpts")
	})
}

func TestSenderAndAuthRules(t *testing.T) {
	statetest.Each(t, func(t *testing.T, s state.Store) {
		ctx := context.Background()
		l := newLimiter(t, s, `
sender @* messages 2/1h
sender ceo@example.com messages 1/1h
auth * rcpts 2/1d
auth bulk rcpts 1/1d
`)
		wantPass(t, l.CheckMail(ctx, sess("192.0.2.1", "a@lists.example", "")))
		wantPass(t, l.CheckMail(ctx, sess("203.0.113.1", "B@Lists.Example", "")))
		wantLimited(t, l.CheckMail(ctx, sess("198.51.100.1", "c@lists.example", "")), "messages")
		wantPass(t, l.CheckMail(ctx, sess("192.0.2.1", "a@other.example", "")))
		// The null sender has no domain: "@*" does not count it.
		for i := 0; i < 5; i++ {
			wantPass(t, l.CheckMail(ctx, sess("192.0.2.1", "", "")))
		}
		// A specific address, on top of its domain's counter.
		wantPass(t, l.CheckMail(ctx, sess("192.0.2.1", "ceo@example.com", "")))
		r := l.CheckMail(ctx, sess("192.0.2.1", "CEO@example.com", ""))
		wantLimited(t, r, "messages")
		if !strings.Contains(r.Message, "sender ceo@example.com") {
			t.Fatalf("message %q", r.Message)
		}
		// Authenticated users, each counted apart; unauthenticated never.
		for i := 0; i < 2; i++ {
			wantPass(t, l.CheckRcpt(ctx, sess("192.0.2.1", "a@x.example", "alice"), "r@example.net"))
			wantPass(t, l.CheckRcpt(ctx, sess("192.0.2.1", "a@x.example", ""), "r@example.net"))
		}
		r = l.CheckRcpt(ctx, sess("192.0.2.7", "a@x.example", "alice"), "r@example.net")
		wantLimited(t, r, "rcpts")
		if !strings.Contains(r.Message, "user alice") {
			t.Fatalf("message %q", r.Message)
		}
		wantPass(t, l.CheckRcpt(ctx, sess("192.0.2.1", "a@x.example", "bulk"), "r@example.net"))
		wantLimited(t, l.CheckRcpt(ctx, sess("192.0.2.1", "a@x.example", "bulk"), "r@example.net"), "rcpts")
	})
}

func TestWindowExpires(t *testing.T) {
	statetest.Each(t, func(t *testing.T, s state.Store) {
		ctx := context.Background()
		l := newLimiter(t, s, "client * messages 1/1s")
		start := time.Now()
		wantPass(t, l.CheckMail(ctx, sess("192.0.2.1", "a@x.example", "")))
		wantLimited(t, l.CheckMail(ctx, sess("192.0.2.1", "a@x.example", "")), "messages")
		deadline := start.Add(5 * time.Second)
		for {
			time.Sleep(100 * time.Millisecond)
			if r := l.CheckMail(ctx, sess("192.0.2.1", "a@x.example", "")); r.Verdict == filters.NoOpinion {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the window never ended")
			}
		}
		if el := time.Since(start); el < time.Second {
			t.Fatalf("a new window began after %v; the window is 1s", el)
		}
	})
}

func TestDictionaryAttackDisconnects(t *testing.T) {
	statetest.Each(t, func(t *testing.T, s state.Store) {
		ctx := context.Background()
		l := newLimiter(t, s, "client * unknown 3/1h")
		ip := netip.MustParseAddr("192.0.2.66")
		for i := 0; i < 3; i++ {
			wantPass(t, l.NoteUnknownRecipient(ctx, ip))
			wantPass(t, l.CheckRcpt(ctx, sess("192.0.2.66", "a@x.example", ""), "guess@example.net"))
		}
		r := l.NoteUnknownRecipient(ctx, ip)
		if r.Verdict != filters.Reject || r.Vars["DISCONNECT"] != "1" || r.Code != 550 || r.Enhanced != "5.7.1" {
			t.Fatalf("after 4 unknown recipients: %+v", r)
		}
		r = l.CheckRcpt(ctx, sess("192.0.2.66", "a@x.example", ""), "real@example.net")
		if r.Verdict != filters.Reject || r.Vars["DISCONNECT"] != "1" {
			t.Fatalf("next RCPT: %+v", r)
		}
		// A new connection from the same client during the window.
		r = l.CheckConnect(ctx, sess("192.0.2.66", "", ""))
		if r.Verdict != filters.Tempfail || r.Code != 421 || r.Vars["DISCONNECT"] != "1" {
			t.Fatalf("reconnect: %+v", r)
		}
		wantPass(t, l.CheckConnect(ctx, sess("192.0.2.67", "", "")))
	})
}

func TestTwoGatewaysShareCounters(t *testing.T) {
	prefix := statetest.RedisPrefix(t)
	cfg := "client /24 messages 10/1h"
	gw1 := newLimiter(t, statetest.Redis(t, prefix), cfg)
	gw2 := newLimiter(t, statetest.Redis(t, prefix), cfg)
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		wantPass(t, gw1.CheckMail(ctx, sess("192.0.2.1", "a@x.example", "")))
		wantPass(t, gw2.CheckMail(ctx, sess("192.0.2.2", "a@x.example", "")))
	}
	wantLimited(t, gw1.CheckMail(ctx, sess("192.0.2.3", "a@x.example", "")), "messages")
	wantLimited(t, gw2.CheckMail(ctx, sess("192.0.2.3", "a@x.example", "")), "messages")
}

func TestStoreDown(t *testing.T) {
	ctx := context.Background()
	down := statetest.Unavailable(t)
	l, _ := New(Options{Config: rules(t, "client * messages 1/1h\nclient * unknown 1/1h"), Store: down})
	for i := 0; i < 3; i++ {
		r := l.CheckMail(ctx, sess("192.0.2.1", "a@x.example", ""))
		if r.Verdict != filters.NoOpinion || r.Vars["RATELIMIT"] != "unavailable" {
			t.Fatalf("store down, onstoreerror pass: %+v", r)
		}
	}
	l, _ = New(Options{Config: rules(t, "client * messages 1/1h\nonstoreerror tempfail"), Store: down})
	r := l.CheckMail(ctx, sess("192.0.2.1", "a@x.example", ""))
	if r.Verdict != filters.Tempfail || r.Code != 451 || r.Enhanced != "4.3.0" {
		t.Fatalf("store down, onstoreerror tempfail: %+v", r)
	}
}

func TestExemptAndNoRules(t *testing.T) {
	s := statetest.Embedded(t)
	ctx := context.Background()
	l := newLimiter(t, s, "client * messages 1/1h")
	exemptSess := sess("192.0.2.1", "a@x.example", "")
	exemptSess.Access = map[string]string{"RATELIMIT": "off"}
	for i := 0; i < 3; i++ {
		wantPass(t, l.CheckMail(ctx, exemptSess))
	}
	none := newLimiter(t, s, "")
	for i := 0; i < 3; i++ {
		wantPass(t, none.CheckMail(ctx, sess("192.0.2.1", "a@x.example", "")))
		wantPass(t, none.NoteUnknownRecipient(ctx, netip.MustParseAddr("192.0.2.1")))
	}
}

func TestParseRules(t *testing.T) {
	cfg := rules(t, `
client /24 connections 60/1m
client * messages 100/h
client /24,/48 rcpts 1000/1h
client 192.0.2.0/24 messages 10/1d
client ::ffff:10.0.0.0/104 messages 10/1d
client 2001:db8::1 messages 5/30s
sender * messages 200/1h
sender @* rcpts 5000/1d
sender @Example.org. messages 50/1h
sender Bob@Example.org messages 5/1w
auth * rcpts 1000/1d
auth alice messages 10/1m
client * unknown 20/1h
onstoreerror tempfail
`)
	if len(cfg.Rules) != 13 || cfg.OnStoreError != StoreErrorTempfail {
		t.Fatalf("%d rules, onstoreerror %v", len(cfg.Rules), cfg.OnStoreError)
	}
	r := cfg.Rules
	check := func(ok bool, i int) {
		t.Helper()
		if !ok {
			t.Errorf("rule %d parsed as %+v", i, r[i])
		}
	}
	check(r[0].V4Bits == 24 && r[0].V6Bits == 64 && r[0].What == Connections && r[0].Window == time.Minute && r[0].Limit == 60, 0)
	check(r[1].V4Bits == 32 && r[1].V6Bits == 128 && r[1].Window == time.Hour, 1)
	check(r[2].V4Bits == 24 && r[2].V6Bits == 48, 2)
	check(r[3].Network.String() == "192.0.2.0/24" && r[3].Window == 24*time.Hour, 3)
	check(r[4].Network.String() == "10.0.0.0/8", 4)
	check(r[5].Network.String() == "2001:db8::1/128" && r[5].Window == 30*time.Second, 5)
	check(r[7].PerDomain && r[7].Subject == SubjectSender, 7)
	check(r[8].Domain == "example.org", 8)
	check(r[9].Address == "bob@example.org" && r[9].Window == 7*24*time.Hour, 9)
	check(r[10].Subject == SubjectAuth && r[10].User == "", 10)
	check(r[11].User == "alice", 11)
	check(r[12].What == Unknown, 12)
	if s := r[1].String(); s != "client * messages 100/1h" {
		t.Errorf("String() = %q", s)
	}
	if r[0].Source != "ratelimit:2" {
		t.Errorf("Source = %q", r[0].Source)
	}
}

func TestConfigErrorsNameFileAndLine(t *testing.T) {
	for text, want := range map[string]string{
		"client /24 messages":                 "ratelimit:1: ratelimit: want",
		"\nserver * messages 1/1h":            "ratelimit:2: ratelimit: subject",
		"client * bytes 1/1h":                 "want connections, messages",
		"sender * connections 1/1h":           "only be counted per client",
		"auth * unknown 1/1h":                 "only be counted per client",
		"client /33 messages 1/1h":            "ratelimit:1:",
		"client /24,/129 messages 1/1h":       "ratelimit:1:",
		"client 300.0.0.0/8 messages 1/1h":    "ratelimit:1:",
		"sender a@b@c messages 1/1h":          "ratelimit:1:",
		"client * messages 0/1h":              "count of at least 1",
		"client * messages 10":                "ratelimit:1:",
		"client * messages 10/0s":             "window",
		"client * messages 10/100d":           "window",
		"client * messages 10/1500ms":         "window",
		"client * messages 10/1y":             "window",
		"onstoreerror maybe":                  "ratelimit:1:",
		"client * messages 99999999999999/1h": "ratelimit:1:",
	} {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "ratelimit"), []byte(text+"\n"), 0o644)
		_, _, err := LoadConfig(dir)
		var pe *policy.Error
		if err == nil || !errors.As(err, &pe) || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v; want a *policy.Error containing %q", text, err, want)
		}
	}
	if _, present, err := LoadConfig(t.TempDir()); present || err != nil {
		t.Errorf("absent setting: present=%v err=%v", present, err)
	}
}

// nopStore satisfies state.Store for tests that never reach the store.
type nopStore struct{}

func (nopStore) Get(context.Context, string) ([]byte, bool, error)        { return nil, false, nil }
func (nopStore) Set(context.Context, string, []byte, time.Duration) error { return nil }
func (nopStore) SetNX(context.Context, string, []byte, time.Duration) (bool, error) {
	return true, nil
}
func (nopStore) Incr(context.Context, string, int64, time.Duration) (int64, error) { return 1, nil }
func (nopStore) Delete(context.Context, string) error                              { return nil }
func (nopStore) Close() error                                                      { return nil }
