package tlsrpt

import (
	"strings"
	"sync"
	"testing"
	"time"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// Counts are kept per day, domain and policy; Save and a new Recorder
// bring them back; Finished gives only the days that are over; Forget
// drops one.
func TestRecorderDaysAndPersistence(t *testing.T) {
	dir := t.TempDir()
	clk := &clock{t: time.Date(2026, 11, 25, 23, 0, 0, 0, time.UTC)}
	r, err := NewRecorder(dir, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	sts := Policy{Type: TypeSTS, Strings: []string{"version: STSv1", "mode: enforce", "mx: mx.example.org", "max_age: 86400"}, Domain: "Example.ORG"}
	fail := Failure{ResultType: CertExpired, SendingMTAIP: "192.0.2.1", ReceivingMXHostname: "mx.example.org", ReceivingIP: "198.51.100.25"}
	r.Success(sts)
	r.Success(sts)
	r.Failure(sts, fail)
	r.Failure(sts, fail)
	r.Success(Policy{Type: TypeNoPolicy, Domain: "other.example"})
	clk.add(2 * time.Hour) // the next day
	r.Success(sts)
	if err := r.Save(); err != nil {
		t.Fatal(err)
	}
	r2, err := NewRecorder(dir, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	fin := r2.Finished()
	if len(fin) != 2 || fin[0].Day != "2026-11-25" || fin[0].Domain != "example.org" || fin[1].Domain != "other.example" {
		t.Fatalf("finished: %+v", fin)
	}
	p := fin[0].Policies[0]
	if p.Summary.Success != 2 || p.Summary.Failure != 2 || len(p.Failures) != 1 || p.Failures[0].Count != 2 || p.Failures[0].ResultType != CertExpired || p.Policy.Domain != "example.org" {
		t.Fatalf("example.org's policy: %+v", p)
	}
	if err := r2.Forget("2026-11-25"); err != nil {
		t.Fatal(err)
	}
	if len(r2.Finished()) != 0 {
		t.Fatal("a forgotten day is still finished")
	}
	clk.add(24 * time.Hour)
	if fin := r2.Finished(); len(fin) != 1 || fin[0].Day != "2026-11-26" || fin[0].Policies[0].Summary.Success != 1 {
		t.Fatalf("the second day: %+v", fin)
	}
}

func TestParseRecord(t *testing.T) {
	rua, err := ParseRecord([]string{"v=spf1 -all", "v=TLSRPTv1; rua=mailto:tls@example.org,https://rep.example.org/v1/tlsrpt"})
	if err != nil || strings.Join(rua, " ") != "mailto:tls@example.org https://rep.example.org/v1/tlsrpt" {
		t.Fatalf("%q %v", rua, err)
	}
	for _, bad := range [][]string{
		{"v=TLSRPTv1; rua=mailto:a@example.org", "v=TLSRPTv1; rua=mailto:b@example.org"}, // two records: none
		{"v=TLSRPTv1; rua=ftp://example.org/x"},
		{"v=TLSRPTv1;"},
		{},
	} {
		if rua, err := ParseRecord(bad); err == nil {
			t.Errorf("%q accepted: %q", bad, rua)
		}
	}
}

func FuzzParseRecord(f *testing.F) {
	f.Add("v=TLSRPTv1; rua=mailto:tls@example.org,https://rep.example.org/v1/tlsrpt")
	f.Add("v=TLSRPTv1;rua=mailto:%61@b.example")
	f.Fuzz(func(t *testing.T, txt string) {
		rua, err := ParseRecord([]string{txt})
		if err != nil {
			return
		}
		for _, u := range rua {
			if !strings.HasPrefix(u, "mailto:") && !strings.HasPrefix(u, "https://") || strings.ContainsAny(u, "\r\n") {
				t.Fatalf("rua %q from %q", u, txt)
			}
		}
	})
}
