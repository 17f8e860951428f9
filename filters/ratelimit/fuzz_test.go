package ratelimit

import (
	"strings"
	"testing"

	"postern/policy"
)

// FuzzParseConfig: any setting file is refused with a FILE:LINE error or
// gives rules that New accepts and that write back to a line that parses to
// the same rule.
func FuzzParseConfig(f *testing.F) {
	f.Add("client /24 messages 100/1h\nauth * rcpts 1000/1d\n")
	f.Add("client /24,/48 connections 60/m\nsender @* rcpts 10/30s\n")
	f.Add("client ::ffff:10.0.0.0/104 unknown 20/1h\nonstoreerror tempfail\n")
	f.Fuzz(func(t *testing.T, text string) {
		var lines []policy.Line
		for i, l := range strings.Split(text, "\n") {
			if l = strings.TrimSpace(l); l != "" {
				lines = append(lines, policy.Line{File: "ratelimit", Num: i + 1, Text: l})
			}
		}
		cfg, err := ParseConfig(lines)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "ratelimit:") {
				t.Fatalf("error without file and line: %v", err)
			}
			return
		}
		if _, err := New(Options{Config: cfg, Store: nopStore{}}); err != nil {
			t.Fatalf("ParseConfig accepted what New refuses: %v", err)
		}
		for _, r := range cfg.Rules {
			again, err := parseRule(policy.Line{File: "x", Num: 1, Text: r.String()})
			if err != nil || again.id() != r.id() || again.Limit != r.Limit {
				t.Fatalf("rule %q writes back as %q: %v", text, r.String(), err)
			}
		}
	})
}
