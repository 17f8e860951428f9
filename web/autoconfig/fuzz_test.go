package autoconfig

import (
	"bytes"
	"testing"

	"postern/gateway/outbound/mtasts"
)

// FuzzParsePolicies: any mtastspolicy text is refused or gives policies
// whose body a sender's parser reads back as the same policy, with an id
// fit for the TXT record.
func FuzzParsePolicies(f *testing.F) {
	f.Add("example.com mode=enforce max_age=604800 mx=mail.example.com")
	f.Add("example.com mode=none max_age=0\nexample.org mode=testing max_age=31557600 mx=*.example.org")
	f.Add("example.com mode=enforce max_age=10 mx=a:b")
	f.Fuzz(func(t *testing.T, text string) {
		ps, err := ParsePolicies(settingLines(text), "mail.example.com", nil)
		if err != nil {
			return
		}
		for d, p := range ps.byDomain {
			parsed, err := mtasts.Parse([]byte(p.Body))
			if err != nil {
				t.Fatalf("%s: served policy does not parse: %v\n%q", d, err, p.Body)
			}
			if string(parsed.Mode) != p.Mode || len(parsed.MX) != len(p.MX) || int(parsed.MaxAge.Seconds()) != p.MaxAge {
				t.Fatalf("%s: %+v read back as %+v", d, p, parsed)
			}
			if _, err := mtasts.ParseTXT([]string{"v=STSv1; id=" + p.ID}); err != nil {
				t.Fatalf("%s: id %q: %v", d, p.ID, err)
			}
		}
	})
}

// FuzzParseAutodiscoverRequest: any body is refused or gives one plain
// address, never more than the bounds allow.
func FuzzParseAutodiscoverRequest(f *testing.F) {
	f.Add([]byte(autodiscoverRequest("bob@example.com")))
	f.Add([]byte(`<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "y">]><Autodiscover><Request><EMailAddress>&x;@a</EMailAddress></Request></Autodiscover>`))
	f.Add([]byte(`<a:Autodiscover xmlns:a="x"><a:Request><a:EMailAddress>b@c</a:EMailAddress></a:Request></a:Autodiscover>`))
	f.Fuzz(func(t *testing.T, body []byte) {
		addr, err := ParseAutodiscoverRequest(bytes.NewReader(body))
		if err != nil {
			return
		}
		if full, _, _, err := splitAddress(addr); err != nil || full != addr || len(addr) > maxAddressLen {
			t.Fatalf("address %q passed: %v", addr, err)
		}
		// What Autodiscover answers with it is well-formed XML.
		set := Settings{Hostname: "h", Services: []Service{{Protocol: IMAP, Port: 993, ImplicitTLS: true}}}
		_ = set.Autodiscover(addr)
	})
}
