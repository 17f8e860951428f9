package acme

import (
	"strings"
	"testing"
	"time"
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

// FuzzRenewalInfo: whatever a CA answers, a window is accepted only when
// it has both ends and ends after it starts, and the pause before the next
// question stays within a minute and a day.
func FuzzRenewalInfo(f *testing.F) {
	f.Add([]byte(`{"suggestedWindow":{"start":"2025-01-02T04:00:00Z","end":"2025-01-03T04:00:00Z"},"explanationURL":"https://acme.example.com/docs/ari"}`), "21600")
	f.Add([]byte(`{"suggestedWindow":{"start":"2025-01-03T04:00:00Z","end":"2025-01-02T04:00:00Z"}}`), "Wed, 21 Oct 2015 07:28:00 GMT")
	f.Add([]byte(`{"suggestedWindow":{}}`), "-5")
	f.Add([]byte(`not json`), "99999999999999999999")
	f.Fuzz(func(t *testing.T, body []byte, ra string) {
		if ri, err := parseRenewalInfo(body); err == nil {
			w := ri.SuggestedWindow
			if w.Start.IsZero() || w.End.IsZero() || !w.End.After(w.Start) {
				t.Fatalf("accepted window %v – %v", w.Start, w.End)
			}
		}
		if d := retryAfter(ra, time.Now()); d < ariMinPoll || d > ariMaxPoll {
			t.Fatalf("Retry-After %q gave %v", ra, d)
		}
	})
}
