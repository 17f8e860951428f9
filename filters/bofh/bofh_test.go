package bofh

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"postern/filters"
	"postern/filters/dns"
	"postern/filters/dns/dnstest"
	"postern/filters/state"
	"postern/policy"
)

func testZone() *dnstest.Zone {
	return dnstest.NewZone().Add(
		`example.org. 300 IN MX 10 mx.example.org.`,
		`mx.example.org. 300 IN A 192.0.2.25`,
		`badmx.example. 300 IN MX 10 mx.bad.example.`,
		`mx.bad.example. 300 IN A 198.51.100.7`,
		`aonly.example. 300 IN A 192.0.2.30`,
		`aonly-bad.example. 300 IN A 198.51.100.7`,
		`nullmx.example. 300 IN MX 0 .`,
		`ipmx.example. 300 IN MX 10 192.0.2.5.`,
		`nomail.example. 300 IN TXT "exists, no mail"`,
		// freemail: one confirmed relay, one unconfirmed PTR, one without PTR.
		`40.2.0.192.in-addr.arpa. 300 IN PTR mail-40.gmail.test.`,
		`mail-40.gmail.test. 300 IN A 192.0.2.40`,
		`41.2.0.192.in-addr.arpa. 300 IN PTR fake.gmail.test.`,
		`fake.gmail.test. 300 IN A 192.0.2.99`,
		`43.2.0.192.in-addr.arpa. 300 IN PTR out.googlemail.test.`,
		`out.googlemail.test. 300 IN A 192.0.2.43`,
	).Timeout("slow.example.").Timeout("44.2.0.192.in-addr.arpa.")
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

func mustParse(t *testing.T, text string) Config {
	t.Helper()
	var lines []policy.Line
	for i, l := range strings.Split(text, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, policy.Line{File: "bofh", Num: i + 1, Text: l})
		}
	}
	cfg, err := Parse(lines)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestParse(t *testing.T) {
	cfg := mustParse(t, `
badfrom spammer@example.net
badfrom @spam.example
badfrom @.spam.example
badfrom postmaster@.spam.example
badmx 198.51.100.7
badmx 203.0.113.0/24
freemail gmail.test googlemail.test
spamtrap Trap@Example.ORG
maxrcpts 20 hard
spamtrapblock 2h
opt BOFHCHECKDNS=0
opt BOFHCHECKHELO=2
opt BOFHHEADERLIMIT=500
opt BOFHNOBASE64TEXT=1
opt BOFHSPFHELO=pass,none
opt BOFHSUPPRESSBACKSCATTER=smtp
`)
	if len(cfg.BadFrom) != 4 || cfg.BadFrom[2].String() != "@.spam.example" || cfg.BadFrom[3].Local != "postmaster" {
		t.Errorf("badfrom = %+v", cfg.BadFrom)
	}
	if len(cfg.BadMX) != 2 || cfg.BadMX[0].String() != "198.51.100.7/32" {
		t.Errorf("badmx = %v", cfg.BadMX)
	}
	if len(cfg.Freemail) != 1 || cfg.Freemail[0].Domain != "gmail.test" || cfg.Freemail[0].Relays[0] != "googlemail.test" {
		t.Errorf("freemail = %+v", cfg.Freemail)
	}
	if !cfg.Spamtraps["trap@example.org"] || cfg.MaxRcpts != 20 || !cfg.MaxRcptsHard || cfg.SpamtrapBlock != 2*time.Hour {
		t.Errorf("cfg = %+v", cfg)
	}
	if cfg.CheckDNS || cfg.CheckHELO != 2 || cfg.HeaderLimit != MinHeaderLimit || !cfg.NoBase64Text {
		t.Errorf("opts = %+v", cfg)
	}
	if len(cfg.Notices) != 2 || !strings.HasPrefix(cfg.Notices[0].String(), "bofh:16: opt BOFHSPFHELO=pass,none: not applied here") {
		t.Errorf("notices = %v", cfg.Notices)
	}
	def := mustParse(t, "")
	if !def.CheckDNS || def.HeaderLimit != DefaultHeaderLimit || def.MaxRcpts != 0 || def.SpamtrapBlock != DefaultSpamtrapBlock {
		t.Errorf("defaults = %+v", def)
	}
}

func TestParseErrors(t *testing.T) {
	for _, bad := range []string{
		"badfrom", "badfrom nobody", "badfrom @", "badfrom @bad..domain",
		"badmx", "badmx mx.example.org",
		"freemail", "freemail not_a domain!",
		"spamtrap", "spamtrap @example.org", "spamtrap trap",
		"maxrcpts", "maxrcpts 0", "maxrcpts 10 soft", "maxrcpts ten",
		"spamtrapblock forever", "spamtrapblock -1h",
		"opt", "opt BOFHCHECKHELO=3", "opt BOFHHEADERLIMIT=x", "opt BOFHNOBASE64TEXT=yes", "opt NOSUCH=1",
		"frobnicate yes",
	} {
		_, err := Parse([]policy.Line{{File: "/etc/postern/bofh", Num: 7, Text: bad}})
		var pe *policy.Error
		if !errors.As(err, &pe) || pe.File != "/etc/postern/bofh" || pe.Line != 7 {
			t.Errorf("Parse(%q) err = %v; want a policy.Error at /etc/postern/bofh:7", bad, err)
		}
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	cfg, err := Load(dir)
	if err != nil || !cfg.CheckDNS {
		t.Fatalf("no setting: %+v, %v", cfg, err)
	}
	os.WriteFile(filepath.Join(dir, "bofh"), []byte("# Courier's file, copied\nbadfrom @spam.example\n\nmaxrcpts 5\nbogus\n"), 0o644)
	_, err = Load(dir)
	if err == nil || !strings.Contains(err.Error(), "bofh:5: unknown directive") {
		t.Fatalf("err = %v", err)
	}
}

type run struct {
	f *Filter
	s *filters.Session
}

func newRun(f *Filter, ip string) *run {
	return &run{f: f, s: &filters.Session{ID: "t", ClientIP: netip.MustParseAddr(ip)}}
}

func (x *run) add(r filters.Result) filters.Result {
	x.s.Results = append(x.s.Results, r)
	return r
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
	r := x.add(x.f.CheckRcpt(context.Background(), x.s, to))
	if r.Verdict == filters.NoOpinion {
		x.s.Rcpts = append(x.s.Rcpts, to)
	}
	return r
}
func (x *run) data(msg string) filters.Result {
	return x.add(x.f.CheckData(context.Background(), x.s, bytes.NewReader([]byte(msg))))
}

func newFilter(t *testing.T, r *dns.Resolver, st state.Store, text string) *Filter {
	t.Helper()
	f, err := New(Options{Config: mustParse(t, text), Resolver: r, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func wantRefusal(t *testing.T, what string, res filters.Result, code int, enhanced, check, msgPart string) {
	t.Helper()
	if res.Code != code || res.Enhanced != enhanced || res.Vars[VarCheck] != check || !strings.Contains(res.Message, msgPart) {
		t.Errorf("%s: got %d %s %q (%s, %s); want %d %s %q (%s)", what, res.Code, res.Enhanced, res.Message,
			res.Vars[VarCheck], res.Reason, code, enhanced, msgPart, check)
	}
	wantVerdict := filters.Reject
	if code < 500 {
		wantVerdict = filters.Tempfail
	}
	if res.Verdict != wantVerdict {
		t.Errorf("%s: verdict %v; want %v", what, res.Verdict, wantVerdict)
	}
}

func TestBadFrom(t *testing.T) {
	r := startDNS(t)
	f := newFilter(t, r, nil, "opt BOFHCHECKDNS=0\nbadfrom Spammer@example.org\nbadfrom @spam.example\nbadfrom @.sub.example\nbadfrom abuse@.list.example")
	for from, refused := range map[string]bool{
		"spammer@example.org": true, "SPAMMER@Example.Org": true, "other@example.org": false,
		"x@spam.example": true, "x@a.spam.example": false,
		"x@a.sub.example": true, "x@sub.example": false,
		"abuse@a.list.example": true, "other@a.list.example": false,
		"": false,
	} {
		res := newRun(f, "192.0.2.25").mail(from)
		if got := res.Verdict == filters.Reject; got != refused {
			t.Errorf("MAIL FROM:<%s>: %v (%s); want refused=%v", from, res.Verdict, res.Reason, refused)
		}
		if refused {
			wantRefusal(t, from, res, 550, "5.7.1", "badfrom", "Sender rejected: "+from)
		}
	}
}

func TestCheckDNSAndBadMX(t *testing.T) {
	r := startDNS(t)
	f := newFilter(t, r, nil, "badmx 198.51.100.7")
	x := newRun(f, "192.0.2.77")
	if res := x.mail("a@example.org"); res.Verdict != filters.NoOpinion {
		t.Errorf("good domain: %+v", res)
	}
	if res := x.mail("a@aonly.example"); res.Verdict != filters.NoOpinion {
		t.Errorf("implicit MX: %+v", res)
	}
	wantRefusal(t, "badmx via MX", x.mail("a@badmx.example"), 550, "5.7.1", "badmx", "Mail server at 198.51.100.7 is blocked")
	wantRefusal(t, "badmx via implicit MX", x.mail("a@aonly-bad.example"), 550, "5.7.1", "badmx", "198.51.100.7")
	wantRefusal(t, "no such domain", x.mail("a@nowhere.example"), 550, "5.1.8", "checkdns", "Domain does not exist: nowhere.example")
	wantRefusal(t, "no mail records", x.mail("a@nomail.example"), 550, "5.1.8", "checkdns", "Domain does not exist")
	wantRefusal(t, "null MX", x.mail("a@nullmx.example"), 550, "5.7.27", "checkdns", "null MX")
	wantRefusal(t, "MX is an address", x.mail("a@ipmx.example"), 550, "5.1.8", "checkdns", "RFC 1035")
	wantRefusal(t, "DNS timeout", x.mail("a@slow.example"), 451, "4.4.3", "checkdns", "Try again later")

	off := newFilter(t, r, nil, "opt BOFHCHECKDNS=0\nbadmx 198.51.100.7")
	if res := newRun(off, "192.0.2.77").mail("a@nowhere.example"); res.Verdict != filters.NoOpinion {
		t.Errorf("BOFHCHECKDNS=0: %+v", res)
	}
}

func TestFreemail(t *testing.T) {
	r := startDNS(t)
	f := newFilter(t, r, nil, "opt BOFHCHECKDNS=0\nfreemail gmail.test googlemail.test")
	if res := newRun(f, "192.0.2.40").mail("joe@gmail.test"); res.Verdict != filters.NoOpinion {
		t.Errorf("confirmed relay: %+v", res)
	}
	if res := newRun(f, "192.0.2.43").mail("joe@gmail.test"); res.Verdict != filters.NoOpinion {
		t.Errorf("relay in the second domain: %+v", res)
	}
	wantRefusal(t, "unconfirmed PTR", newRun(f, "192.0.2.41").mail("joe@gmail.test"), 550, "5.7.1", "freemail",
		"joe@gmail.test can be accepted only from gmail.test's mail relays")
	wantRefusal(t, "no PTR", newRun(f, "192.0.2.42").mail("joe@gmail.test"), 550, "5.7.1", "freemail", "gmail.test")
	if res := newRun(f, "192.0.2.44").mail("joe@gmail.test"); res.Verdict != filters.NoOpinion {
		t.Errorf("PTR timeout (Courier's softdnserr passes): %+v", res)
	}
	if res := newRun(f, "192.0.2.42").mail("joe@example.org"); res.Verdict != filters.NoOpinion {
		t.Errorf("not a freemail domain: %+v", res)
	}
	// The gateway's verified name is used when it has one.
	x := newRun(f, "192.0.2.42")
	x.s.ClientName = "relay7.googlemail.test"
	if res := x.mail("joe@gmail.test"); res.Verdict != filters.NoOpinion {
		t.Errorf("gateway-verified name: %+v", res)
	}
	// Authenticated clients are exempt.
	x = newRun(f, "192.0.2.42")
	x.s.AuthUser = "joe"
	if res := x.mail("joe@gmail.test"); res.Verdict != filters.NoOpinion {
		t.Errorf("authenticated: %+v", res)
	}
}

func TestCheckHELO(t *testing.T) {
	r := startDNS(t)
	f := newFilter(t, r, nil, "opt BOFHCHECKHELO=1")
	for _, tc := range []struct {
		ip, helo string
		ok       bool
		code     int
		msg      string
	}{
		{"192.0.2.25", "mx.example.org", true, 0, ""},
		{"192.0.2.25", "example.org", true, 0, ""}, // through its MX
		{"192.0.2.26", "[192.0.2.26]", true, 0, ""},
		{"2001:db8::26", "[IPv6:2001:db8::26]", true, 0, ""},
		{"192.0.2.26", "mx.example.org", false, 550, "HELO mx.example.org does not match 192.0.2.26"},
		{"192.0.2.26", "nowhere.example", false, 550, "HELO nowhere.example does not exist"},
		{"192.0.2.26", "[192.0.2.27]", false, 550, "does not match"},
		{"192.0.2.26", "slow.example", false, 451, "failed. Try again later"},
	} {
		res := newRun(f, tc.ip).helo(tc.helo)
		if tc.ok {
			if res.Verdict != filters.NoOpinion {
				t.Errorf("%s HELO %s: %+v", tc.ip, tc.helo, res)
			}
			continue
		}
		enh := "5.7.1"
		if tc.code == 451 {
			enh = "4.4.3"
		}
		wantRefusal(t, tc.ip+" HELO "+tc.helo, res, tc.code, enh, "checkhelo", tc.msg)
	}
	soft := newFilter(t, r, nil, "opt BOFHCHECKHELO=2")
	wantRefusal(t, "BOFHCHECKHELO=2", newRun(soft, "192.0.2.26").helo("mx.example.org"), 451, "4.7.1", "checkhelo", "does not match")
	// smtpaccess overrides the default per client, as in Courier.
	x := newRun(f, "192.0.2.26")
	x.s.Access = map[string]string{"BOFHCHECKHELO": "0"}
	if res := x.helo("mx.example.org"); res.Verdict != filters.NoOpinion {
		t.Errorf("BOFHCHECKHELO=0 from smtpaccess: %+v", res)
	}
	off := newFilter(t, r, nil, "")
	x = newRun(off, "192.0.2.26")
	x.s.Access = map[string]string{"BOFHCHECKHELO": "1"}
	if res := x.helo("mx.example.org"); res.Verdict != filters.Reject {
		t.Errorf("BOFHCHECKHELO=1 from smtpaccess: %+v", res)
	}
}

func TestMaxRcpts(t *testing.T) {
	for _, tc := range []struct {
		conf string
		code int
		enh  string
	}{{"maxrcpts 2", 452, "4.5.3"}, {"maxrcpts 2 hard", 550, "5.5.3"}} {
		f := newFilter(t, nil, nil, "opt BOFHCHECKDNS=0\n"+tc.conf)
		x := newRun(f, "192.0.2.26")
		x.mail("")
		for i := 1; i <= 2; i++ {
			if res := x.rcpt(fmt.Sprintf("u%d@example.org", i)); res.Verdict != filters.NoOpinion {
				t.Fatalf("%s: rcpt %d: %+v", tc.conf, i, res)
			}
		}
		wantRefusal(t, tc.conf, x.rcpt("u3@example.org"), tc.code, tc.enh, "maxrcpts", "Too many recipients")
	}
}

func TestHeaderLimitAndBase64(t *testing.T) {
	f := newFilter(t, nil, nil, "opt BOFHCHECKDNS=0\nopt BOFHHEADERLIMIT=1000\nopt BOFHNOBASE64TEXT=1")
	small := "From: a@example.org\r\nSubject: hi\r\n\r\nbody\r\n"
	if res := newRun(f, "192.0.2.1").data(small); res.Verdict != filters.NoOpinion {
		t.Errorf("small header: %+v", res)
	}
	big := "From: a@example.org\r\n" + strings.Repeat("X-Junk: "+strings.Repeat("x", 90)+"\r\n", 11) + "\r\nbody\r\n"
	wantRefusal(t, "header over 1000", newRun(f, "192.0.2.1").data(big), 552, "5.3.4", "headerlimit", "larger than 1000")
	noBody := "From: a@example.org\r\n" + strings.Repeat("X-Junk: "+strings.Repeat("x", 90)+"\r\n", 11)
	wantRefusal(t, "header without body", newRun(f, "192.0.2.1").data(noBody), 552, "5.3.4", "headerlimit", "")

	b64 := "From: a@example.org\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"b1\"\r\n\r\n" +
		"--b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nhello\r\n" +
		"--b1\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: BASE64\r\n\r\nPGI+aGk8L2I+\r\n--b1--\r\n"
	wantRefusal(t, "base64 html", newRun(f, "192.0.2.1").data(b64), 550, "5.6.0", "base64text", "Base64-encoded text")
	topLevel := "From: a@example.org\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n"
	wantRefusal(t, "base64 default text/plain", newRun(f, "192.0.2.1").data(topLevel), 550, "5.6.0", "base64text", "")
	attach := "From: a@example.org\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n" +
		"--x\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--x--\r\n"
	if res := newRun(f, "192.0.2.1").data(attach); res.Verdict != filters.NoOpinion {
		t.Errorf("base64 attachment: %+v", res)
	}
	// Deep nesting stops at the bound instead of recursing without end.
	deep := "From: a@example.org\r\nContent-Type: multipart/mixed; boundary=b0\r\n\r\n"
	for i := 0; i < 40; i++ {
		deep += fmt.Sprintf("--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n", i, i+1)
	}
	if res := newRun(f, "192.0.2.1").data(deep); res.Verdict != filters.NoOpinion {
		t.Errorf("deep nesting: %+v", res)
	}
}

// storeCase is one Store implementation the spam-trap tests run against.
type storeCase struct {
	name string
	open func(t *testing.T) state.Store
}

func stores() []storeCase {
	return []storeCase{
		{"embedded", func(t *testing.T) state.Store {
			st, err := state.OpenEmbedded(filepath.Join(t.TempDir(), "state.db"), state.WithSweepInterval(0))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			return st
		}},
		{"redis", func(t *testing.T) state.Store {
			c, err := net.DialTimeout("tcp", "127.0.0.1:6379", time.Second)
			if err != nil {
				if os.Getenv("CI") != "" {
					t.Fatalf("Redis unreachable in CI: %v", err)
				}
				t.Skipf("Redis at 127.0.0.1:6379 unreachable: %v", err)
			}
			c.Close()
			st, err := state.OpenRedis(state.RedisOptions{Addr: "127.0.0.1:6379",
				Prefix: fmt.Sprintf("postern-test:bofh:%s:%d:", strings.ReplaceAll(t.Name(), "/", "."), time.Now().UnixNano())})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				st.Delete(context.Background(), blockKey(netip.MustParseAddr("192.0.2.66")))
				st.Delete(context.Background(), blockKey(netip.MustParseAddr("2001:db8:1:2::66")))
				st.Close()
			})
			return st
		}},
	}
}

func TestSpamtrap(t *testing.T) {
	for _, sc := range stores() {
		t.Run(sc.name, func(t *testing.T) {
			st := sc.open(t)
			f := newFilter(t, nil, st, "opt BOFHCHECKDNS=0\nspamtrap trap@example.org\nspamtrapblock 1h")
			x := newRun(f, "192.0.2.66")
			x.connect()
			x.mail("spammer@example.net")
			if res := x.rcpt("real@example.org"); res.Verdict != filters.NoOpinion {
				t.Fatalf("first rcpt: %+v", res)
			}
			wantRefusal(t, "trap rcpt", x.rcpt("TRAP@example.org"), 550, "5.7.1", "spamtrap", "Delivery not authorized")
			wantRefusal(t, "rcpt after the trap", x.rcpt("other@example.org"), 550, "5.7.1", "blocked", "")
			wantRefusal(t, "data after the trap", x.data("Subject: x\r\n\r\nspam\r\n"), 550, "5.7.1", "blocked", "")

			// A new session from the same client, even on another gateway
			// sharing the store, is refused at connect.
			g := newFilter(t, nil, st, "opt BOFHCHECKDNS=0\nspamtrap trap@example.org")
			res := newRun(g, "192.0.2.66").connect()
			wantRefusal(t, "new session", res, 554, "5.7.1", "blocked", "")
			if !strings.Contains(strings.ToLower(res.Reason), "trap@example.org") {
				t.Errorf("reason = %q", res.Reason)
			}
			if res := newRun(g, "192.0.2.67").connect(); res.Verdict != filters.NoOpinion {
				t.Errorf("another client: %+v", res)
			}
			// IPv6: the whole /64 is blocked.
			y := newRun(f, "2001:db8:1:2::66")
			y.rcpt("trap@example.org")
			if res := newRun(g, "2001:db8:1:2::1234").connect(); res.Verdict != filters.Reject {
				t.Errorf("same /64: %+v", res)
			}
			if res := newRun(g, "2001:db8:1:3::66").connect(); res.Verdict != filters.NoOpinion {
				t.Errorf("other /64: %+v", res)
			}
		})
	}
}

func TestSpamtrapWithoutStore(t *testing.T) {
	f := newFilter(t, nil, nil, "opt BOFHCHECKDNS=0\nspamtrap trap@example.org")
	x := newRun(f, "192.0.2.66")
	x.rcpt("trap@example.org")
	wantRefusal(t, "same session", x.rcpt("a@example.org"), 550, "5.7.1", "blocked", "")
	if res := newRun(f, "192.0.2.66").connect(); res.Verdict != filters.NoOpinion {
		t.Errorf("without a store the block ends with the session: %+v", res)
	}
}

func TestStoreDown(t *testing.T) {
	// A real Redis client pointed at a port nobody listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	st, err := state.OpenRedis(state.RedisOptions{Addr: addr, DialTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cfg := mustParse(t, "opt BOFHCHECKDNS=0\nspamtrap trap@example.org")
	for _, tempfail := range []bool{true, false} {
		f, err := New(Options{Config: cfg, Store: st, StoreErrorTempfail: tempfail})
		if err != nil {
			t.Fatal(err)
		}
		res := newRun(f, "192.0.2.66").connect()
		if tempfail {
			wantRefusal(t, "store down, tempfail", res, 451, "4.3.0", "blocked", "try again later")
		} else if res.Verdict != filters.NoOpinion {
			t.Errorf("store down, no opinion: %+v", res)
		}
		// The trap itself still refuses.
		x := newRun(f, "192.0.2.66")
		res = x.rcpt("trap@example.org")
		if res.Verdict == filters.NoOpinion {
			t.Errorf("trap with store down: %+v", res)
		}
	}
}

func TestNewNeedsResolver(t *testing.T) {
	if _, err := New(Options{Config: DefaultConfig()}); err == nil {
		t.Fatal("BOFHCHECKDNS without a resolver accepted")
	}
	cfg := DefaultConfig()
	cfg.CheckDNS = false
	if _, err := New(Options{Config: cfg}); err != nil {
		t.Fatal(err)
	}
}
