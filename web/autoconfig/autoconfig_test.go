package autoconfig

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"postern/gateway/outbound/mtasts"
	"postern/policy"
)

// testSettings: a server mail.example.com for example.com with
// non-standard ports, as make run's loopback listeners have.
func testSettings(t *testing.T, policyLines string) Settings {
	t.Helper()
	hosted := func(d string) bool { return d == "example.com" || d == "example.org" }
	sts, err := ParsePolicies(settingLines(policyLines), "mail.example.com", hosted)
	if err != nil {
		t.Fatal(err)
	}
	return Settings{
		Hostname: "mail.example.com",
		TLS:      true,
		Hosted:   hosted,
		MTASTS:   sts,
		Services: []Service{
			{Protocol: IMAP, Port: 2993, ImplicitTLS: true, Listener: "imaps"},
			{Protocol: IMAP, Port: 2143, Listener: "imap"},
			{Protocol: POP3, Port: 2110, Listener: "pop3"},
			{Protocol: SMTP, Port: 2465, ImplicitTLS: true, Listener: "submissions"},
			{Protocol: SMTP, Port: 2587, Listener: "submission"},
		},
	}
}

// settingLines splits text into a setting's lines, as policy.ReadSetting
// gives them.
func settingLines(text string) []policy.Line {
	var lines []policy.Line
	for i, l := range strings.Split(text, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, policy.Line{File: "mtastspolicy", Num: i + 1, Text: l})
		}
	}
	return lines
}

func do(h http.Handler, method, host, target string, body io.Reader) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, body)
	req.Host = host
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestThunderbirdFromHostAndAddress(t *testing.T) {
	h := New(testSettings(t, ""), nil)
	for _, tc := range []struct{ host, target string }{
		{"autoconfig.example.com", "/mail/config-v1.1.xml"},
		{"mail.example.com", "/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=bob%40Example.COM"},
	} {
		rec := do(h, "GET", tc.host, tc.target, nil)
		if rec.Code != 200 {
			t.Fatalf("%s%s: %d %s", tc.host, tc.target, rec.Code, rec.Body)
		}
		var cc ClientConfig
		if err := xml.Unmarshal(rec.Body.Bytes(), &cc); err != nil {
			t.Fatal(err)
		}
		if cc.Version != "1.1" || cc.Provider.Domain != "example.com" {
			t.Errorf("clientConfig %+v", cc)
		}
		want := []ClientServer{
			{"imap", "mail.example.com", 2993, "SSL", "password-cleartext", "%EMAILADDRESS%"},
			{"imap", "mail.example.com", 2143, "STARTTLS", "password-cleartext", "%EMAILADDRESS%"},
			{"pop3", "mail.example.com", 2110, "STARTTLS", "password-cleartext", "%EMAILADDRESS%"},
		}
		if len(cc.Provider.Incoming) != len(want) {
			t.Fatalf("incoming %+v", cc.Provider.Incoming)
		}
		for i := range want {
			if cc.Provider.Incoming[i] != want[i] {
				t.Errorf("incoming %d = %+v, want %+v", i, cc.Provider.Incoming[i], want[i])
			}
		}
		if len(cc.Provider.Outgoing) != 2 || cc.Provider.Outgoing[0].Port != 2465 || cc.Provider.Outgoing[0].SocketType != "SSL" ||
			cc.Provider.Outgoing[1].Port != 2587 || cc.Provider.Outgoing[1].SocketType != "STARTTLS" || cc.Provider.Outgoing[0].Type != "smtp" {
			t.Errorf("outgoing %+v", cc.Provider.Outgoing)
		}
	}
}

func TestUnknownDomainIsNotFound(t *testing.T) {
	h := New(testSettings(t, ""), nil)
	for _, tc := range []struct{ method, host, target, body string }{
		{"GET", "autoconfig.example.net", "/mail/config-v1.1.xml", ""},
		{"GET", "mail.example.com", "/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=a@example.net", ""},
		{"GET", "mail.example.com", "/mail/apple.mobileconfig?emailaddress=a@example.net", ""},
		{"POST", "autodiscover.example.net", "/autodiscover/autodiscover.xml", autodiscoverRequest("a@example.net")},
		{"GET", "mta-sts.example.net", "/.well-known/mta-sts.txt", ""},
	} {
		if rec := do(h, tc.method, tc.host, tc.target, strings.NewReader(tc.body)); rec.Code != 404 {
			t.Errorf("%s %s%s: %d, want 404", tc.method, tc.host, tc.target, rec.Code)
		}
	}
	if rec := do(h, "GET", "x", "/mail/apple.mobileconfig?emailaddress=not-an-address", nil); rec.Code != 400 {
		t.Errorf("bad address: %d, want 400", rec.Code)
	}
}

func autodiscoverRequest(addr string) string {
	return `<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006">
  <Request>
    <EMailAddress>` + addr + `</EMailAddress>
    <AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema>
  </Request>
</Autodiscover>`
}

func TestAutodiscover(t *testing.T) {
	h := New(testSettings(t, ""), nil)
	for _, path := range []string{"/autodiscover/autodiscover.xml", "/Autodiscover/Autodiscover.xml"} {
		rec := do(h, "POST", "autodiscover.example.com", path, strings.NewReader(autodiscoverRequest("bob@example.com")))
		if rec.Code != 200 {
			t.Fatalf("%s: %d %s", path, rec.Code, rec.Body)
		}
		var resp AutodiscoverResponse
		if err := xml.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(rec.Body.Bytes(), []byte(`xmlns="`+AutodiscoverOutlookNS+`"`)) {
			t.Errorf("no Outlook response namespace:\n%s", rec.Body)
		}
		ps := resp.Response.Account.Protocols
		if len(ps) != 3 {
			t.Fatalf("protocols %+v", ps)
		}
		want := map[string][3]any{"IMAP": {2993, "on", "SSL"}, "POP3": {2110, "on", "TLS"}, "SMTP": {2465, "on", "SSL"}}
		for _, p := range ps {
			w := want[p.Type]
			if p.Port != w[0] || p.SSL != w[1] || p.Encryption != w[2] || p.Server != "mail.example.com" || p.LoginName != "bob@example.com" {
				t.Errorf("%s: %+v, want %v", p.Type, p, w)
			}
		}
	}
	if rec := do(h, "GET", "x", "/autodiscover/autodiscover.xml", nil); rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d", rec.Code)
	}
}

func TestAutodiscoverHostileBodies(t *testing.T) {
	h := New(testSettings(t, ""), nil)
	big := autodiscoverRequest("bob@example.com") + "<!--" + strings.Repeat("x", MaxAutodiscoverBody) + "-->"
	if rec := do(h, "POST", "x", "/autodiscover/autodiscover.xml", strings.NewReader(big)); rec.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized: %d, want 413", rec.Code)
	}
	// Without a Content-Length (chunked), the reader's bound refuses it.
	req := httptest.NewRequest("POST", "/autodiscover/autodiscover.xml", io.MultiReader(strings.NewReader(big)))
	req.ContentLength = -1
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized, chunked: %d, want 413", rec.Code)
	}
	hostile := map[string]string{
		"billion laughs": `<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>` +
			`<Autodiscover><Request><EMailAddress>&lol2;@example.com</EMailAddress></Request></Autodiscover>`,
		"external entity": `<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]>` +
			`<Autodiscover><Request><EMailAddress>&x;</EMailAddress></Request></Autodiscover>`,
		"deep":         "<Autodiscover>" + strings.Repeat("<a>", 1000) + strings.Repeat("</a>", 1000) + "</Autodiscover>",
		"no address":   `<Autodiscover><Request></Request></Autodiscover>`,
		"not xml":      "hello",
		"wrong root":   `<Other><Request><EMailAddress>bob@example.com</EMailAddress></Request></Other>`,
		"two at":       autodiscoverRequest("bob@x@example.com"),
		"unterminated": `<Autodiscover><Request><EMailAddress>bob@example.com`,
	}
	for name, body := range hostile {
		if rec := do(h, "POST", "x", "/autodiscover/autodiscover.xml", strings.NewReader(body)); rec.Code != 400 {
			t.Errorf("%s: %d, want 400", name, rec.Code)
		}
	}
	if _, err := ParseAutodiscoverRequest(strings.NewReader(big)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized: %v", err)
	}
}

func TestAppleProfile(t *testing.T) {
	h := New(testSettings(t, ""), nil)
	get := func(addr string) *httptest.ResponseRecorder {
		return do(h, "GET", "mail.example.com", "/mail/apple.mobileconfig?emailaddress="+addr, nil)
	}
	rec := get("bob%40example.com")
	if rec.Code != 200 || rec.Header().Get("Content-Type") != AppleContentType {
		t.Fatalf("%d %q %s", rec.Code, rec.Header().Get("Content-Type"), rec.Body)
	}
	values := plistValues(t, rec.Body.Bytes())
	for k, v := range map[string]string{
		"IncomingMailServerHostName":   "mail.example.com",
		"IncomingMailServerPortNumber": "2993",
		"IncomingMailServerUseSSL":     "true",
		"OutgoingMailServerPortNumber": "2465",
		"OutgoingMailServerUseSSL":     "true",
		"IncomingMailServerUsername":   "bob@example.com",
		"EmailAccountType":             "EmailTypeIMAP",
		"PayloadType":                  "Configuration",
	} {
		if values[k] != v {
			t.Errorf("%s = %q, want %q", k, values[k], v)
		}
	}
	if !bytes.Contains(rec.Body.Bytes(), []byte("<key>PayloadType</key>\n<string>com.apple.mail.managed</string>")) {
		t.Error("no com.apple.mail.managed payload")
	}
	// The same address gets the same UUIDs; another address others.
	if again := get("bob%40example.com"); again.Body.String() != rec.Body.String() {
		t.Error("profile for the same address differs")
	}
	other := plistValues(t, get("carol%40example.com").Body.Bytes())
	if other["PayloadUUID"] == values["PayloadUUID"] || len(values["PayloadUUID"]) != 36 {
		t.Errorf("PayloadUUIDs %q, %q", values["PayloadUUID"], other["PayloadUUID"])
	}
	// Characters XML gives meaning to are escaped, not injected.
	if got := plistValues(t, get("a%26b%27x@example.com").Body.Bytes()); got["EmailAddress"] != "a&b'x@example.com" {
		t.Errorf("EmailAddress %q", got["EmailAddress"])
	}
}

// plistValues checks the plist is well-formed XML and returns each key's
// value (the last, for repeated keys: the outer dict comes last).
func plistValues(t *testing.T, doc []byte) map[string]string {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(doc))
	out := map[string]string{}
	var key, elem string
	var text strings.Builder
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("plist is not well-formed XML: %v\n%s", err, doc)
		}
		switch tk := tok.(type) {
		case xml.StartElement:
			elem = tk.Name.Local
			text.Reset()
			if (elem == "true" || elem == "false") && key != "" {
				out[key] = elem
				key = ""
			}
		case xml.CharData:
			text.Write(tk)
		case xml.EndElement:
			switch tk.Name.Local {
			case "key":
				key = text.String()
			case "string", "integer":
				if key != "" {
					out[key] = text.String()
					key = ""
				}
			}
		}
	}
	return out
}

func TestMTASTSServedForItsHostOnly(t *testing.T) {
	h := New(testSettings(t, "example.com mode=enforce max_age=604800 mx=mail.example.com mx=*.backup.example.com\nexample.org mode=testing max_age=86400"), nil)
	want := "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.backup.example.com\r\nmax_age: 604800\r\n"
	rec := do(h, "GET", "mta-sts.example.com:443", "/.well-known/mta-sts.txt", nil)
	if rec.Code != 200 || rec.Body.String() != want || rec.Header().Get("Content-Type") != "text/plain" {
		t.Fatalf("%d %q\n%q", rec.Code, rec.Header().Get("Content-Type"), rec.Body.String())
	}
	p, err := mtasts.Parse(rec.Body.Bytes())
	if err != nil || p.Mode != mtasts.ModeEnforce || len(p.MX) != 2 {
		t.Errorf("the sending side reads %+v, %v", p, err)
	}
	// Default mx is me.
	if rec := do(h, "GET", "MTA-STS.example.org.", "/.well-known/mta-sts.txt", nil); rec.Body.String() != "version: STSv1\r\nmode: testing\r\nmx: mail.example.com\r\nmax_age: 86400\r\n" {
		t.Errorf("example.org: %d %q", rec.Code, rec.Body.String())
	}
	for _, host := range []string{"example.com", "mail.example.com", "autoconfig.example.com", "mta-sts.example.net", "mta-sts.mta-sts.example.com"} {
		if rec := do(h, "GET", host, "/.well-known/mta-sts.txt", nil); rec.Code != 404 {
			t.Errorf("host %s: %d, want 404", host, rec.Code)
		}
	}
	// A domain we host without a policy: 404 too.
	h2 := New(testSettings(t, "example.org mode=none max_age=0"), nil)
	if rec := do(h2, "GET", "mta-sts.example.com", "/.well-known/mta-sts.txt", nil); rec.Code != 404 {
		t.Errorf("no policy: %d", rec.Code)
	}
}

func TestMTASTSPolicyIDFollowsContent(t *testing.T) {
	a := testSettings(t, "example.com mode=testing max_age=86400")
	b := testSettings(t, "example.com mode=enforce max_age=86400")
	pa, _ := a.MTASTS.Get("example.com")
	pb, _ := b.MTASTS.Get("example.com")
	if pa.ID == pb.ID || len(pa.ID) != 32 {
		t.Errorf("ids %q %q", pa.ID, pb.ID)
	}
	if _, err := mtasts.ParseTXT([]string{"v=STSv1; id=" + pa.ID}); err != nil {
		t.Errorf("id record: %v", err)
	}
}

func TestBadPolicyLinesRefusedWithFileLine(t *testing.T) {
	dir := t.TempDir()
	if err := policy.Init(dir, "example.com", "mail.example.com", false); err != nil {
		t.Fatal(err)
	}
	etc := filepath.Join(dir, "etc")
	cfg, err := policy.Load(etc)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ line, reason string }{
		{"example.com mode=sometimes max_age=1", "mode"},
		{"example.com mode=enforce", "max_age"},
		{"example.com max_age=10", "mode"},
		{"example.com mode=enforce max_age=99999999999", "max_age"},
		{"example.com mode=enforce max_age=-1", "max_age"},
		{"example.com mode=enforce max_age=10 colour=red", "unknown key"},
		{"example.com mode=enforce max_age=10 mx=bad_name!", "mx"},
		{"example.com mode=enforce mode=none max_age=10", "twice"},
		{"example.net mode=enforce max_age=10", "accepts mail"},
		{"exa/mple.com mode=enforce max_age=10", "DNS name"},
		{"mode=enforce max_age=10", "domain"},
	} {
		dirSetting := filepath.Join(etc, SettingMTASTS+".d")
		os.RemoveAll(dirSetting)
		os.MkdirAll(dirSetting, 0o755)
		content := "# policies\n\nexample.com mode=testing max_age=86400\n" + tc.line + "\n"
		os.WriteFile(filepath.Join(dirSetting, "10-test"), []byte(content), 0o644)
		_, err := LoadPolicies(cfg)
		wantPos := filepath.Join(dirSetting, "10-test") + ":4: "
		if err == nil || !strings.Contains(err.Error(), wantPos) || !strings.Contains(err.Error(), tc.reason) {
			t.Errorf("%q: %v; want %q and %q", tc.line, err, wantPos, tc.reason)
		}
	}
}
