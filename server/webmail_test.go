package server

import (
	"bytes"
	"crypto/tls"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"

	"postern/mailbox/maildir"
)

// webClient is a browser on the server's web listener.
type webClient struct {
	t    *testing.T
	base string
	c    *http.Client
	csrf string
}

func (h *harness) webLogin(user, pass string) *webClient {
	h.t.Helper()
	jar, _ := cookiejar.New(nil)
	w := &webClient{t: h.t.(*testing.T), base: "http://" + h.addr("web"),
		c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	resp, body := w.do("POST", "/mail/login", "application/x-www-form-urlencoded", strings.NewReader(url.Values{"user": {user}, "password": {pass}}.Encode()))
	if resp.StatusCode != http.StatusSeeOther {
		h.t.Fatalf("webmail login: %d %s", resp.StatusCode, body)
	}
	_, page := w.do("GET", "/mail/folders", "", nil)
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(page)
	if m == nil {
		h.t.Fatalf("no token on the page: %s", page)
	}
	w.csrf = m[1]
	return w
}

func (w *webClient) do(method, path, ctype string, body io.Reader) (*http.Response, string) {
	w.t.Helper()
	req, err := http.NewRequest(method, w.base+path, body)
	if err != nil {
		w.t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
		req.Header.Set("Origin", w.base)
	}
	resp, err := w.c.Do(req)
	if err != nil {
		w.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// The web listener serves the webmail at /mail/ (and sends / there); a
// message sent from it arrives in the recipient's Maildir through the
// server's submission path and is kept in the sender's Sent; a message
// opened in the webmail is \Seen over IMAP, and a flag set over IMAP
// shows in the webmail.
func TestWebmailEndToEnd(t *testing.T) {
	h := newHarness(t)
	h.addUser("bob@example.test", "bob pass")

	w := &webClient{t: t, base: "http://" + h.addr("web"), c: &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	if resp, _ := w.do("GET", "/", "", nil); resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/mail/" {
		t.Fatalf("GET /: %d %v", resp.StatusCode, resp.Header)
	}
	if resp, body := w.do("GET", "/mail/", "", nil); resp.StatusCode != 200 || !strings.Contains(body, `action="/mail/login"`) {
		t.Fatalf("login page: %d", resp.StatusCode)
	}
	if resp, _ := w.do("GET", "/healthz", "", nil); resp.StatusCode != 200 {
		t.Fatalf("healthz: %d", resp.StatusCode)
	}

	a := h.webLogin(h.user, h.pass)
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for k, v := range map[string]string{"csrf": a.csrf, "to": "bob@example.test", "subject": "From the web", "body": "Hello Bob, ünïcödé.\n"} {
		mw.WriteField(k, v)
	}
	fw, _ := mw.CreateFormFile("attach", "notes.txt")
	fw.Write([]byte("attached notes\n"))
	mw.Close()
	resp, page := a.do("POST", "/mail/send", mw.FormDataContentType(), &body)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("send: %d %s", resp.StatusCode, page)
	}

	bobNew, _ := filepath.Glob(filepath.Join(h.maildir("bob@example.test"), "new", "*"))
	if len(bobNew) != 1 {
		t.Fatalf("bob's new/: %v", bobNew)
	}
	got, _ := os.ReadFile(bobNew[0])
	for _, want := range []string{"Subject: From the web", "From: <alice@example.test>", "Received: (from alice@example.test via postern webmail)", "filename=notes.txt", "YXR0YWNoZWQgbm90ZXMK", "Content-Transfer-Encoding: quoted-printable"} {
		if !bytes.Contains(got, []byte(want)) {
			t.Errorf("delivered message lacks %q:\n%s", want, got)
		}
	}
	md, err := maildir.Open(h.maildir(h.user))
	if err != nil {
		t.Fatal(err)
	}
	sent, err := md.Folder("Sent")
	if err != nil {
		t.Fatalf("no Sent folder: %v", err)
	}
	snap, err := sent.Sync(false)
	if err != nil || len(snap.Messages) != 1 || snap.Messages[0].Flags != "S" {
		t.Fatalf("Sent: %v %+v", err, snap)
	}

	// A message delivered over SMTP, opened in the webmail, is \Seen
	// for an IMAP client.
	if err := h.send("carol@example.net", []string{h.user}, testMessage("read me on the web", "text\r\n")); err != nil {
		t.Fatal(err)
	}
	h.settle()
	inbox, _ := md.Folder(maildir.Inbox)
	snap, _ = inbox.Sync(false)
	if len(snap.Messages) != 1 {
		t.Fatalf("inbox: %d messages", len(snap.Messages))
	}
	uid := snap.Messages[0].UID
	if resp, page := a.do("GET", "/mail/msg?f=INBOX&uid="+strconv.FormatUint(uint64(uid), 10), "", nil); resp.StatusCode != 200 || !strings.Contains(page, "read me on the web") {
		t.Fatalf("message page: %d", resp.StatusCode)
	}
	c := h.imapLogin(nil)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	msgs := fetchAll(t, c)
	if len(msgs) != 1 || !hasIMAPFlag(msgs[0].Flags, imap.FlagSeen) {
		t.Fatalf("IMAP flags after the webmail opened it: %+v", msgs[0].Flags)
	}

	// And the other way: a flag an IMAP client sets shows in the webmail.
	store := &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged}, Silent: true}
	if err := c.Store(imap.SeqSetNum(1), store, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if _, page := a.do("GET", "/mail/list?f=INBOX", "", nil); !strings.Contains(page, `title="flagged"`) {
		t.Fatalf("flag set over IMAP not shown in the webmail:\n%s", page)
	}

	_, metrics := w.do("GET", "/metrics", "", nil)
	for _, want := range []string{"postern_webmail_logins_total 1", "postern_webmail_messages_sent_total 1", "postern_webmail_messages_read_total 1"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func hasIMAPFlag(flags []imap.Flag, f imap.Flag) bool {
	for _, x := range flags {
		if x == f {
			return true
		}
	}
	return false
}

// A password changed in the webmail is the account's new password for
// the webmail (the userdb source edited and recompiled, re-read by the
// running server).
func TestWebmailChangesPassword(t *testing.T) {
	h := newHarness(t)
	a := h.webLogin(h.user, h.pass)
	form := url.Values{"csrf": {a.csrf}, "old": {h.pass}, "new": {"brand new pass"}, "new2": {"brand new pass"}}
	resp, page := a.do("POST", "/mail/password", "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("change: %d %s", resp.StatusCode, page)
	}
	h.webLogin(h.user, "brand new pass")
	w := &webClient{t: t, base: "http://" + h.addr("web"), c: &http.Client{}}
	if resp, _ := w.do("POST", "/mail/login", "application/x-www-form-urlencoded", strings.NewReader(url.Values{"user": {h.user}, "password": {h.pass}}.Encode())); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("old password after the change: %d", resp.StatusCode)
	}
}

// The webs listener serves the same pages over TLS with the server's
// certificate: the session cookie is Secure and the pages carry HSTS; a
// login works as on the web listener.
func TestWebsListener(t *testing.T) {
	h := newHarness(t)
	h.stop()
	h.writeSetting("listen", "smtp 127.0.0.1:0\nimap 127.0.0.1:0\nwebs 127.0.0.1:0\n")
	h.start()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} // postern init's self-signed certificate
	base := "https://" + h.addr("webs")
	resp, err := c.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound || resp.TLS == nil {
		t.Fatalf("GET / over TLS: %d, TLS %v", resp.StatusCode, resp.TLS != nil)
	}
	req, _ := http.NewRequest("POST", base+"/mail/login", strings.NewReader(url.Values{"user": {h.user}, "password": {h.pass}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", base)
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login over TLS: %d", resp.StatusCode)
	}
	var session *http.Cookie
	for _, ck := range resp.Cookies() {
		session = ck
	}
	if session == nil || !session.Secure || !session.HttpOnly {
		t.Fatalf("session cookie over TLS: %+v, want Secure and HttpOnly", session)
	}
	if hsts := resp.Header.Get("Strict-Transport-Security"); hsts == "" {
		t.Error("no Strict-Transport-Security over TLS")
	}
	resp, err = c.Get(base + "/mail/folders")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), "INBOX") && !strings.Contains(string(b), "Inbox") {
		t.Fatalf("folders over TLS: %d", resp.StatusCode)
	}
	// Plain HTTP on the TLS port gets nothing useful.
	if resp, err := http.Get("http://" + h.addr("webs") + "/"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusFound {
			t.Error("plain HTTP answered on the webs listener")
		}
	}
}

// Webmail sessions are kept in the state store: a restart logs nobody
// out (the same token still signs forms), and a logout is not undone by
// the next restart.
func TestWebmailSessionSurvivesRestart(t *testing.T) {
	h := newHarness(t)
	w := h.webLogin(h.user, h.pass)
	h.restart()
	w.base = "http://" + h.addr("web") // a new port; the browser keeps its cookie for the host
	resp, page := w.do("GET", "/mail/folders", "", nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, `name="csrf" value="`+w.csrf+`"`) {
		t.Fatalf("after a restart: %d, the page has the old token: %v", resp.StatusCode, strings.Contains(page, w.csrf))
	}
	u, _ := url.Parse(w.base)
	kept := w.c.Jar.Cookies(u) // a browser that keeps the cookie after logout
	if resp, body := w.do("POST", "/mail/logout", "application/x-www-form-urlencoded", strings.NewReader(url.Values{"csrf": {w.csrf}}.Encode())); resp.StatusCode >= 400 {
		t.Fatalf("logout with the kept token: %d %s", resp.StatusCode, body)
	}
	h.restart()
	w.base = "http://" + h.addr("web")
	u, _ = url.Parse(w.base)
	w.c.Jar.SetCookies(u, kept)
	if resp, _ := w.do("GET", "/mail/folders", "", nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("after logout and a restart: %d, want the login page's redirect", resp.StatusCode)
	}
}

// A rich-text message composed in the webmail reaches another account
// through the real queue as multipart/alternative: the text part made on
// the server, the HTML part sanitized, a hostile script gone.
func TestWebmailHTMLComposeDelivered(t *testing.T) {
	h := newHarness(t)
	h.addUser("bob@example.test", "bob pass")
	a := h.webLogin(h.user, h.pass)
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for k, v := range map[string]string{"csrf": a.csrf, "to": "bob@example.test", "subject": "Rich text", "format": "html",
		"body": "ignored when the HTML is there", "html": `<p>Hello <b>Bob</b></p><script>alert(1)</script><p><a href="https://example.net/x" onclick="steal()">link</a></p>`} {
		mw.WriteField(k, v)
	}
	mw.Close()
	if resp, page := a.do("POST", "/mail/send", mw.FormDataContentType(), &body); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("send: %d %s", resp.StatusCode, page)
	}
	bobNew, _ := filepath.Glob(filepath.Join(h.maildir("bob@example.test"), "new", "*"))
	if len(bobNew) != 1 {
		t.Fatalf("bob's new/: %v", bobNew)
	}
	got, _ := os.ReadFile(bobNew[0])
	for _, want := range []string{"multipart/alternative", "Content-Type: text/plain", "Content-Type: text/html", "<b>Bob</b>", "Hello Bob", "link <https://example.net/x>"} {
		if !bytes.Contains(got, []byte(want)) {
			t.Errorf("delivered message lacks %q:\n%s", want, got)
		}
	}
	for _, bad := range []string{"<script", "alert(1)", "onclick", "ignored when the HTML is there"} {
		if bytes.Contains(got, []byte(bad)) {
			t.Errorf("delivered message has %q:\n%s", bad, got)
		}
	}
}
