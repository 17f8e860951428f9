package sieve

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// script30 is a typical 30-rule user script: list sorting by List-Id with
// match variables, sender and subject rules, flags, a body check, spam
// and size rules, and a vacation.
func script30() string {
	var b strings.Builder
	b.WriteString(`require ["fileinto", "imap4flags", "variables", "envelope", "body", "relational",
	"comparator-i;ascii-numeric", "spamtest", "subaddress", "vacation", "copy", "regex", "date"];` + "\n")
	for i := 0; i < 10; i++ {
		fmt.Fprintf(&b, "if header :contains \"list-id\" \"<list%d.lists.example.org>\" { fileinto \"Lists.list%d\"; stop; }\n", i, i)
	}
	for i := 0; i < 8; i++ {
		fmt.Fprintf(&b, "if address :is :all \"from\" [\"boss%d@example.com\", \"ceo%d@example.com\"] { addflag \"\\\\Flagged\"; }\n", i, i)
	}
	for i := 0; i < 5; i++ {
		fmt.Fprintf(&b, "if header :matches \"subject\" \"*[ticket-%d *]*\" { fileinto :copy \"Tickets.${2}\"; }\n", i)
	}
	b.WriteString(`if header :regex "subject" "^(re|fwd?): \\[(urgent|alert)\\]" { addflag "$Urgent"; }
if envelope :detail :matches "to" "*" { set "folder" "${1}"; }
if body :text :contains ["unsubscribe here", "click to claim"] { fileinto "Junk"; stop; }
if spamtest :value "ge" :comparator "i;ascii-numeric" "8" { fileinto "Junk"; stop; }
if size :over 10M { fileinto "Big"; }
if date :value "lt" "date" "year" "2000" { fileinto "Old"; }
if allof (header :contains "to" "bob@example.net", not exists "list-id") {
  vacation :days 7 :subject "Away" "I am away until Monday.";
}
`)
	return b.String()
}

// message4K is a realistic 4 KB message: a few Received fields, the usual
// headers and a plain text body.
func message4K() []byte {
	var b strings.Builder
	for i := 0; i < 4; i++ {
		fmt.Fprintf(&b, "Received: from relay%d.example.org (relay%d.example.org [192.0.2.%d])\n\tby mx.example.net with ESMTPS id abc%d; Mon, 4 Mar 2024 10:00:0%d +0000\n", i, i, i, i, i)
	}
	b.WriteString("From: Someone <someone@example.org>\nTo: Bob <bob@example.net>\nCc: team@example.net\n" +
		"Subject: Re: minutes of the weekly meeting [ticket-3 42] follow-up\nDate: Mon, 4 Mar 2024 10:00:00 +0000\n" +
		"Message-ID: <abc@example.org>\nX-Spam-Score: 1.2\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\n")
	for b.Len() < 4096 {
		b.WriteString("We discussed the roadmap, the budget and the hiring plan for next quarter.\n")
	}
	return []byte(b.String())
}

// BenchmarkParseExecute parses the 30-rule script and runs it over the
// 4 KB message, as delivery does once per message.
func BenchmarkParseExecute(b *testing.B) {
	src := []byte(script30())
	msg := message4K()
	now := time.Date(2024, 3, 10, 12, 0, 0, 0, time.UTC)
	ctx := context.Background()
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		s, err := Parse(src, Options{})
		if err != nil {
			b.Fatal(err)
		}
		env := &Env{Message: msg, From: "someone@example.org", To: "bob+work@example.net", User: "bob", Now: now}
		res, err := s.Execute(ctx, env)
		if err != nil || len(res.Actions) == 0 {
			b.Fatal(res, err)
		}
	}
}

// BenchmarkExecute runs the parsed script only (a delivery agent may
// cache parsed scripts).
func BenchmarkExecute(b *testing.B) {
	s, err := Parse([]byte(script30()), Options{})
	if err != nil {
		b.Fatal(err)
	}
	msg := message4K()
	now := time.Date(2024, 3, 10, 12, 0, 0, 0, time.UTC)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		env := &Env{Message: msg, From: "someone@example.org", To: "bob+work@example.net", User: "bob", Now: now}
		if _, err := s.Execute(ctx, env); err != nil {
			b.Fatal(err)
		}
	}
}

// TestScript30 checks what the benchmark's script decides, so that the
// benchmark measures a run that does what it should.
func TestScript30(t *testing.T) {
	s := mustParse(t, script30())
	res := mustRun(t, s, &Env{Message: message4K(), From: "someone@example.org", To: "bob+work@example.net", User: "bob",
		Now: time.Date(2024, 3, 10, 12, 0, 0, 0, time.UTC)})
	got := strings.Join(actionStrings(res.Actions), "; ")
	want := `fileinto Tickets.42 copy; vacation to=someone@example.org subject="Away"; implicit keep`
	if got != want {
		t.Fatalf("actions\n %s\nwant\n %s", got, want)
	}
}
