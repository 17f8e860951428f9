package server

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
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
