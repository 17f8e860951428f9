package greylist

import (
	"strings"
	"testing"

	"postern/policy"
)

// FuzzParseConfig: any setting file is either refused with a FILE:LINE
// error or yields a Config that New accepts.
func FuzzParseConfig(f *testing.F) {
	f.Add("delay 5m\nretrywindow 2d\nlifetime 35d\n")
	f.Add("whitelist 192.0.2.0/24 ::ffff:1.2.3.4\nspfpass example.com\n")
	f.Add("passrecipient postmaster@ @example.net\nnullsender pass\n")
	f.Add("delay 99999999999h\n")
	f.Fuzz(func(t *testing.T, text string) {
		var lines []policy.Line
		for i, l := range strings.Split(text, "\n") {
			if l = strings.TrimSpace(l); l != "" {
				lines = append(lines, policy.Line{File: "greylist", Num: i + 1, Text: l})
			}
		}
		cfg, err := ParseConfig(lines)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "greylist") {
				t.Fatalf("error without file name: %v", err)
			}
			return
		}
		if _, err := New(Options{Config: cfg, Store: nopStore{}}); err != nil {
			t.Fatalf("ParseConfig accepted what New refuses: %v", err)
		}
	})
}

// FuzzNormalizeSender: normalisation never panics, is idempotent and keeps
// the domain.
func FuzzNormalizeSender(f *testing.F) {
	for _, s := range []string{"", "<>", "prvs=123=a@b", "a+b@c", "x123y@z", "@", "a@b@c", "prvs=", "\xff@\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n := NormalizeSender(s)
		if NormalizeSender(n) != n && n != "<>" {
			t.Fatalf("not idempotent: %q -> %q -> %q", s, n, NormalizeSender(n))
		}
	})
}
