package dnsbl

import (
	"bytes"
	"strings"
	"testing"

	"postern/policy"
)

// FuzzParseLine: any line of the dnsbl setting parses or fails with a
// FILE:LINE error, never panics, and what parses is within bounds.
func FuzzParseLine(f *testing.F) {
	for _, s := range []string{
		`zen.example.org weight=10 codes=127.0.0.2-127.0.0.11 action=reject message="Listed by %z: %t"`,
		`list.dnswl.example type=allow action=accept weight=-5`,
		`dbl.example on=helo,sender,from codes=&4,&0x10,127.0.1.0/24 var=DBL txt=no`,
		`-allow=wl.example,BLOCK/127.0.0.2, -block=bl.example,BLOCK/127.0.0.2,'Go away'`,
		`BLACKLISTS="-block=a.example -block=b.example,SPAMMY"`,
		`-block=t.example,BLOCK,*`,
		`threshold 7.5`,
		`rejectstage connect`,
		`x "unterminated`,
		`-block=`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		cfg := DefaultConfig()
		zones, err := parseLine(&cfg, policy.Line{File: "dnsbl", Num: 1, Text: text})
		if err != nil {
			if !strings.HasPrefix(err.Error(), "dnsbl:1: ") {
				t.Fatalf("error without FILE:LINE: %v", err)
			}
			return
		}
		for _, z := range zones {
			if z.Name == "" || len(z.Name) > 180 || len(z.Message) > maxMessageLen || len(z.Subjects) == 0 {
				t.Fatalf("zone out of bounds: %+v", z)
			}
			// Rendering a hit never panics whatever the template.
			RenderMessage(&Lookup{Zone: z, Subject: SubjectIP, Value: "192.0.2.1", TXT: "why"})
		}
	})
}

// FuzzFromDomains: any message header gives at most five valid domains.
func FuzzFromDomains(f *testing.F) {
	for _, s := range []string{
		"From: a@example.org\r\n\r\nbody",
		"From: \"A, B\" <a@example.org>, c@[192.0.2.1], d@EXAMPLE.net.\r\nSubject: x\r\n\r\n",
		"From: =?utf-8?q?x?= <a@b.example>\n\n",
		"From: broken <<\r\n\r\n",
		"no header at all",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		ds := FromDomains(bytes.NewReader(msg))
		if len(ds) > maxFromDomains {
			t.Fatalf("%d domains", len(ds))
		}
		for _, d := range ds {
			if NormalizeDomain(d) != d {
				t.Fatalf("domain %q not normalized", d)
			}
		}
	})
}
