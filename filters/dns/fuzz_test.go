package dns

import "testing"

// FuzzTXTEscaping: unescapeString undoes EscapeString for any octets, and
// never panics on arbitrary (possibly malformed) presentation text.
func FuzzTXTEscaping(f *testing.F) {
	f.Add("v=spf1 -all")
	f.Add("\x00\xff\\\"")
	f.Add(`a\065b`)
	f.Fuzz(func(t *testing.T, s string) {
		if got := unescapeString(EscapeString(s)); got != s {
			t.Fatalf("round trip of %q gave %q", s, got)
		}
		_ = unescapeString(s)
	})
}
