package behaviour

import (
	"context"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"postern/filters"
	"postern/filters/dns"
	"postern/filters/dns/dnstest"
)

// zone is the reverse and forward DNS the tests resolve against.
func zone() *dnstest.Zone {
	z := dnstest.NewZone().Add(
		// 192.0.2.1: confirmed.
		`1.2.0.192.in-addr.arpa. 300 IN PTR mail.good.example.`,
		`mail.good.example. 300 IN A 192.0.2.1`,
		// 192.0.2.2: the PTR name points elsewhere.
		`2.2.0.192.in-addr.arpa. 300 IN PTR liar.example.`,
		`liar.example. 300 IN A 203.0.113.9`,
		// 192.0.2.3: no PTR at all.
		// 192.0.2.5: two names, the second confirms.
		`5.2.0.192.in-addr.arpa. 300 IN PTR nowhere.example.`,
		`5.2.0.192.in-addr.arpa. 300 IN PTR mx2.good.example.`,
		`mx2.good.example. 300 IN A 192.0.2.5`,
		// 192.0.2.6: the PTR name's A lookup times out.
		`6.2.0.192.in-addr.arpa. 300 IN PTR slow.example.`,
		// IPv6, confirmed through AAAA.
		`5.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa. 300 IN PTR v6.good.example.`,
		`v6.good.example. 300 IN AAAA 2001:db8::25`,
		`v6.good.example. 300 IN A 192.0.2.99`,
		// HELO names.
		`helo.good.example. 300 IN A 192.0.2.1`,
		`other.good.example. 300 IN A 198.51.100.1`,
	)
	z.Timeout("slow.example")
	z.Timeout("4.2.0.192.in-addr.arpa")
	z.Timeout("slowhelo.example")
	return z
}

func resolver(t *testing.T) *dns.Resolver {
	t.Helper()
	srv := dnstest.Start(t, zone())
	r, err := dns.New(dns.Options{Servers: []string{srv.Addr}, Timeout: 300 * time.Millisecond, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func checkGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(3 * time.Second)
		for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > before {
			t.Errorf("goroutines leaked: %d before, %d after", before, n)
		}
	})
}

func TestCheckFCrDNS(t *testing.T) {
	checkGoroutines(t)
	r := resolver(t)
	ctx := context.Background()
	for _, tc := range []struct {
		ip, status, name string
	}{
		{"192.0.2.1", FCrDNSPass, "mail.good.example"},
		{"::ffff:192.0.2.1", FCrDNSPass, "mail.good.example"},
		{"192.0.2.2", FCrDNSFail, ""},
		{"192.0.2.3", FCrDNSNone, ""},
		{"192.0.2.4", FCrDNSTempError, ""},
		{"192.0.2.5", FCrDNSPass, "mx2.good.example"},
		{"192.0.2.6", FCrDNSTempError, ""},
		{"2001:db8::25", FCrDNSPass, "v6.good.example"},
	} {
		got := CheckFCrDNS(ctx, r, netip.MustParseAddr(tc.ip), 10)
		if got.Status != tc.status || got.Name != tc.name {
			t.Errorf("%s: %s %q (%v); want %s %q", tc.ip, got.Status, got.Name, got.Err, tc.status, tc.name)
		}
	}
	// The bound on names: with one name allowed, 192.0.2.5's confirming
	// second name is never looked at (whichever order the answer has, at
	// most one forward lookup happens).
	if got := CheckFCrDNS(ctx, r, netip.MustParseAddr("192.0.2.5"), 1); len(got.Names) != 1 {
		t.Errorf("maxNames 1: checked %v", got.Names)
	}
}

func TestConnectFCrDNSIsScoredNotRejected(t *testing.T) {
	checkGoroutines(t)
	opt := DefaultOptions()
	opt.Resolver = resolver(t)
	f := New(opt)
	ctx := context.Background()
	for _, tc := range []struct {
		ip, fcrdns string
		score      float64
	}{
		{"192.0.2.1", "pass", 0},
		{"192.0.2.2", "fail", 1.5},
		{"192.0.2.3", "none", 1},
		{"192.0.2.4", "temperror", 0},
	} {
		r := f.CheckConnect(ctx, &filters.Session{ClientIP: netip.MustParseAddr(tc.ip)})
		if r.Verdict != filters.NoOpinion || r.Vars[VarFCrDNS] != tc.fcrdns || r.Score != tc.score || r.Filter != "behaviour" {
			t.Errorf("%s: %v FCRDNS=%s score %v (%s)", tc.ip, r.Verdict, r.Vars[VarFCrDNS], r.Score, r.Reason)
		}
		if tc.fcrdns == "pass" && r.Vars[VarFCrDNSName] != "mail.good.example" {
			t.Errorf("FCRDNS_NAME=%q", r.Vars[VarFCrDNSName])
		}
		if tc.fcrdns == "fail" && r.Vars[VarPTR] != "liar.example" {
			t.Errorf("PTR=%q", r.Vars[VarPTR])
		}
	}
	// A name the gateway already verified is trusted without DNS.
	r := f.CheckConnect(ctx, &filters.Session{ClientIP: netip.MustParseAddr("192.0.2.3"), ClientName: "known.example"})
	if r.Vars[VarFCrDNS] != "pass" || r.Vars[VarFCrDNSName] != "known.example" {
		t.Errorf("ClientName set: %v", r.Vars)
	}
}

func TestRequireFCrDNS(t *testing.T) {
	opt := DefaultOptions()
	opt.Resolver = resolver(t)
	opt.RequireFCrDNS = true
	f := New(opt)
	ctx := context.Background()
	r := f.CheckConnect(ctx, &filters.Session{ClientIP: netip.MustParseAddr("192.0.2.2")})
	if r.Verdict != filters.Reject || r.Code != 550 || r.Enhanced != "5.7.25" {
		t.Errorf("fail: %+v", r)
	}
	r = f.CheckConnect(ctx, &filters.Session{ClientIP: netip.MustParseAddr("192.0.2.4")})
	if r.Verdict != filters.Tempfail || r.Code != 451 || r.Enhanced != "4.7.25" {
		t.Errorf("temperror: %+v", r)
	}
	r = f.CheckConnect(ctx, &filters.Session{ClientIP: netip.MustParseAddr("192.0.2.1")})
	if r.Verdict != filters.NoOpinion {
		t.Errorf("pass: %+v", r)
	}
}

func TestEarlyTalkerAndPipelining(t *testing.T) {
	ctx := context.Background()
	f := New(DefaultOptions()) // no resolver: protocol checks only
	r := f.CheckConnect(ctx, &filters.Session{ClientIP: netip.MustParseAddr("192.0.2.1"), EarlyTalker: true})
	if r.Verdict != filters.Reject || r.Code != 554 || r.Enhanced != "5.5.1" || r.Vars[VarEarlyTalker] != "yes" {
		t.Fatalf("early talker: %+v", r)
	}
	if !strings.Contains(r.Message, "before the greeting") {
		t.Fatalf("message %q", r.Message)
	}
	s := &filters.Session{ClientIP: netip.MustParseAddr("192.0.2.1"), HELO: "mail.good.example"}
	if r := f.CheckHelo(ctx, s); r.Verdict != filters.NoOpinion {
		t.Fatalf("clean HELO: %+v", r)
	}
	s.PipeliningViolation = true
	r = f.CheckMail(ctx, s)
	if r.Verdict != filters.Reject || r.Vars[VarPipelining] != "violation" {
		t.Fatalf("pipelining: %+v", r)
	}

	// Scored instead: the score is added once per session, not per stage.
	opt := DefaultOptions()
	opt.EarlyTalker, opt.Pipelining = ActionScore, ActionScore
	f = New(opt)
	s = &filters.Session{ClientIP: netip.MustParseAddr("192.0.2.1"), EarlyTalker: true, PipeliningViolation: true, HELO: "mail.good.example"}
	r = f.CheckConnect(ctx, s)
	if r.Verdict != filters.NoOpinion || r.Score != 8 {
		t.Fatalf("scored: %v score %v", r.Verdict, r.Score)
	}
	s.Results = append(s.Results, r)
	for _, r := range []filters.Result{f.CheckHelo(ctx, s), f.CheckMail(ctx, s), f.CheckRcpt(ctx, s, "x@y"), f.CheckData(ctx, s, nil)} {
		if r.Score != 0 {
			t.Fatalf("violation scored again at a later stage: %+v", r)
		}
	}

	opt.EarlyTalker = ActionIgnore
	r = New(opt).CheckConnect(ctx, &filters.Session{ClientIP: netip.MustParseAddr("192.0.2.1"), EarlyTalker: true})
	if r.Verdict != filters.NoOpinion || r.Score != 0 || r.Vars[VarEarlyTalker] != "yes" {
		t.Fatalf("ignored: %+v", r)
	}
}

func TestHeloChecks(t *testing.T) {
	checkGoroutines(t)
	opt := DefaultOptions()
	opt.Resolver = resolver(t)
	opt.OwnNames = []string{"mx.ours.example"}
	opt.OwnIPs = []netip.Addr{netip.MustParseAddr("198.51.100.25")}
	f := New(opt)
	ctx := context.Background()
	for _, tc := range []struct {
		client, helo        string
		check, resolves, mt string
		score               float64
	}{
		{"192.0.2.1", "helo.good.example", "ok", "yes", "yes", 0},
		{"192.0.2.1", "HELO.good.example.", "ok", "yes", "yes", 0},
		{"192.0.2.1", "other.good.example", "ok", "yes", "no", 0.5},
		{"192.0.2.1", "nxdomain.good.example", "ok", "no", "unknown", 1},
		{"192.0.2.1", "slowhelo.example", "ok", "temperror", "unknown", 0},
		{"192.0.2.1", "[192.0.2.1]", "ok", "unchecked", "yes", 0},
		{"2001:db8::25", "[IPv6:2001:db8::25]", "ok", "unchecked", "yes", 0},
		{"192.0.2.1", "[192.0.2.77]", "literal-mismatch", "unchecked", "no", 2},
		{"192.0.2.1", "192.0.2.1", "bareip", "unchecked", "yes", 2},
		{"192.0.2.1", "localhost", "nofqdn", "unchecked", "unknown", 1.5},
		{"192.0.2.1", "bad_name.example", "invalid", "unchecked", "unknown", 2.5},
		{"192.0.2.1", "", "invalid", "unchecked", "unknown", 2.5},
		{"192.0.2.1", "1.2.3.4.5", "invalid", "unchecked", "unknown", 2.5},
		{"192.0.2.1", "mx.ours.example", "ours", "unchecked", "unknown", 4},
		{"192.0.2.1", "[198.51.100.25]", "ours", "unchecked", "unknown", 4},
		{"198.51.100.25", "mx.ours.example", "ok", "no", "unknown", 1}, // the server itself
		{"127.0.0.1", "mx.ours.example", "ok", "no", "unknown", 1},
	} {
		r := f.CheckHelo(ctx, &filters.Session{ClientIP: netip.MustParseAddr(tc.client), HELO: tc.helo})
		v := r.Vars
		if r.Verdict != filters.NoOpinion || v[VarHeloCheck] != tc.check || v[VarHeloResolves] != tc.resolves || v[VarHeloMatch] != tc.mt || r.Score != tc.score {
			t.Errorf("%s HELO %q: %v check=%s resolves=%s match=%s score=%v (%s); want %s %s %s %v",
				tc.client, tc.helo, r.Verdict, v[VarHeloCheck], v[VarHeloResolves], v[VarHeloMatch], r.Score, r.Reason,
				tc.check, tc.resolves, tc.mt, tc.score)
		}
	}
	// A HELO equal to the client's confirmed reverse name matches even if
	// its A record points elsewhere.
	s := &filters.Session{ClientIP: netip.MustParseAddr("192.0.2.2"), HELO: "liar.example",
		Results: []filters.Result{{Filter: "behaviour", Vars: map[string]string{VarFCrDNSName: "liar.example"}}}}
	if r := f.CheckHelo(ctx, s); r.Vars[VarHeloMatch] != "yes" || r.Score != 0 {
		t.Errorf("HELO = verified name: %+v", r)
	}
}

func TestParseHelo(t *testing.T) {
	for arg, want := range map[string]HeloKind{
		"mail.example.com":        HeloDomain,
		"mail.example.com.":       HeloDomain,
		"a-b.c9.example":          HeloDomain,
		"xn--bcher-kva.example":   HeloDomain,
		"DESKTOP-4711":            HeloSingleLabel,
		"[192.0.2.1]":             HeloAddressLiteral,
		"[IPv6:2001:db8::1]":      HeloAddressLiteral,
		"[ipv6:::1]":              HeloAddressLiteral,
		"[x-tag:opaque]":          HeloAddressLiteral,
		"192.0.2.1":               HeloBareIP,
		"2001:db8::1":             HeloBareIP,
		"":                        HeloInvalid,
		"[192.0.2.1":              HeloInvalid,
		"[2001:db8::1]":           HeloInvalid,
		"[IPv6:192.0.2.1]":        HeloInvalid,
		"[300.1.1.1]":             HeloInvalid,
		"-bad.example":            HeloInvalid,
		"bad-.example":            HeloInvalid,
		"a..example":              HeloInvalid,
		"under_score.example":     HeloInvalid,
		"spa ce.example":          HeloInvalid,
		".":                       HeloInvalid,
		"192.0.2":                 HeloInvalid,
		strings.Repeat("a", 64):   HeloInvalid,
		strings.Repeat("a.", 200): HeloInvalid,
	} {
		if got, _ := ParseHelo(arg); got != want {
			t.Errorf("ParseHelo(%q) = %v; want %v", arg, got, want)
		}
	}
}
