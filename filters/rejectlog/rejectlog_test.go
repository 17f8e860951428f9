package rejectlog

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func TestAddSearchRotate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "rejects.jsonl")
	l, err := Open(path, 4096)
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	for i := 0; i < 40; i++ {
		func(i int) {
			r := Record{Time: base.Add(time.Duration(i) * time.Minute), Client: fmt.Sprintf("192.0.2.%d", i),
				From: "spam@bad.example", Rcpts: []string{"alice@example.test"}, Stage: "rcpt",
				Reply: "554 5.7.1 Listed by zen", Decider: "dnsbl", Results: []FilterResult{{Filter: "dnsbl", Verdict: "reject", Score: 10}}}
			if i%2 == 0 {
				r.Decider, r.Results, r.Reply = "greylist", []FilterResult{{Filter: "greylist", Verdict: "tempfail"}}, "451 4.7.1 Greylisted"
			}
			if err := l.Add(r); err != nil {
				t.Error(err)
			}
		}(i)
	}
	l.Close()
	if _, err := os.Stat(path + ".1"); err != nil {
		t.Fatalf("log did not rotate at 4096 bytes: %v", err)
	}
	st, _ := os.Stat(path)
	if st.Size() > 4096 {
		t.Fatalf("current log %d bytes, over its bound", st.Size())
	}
	all, err := Search(path, Query{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) == 0 || len(all) > 40 {
		t.Fatalf("%d records", len(all))
	}
	grey, _ := Search(path, Query{Filter: "greylist"})
	for _, r := range grey {
		if r.Decider != "greylist" {
			t.Fatalf("filter query returned %+v", r)
		}
	}
	one, _ := Search(path, Query{Client: "192.0.2.39"})
	if len(one) != 1 || one[0].Reply != "554 5.7.1 Listed by zen" {
		t.Fatalf("client query: %+v", one)
	}
	recent, _ := Search(path, Query{Since: base.Add(35 * time.Minute), Limit: 2})
	if len(recent) != 2 || recent[1].Time.Before(recent[0].Time) || recent[0].Time.Before(base.Add(35*time.Minute)) {
		t.Fatalf("since+limit: %+v", recent)
	}
	// Garbage lines are skipped, not fatal.
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("not json\n{\"time\":\n")
	f.Close()
	if _, err := Search(path, Query{}); err != nil {
		t.Fatalf("garbage line broke Search: %v", err)
	}
}

// Many writers at once: every line stays whole.
func TestConcurrentWritersKeepLinesWhole(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rejects.jsonl")
	l, err := Open(path, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for j := 0; j < 20; j++ {
				l.Add(Record{Time: time.Now(), Client: fmt.Sprintf("198.51.100.%d", i), Reply: "550 5.7.1 no"})
			}
		}(i)
	}
	wg.Wait()
	l.Close()
	all, err := Search(path, Query{})
	if err != nil || len(all) != 1000 {
		t.Fatalf("%d whole records, want 1000 (%v)", len(all), err)
	}
}
