package spf

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"postern/filters"
	"postern/filters/dns"
	"postern/filters/dns/dnstest"
	"postern/policy"
)

func TestFilterActions(t *testing.T) {
	srv := dnstest.Start(t, dnstest.NewZone().Add(
		`good.example. 300 IN TXT "v=spf1 ip4:192.0.2.0/24 -all"`,
		`soft.example. 300 IN TXT "v=spf1 ~all"`,
	))
	r, err := dns.New(dns.Options{Servers: []string{srv.Addr}})
	if err != nil {
		t.Fatal(err)
	}
	f, err := NewFilter(FilterOptions{Resolver: r, Receiver: "mx.example.test"})
	if err != nil {
		t.Fatal(err)
	}
	check := func(ip, from string) filters.Result {
		return f.CheckMail(context.Background(), &filters.Session{ClientIP: netip.MustParseAddr(ip), HELO: "client.example", From: from})
	}
	pass := check("192.0.2.7", "a@good.example")
	if pass.Verdict != filters.NoOpinion || pass.Vars["SPF"] != "pass" || pass.Vars["SPF_DOMAIN"] != "good.example" ||
		!strings.HasPrefix(pass.HeaderFields[0], "Received-SPF: pass") || !strings.HasPrefix(pass.AuthResults[0], "spf=pass") {
		t.Fatalf("pass: %+v", pass)
	}
	fail := check("198.51.100.1", "a@good.example")
	if fail.Verdict != filters.Reject || fail.Code != 550 || fail.Enhanced != "5.7.23" || fail.Vars["SPF"] != "fail" {
		t.Fatalf("fail: %+v", fail)
	}
	soft := check("198.51.100.1", "a@soft.example")
	if soft.Verdict != filters.NoOpinion || soft.Score != 2 {
		t.Fatalf("softfail: %+v", soft)
	}

	acts, err := ParseActions([]policy.Line{{File: "spf", Num: 1, Text: "fail quarantine 7"}, {File: "spf", Num: 2, Text: "softfail reject"}})
	if err != nil || acts[Fail].Verdict != filters.Quarantine || acts[Fail].Score != 7 || acts[SoftFail].Verdict != filters.Reject {
		t.Fatalf("ParseActions: %v %+v", err, acts)
	}
	if _, err := ParseActions([]policy.Line{{File: "spf", Num: 3, Text: "maybe reject"}}); err == nil || !strings.Contains(err.Error(), "spf:3:") {
		t.Fatalf("bad line: %v", err)
	}
}
