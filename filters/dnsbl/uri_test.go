package dnsbl

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"postern/filters"
	"postern/filters/dns"
	"postern/filters/dns/dnstest"
	"postern/policy"
)

func startDNSWith(t *testing.T, records ...string) *dns.Resolver {
	t.Helper()
	srv := dnstest.Start(t, testZone().Add(records...))
	r, err := dns.New(dns.Options{Servers: []string{srv.Addr}, Timeout: 300 * time.Millisecond, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func readEML(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "uri", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBodyDomainsMultipart(t *testing.T) {
	got := BodyDomains(bytes.NewReader(readEML(t, "multipart.eml")), BodyOptions{Skip: map[string]bool{"w3.org": true}})
	want := []string{
		"spam-shop.co.uk",      // QP text part, uppercase, reduced by the public suffix list
		"defanged.example",     // hxxp://
		"barehost.example",     // bare WWW. host, trailing full stop dropped
		"links.example",        // base64 HTML href
		"cdn-pics.example",     // scheme-relative img src
		"entity.example",       // h&#116;tp:// with userinfo and port
		"text-in-html.example", // a URL in the HTML text
	}
	if !slices.Equal(got, want) {
		t.Fatalf("BodyDomains = %q\nwant %q", got, want)
	}
}

func TestBodyDomainsIDNAndIPs(t *testing.T) {
	got := BodyDomains(bytes.NewReader(readEML(t, "idn.eml")), BodyOptions{})
	want := []string{"xn--bcher-kva.example", "2001:db8::1", "192.0.2.55", "192.168.1.1", "encoded.example"}
	if !slices.Equal(got, want) {
		t.Fatalf("BodyDomains = %q\nwant %q", got, want)
	}
}

// Quoted-printable hides a URL from a naive scan: a soft line break in the
// middle of the host, an encoded letter, an encoded ideographic full stop.
func TestBodyDomainsQuotedPrintable(t *testing.T) {
	got := BodyDomains(bytes.NewReader(readEML(t, "qp.eml")), BodyOptions{})
	want := []string{"split-across-lines.example", "encoded-host.example", "fullwidth.example"}
	if !slices.Equal(got, want) {
		t.Fatalf("BodyDomains = %q\nwant %q", got, want)
	}
}

func TestBodyDomainsLimits(t *testing.T) {
	var b strings.Builder
	b.WriteString("Subject: many\r\n\r\n")
	for i := range 50 {
		fmt.Fprintf(&b, "http://d%d.example/ http://d%d.example/again\r\n", i, i)
	}
	msg := []byte(b.String())
	got := BodyDomains(bytes.NewReader(msg), BodyOptions{MaxDomains: 7})
	if len(got) != 7 || got[0] != "d0.example" || got[6] != "d6.example" {
		t.Fatalf("MaxDomains 7: %q", got)
	}
	if got := BodyDomains(bytes.NewReader(msg), BodyOptions{}); len(got) != DefaultBodyDomains {
		t.Fatalf("default bound: %d domains, want %d", len(got), DefaultBodyDomains)
	}
	// Only the first MiB of text is read: a link after it is not seen.
	big := "Subject: big\r\n\r\nhttp://early.example/\r\n" + strings.Repeat("x", maxBodyText) + "\r\nhttp://late.example/\r\n"
	if got := BodyDomains(bytes.NewReader([]byte(big)), BodyOptions{}); !slices.Equal(got, []string{"early.example"}) {
		t.Fatalf("text bound: %q", got)
	}
	// Attachments (not text/plain or text/html) are not read.
	att := "Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nhttp://seen.example/\r\n" +
		"--x\r\nContent-Type: application/octet-stream\r\n\r\nhttp://unseen.example/\r\n--x\r\nContent-Type: text/csv\r\n\r\nhttp://csv.example/\r\n--x--\r\n"
	if got := BodyDomains(bytes.NewReader([]byte(att)), BodyOptions{}); !slices.Equal(got, []string{"seen.example"}) {
		t.Fatalf("attachments: %q", got)
	}
}

// A MiB of tokens without a host costs linear time, not quadratic.
func TestBodyDomainsHostileText(t *testing.T) {
	for _, filler := range []string{"://", "www.", "http://a", "<a href=http://x"} {
		msg := "Content-Type: text/html\r\n\r\n" + strings.Repeat(filler, maxBodyText/len(filler))
		start := time.Now()
		BodyDomains(bytes.NewReader([]byte(msg)), BodyOptions{})
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("%q x %d: %v", filler, maxBodyText/len(filler), d)
		}
	}
}

func TestRegisteredDomain(t *testing.T) {
	for in, want := range map[string]string{
		"WWW.Example.COM":        "example.com",
		"a.b.example.co.uk":      "example.co.uk",
		"foo.blogspot.com":       "foo.blogspot.com", // a private suffix: the lists key the subdomain
		"bücher.example":         "xn--bcher-kva.example",
		"xn--bcher-kva.example.": "xn--bcher-kva.example",
		"192.0.2.1":              "192.0.2.1",
		"[2001:db8::1]":          "2001:db8::1",
		"0xC0000201":             "192.0.2.1",
		"co.uk":                  "",
		"localhost":              "",
		"1.2.3":                  "",
		"a..b.example":           "",
		"exa mple.com":           "",
		"":                       "",
	} {
		if got := RegisteredDomain(in); got != want {
			t.Errorf("RegisteredDomain(%q) = %q, want %q", in, got, want)
		}
	}
}

// uriZone: URI lists as SURBL, URIBL and Spamhaus DBL answer.
func uriZoneRecords() []string {
	return []string{
		// multi.surbl.test: bitmask codes; 127.0.0.1 is SURBL's "query refused".
		`spam-shop.co.uk.multi.surbl.test. 300 IN A 127.0.0.16`,
		`links.example.multi.surbl.test. 300 IN A 127.0.0.8`,
		`refused.example.multi.surbl.test. 300 IN A 127.0.0.1`,
		`55.2.0.192.multi.surbl.test. 300 IN A 127.0.0.64`,
		// dbl.test: Spamhaus DBL codes; 127.255.255.254 is a refused query,
		// 127.0.1.255 "IP queries prohibited".
		`defanged.example.dbl.test. 300 IN A 127.0.1.2`,
		`cdn-pics.example.dbl.test. 300 IN A 127.255.255.254`,
		`55.2.0.192.dbl.test. 300 IN A 127.0.1.255`,
	}
}

func TestFilterBodyURILists(t *testing.T) {
	r := startDNSWith(t, uriZoneRecords()...)
	f := newFilter(t, r,
		"multi.surbl.test on=body codes=&0xfe weight=3 action=score var=SURBL",
		"dbl.test on=body codes=127.0.1.2-127.0.1.199 weight=4 action=score",
		"threshold 100",
	)
	x := session(t, f, "192.0.2.200")
	x.helo("mx.sender.example")
	x.mail("a@sender.example")
	x.rcpt("b@example.org")
	res := x.data(string(readEML(t, "multipart.eml")))
	// surbl lists spam-shop.co.uk and links.example (counted once: 3),
	// dbl lists defanged.example (4); cdn-pics.example answered the DBL
	// error code: not listed.
	if res.Score != 7 || res.Verdict != filters.NoOpinion {
		t.Fatalf("data = %+v; want score 7, no verdict", res)
	}
	if got := res.Vars[VarBodyListed]; got != "spam-shop.co.uk links.example defanged.example" {
		t.Fatalf("%s = %q", VarBodyListed, got)
	}
	if got := res.Vars[VarListed]; got != "multi.surbl.test dbl.test" {
		t.Fatalf("%s = %q", VarListed, got)
	}
	if !strings.Contains(res.Vars[VarErrors], "dbl.test") || !strings.Contains(res.Reason, "cdn-pics.example") {
		t.Fatalf("the refused DBL query is an error: vars %v reason %q", res.Vars, res.Reason)
	}
	if res.Vars["SURBL"] != "Link domain spam-shop.co.uk is listed by multi.surbl.test" || res.Vars["SURBL_IP"] != "127.0.0.16" {
		t.Fatalf("zone vars: %v", res.Vars)
	}
	if !strings.Contains(res.Vars[VarBodyDomains], "barehost.example") {
		t.Fatalf("%s = %q", VarBodyDomains, res.Vars[VarBodyDomains])
	}
}

func TestFilterBodyRejectsAndIPs(t *testing.T) {
	r := startDNSWith(t, uriZoneRecords()...)
	f := newFilter(t, r, "multi.surbl.test on=body codes=&0xfe", "dbl.test on=body codes=127.0.1.2-127.0.1.199")
	x := session(t, f, "192.0.2.200")
	x.mail("a@sender.example")
	x.rcpt("b@example.org")
	// An IP link is asked reversed; SURBL lists it, DBL's 127.0.1.255
	// (IP queries prohibited) is outside its codes.
	res := x.data("Subject: x\r\n\r\nGo to http://192.0.2.55/login now\r\n")
	if res.Verdict != filters.Reject || res.Code != 550 || res.Message != "Link domain 192.0.2.55 is listed by multi.surbl.test" {
		t.Fatalf("IP link: %+v", res)
	}
	if res.Vars[VarListed] != "multi.surbl.test" {
		t.Fatalf("DBL's 127.0.1.255 must not count: %v", res.Vars)
	}
	// Even with the default codes, DBL's 127.0.1.255 for an IP link is a
	// refusal, not a listing.
	g := newFilter(t, r, "dbl.test on=body")
	y := session(t, g, "192.0.2.200")
	y.mail("a@sender.example")
	y.rcpt("b@example.org")
	if res := y.data("Subject: x\r\n\r\nhttp://192.0.2.55/\r\n"); res.Verdict != filters.NoOpinion || res.Score != 0 ||
		res.Vars[VarErrors] != "dbl.test" || !strings.Contains(res.Reason, "refused") {
		t.Fatalf("127.0.1.255 with default codes: %+v", res)
	}
	// 127.0.0.1 from SURBL (refused) is no listing, even with a mask.
	x = session(t, f, "192.0.2.200")
	x.mail("a@sender.example")
	x.rcpt("b@example.org")
	if res := x.data("Subject: x\r\n\r\nhttp://refused.example/\r\n"); res.Verdict != filters.NoOpinion || res.Score != 0 {
		t.Fatalf("127.0.0.1: %+v", res)
	}
}

func TestFilterBodySkipsOwnAndConfigured(t *testing.T) {
	r := startDNSWith(t, uriZoneRecords()...)
	cfg := mustConfig(t, "multi.surbl.test on=body codes=&0xfe action=score weight=1", "bodyskip links.example", "bodydomains 3")
	f, err := New(Options{Config: cfg, Resolver: r, OwnDomains: []string{"mail.spam-shop.co.uk"}})
	if err != nil {
		t.Fatal(err)
	}
	msg := readEML(t, "multipart.eml")
	got := f.BodyDomains(bytes.NewReader(msg))
	if want := []string{"defanged.example", "barehost.example", "cdn-pics.example"}; !slices.Equal(got, want) {
		t.Fatalf("BodyDomains = %q, want %q", got, want)
	}
	x := session(t, f, "192.0.2.200")
	if res := x.data(string(msg)); res.Score != 0 || res.Vars[VarBodyListed] != "" {
		t.Fatalf("skipped domains were looked up: %+v", res)
	}
}

func TestParseBodySettings(t *testing.T) {
	cfg := mustConfig(t, "bodyskip Example.ORG www.foo.example -defaults", "bodydomains 50")
	if cfg.BodyDomains != 50 || cfg.BodySkipDefaults || !slices.Equal(cfg.BodySkip, []string{"example.org", "foo.example"}) {
		t.Fatalf("cfg = %+v", cfg)
	}
	for _, bad := range []string{"bodydomains 0", "bodydomains 101", "bodydomains x", "bodyskip", "bodyskip co.uk", "x.test on=bodies"} {
		cfg := DefaultConfig()
		if _, err := parseLine(&cfg, policy.Line{File: "dnsbl", Num: 1, Text: bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// The body example of docs/dnsbl.md parses.
func TestDocsBodyExampleParses(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "dnsbl.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "# /etc/postern/dnsbl.d/50-uri\n")
	if !ok {
		t.Fatal("example not found")
	}
	block, _, _ := strings.Cut(rest, "```")
	cfg := mustConfig(t, strings.Split(strings.TrimSpace(block), "\n")...)
	if len(cfg.Zones) != 3 || cfg.BodyDomains != 20 || len(cfg.BodySkip) != 2 {
		t.Fatalf("cfg = %+v", cfg)
	}
	for _, z := range cfg.Zones {
		if !slices.Equal(z.Subjects, []Subject{SubjectBody}) {
			t.Errorf("zone %s subjects %v", z.Name, z.Subjects)
		}
	}
}
