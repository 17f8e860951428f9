package dnsbl

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"postern/filters/dns/dnstest"
)

func runCheck(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := CheckMain(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestCheckMainZones(t *testing.T) {
	srv := dnstest.Start(t, testZone())
	code, out, errs := runCheck(t, "192.0.2.10", "--dns", srv.Addr,
		"--zone", "bl.test weight=10", "--zone", "-allow=wl.test,WL", "--zone", "broken.test", "--testpoints")
	if code != ExitChecked {
		t.Fatalf("exit %d, stderr %s", code, errs)
	}
	for _, want := range []string{
		"client-ip: 192.0.2.10\n",
		"zone bl.test (block on ip, weight 10, reject, codes any, --zone:1): listed 127.0.0.4\n",
		"  query: 10.2.0.192.bl.test\n",
		"  txt: Listed: see https://bl.test/q?192.0.2.10\n",
		"zone wl.test (allow on ip, weight 0, score, codes any, --zone:1): listed 127.0.10.1\n",
		"zone broken.test (block on ip, weight 5, reject, codes any, --zone:1): error: dnsbl broken.test: 192.0.2.99: answer outside 127.0.0.0/8",
		"testpoint bl.test 127.0.0.2: listed (ok)\n",
		"testpoint bl.test 127.0.0.1: not listed (ok)\n",
		"testpoint wl.test 127.0.0.2: not listed (WRONG: the zone does not follow RFC 5782)\n",
		"score: 10\n",
		"verdict: reject\n",
		"reply: 550 5.7.1 Client address 192.0.2.10 is listed by bl.test: Listed: see https://bl.test/q?192.0.2.10\n",
		"var: DNSBL_LISTED=bl.test\n",
		"var: WL_ZONE=wl.test\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = runCheck(t, "--dns", srv.Addr, "--zone", "bl.test", "192.0.2.77")
	if code != ExitChecked || !strings.Contains(out, "not listed") || !strings.Contains(out, "verdict: none\n") {
		t.Errorf("clean IP: exit %d\n%s", code, out)
	}
}

func TestCheckMainDomainAndConfig(t *testing.T) {
	srv := dnstest.Start(t, testZone())
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "dnsbl"), []byte("bl.test\nrhsbl.test on=helo,sender weight=3 action=score\n"), 0o644)
	code, out, errs := runCheck(t, "spam.example", "--config", dir, "--dns", srv.Addr)
	if code != ExitChecked {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if !strings.Contains(out, "domain: spam.example\n") || strings.Count(out, "zone rhsbl.test") != 1 ||
		!strings.Contains(out, "listed 127.0.0.2") || strings.Contains(out, "zone bl.test") ||
		!strings.Contains(out, "verdict: none (listed, but no zone or threshold rejects)") {
		t.Errorf("domain check output:\n%s", out)
	}
}

func TestCheckMainUsage(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"192.0.2.1", "192.0.2.2", "--zone", "bl.test"},
		{"192.0.2.1", "--zone", "bl.test weight=x"},
		{"not a domain!", "--zone", "bl.test"},
		{"192.0.2.1", "--zone", "bl.test", "--config", "/nonexistent"},
		{"--bogus"},
	} {
		if code, _, _ := runCheck(t, args...); code != ExitUsage {
			t.Errorf("%q: exit %d; want %d", args, code, ExitUsage)
		}
	}
	dir := t.TempDir()
	if code, _, errs := runCheck(t, "192.0.2.1", "--config", dir); code != ExitFailure || !strings.Contains(errs, "no zones") {
		t.Errorf("empty config: exit %d, %s", code, errs)
	}
	os.WriteFile(filepath.Join(dir, "dnsbl"), []byte("bl.test weight=x\n"), 0o644)
	if code, _, errs := runCheck(t, "192.0.2.1", "--config", dir); code != ExitFailure || !strings.Contains(errs, "dnsbl:1:") {
		t.Errorf("bad config: exit %d, %s", code, errs)
	}
}

func TestCheckMainMessage(t *testing.T) {
	srv := dnstest.Start(t, testZone().Add(uriZoneRecords()...))
	// A --zone line without on=body is asked as a URI list.
	code, out, errs := runCheck(t, "--message", filepath.Join("testdata", "uri", "multipart.eml"),
		"--dns", srv.Addr, "--zone", "dbl.test codes=127.0.1.2-127.0.1.199")
	if code != ExitChecked {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{
		"body-domain: spam-shop.co.uk\n",
		"body-domain: defanged.example\n",
		"zone dbl.test (block on body, weight 5, reject, codes 127.0.1.2-127.0.1.199, --zone:1): listed 127.0.1.2\n",
		"zone dbl.test (block on body, weight 5, reject, codes 127.0.1.2-127.0.1.199, --zone:1): error: dnsbl dbl.test: 127.255.255.254: the list refused the query",
		"reply: 550 5.7.1 Link domain defanged.example is listed by dbl.test\n",
		"var: DNSBL_BODY_LISTED=defanged.example\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "w3.org") {
		t.Errorf("a default skip domain was asked:\n%s", out)
	}
	// From the standard input, with the zones of the setting keyed on=body.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "dnsbl"), []byte("bl.test\nmulti.surbl.test on=body codes=&0xfe action=score weight=2\n"), 0o644)
	var stdout, stderr bytes.Buffer
	in := strings.NewReader("Subject: x\r\n\r\nhttp://links.example/ and http://clean.example/\r\n")
	if code := CheckMainInput([]string{"--message", "-", "--config", dir, "--dns", srv.Addr}, in, &stdout, &stderr); code != ExitChecked {
		t.Fatalf("stdin: exit %d: %s", code, stderr.String())
	}
	out = stdout.String()
	if strings.Contains(out, "zone bl.test") || !strings.Contains(out, "zone multi.surbl.test (block on body, weight 2, score, codes &254, ") ||
		!strings.Contains(out, "/dnsbl:2): listed 127.0.0.8\n") ||
		!strings.Contains(out, "score: 2\n") || !strings.Contains(out, "body-domain: clean.example\n") {
		t.Errorf("stdin output:\n%s", out)
	}
	if code, _, _ := runCheck(t, "192.0.2.1", "--message", "-", "--zone", "bl.test"); code != ExitUsage {
		t.Errorf("subject and --message: exit %d", code)
	}
	if code, _, errs := runCheck(t, "--message", "/nonexistent/msg", "--zone", "bl.test"); code != ExitFailure || !strings.Contains(errs, "nonexistent") {
		t.Errorf("missing message file: exit %d %s", code, errs)
	}
}
