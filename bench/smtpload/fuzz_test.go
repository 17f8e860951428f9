package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{
		"4096": 4096, "4k": 4096, "4K": 4096, "4kb": 4096, "1m": 1 << 20, "1MB": 1 << 20, " 12 ": 12, "256m": 256 << 20,
	} {
		got, err := parseSize(in)
		if err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "-1", "k", "1g", "257m", "1.5k", "99999999999999999999", "4 k", "0x10"} {
		if got, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) = %d, want an error", in, got)
		}
	}
}

func TestParseAuth(t *testing.T) {
	u, p, err := parseAuth("alice:pa:ss")
	if err != nil || u != "alice" || p != "pa:ss" {
		t.Errorf("parseAuth = %q %q %v", u, p, err)
	}
	for _, in := range []string{"alice", ":pw", "a\r\nb:c", "a:b\x00"} {
		if _, _, err := parseAuth(in); err == nil {
			t.Errorf("parseAuth(%q): want an error", in)
		}
	}
}

// FuzzParseSize: any -size text either fails or gives a size in bounds.
func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"4096", "4k", "1m", "1MB", "0", "-5", "9223372036854775807k", "1mb"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseSize(s)
		if err == nil && (n < 1 || n > maxMessageSize) {
			t.Fatalf("parseSize(%q) = %d, out of bounds", s, n)
		}
	})
}

// FuzzParseRecipients: accepted addresses can never smuggle a command
// into the SMTP dialogue, and a message built for them keeps its size.
func FuzzParseRecipients(f *testing.F) {
	for _, s := range []string{"a@b", "a@b, <c@d>", ",,,", "a@b\r\nDATA", "<>", "x@y,x@y"} {
		f.Add(s)
	}
	b := newMessageBuilder(0, "f@example.com", "0011223344556677")
	f.Fuzz(func(t *testing.T, s string) {
		list, err := parseRecipients(s)
		if err != nil {
			return
		}
		if len(list) == 0 || len(list) > maxRecipients {
			t.Fatalf("%d recipients accepted", len(list))
		}
		for _, a := range list {
			if a == "" || strings.ContainsAny(a, " \r\n<>\x00") {
				t.Fatalf("address %q accepted", a)
			}
		}
		b.size = b.minimumSize(1, list, 0) + 100
		var buf bytes.Buffer
		n, err := b.write(&buf, 1, list, time.Unix(0, 0))
		if err != nil || n != b.size || int64(buf.Len()) != b.size {
			t.Fatalf("message for %q: %d octets (%v), want %d", list, n, err, b.size)
		}
	})
}

// FuzzParseAuth: accepted credentials never contain line breaks or NUL,
// which would break the AUTH PLAIN exchange (RFC 4616 section 2).
func FuzzParseAuth(f *testing.F) {
	for _, s := range []string{"user:pass", "u:p:q", "nocolon", ":", "u:\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, p, err := parseAuth(s)
		if err != nil {
			return
		}
		if u == "" || strings.ContainsAny(u+p, "\x00\r\n") || u+":"+p != s {
			t.Fatalf("parseAuth(%q) = %q, %q", s, u, p)
		}
	})
}
