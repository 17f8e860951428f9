package admin

import (
	"context"
	"html"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"postern/filters/dkim"
	"postern/filters/dns"
	"postern/filters/dns/dnstest"
	"postern/web/autoconfig"
)

// withDomains gives the site a second domain, an MTA-STS policy and an
// ed25519 DKIM key (selector s1) for example.test.
func withDomains(t *testing.T, s *site) dkim.Key {
	t.Helper()
	os.RemoveAll(filepath.Join(s.etc, dkim.KeyDir))
	f, err := os.OpenFile(filepath.Join(s.etc, "acceptmailfor"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("other.test\n")
	f.Close()
	os.WriteFile(filepath.Join(s.etc, "mtastspolicy"), []byte("example.test mode=enforce max_age=604800\n"), 0o644)
	key, _, err := dkim.Keygen(s.etc, "example.test", "s1", "ed25519", 0, false)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func TestDomainsList(t *testing.T) {
	s := newSite(t, true)
	withDomains(t, s)
	b := s.browser().login()
	r := b.get("/admin/domains")
	if r.code != http.StatusOK {
		t.Fatalf("GET /admin/domains: %d %s", r.code, r.body)
	}
	for _, want := range []string{
		`<a href="/admin/domains/example.test">example.test</a></td><td>s1</td><td>enforce</td>`,
		`<a href="/admin/domains/other.test">other.test</a></td><td><span class="bad">no key</span></td><td>none</td>`,
		`<a href="/admin/domains" class="here">Domains</a>`,
	} {
		if !strings.Contains(r.body, want) {
			t.Errorf("list page lacks %q:\n%s", want, r.body)
		}
	}
}

// The domain page shows every record of postern dns records DOMAIN in
// the table and the same text as the zone snippet; other domains are 404.
func TestDomainPage(t *testing.T) {
	s := newSite(t, true)
	key := withDomains(t, s)
	b := s.browser().login()
	r := b.get("/admin/domains/example.test")
	if r.code != http.StatusOK {
		t.Fatalf("GET: %d %s", r.code, r.body)
	}
	dkimValue, _ := dkim.PublicKeyRecord(key.Signer.Public())
	body := html.UnescapeString(r.body) // html/template writes + as &#43;
	for _, want := range []string{
		`<td><code>example.test.</code></td><td>MX</td><td><code class="value">10 mail.example.test.</code>`,
		`<td><code>example.test.</code></td><td>TXT</td><td><code class="value">"v=spf1 mx ~all"</code>`,
		`<td><code>s1._domainkey.example.test.</code></td><td>TXT</td><td><code class="value">"` + dkimValue + `"`,
		`<td><code>_mta-sts.example.test.</code></td><td>TXT</td>`,
		`<td><code>autoconfig.example.test.</code></td><td>CNAME</td><td><code class="value">mail.example.test.</code>`,
		`action="/admin/domains/example.test/check"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("domain page lacks %q", want)
		}
	}
	if strings.Contains(r.body, "Make DKIM key") {
		t.Error("a domain with a key is offered another")
	}
	zone := regexp.MustCompile(`(?s)<textarea class="zone"[^>]*>(.*?)</textarea>`).FindStringSubmatch(r.body)
	if zone == nil || !strings.HasPrefix(html.UnescapeString(zone[1]), "; DNS records for example.test, served by mail.example.test") ||
		!strings.Contains(html.UnescapeString(zone[1]), `s1._domainkey.example.test. IN TXT "`+dkimValue+`"`) {
		t.Errorf("zone snippet: %v", zone)
	}
	for _, p := range []string{"/admin/domains/example.org", "/admin/domains/example", "/admin/domains/%2e%2e"} {
		if r := b.get(p); r.code != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", p, r.code)
		}
	}
	if r := b.post("/admin/domains/example.org/check", nil); r.code != http.StatusNotFound {
		t.Errorf("check of a foreign domain: %d, want 404", r.code)
	}
}

var recordRow = regexp.MustCompile(`<tr class="dns-([a-z-]*)"><td><code>([^<]+)</code></td><td>([A-Z]+)</td>`)

// Check DNS against a real DNS server: records that match (some written
// differently but equal in meaning), one that differs, missing ones and
// one whose lookup fails.
func TestDomainCheck(t *testing.T) {
	s := newSite(t, true)
	key := withDomains(t, s)
	dkimValue, _ := dkim.PublicKeyRecord(key.Signer.Public())
	p := dkimValue[strings.Index(dkimValue, "p=")+2:]
	zone := dnstest.NewZone().Add(
		"example.test. 300 IN MX 10 MAIL.example.test.",
		`example.test. 300 IN TXT "v=spf1   ~all mx"`,
		`example.test. 300 IN TXT "google-site-verification=abc"`,
		// Split and spaced differently, tags reordered: the same key.
		`s1._domainkey.example.test. 300 IN TXT "k=ed25519; v=DKIM1;" " p=`+p[:10]+`" "`+p[10:]+`"`,
		`_dmarc.example.test. 300 IN TXT "v=DMARC1; p=reject"`,
		"autoconfig.example.test. 300 IN CNAME mail.example.test.",
	).ServFail("autodiscover.example.test.")
	srv := dnstest.Start(t, zone)
	os.WriteFile(filepath.Join(s.etc, "resolvers"), []byte(srv.Addr+"\n"), 0o644)

	b := s.browser().login()
	if r := b.do("POST", "/admin/domains/example.test/check", url.Values{}); r.code != http.StatusForbidden {
		t.Errorf("check without a token: %d, want 403", r.code)
	}
	if srv.Total() != 0 {
		t.Errorf("%d DNS queries for a refused POST", srv.Total())
	}
	r := b.post("/admin/domains/example.test/check", nil)
	if r.code != http.StatusOK {
		t.Fatalf("check: %d %s", r.code, r.body)
	}
	states := map[string]string{}
	for _, m := range recordRow.FindAllStringSubmatch(r.body, -1) {
		states[m[2]+" "+m[3]] = m[1]
	}
	for rec, want := range map[string]string{
		"example.test. MX":                    "matches",
		"example.test. TXT":                   "matches",
		"s1._domainkey.example.test. TXT":     "matches",
		"autoconfig.example.test. CNAME":      "matches",
		"_dmarc.example.test. TXT":            "differs",
		"_smtp._tls.example.test. TXT":        "missing",
		"mta-sts.example.test. CNAME":         "missing",
		"autodiscover.example.test. CNAME":    "lookup-error",
		"_submissions._tcp.example.test. SRV": "missing",
	} {
		if got := states[rec]; got != want {
			t.Errorf("%s: %q, want %q", rec, got, want)
		}
	}
	if !strings.Contains(r.body, "DNS has: <code>v=DMARC1; p=reject</code>") {
		t.Error("the differing DMARC record does not show what DNS has")
	}
	if srv.Queries("_dmarc.example.test.", 16) == 0 {
		t.Error("the check did not ask the server of the resolvers setting")
	}
	if !strings.Contains(s.logs.String(), "webadmin: DNS check") {
		t.Error("check not logged")
	}
}

// Make DKIM key writes a 0600 key file, shows its record, never the
// private key, and needs the CSRF token.
func TestDomainDKIMKeygen(t *testing.T) {
	s := newSite(t, true)
	withDomains(t, s)
	b := s.browser().login()
	page := b.get("/admin/domains/other.test")
	if !strings.Contains(page.body, `action="/admin/domains/other.test/dkim"`) || !strings.Contains(page.body, "postern dkim keygen other.test") {
		t.Fatalf("no keygen button or hint on a keyless domain:\n%s", page.body)
	}
	if r := b.do("POST", "/admin/domains/other.test/dkim", url.Values{"type": {"ed25519"}}); r.code != http.StatusForbidden {
		t.Errorf("keygen without a token: %d, want 403", r.code)
	}
	keys, _ := dkim.LoadKeys(filepath.Join(s.etc, dkim.KeyDir))
	if len(keys) != 1 {
		t.Fatalf("a refused POST made a key: %d keys", len(keys))
	}

	r := b.post("/admin/domains/other.test/dkim", url.Values{"type": {"ed25519"}})
	if r.code != http.StatusSeeOther || r.location != "/admin/domains/other.test" {
		t.Fatalf("keygen: %d %q %s", r.code, r.location, r.body)
	}
	keys, _ = dkim.LoadKeys(filepath.Join(s.etc, dkim.KeyDir))
	var made *dkim.Key
	for i := range keys {
		if keys[i].Domain == "other.test" {
			made = &keys[i]
		}
	}
	if made == nil {
		t.Fatal("no key file for other.test")
	}
	fi, err := os.Stat(made.File)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file %s: %v %v, want mode 0600", made.File, fi.Mode(), err)
	}
	pemData, _ := os.ReadFile(made.File)
	secret := strings.Split(string(pemData), "\n")[1] // the PEM body
	if len(secret) < 40 {
		t.Fatalf("key file %q", pemData)
	}

	after := b.get("/admin/domains/other.test")
	value, _ := dkim.PublicKeyRecord(made.Signer.Public())
	if !strings.Contains(after.body, made.Selector+"._domainkey.other.test.") || !strings.Contains(html.UnescapeString(after.body), value) {
		t.Errorf("the new key's record is not shown:\n%s", after.body)
	}
	if !strings.Contains(after.body, "DKIM key made for other.test") {
		t.Error("no message after keygen")
	}
	if strings.Contains(after.body, "Make DKIM key") {
		t.Error("keygen still offered after a key was made")
	}
	for _, body := range []string{r.body, after.body, s.logs.String()} {
		if strings.Contains(body, "PRIVATE KEY") || strings.Contains(body, secret) {
			t.Fatal("the private key was shown or logged")
		}
	}
	// A second key is refused here (that is keygen --selector's job).
	if r := b.post("/admin/domains/other.test/dkim", nil); r.code != http.StatusSeeOther {
		t.Errorf("second keygen: %d", r.code)
	}
	if keys2, _ := dkim.LoadKeys(filepath.Join(s.etc, dkim.KeyDir)); len(keys2) != len(keys) {
		t.Errorf("a second key was made: %d keys, had %d", len(keys2), len(keys))
	}
	if page := b.get("/admin/domains/other.test"); !strings.Contains(page.body, "has a DKIM key already") {
		t.Error("second keygen not explained")
	}
}

// The check is bounded: a resolver that never answers costs the time
// limit, not more, and records beyond the lookup limit are not looked up.
func TestCheckRecordsBounded(t *testing.T) {
	zone := dnstest.NewZone()
	var recs []recordCheck
	for i := range checkLookupLimit + 5 {
		name := "r" + strings.Repeat("x", i%3) + string(rune('a'+i%26)) + ".example.test."
		zone.Timeout(name)
		recs = append(recs, recordCheck{Record: autoconfig.Record{Name: name, Type: "CNAME", Value: "mail.example.test."}})
	}
	srv := dnstest.Start(t, zone)
	res, err := dns.New(dns.Options{Servers: []string{srv.Addr}, Timeout: checkPerServer, Attempts: 1, CacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	checkRecords(ctx, res, recs)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("check took %v with a 300ms limit", d)
	}
	for i, c := range recs {
		if c.State != stateError && c.State != stateNotChecked {
			t.Errorf("record %d: %q", i, c.State)
		}
		if i >= checkLookupLimit && (c.State != stateNotChecked || !strings.Contains(c.Err, "more records")) {
			t.Errorf("record %d beyond the limit: %q %q", i, c.State, c.Err)
		}
	}
	if n := srv.Total(); n > checkLookupLimit {
		t.Errorf("%d queries, limit %d", n, checkLookupLimit)
	}
}

func TestMatchTXT(t *testing.T) {
	for _, tc := range []struct {
		want string
		have []string
		st   checkState
	}{
		{"v=spf1 mx ~all", []string{"v=spf1 ~all  mx"}, stateMatches},
		{"v=spf1 mx ~all", []string{"V=SPF1 MX ~ALL"}, stateMatches},
		{"v=spf1 mx ~all", []string{"v=spf1 mx -all"}, stateDiffers},
		{"v=spf1 mx ~all", []string{"hello"}, stateMissing},
		{"v=DMARC1; p=none; rua=mailto:x@y", []string{"v=DMARC1;rua=mailto:x@y ;  p=none;"}, stateMatches},
		// RFC 7489 section 6.4: v= comes first, or receivers ignore it.
		{"v=DMARC1; p=none", []string{"p=none; v=DMARC1"}, stateMissing},
		{"v=DMARC1; p=none", []string{"v=DMARC1; p=none; rua=mailto:x@y"}, stateDiffers},
		{"v=DKIM1; k=rsa; p=ABC", []string{"p=A B\tC; k=rsa"}, stateMatches},
		{"v=DKIM1; k=rsa; p=ABC", []string{"v=DKIM1; p=ABD"}, stateDiffers},
		{"v=TLSRPTv1; rua=mailto:a@b", nil, stateMissing},
	} {
		if st, _ := matchTXT(tc.want, tc.have); st != tc.st {
			t.Errorf("matchTXT(%q, %q) = %q, want %q", tc.want, tc.have, st, tc.st)
		}
	}
}
