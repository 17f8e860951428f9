package spf

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"postern/filters/dns"
	"postern/filters/dns/dnstest"
)

// FuzzParseRecord: any TXT content parses or fails with a syntax error,
// never panics, and a parsed record's terms are all accounted for.
func FuzzParseRecord(f *testing.F) {
	for _, s := range []string{
		"v=spf1 -all",
		"v=spf1 a mx ptr include:_spf.example.com ip4:192.0.2.0/24 ip6:2001:db8::/32 exists:%{ir}.%{v}._spf.%{d2} ~all",
		"v=spf1 a/24//64 mx:example.com/30 redirect=_spf.example.com exp=exp.%{d}",
		"v=spf1 a:foo:bar/baz.example.com unknown=%{l} ?all",
		"v=spf1 ip4:1.2.3.4/032 ip6:::1/129 a//0",
		"v=spf1 include: -all",
		"v=spf1 =x",
		"v=spf1 a:%{",
		"v=spf1 \x80a:example.net",
		"v=spf1 exists:%{i1r+-}.%{L}.%{O}.x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, txt string) {
		rec, err := parseRecord(txt)
		if err != nil {
			return
		}
		if rec.text != txt {
			t.Fatalf("record text changed")
		}
		for _, m := range rec.mechs {
			if m.domain != "" {
				if err := validateDomainSpec(m.domain); err != nil {
					t.Fatalf("accepted mechanism %q with invalid domain-spec: %v", m.term, err)
				}
			}
		}
	})
}

// FuzzMacroExpand: any macro-string tokenizes or fails cleanly, and what
// expands stays bounded.
func FuzzMacroExpand(f *testing.F) {
	for _, s := range []string{
		"%{s}", "%{l1r-}.lp.%{ir}.%{v}._spf.%{d2}", "%{S}%{L}%{O}%{D}%{I}%{P}%{V}%{H}",
		"%%%_%-", "%{c} %{r} %{t}", "%{d999999999r.-+,/_=}", "%{", "%{d0}", "%x",
	} {
		f.Add(s, true)
	}
	v := &macroValues{
		sender: "strong-bad@email.example.com", local: "strong-bad", domainS: "email.example.com",
		domain: "email.example.com", ip: mustAddr("2001:db8::cb01"), helo: "mail.example.com",
		receiver: "mx.test", now: 1700000000,
	}
	f.Fuzz(func(t *testing.T, s string, explanation bool) {
		toks, err := parseMacroString(s, explanation)
		if err != nil {
			return
		}
		out := expand(toks, v)
		// Each token yields at most the longest value, URL-escaped (x3).
		if len(out) > len(s)*3*64+64 {
			t.Fatalf("expansion of %d octets grew to %d", len(s), len(out))
		}
		_ = truncateDomain(out)
	})
}

// BenchmarkCheck: a typical record with include, a and mx against a local
// DNS server, with a warm cache.
func BenchmarkCheck(b *testing.B) {
	srv, err := dnstest.Listen(typicalZone())
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	r, err := dns.New(dns.Options{Servers: []string{srv.Addr}, Timeout: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	ip := net.ParseIP("198.51.100.7") // matched by the include, after a and mx
	if res := Check(ctx, r, ip, "mail.example.com", "alice@example.com"); res.Code != Pass {
		b.Fatalf("warm-up: %s %s", res.Code, res.Reason)
	}
	before := srv.Total()
	b.ReportAllocs()
	for b.Loop() {
		if res := Check(ctx, r, ip, "mail.example.com", "alice@example.com"); res.Code != Pass {
			b.Fatal(res.Code)
		}
	}
	if n := srv.Total() - before; n != 0 && !strings.Contains(b.Name(), "cold") {
		b.Fatalf("%d DNS queries with a warm cache", n)
	}
}

// FuzzCheck evaluates arbitrary published policies end to end, through a
// real DNS server: whatever the record says, the check ends with one of the
// seven results, within its limits, without panicking.
func FuzzCheck(f *testing.F) {
	for _, s := range []string{
		"v=spf1 a mx include:_spf.provider.test -all",
		"v=spf1 redirect=%{d}",
		"v=spf1 include:%{d} -all",
		"v=spf1 exists:%{ir}.%{l}.%{o}.x.test ptr:%{p} ~all",
		"v=spf1 a:%{h} mx:%{d2}/24//64 ?all exp=%{d}",
	} {
		f.Add(s)
	}
	zone := typicalZone()
	srv, err := dnstest.Listen(zone)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(srv.Close)
	r, err := dns.New(dns.Options{Servers: []string{srv.Addr}, Timeout: 200 * time.Millisecond, Attempts: 1, CacheSize: 1000})
	if err != nil {
		f.Fatal(err)
	}
	n := 0
	f.Fuzz(func(t *testing.T, policy string) {
		n++
		name := fmt.Sprintf("f%d.fuzz.test.", n)
		var txt []string
		for s := policy; ; {
			k := min(len(s), 255)
			txt = append(txt, dns.EscapeString(s[:k]))
			if s = s[k:]; s == "" {
				break
			}
		}
		zone.AddRR(&mdns.TXT{Hdr: mdns.RR_Header{Name: name, Rrtype: mdns.TypeTXT, Class: mdns.ClassINET, Ttl: 300}, Txt: txt})
		res := Check(context.Background(), r, net.ParseIP("192.0.2.1"), "mail.example.com", "a@"+name)
		if res.Code < None || res.Code > PermError {
			t.Fatalf("result %d", res.Code)
		}
		if res.DNSTerms > DefaultMaxDNSTerms+1 || res.VoidLookups > DefaultMaxVoidLookups+1 {
			t.Fatalf("limits not held: %d terms, %d void", res.DNSTerms, res.VoidLookups)
		}
	})
}
