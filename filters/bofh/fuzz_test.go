package bofh

import (
	"bytes"
	"context"
	"net/netip"
	"strings"
	"testing"

	"postern/filters"
	"postern/policy"
)

// FuzzParseLine: any bofh line parses or fails with a FILE:LINE error and
// never panics.
func FuzzParseLine(f *testing.F) {
	for _, s := range []string{
		"badfrom @.spam.example", "badfrom user@.example.org", "badmx 198.51.100.7", "badmx 2001:db8::/32",
		"freemail gmail.test googlemail.test", "spamtrap trap@example.org", "maxrcpts 20 hard",
		"opt BOFHCHECKHELO=2", "opt BOFHHEADERLIMIT=5000", "opt BOFHSPFMAILFROM=pass,none", "spamtrapblock 90m",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		cfg, err := Parse([]policy.Line{{File: "bofh", Num: 1, Text: text}})
		if err != nil {
			if !strings.HasPrefix(err.Error(), "bofh:1: ") {
				t.Fatalf("error without FILE:LINE: %v", err)
			}
			return
		}
		if cfg.HeaderLimit < MinHeaderLimit || cfg.CheckHELO < 0 || cfg.CheckHELO > 2 {
			t.Fatalf("out of bounds: %+v", cfg)
		}
	})
}

// FuzzCheckData: any message is judged (header limit, base64 text) without
// panic or endless work.
func FuzzCheckData(f *testing.F) {
	for _, s := range []string{
		"From: a@example.org\r\n\r\nbody\r\n",
		"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Transfer-Encoding: base64\r\n\r\naGk=\r\n--x--\r\n",
		"Content-Type: multipart/alternative; boundary=\"\"\r\n\r\n",
		"Content-Type: text/html; charset=\"\r\nContent-Transfer-Encoding: base64\r\n\r\n",
		"no header",
	} {
		f.Add([]byte(s))
	}
	cfg := DefaultConfig()
	cfg.CheckDNS = false
	cfg.NoBase64Text = true
	cfg.HeaderLimit = MinHeaderLimit
	flt, err := New(Options{Config: cfg})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		s := &filters.Session{ClientIP: netip.MustParseAddr("192.0.2.1")}
		res := flt.CheckData(context.Background(), s, bytes.NewReader(msg))
		if res.Filter != FilterName {
			t.Fatalf("result %+v", res)
		}
	})
}
