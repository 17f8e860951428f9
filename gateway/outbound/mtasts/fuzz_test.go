package mtasts

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// FuzzParse feeds arbitrary bodies to the policy parser: it must not panic,
// and whatever it accepts must be a policy the client can use safely.
// Seeds are in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := Parse(body)
		if err != nil {
			if p != nil {
				t.Fatalf("policy and error both returned")
			}
			return
		}
		if len(body) > maxPolicySize {
			t.Fatalf("%d bytes accepted", len(body))
		}
		switch p.Mode {
		case ModeEnforce, ModeTesting:
			if len(p.MX) == 0 {
				t.Fatalf("mode %s without mx accepted", p.Mode)
			}
		case ModeNone:
		default:
			t.Fatalf("mode %q accepted", p.Mode)
		}
		if p.MaxAge < 0 || p.MaxAge > maxMaxAge || p.MaxAge%time.Second != 0 {
			t.Fatalf("max_age %v accepted", p.MaxAge)
		}
		for _, pattern := range p.MX {
			again, err := normalizePattern(pattern)
			if err != nil || again != pattern {
				t.Fatalf("mx %q not normalized: %q, %v", pattern, again, err)
			}
			if parent, ok := strings.CutPrefix(pattern, "*."); ok {
				alone := &Policy{MX: []string{pattern}}
				if !alone.Match("x." + parent) {
					t.Fatalf("%q does not match x.%s", pattern, parent)
				}
				if alone.Match("x.y."+parent) || alone.Match(parent) {
					t.Fatalf("%q matches other than one label more", pattern)
				}
				continue
			}
			if !p.Match(strings.ToUpper(pattern) + ".") {
				t.Fatalf("%q does not match itself", pattern)
			}
		}
	})
}

// FuzzParseTXT: the TXT record parser must not panic, every failure must
// be ErrNoPolicy, and an accepted id must be 1 to 32 letters and digits.
// Seeds are in testdata/fuzz/FuzzParseTXT.
func FuzzParseTXT(f *testing.F) {
	f.Fuzz(func(t *testing.T, first, second string) {
		records := []string{first}
		if second != "" {
			records = append(records, second)
		}
		id, err := ParseTXT(records)
		if err != nil {
			if !errors.Is(err, ErrNoPolicy) {
				t.Fatalf("error %v is not ErrNoPolicy", err)
			}
			return
		}
		if !validID(id) {
			t.Fatalf("id %q accepted", id)
		}
	})
}
