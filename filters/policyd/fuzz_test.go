package policyd

import (
	"strings"
	"testing"

	"postern/filters"
)

// FuzzParseAction: any answer either is refused or gives a verdict whose
// reply fits SMTP: a 4xx tempfail or 5xx refusal with a matching enhanced
// code class, a 4xx conditional deferral, REDIRECT and BCC addresses
// that are one user@domain, and texts and header fields on one line.
func FuzzParseAction(f *testing.F) {
	for _, s := range []string{"OK", "DUNNO", "REJECT go away", "DEFER_IF_PERMIT 4.2.0 Greylisted, see x",
		"550 5.7.1 no", "452 4.5.3 later", "PREPEND X-A: b", "HOLD", "WARN x", "450 5.1.1 odd", "REJECT 4.1.1 odd",
		"DEFER_IF_REJECT", "DEFER_IF_REJECT 4.7.0 dns trouble", "DEFER_IF_PERMIT 5.1.1 odd",
		"REDIRECT spam@example.org", "BCC <archive@[192.0.2.1]>", "REDIRECT a@b@c", "FILTER smtp:[::1]:10025"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, action string) {
		r, err := parseAction(action)
		if err != nil {
			return
		}
		one := func(s string) bool { return !strings.ContainsAny(s, "\r\n\x00") }
		switch r.Verdict {
		case filters.Reject, filters.Tempfail:
			class := byte('5')
			if r.Verdict == filters.Tempfail {
				class = '4'
			}
			if r.Code/100 != int(class-'0') || r.Enhanced == "" || r.Enhanced[0] != class || !one(r.Message) || r.Message == "" {
				t.Fatalf("%q: %+v", action, r)
			}
		}
		for _, d := range []*filters.Reply{r.DeferIfPermit, r.DeferIfReject} {
			if d != nil && (d.Code/100 != 4 || d.Enhanced == "" || d.Enhanced[0] != '4' || !one(d.Text) || d.Text == "") {
				t.Fatalf("%q: conditional deferral %+v", action, d)
			}
		}
		if e := r.Envelope; e != nil {
			for _, a := range append([]string{e.Redirect}, e.Bcc...) {
				at := strings.LastIndexByte(a, '@')
				if a != "" && (at <= 0 || at == len(a)-1 || strings.ContainsAny(a, " \t\r\n\x00<>")) {
					t.Fatalf("%q: envelope address %q", action, a)
				}
			}
		}
		for _, h := range r.HeaderFields {
			if !one(h) || !strings.Contains(h, ":") {
				t.Fatalf("%q: header %q", action, h)
			}
		}
	})
}
