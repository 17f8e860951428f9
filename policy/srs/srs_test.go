package srs

import (
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"
)

func newTest(t *testing.T, domain string, now time.Time, secrets ...string) *Rewriter {
	t.Helper()
	var bs [][]byte
	for _, s := range secrets {
		bs = append(bs, []byte(s))
	}
	r, err := New(domain, bs)
	if err != nil {
		t.Fatal(err)
	}
	r.Now = func() time.Time { return now }
	return r
}

var day0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

func TestForwardAndReverse(t *testing.T) {
	r := newTest(t, "fwd.example", day0, "a secret of sixteen+")
	got, err := r.Forward("Alice.Smith@A.example")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^SRS0=[A-Za-z0-9+/]{4}=[A-Z2-7]{2}=A\.example=Alice\.Smith@fwd\.example$`).MatchString(got) {
		t.Fatalf("Forward = %q", got)
	}
	back, err := r.Reverse(got)
	if err != nil || back != "Alice.Smith@A.example" {
		t.Fatalf("Reverse(%q) = %q, %v", got, back, err)
	}
	// An MTA on the way folded the case: still ours.
	back, err = r.Reverse(strings.ToLower(got))
	if err != nil || back != "alice.smith@a.example" {
		t.Fatalf("Reverse(lower) = %q, %v", back, err)
	}
	// Local parts with '=' and '+' survive.
	got, _ = r.Forward("a=b+c@x.example")
	if back, err := r.Reverse(got); err != nil || back != "a=b+c@x.example" {
		t.Fatalf("Reverse(%q) = %q, %v", got, back, err)
	}
}

func TestForwardKeepsNullAndOwn(t *testing.T) {
	r := newTest(t, "fwd.example", day0, "a secret of sixteen+")
	if got, err := r.Forward(""); got != "" || err != nil {
		t.Fatalf("null sender: %q %v", got, err)
	}
	own, _ := r.Forward("bob@b.example")
	if got, _ := r.Forward(own); got != own {
		t.Fatalf("our own SRS address rewritten again: %q", got)
	}
	if _, err := r.Forward("nodomain"); err == nil {
		t.Fatal("an address without a domain was rewritten")
	}
}

func TestForgedAndExpired(t *testing.T) {
	r := newTest(t, "fwd.example", day0, "a secret of sixteen+")
	good, _ := r.Forward("alice@a.example")
	// Another address with the same hash: refused (nobody can relay
	// through us by writing SRS addresses).
	forged := strings.Replace(good, "=alice@", "=mallory@", 1)
	if _, err := r.Reverse(forged); !errors.Is(err, ErrBadHash) {
		t.Fatalf("forged: %v", err)
	}
	other := newTest(t, "fwd.example", day0, "another secret, also long")
	if _, err := other.Reverse(good); !errors.Is(err, ErrBadHash) {
		t.Fatalf("other secret: %v", err)
	}
	later := newTest(t, "fwd.example", day0.Add(21*24*time.Hour), "a secret of sixteen+")
	if _, err := later.Reverse(good); err != nil {
		t.Fatalf("21 days old: %v", err)
	}
	tooLate := newTest(t, "fwd.example", day0.Add(22*24*time.Hour), "a secret of sixteen+")
	if _, err := tooLate.Reverse(good); !errors.Is(err, ErrExpired) {
		t.Fatalf("22 days old: %v", err)
	}
	earlier := newTest(t, "fwd.example", day0.Add(-24*time.Hour), "a secret of sixteen+")
	if _, err := earlier.Reverse(good); err != nil {
		t.Fatalf("made by a clock a day ahead: %v", err)
	}
	for _, bad := range []string{"alice@fwd.example", "SRS0=@fwd.example", "SRS0=abcd=ZZ@fwd.example", "SRS0=abcd=AA=nolocal@fwd.example", "SRS1=abcd=host@fwd.example", "SRS0=abcd=!!=a.example=x@fwd.example"} {
		if _, err := r.Reverse(bad); err == nil {
			t.Errorf("Reverse(%q) accepted", bad)
		}
	}
}

// Rotation: addresses made with the old secret verify while it is listed
// second.
func TestSecretRotation(t *testing.T) {
	old := newTest(t, "fwd.example", day0, "the old secret, long enough")
	addr, _ := old.Forward("alice@a.example")
	rotated := newTest(t, "fwd.example", day0, "the new secret, long enough", "the old secret, long enough")
	if back, err := rotated.Reverse(addr); err != nil || back != "alice@a.example" {
		t.Fatalf("after rotation: %q %v", back, err)
	}
	if n, _ := rotated.Forward("alice@a.example"); n == addr {
		t.Fatal("the new secret does not sign")
	}
}

// A message forwarded twice: the second forwarder makes SRS1 naming the
// first, and a bounce goes back hop by hop to the author.
func TestSRS1Chain(t *testing.T) {
	first := newTest(t, "one.example", day0, "first forwarder's secret")
	second := newTest(t, "two.example", day0, "second forwarder's secret")
	third := newTest(t, "three.example", day0, "third forwarder's secret")
	a1, _ := first.Forward("alice@a.example")
	a2, err := second.Forward(a1)
	if err != nil || !strings.HasPrefix(a2, "SRS1=") || !strings.HasSuffix(a2, "@two.example") || !strings.Contains(a2, "=one.example==") {
		t.Fatalf("second hop: %q %v", a2, err)
	}
	a3, _ := third.Forward(a2)
	if !strings.HasPrefix(a3, "SRS1=") || !strings.Contains(a3, "=one.example==") || !strings.HasSuffix(a3, "@three.example") {
		t.Fatalf("third hop: %q", a3)
	}
	// The bounce: the third forwarder sends it straight to the first.
	b, err := third.Reverse(a3)
	if err != nil || b != a1 {
		t.Fatalf("third Reverse = %q %v, want %q", b, err, a1)
	}
	if b, err := second.Reverse(a2); err != nil || b != a1 {
		t.Fatalf("second Reverse = %q %v", b, err)
	}
	if b, err := first.Reverse(a1); err != nil || b != "alice@a.example" {
		t.Fatalf("first Reverse = %q %v", b, err)
	}
	// SRS1 with a tampered host is refused.
	if _, err := third.Reverse(strings.Replace(a3, "one.example", "evil.example", 1)); !errors.Is(err, ErrBadHash) {
		t.Fatalf("tampered SRS1: %v", err)
	}
}

func TestNewRefuses(t *testing.T) {
	if _, err := New("fwd.example", nil); err == nil {
		t.Error("no secret accepted")
	}
	if _, err := New("fwd.example", [][]byte{[]byte("short")}); err == nil {
		t.Error("short secret accepted")
	}
	if _, err := New("", [][]byte{[]byte("a secret of sixteen+")}); err == nil {
		t.Error("empty domain accepted")
	}
}

func FuzzReverse(f *testing.F) {
	r, _ := New("fwd.example", [][]byte{[]byte("a secret of sixteen+")})
	r.Now = func() time.Time { return day0 }
	good, _ := r.Forward("alice@a.example")
	s1, _ := r.Forward("SRS0=abcd=AB=a.example=alice@one.example")
	for _, s := range []string{good, s1, "SRS0=", "SRS1=abcd=h==", "srs0+abcd-AA-d-l@x", "SRS0=abcd=AA=d=@x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, addr string) {
		back, err := r.Reverse(addr)
		if err == nil && back == "" {
			t.Fatalf("Reverse(%q) gave nothing and no error", addr)
		}
		if strings.HasSuffix(strings.ToLower(addr), "@fwd.example") {
			return // ours: Forward keeps it as it is
		}
		fw, err := r.Forward(addr)
		if err != nil || fw == "" {
			return
		}
		b, err := r.Reverse(fw)
		if err != nil {
			t.Fatalf("Reverse(Forward(%q)=%q): %v", addr, fw, err)
		}
		if strings.HasPrefix(fw, "SRS0=") && b != addr {
			t.Fatalf("round trip %q -> %q -> %q", addr, fw, b)
		}
	})
}
