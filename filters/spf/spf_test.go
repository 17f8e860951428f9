package spf

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"postern/filters/dns"
	"postern/filters/dns/dnstest"
)

// typicalZone is a realistic policy: a domain that includes its provider,
// allows its own A and MX hosts, and fails the rest, with an explanation.
func typicalZone() *dnstest.Zone {
	return dnstest.NewZone().Add(
		`example.com. 300 IN TXT "v=spf1 a mx include:_spf.provider.test ip6:2001:db8:5::/48 -all exp=why.example.com"`,
		`example.com. 300 IN TXT "google-site-verification=abc"`,
		`example.com. 300 IN A 192.0.2.10`,
		`example.com. 300 IN MX 10 mx1.example.com.`,
		`example.com. 300 IN MX 20 mx2.example.com.`,
		`mx1.example.com. 300 IN A 192.0.2.21`,
		`mx2.example.com. 300 IN A 192.0.2.22`,
		`mx2.example.com. 300 IN AAAA 2001:db8::22`,
		`why.example.com. 300 IN TXT "%{i} may not send mail for %{d}; see https://example.com/spf"`,
		`_spf.provider.test. 300 IN TXT "v=spf1 ip4:198.51.100.0/24 ~all"`,
		`mail.example.com. 300 IN TXT "v=spf1 a -all"`,
		`mail.example.com. 300 IN A 192.0.2.30`,
	)
}

func newTestResolver(t testing.TB, srv *dnstest.Server) *dns.Resolver {
	r, err := dns.New(dns.Options{Servers: []string{srv.Addr}, Timeout: time.Second, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestCheckTypicalPolicy(t *testing.T) {
	srv := dnstest.Start(t, typicalZone())
	r := newTestResolver(t, srv)
	ctx := context.Background()
	cases := []struct {
		ip        string
		want      Code
		mechanism string
		domain    string
	}{
		{"192.0.2.10", Pass, "a", "example.com"},
		{"192.0.2.22", Pass, "mx", "example.com"},
		{"2001:db8::22", Pass, "mx", "example.com"},
		{"198.51.100.7", Pass, "include:_spf.provider.test", "example.com"},
		{"2001:db8:5::1", Pass, "ip6:2001:db8:5::/48", "example.com"},
		{"203.0.113.5", Fail, "-all", "example.com"},
	}
	for _, c := range cases {
		res := Check(ctx, r, net.ParseIP(c.ip), "mail.example.com", "alice@example.com")
		if res.Code != c.want || res.Mechanism != c.mechanism || res.MatchDomain != c.domain {
			t.Errorf("%s: got %s by %q in %s, want %s by %q in %s (%s)", c.ip, res.Code, res.Mechanism, res.MatchDomain, c.want, c.mechanism, c.domain, res.Reason)
		}
	}
	res := Check(ctx, r, net.ParseIP("203.0.113.5"), "mail.example.com", "alice@example.com")
	if want := "203.0.113.5 may not send mail for example.com; see https://example.com/spf"; res.Explanation != want {
		t.Errorf("explanation %q, want %q", res.Explanation, want)
	}
	if res.Record == "" || !strings.HasPrefix(res.Record, "v=spf1 a mx") || len(res.Lookups) == 0 {
		t.Errorf("result does not say why: %+v", res)
	}
}

func TestHELOIdentityAndNullSender(t *testing.T) {
	srv := dnstest.Start(t, typicalZone())
	r := newTestResolver(t, srv)
	ctx := context.Background()
	ip := net.ParseIP("192.0.2.30")

	res := CheckHELO(ctx, r, ip, "mail.example.com", Options{})
	if res.Code != Pass || res.Identity != IdentityHELO || res.Domain != "mail.example.com" || res.Sender != "postmaster@mail.example.com" {
		t.Errorf("HELO check: %+v", res)
	}
	// RFC 7208 section 2.4: the null sender is checked as postmaster@HELO.
	res = Check(ctx, r, ip, "mail.example.com", "")
	if res.Code != Pass || res.Identity != IdentityMailFrom || res.Sender != "postmaster@mail.example.com" {
		t.Errorf("null sender: %+v", res)
	}
	// A HELO that is an address literal has no policy (section 4.3).
	res = CheckHELO(ctx, r, ip, "[192.0.2.30]", Options{})
	if res.Code != None {
		t.Errorf("address-literal HELO: %s", res.Code)
	}
}

func TestBadPolicies(t *testing.T) {
	checkGoroutines(t)
	long := "v=spf1 " + strings.Repeat("ip4:192.0.2.1 ", 400) + "-all" // ~5.6 kB
	zone := dnstest.NewZone().Add(
		`garbage.test. 300 IN TXT "v=spf1 a:[not a domain -all"`,
		`badmech.test. 300 IN TXT "v=spf1 frobnicate -all"`,
		`twice.test. 300 IN TXT "v=spf1 -all"`,
		`twice.test. 300 IN TXT "v=spf1 +all"`,
		`loop1.test. 300 IN TXT "v=spf1 include:loop2.test -all"`,
		`loop2.test. 300 IN TXT "v=spf1 include:loop1.test -all"`,
		`selfredirect.test. 300 IN TXT "v=spf1 redirect=selfredirect.test"`,
		`voids.test. 300 IN TXT "v=spf1 a:n1.test a:n2.test a:n3.test -all"`,
		`split.test. 300 IN TXT "v=spf1 ip4:192.0.2.1" "/32 -all"`,
		`badmacro.test. 300 IN TXT "v=spf1 exists:%{z}.test -all"`,
	)
	many := "v=spf1"
	for i := range 11 {
		many += fmt.Sprintf(" a:h%d.test", i)
		zone.Add(fmt.Sprintf("h%d.test. 300 IN A 198.51.100.%d", i, i))
	}
	zone.Add(`many.test. 300 IN TXT "` + many + ` -all"`)
	huge := &mdns.TXT{Hdr: mdns.RR_Header{Name: "huge.test.", Rrtype: mdns.TypeTXT, Class: mdns.ClassINET, Ttl: 300}}
	for s := long; s != ""; {
		n := min(len(s), 255)
		huge.Txt = append(huge.Txt, s[:n])
		s = s[n:]
	}
	zone.AddRR(huge)
	srv := dnstest.Start(t, zone)
	r := newTestResolver(t, srv)
	ctx := context.Background()
	ip := net.ParseIP("192.0.2.1")
	for _, c := range []struct {
		domain string
		want   Code
		reason string
	}{
		{"garbage.test", PermError, "syntax"},
		{"badmech.test", PermError, "unknown mechanism"},
		{"twice.test", PermError, "2 SPF records"},
		{"loop1.test", PermError, "DNS-querying terms"},
		{"selfredirect.test", PermError, "DNS-querying terms"},
		{"voids.test", PermError, "void"},
		{"many.test", PermError, "DNS-querying terms"},
		{"split.test", Pass, "matched ip4:192.0.2.1/32"},
		{"badmacro.test", PermError, "unknown macro letter"},
		{"huge.test", PermError, "octets"},
		{"nonexistent.test", None, "no SPF record"},
	} {
		res := Check(ctx, r, ip, "helo.test", "x@"+c.domain)
		if res.Code != c.want || !strings.Contains(res.Reason, c.reason) {
			t.Errorf("%s: %s (%s), want %s with %q", c.domain, res.Code, res.Reason, c.want, c.reason)
		}
	}
}

// checkGoroutines fails the test if goroutines it started outlive it.
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

func TestTimeoutIsTempError(t *testing.T) {
	checkGoroutines(t)
	zone := dnstest.NewZone().Timeout("slow.test")
	srv := dnstest.Start(t, zone)
	r, _ := dns.New(dns.Options{Servers: []string{srv.Addr}, Timeout: 5 * time.Second, Attempts: 3})
	start := time.Now()
	res := CheckWith(context.Background(), r, net.ParseIP("192.0.2.1"), "helo.test", "x@slow.test", Options{Timeout: 200 * time.Millisecond})
	if res.Code != TempError {
		t.Errorf("got %s (%s), want temperror", res.Code, res.Reason)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("overall timeout not honoured: %v", d)
	}
}

func TestReceivedSPFAndAuthenticationResults(t *testing.T) {
	srv := dnstest.Start(t, typicalZone())
	r := newTestResolver(t, srv)
	res := Check(context.Background(), r, net.ParseIP("192.0.2.10"), "mail.example.com", "alice@example.com")
	got := ReceivedSPF(res, "mx.postern.test")
	want := `Received-SPF: pass (mx.postern.test: domain of alice@example.com designates 192.0.2.10 as permitted sender) client-ip=192.0.2.10; envelope-from="alice@example.com"; helo=mail.example.com; receiver=mx.postern.test; mechanism=a; identity=mailfrom`
	if got != want {
		t.Errorf("ReceivedSPF:\n got %s\nwant %s", got, want)
	}
	if got := AuthenticationResults(res); got != "spf=pass smtp.mailfrom=example.com" {
		t.Errorf("AuthenticationResults = %s", got)
	}

	res = Check(context.Background(), r, net.ParseIP("2001:db8::99"), "mail.example.com", "alice@example.com")
	got = ReceivedSPF(res, "")
	if !strings.HasPrefix(got, "Received-SPF: fail (domain of alice@example.com does not designate 2001:db8::99 as permitted sender) client-ip=\"2001:db8::99\";") ||
		!strings.Contains(got, `mechanism=-all;`) {
		t.Errorf("ReceivedSPF fail: %s", got)
	}

	perm := Result{Code: PermError, Identity: IdentityHELO, Domain: "bad.test", Helo: "bad.test", Sender: "postmaster@bad.test",
		Reason: `2 SPF records at bad.test (section "4.5")`}
	got = ReceivedSPF(perm, "mx")
	if !strings.Contains(got, `problem="2 SPF records at bad.test (section \"4.5\")"`) || strings.Contains(got, "envelope-from") {
		t.Errorf("ReceivedSPF permerror: %s", got)
	}
	if got := AuthenticationResults(perm); got != "spf=permerror smtp.helo=bad.test" {
		t.Errorf("AuthenticationResults helo = %s", got)
	}
	// Comments never break out of their parentheses.
	if c := commentText("a (b) \\ c\r\n"); c != `a \(b\) \\ c??` {
		t.Errorf("commentText = %q", c)
	}
}

func TestCheckMain(t *testing.T) {
	checkGoroutines(t)
	srv := dnstest.Start(t, typicalZone())
	var out, errOut bytes.Buffer
	code := CheckMain([]string{"--ip", "203.0.113.5", "--helo", "mail.example.com", "--sender", "alice@example.com", "--dns", srv.Addr, "--receiver", "mx.test"}, &out, &errOut)
	if code != ExitChecked {
		t.Fatalf("exit %d, stderr %s", code, errOut.String())
	}
	for _, want := range []string{
		"result: fail\n",
		"record: v=spf1 a mx include:_spf.provider.test",
		"mechanism: -all\n",
		"explanation: 203.0.113.5 may not send mail for example.com",
		"TXT example.com: 2 record(s)",
		"Received-SPF: fail (mx.test: ",
		"Authentication-Results: mx.test; spf=fail",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}

	out.Reset()
	code = CheckMain([]string{"--ip", "198.51.100.9", "--helo", "mail.example.com", "--sender", "alice@example.com", "--dns", srv.Addr}, &out, &errOut)
	if code != ExitChecked || !strings.Contains(out.String(), "result: pass\n") || !strings.Contains(out.String(), "reason: 198.51.100.9 matched include:_spf.provider.test in the SPF record of example.com (via ip4:198.51.100.0/24 in the SPF record of _spf.provider.test)") {
		t.Errorf("include pass: exit %d\n%s", code, out.String())
	}

	for _, args := range [][]string{
		{"--ip", "not-an-ip", "--helo", "h.test", "--sender", "a@b.test"},
		{"--ip", "192.0.2.1", "--sender", ""},
		{"--ip", "192.0.2.1", "--helo", "h.test", "--identity", "rcpt"},
		{"--bogus"},
		{"--ip", "192.0.2.1", "--helo", "h.test", "extra"},
	} {
		errOut.Reset()
		if code := CheckMain(args, &out, &errOut); code != ExitUsage || errOut.Len() == 0 {
			t.Errorf("%q: exit %d, stderr %q; want usage error", args, code, errOut.String())
		}
	}
}

func TestMacroExpansion(t *testing.T) {
	// RFC 7208 section 7.4's examples.
	ip4 := mustAddr("192.0.2.3")
	ip6 := mustAddr("2001:db8::cb01")
	v := &macroValues{sender: "strong-bad@email.example.com", local: "strong-bad", domainS: "email.example.com", domain: "email.example.com", ip: ip4}
	for spec, want := range map[string]string{
		"%{s}":                              "strong-bad@email.example.com",
		"%{o}":                              "email.example.com",
		"%{d}":                              "email.example.com",
		"%{d4}":                             "email.example.com",
		"%{d3}":                             "email.example.com",
		"%{d2}":                             "example.com",
		"%{d1}":                             "com",
		"%{dr}":                             "com.example.email",
		"%{d2r}":                            "example.email",
		"%{l}":                              "strong-bad",
		"%{l-}":                             "strong.bad",
		"%{lr}":                             "strong-bad",
		"%{lr-}":                            "bad.strong",
		"%{l1r-}":                           "strong",
		"%{ir}.%{v}._spf.%{d2}":             "3.2.0.192.in-addr._spf.example.com",
		"%{lr-}.lp._spf.%{d2}":              "bad.strong.lp._spf.example.com",
		"%{lr-}.lp.%{ir}.%{v}._spf.%{d2}":   "bad.strong.lp.3.2.0.192.in-addr._spf.example.com",
		"%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}":  "3.2.0.192.in-addr.strong.lp._spf.example.com",
		"%{d2}.trusted-domains.example.net": "example.com.trusted-domains.example.net",
		"%{S}":                              "strong-bad%40email.example.com",
		"%%%_%-":                            "% %20",
	} {
		toks, err := parseMacroString(spec, false)
		if err != nil {
			t.Errorf("%s: %v", spec, err)
			continue
		}
		if got := expand(toks, v); got != want {
			t.Errorf("%s = %q, want %q", spec, got, want)
		}
	}
	v.ip = ip6
	toks, _ := parseMacroString("%{ir}.%{v}._spf.%{d2}", false)
	if got, want := expand(toks, v), "1.0.B.C.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.B.D.0.1.0.0.2.ip6._spf.example.com"; !strings.EqualFold(got, want) {
		t.Errorf("IPv6 %%{ir} = %q", got)
	}
	for _, bad := range []string{"%", "%{", "%{x}", "%{d0}", "%{d2q}", "%a", "%{c}", "a b"} {
		if _, err := parseMacroString(bad, false); err == nil {
			t.Errorf("%q parsed without error", bad)
		}
	}
	if _, err := parseMacroString("%{c} at %{t} by %{r}", true); err != nil {
		t.Errorf("explanation macros refused: %v", err)
	}
}

func TestDomainTruncation(t *testing.T) {
	long := strings.Repeat("abcdefghi.", 30) + "example.com"
	got := truncateDomain(long)
	if len(got) > 253 || !strings.HasSuffix(got, ".example.com") || strings.HasPrefix(got, ".") {
		t.Fatalf("truncateDomain: %d octets: %q", len(got), got)
	}
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
