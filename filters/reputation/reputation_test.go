package reputation

import (
	"bytes"
	"context"
	"log/slog"
	"math"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"postern/filters"
	"postern/filters/state"
	"postern/filters/state/statetest"
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

func newRep(t *testing.T, s state.Store, cfg Config, c *clock) *Reputation {
	t.Helper()
	r, err := New(Options{Config: cfg, Store: s, Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func session(ip, from string, results ...filters.Result) *filters.Session {
	return &filters.Session{ID: "test", ClientIP: netip.MustParseAddr(ip), From: from, Results: results}
}

var (
	spfPass = func(d string) filters.Result {
		return filters.Result{Filter: "spf", Vars: map[string]string{"SPF": "pass", "SPF_DOMAIN": d}}
	}
	spfFail = func(d string) filters.Result {
		return filters.Result{Filter: "spf", Vars: map[string]string{"SPF": "fail", "SPF_DOMAIN": d}}
	}
	dkimPass = func(d string) filters.Result {
		return filters.Result{Filter: "dkim", Vars: map[string]string{"DKIM": "pass", "DKIM_DOMAINS": d}}
	}
	refused  = filters.Outcome{Stage: filters.StageConnect, Verdict: filters.Reject, Filter: "dnsbl"}
	accepted = filters.Outcome{Stage: filters.StageData, Verdict: filters.Accept, Score: 0.5}
)

func near(a, b float64) bool { return math.Abs(a-b) < 0.002 }

// A count halves after each half-life, also across an epoch boundary, and
// the store keeps it so for another gateway reading later.
func TestDecayHalvesAfterHalfLife(t *testing.T) {
	statetest.Each(t, func(t *testing.T, s state.Store) {
		ctx := context.Background()
		cfg := DefaultConfig()
		// Start a day before an epoch ends, so that the half-lives
		// below cross into the next epoch.
		epoch := int64(epochHalfLives * cfg.HalfLife.Seconds())
		c := &clock{now: time.Unix((1_900_000_000/epoch+1)*epoch-86400, 0)}
		r := newRep(t, s, cfg, c)
		b := Bucket{KindIP, "192.0.2.1"}
		for range 8 {
			if err := r.record(ctx, b, false, c.Now()); err != nil {
				t.Fatal(err)
			}
		}
		if err := r.record(ctx, b, true, c.Now()); err != nil {
			t.Fatal(err)
		}
		for _, want := range []float64{8, 4, 2, 1} {
			n, err := r.Counts(ctx, b, c.Now())
			if err != nil {
				t.Fatal(err)
			}
			if !near(n.Bad, want) || !near(n.Good, want/8) {
				t.Fatalf("at %s: bad %.4f good %.4f; want %v and %v", c.Now().UTC(), n.Bad, n.Good, want, want/8)
			}
			c.Advance(cfg.HalfLife)
		}
		// A new outcome now counts 1 beside the decayed 0.5.
		r.record(ctx, b, false, c.Now())
		if n, _ := r.Counts(ctx, b, c.Now()); !near(n.Bad, 1.5) {
			t.Fatalf("after a new outcome: bad %.4f; want 1.5", n.Bad)
		}
		// Another half-life setting is another history.
		cfg2 := cfg
		cfg2.HalfLife = 24 * time.Hour
		if n, _ := newRep(t, s, cfg2, c).Counts(ctx, b, c.Now()); n.N() != 0 {
			t.Fatalf("a changed half-life read the old counters: %+v", n)
		}
	})
}

// The score: 0 with too little evidence, positive for bad, negative for
// good, growing with the evidence and bounded by maxscore and minscore.
func TestScoreGrowsWithEvidenceWithinBounds(t *testing.T) {
	c := DefaultConfig()
	if s := c.Score(Counts{Bad: 2}); s != 0 {
		t.Fatalf("2 samples (minsamples 3): %v", s)
	}
	prev := 0.0
	for _, n := range []float64{3, 5, 10, 30, 100, 1e6} {
		s := c.Score(Counts{Bad: n})
		if s <= prev || s > c.MaxScore {
			t.Fatalf("%v bad: score %v after %v; want growing, at most %v", n, s, prev, c.MaxScore)
		}
		prev = s
		g := c.Score(Counts{Good: n})
		if g >= 0 || g < c.MinScore {
			t.Fatalf("%v good: score %v; want in [%v, 0)", n, g, c.MinScore)
		}
	}
	if !near(c.Score(Counts{Bad: 10}), (11.0/12*2-1)*math.Tanh(1)*5) {
		t.Fatalf("10 bad: %v", c.Score(Counts{Bad: 10}))
	}
	if s := c.Score(Counts{Good: 50, Bad: 50}); s != 0 {
		t.Fatalf("even history: %v", s)
	}
	if c.Status(Counts{Good: 20}, c.Score(Counts{Good: 20})) != StatusClean ||
		c.Status(Counts{Bad: 5}, c.Score(Counts{Bad: 5})) != StatusBad ||
		c.Status(Counts{Bad: 1}, 0) != StatusNew {
		t.Fatal("statuses")
	}
}

// A client refused by a check builds a bad history: its next connection
// scores positive, with the numbers in the reason; a clean client's
// history lowers its score; its network shares it.
func TestHistoryScoresConnect(t *testing.T) {
	statetest.Each(t, func(t *testing.T, s state.Store) {
		ctx := context.Background()
		c := &clock{now: time.Unix(1_900_000_000, 0)}
		r := newRep(t, s, DefaultConfig(), c)

		first := r.CheckConnect(ctx, session("203.0.113.9", ""))
		if first.Score != 0 || first.Vars[VarClient] != StatusNew {
			t.Fatalf("unknown client: %+v", first)
		}
		for range 5 {
			sess := session("203.0.113.9", "x@spam.example")
			r.Outcome(ctx, sess, refused)
			c.Advance(time.Minute)
		}
		bad := r.CheckConnect(ctx, session("203.0.113.9", ""))
		if bad.Score <= 1 || bad.Vars[VarClient] != StatusBad || !strings.Contains(bad.Reason, "ip 203.0.113.9 good 0.0 bad 5.0") ||
			!strings.Contains(bad.Reason, "network 203.0.113.0/24 good 0.0 bad 5.0") {
			t.Fatalf("after 5 refusals: %+v", bad)
		}
		// A neighbour inherits the network's part only.
		nb := r.CheckConnect(ctx, session("203.0.113.10", ""))
		if nb.Score <= 0 || nb.Score >= bad.Score {
			t.Fatalf("neighbour %v; want between 0 and %v", nb.Score, bad.Score)
		}

		for range 20 {
			r.Outcome(ctx, session("198.51.100.7", "a@good.example"), accepted)
		}
		good := r.CheckConnect(ctx, session("198.51.100.7", ""))
		if good.Score >= -1 || good.Vars[VarClient] != StatusClean {
			t.Fatalf("after 20 clean messages: %+v", good)
		}
	})
}

// What counts: refusals by checks and quarantines are bad; acceptance
// with a low score good; spammy scores bad even when accepted; tempfails
// and our own refusals say nothing.
func TestJudge(t *testing.T) {
	c := DefaultConfig()
	for _, tc := range []struct {
		o    filters.Outcome
		want Judgement
	}{
		{filters.Outcome{Verdict: filters.Reject, Filter: "dnsbl"}, Bad},
		{filters.Outcome{Verdict: filters.Quarantine, Filter: "dmarc"}, Bad},
		{filters.Outcome{Verdict: filters.Reject, Filter: "score", Score: 11}, Bad},
		{filters.Outcome{Verdict: filters.Reject, Filter: "score", Score: 4}, Neither}, // only our own score tipped it
		{filters.Outcome{Verdict: filters.Quarantine, Filter: "score", Score: 6}, Bad},
		{filters.Outcome{Verdict: filters.Accept, Score: 1}, Good},
		{filters.Outcome{Verdict: filters.Accept, Score: 3}, Neither},
		{filters.Outcome{Verdict: filters.Accept, Score: 5}, Bad}, // our credit kept it out of Junk
		{filters.Outcome{Verdict: filters.Tempfail, Filter: "greylist"}, Neither},
		{filters.Outcome{Verdict: filters.Reject, Filter: Name}, Neither},
	} {
		if got := c.Judge(tc.o); got != tc.want {
			t.Errorf("%+v: %v; want %v", tc.o, got, tc.want)
		}
	}
}

// An authenticated sender domain's history follows it across client
// addresses; a forged (unauthenticated) domain is neither blamed nor
// credited.
func TestDomainHistoryOnlyWhenAuthenticated(t *testing.T) {
	statetest.Each(t, func(t *testing.T, s state.Store) {
		ctx := context.Background()
		c := &clock{now: time.Unix(1_900_000_000, 0)}
		r := newRep(t, s, DefaultConfig(), c)
		// news.example sends well from many addresses, SPF-authenticated.
		for i := range 10 {
			ip := netip.AddrFrom4([4]byte{192, 0, 2, byte(i + 1)}).String()
			r.Outcome(ctx, session(ip, "news@news.example", spfPass("news.example")), accepted)
		}
		// A spammer forges news.example (SPF fails) and is refused.
		for range 10 {
			r.Outcome(ctx, session("203.0.113.50", "news@news.example", spfFail("news.example")),
				filters.Outcome{Stage: filters.StageRcpt, Verdict: filters.Reject, Filter: "dnsbl"})
		}
		// The same domain from a new address, SPF pass: its good history
		// counts, at MAIL.
		res := r.CheckMail(ctx, session("198.51.100.1", "other@News.Example", spfPass("news.example")))
		if res.Score >= -1 || res.Vars[VarDomain] != StatusClean || res.Vars[VarDomainName] != "news.example" ||
			!strings.Contains(res.Reason, "domain news.example good 10.0 bad 0.0") {
			t.Fatalf("authenticated domain: %+v", res)
		}
		// Without SPF at MAIL nothing is said; DKIM at DATA
		// authenticates it (a parent domain's signature too).
		sess := session("198.51.100.1", "other@mail.news.example")
		if res := r.CheckMail(ctx, sess); res.Score != 0 || res.Vars[VarDomain] != "" {
			t.Fatalf("unauthenticated at MAIL: %+v", res)
		}
		sess.Results = append(sess.Results, dkimPass("news.example"))
		if res := r.CheckData(ctx, sess, nil); res.Vars[VarDomainName] != "mail.news.example" || res.Vars[VarDomain] != StatusNew {
			t.Fatalf("DKIM-authenticated subdomain: %+v", res)
		}
		// A signature of another domain authenticates nothing.
		if res := r.CheckData(ctx, session("198.51.100.1", "x@news.example", dkimPass("evil.example")), nil); res.Vars[VarDomainName] != "" {
			t.Fatalf("foreign DKIM credited news.example: %+v", res)
		}
		// The forged refusals blamed the spammer's address, not the domain.
		if n, _ := r.Counts(ctx, Bucket{KindDomain, "news.example"}, c.Now()); n.Bad != 0 || !near(n.Good, 10) {
			t.Fatalf("news.example counts %+v; want 10 good, 0 bad", n)
		}
		if n, _ := r.Counts(ctx, Bucket{KindIP, "203.0.113.50"}, c.Now()); !near(n.Bad, 10) {
			t.Fatalf("spammer counts %+v", n)
		}
	})
}

// Authenticated users and relay clients are neither scored nor recorded.
func TestTrustedClientsNeitherScoredNorRecorded(t *testing.T) {
	s := statetest.Embedded(t)
	ctx := context.Background()
	c := &clock{now: time.Unix(1_900_000_000, 0)}
	r := newRep(t, s, DefaultConfig(), c)
	for _, sess := range []*filters.Session{
		{ClientIP: netip.MustParseAddr("192.0.2.1"), AuthUser: "alice"},
		{ClientIP: netip.MustParseAddr("192.0.2.1"), Access: map[string]string{"RELAYCLIENT": ""}},
		{ClientIP: netip.MustParseAddr("192.0.2.1"), Access: map[string]string{"REPUTATION": "off"}},
	} {
		for range 10 {
			r.Outcome(ctx, sess, refused)
		}
		if res := r.CheckConnect(ctx, sess); res.Score != 0 || res.Vars[VarClient] != StatusExempt {
			t.Fatalf("%+v: %+v", sess, res)
		}
	}
	if n, _ := r.Counts(ctx, Bucket{KindIP, "192.0.2.1"}, c.Now()); n.N() != 0 {
		t.Fatalf("trusted outcomes were recorded: %+v", n)
	}
}

// With limits set, a bad client is refused at MAIL naming the reason; a
// network near the tempfail limit is deferred; off by default.
func TestLimits(t *testing.T) {
	statetest.Each(t, func(t *testing.T, s state.Store) {
		ctx := context.Background()
		c := &clock{now: time.Unix(1_900_000_000, 0)}
		off := newRep(t, s, DefaultConfig(), c)
		for range 10 {
			off.Outcome(ctx, session("203.0.113.9", ""), refused)
		}
		if res := off.CheckMail(ctx, session("203.0.113.9", "x@y.example")); res.Verdict != filters.NoOpinion {
			t.Fatalf("limits off by default: %+v", res)
		}
		cfg := DefaultConfig()
		cfg.RejectAt, cfg.TempfailAt = 3, 1
		r := newRep(t, s, cfg, c)
		res := r.CheckMail(ctx, session("203.0.113.9", "x@y.example"))
		if res.Verdict != filters.Reject || res.Code != 550 || !strings.Contains(res.Message, "ip 203.0.113.9") ||
			!strings.Contains(res.Message, "10 of the last 10 messages refused") || !strings.Contains(res.Reason, "reject limit 3") {
			t.Fatalf("over the reject limit: %+v", res)
		}
		// The neighbour: only the network's score (3.2 with 10 refusals);
		// under reject 4 and at tempfail 1.
		cfg.RejectAt = 4
		r = newRep(t, s, cfg, c)
		res = r.CheckMail(ctx, session("203.0.113.10", "x@y.example"))
		if res.Verdict != filters.Tempfail || res.Code != 451 || !strings.Contains(res.Message, "network 203.0.113.0/24") {
			t.Fatalf("network over the tempfail limit: %+v", res)
		}
		// Our own refusals are not counted against the client.
		r.Outcome(ctx, session("203.0.113.9", ""), filters.Outcome{Stage: filters.StageMail, Verdict: filters.Reject, Filter: Name})
		if n, _ := r.Counts(ctx, Bucket{KindIP, "203.0.113.9"}, c.Now()); !near(n.Bad, 10) {
			t.Fatalf("own refusal counted: %+v", n)
		}
	})
}

// Two gateways on one Redis see one history.
func TestTwoGatewaysShareHistory(t *testing.T) {
	prefix := statetest.RedisPrefix(t)
	c := &clock{now: time.Unix(1_900_000_000, 0)}
	gw1 := newRep(t, statetest.Redis(t, prefix), DefaultConfig(), c)
	gw2 := newRep(t, statetest.Redis(t, prefix), DefaultConfig(), c)
	ctx := context.Background()
	for range 6 {
		gw1.Outcome(ctx, session("203.0.113.9", ""), refused)
	}
	if res := gw2.CheckConnect(ctx, session("203.0.113.9", "")); res.Vars[VarClient] != StatusBad {
		t.Fatalf("the other gateway: %+v", res)
	}
}

func TestResetForgets(t *testing.T) {
	statetest.Each(t, func(t *testing.T, s state.Store) {
		ctx := context.Background()
		c := &clock{now: time.Unix(1_900_000_000, 0)}
		r := newRep(t, s, DefaultConfig(), c)
		for range 5 {
			r.Outcome(ctx, session("203.0.113.9", ""), refused)
		}
		if err := r.Reset(ctx, Bucket{KindIP, "203.0.113.9"}); err != nil {
			t.Fatal(err)
		}
		if n, _ := r.Counts(ctx, Bucket{KindIP, "203.0.113.9"}, c.Now()); n.N() != 0 {
			t.Fatalf("after reset: %+v", n)
		}
		if n, _ := r.Counts(ctx, Bucket{KindNetwork, "203.0.113.0/24"}, c.Now()); !near(n.Bad, 5) {
			t.Fatalf("the network was reset too: %+v", n)
		}
	})
}

func TestStoreDown(t *testing.T) {
	ctx := context.Background()
	var logBuf bytes.Buffer
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return logBuf.Write(p) }), nil))
	down := statetest.Unavailable(t)
	r, err := New(Options{Config: DefaultConfig(), Store: down, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		res := r.CheckConnect(ctx, session("192.0.2.1", ""))
		if res.Verdict != filters.NoOpinion || res.Score != 0 || !strings.Contains(res.Reason, "state store failed") {
			t.Fatalf("store down (pass): %+v", res)
		}
		r.Outcome(ctx, session("192.0.2.1", ""), refused)
	}
	mu.Lock()
	n := strings.Count(logBuf.String(), "reputation degraded")
	mu.Unlock()
	if n != 1 {
		t.Fatalf("logged %d times; want once a minute", n)
	}
	cfg := DefaultConfig()
	cfg.OnStoreError = StoreErrorTempfail
	r, _ = New(Options{Config: cfg, Store: down})
	if res := r.CheckConnect(ctx, session("192.0.2.1", "")); res.Verdict != filters.Tempfail || res.Code != 451 {
		t.Fatalf("store down (tempfail): %+v", res)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func TestNewRefusesBadOptions(t *testing.T) {
	s := statetest.Embedded(t)
	for name, f := range map[string]func(*Config){
		"halflife":      func(c *Config) { c.HalfLife = time.Second },
		"v4 prefix":     func(c *Config) { c.IPv4Prefix = 33 },
		"maxscore":      func(c *Config) { c.MaxScore = 0 },
		"minscore":      func(c *Config) { c.MinScore = 1 },
		"evidence":      func(c *Config) { c.Evidence = 0 },
		"good over bad": func(c *Config) { c.GoodBelow = 9 },
		"nan":           func(c *Config) { c.Clean = math.NaN() },
	} {
		c := DefaultConfig()
		f(&c)
		if _, err := New(Options{Config: c, Store: s}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := New(Options{Config: DefaultConfig()}); err == nil {
		t.Error("no store: accepted")
	}
}
