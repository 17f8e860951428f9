package server

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2/imapclient"

	"postern/web/admin"
)

// An account added through the web admin (on the server's own web
// listener) logs in over IMAP and receives mail; the admin's Reload
// button reloads the running server.
func TestWebadminAddedAccountReceivesMail(t *testing.T) {
	h := newHarness(t)
	if err := admin.SetPassword(h.etc, "ops", "admin pw"); err != nil {
		t.Fatal(err)
	}
	base := "http://" + h.addr("web")
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	post := func(path string, form url.Values) (int, string) {
		t.Helper()
		resp, err := c.PostForm(base+path, form)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// Without a session nothing is added.
	if code, _ := post("/admin/accounts/new", url.Values{"name": {"bob@example.test"}, "password": {"x"}, "password2": {"x"}}); code != 200 {
		t.Fatalf("POST without a session: %d, want the login page", code)
	}
	code, page := post("/admin/login", url.Values{"name": {"ops"}, "password": {"admin pw"}})
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(page)
	if code != 200 || m == nil || !strings.Contains(page, "imap") {
		t.Fatalf("login and overview: %d\n%s", code, page)
	}
	csrf := m[1]
	code, page = post("/admin/accounts/new", url.Values{"csrf": {csrf}, "name": {"bob@example.test"}, "password": {"bob's pw"}, "password2": {"bob's pw"}})
	if code != 200 || !strings.Contains(page, "account bob@example.test added") {
		t.Fatalf("add: %d\n%s", code, page)
	}
	if err := h.send("someone@example.net", []string{"bob@example.test"}, testMessage("for bob", "Hello Bob\r\n")); err != nil {
		t.Fatalf("mail to the new account: %v", err)
	}
	h.settle()
	ic, err := imapclient.DialInsecure(h.addr("imap"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ic.Close()
	if err := ic.Login("bob@example.test", "bob's pw").Wait(); err != nil {
		t.Fatalf("IMAP login of the added account: %v", err)
	}
	if _, err := ic.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	msgs := fetchAll(t, ic)
	if len(msgs) != 1 || !strings.Contains(string(msgs[0].BodySection[0].Bytes), "Hello Bob") {
		t.Fatalf("bob's INBOX: %d messages", len(msgs))
	}
	before := testutilReloads(h)
	if code, page := post("/admin/reload", url.Values{"csrf": {csrf}}); code != 200 || !strings.Contains(page, "configuration reloaded") {
		t.Fatalf("reload: %d\n%s", code, page)
	}
	if after := testutilReloads(h); after != before+1 {
		t.Errorf("reloads %v → %v", before, after)
	}
}

// The admin is served on web listeners only: a metrics listener, often
// open to a monitoring network, does not have it.
func TestWebadminNotOnMetricsListener(t *testing.T) {
	h := newHarness(t)
	h.writeSetting("listen", "smtp 127.0.0.1:0\nweb 127.0.0.1:0\nmetrics 127.0.0.1:0\n")
	h.restart()
	for name, want := range map[string]int{"web": 200, "metrics": 404} {
		resp, err := http.Get("http://" + h.addr(name) + "/admin/login")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("/admin/login on the %s listener: %d, want %d", name, resp.StatusCode, want)
		}
	}
}

func testutilReloads(h *harness) float64 {
	h.t.Helper()
	mfs, err := h.srv.reg.Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "postern_config_reloads_total" {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return -1
}

// The spam policy's settings that only the server reads (filters,
// spamscore) are checked through the server's own configuration check
// when edited in the web admin: a bad line is refused with its file and
// line and the file stays; a good one lands and the running server
// reloads.
func TestWebadminSpamPolicyCheckedByServer(t *testing.T) {
	h := newHarness(t)
	if err := admin.SetPassword(h.etc, "ops", "admin pw"); err != nil {
		t.Fatal(err)
	}
	do, csrf := h.adminLogin("ops", "admin pw")
	version := func(name string) string {
		_, page := do("GET", "/admin/settings/"+name, nil)
		v := regexp.MustCompile(`name="version" value="([^"]*)"`).FindStringSubmatch(page)
		if v == nil {
			t.Fatalf("%s page:\n%s", name, page)
		}
		return v[1]
	}
	for _, c := range []struct{ name, bad, want string }{
		{"spamscore", "reject 10\nquarantine lots\n", "spamscore:2:"},
		{"filters", "dnsbl\nnosuchcheck\n", "filters:2:"},
	} {
		path := filepath.Join(h.etc, c.name)
		before, _ := os.ReadFile(path)
		code, page := do("POST", "/admin/settings/"+c.name, url.Values{"csrf": {csrf}, "version": {version(c.name)}, "content": {c.bad}})
		if code != http.StatusBadRequest || !strings.Contains(page, path+":") || !strings.Contains(page, c.want) {
			t.Errorf("bad %s: %d, want 400 naming %s\n%s", c.name, code, c.want, page)
		}
		if after, _ := os.ReadFile(path); string(after) != string(before) {
			t.Errorf("a refused %s changed the file", c.name)
		}
	}
	reloads := testutilReloads(h)
	code, page := do("POST", "/admin/settings/spamscore", url.Values{"csrf": {csrf}, "version": {version("spamscore")}, "content": {"reject 12\nquarantine 6\n"}})
	if code != 200 || !strings.Contains(page, "spamscore saved and the server reloaded") {
		t.Fatalf("good spamscore: %d\n%s", code, page)
	}
	if got, _ := os.ReadFile(filepath.Join(h.etc, "spamscore")); string(got) != "reject 12\nquarantine 6\n" {
		t.Errorf("spamscore file %q", got)
	}
	if after := testutilReloads(h); after != reloads+1 {
		t.Errorf("reloads %v → %v", reloads, after)
	}
}

// adminLogin logs in to the web admin on the harness's web listener and
// returns a request function keeping the session cookie, and the page's
// CSRF token.
func (h *harness) adminLogin(name, pass string) (do func(method, path string, form url.Values) (int, string), csrf string) {
	h.t.Helper()
	base := "http://" + h.addr("web")
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	do = func(method, path string, form url.Values) (int, string) {
		h.t.Helper()
		var resp *http.Response
		var err error
		if method == "GET" {
			resp, err = c.Get(base + path)
		} else {
			resp, err = c.PostForm(base+path, form)
		}
		if err != nil {
			h.t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if name == "" {
		return do, ""
	}
	_, page := do("POST", "/admin/login", url.Values{"name": {name}, "password": {pass}})
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(page)
	if m == nil {
		h.t.Fatalf("web admin login:\n%s", page)
	}
	return do, m[1]
}

// A refusal in a real SMTP session shows on the web admin's Rejects page
// (the server passes its rejection log), the client's HELO escaped.
func TestWebadminRejectsShowsRefusal(t *testing.T) {
	h := newFilterHarness(t, baseZone(), nil)
	if err := admin.SetPassword(h.etc, "ops", "admin pw"); err != nil {
		t.Fatal(err)
	}
	c := dialRaw(t, h.addr("smtp"))
	c.as("203.0.113.99", "<script>alert(1)</script>")
	if code, text := c.send("x@nospf.test", h.user, testMessage("spam", "buy\r\n")); code/100 != 5 {
		t.Fatalf("listed client: %d %s", code, text)
	}
	base := "http://" + h.addr("web")
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar}
	resp, err := hc.PostForm(base+"/admin/login", url.Values{"name": {"ops"}, "password": {"admin pw"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	resp, err = hc.Get(base + "/admin/rejects?client=203.0.113.99")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	body := string(page)
	for _, want := range []string{"x@nospf.test", "Listed by bl.test: spam source", "<strong>dnsbl</strong>", "helo &lt;script&gt;alert(1)&lt;/script&gt;"} {
		if resp.StatusCode != 200 || !strings.Contains(body, want) {
			t.Fatalf("Rejects page: %d, lacks %q\n%s", resp.StatusCode, want, body)
		}
	}
	if strings.Contains(body, "<script") {
		t.Fatal("the client's HELO is live markup on the page")
	}
}
