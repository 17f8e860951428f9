package greylist

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"postern/filters"
	"postern/filters/state"
	"postern/filters/state/statetest"
	"postern/policy"
)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func newGreylist(t *testing.T, s state.Store, cfg Config, c *clock) *Greylist {
	t.Helper()
	g, err := New(Options{Config: cfg, Store: s, Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func session(ip, from string) *filters.Session {
	return &filters.Session{ID: "test", ClientIP: netip.MustParseAddr(ip), From: from}
}

func want(t *testing.T, r filters.Result, verdict filters.Verdict, status string) {
	t.Helper()
	if r.Verdict != verdict || r.Vars["GREYLIST"] != status {
		t.Fatalf("got %v GREYLIST=%q (%s); want %v %s", r.Verdict, r.Vars["GREYLIST"], r.Reason, verdict, status)
	}
	if r.Filter != "greylist" {
		t.Fatalf("Filter = %q", r.Filter)
	}
}

func TestLifecycle(t *testing.T) {
	statetest.Each(t, func(t *testing.T, s state.Store) {
		ctx := context.Background()
		c := &clock{now: time.Unix(1_900_000_000, 0)}
		g := newGreylist(t, s, DefaultConfig(), c)
		sess := session("192.0.2.10", "Alice@Example.ORG")

		r := g.CheckRcpt(ctx, sess, "bob@example.net")
		want(t, r, filters.Tempfail, StatusNew)
		if r.Code != 451 || r.Enhanced != "4.7.1" || r.Message != "Greylisted, please try again in 300 seconds" {
			t.Fatalf("reply = %d %s %q", r.Code, r.Enhanced, r.Message)
		}

		c.Advance(time.Minute)
		r = g.CheckRcpt(ctx, sess, "bob@example.net")
		want(t, r, filters.Tempfail, StatusEarly)
		if r.Message != "Greylisted, please try again in 240 seconds" {
			t.Fatalf("early retry message %q", r.Message)
		}

		// The retry comes from another address of the same /24, as
		// server farms do.
		c.Advance(5 * time.Minute)
		want(t, g.CheckRcpt(ctx, session("192.0.2.200", "alice@example.org"), "Bob@Example.NET"), filters.NoOpinion, StatusPassed)

		// Known from now on, also weeks later (refreshed on use).
		c.Advance(20 * 24 * time.Hour)
		want(t, g.CheckRcpt(ctx, sess, "bob@example.net"), filters.NoOpinion, StatusPassed)

		// A new recipient, a new sender or another network is a new triplet.
		want(t, g.CheckRcpt(ctx, sess, "carol@example.net"), filters.Tempfail, StatusNew)
		want(t, g.CheckRcpt(ctx, session("192.0.2.10", "mallory@example.org"), "bob@example.net"), filters.Tempfail, StatusNew)
		want(t, g.CheckRcpt(ctx, session("192.0.3.10", "alice@example.org"), "bob@example.net"), filters.Tempfail, StatusNew)
	})
}

func TestRetryAfterWindowStartsOver(t *testing.T) {
	statetest.Each(t, func(t *testing.T, s state.Store) {
		ctx := context.Background()
		c := &clock{now: time.Unix(1_900_000_000, 0)}
		g := newGreylist(t, s, DefaultConfig(), c)
		sess := session("198.51.100.1", "a@example.org")
		want(t, g.CheckRcpt(ctx, sess, "b@example.net"), filters.Tempfail, StatusNew)
		c.Advance(DefaultRetryWindow + time.Hour)
		r := g.CheckRcpt(ctx, sess, "b@example.net")
		want(t, r, filters.Tempfail, StatusNew)
		if r.Message != "Greylisted, please try again in 300 seconds" {
			t.Fatalf("a late retry must start a full delay again: %q", r.Message)
		}
	})
}

func TestIPv6NetworkIsSlash64(t *testing.T) {
	statetest.Each(t, func(t *testing.T, s state.Store) {
		ctx := context.Background()
		c := &clock{now: time.Unix(1_900_000_000, 0)}
		g := newGreylist(t, s, DefaultConfig(), c)
		want(t, g.CheckRcpt(ctx, session("2001:db8:1:2::25", "a@example.org"), "b@example.net"), filters.Tempfail, StatusNew)
		c.Advance(10 * time.Minute)
		want(t, g.CheckRcpt(ctx, session("2001:db8:1:2:ffff::1", "a@example.org"), "b@example.net"), filters.NoOpinion, StatusPassed)
		want(t, g.CheckRcpt(ctx, session("2001:db8:1:3::25", "a@example.org"), "b@example.net"), filters.Tempfail, StatusNew)
		// An IPv4-mapped address is its IPv4 network.
		want(t, g.CheckRcpt(ctx, session("192.0.2.1", "a@example.org"), "b@example.net"), filters.Tempfail, StatusNew)
		c.Advance(10 * time.Minute)
		want(t, g.CheckRcpt(ctx, session("::ffff:192.0.2.77", "a@example.org"), "b@example.net"), filters.NoOpinion, StatusPassed)
	})
}

func TestAutoWhitelistAfterPasses(t *testing.T) {
	statetest.Each(t, func(t *testing.T, s state.Store) {
		ctx := context.Background()
		c := &clock{now: time.Unix(1_900_000_000, 0)}
		cfg := DefaultConfig()
		cfg.AutoWhitelist = 2
		g := newGreylist(t, s, cfg, c)
		for _, rcpt := range []string{"one@example.net", "two@example.net"} {
			want(t, g.CheckRcpt(ctx, session("203.0.113.5", "list@example.org"), rcpt), filters.Tempfail, StatusNew)
		}
		c.Advance(6 * time.Minute)
		want(t, g.CheckRcpt(ctx, session("203.0.113.5", "list@example.org"), "one@example.net"), filters.NoOpinion, StatusPassed)
		// Passing the same triplet again does not count twice.
		want(t, g.CheckRcpt(ctx, session("203.0.113.5", "list@example.org"), "one@example.net"), filters.NoOpinion, StatusPassed)
		want(t, g.CheckRcpt(ctx, session("203.0.113.6", "x@example.com"), "new@example.net"), filters.Tempfail, StatusNew)
		want(t, g.CheckRcpt(ctx, session("203.0.113.5", "list@example.org"), "two@example.net"), filters.NoOpinion, StatusPassed)
		// Two passes: the whole /24 is now whitelisted for any triplet.
		want(t, g.CheckRcpt(ctx, session("203.0.113.99", "someone@else.example"), "three@example.net"), filters.NoOpinion, StatusWhitelisted)
		want(t, g.CheckRcpt(ctx, session("203.0.114.5", "list@example.org"), "three@example.net"), filters.Tempfail, StatusNew)
	})
}

func TestAutomaticPasses(t *testing.T) {
	s := statetest.Embedded(t)
	ctx := context.Background()
	c := &clock{now: time.Unix(1_900_000_000, 0)}
	cfg := DefaultConfig()
	cfg.Whitelist = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8:aa::/48")}
	cfg.SPFPassDomains = []string{"bank.example"}
	cfg.NullSender = NullSenderPass
	cfg.PassRecipients = []string{"postmaster@", "@noisy.example", "abuse@example.net"}
	g := newGreylist(t, s, cfg, c)
	spfPass := []filters.Result{{Filter: "spf", Vars: map[string]string{"SPF": "pass"}}}
	cases := []struct {
		name string
		sess *filters.Session
		rcpt string
		want string
	}{
		{"authenticated", &filters.Session{ClientIP: netip.MustParseAddr("192.0.2.1"), AuthUser: "alice", From: "a@x.example"}, "b@example.net", StatusWhitelisted},
		{"relayclient", &filters.Session{ClientIP: netip.MustParseAddr("192.0.2.1"), Access: map[string]string{"RELAYCLIENT": ""}, From: "a@x.example"}, "b@example.net", StatusWhitelisted},
		{"smtpaccess GREYLIST=off", &filters.Session{ClientIP: netip.MustParseAddr("192.0.2.1"), Access: map[string]string{"GREYLIST": "off"}, From: "a@x.example"}, "b@example.net", StatusWhitelisted},
		{"network v4", session("10.1.2.3", "a@x.example"), "b@example.net", StatusWhitelisted},
		{"network v6", session("2001:db8:aa:1::1", "a@x.example"), "b@example.net", StatusWhitelisted},
		{"mapped v4", session("::ffff:10.9.9.9", "a@x.example"), "b@example.net", StatusWhitelisted},
		{"null sender", session("192.0.2.1", ""), "b@example.net", StatusWhitelisted},
		{"spf pass listed", &filters.Session{ClientIP: netip.MustParseAddr("192.0.2.1"), From: "statements@Bank.example", Results: spfPass}, "b@example.net", StatusWhitelisted},
		{"spf pass unlisted", &filters.Session{ClientIP: netip.MustParseAddr("192.0.2.1"), From: "x@other.example", Results: spfPass}, "b@example.net", StatusNew},
		{"listed without spf", session("192.0.2.1", "statements@bank.example"), "c@example.net", StatusNew},
		{"postmaster@", session("192.0.2.1", "a@x.example"), "PostMaster@example.net", StatusWhitelisted},
		{"@domain", session("192.0.2.1", "a@x.example"), "any@noisy.example", StatusWhitelisted},
		{"full address", session("192.0.2.1", "a@x.example"), "abuse@example.net", StatusWhitelisted},
		{"not listed", session("192.0.2.1", "a@x.example"), "abuse@example.org", StatusNew},
		{"smtpaccess GREYLIST=on", &filters.Session{ClientIP: netip.MustParseAddr("192.0.2.1"), Access: map[string]string{"GREYLIST": "on"}, From: "z@x.example"}, "b@example.net", StatusNew},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := g.CheckRcpt(ctx, tc.sess, tc.rcpt)
			if r.Vars["GREYLIST"] != tc.want {
				t.Fatalf("GREYLIST=%s (%s); want %s", r.Vars["GREYLIST"], r.Reason, tc.want)
			}
		})
	}
}

// Two gateways on one Redis: the first sees the triplet, the client's retry
// lands on the second and passes.
func TestTwoGatewaysShareGreylist(t *testing.T) {
	prefix := statetest.RedisPrefix(t)
	c := &clock{now: time.Unix(1_900_000_000, 0)}
	gw1 := newGreylist(t, statetest.Redis(t, prefix), DefaultConfig(), c)
	gw2 := newGreylist(t, statetest.Redis(t, prefix), DefaultConfig(), c)
	ctx := context.Background()
	want(t, gw1.CheckRcpt(ctx, session("192.0.2.10", "a@example.org"), "b@example.net"), filters.Tempfail, StatusNew)
	want(t, gw2.CheckRcpt(ctx, session("192.0.2.10", "a@example.org"), "b@example.net"), filters.Tempfail, StatusEarly)
	c.Advance(6 * time.Minute)
	want(t, gw2.CheckRcpt(ctx, session("192.0.2.10", "a@example.org"), "b@example.net"), filters.NoOpinion, StatusPassed)
}

// Many sessions see a new triplet at once: every one is deferred, none
// passes, and the triplet is stored once.
func TestConcurrentFirstSight(t *testing.T) {
	statetest.Each(t, func(t *testing.T, s state.Store) {
		c := &clock{now: time.Unix(1_900_000_000, 0)}
		g := newGreylist(t, s, DefaultConfig(), c)
		var wg sync.WaitGroup
		var mu sync.Mutex
		count := map[string]int{}
		for i := 0; i < 16; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := g.CheckRcpt(context.Background(), session("192.0.2.10", "a@example.org"), "b@example.net")
				mu.Lock()
				count[r.Vars["GREYLIST"]]++
				mu.Unlock()
			}()
		}
		wg.Wait()
		if count[StatusNew] < 1 || count[StatusNew]+count[StatusEarly] != 16 {
			t.Fatalf("results %v; want every session deferred", count)
		}
	})
}

func TestStoreDown(t *testing.T) {
	ctx := context.Background()
	var logBuf bytes.Buffer
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return logBuf.Write(p) }), nil))
	down := statetest.Unavailable(t)

	g, err := New(Options{Config: DefaultConfig(), Store: down, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		r := g.CheckRcpt(ctx, session("192.0.2.10", "a@example.org"), "b@example.net")
		want(t, r, filters.NoOpinion, StatusUnavailable)
		if !strings.Contains(r.Reason, "state store failed") {
			t.Fatalf("reason %q", r.Reason)
		}
	}
	mu.Lock()
	n := strings.Count(logBuf.String(), "greylisting degraded")
	mu.Unlock()
	if n != 1 {
		t.Fatalf("logged %d times; want once a minute:\n%s", n, logBuf.String())
	}

	cfg := DefaultConfig()
	cfg.OnStoreError = StoreErrorTempfail
	g, _ = New(Options{Config: cfg, Store: down})
	r := g.CheckRcpt(ctx, session("192.0.2.10", "a@example.org"), "b@example.net")
	want(t, r, filters.Tempfail, StatusUnavailable)
	if r.Code != 451 || r.Enhanced != "4.3.0" {
		t.Fatalf("reply %d %s", r.Code, r.Enhanced)
	}
	// Whitelisted clients do not need the store at all.
	r = g.CheckRcpt(ctx, &filters.Session{ClientIP: netip.MustParseAddr("192.0.2.10"), AuthUser: "alice"}, "b@example.net")
	want(t, r, filters.NoOpinion, StatusWhitelisted)
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func TestNormalizeSender(t *testing.T) {
	for in, out := range map[string]string{
		"":                                      "<>",
		"<>":                                    "<>",
		"Alice@Example.ORG":                     "alice@example.org",
		"<alice@example.org>":                   "alice@example.org",
		"prvs=1234abcd56=alice@example.org":     "alice@example.org",
		"PRVS=0123ABCDEF=Bob@Example.org":       "bob@example.org",
		"alice+lists@example.org":               "alice@example.org",
		"bounce-12345-678@lists.example.org":    "bounce-#-#@lists.example.org",
		"msprvs1=17ab=bounces@mail.example.com": "bounces@mail.example.com",
		"\"odd@local\"@example.org":             "\"odd@local\"@example.org",
		"noat":                                  "noat",
	} {
		if got := NormalizeSender(in); got != out {
			t.Errorf("NormalizeSender(%q) = %q; want %q", in, got, out)
		}
	}
}

func TestLongAddressesStayWithinKeyLimit(t *testing.T) {
	s := statetest.Embedded(t)
	c := &clock{now: time.Unix(1_900_000_000, 0)}
	g := newGreylist(t, s, DefaultConfig(), c)
	long := strings.Repeat("x", 2000) + "@example.org"
	want(t, g.CheckRcpt(context.Background(), session("192.0.2.1", long), long), filters.Tempfail, StatusNew)
	c.Advance(10 * time.Minute)
	want(t, g.CheckRcpt(context.Background(), session("192.0.2.1", long), long), filters.NoOpinion, StatusPassed)
}

func TestNewRefusesBadOptions(t *testing.T) {
	s := statetest.Embedded(t)
	for name, cfg := range map[string]func(*Config){
		"window shorter than delay": func(c *Config) { c.RetryWindow = time.Minute },
		"v4 prefix":                 func(c *Config) { c.IPv4Prefix = 33 },
		"v6 prefix":                 func(c *Config) { c.IPv6Prefix = 8 },
		"lifetime":                  func(c *Config) { c.Lifetime = 0 },
	} {
		c := DefaultConfig()
		cfg(&c)
		if _, err := New(Options{Config: c, Store: s}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := New(Options{Config: DefaultConfig()}); err == nil {
		t.Error("no store: accepted")
	}
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	if _, present, err := LoadConfig(dir); err != nil || present {
		t.Fatalf("absent setting: present=%v err=%v", present, err)
	}
	os.WriteFile(filepath.Join(dir, "greylist"), []byte(`# greylisting
delay 2m
retrywindow 1d
lifetime 5w
ipv4prefix 32
ipv6prefix /56
autowhitelist 0
nullsender pass
onstoreerror tempfail
spfpass bank.example paypal.example.
spfpass other.example
whitelist 192.0.2.0/24 198.51.100.7 2001:db8::/32 ::ffff:10.0.0.0/104
passrecipient postmaster@ @lists.example
`), 0o644)
	cfg, present, err := LoadConfig(dir)
	if err != nil || !present {
		t.Fatal(present, err)
	}
	if cfg.Delay != 2*time.Minute || cfg.RetryWindow != 24*time.Hour || cfg.Lifetime != 35*24*time.Hour ||
		cfg.IPv4Prefix != 32 || cfg.IPv6Prefix != 56 || cfg.AutoWhitelist != 0 ||
		cfg.NullSender != NullSenderPass || cfg.OnStoreError != StoreErrorTempfail {
		t.Fatalf("parsed %+v", cfg)
	}
	if strings.Join(cfg.SPFPassDomains, ",") != "bank.example,paypal.example,other.example" {
		t.Fatalf("spfpass %v", cfg.SPFPassDomains)
	}
	if len(cfg.Whitelist) != 4 || cfg.Whitelist[1].String() != "198.51.100.7/32" || cfg.Whitelist[3].String() != "10.0.0.0/8" {
		t.Fatalf("whitelist %v", cfg.Whitelist)
	}
	if len(cfg.PassRecipients) != 2 {
		t.Fatalf("passrecipient %v", cfg.PassRecipients)
	}
}

func TestConfigErrorsNameFileAndLine(t *testing.T) {
	for text, wantErr := range map[string]string{
		"delay 5m\nbogus 1\n":              "greylist:2: greylist: unknown keyword",
		"delay soon\n":                     "greylist:1: greylist: delay",
		"\n\nipv4prefix 33\n":              "greylist:3:",
		"whitelist 300.1.1.1\n":            "greylist:1:",
		"nullsender maybe\n":               "greylist:1:",
		"delay 1h\nretrywindow 30m\n":      "retrywindow 30m0s must be longer",
		"spfpass not_a domain!\n":          "greylist:1:",
		"delay\n":                          "greylist:1:",
		"lifetime 0s\n":                    "greylist:1:",
		"passrecipient nobody\n":           "greylist:1:",
		"delay 5m 6m\n":                    "takes one value",
		"retrywindow 99999999999999999d\n": "greylist:1:",
	} {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "greylist"), []byte(text), 0o644)
		_, _, err := LoadConfig(dir)
		var pe *policy.Error
		if err == nil || !errors.As(err, &pe) || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("%q: err = %v; want a *policy.Error containing %q", text, err, wantErr)
		}
	}
}

// nopStore satisfies state.Store for tests that never touch the store.
type nopStore struct{}

func (nopStore) Get(context.Context, string) ([]byte, bool, error)        { return nil, false, nil }
func (nopStore) Set(context.Context, string, []byte, time.Duration) error { return nil }
func (nopStore) SetNX(context.Context, string, []byte, time.Duration) (bool, error) {
	return true, nil
}
func (nopStore) Incr(context.Context, string, int64, time.Duration) (int64, error) { return 1, nil }
func (nopStore) Delete(context.Context, string) error                              { return nil }
func (nopStore) Close() error                                                      { return nil }
