package access

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"postern/policy"
)

// FuzzParse feeds arbitrary rule text to Parse: it returns rules or
// *policy.Error problems, never panics; in loaded rules every rule's own
// network address finds that rule or a more specific one.
func FuzzParse(f *testing.F) {
	f.Add(courierDefault)
	f.Add("10.0.0.0/8 allow,RELAYCLIENT,SIZELIMIT=1000\n2001:db8::/32\tdeny\n*\tdeny\n")
	f.Add("1.2.3.4\tallow,BLOCK=\"550 a, \\\"b\\\"\"\n")
	f.Add(":2002:c0a8\tdeny\n::ffff:10.0.0.0/104\tallow\n")
	f.Add("11\n12\tpermit\n13\tdeny,X\n1.2.3.4.25\tallow\n")
	f.Fuzz(func(t *testing.T, src string) {
		var lines []policy.Line
		for i, text := range strings.Split(src, "\n") {
			text = strings.TrimSpace(text)
			if text == "" || strings.HasPrefix(text, "#") {
				continue
			}
			lines = append(lines, policy.Line{File: "fuzz", Num: i + 1, Text: text})
		}
		r, err := Parse(lines)
		if err != nil {
			var pe *policy.Error
			if !errors.As(err, &pe) {
				t.Fatalf("error without FILE:LINE: %v", err)
			}
			return
		}
		for _, l := range lines {
			addr, _, _ := cutSpace(l.Text)
			if addr == "*" {
				continue
			}
			p, err := ParseAddress(addr)
			if err != nil {
				t.Fatalf("loaded rule %q no longer parses: %v", addr, err)
			}
			if _, found := r.Lookup(p.Addr()); !found {
				t.Fatalf("rule %s does not match its own address", p)
			}
		}
	})
}

// FuzzParseAddress: an accepted address column is a masked prefix whose
// CIDR form reads back the same.
func FuzzParseAddress(f *testing.F) {
	for _, s := range []string{"10", "192.168.1", "1.2.3.4", ":3ffe", ":0000:0000:0000:0000:0000:0000:0000:0001", "10.0.0.0/8", "2001:db8::/32", "::1", "::ffff:1.2.3.0/120", "1.2.3.4.25"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseAddress(s)
		if err != nil {
			return
		}
		if p != p.Masked() || !p.IsValid() {
			t.Fatalf("ParseAddress(%q) = %v, not a valid masked prefix", s, p)
		}
		q, err := ParseAddress(p.String())
		if err != nil || q != p {
			t.Fatalf("ParseAddress(%q) = %v; its CIDR form reads back as %v, %v", s, p, q, err)
		}
		if _, err := netip.ParsePrefix(p.String()); err != nil {
			t.Fatal(err)
		}
	})
}
