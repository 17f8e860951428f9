package acme

import (
	"strings"
	"testing"
)

// FuzzCheckHost: what CheckHost accepts is a name a CA can certify (a
// wildcard only as a whole first label) and that is safe as a file name in
// the state directory.
func FuzzCheckHost(f *testing.F) {
	for _, s := range []string{"mail.example.com", "*.example.com", "192.0.2.1", "../x.example", "a..b", "xn--bcher-kva.example", "-a.b", "a.b-", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		if CheckHost(h) != nil {
			return
		}
		orig := h
		h = strings.TrimPrefix(h, "*.")
		if len(orig) > 253 || h != orig && !strings.Contains(h, ".") {
			t.Fatalf("accepted %q", orig)
		}
		if len(h) > 253 || !strings.Contains(h, ".") || strings.ContainsAny(h, "/\\*\x00 ") || strings.Contains(h, "..") ||
			strings.HasPrefix(h, ".") || strings.HasSuffix(h, ".") || h != strings.ToLower(h) || strings.Trim(h, "0123456789.") == "" {
			t.Fatalf("accepted %q", h)
		}
	})
}
