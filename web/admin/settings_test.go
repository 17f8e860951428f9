package admin

import (
	"bytes"
	"html"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"postern/filters/greylist"
	"postern/policy/access"
)

var versionField = regexp.MustCompile(`name="version" value="([^"]*)"`)

// versionOf is the version the page of a setting (or of one of its
// directory's files) shows.
func (b *browser) versionOf(name, file string) string {
	b.s.t.Helper()
	path := "/admin/settings/" + name
	if file != "" {
		path += "?file=" + url.QueryEscape(file)
	}
	page := b.get(path)
	// A directory page lists every file's version; the edit form's is last.
	all := versionField.FindAllStringSubmatch(page.body, -1)
	if page.code != http.StatusOK || len(all) == 0 {
		b.s.t.Fatalf("GET %s: %d, no version:\n%s", path, page.code, page.body)
	}
	return html.UnescapeString(all[len(all)-1][1])
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The settings page lists the spam policy, routes and limits, each with
// its title and help; secrets are listed without a link.
func TestSettingsListed(t *testing.T) {
	s := newSite(t, true)
	b := s.browser().login()
	r := b.get("/admin/settings")
	if r.code != http.StatusOK {
		t.Fatalf("GET /admin/settings: %d", r.code)
	}
	for _, name := range []string{"filters", "spamscore", "smtprules", "dnsbl", "greylist", "ratelimit", "bayes", "reputation", "spf", "dmarc", "arc", "milters", "policyservices", "smtpaccess", "routes", "senderroutes", "sizelimit", "maxrcpts", "aliases", "acceptmailfor"} {
		if !strings.Contains(r.body, `href="/admin/settings/`+name+`"`) {
			t.Errorf("settings list has no link to %s", name)
		}
	}
	if !strings.Contains(r.body, "Spam score thresholds") || !strings.Contains(r.body, "docs/greylist.md") {
		t.Error("titles and help lines are missing")
	}
	for _, name := range []string{"smarthostauth", "srssecrets", "webadmin", "userdb", "authmysqlrc", "dkim", "statestore"} {
		if strings.Contains(r.body, `href="/admin/settings/`+name+`"`) {
			t.Errorf("secret %s is linked", name)
		}
		if !strings.Contains(r.body, "<code>"+name+"</code>") {
			t.Errorf("secret %s is not listed", name)
		}
	}
}

// A file setting of the spam policy: a bad line is refused with its file
// and line and the file stays; a good text is written with the file's mode
// kept, and the server reloads.
func TestFileSettingEdit(t *testing.T) {
	s := newSite(t, true)
	b := s.browser().login()
	path := filepath.Join(s.etc, greylist.SettingName)
	os.WriteFile(path, []byte("delay 5m\n"), 0o604)
	v := b.versionOf("greylist", "")
	r := b.post("/admin/settings/greylist", url.Values{"version": {v}, "content": {"# comment\ndelay soon\n"}})
	if r.code != http.StatusBadRequest || !strings.Contains(r.body, path+":2:") {
		t.Fatalf("bad greylist: %d, want 400 naming %s:2:\n%s", r.code, path, r.body)
	}
	if !strings.Contains(r.body, "delay soon") {
		t.Error("the refused text is not given back")
	}
	if got := readFile(t, path); got != "delay 5m\n" || s.reloads.Load() != 0 {
		t.Fatalf("after a refusal: %q, %d reloads", got, s.reloads.Load())
	}
	r = b.post("/admin/settings/greylist", url.Values{"version": {v}, "content": {"delay 2m\nlifetime 30d"}})
	if r.code != http.StatusSeeOther {
		t.Fatalf("good greylist: %d\n%s", r.code, r.body)
	}
	fi, _ := os.Stat(path)
	if got := readFile(t, path); got != "delay 2m\nlifetime 30d\n" || fi.Mode().Perm() != 0o604 {
		t.Errorf("written %q mode %v, want the text and mode 0604", got, fi.Mode().Perm())
	}
	if s.reloads.Load() != 1 {
		t.Errorf("%d reloads, want 1", s.reloads.Load())
	}
	if page := b.get(r.location); !strings.Contains(page.body, "greylist saved and the server reloaded") {
		t.Errorf("the reload's result is not shown:\n%s", page.body)
	}
	// A setting that does not exist yet is created.
	if _, err := os.Stat(filepath.Join(s.etc, "dnsbl")); err == nil {
		t.Fatal("init wrote dnsbl; pick another absent setting")
	}
	r = b.post("/admin/settings/dnsbl", url.Values{"version": {b.versionOf("dnsbl", "")}, "content": {"zen.spamhaus.org bogus=1\n"}})
	if r.code != http.StatusBadRequest || !strings.Contains(r.body, filepath.Join(s.etc, "dnsbl")+":1:") {
		t.Errorf("bad new dnsbl: %d\n%s", r.code, r.body)
	}
	if _, err := os.Stat(filepath.Join(s.etc, "dnsbl")); err == nil {
		t.Error("a refused new setting was written")
	}
	r = b.post("/admin/settings/dnsbl", url.Values{"version": {b.versionOf("dnsbl", "")}, "content": {"zen.spamhaus.org\n"}})
	if r.code != http.StatusSeeOther || readFile(t, filepath.Join(s.etc, "dnsbl")) != "zen.spamhaus.org\n" {
		t.Errorf("good new dnsbl: %d", r.code)
	}
	if left, _ := filepath.Glob(filepath.Join(os.TempDir(), "postern-webadmin-*")); len(left) != 0 {
		t.Errorf("check copies left behind: %v", left)
	}
}

// A directory setting: its files in order, add, edit and delete one, each
// checked as the whole joined setting before it lands.
func TestDirectorySettingEdit(t *testing.T) {
	s := newSite(t, true)
	b := s.browser().login()
	os.Remove(filepath.Join(s.etc, access.SettingName))
	dir := filepath.Join(s.etc, access.SettingName+".d")
	os.MkdirAll(dir, 0o750)
	os.WriteFile(filepath.Join(dir, "20-nets"), []byte("10.0.0.0/8\tdeny\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "10-local"), []byte("127.0.0.1\tallow,RELAYCLIENT\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "old.bak"), []byte("not read\n"), 0o600)
	page := b.get("/admin/settings/smtpaccess")
	i, j := strings.Index(page.body, ">10-local<"), strings.Index(page.body, ">20-nets<")
	if page.code != 200 || i < 0 || j < i || strings.Contains(page.body, "old.bak") {
		t.Fatalf("directory page does not list the files in order:\n%s", page.body)
	}

	// Add: a bad new file is refused with its file and line; nothing lands.
	add := func(name, content string) reply {
		return b.post("/admin/settings/smtpaccess", url.Values{"new": {"1"}, "file": {name}, "content": {content}})
	}
	r := add("30-more", "# more\n192.0.2.0/24\tmaybe\n")
	if r.code != http.StatusBadRequest || !strings.Contains(r.body, filepath.Join(dir, "30-more")+":2:") {
		t.Fatalf("bad new file: %d, want 400 naming 30-more:2:\n%s", r.code, r.body)
	}
	if _, err := os.Stat(filepath.Join(dir, "30-more")); err == nil {
		t.Fatal("a refused file was written")
	}
	if r := add("30-more", "192.0.2.0/24\tdeny\n"); r.code != http.StatusSeeOther {
		t.Fatalf("good new file: %d\n%s", r.code, r.body)
	}
	fi, err := os.Stat(filepath.Join(dir, "30-more"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("new file: %v %v, want its siblings' mode 0600", err, fi)
	}
	if r := add("30-more", "192.0.2.1\tdeny\n"); r.code != http.StatusBadRequest || !strings.Contains(r.body, "exists already") {
		t.Errorf("adding over an existing file: %d", r.code)
	}

	// Edit: refused with the file and line, the old text intact; then done.
	v := b.versionOf("smtpaccess", "20-nets")
	r = b.post("/admin/settings/smtpaccess", url.Values{"file": {"20-nets"}, "version": {v}, "content": {"10.0.0.0/8\tdeny\nnot-an-address\tdeny\n"}})
	if r.code != http.StatusBadRequest || !strings.Contains(r.body, filepath.Join(dir, "20-nets")+":2:") {
		t.Fatalf("bad edit: %d\n%s", r.code, r.body)
	}
	if got := readFile(t, filepath.Join(dir, "20-nets")); got != "10.0.0.0/8\tdeny\n" {
		t.Fatalf("a refused edit changed the file: %q", got)
	}
	r = b.post("/admin/settings/smtpaccess", url.Values{"file": {"20-nets"}, "version": {v}, "content": {"10.0.0.0/8\tdeny\n172.16.0.0/12\tdeny\n"}})
	if r.code != http.StatusSeeOther || readFile(t, filepath.Join(dir, "20-nets")) != "10.0.0.0/8\tdeny\n172.16.0.0/12\tdeny\n" {
		t.Fatalf("good edit: %d\n%s", r.code, r.body)
	}
	// The page it was made from is stale now.
	r = b.post("/admin/settings/smtpaccess", url.Values{"file": {"20-nets"}, "version": {v}, "content": {"10.0.0.0/8\tallow\n"}})
	if r.code != http.StatusBadRequest || !strings.Contains(r.body, "changed by someone else") {
		t.Errorf("stale edit: %d", r.code)
	}
	rules, err := access.Load(s.etc)
	if err != nil || rules == nil {
		t.Fatalf("smtpaccess after the edits: %v", err)
	}

	// Delete.
	r = b.post("/admin/settings/smtpaccess", url.Values{"file": {"30-more"}, "delete": {"1"}, "version": {b.versionOf("smtpaccess", "30-more")}})
	if r.code != http.StatusSeeOther {
		t.Fatalf("delete: %d\n%s", r.code, r.body)
	}
	if _, err := os.Stat(filepath.Join(dir, "30-more")); err == nil {
		t.Error("deleted file still there")
	}
	if n := s.reloads.Load(); n != 3 {
		t.Errorf("%d reloads after add, edit and delete, want 3", n)
	}

	// Hostile names: refused, nothing written anywhere.
	for _, name := range []string{"../x", "..", ".hidden", "a/b", "x~", "y.bak", "z.dpkg-new", "sp ace", "", "/abs", "a\\b", "nul\x00"} {
		r := add(name, "192.0.2.9\tdeny\n")
		if r.code != http.StatusBadRequest {
			t.Errorf("new file %q: %d, want 400", name, r.code)
		}
		r = b.post("/admin/settings/smtpaccess", url.Values{"file": {name}, "delete": {"1"}, "version": {""}})
		if r.code != http.StatusBadRequest {
			t.Errorf("delete %q: %d, want 400", name, r.code)
		}
	}
	for _, p := range []string{filepath.Join(s.etc, "x"), filepath.Join(dir, ".hidden"), filepath.Join(dir, "a"), filepath.Join(dir, "x~")} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s was written", p)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "10-local")); err != nil {
		t.Error("a hostile delete removed a file")
	}
}

// Deleting a piece another setting needs is refused: the whole
// configuration is checked, not the setting alone.
func TestDirectoryDeleteCheckedAgainstOthers(t *testing.T) {
	s := newSite(t, true)
	b := s.browser().login()
	accept := filepath.Join(s.etc, "acceptmailfor")
	own := readFile(t, accept)
	os.Remove(accept)
	os.MkdirAll(accept, 0o750)
	os.WriteFile(filepath.Join(accept, "00-own"), []byte(own), 0o640)
	os.WriteFile(filepath.Join(accept, "50-second"), []byte("second.test\n"), 0o640)
	os.WriteFile(filepath.Join(s.etc, "hosteddomains"), []byte("alias.test\tsecond.test\n"), 0o640)
	r := b.post("/admin/settings/acceptmailfor", url.Values{"file": {"50-second"}, "delete": {"1"}, "version": {b.versionOf("acceptmailfor", "50-second")}})
	if r.code != http.StatusBadRequest || !strings.Contains(r.body, filepath.Join(s.etc, "hosteddomains")+":1:") {
		t.Fatalf("delete of a needed domain: %d, want 400 naming hosteddomains:1:\n%s", r.code, r.body)
	}
	if _, err := os.Stat(filepath.Join(accept, "50-second")); err != nil {
		t.Fatal("a refused delete removed the file")
	}
	// A problem elsewhere that was there before does not block a fix.
	os.WriteFile(filepath.Join(s.etc, "maxrcpts"), []byte("lots\n"), 0o640)
	r = b.post("/admin/settings/acceptmailfor", url.Values{"file": {"50-second"}, "version": {b.versionOf("acceptmailfor", "50-second")}, "content": {"second.test\nthird.test\n"}})
	if r.code != http.StatusSeeOther {
		t.Fatalf("edit beside an old problem: %d\n%s", r.code, r.body)
	}
	if page := b.get(r.location); !strings.Contains(page.body, "reload was refused") || !strings.Contains(page.body, "maxrcpts") {
		t.Errorf("the refused reload is not shown:\n%s", page.body)
	}
}

// Secrets are listed but never served, written, or quoted in a refusal.
func TestSecretsNotServed(t *testing.T) {
	s := newSite(t, true)
	b := s.browser().login()
	const secret = "s3cret-Pa55word"
	files := map[string]string{
		"smarthostauth": "relay.example.net user " + secret + "\n",
		"srssecrets":    secret + secret + "\n",
		"authmysqlrc":   "MYSQL_PASSWORD " + secret + "\n",
		"statestore":    "redis 127.0.0.1:6379 password=" + secret + "\n",
	}
	for name, content := range files {
		os.WriteFile(filepath.Join(s.etc, name), []byte(content), 0o600)
	}
	os.MkdirAll(filepath.Join(s.etc, "dkim"), 0o700)
	os.WriteFile(filepath.Join(s.etc, "dkim", "example.test.sel.key"), []byte("-----BEGIN PRIVATE KEY-----\n"+secret+"\n"), 0o600)
	adminsBefore := readFile(t, filepath.Join(s.etc, SettingName))
	for _, name := range []string{"smarthostauth", "srssecrets", "authmysqlrc", "statestore", "dkim", "webadmin", "userdb", "tlscert"} {
		r := b.get("/admin/settings/" + name)
		if r.code != http.StatusOK || strings.Contains(r.body, secret) || strings.Contains(r.body, "$2") {
			t.Errorf("GET %s: %d, secret shown", name, r.code)
		}
		if name == "tlscert" {
			continue // a list of paths; the PEM files are no setting
		}
		if strings.Contains(r.body, "<textarea") {
			t.Errorf("%s has an edit form", name)
		}
		r = b.post("/admin/settings/"+name, url.Values{"version": {digestOf(nil)}, "content": {"x y z\n"}})
		if r.code != http.StatusBadRequest || strings.Contains(r.body, secret) {
			t.Errorf("POST %s: %d, want 400", name, r.code)
		}
	}
	for name, content := range files {
		if got := readFile(t, filepath.Join(s.etc, name)); got != content {
			t.Errorf("%s changed", name)
		}
	}
	if readFile(t, filepath.Join(s.etc, SettingName)) != adminsBefore {
		t.Error("webadmin changed")
	}
	// A refusal caused by a secret file names it without quoting it: a
	// broken login line that a new routes rule would make count.
	os.WriteFile(filepath.Join(s.etc, "smarthostauth"), []byte("relay.example.net "+secret+"\n"), 0o600)
	lines := s.h.problems(s.etc, s.etc)
	found := false
	for _, l := range lines {
		if strings.Contains(l, secret) {
			t.Errorf("problem quotes a secret: %s", l)
		}
		found = found || strings.Contains(l, filepath.Join(s.etc, "smarthostauth")) && strings.Contains(l, "holds secrets")
	}
	if !found {
		t.Errorf("the secret file's problem is not named: %q", lines)
	}
}

// The directory form's token and session checks are the other pages'.
func TestDirectorySettingNeedsTokenAndSession(t *testing.T) {
	s := newSite(t, true)
	dir := filepath.Join(s.etc, "greylist.d")
	os.MkdirAll(dir, 0o750)
	form := url.Values{"new": {"1"}, "file": {"10-x"}, "content": {"delay 1m\n"}}
	if r := s.browser().do("POST", "/admin/settings/greylist", form); r.code != http.StatusSeeOther || r.location != "/admin/login" {
		t.Errorf("without a session: %d %q", r.code, r.location)
	}
	b := s.browser().login()
	if r := b.do("POST", "/admin/settings/greylist", form); r.code != http.StatusForbidden {
		t.Errorf("without a token: %d", r.code)
	}
	if _, err := os.Stat(filepath.Join(dir, "10-x")); err == nil {
		t.Fatal("a file was added without a token")
	}
	if r := b.post("/admin/settings/greylist", form); r.code != http.StatusSeeOther {
		t.Fatalf("with the token: %d\n%s", r.code, r.body)
	}
	if !bytes.Equal([]byte(readFile(t, filepath.Join(dir, "10-x"))), []byte("delay 1m\n")) {
		t.Error("added file's text")
	}
}
