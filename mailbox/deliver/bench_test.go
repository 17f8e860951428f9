package deliver

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

func benchMessage() string {
	return "Return-Path: <news@lists.example.org>\nFrom: Newsletter <news@lists.example.org>\nTo: alice@example.test\n" +
		"Subject: Weekly digest\nList-Id: Weekly <weekly.lists.example.org>\nMessage-ID: <1@example.org>\n" +
		"Date: Mon, 1 Jan 2024 10:00:00 +0000\n\n" + strings.Repeat("Some body text of a typical message, nothing special.\n", 60)
}

// BenchmarkDeliverPlain is the common case: no .courier, no filter.
func BenchmarkDeliverPlain(b *testing.B) {
	s := newTestSite(b, "alice@example.test")
	acct := s.account("alice@example.test")
	msg := benchMessage()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		o := s.agent.Deliver(context.Background(), Request{Account: acct, Sender: "news@lists.example.org", Recipient: acct.Name, Message: strings.NewReader(msg), AddTrace: true})
		if o.Status != StatusOK {
			b.Fatal(o)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// mailfilter50 is a realistic .mailfilter of 50 rules: list sorting by
// List-Id, sender and subject rules, a weighted spam score, most of them
// not matching, ending with the default delivery (the List-Id rule at
// the end matches).
func mailfilter50() string {
	var b strings.Builder
	b.WriteString("SCORE=0\n")
	for i := range 20 {
		fmt.Fprintf(&b, "if (/^From:.*@sender%d\\.example\\.(com|net)/)\n{\n  to \"./Maildir/.Senders/\"\n}\n", i)
	}
	for i := range 15 {
		fmt.Fprintf(&b, "if (/^Subject:.*(invoice|order) #?%d[0-9]+/)\n  to \"./Maildir/.Orders/\"\n", i)
	}
	for i := range 10 {
		fmt.Fprintf(&b, "SCORE=$SCORE + /(lottery|winner|prize%d)/:b,2,1\n", i)
	}
	b.WriteString("if ($SCORE > 5)\n  to ./Maildir/.Spam/\n")
	b.WriteString("if (/^X-Spam-Flag: YES/)\n  to ./Maildir/.Spam/\n")
	b.WriteString("if (hasaddr(\"boss@example.test\"))\n  cc ./Maildir/.Boss/\n")
	b.WriteString("if (/^Subject:.*\\[SECURITY\\]/)\n  to ./Maildir/.Security/\n")
	b.WriteString("if (/^List-Id:.*<([a-z0-9-]+)\\./)\n{\n  to \"./Maildir/.Lists/\"\n}\n")
	return b.String()
}

// BenchmarkDeliverFilter50 runs a 50-rule .mailfilter for every message.
func BenchmarkDeliverFilter50(b *testing.B) {
	s := newTestSite(b, "alice@example.test")
	for _, f := range []string{"Senders", "Orders", "Spam", "Boss", "Security", "Lists"} {
		s.makeFolder("alice@example.test", f)
	}
	mf := s.write("alice@example.test", ".mailfilter", mailfilter50())
	old := time.Now().Add(-time.Minute) // an established file: the parsed program is cached
	os.Chtimes(mf, old, old)
	acct := s.account("alice@example.test")
	msg := benchMessage()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		o := s.agent.Deliver(context.Background(), Request{Account: acct, Sender: "news@lists.example.org", Recipient: acct.Name, Message: strings.NewReader(msg), AddTrace: true})
		if o.Status != StatusOK || len(o.Delivered) != 1 || !strings.Contains(o.Delivered[0], "Lists") {
			b.Fatal(o)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
