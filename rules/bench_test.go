package rules

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// filter50 is a realistic 50-rule .mailfilter: list sorting on headers,
// sender and subject rules, a few body and weighted rules, lookups by
// variable, and a final spam score check.
func filter50() string {
	var b strings.Builder
	b.WriteString("DEFAULT=\"./Maildir\"\nSCORE=0\n")
	for i := 0; i < 20; i++ {
		fmt.Fprintf(&b, "if (/^List-Id:.*<list%d\\.lists\\.example\\.org>/)\n{\n  to \"./Maildir/.Lists.list%d\"\n}\n", i, i)
	}
	for i := 0; i < 10; i++ {
		fmt.Fprintf(&b, "if (/^From:.*sender%d@example\\.(com|net)/ && /^Subject:.*report/)\n{\n  to ./Maildir/.Reports\n}\n", i)
	}
	for i := 0; i < 10; i++ {
		fmt.Fprintf(&b, "if (/^Subject:.*(viagra|lottery|winner%d)/)\n{\n  SCORE=$SCORE+5\n}\n", i)
	}
	for i := 0; i < 5; i++ {
		fmt.Fprintf(&b, "SCORE=$SCORE+(/cheap%d|free money|click here/:b,1,0.5)\n", i)
	}
	b.WriteString("if (/^X-Spam-Flag: YES/)\n{\n  SCORE=$SCORE+10\n}\n")
	b.WriteString("if (hasaddr(\"boss@example.com\"))\n{\n  FLAGS=\"F\"\n}\n")
	b.WriteString("if (/^To:.*<(.*)>/)\n{\n  ADDR=tolower($MATCH1)\n}\n")
	b.WriteString("if ($SIZE > 5000000)\n{\n  to ./Maildir/.Big\n}\n")
	b.WriteString("if ($SCORE >= 10)\n{\n  to ./Maildir/.Spam\n}\n")
	return b.String()
}

func benchMessage() []byte {
	var b strings.Builder
	b.WriteString("Return-Path: <someone@example.org>\n")
	for i := 0; i < 6; i++ {
		fmt.Fprintf(&b, "Received: from relay%d.example.org (relay%d.example.org [192.0.2.%d])\n\tby mx.example.net with ESMTPS id abc%d; Mon, 1 Jan 2024 10:00:0%d +0000\n", i, i, i, i, i)
	}
	b.WriteString("From: Someone <someone@example.org>\nTo: Bob <bob@example.net>\nCc: team@example.net\nSubject: Minutes of the weekly meeting\nDate: Mon, 1 Jan 2024 10:00:00 +0000\nMessage-ID: <abc@example.org>\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\n")
	for i := 0; i < 60; i++ {
		fmt.Fprintf(&b, "Line %d of the minutes: we discussed the roadmap and the budget.\n", i)
	}
	return []byte(b.String())
}

// BenchmarkFilter50 measures one message through the 50-rule filter,
// including building the pattern view of the message.
func BenchmarkFilter50(b *testing.B) {
	prog, err := Parse("filter50", []byte(filter50()))
	if err != nil {
		b.Fatal(err)
	}
	raw := benchMessage()
	deliver := func(ctx context.Context, d Delivery) (int, error) { return 0, nil }
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		res, err := prog.Run(ctx, NewMessage(raw), Env{Deliver: deliver})
		if err != nil || len(res.Deliveries) != 1 || res.Deliveries[0].Kind != "default" {
			b.Fatalf("unexpected result %+v %v", res.Deliveries, err)
		}
	}
}
