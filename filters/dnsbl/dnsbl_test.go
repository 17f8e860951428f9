package dnsbl

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"postern/filters"
	"postern/filters/dns"
	"postern/filters/dns/dnstest"
	"postern/policy"
)

// testZone is the DNS data every test here asks: real lists on a real DNS
// server on 127.0.0.1.
func testZone() *dnstest.Zone {
	return dnstest.NewZone().Add(
		// bl.test: RFC 5782 test point, one listed IPv4 client with a
		// reason, one listed IPv6 client.
		`2.0.0.127.bl.test. 300 IN A 127.0.0.2`,
		`2.0.0.127.bl.test. 300 IN TXT "test point"`,
		`10.2.0.192.bl.test. 300 IN A 127.0.0.4`,
		`10.2.0.192.bl.test. 300 IN TXT "Listed: see https://bl.test/q?192.0.2.10"`,
		`20.2.0.192.bl.test. 300 IN A 127.0.0.2`,
		`1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.test. 300 IN A 127.0.0.2`,
		// second.test: also lists .10, with another code.
		`10.2.0.192.second.test. 300 IN A 127.0.0.3`,
		// wl.test: a DNSWL listing .20 and .10.
		`20.2.0.192.wl.test. 300 IN A 127.0.10.2`,
		`20.2.0.192.wl.test. 300 IN TXT "trusted sender"`,
		`10.2.0.192.wl.test. 300 IN A 127.0.10.1`,
		// broken.test: "lists the world" with a parked-domain answer.
		`10.2.0.192.broken.test. 300 IN A 192.0.2.99`,
		// refuse.test: answers the Spamhaus-style error code.
		`10.2.0.192.refuse.test. 300 IN A 127.255.255.254`,
		// loop1.test: answers 127.0.0.1, which is no listing.
		`10.2.0.192.loop1.test. 300 IN A 127.0.0.1`,
		// txt.test: a TXT-only list (Courier's "*").
		`10.2.0.192.txt.test. 300 IN TXT "Blocked by txt.test"`,
		// rhsbl.test: a domain list.
		`spam.example.rhsbl.test. 300 IN A 127.0.0.2`,
		`spam.example.rhsbl.test. 300 IN TXT "spam domain"`,
		`test.rhsbl.test. 300 IN A 127.0.0.2`,
	).Timeout("10.2.0.192.slow.test.")
}

func startDNS(t *testing.T) *dns.Resolver {
	t.Helper()
	srv := dnstest.Start(t, testZone())
	r, err := dns.New(dns.Options{Servers: []string{srv.Addr}, Timeout: 300 * time.Millisecond, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func mustConfig(t *testing.T, lines ...string) Config {
	t.Helper()
	var pl []policy.Line
	for i, l := range lines {
		pl = append(pl, policy.Line{File: "dnsbl", Num: i + 1, Text: l})
	}
	cfg, err := Parse(pl)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestReversedIP(t *testing.T) {
	for ip, want := range map[string]string{
		"192.0.2.99": "99.2.0.192",
		"127.0.0.2":  "2.0.0.127",
		// RFC 5782 section 2.4's example.
		"2001:db8:1:2:3:4:567:89ab": "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2",
		"::ffff:192.0.2.1":          "1.2.0.192",
	} {
		if got := ReversedIP(netip.MustParseAddr(ip)); got != want {
			t.Errorf("ReversedIP(%s) = %s; want %s", ip, got, want)
		}
	}
}

func TestQueryName(t *testing.T) {
	if q, err := QueryName("rhsbl.test", SubjectSender, "Spam.Example."); err != nil || q != "spam.example.rhsbl.test" {
		t.Errorf("domain query = %q, %v", q, err)
	}
	for _, bad := range []string{"", "[192.0.2.1]", "192.0.2.1", "a..b", "bad name.example", strings.Repeat("a", 64) + ".example"} {
		if _, err := QueryName("rhsbl.test", SubjectHELO, bad); !errors.Is(err, ErrBadSubject) {
			t.Errorf("QueryName(%q) err = %v; want ErrBadSubject", bad, err)
		}
	}
	if _, err := QueryName("bl.test", SubjectIP, "not-an-ip"); !errors.Is(err, ErrBadSubject) {
		t.Errorf("bad IP: err = %v", err)
	}
}

func TestCodes(t *testing.T) {
	var any Codes
	for addr, want := range map[string]bool{
		"127.0.0.2": true, "127.0.0.11": true, "127.1.2.3": true,
		"127.0.0.1":       false, // RFC 5782 section 5: never a listing
		"127.255.255.254": false, // refusal code
		"192.0.2.1":       false,
	} {
		if got := any.Match(netip.MustParseAddr(addr)); got != want {
			t.Errorf("default codes Match(%s) = %v; want %v", addr, got, want)
		}
	}
	c, err := ParseCodes("127.0.0.2-127.0.0.11, 127.0.1.0/24,&4,&0x10")
	if err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]bool{
		"127.0.0.2": true, "127.0.0.11": true, "127.0.0.33": false, "127.0.1.200": true,
		"127.0.2.4": true, "127.0.2.16": true, "127.0.2.3": false, "127.0.0.1": false,
	} {
		if got := c.Match(netip.MustParseAddr(addr)); got != want {
			t.Errorf("Match(%s) = %v; want %v", addr, got, want)
		}
	}
	if got := c.String(); got != "127.0.0.2-127.0.0.11,127.0.1.0-127.0.1.255,&4,&16" {
		t.Errorf("String = %q", got)
	}
	for _, bad := range []string{"", "1.2.3.4", "127.0.0.9-127.0.0.2", "&0", "&256", "127.0.0.0/7", "::1", "127.0.0.2,", "x"} {
		if _, err := ParseCodes(bad); err == nil {
			t.Errorf("ParseCodes(%q) accepted", bad)
		}
	}
}

func TestParse(t *testing.T) {
	cfg := mustConfig(t,
		`threshold 7`,
		`timeout 2s`,
		`dnserror tempfail`,
		`rejectstage mail`,
		`zen.example.org weight=10 codes=127.0.0.2-127.0.0.11 action=reject message="Listed by %z: %t"`,
		`list.dnswl.example type=allow action=accept`,
		`dbl.example on=helo,sender,from weight=3 action=score var=DBL`,
		`-allow=wl.example -block=bl.example,BLOCK/127.0.0.2,'Go away now'`,
		`BLACKLISTS="-block=a.example -block=b.example,SPAMMY"`,
		`-block=t.example,BLOCK,*`,
		`-block=c.example/127.0.0.3`,
	)
	if cfg.Threshold != 7 || cfg.Timeout != 2*time.Second || !cfg.DNSErrorTempfail || cfg.RejectStage != filters.StageMail {
		t.Errorf("globals = %+v", cfg)
	}
	want := []struct {
		name    string
		typ     ListType
		action  Action
		weight  float64
		v       string
		codes   string
		msg     string
		literal bool
		txtList bool
		subj    string
	}{
		{"zen.example.org", Block, ActionReject, 10, "", "127.0.0.2-127.0.0.11", "Listed by %z: %t", false, false, "ip"},
		{"list.dnswl.example", Allow, ActionAccept, DefaultAllowWeight, "", "any", "", false, false, "ip"},
		{"dbl.example", Block, ActionScore, 3, "DBL", "any", "", false, false, "helo,sender,from"},
		{"wl.example", Allow, ActionScore, 0, "BLOCK", "any", "", false, false, "ip"},
		{"bl.example", Block, ActionReject, DefaultBlockWeight, "BLOCK", "127.0.0.2", "Go away now", true, false, "ip"},
		{"a.example", Block, ActionReject, DefaultBlockWeight, "BLOCK", "any", "", false, false, "ip"},
		{"b.example", Block, ActionScore, 0, "SPAMMY", "any", "", false, false, "ip"},
		{"t.example", Block, ActionReject, DefaultBlockWeight, "BLOCK", "any", "", false, true, "ip"},
		{"c.example", Block, ActionReject, DefaultBlockWeight, "BLOCK", "127.0.0.3", "", false, false, "ip"},
	}
	if len(cfg.Zones) != len(want) {
		t.Fatalf("%d zones; want %d", len(cfg.Zones), len(want))
	}
	for i, w := range want {
		z := cfg.Zones[i]
		if z.Name != w.name || z.Type != w.typ || z.Action != w.action || z.Weight != w.weight || z.Var != w.v ||
			z.Codes.String() != w.codes || z.Message != w.msg || z.Literal != w.literal || z.TXTList != w.txtList ||
			subjectsKey(z.Subjects) != w.subj {
			t.Errorf("zone %d = %+v; want %+v", i, *z, w)
		}
	}
	if cfg.Zones[0].Origin != "dnsbl:5" {
		t.Errorf("origin = %q", cfg.Zones[0].Origin)
	}
}

func TestParseErrors(t *testing.T) {
	for _, bad := range []string{
		`zen.example.org weight=x`,
		`zen.example.org action=maybe`,
		`zen.example.org type=allow action=reject`,
		`zen.example.org type=block action=accept`,
		`zen.example.org codes=1.2.3.4`,
		`zen.example.org on=rcpt`,
		`zen.example.org var=DNSBL_SCORE`,
		`zen.example.org var=1X`,
		`zen.example.org nonsense=1`,
		`zen.example.org standalone`,
		`zen.example.org message="unterminated`,
		`localhost`,
		`-drop=BLOCK`,
		`-block=bl.example,BLOCK,Go away`,
		`-block=bl.example,BLOCK/127.0.0.2,*`,
		`-block=bl.example,BLOCK/1.2.3.4`,
		`threshold -1`,
		`timeout forever`,
		`dnserror maybe`,
		`rejectstage later`,
		`threshold`,
	} {
		_, err := Parse([]policy.Line{{File: "/etc/postern/dnsbl", Num: 3, Text: bad}})
		var pe *policy.Error
		if !errors.As(err, &pe) || pe.File != "/etc/postern/dnsbl" || pe.Line != 3 {
			t.Errorf("Parse(%q) err = %v; want a policy.Error at /etc/postern/dnsbl:3", bad, err)
		}
	}
	_, err := Parse([]policy.Line{{File: "f", Num: 1, Text: "bl.example"}, {File: "f", Num: 2, Text: "-block=bl.example"}})
	if err == nil || !strings.Contains(err.Error(), "f:2: zone bl.example (block) already configured at f:1") {
		t.Errorf("duplicate zone: err = %v", err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	cfg, err := Load(dir)
	if err != nil || len(cfg.Zones) != 0 || cfg.RejectStage != filters.StageRcpt {
		t.Fatalf("Load without setting = %+v, %v", cfg, err)
	}
	d := filepath.Join(dir, "dnsbl.d")
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(d, "10-courier"), []byte("# from esmtpd\n-block=bl.example\n"), 0o644)
	os.WriteFile(filepath.Join(d, "20-own"), []byte("\nthreshold 3\nrhsbl.example on=sender weight=2\n"), 0o644)
	cfg, err = Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Zones) != 2 || cfg.Zones[0].Name != "bl.example" || cfg.Zones[1].Name != "rhsbl.example" || cfg.Threshold != 3 {
		t.Fatalf("Load = %+v", cfg)
	}
	if cfg.Zones[1].Origin != filepath.Join(d, "20-own")+":3" {
		t.Errorf("origin = %s", cfg.Zones[1].Origin)
	}
	os.WriteFile(filepath.Join(d, "30-bad"), []byte("bad.example weight=lots\n"), 0o644)
	_, err = Load(dir)
	if err == nil || !strings.Contains(err.Error(), "30-bad:1:") {
		t.Errorf("bad file: err = %v", err)
	}
}

func TestAsk(t *testing.T) {
	r := startDNS(t)
	ctx := context.Background()
	zone := func(line string) *Zone {
		zs, err := ParseZoneLine(line)
		if err != nil {
			t.Fatal(err)
		}
		return zs[0]
	}
	bl := zone("bl.test")

	// RFC 5782 section 5 test points.
	if l := Ask(ctx, r, bl, SubjectIP, "127.0.0.2"); !l.Listed || l.Code.String() != "127.0.0.2" || l.TXT != "test point" || l.Err != nil {
		t.Errorf("test point 127.0.0.2 = %+v; want listed", l)
	}
	if l := Ask(ctx, r, bl, SubjectIP, "127.0.0.1"); l.Listed || l.Err != nil {
		t.Errorf("test point 127.0.0.1 = %+v; want not listed", l)
	}
	l := Ask(ctx, r, bl, SubjectIP, "192.0.2.10")
	if !l.Listed || l.Code.String() != "127.0.0.4" || l.Query != "10.2.0.192.bl.test" || !strings.HasPrefix(l.TXT, "Listed: see") {
		t.Errorf("192.0.2.10 = %+v", l)
	}
	if l := Ask(ctx, r, bl, SubjectIP, "2001:db8::1"); !l.Listed {
		t.Errorf("IPv6 2001:db8::1 = %+v; want listed", l)
	}
	if l := Ask(ctx, r, zone("bl.test codes=127.0.0.2"), SubjectIP, "192.0.2.10"); l.Listed || len(l.Answers) != 1 {
		t.Errorf("code filter: %+v; want not listed with one answer", l)
	}
	if l := Ask(ctx, r, zone("bl.test codes=&4"), SubjectIP, "192.0.2.10"); !l.Listed {
		t.Errorf("bitmask &4 on 127.0.0.4: %+v; want listed", l)
	}
	if l := Ask(ctx, r, zone("broken.test"), SubjectIP, "192.0.2.10"); l.Listed || !errors.Is(l.Err, ErrOutsideLoopback) {
		t.Errorf("broken zone: %+v; want ErrOutsideLoopback", l)
	}
	if l := Ask(ctx, r, zone("refuse.test"), SubjectIP, "192.0.2.10"); l.Listed || !errors.Is(l.Err, ErrRefused) {
		t.Errorf("refusing zone: %+v; want ErrRefused", l)
	}
	if l := Ask(ctx, r, zone("loop1.test"), SubjectIP, "192.0.2.10"); l.Listed || l.Err != nil {
		t.Errorf("127.0.0.1 answer: %+v; want not listed", l)
	}
	if l := Ask(ctx, r, zone("slow.test"), SubjectIP, "192.0.2.10"); l.Listed || !dns.IsTemporary(l.Err) {
		t.Errorf("timeout: %+v; want a temporary error", l)
	}
	txtZone, _ := ParseZoneLine("-block=txt.test,BLOCK,*")
	if l := Ask(ctx, r, txtZone[0], SubjectIP, "192.0.2.10"); !l.Listed || l.TXT != "Blocked by txt.test" {
		t.Errorf("TXT list: %+v", l)
	}
	if l := Ask(ctx, r, zone("rhsbl.test on=sender"), SubjectSender, "SPAM.example"); !l.Listed || l.TXT != "spam domain" {
		t.Errorf("RHSBL: %+v", l)
	}
}

func newFilter(t *testing.T, r *dns.Resolver, lines ...string) *Filter {
	t.Helper()
	cfg := mustConfig(t, lines...)
	cfg.Timeout = time.Second
	f, err := New(Options{Config: cfg, Resolver: r})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// run drives the filter through a session's stages the way the pipeline
// does: each result is appended to the session and its score added.
type run struct {
	t *testing.T
	f *Filter
	s *filters.Session
}

func (x *run) add(res filters.Result) filters.Result {
	x.s.Results = append(x.s.Results, res)
	x.s.Score += res.Score
	return res
}

func (x *run) connect() filters.Result {
	return x.add(x.f.CheckConnect(context.Background(), x.s))
}
func (x *run) helo(name string) filters.Result {
	x.s.HELO = name
	return x.add(x.f.CheckHelo(context.Background(), x.s))
}
func (x *run) mail(from string) filters.Result {
	x.s.From = from
	return x.add(x.f.CheckMail(context.Background(), x.s))
}
func (x *run) rcpt(to string) filters.Result {
	res := x.add(x.f.CheckRcpt(context.Background(), x.s, to))
	if res.Verdict != filters.Reject && res.Verdict != filters.Tempfail {
		x.s.Rcpts = append(x.s.Rcpts, to)
	}
	return res
}
func (x *run) data(msg string) filters.Result {
	return x.add(x.f.CheckData(context.Background(), x.s, bytes.NewReader([]byte(msg))))
}

func session(t *testing.T, f *Filter, ip string) *run {
	return &run{t: t, f: f, s: &filters.Session{ID: "t", ClientIP: netip.MustParseAddr(ip)}}
}

func TestFilterRejectsAtRcpt(t *testing.T) {
	r := startDNS(t)
	f := newFilter(t, r, `bl.test weight=10 message="Listed by %z: %t (%c)"`)
	x := session(t, f, "192.0.2.10")
	res := x.connect()
	if res.Verdict != filters.NoOpinion || res.Score != 10 || res.Vars[VarListed] != "bl.test" || res.Vars[VarResult] != "reject" {
		t.Fatalf("connect = %+v; want no opinion yet, score 10", res)
	}
	if res := x.helo("mail.example.net"); res.Verdict != filters.NoOpinion || res.Score != 0 {
		t.Fatalf("helo = %+v; want no opinion, no new score", res)
	}
	if res := x.mail("a@example.net"); res.Verdict != filters.NoOpinion || res.Score != 0 {
		t.Fatalf("mail = %+v", res)
	}
	res = x.rcpt("b@example.org")
	if res.Verdict != filters.Reject || res.Code != 550 || res.Enhanced != "5.7.1" || res.Score != 0 {
		t.Fatalf("rcpt = %+v; want 550 5.7.1 reject", res)
	}
	if want := "Listed by bl.test: Listed: see https://bl.test/q?192.0.2.10 (127.0.0.4)"; res.Message != want {
		t.Errorf("message = %q; want %q", res.Message, want)
	}
	if x.s.Score != 10 {
		t.Errorf("session score = %v; want 10 (every hit counted once)", x.s.Score)
	}
	if !strings.Contains(res.Reason, "bl.test block 192.0.2.10 (127.0.0.4)") {
		t.Errorf("reason = %q", res.Reason)
	}
}

func TestFilterRejectsAtConnect(t *testing.T) {
	r := startDNS(t)
	f := newFilter(t, r, `rejectstage connect`, `bl.test`)
	res := session(t, f, "192.0.2.10").connect()
	if res.Verdict != filters.Reject || res.Code != 554 {
		t.Fatalf("connect = %+v; want 554", res)
	}
	if res := session(t, f, "192.0.2.77").connect(); res.Verdict != filters.NoOpinion || res.Vars[VarResult] != "clean" {
		t.Fatalf("clean client = %+v", res)
	}
}

func TestFilterThreshold(t *testing.T) {
	r := startDNS(t)
	for _, tc := range []struct {
		threshold string
		want      filters.Verdict
	}{{"7", filters.Reject}, {"8", filters.NoOpinion}, {"0", filters.NoOpinion}} {
		f := newFilter(t, r, "threshold "+tc.threshold,
			"bl.test weight=3 action=score", "second.test weight=4 action=score")
		x := session(t, f, "192.0.2.10")
		x.connect()
		res := x.rcpt("b@example.org")
		if res.Verdict != tc.want {
			t.Errorf("threshold %s: verdict %v (%s); want %v", tc.threshold, res.Verdict, res.Reason, tc.want)
		}
		if tc.want == filters.Reject && res.Message != "Listed by bl.test, second.test (score 7, limit 7)" {
			t.Errorf("threshold message = %q", res.Message)
		}
	}
}

func TestFilterAllowlist(t *testing.T) {
	r := startDNS(t)
	// An accept-action DNSWL hit trusts the client even though bl.test lists it.
	f := newFilter(t, r, "wl.test type=allow action=accept weight=-3", "bl.test")
	x := session(t, f, "192.0.2.20")
	res := x.connect()
	if res.Verdict != filters.Accept || res.Score != 2 || res.Vars[VarAllow] != "wl.test" {
		t.Fatalf("connect = %+v; want accept, score 5-3", res)
	}
	if res := x.rcpt("b@example.org"); res.Verdict != filters.Accept {
		t.Fatalf("rcpt = %+v; want accept", res)
	}
	res = x.data("From: a@example.net\r\n\r\nbody\r\n")
	if len(res.AuthResults) != 1 || res.AuthResults[0] != `dnswl=pass dns.zone=wl.test policy.ip=127.0.10.2 policy.txt="trusted sender"` {
		t.Errorf("auth results = %q", res.AuthResults)
	}
	// A score-only DNSWL lowers the score but does not save a listed client.
	f = newFilter(t, r, "wl.test type=allow weight=-3", "bl.test")
	x = session(t, f, "192.0.2.20")
	x.connect()
	if res := x.rcpt("b@example.org"); res.Verdict != filters.Reject {
		t.Fatalf("score-only allow: rcpt = %+v; want reject", res)
	}
}

func TestFilterCourierSemantics(t *testing.T) {
	r := startDNS(t)
	// -allow first: BLOCK is set (empty) by wl.test, so bl.test is skipped.
	f := newFilter(t, r, "-allow=wl.test -block=bl.test")
	x := session(t, f, "192.0.2.20")
	res := x.connect()
	if v, ok := res.Vars["BLOCK"]; !ok || v != "" || res.Vars["BLOCK_ZONE"] != "wl.test" || res.Vars["BLOCK_IP"] != "127.0.10.2" {
		t.Errorf("vars = %v; want BLOCK empty from wl.test", res.Vars)
	}
	if res := x.rcpt("b@example.org"); res.Verdict != filters.NoOpinion || !strings.Contains(res.Reason, "ignored: BLOCK already set") {
		t.Errorf("allowed client: rcpt = %+v", res)
	}
	// -block alone: BLOCK holds the message, the client is refused.
	f = newFilter(t, r, "-block=bl.test")
	x = session(t, f, "192.0.2.10")
	res = x.connect()
	if res.Vars["BLOCK"] == "" || res.Vars["BLOCK_TXT"] == "" || res.Vars["BLOCK_ZONE"] != "bl.test" {
		t.Errorf("vars = %v", res.Vars)
	}
	if res := x.rcpt("b@example.org"); res.Verdict != filters.Reject {
		t.Errorf("-block: rcpt = %+v; want reject", res)
	}
	// Custom message taken literally, /ip selects the code.
	f = newFilter(t, r, "-block=bl.test,BLOCK/127.0.0.4,'Go away, 100% spammer'")
	x = session(t, f, "192.0.2.10")
	x.connect()
	if res := x.rcpt("b@example.org"); res.Verdict != filters.Reject || res.Message != "Go away, 100% spammer" {
		t.Errorf("custom message: %+v", res)
	}
	f = newFilter(t, r, "-block=bl.test,BLOCK/127.0.0.2")
	x = session(t, f, "192.0.2.10")
	x.connect()
	if res := x.rcpt("b@example.org"); res.Verdict != filters.NoOpinion {
		t.Errorf("/127.0.0.2 against answer 127.0.0.4: %+v; want no opinion", res)
	}
	// Another variable only informs the rules.
	f = newFilter(t, r, "-block=bl.test,SPAMMY")
	x = session(t, f, "192.0.2.10")
	res = x.connect()
	if res.Vars["SPAMMY"] == "" || res.Score != 0 {
		t.Errorf("custom var: %+v", res)
	}
	if res := x.rcpt("b@example.org"); res.Verdict != filters.NoOpinion {
		t.Errorf("custom var: rcpt = %+v; want no opinion", res)
	}
	// TXT list: the TXT is the message.
	f = newFilter(t, r, "-block=txt.test,BLOCK,*")
	x = session(t, f, "192.0.2.10")
	x.connect()
	if res := x.rcpt("b@example.org"); res.Verdict != filters.Reject || res.Message != "Blocked by txt.test" {
		t.Errorf("TXT list: %+v", res)
	}
}

func TestFilterBrokenZonesNeverReject(t *testing.T) {
	r := startDNS(t)
	f := newFilter(t, r, "broken.test", "refuse.test", "loop1.test")
	x := session(t, f, "192.0.2.10")
	x.connect()
	res := x.rcpt("b@example.org")
	if res.Verdict != filters.NoOpinion || res.Score != 0 {
		t.Fatalf("rcpt = %+v; want no opinion", res)
	}
	if res.Vars[VarErrors] != "broken.test refuse.test" || !strings.Contains(res.Reason, "outside 127.0.0.0/8") {
		t.Errorf("errors = %q, reason %q", res.Vars[VarErrors], res.Reason)
	}
}

func TestFilterDNSErrors(t *testing.T) {
	r := startDNS(t)
	f := newFilter(t, r, "dnserror tempfail", "slow.test")
	f.cfg.Timeout = 500 * time.Millisecond
	x := session(t, f, "192.0.2.10")
	if res := x.connect(); res.Verdict != filters.NoOpinion || res.Vars[VarResult] != "temperror" {
		t.Fatalf("connect = %+v", res)
	}
	res := x.rcpt("b@example.org")
	if res.Verdict != filters.Tempfail || res.Code != 451 || res.Enhanced != "4.4.3" {
		t.Fatalf("rcpt = %+v; want 451 4.4.3", res)
	}
	f = newFilter(t, r, "dnserror ignore", "slow.test", "bl.test")
	f.cfg.Timeout = 500 * time.Millisecond
	x = session(t, f, "192.0.2.10")
	x.connect()
	if res := x.rcpt("b@example.org"); res.Verdict != filters.Reject {
		t.Fatalf("a listing still counts when another zone fails: %+v", res)
	}
	x = session(t, f, "192.0.2.99")
	x.connect()
	if res := x.rcpt("b@example.org"); res.Verdict != filters.NoOpinion {
		t.Fatalf("dnserror ignore: %+v; want no opinion", res)
	}
}

func TestFilterRHSBL(t *testing.T) {
	r := startDNS(t)
	f := newFilter(t, r, "rhsbl.test on=helo,sender,from weight=2 action=score var=RHS", "threshold 4")
	x := session(t, f, "192.0.2.77")
	if res := x.helo("spam.example"); res.Score != 2 || res.Vars["RHS_ZONE"] != "rhsbl.test" {
		t.Fatalf("helo = %+v", res)
	}
	if res := x.mail("x@ham.example"); res.Score != 0 {
		t.Fatalf("mail = %+v", res)
	}
	if res := x.rcpt("b@example.org"); res.Verdict != filters.NoOpinion {
		t.Fatalf("rcpt = %+v; want no opinion (score 2 < 4)", res)
	}
	res := x.data("Subject: hi\r\nFrom: \"Spam\" <boss@spam.example>, other@ham.example\r\n\r\nbody\r\n")
	if res.Verdict != filters.Reject || res.Score != 2 || x.s.Score != 4 {
		t.Fatalf("data = %+v, session score %v; want reject at 4", res, x.s.Score)
	}
	// A new transaction with a listed sender, HELO clean.
	f = newFilter(t, r, "rhsbl.test on=sender")
	x = session(t, f, "192.0.2.77")
	x.helo("mx.ham.example")
	x.mail("someone@Spam.Example")
	res = x.rcpt("b@example.org")
	if res.Verdict != filters.Reject || res.Message != "Sender domain spam.example is listed by rhsbl.test: spam domain" {
		t.Fatalf("sender RHSBL: %+v", res)
	}
	// Null sender and address-literal HELO are not looked up.
	x = session(t, f, "192.0.2.77")
	x.helo("[192.0.2.77]")
	x.mail("")
	if res := x.rcpt("b@example.org"); res.Verdict != filters.NoOpinion || res.Reason != "dnsbl: nothing to look up" {
		t.Fatalf("null sender: %+v", res)
	}
}

func TestFilterScoreFollowsTransaction(t *testing.T) {
	r := startDNS(t)
	f := newFilter(t, r, "rhsbl.test on=sender weight=2 action=score")
	x := session(t, f, "192.0.2.77")
	x.mail("a@spam.example")
	if x.s.Score != 2 {
		t.Fatalf("score = %v", x.s.Score)
	}
	// RSET and a clean sender: the total drops back.
	x.mail("a@ham.example")
	if x.s.Score != 0 {
		t.Fatalf("score after new sender = %v; want 0", x.s.Score)
	}
}

func TestFilterIPv6(t *testing.T) {
	r := startDNS(t)
	f := newFilter(t, r, "bl.test")
	x := session(t, f, "2001:db8::1")
	x.connect()
	if res := x.rcpt("b@example.org"); res.Verdict != filters.Reject {
		t.Fatalf("IPv6 listed client: %+v", res)
	}
	x = session(t, f, "::ffff:192.0.2.10")
	x.connect()
	if res := x.rcpt("b@example.org"); res.Verdict != filters.Reject || !strings.Contains(res.Message, "192.0.2.10") {
		t.Fatalf("IPv4-mapped listed client: %+v", res)
	}
}

func TestNewNeedsResolver(t *testing.T) {
	if _, err := New(Options{}); err == nil {
		t.Fatal("New without resolver accepted")
	}
}

// TestNoGoroutineLeak: lookups that time out end with the evaluation.
func TestNoGoroutineLeak(t *testing.T) {
	r := startDNS(t)
	f := newFilter(t, r, "slow.test", "bl.test", "wl.test type=allow")
	f.cfg.Timeout = 200 * time.Millisecond
	before := runtime.NumGoroutine()
	for i := 0; i < 5; i++ {
		ev := f.Evaluate(context.Background(), Subjects{SubjectIP: {"192.0.2.10"}})
		if len(ev.Lookups) != 3 || len(ev.TempErrors()) != 1 {
			t.Fatalf("evaluation %d: %+v", i, ev)
		}
	}
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines after the evaluations; %d before", n, before)
	}
}
