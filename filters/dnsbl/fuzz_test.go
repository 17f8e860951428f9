package dnsbl

import (
	"bytes"
	"os"
	"path/filepath"
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
		`multi.uri.example on=body codes=&0xfe weight=4 action=score`,
		`bodyskip www.Example.co.uk partner.example -defaults`,
		`bodydomains 20`,
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

// FuzzBodyDomains: any message gives at most MaxDomains distinct values,
// each an IP address or a normalized ASCII domain with a dot, that
// RegisteredDomain keeps as it is, and each a valid query name.
func FuzzBodyDomains(f *testing.F) {
	for _, name := range []string{"multipart.eml", "idn.eml", "qp.eml"} {
		b, err := os.ReadFile(filepath.Join("testdata", "uri", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		"Subject: x\r\n\r\nhxxps://a.example/ www.b.example http://user@c.example:25/ http://[::1]/ http://0x7f000001/\r\n",
		"Content-Type: text/html\r\n\r\n<a href='//d.example'>x</a><a href=\"h&#x74;tp://e.example\">",
		"Content-Type: multipart/mixed; boundary=q\r\n\r\n--q\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\naHR0cDovL2YuZXhhbXBsZS8=\r\n--q--\r\n",
		"\r\n\r\nhttp://%zz.example/ http://a..b/ http://.../ www. http:// ://x",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		ds := BodyDomains(bytes.NewReader(msg), BodyOptions{MaxDomains: 5})
		if len(ds) > 5 {
			t.Fatalf("%d domains", len(ds))
		}
		seen := map[string]bool{}
		for _, d := range ds {
			if seen[d] {
				t.Fatalf("duplicate %q in %q", d, ds)
			}
			seen[d] = true
			if RegisteredDomain(d) != d {
				t.Fatalf("%q is not reduced: RegisteredDomain gives %q", d, RegisteredDomain(d))
			}
			if _, err := QueryName("multi.surbl.example", SubjectBody, d); err != nil {
				t.Fatalf("%q cannot be asked: %v", d, err)
			}
		}
	})
}
