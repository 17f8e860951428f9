package dmarc_test

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"postern/filters"
	"postern/filters/dkim"
	"postern/filters/dmarc"
	"postern/filters/dns"
	"postern/filters/dns/dnstest"
	"postern/filters/spf"
)

func newResolver(t testing.TB, addr string) *dns.Resolver {
	t.Helper()
	r, err := dns.New(dns.Options{Servers: []string{addr}, Timeout: time.Second, Attempts: 1})
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
			buf := make([]byte, 1<<16)
			t.Errorf("goroutines leaked: %d before, %d after\n%s", before, n, buf[:runtime.Stack(buf, true)])
		}
	})
}

func TestParseRecord(t *testing.T) {
	cases := []struct {
		in      string
		want    string // Record.String(), or "" when an error is expected
		err     error
		noteHas string
	}{
		{"v=DMARC1; p=reject", "v=DMARC1; p=reject; adkim=r; aspf=r; pct=100", nil, ""},
		{"v=DMARC1;p=quarantine;sp=none;adkim=s;aspf=s;pct=25;rua=mailto:d@example.org", "v=DMARC1; p=quarantine; sp=none; adkim=s; aspf=s; pct=25", nil, ""},
		{"v=DMARC1; P=Reject; ADKIM=S", "v=DMARC1; p=reject; adkim=s; aspf=r; pct=100", nil, ""},
		{"v=DMARC1; p=none; future=tag; ri=86400; fo=1", "v=DMARC1; p=none; adkim=r; aspf=r; pct=100", nil, ""},
		{"v=DMARC1; p=reject; adkim=x", "v=DMARC1; p=reject; adkim=r; aspf=r; pct=100", nil, "adkim"},
		{"v=DMARC1; p=reject; pct=150", "v=DMARC1; p=reject; adkim=r; aspf=r; pct=100", nil, "pct"},
		{"v=DMARC1; p=reject; pct=abc", "v=DMARC1; p=reject; adkim=r; aspf=r; pct=100", nil, "pct"},
		{"v=DMARC1; p=reject; pct=0", "v=DMARC1; p=reject; adkim=r; aspf=r; pct=0", nil, ""},
		{"v=DMARC1; rua=mailto:agg@example.org", "v=DMARC1; p=none; adkim=r; aspf=r; pct=100", nil, "p=none"},
		{"v=DMARC1; p=bogus; rua=mailto:agg@example.org", "v=DMARC1; p=none; adkim=r; aspf=r; pct=100", nil, "p=none"},
		{"v=DMARC1; p=reject; sp=bogus; rua=mailto:a@example.org", "v=DMARC1; p=none; adkim=r; aspf=r; pct=100", nil, "sp="},
		{"v=DMARC1; p=reject; p=none", "v=DMARC1; p=reject; adkim=r; aspf=r; pct=100", nil, "repeated"},
		{"v=DMARC1", "", dmarc.ErrBadRecord, ""},
		{"v=DMARC1; p=bogus", "", dmarc.ErrBadRecord, ""},
		{"v=DMARC1; p=reject; sp=bogus", "", dmarc.ErrBadRecord, ""},
		{"p=reject; v=DMARC1", "", dmarc.ErrNotDMARC, ""},
		{"v=dmarc1; p=reject", "", dmarc.ErrNotDMARC, ""},
		{"v=spf1 -all", "", dmarc.ErrNotDMARC, ""},
		{"", "", dmarc.ErrNotDMARC, ""},
	}
	for _, c := range cases {
		rec, err := dmarc.ParseRecord(c.in)
		if c.err != nil {
			if !errors.Is(err, c.err) {
				t.Errorf("%q: error %v, want %v", c.in, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		if rec.String() != c.want {
			t.Errorf("%q: got %s, want %s", c.in, rec, c.want)
		}
		if c.noteHas != "" && !strings.Contains(strings.Join(rec.Notes, "|"), c.noteHas) {
			t.Errorf("%q: notes %q lack %q", c.in, rec.Notes, c.noteHas)
		}
	}
}

func TestOrganizationalDomainAndAlignment(t *testing.T) {
	for in, want := range map[string]string{
		"mail.example.org":     "example.org",
		"Example.ORG.":         "example.org",
		"a.b.example.co.uk":    "example.co.uk",
		"co.uk":                "co.uk",
		"foo.blogspot.com":     "foo.blogspot.com", // a private-section suffix
		"x.y.foo.blogspot.com": "foo.blogspot.com",
	} {
		if got := dmarc.OrganizationalDomain(in); got != want {
			t.Errorf("OrganizationalDomain(%q) = %q, want %q", in, got, want)
		}
	}
	cases := []struct {
		id, from string
		mode     dmarc.Alignment
		want     bool
	}{
		{"example.org", "example.org", dmarc.Strict, true},
		{"EXAMPLE.org.", "example.org", dmarc.Strict, true},
		{"mail.example.org", "example.org", dmarc.Strict, false},
		{"mail.example.org", "example.org", dmarc.Relaxed, true},
		{"example.org", "news.example.org", dmarc.Relaxed, true},
		{"example.org.evil.example", "example.org", dmarc.Relaxed, false},
		{"a.example.co.uk", "b.example.co.uk", dmarc.Relaxed, true},
		{"example.co.uk", "other.co.uk", dmarc.Relaxed, false},
		{"", "example.org", dmarc.Relaxed, false},
	}
	for _, c := range cases {
		if got := dmarc.Aligned(c.id, c.from, c.mode); got != c.want {
			t.Errorf("Aligned(%q, %q, %s) = %v", c.id, c.from, c.mode, got)
		}
	}
}

func TestFromDomain(t *testing.T) {
	cases := []struct {
		fields []string
		want   string
		err    error
	}{
		{[]string{" Alice <alice@Example.ORG>"}, "example.org", nil},
		{[]string{" alice@example.org (Alice)"}, "example.org", nil},
		{[]string{` "Doe, John" <j@example.org>, Jane <jane@EXAMPLE.org>`}, "example.org", nil},
		{[]string{" =?koi8-r?B?8NLJ18XU?= <a@example.org>"}, "example.org", nil},
		{[]string{" a@bücher.example"}, "xn--bcher-kva.example", nil},
		{nil, "", dmarc.ErrNoFrom},
		{[]string{" a@example.org", " b@example.org"}, "", dmarc.ErrMultipleFrom},
		{[]string{" a@example.org, b@evil.example"}, "", dmarc.ErrMultipleAuthors},
		{[]string{" undisclosed"}, "", dmarc.ErrBadFrom},
		{[]string{""}, "", dmarc.ErrBadFrom},
		{[]string{" a@[192.0.2.1]"}, "", dmarc.ErrBadFrom},
	}
	for _, c := range cases {
		got, err := dmarc.FromDomain(c.fields)
		if c.err != nil {
			if !errors.Is(err, c.err) {
				t.Errorf("%q: error %v, want %v", c.fields, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%q: got %q, %v; want %q", c.fields, got, err, c.want)
		}
	}

	hdr := "Received: x\r\nfrom : Alice\r\n <alice@example.org>\r\nSubject: s\r\n\r\nFrom: body@not.header\r\n"
	fields, err := dmarc.ReadFromField(strings.NewReader(hdr), 0)
	if err != nil || len(fields) != 1 || fields[0] != " Alice <alice@example.org>" {
		t.Errorf("ReadFromField: %q, %v", fields, err)
	}
	if _, err := dmarc.ReadFromField(strings.NewReader("X: "+strings.Repeat("a", 3000)+"\r\n\r\n"), 1000); !errors.Is(err, dmarc.ErrHeaderTooLarge) {
		t.Errorf("oversize header: %v", err)
	}
}

// world is the DNS of the tests: DMARC policies and SPF records.
func world(t *testing.T, extra ...string) (*dns.Resolver, *dnstest.Server) {
	t.Helper()
	z := dnstest.NewZone().Add(
		`_dmarc.example.org. 300 IN TXT "v=DMARC1; p=reject; sp=quarantine; rua=mailto:dmarc@example.org"`,
		`_dmarc.strict.example. 300 IN TXT "v=DMARC1; p=reject; adkim=s; aspf=s"`,
		`_dmarc.quarantine.example. 300 IN TXT "v=DMARC1; p=quarantine"`,
		`_dmarc.sampled.example. 300 IN TXT "v=DMARC1; p=reject; pct=30"`,
		`_dmarc.lenient.example. 300 IN TXT "v=DMARC1; p=none"`,
		`_dmarc.own.example.org. 300 IN TXT "v=DMARC1; p=none"`,
		`_dmarc.two.example. 300 IN TXT "v=DMARC1; p=reject"`,
		`_dmarc.two.example. 300 IN TXT "v=DMARC1; p=none"`,
		`_dmarc.mixed.example. 300 IN TXT "v=spf1 -all"`,
		`_dmarc.mixed.example. 300 IN TXT "v=DMARC1; p=reject"`,
		`_dmarc.broken.example. 300 IN TXT "v=DMARC1; p=maybe"`,
		`example.org. 300 IN TXT "v=spf1 ip4:192.0.2.1 -all"`,
		`bounces.example.org. 300 IN TXT "v=spf1 ip4:192.0.2.1 -all"`,
	).ServFail("_dmarc.flaky.example.")
	z.Add(extra...)
	srv := dnstest.Start(t, z)
	return newResolver(t, srv.Addr), srv
}

func fixed(n int) func(int) int { return func(int) int { return n } }

func TestEvaluate(t *testing.T) {
	checkGoroutines(t)
	r, _ := world(t)
	cases := []struct {
		name    string
		in      dmarc.Input
		rand    int
		status  dmarc.Status
		policy  dmarc.Policy
		dis     dmarc.Policy
		recDom  string
		sampled bool
	}{
		{"dkim aligned exactly", dmarc.Input{FromDomain: "example.org", DKIMDomains: []string{"example.org"}}, 0, dmarc.Pass, "reject", "none", "example.org", false},
		{"dkim relaxed subdomain", dmarc.Input{FromDomain: "example.org", DKIMDomains: []string{"esp.example.net", "mail.example.org"}}, 0, dmarc.Pass, "reject", "none", "example.org", false},
		{"dkim strict subdomain fails", dmarc.Input{FromDomain: "strict.example", DKIMDomains: []string{"mail.strict.example"}}, 0, dmarc.Fail, "reject", "reject", "strict.example", false},
		{"spf relaxed aligned", dmarc.Input{FromDomain: "example.org", SPF: spf.Pass, SPFDomain: "bounces.example.org"}, 0, dmarc.Pass, "reject", "none", "example.org", false},
		{"spf strict not aligned", dmarc.Input{FromDomain: "strict.example", SPF: spf.Pass, SPFDomain: "bounces.strict.example"}, 0, dmarc.Fail, "reject", "reject", "strict.example", false},
		{"spf strict aligned", dmarc.Input{FromDomain: "strict.example", SPF: spf.Pass, SPFDomain: "strict.example"}, 0, dmarc.Pass, "reject", "none", "strict.example", false},
		{"spf pass unaligned", dmarc.Input{FromDomain: "example.org", SPF: spf.Pass, SPFDomain: "evil.example"}, 0, dmarc.Fail, "reject", "reject", "example.org", false},
		{"spf fail aligned domain", dmarc.Input{FromDomain: "example.org", SPF: spf.Fail, SPFDomain: "example.org"}, 0, dmarc.Fail, "reject", "reject", "example.org", false},
		{"org fallback uses sp", dmarc.Input{FromDomain: "news.example.org"}, 0, dmarc.Fail, "quarantine", "quarantine", "example.org", false},
		{"subdomain with own record", dmarc.Input{FromDomain: "own.example.org"}, 0, dmarc.Fail, "none", "none", "own.example.org", false},
		{"org fallback without sp uses p", dmarc.Input{FromDomain: "deep.sub.quarantine.example"}, 0, dmarc.Fail, "quarantine", "quarantine", "quarantine.example", false},
		{"pct selects", dmarc.Input{FromDomain: "sampled.example"}, 29, dmarc.Fail, "reject", "reject", "sampled.example", false},
		{"pct spares", dmarc.Input{FromDomain: "sampled.example"}, 30, dmarc.Fail, "reject", "quarantine", "sampled.example", true},
		{"no record", dmarc.Input{FromDomain: "nodmarc.example"}, 0, dmarc.None, "", "none", "", false},
		{"dns trouble", dmarc.Input{FromDomain: "flaky.example"}, 0, dmarc.TempError, "", "none", "", false},
		{"two records", dmarc.Input{FromDomain: "two.example"}, 0, dmarc.PermError, "", "none", "", false},
		{"non-dmarc TXT ignored", dmarc.Input{FromDomain: "mixed.example"}, 0, dmarc.Fail, "reject", "reject", "mixed.example", false},
		{"broken record", dmarc.Input{FromDomain: "broken.example"}, 0, dmarc.PermError, "", "none", "", false},
		{"spf temperror", dmarc.Input{FromDomain: "example.org", SPF: spf.TempError, SPFDomain: "example.org"}, 0, dmarc.TempError, "reject", "none", "example.org", false},
		{"dkim temperror", dmarc.Input{FromDomain: "example.org", DKIMTempError: true}, 0, dmarc.TempError, "reject", "none", "example.org", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ev := dmarc.Evaluate(context.Background(), r, c.in, dmarc.EvalOptions{RandIntN: fixed(c.rand)})
			if ev.Status != c.status || ev.Policy != c.policy || ev.Disposition != c.dis || ev.RecordDomain != c.recDom || ev.SampledOut != c.sampled {
				t.Errorf("got status=%s policy=%q dis=%q record at %q sampled out=%v (%s); want %s %q %q %q %v",
					ev.Status, ev.Policy, ev.Disposition, ev.RecordDomain, ev.SampledOut, ev.Reason,
					c.status, c.policy, c.dis, c.recDom, c.sampled)
			}
			if ev.Reason == "" {
				t.Error("no reason")
			}
		})
	}
}

func TestAuthResult(t *testing.T) {
	r, _ := world(t)
	ev := dmarc.Evaluate(context.Background(), r, dmarc.Input{FromDomain: "example.org"}, dmarc.EvalOptions{})
	if got := ev.AuthResult(); got != "dmarc=fail (p=reject dis=reject) header.from=example.org" {
		t.Errorf("got %q", got)
	}
	ev = dmarc.Evaluate(context.Background(), r, dmarc.Input{FromDomain: "nodmarc.example"}, dmarc.EvalOptions{})
	if got := ev.AuthResult(); got != "dmarc=none header.from=nodmarc.example" {
		t.Errorf("got %q", got)
	}
}

type bytesMessage struct{ *bytes.Reader }

func (m bytesMessage) Size() int64 { return int64(m.Len()) }

func message(s string) filters.Message { return bytesMessage{bytes.NewReader([]byte(s))} }

func mail(from string) string {
	return "From: " + from + "\r\nTo: bob@example.net\r\nSubject: hello\r\nDate: Wed, 25 Nov 2026 12:00:00 +0000\r\nMessage-ID: <x@y>\r\n\r\nHello Bob.\r\n"
}

func spfResult(code, domain string) filters.Result {
	return filters.Result{Filter: "spf", Vars: map[string]string{"SPF": code, "SPF_DOMAIN": domain}}
}

func dkimNone() filters.Result {
	return filters.Result{Filter: "dkim", Vars: map[string]string{"DKIM": "none", "DKIM_DOMAINS": ""}}
}

func TestFilterRejectQuarantinePass(t *testing.T) {
	checkGoroutines(t)
	r, _ := world(t)
	f, err := dmarc.New(dmarc.Options{Resolver: r, RandIntN: fixed(0)})
	if err != nil {
		t.Fatal(err)
	}
	var _ filters.DataChecker = f

	// p=reject, SPF passed only for an unrelated domain, no DKIM: 550.
	s := &filters.Session{From: "x@evil.example", Results: []filters.Result{spfResult("pass", "evil.example"), dkimNone()}}
	res := f.CheckData(context.Background(), s, message(mail("Bank <service@example.org>")))
	if res.Verdict != filters.Reject || res.Code != 550 || res.Enhanced != "5.7.1" || res.Message != "Rejected by DMARC policy for example.org" {
		t.Errorf("reject: %+v", res)
	}
	if len(res.AuthResults) != 1 || res.AuthResults[0] != "dmarc=fail (p=reject dis=reject) header.from=example.org" {
		t.Errorf("auth results %q", res.AuthResults)
	}
	if res.Vars["DMARC"] != "fail" || res.Vars["DMARC_POLICY"] != "reject" || res.Vars["DMARC_DISPOSITION"] != "reject" || res.Vars["DMARC_DOMAIN"] != "example.org" {
		t.Errorf("vars %v", res.Vars)
	}

	// The same with an aligned SPF pass: accepted.
	s.Results = []filters.Result{spfResult("pass", "example.org"), dkimNone()}
	res = f.CheckData(context.Background(), s, message(mail("service@example.org")))
	if res.Verdict != filters.NoOpinion || res.Vars["DMARC"] != "pass" || res.Score >= 0 {
		t.Errorf("aligned spf: %+v", res)
	}

	// Subdomain under sp=quarantine: Quarantine.
	s.Results = []filters.Result{spfResult("fail", "evil.example"), dkimNone()}
	res = f.CheckData(context.Background(), s, message(mail("news@news.example.org")))
	if res.Verdict != filters.Quarantine || res.AuthResults[0] != "dmarc=fail (p=quarantine dis=quarantine) header.from=news.example.org" {
		t.Errorf("quarantine: %+v", res)
	}

	// p=none: recorded, no verdict.
	res = f.CheckData(context.Background(), s, message(mail("a@lenient.example")))
	if res.Verdict != filters.NoOpinion || res.Vars["DMARC"] != "fail" {
		t.Errorf("p=none: %+v", res)
	}
}

func TestFilterLocalOverrideAndOptions(t *testing.T) {
	r, _ := world(t)
	s := &filters.Session{From: "x@evil.example", Results: []filters.Result{spfResult("fail", "evil.example"), dkimNone()}}

	f, _ := dmarc.New(dmarc.Options{Resolver: r, Override: map[dmarc.Policy]dmarc.Policy{dmarc.PolicyReject: dmarc.PolicyQuarantine}})
	res := f.CheckData(context.Background(), s, message(mail("service@example.org")))
	if res.Verdict != filters.Quarantine || !strings.Contains(res.AuthResults[0], "(p=reject dis=quarantine)") || !strings.Contains(res.Reason, "local policy") ||
		res.Vars["DMARC_OVERRIDE"] != "local" {
		t.Errorf("override: %+v", res)
	}
	if _, err := dmarc.New(dmarc.Options{Resolver: r, Override: map[dmarc.Policy]dmarc.Policy{"reject": "drop"}}); err == nil {
		t.Error("bad override accepted")
	}
	if _, err := dmarc.New(dmarc.Options{}); err == nil {
		t.Error("no resolver accepted")
	}

	// pct through the filter: a draw outside pct= downgrades reject.
	f, _ = dmarc.New(dmarc.Options{Resolver: r, RandIntN: fixed(99)})
	res = f.CheckData(context.Background(), s, message(mail("a@sampled.example")))
	if res.Verdict != filters.Quarantine {
		t.Errorf("pct spared: %+v", res)
	}
	f, _ = dmarc.New(dmarc.Options{Resolver: r, RandIntN: fixed(0)})
	if res = f.CheckData(context.Background(), s, message(mail("a@sampled.example"))); res.Verdict != filters.Reject {
		t.Errorf("pct selected: %+v", res)
	}

	// DNS trouble: no opinion by default, 451 when configured.
	res = f.CheckData(context.Background(), s, message(mail("a@flaky.example")))
	if res.Verdict != filters.NoOpinion || res.Vars["DMARC"] != "temperror" {
		t.Errorf("temperror default: %+v", res)
	}
	ft, _ := dmarc.New(dmarc.Options{Resolver: r, TempFail: true})
	res = ft.CheckData(context.Background(), s, message(mail("a@flaky.example")))
	if res.Verdict != filters.Tempfail || res.Code != 451 || res.Enhanced != "4.7.1" {
		t.Errorf("temperror tempfail: %+v", res)
	}

	// Authenticated clients are our users: skipped unless asked.
	auth := &filters.Session{AuthUser: "alice", Results: s.Results}
	if res = f.CheckData(context.Background(), auth, message(mail("service@example.org"))); res.Verdict != filters.NoOpinion || res.Vars["DMARC"] != "none" {
		t.Errorf("authenticated: %+v", res)
	}
	fa, _ := dmarc.New(dmarc.Options{Resolver: r, CheckAuthenticated: true})
	if res = fa.CheckData(context.Background(), auth, message(mail("service@example.org"))); res.Verdict != filters.Reject {
		t.Errorf("authenticated, checked: %+v", res)
	}
}

func TestFilterBadFrom(t *testing.T) {
	r, _ := world(t)
	s := &filters.Session{Results: []filters.Result{spfResult("none", ""), dkimNone()}}
	twoFroms := "From: a@example.org\r\nFrom: b@example.org\r\n\r\nx\r\n"
	noFrom := "Subject: x\r\n\r\nx\r\n"
	f, _ := dmarc.New(dmarc.Options{Resolver: r})
	for _, m := range []string{twoFroms, noFrom, mail("a@example.org, b@evil.example"), mail("nobody")} {
		res := f.CheckData(context.Background(), s, message(m))
		if res.Verdict != filters.NoOpinion || res.Vars["DMARC"] != "permerror" || res.AuthResults[0] != "dmarc=permerror" || res.Score <= 0 {
			t.Errorf("%q: %+v", m, res)
		}
	}
	f, _ = dmarc.New(dmarc.Options{Resolver: r, RejectBadFrom: true})
	if res := f.CheckData(context.Background(), s, message(twoFroms)); res.Verdict != filters.Reject || res.Code != 550 {
		t.Errorf("RejectBadFrom: %+v", res)
	}
}

// TestFilterRunsSPFAndDKIMWhenAlone: with no spf or dkim result in the
// session, the filter does both checks itself over the same DNS.
func TestFilterRunsSPFAndDKIMWhenAlone(t *testing.T) {
	checkGoroutines(t)
	key, err := dkim.GenerateKey("ed25519", 0)
	if err != nil {
		t.Fatal(err)
	}
	k := dkim.Key{Domain: "mail.example.org", Selector: "sel", Signer: key}
	rec, _ := dkim.DNSRecord(k)
	r, _ := world(t, strings.Replace(rec, " IN TXT ", " 300 IN TXT ", 1))
	f, _ := dmarc.New(dmarc.Options{Resolver: r})

	// SPF: 192.0.2.1 is allowed for example.org.
	s := &filters.Session{ClientIP: netip.MustParseAddr("192.0.2.1"), HELO: "mx.example.org", From: "bounce@example.org"}
	res := f.CheckData(context.Background(), s, message(mail("a@example.org")))
	if res.Vars["DMARC"] != "pass" || !strings.Contains(res.Reason, "SPF passed for example.org") {
		t.Errorf("spf by itself: %+v", res)
	}
	// Another client: SPF fails; a DKIM signature of a subdomain aligns.
	s = &filters.Session{ClientIP: netip.MustParseAddr("198.51.100.7"), HELO: "relay.example.net", From: "bounce@example.org"}
	field, err := dkim.NewSigner([]dkim.Key{k}).Sign(context.Background(), "mail.example.org", strings.NewReader(mail("a@example.org")))
	if err != nil {
		t.Fatal(err)
	}
	res = f.CheckData(context.Background(), s, message(field+"\r\n"+mail("a@example.org")))
	if res.Vars["DMARC"] != "pass" || !strings.Contains(res.Reason, "DKIM signature of mail.example.org") {
		t.Errorf("dkim by itself: %+v", res)
	}
	// Tampered: both fail, p=reject.
	tampered := strings.Replace(field+"\r\n"+mail("a@example.org"), "Hello Bob", "Pay Bob", 1)
	res = f.CheckData(context.Background(), s, message(tampered))
	if res.Verdict != filters.Reject || res.Message != "Rejected by DMARC policy for example.org" {
		t.Errorf("tampered: %+v", res)
	}
}
