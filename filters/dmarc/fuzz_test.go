package dmarc_test

import (
	"errors"
	"strings"
	"testing"

	"postern/filters/dmarc"
)

// FuzzParseRecord: any TXT text parses to a usable record or a classified
// error, never a panic; a usable record always has valid fields.
func FuzzParseRecord(f *testing.F) {
	for _, s := range []string{
		"v=DMARC1; p=reject", "v=DMARC1;p=quarantine;sp=none;adkim=s;aspf=s;pct=25;rua=mailto:a@b",
		"v=DMARC1; rua=mailto:x@y", "v=DMARC1; p=; pct=-1; adkim=", "v=DMARC1;;;;=;==", "p=reject; v=DMARC1",
		"v=DMARC1; pct=99999999999999999999; p=none", "", "v=", ";",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, txt string) {
		rec, err := dmarc.ParseRecord(txt)
		if err != nil {
			if !errors.Is(err, dmarc.ErrNotDMARC) && !errors.Is(err, dmarc.ErrBadRecord) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		switch rec.Policy {
		case dmarc.PolicyNone, dmarc.PolicyQuarantine, dmarc.PolicyReject:
		default:
			t.Fatalf("policy %q", rec.Policy)
		}
		if rec.Percent < 0 || rec.Percent > 100 {
			t.Fatalf("pct %d", rec.Percent)
		}
		if rec.DKIMAlignment != dmarc.Relaxed && rec.DKIMAlignment != dmarc.Strict || rec.SPFAlignment != dmarc.Relaxed && rec.SPFAlignment != dmarc.Strict {
			t.Fatalf("alignment %c %c", rec.DKIMAlignment, rec.SPFAlignment)
		}
	})
}

// FuzzFromDomain: any header yields one lower-case domain or a classified
// error.
func FuzzFromDomain(f *testing.F) {
	for _, s := range []string{
		"From: Alice <alice@example.org>\r\n\r\n", "From: a@b, c@d\r\n\r\n", "From: a@b\r\nFrom: c@d\r\n\r\n",
		"From: =?utf-8?q?=E2=82=AC?= <a@bücher.example>\r\n\r\n", "from : (c) \"x\\\"y\" <@a,@b:c@d>\r\n\r\n",
		"From:\r\n\t<\r\n\t>\r\n", "Subject: none\r\n\r\nFrom: body@x\r\n", "From: a@[1.2.3.4]\n\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		fields, err := dmarc.ReadFromField(strings.NewReader(header), 4096)
		if err != nil {
			return
		}
		d, err := dmarc.FromDomain(fields)
		if err != nil {
			for _, e := range []error{dmarc.ErrNoFrom, dmarc.ErrMultipleFrom, dmarc.ErrMultipleAuthors, dmarc.ErrBadFrom} {
				if errors.Is(err, e) {
					return
				}
			}
			t.Fatalf("unclassified error %v", err)
		}
		if d == "" || d != strings.ToLower(d) {
			t.Fatalf("domain %q", d)
		}
	})
}

// FuzzParseFailureOptions: any fo= value parses to options that render
// back to a value that parses the same (and never to nothing: 0 is the
// default).
func FuzzParseFailureOptions(f *testing.F) {
	for _, s := range []string{"", "0", "1", "d", "s", "0:1:d:s", " 1 : D ", "x", ":::", "d:s:d:s:d:s:d:s:d:s:d:s:d:s:d:s:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, fo string) {
		o := dmarc.ParseFailureOptions(fo)
		s := o.String()
		if s == "" || dmarc.ParseFailureOptions(s) != o {
			t.Fatalf("fo=%q: %+v renders as %q", fo, o, s)
		}
	})
}

// FuzzReadHeader: the header copied into a failure report is bounded,
// made of whole CRLF lines, and never has the blank line.
func FuzzReadHeader(f *testing.F) {
	for _, s := range []string{"A: 1\r\n\r\nbody", "A: 1\nB: 2", "\r\n", "A: 1\r\n\tfolded\r\n\r\n", "\x00\r\r\n\n"} {
		f.Add(s, 64)
	}
	f.Fuzz(func(t *testing.T, msg string, max int) {
		if max <= 0 || max > 1<<16 {
			max = 64
		}
		h := dmarc.ReadHeader(strings.NewReader(msg), max)
		if len(h) > max+len(msg) || (len(h) > 0 && !strings.HasSuffix(string(h), "\r\n")) || strings.Contains(string(h), "\r\n\r\n") {
			t.Fatalf("ReadHeader(%q, %d) = %q", msg, max, h)
		}
	})
}
