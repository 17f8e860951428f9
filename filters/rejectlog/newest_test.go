package rejectlog

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var newestBase = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

// addN appends records from..to-1, one minute apart, client 192.0.2.N
// (the last octet modulo 256), every third from a greylisting.
func addN(t *testing.T, l *Log, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		r := Record{Time: newestBase.Add(time.Duration(i) * time.Minute), Session: fmt.Sprintf("s%d", i), Client: fmt.Sprintf("192.0.2.%d", i%256),
			From: fmt.Sprintf("x%d@bad.example", i), Rcpts: []string{"alice@example.test"}, Stage: "rcpt",
			Reply: "554 5.7.1 Listed", Decider: "dnsbl", Results: []FilterResult{{Filter: "dnsbl", Verdict: "reject", Score: 10}}}
		if i%3 == 0 {
			r.Decider, r.Results = "greylist", []FilterResult{{Filter: "greylist", Verdict: "tempfail"}}
		}
		if err := l.Add(r); err != nil {
			t.Fatal(err)
		}
	}
}

func sessions(recs []Record) string {
	var s []string
	for _, r := range recs {
		s = append(s, r.Session)
	}
	return strings.Join(s, ",")
}

// Pages come newest first; a cursor keeps naming the same place while new
// records are appended and the log rotates once.
func TestNewestPageOrderPagingRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rejects.jsonl")
	l, err := Open(path, 8192)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	addN(t, l, 0, 30)
	ctx := context.Background()
	p, err := NewestPage(ctx, path, PageQuery{Size: 4, MaxRead: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if got := sessions(p.Records); got != "s29,s28,s27,s26" || p.Next.IsZero() || p.Stopped != "" {
		t.Fatalf("first page %s next %v stopped %q", got, p.Next, p.Stopped)
	}
	// New records arrive (and rotate the log) between two pages.
	addN(t, l, 30, 45)
	if _, err := os.Stat(path + ".1"); err != nil {
		t.Fatalf("no rotation: %v", err)
	}
	c, err := ParseCursor(p.Next.String())
	if err != nil || c != p.Next {
		t.Fatalf("cursor round trip %q: %v %v", p.Next, c, err)
	}
	p, err = NewestPage(ctx, path, PageQuery{Size: 4, MaxRead: 1000, From: c})
	if err != nil {
		t.Fatal(err)
	}
	if got := sessions(p.Records); got != "s25,s24,s23,s22" {
		t.Fatalf("second page after appends and a rotation: %s", got)
	}
	// Walk to the end: every record once, newest first, across both files.
	all, _ := Search(path, Query{})
	var walked []Record
	var cur Cursor
	for n := 0; ; n++ {
		p, err := NewestPage(ctx, path, PageQuery{Size: 7, MaxRead: 1000, From: cur})
		if err != nil {
			t.Fatal(err)
		}
		walked = append(walked, p.Records...)
		if p.Next.IsZero() {
			break
		}
		if n > 100 {
			t.Fatal("paging does not end")
		}
		cur = p.Next
	}
	if len(walked) != len(all) {
		t.Fatalf("walked %d records, the log has %d", len(walked), len(all))
	}
	for i := range walked {
		if walked[i].Session != all[len(all)-1-i].Session {
			t.Fatalf("record %d: %s, want %s", i, walked[i].Session, all[len(all)-1-i].Session)
		}
	}
	// Two more rotations: the old cursor's file is gone.
	addN(t, l, 45, 200)
	if _, err := NewestPage(ctx, path, PageQuery{Size: 4, MaxRead: 1000, From: c}); !errors.Is(err, ErrCursorGone) {
		t.Fatalf("cursor into a rotated-out file: %v", err)
	}
}

func TestNewestPageFiltersAndBound(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rejects.jsonl")
	l, err := Open(path, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	addN(t, l, 0, 300)
	l.Close()
	ctx := context.Background()
	p, _ := NewestPage(ctx, path, PageQuery{Query: Query{Filter: "greylist", Until: newestBase.Add(100 * time.Minute), Since: newestBase.Add(90 * time.Minute)}, Size: 10, MaxRead: 1000})
	if got := sessions(p.Records); got != "s99,s96,s93,s90" {
		t.Fatalf("filter+range: %s", got)
	}
	// Nothing matches: reading stops at the bound, and the cursor goes on
	// from there.
	p, _ = NewestPage(ctx, path, PageQuery{Query: Query{Client: "198.51.100.1"}, Size: 10, MaxRead: 50})
	if p.Read != 50 || p.Stopped != "limit" || len(p.Records) != 0 || p.Next.IsZero() {
		t.Fatalf("bound: read %d stopped %q next %v", p.Read, p.Stopped, p.Next)
	}
	p2, _ := NewestPage(ctx, path, PageQuery{Query: Query{From: "x249@"}, Size: 1, MaxRead: 50, From: p.Next})
	if p2.Read != 1 || len(p2.Records) != 1 || p2.Records[0].Session != "s249" {
		t.Fatalf("continuing after the bound: read %d, %s", p2.Read, sessions(p2.Records))
	}
	// A context already ended reads nothing.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	p, _ = NewestPage(cctx, path, PageQuery{Size: 10, MaxRead: 50})
	if p.Read != 0 || !strings.Contains(p.Stopped, "canceled") {
		t.Fatalf("ended context: read %d stopped %q", p.Read, p.Stopped)
	}
}

// Garbage, a torn line and a line over maxLineLen are read past.
func TestNewestPageBadLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rejects.jsonl")
	l, _ := Open(path, 1<<30)
	addN(t, l, 0, 2)
	l.Close()
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("not json\n" + strings.Repeat("y", maxLineLen+chunkSize+10) + "\n\n")
	f.Close()
	l, _ = Open(path, 1<<30)
	addN(t, l, 2, 3)
	l.Close()
	f, _ = os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"time":"2026-`)
	f.Close()
	p, err := NewestPage(context.Background(), path, PageQuery{Size: 10, MaxRead: 100})
	if err != nil || sessions(p.Records) != "s2,s1,s0" || p.Next.IsZero() == false {
		t.Fatalf("%v: %s next %v", err, sessions(p.Records), p.Next)
	}
	if p.Read != 7 {
		t.Fatalf("read %d lines, want 7", p.Read)
	}
	// A record's position reads it again.
	for i, at := range p.At {
		one, err := NewestPage(context.Background(), path, PageQuery{From: at, Size: 1, MaxRead: 1})
		if err != nil || len(one.Records) != 1 || one.Records[0].Session != p.Records[i].Session {
			t.Fatalf("record at %v: %v %+v", at, err, one.Records)
		}
	}
	// No log at all is an empty page.
	p, err = NewestPage(context.Background(), path+"-none", PageQuery{Size: 10, MaxRead: 100})
	if err != nil || len(p.Records) != 0 {
		t.Fatalf("missing log: %v %+v", err, p)
	}
}

// FuzzParseCursor: never a panic; what parses prints back the same.
func FuzzParseCursor(f *testing.F) {
	for _, s := range []string{"", "0000abcd.123", "ffffffff.9223372036854775807", "0000abcd.-1", "x.1", "00000000.0", "0000abcd.", "0000abcd.+5", "0000abcd.99999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCursor(s)
		if err != nil {
			return
		}
		if c.Offset < 0 || c.String() != s {
			t.Fatalf("%q parsed as %+v, prints %q", s, c, c.String())
		}
	})
}
