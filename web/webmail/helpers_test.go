package webmail

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/net/html"

	"postern/auth"
	"postern/auth/authtool"
	"postern/auth/passwd"
	"postern/auth/userdb"
	"postern/mailbox/maildir"
)

// testEnv is a webmail on a real listener over real accounts: a userdb
// compiled from its source, Maildirs on disk, and a Send that records
// what it is given.
type testEnv struct {
	t    *testing.T
	dir  string
	etc  string
	svc  *auth.Service
	h    *Handler
	srv  *httptest.Server
	opt  Options
	mu   sync.Mutex
	sent []Outgoing
	// sendErr, when set, is what Send returns.
	sendErr error
}

type testUser struct{ name, pass, fields string }

var (
	alice = testUser{"alice@example.test", "alice pass", ""}
	bob   = testUser{"bob@example.test", "bob pass", ""}
)

// tempModule is a module that cannot answer now (a database that is
// down), for the one user it is asked about.
type tempModule struct{ name string }

func (m tempModule) Name() string { return "flaky" }
func (m tempModule) Lookup(ctx context.Context, name string) (*auth.Account, error) {
	if name == m.name {
		return nil, auth.ErrTemporary
	}
	return nil, auth.ErrNoSuchUser
}
func (m tempModule) Authenticate(ctx context.Context, service, name, password string) (*auth.Account, error) {
	return m.Lookup(ctx, name)
}

func newEnv(t *testing.T, users ...testUser) *testEnv {
	return newEnvWith(t, nil, users...)
}

func newEnvWith(t *testing.T, tune func(*Options), users ...testUser) *testEnv {
	t.Helper()
	if len(users) == 0 {
		users = []testUser{alice, bob}
	}
	e := &testEnv{t: t, dir: t.TempDir()}
	e.etc = filepath.Join(e.dir, "etc")
	if err := os.MkdirAll(e.etc, 0o700); err != nil {
		t.Fatal(err)
	}
	var src strings.Builder
	for _, u := range users {
		hash, err := passwd.Hash(u.pass, passwd.SchemeMD5Crypt)
		if err != nil {
			t.Fatal(err)
		}
		home := filepath.Join(e.dir, "mail", u.name)
		if err := maildir.Make(filepath.Join(home, "Maildir")); err != nil {
			t.Fatal(err)
		}
		fields := map[string]string{"uid": itoa(os.Getuid()), "gid": itoa(os.Getgid()), "home": home, "systempw": hash}
		for _, f := range strings.Split(u.fields, "|") {
			if k, v, ok := strings.Cut(f, "="); ok {
				if strings.HasSuffix(k, "pw") {
					if v, err = passwd.Hash(v, passwd.SchemeMD5Crypt); err != nil {
						t.Fatal(err)
					}
				}
				fields[k] = v
			}
		}
		line, err := (&userdb.Entry{Name: u.name, Fields: fields}).Format()
		if err != nil {
			t.Fatal(err)
		}
		src.WriteString(line + "\n")
	}
	paths := authtool.PathsFor(e.etc)
	if err := os.WriteFile(paths.Source, []byte(src.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := userdb.Compile(paths.Source, paths.DB); err != nil {
		t.Fatal(err)
	}
	udb, err := userdb.Open(paths.DB, userdb.WithCheckInterval(0), userdb.WithLogger(quietLog()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { udb.Close() })
	e.svc = auth.NewService(tempModule{"flaky@example.test"}, udb)
	e.svc.SetGuard(auth.NewGuard(auth.DefaultGuardConfig()))
	e.opt = Options{
		Auth:   e.svc,
		Logger: quietLog(),
		Send: func(ctx context.Context, m Outgoing) error {
			e.mu.Lock()
			defer e.mu.Unlock()
			if e.sendErr != nil {
				return e.sendErr
			}
			e.sent = append(e.sent, m)
			return nil
		},
		ChangePassword: func(ctx context.Context, acct *auth.Account, pw string) error {
			return authtool.UserdbPasswordChanger(e.etc)(acct.Name, auth.ServiceWebmail, pw)
		},
	}
	if tune != nil {
		tune(&e.opt)
	}
	e.h, err = New(e.opt)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = httptest.NewServer(e.h)
	t.Cleanup(e.srv.Close)
	return e
}

func quietLog() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func (e *testEnv) maildir(u testUser) *maildir.Maildir {
	e.t.Helper()
	md, err := maildir.Open(filepath.Join(e.dir, "mail", u.name, "Maildir"))
	if err != nil {
		e.t.Fatal(err)
	}
	return md
}

// deliver puts a message into a user's folder, as the delivery agent does.
func (e *testEnv) deliver(u testUser, folder, msg string) {
	e.t.Helper()
	md := e.maildir(u)
	if folder != maildir.Inbox {
		if err := md.CreateFolder(folder); err != nil && !strings.Contains(err.Error(), "exists") {
			e.t.Fatal(err)
		}
	}
	if _, err := md.Deliver(folder, strings.NewReader(msg), maildir.DeliverOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

// messages returns a folder's messages as the Maildir has them now.
func (e *testEnv) messages(u testUser, folder string) []maildir.Message {
	e.t.Helper()
	f, err := e.maildir(u).Folder(folder)
	if err != nil {
		e.t.Fatal(err)
	}
	snap, err := f.Sync(false)
	if err != nil {
		e.t.Fatal(err)
	}
	return snap.Messages
}

// browser is one user's browser: its own cookies, no redirects followed.
type browser struct {
	e    *testEnv
	c    *http.Client
	csrf string
}

func (e *testEnv) browser() *browser {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return &browser{e: e, c: c}
}

// login logs u in and keeps the session's token.
func (e *testEnv) login(u testUser) *browser {
	e.t.Helper()
	b := e.browser()
	resp := b.post("/mail/login", url.Values{"user": {u.name}, "password": {u.pass}})
	if resp.status != http.StatusSeeOther || !strings.HasPrefix(resp.header.Get("Location"), "/mail/list") {
		e.t.Fatalf("login %s: %d %s", u.name, resp.status, resp.body)
	}
	page := b.get("/mail/folders")
	b.csrf = formValue(page.doc(e.t), "csrf")
	if b.csrf == "" {
		e.t.Fatal("no csrf token on the folders page")
	}
	return b
}

type response struct {
	status int
	header http.Header
	body   string
}

func (r response) doc(t *testing.T) *html.Node {
	t.Helper()
	n, err := html.Parse(strings.NewReader(r.body))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func (b *browser) do(req *http.Request) response {
	b.e.t.Helper()
	resp, err := b.c.Do(req)
	if err != nil {
		b.e.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return response{resp.StatusCode, resp.Header, string(body)}
}

func (b *browser) get(path string) response {
	b.e.t.Helper()
	req, err := http.NewRequest("GET", b.e.srv.URL+path, nil)
	if err != nil {
		b.e.t.Fatal(err)
	}
	return b.do(req)
}

// post sends a form as a browser on this site does (Origin set).
func (b *browser) post(path string, form url.Values) response {
	b.e.t.Helper()
	return b.postWith(path, form, map[string]string{"Origin": b.e.srv.URL})
}

func (b *browser) postWith(path string, form url.Values, hdr map[string]string) response {
	b.e.t.Helper()
	req, err := http.NewRequest("POST", b.e.srv.URL+path, strings.NewReader(form.Encode()))
	if err != nil {
		b.e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	return b.do(req)
}

// act posts an action with the session's token.
func (b *browser) act(form url.Values) response {
	b.e.t.Helper()
	form.Set("csrf", b.csrf)
	return b.post("/mail/act", form)
}

// flash follows a redirect and returns the notice on the page it leads to.
func (b *browser) follow(r response) response {
	b.e.t.Helper()
	if r.status != http.StatusSeeOther {
		b.e.t.Fatalf("want a redirect, got %d: %s", r.status, r.body)
	}
	loc := r.header.Get("Location")
	if !strings.HasPrefix(loc, "/mail/") {
		b.e.t.Fatalf("redirect off the webmail: %q", loc)
	}
	return b.get(loc)
}

// HTML helpers.

func walk(n *html.Node, fn func(*html.Node)) {
	fn(n)
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		walk(c, fn)
	}
}

func attr(n *html.Node, key string) (string, bool) {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val, true
		}
	}
	return "", false
}

func hasClass(n *html.Node, class string) bool {
	v, _ := attr(n, "class")
	for _, c := range strings.Fields(v) {
		if c == class {
			return true
		}
	}
	return false
}

// find returns the elements named tag (any when "") with class (any when "").
func find(root *html.Node, tag, class string) []*html.Node {
	var out []*html.Node
	walk(root, func(n *html.Node) {
		if n.Type == html.ElementNode && (tag == "" || n.Data == tag) && (class == "" || hasClass(n, class)) {
			out = append(out, n)
		}
	})
	return out
}

func text(n *html.Node) string {
	var b strings.Builder
	walk(n, func(c *html.Node) {
		if c.Type == html.TextNode {
			b.WriteString(c.Data)
		}
	})
	return b.String()
}

// formValue is the value of the first input named name.
func formValue(root *html.Node, name string) string {
	for _, in := range find(root, "input", "") {
		if v, _ := attr(in, "name"); v == name {
			val, _ := attr(in, "value")
			return val
		}
	}
	return ""
}

// rows are the message list's rows.
func rows(t *testing.T, r response) []*html.Node {
	t.Helper()
	var out []*html.Node
	for _, tb := range find(r.doc(t), "table", "messages") {
		out = append(out, find(tb, "tr", "")[1:]...)
	}
	return out
}

func cell(row *html.Node, class string) string {
	for _, td := range find(row, "td", class) {
		return strings.TrimSpace(text(td))
	}
	return ""
}

func flash(t *testing.T, r response) string {
	t.Helper()
	for _, p := range find(r.doc(t), "p", "flash") {
		return text(p)
	}
	return ""
}
