package admin

import (
	"bytes"
	"context"
	"errors"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"postern/auth"
	"postern/auth/userdb"
	"postern/gateway/delivery"
	"postern/gateway/queue"
	"postern/policy"
	"postern/policy/aliases"
)

const (
	adminName = "root-admin"
	adminPass = "correct horse battery"
)

// site is a web admin on a real listener over a configuration made by
// postern init, with one admin and a log that tests read.
type site struct {
	t       *testing.T
	dir     string // init's directory
	etc     string
	queue   string
	h       *Handler
	srv     *httptest.Server
	reloads atomic.Int32
	logs    *syncBuffer
	guard   *auth.Guard
}

type syncBuffer struct {
	mu  chan struct{}
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu <- struct{}{}
	defer func() { <-b.mu }()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu <- struct{}{}
	defer func() { <-b.mu }()
	return b.buf.String()
}

func newSite(t *testing.T, withAdmin bool) *site {
	t.Helper()
	s := &site{t: t, dir: t.TempDir(), logs: &syncBuffer{mu: make(chan struct{}, 1)}}
	if err := policy.Init(s.dir, "example.test", "mail.example.test", false); err != nil {
		t.Fatal(err)
	}
	s.etc = filepath.Join(s.dir, "etc")
	s.queue = filepath.Join(s.dir, "data", "queue")
	if withAdmin {
		if err := SetPassword(s.etc, adminName, adminPass); err != nil {
			t.Fatal(err)
		}
	}
	// No exemption for loopback: the test's client is the one counted.
	s.guard = auth.NewGuard(auth.GuardConfig{Failures: 3, Window: time.Hour, Block: time.Hour})
	h, err := New(Options{
		ConfigDir: s.etc,
		QueueDir:  s.queue,
		Guard:     s.guard,
		Reload: func() error {
			s.reloads.Add(1)
			_, err := policy.Load(s.etc)
			return err
		},
		CheckConfig: func(dir string) error { _, err := policy.Load(dir); return err },
		Listeners: func() map[string][]string {
			return map[string][]string{"smtp": {"127.0.0.1:2525"}, "web": {"127.0.0.1:8080"}}
		},
		Version: "9.9-test",
		Logger:  slog.New(slog.NewTextHandler(s.logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	s.h = h
	s.srv = httptest.NewServer(h)
	t.Cleanup(s.srv.Close)
	return s
}

// browser is one user agent with its own cookies; it does not follow
// redirects, so tests see them.
type browser struct {
	s    *site
	c    *http.Client
	csrf string
}

func (s *site) browser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{s: s, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

type reply struct {
	code     int
	body     string
	location string
}

func (b *browser) do(method, path string, form url.Values, hdr ...string) reply {
	b.s.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, b.s.srv.URL+path, body)
	if err != nil {
		b.s.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.s.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, string(data), resp.Header.Get("Location")}
}

func (b *browser) get(path string) reply { b.s.t.Helper(); return b.do("GET", path, nil) }

// post sends a form with the session's token.
func (b *browser) post(path string, form url.Values) reply {
	b.s.t.Helper()
	f := url.Values{"csrf": {b.csrf}}
	for k, v := range form {
		f[k] = v
	}
	return b.do("POST", path, f)
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func (b *browser) login() *browser {
	b.s.t.Helper()
	r := b.do("POST", "/admin/login", url.Values{"name": {adminName}, "password": {adminPass}})
	if r.code != http.StatusSeeOther || r.location != "/admin/" {
		b.s.t.Fatalf("login: %d %q %s", r.code, r.location, r.body)
	}
	page := b.get("/admin/")
	m := csrfField.FindStringSubmatch(page.body)
	if m == nil {
		b.s.t.Fatalf("no token on the overview page:\n%s", page.body)
	}
	b.csrf = html.UnescapeString(m[1])
	return b
}

func (s *site) accounts() []string {
	s.t.Helper()
	entries, err := s.h.accounts.List()
	if err != nil {
		s.t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name)
	}
	return names
}

func (s *site) authService() *auth.Service {
	s.t.Helper()
	db, err := userdb.Open(filepath.Join(s.etc, "userdb.db"), userdb.WithCheckInterval(0), userdb.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { db.Close() })
	return auth.NewService(db)
}

// A request without a session is sent to the login page and changes
// nothing, GET or POST, with or without a token.
func TestNoSessionRedirectsAndChangesNothing(t *testing.T) {
	s := newSite(t, true)
	b := s.browser()
	for _, p := range []string{"/admin/", "/admin/accounts", "/admin/settings/aliases", "/admin/queue", "/admin/account?name=x"} {
		if r := b.get(p); r.code != http.StatusSeeOther || r.location != "/admin/login" {
			t.Errorf("GET %s without a session: %d %q, want 303 to /admin/login", p, r.code, r.location)
		}
	}
	before, _ := os.ReadFile(filepath.Join(s.etc, "aliases"))
	posts := map[string]url.Values{
		"/admin/accounts/new":        {"name": {"eve@example.test"}, "password": {"x"}, "password2": {"x"}, "csrf": {"guessed"}},
		"/admin/settings/aliases":    {"content": {"evil: eve@example.net\n"}},
		"/admin/reload":              {},
		"/admin/account/delete":      {"name": {"x"}, "confirm": {"yes"}, "mail": {"remove"}},
		"/admin/queue/delete":        {"id": {"x"}, "confirm": {"yes"}},
		"/admin/account/password":    {"name": {"x"}, "password": {"y"}, "password2": {"y"}},
		"/admin/settings/smtpaccess": {"content": {"0.0.0.0/0\tallow,RELAYCLIENT\n"}},
	}
	for p, f := range posts {
		if r := b.do("POST", p, f); r.code != http.StatusSeeOther || r.location != "/admin/login" {
			t.Errorf("POST %s without a session: %d %q, want 303 to /admin/login", p, r.code, r.location)
		}
	}
	if got := s.accounts(); len(got) != 0 {
		t.Errorf("accounts after POSTs without a session: %v", got)
	}
	if after, _ := os.ReadFile(filepath.Join(s.etc, "aliases")); !bytes.Equal(before, after) {
		t.Error("aliases changed by a POST without a session")
	}
	if n := s.reloads.Load(); n != 0 {
		t.Errorf("%d reloads without a session", n)
	}
}

// A POST without the session's token (or with another) is refused and
// does nothing; with it, the same POST works.
func TestPOSTWithoutTokenRefused(t *testing.T) {
	s := newSite(t, true)
	b := s.browser().login()
	form := url.Values{"name": {"bob@example.test"}, "password": {"pw one"}, "password2": {"pw one"}}
	if r := b.do("POST", "/admin/accounts/new", form); r.code != http.StatusForbidden {
		t.Errorf("POST without a token: %d, want 403", r.code)
	}
	bad := url.Values{"csrf": {b.csrf + "x"}}
	for k, v := range form {
		bad[k] = v
	}
	if r := b.do("POST", "/admin/accounts/new", bad); r.code != http.StatusForbidden {
		t.Errorf("POST with a wrong token: %d, want 403", r.code)
	}
	if r := b.do("POST", "/admin/reload", url.Values{"csrf": {b.csrf}}, "Sec-Fetch-Site", "cross-site"); r.code != http.StatusForbidden {
		t.Errorf("cross-site POST with the token: %d, want 403", r.code)
	}
	if got := s.accounts(); len(got) != 0 || s.reloads.Load() != 0 {
		t.Fatalf("refused POSTs changed something: accounts %v, %d reloads", got, s.reloads.Load())
	}
	if !strings.Contains(s.logs.String(), "POST without a valid token refused") {
		t.Error("refused POST not logged")
	}
	if r := b.post("/admin/accounts/new", form); r.code != http.StatusSeeOther {
		t.Fatalf("POST with the token: %d %s", r.code, r.body)
	}
	if got := s.accounts(); len(got) != 1 || got[0] != "bob@example.test" {
		t.Fatalf("accounts = %v", got)
	}
}

// Logins: a wrong password is refused and counted by the guard, which
// then blocks the right one too; a login form from another site is
// refused; logging out ends the session.
func TestLogin(t *testing.T) {
	s := newSite(t, true)
	b := s.browser()
	if r := b.get("/admin/login"); r.code != 200 || !strings.Contains(r.body, `name="password"`) {
		t.Fatalf("login page: %d\n%s", r.code, r.body)
	}
	if r := b.do("POST", "/admin/login", url.Values{"name": {adminName}, "password": {adminPass}}, "Sec-Fetch-Site", "cross-site"); r.code != http.StatusForbidden {
		t.Errorf("cross-site login: %d, want 403", r.code)
	}
	if r := b.do("POST", "/admin/login", url.Values{"name": {adminName}, "password": {"wrong"}}); r.code != http.StatusUnauthorized || !strings.Contains(r.body, "Wrong name or password") {
		t.Errorf("wrong password: %d", r.code)
	}
	if r := b.do("POST", "/admin/login", url.Values{"name": {"nobody"}, "password": {adminPass}}); r.code != http.StatusUnauthorized {
		t.Errorf("unknown name: %d", r.code)
	}
	if !strings.Contains(s.logs.String(), "failed login") {
		t.Error("failed login not logged")
	}
	b.login()
	if r := b.post("/admin/logout", url.Values{}); r.code != http.StatusSeeOther {
		t.Fatalf("logout: %d", r.code)
	}
	if r := b.get("/admin/"); r.code != http.StatusSeeOther {
		t.Errorf("after logout: %d, want 303", r.code)
	}
	// The third failure blocks the client's network.
	b.do("POST", "/admin/login", url.Values{"name": {adminName}, "password": {"wrong again"}})
	if !s.guard.Blocked(netip.MustParseAddr("127.0.0.1")) {
		t.Fatal("three failed logins did not block the client")
	}
	if r := b.do("POST", "/admin/login", url.Values{"name": {adminName}, "password": {adminPass}}); r.code != http.StatusTooManyRequests {
		t.Errorf("right password from a blocked client: %d, want 429", r.code)
	}
}

// Without a webadmin file the login page says how to enable the admin,
// and every login is refused.
func TestNoAdminsRefusesEveryLogin(t *testing.T) {
	s := newSite(t, false)
	b := s.browser()
	r := b.get("/admin/login")
	if r.code != 200 || !strings.Contains(r.body, "webadmin passwd") || strings.Contains(r.body, `name="password"`) {
		t.Fatalf("login page without admins: %d\n%s", r.code, r.body)
	}
	for _, pw := range []string{"", "x", adminPass} {
		if r := b.do("POST", "/admin/login", url.Values{"name": {"admin"}, "password": {pw}}); r.code != http.StatusForbidden {
			t.Errorf("login %q without admins: %d, want 403", pw, r.code)
		}
	}
	// An empty file (comments only) is the same.
	if err := os.WriteFile(filepath.Join(s.etc, "webadmin"), []byte("# nobody yet\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := b.do("POST", "/admin/login", url.Values{"name": {"admin"}, "password": {"x"}}); r.code != http.StatusForbidden {
		t.Errorf("login with an empty webadmin file: %d, want 403", r.code)
	}
}

// The overview shows the version, the listeners, the queue size and the
// configuration check; the Reload button reloads.
func TestOverviewAndReload(t *testing.T) {
	s := newSite(t, true)
	enqueue(t, s.queue, "someone@example.test", "far@remote.example")
	b := s.browser().login()
	r := b.get("/admin/")
	for _, want := range []string{"9.9-test", "127.0.0.1:2525", "1 message(s)", "loads and checks without errors", "Reload the configuration"} {
		if !strings.Contains(r.body, want) {
			t.Errorf("overview lacks %q", want)
		}
	}
	if r := b.post("/admin/reload", nil); r.code != http.StatusSeeOther || s.reloads.Load() != 1 {
		t.Fatalf("reload: %d, %d reloads", r.code, s.reloads.Load())
	}
	if r := b.get("/admin/"); !strings.Contains(r.body, "configuration reloaded") {
		t.Error("no message after the reload")
	}
	if !strings.Contains(s.logs.String(), "admin="+adminName) {
		t.Errorf("the reload's log line does not name the admin:\n%s", s.logs.String())
	}
	// A broken file shows in the check, and the reload is refused.
	os.WriteFile(filepath.Join(s.etc, "acceptmailfor"), []byte("bad domain!\n"), 0o640)
	r = b.get("/admin/")
	if !strings.Contains(r.body, "acceptmailfor:1:") {
		t.Errorf("overview does not show the configuration error:\n%s", r.body)
	}
	b.post("/admin/reload", nil)
	if r := b.get("/admin/"); !strings.Contains(r.body, "Reload refused") {
		t.Error("refused reload not shown")
	}
}

// Accounts: add (the CLI's defaults), list with search and pages, change
// the password, quota and services, delete with a confirmation step.
func TestAccounts(t *testing.T) {
	s := newSite(t, true)
	b := s.browser().login()
	add := func(name, pw, pw2, quota string) reply {
		return b.post("/admin/accounts/new", url.Values{"name": {name}, "password": {pw}, "password2": {pw2}, "quota": {quota}})
	}
	if r := add("carol@example.test", "first pw", "first pw", "10000000S"); r.code != http.StatusSeeOther {
		t.Fatalf("add: %d %s", r.code, r.body)
	}
	home := filepath.Join(s.dir, "data", "mail", "example.test", "carol")
	if st, err := os.Stat(filepath.Join(home, "Maildir", "cur")); err != nil || !st.IsDir() {
		t.Fatalf("Maildir not made in the default home: %v", err)
	}
	svc := s.authService()
	a, err := svc.Authenticate(context.Background(), auth.ServiceIMAP, "carol@example.test", "first pw")
	if err != nil || a.Quota != "10000000S" {
		t.Fatalf("login of the added account: %v %+v", err, a)
	}
	for _, c := range []struct{ name, pw, pw2, quota, want string }{
		{"carol@example.test", "x", "x", "", "already exists"},
		{"dan@example.test", "x", "y", "", "differ"},
		{"dan@example.test", "", "", "", "empty"},
		{"dan@example.test", "x", "x", "lots", "quota"},
		{"../etc@example.test", "x", "x", "", "give --home"},
		{"", "x", "x", "", "empty"},
		{"bad\tname@example.test", "x", "x", "", "dan"}, // refused; checked below
	} {
		r := add(c.name, c.pw, c.pw2, c.quota)
		if r.code != http.StatusBadRequest {
			t.Errorf("add %q: %d, want 400", c.name, r.code)
		}
		if c.want != "dan" && !strings.Contains(r.body, c.want) {
			t.Errorf("add %q: page lacks %q", c.name, c.want)
		}
	}
	if got := s.accounts(); len(got) != 1 {
		t.Fatalf("refused adds left accounts: %v", got)
	}
	for _, n := range []string{"dave@example.test", "erin@example.test", "frank@other.test"} {
		if r := add(n, "pw", "pw", ""); r.code != http.StatusSeeOther {
			t.Fatalf("add %s: %d %s", n, r.code, r.body)
		}
	}
	r := b.get("/admin/accounts?q=EXAMPLE.test")
	if !strings.Contains(r.body, "3 account(s)") || strings.Contains(r.body, "frank@other.test</a>") || !strings.Contains(r.body, `href="/admin/account?name=carol%40example.test"`) {
		t.Errorf("search: %s", r.body)
	}
	// Password, quota, services.
	if r := b.post("/admin/account/password", url.Values{"name": {"carol@example.test"}, "password": {"second pw"}, "password2": {"second pw"}}); r.code != http.StatusSeeOther {
		t.Fatalf("password: %d %s", r.code, r.body)
	}
	if _, err := svc.Authenticate(context.Background(), auth.ServiceIMAP, "carol@example.test", "second pw"); err != nil {
		t.Errorf("new password: %v", err)
	}
	if r := b.post("/admin/account/quota", url.Values{"name": {"carol@example.test"}, "quota": {"many"}}); r.code != http.StatusBadRequest {
		t.Errorf("bad quota: %d", r.code)
	}
	if r := b.post("/admin/account/quota", url.Values{"name": {"carol@example.test"}, "quota": {"5000S,10C"}}); r.code != http.StatusSeeOther {
		t.Errorf("quota: %d %s", r.code, r.body)
	}
	if r := b.post("/admin/account/services", url.Values{"name": {"carol@example.test"}, "enable_pop3": {"1"}, "enable_smtp": {"1"}, "enable_webmail": {"1"}}); r.code != http.StatusSeeOther {
		t.Fatalf("services: %d %s", r.code, r.body)
	}
	if _, err := svc.Authenticate(context.Background(), auth.ServiceIMAP, "carol@example.test", "second pw"); !errors.Is(err, auth.ErrDisabled) {
		t.Errorf("IMAP after disabling it: %v, want ErrDisabled", err)
	}
	a, err = svc.Authenticate(context.Background(), auth.ServicePOP3, "carol@example.test", "second pw")
	if err != nil || a.Quota != "5000S,10C" {
		t.Errorf("POP3 still enabled, quota set: %v %+v", err, a)
	}
	page := b.get("/admin/account?name=carol%40example.test")
	if !strings.Contains(page.body, `name="enable_imap" value="1">`) || !strings.Contains(page.body, `name="enable_pop3" value="1" checked>`) {
		t.Errorf("account page does not show the services:\n%s", page.body)
	}
	if !strings.Contains(s.logs.String(), "account=carol@example.test") {
		t.Error("changes not logged with the account")
	}
	// Delete: a confirmation page, then nothing without both answers.
	if r := b.get("/admin/account/delete?name=carol%40example.test"); r.code != 200 || !strings.Contains(r.body, `value="remove"`) {
		t.Fatalf("confirmation page: %d", r.code)
	}
	for _, f := range []url.Values{
		{"name": {"carol@example.test"}, "mail": {"remove"}},
		{"name": {"carol@example.test"}, "confirm": {"yes"}},
		{"name": {"carol@example.test"}, "confirm": {"yes"}, "mail": {"everything"}},
	} {
		if r := b.post("/admin/account/delete", f); r.code != http.StatusBadRequest {
			t.Errorf("delete %v: %d, want 400", f, r.code)
		}
	}
	if _, err := os.Stat(home); err != nil || len(s.accounts()) != 4 {
		t.Fatalf("unconfirmed deletes changed something: %v %v", err, s.accounts())
	}
	if r := b.post("/admin/account/delete", url.Values{"name": {"dave@example.test"}, "confirm": {"yes"}, "mail": {"keep"}}); r.code != http.StatusSeeOther {
		t.Fatalf("delete, keeping mail: %d %s", r.code, r.body)
	}
	if _, err := os.Stat(filepath.Join(s.dir, "data", "mail", "example.test", "dave", "Maildir", "cur")); err != nil {
		t.Errorf("kept Maildir gone: %v", err)
	}
	if r := b.post("/admin/account/delete", url.Values{"name": {"carol@example.test"}, "confirm": {"yes"}, "mail": {"remove"}}); r.code != http.StatusSeeOther {
		t.Fatalf("delete, removing mail: %d %s", r.code, r.body)
	}
	if _, err := os.Stat(home); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("home after delete with its mail: %v", err)
	}
	if got := strings.Join(s.accounts(), " "); got != "erin@example.test frank@other.test" {
		t.Errorf("accounts after deletes: %s", got)
	}
	if _, err := svc.Lookup(context.Background(), "carol@example.test"); !errors.Is(err, auth.ErrNoSuchUser) {
		t.Errorf("deleted account still found: %v", err)
	}
}

// The account list pages through many accounts.
func TestAccountPages(t *testing.T) {
	s := newSite(t, true)
	var src strings.Builder
	for i := 0; i < pageSize+7; i++ {
		src.WriteString("user" + string(rune('a'+i/26)) + string(rune('a'+i%26)) + "@example.test\tuid=1|gid=1|home=/nonexistent\n")
	}
	if err := os.WriteFile(filepath.Join(s.etc, "userdb"), []byte(src.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	b := s.browser().login()
	first := b.get("/admin/accounts")
	if !strings.Contains(first.body, "57 account(s)") || !strings.Contains(first.body, "useraa@") || strings.Contains(first.body, "usercc@") || !strings.Contains(first.body, "page=1") {
		t.Fatalf("first page:\n%s", first.body)
	}
	second := b.get("/admin/accounts?page=1")
	if !strings.Contains(second.body, "usercc@") || strings.Contains(second.body, "useraa@") {
		t.Fatalf("second page:\n%s", second.body)
	}
	if r := b.get("/admin/accounts?page=99"); r.code != 200 || !strings.Contains(r.body, "usercc@") {
		t.Errorf("a page past the end shows the last: %d", r.code)
	}
}

// A bad aliases line is refused with its line number; the file and the
// compiled index stay as they were. A good text is written, compiled and
// reloaded.
func TestAliasesEdit(t *testing.T) {
	s := newSite(t, true)
	if err := aliases.Compile(s.etc, filepath.Join(s.etc, aliases.DefaultDBName)); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(s.etc, "aliases")
	before, _ := os.ReadFile(path)
	dbBefore, _ := os.ReadFile(filepath.Join(s.etc, aliases.DefaultDBName))
	b := s.browser().login()
	page := b.get("/admin/settings/aliases")
	version := regexp.MustCompile(`name="version" value="([^"]+)"`).FindStringSubmatch(page.body)
	if version == nil || !strings.Contains(page.body, "postmaster") {
		t.Fatalf("aliases page:\n%s", page.body)
	}
	bad := "sales: ann@example.test\nsupport: bob@example.test\nthis line has no colon\n"
	r := b.post("/admin/settings/aliases", url.Values{"version": {version[1]}, "content": {bad}})
	if r.code != http.StatusBadRequest || !strings.Contains(r.body, path+":3:") {
		t.Fatalf("bad line: %d, want 400 naming %s:3:\n%s", r.code, path, r.body)
	}
	if !strings.Contains(r.body, "this line has no colon") {
		t.Error("the refused text is not given back for correction")
	}
	after, _ := os.ReadFile(path)
	dbAfter, _ := os.ReadFile(filepath.Join(s.etc, aliases.DefaultDBName))
	if !bytes.Equal(before, after) || !bytes.Equal(dbBefore, dbAfter) {
		t.Fatal("a refused aliases text changed the file or its index")
	}
	if left, _ := filepath.Glob(filepath.Join(s.etc, ".aliases.webadmin-*")); len(left) != 0 {
		t.Errorf("candidate files left behind: %v", left)
	}
	r = b.post("/admin/settings/aliases", url.Values{"version": {version[1]}, "content": {"sales: ann@example.test, bob@example.test\r\n"}})
	if r.code != http.StatusSeeOther {
		t.Fatalf("good aliases: %d\n%s", r.code, r.body)
	}
	if got, _ := os.ReadFile(path); string(got) != "sales: ann@example.test, bob@example.test\n" {
		t.Errorf("written file %q (CRLF made LF)", got)
	}
	db, err := aliases.OpenDB(filepath.Join(s.etc, aliases.DefaultDBName))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if ts, ok, _ := db.Expand(context.Background(), "sales"); !ok || len(ts) != 2 {
		t.Errorf("compiled sales = %v %v", ts, ok)
	}
	if s.reloads.Load() != 1 {
		t.Errorf("%d reloads after the save, want 1", s.reloads.Load())
	}
	// Saving from the old page again is refused: the file changed since.
	r = b.post("/admin/settings/aliases", url.Values{"version": {version[1]}, "content": {"x: y@example.test\n"}})
	if r.code != http.StatusBadRequest || !strings.Contains(r.body, "changed by someone else") {
		t.Errorf("stale version: %d", r.code)
	}
	// Markup in the file is shown as text.
	os.WriteFile(path, []byte("# <script>alert(1)</script>\n"), 0o640)
	if r := b.get("/admin/settings/aliases"); strings.Contains(r.body, "<script>alert") || !strings.Contains(r.body, "&lt;script&gt;") {
		t.Error("the file's text is not escaped")
	}
}

// acceptmailfor, hosteddomains and smtpaccess are checked by the server's
// parsers before they are written; only the table's names are served.
func TestSettingsChecked(t *testing.T) {
	s := newSite(t, true)
	b := s.browser().login()
	save := func(name, content string) reply {
		page := b.get("/admin/settings/" + name)
		v := regexp.MustCompile(`name="version" value="([^"]+)"`).FindStringSubmatch(page.body)
		if v == nil {
			t.Fatalf("%s page has no form:\n%s", name, page.body)
		}
		return b.post("/admin/settings/"+name, url.Values{"version": {v[1]}, "content": {content}})
	}
	cases := []struct {
		name, content, want string
		ok                  bool
	}{
		{"acceptmailfor", "example.test\nnot a domain\n", "acceptmailfor:2:", false},
		{"acceptmailfor", "example.test\nsecond.test\n", "", true},
		{"hosteddomains", "alias.test\tnowhere.test\n", "hosteddomains:1:", false},
		{"hosteddomains", "alias.test\tsecond.test\n", "", true},
		// Dropping the domain an alias points at is refused through hosteddomains.
		{"acceptmailfor", "example.test\n", "hosteddomains:1:", false},
		{"smtpaccess", "127.0.0.1\tallow,RELAYCLIENT\n10.0.0.0/8\tmaybe\n", "smtpaccess:2:", false},
		{"smtpaccess", "127.0.0.1\tallow,RELAYCLIENT\n10.0.0.0/8\tdeny\n", "", true},
		{"smtpaccess", "ok\x00\n", "NUL", false},
		{"smtpaccess", "\xff\xfe\n", "UTF-8", false},
		{"smtpaccess", strings.Repeat("a", maxSettingSize+1), "longer than", false},
	}
	for _, c := range cases {
		path := filepath.Join(s.etc, c.name)
		before, _ := os.ReadFile(path)
		r := save(c.name, c.content)
		after, _ := os.ReadFile(path)
		if c.ok {
			if r.code != http.StatusSeeOther || string(after) != c.content {
				t.Errorf("%s %q: %d, file %q", c.name, c.content, r.code, after)
			}
			continue
		}
		if r.code != http.StatusBadRequest || !strings.Contains(r.body, c.want) {
			t.Errorf("%s %q: %d, want 400 with %q", c.name, c.content, r.code, c.want)
		}
		if !bytes.Equal(before, after) {
			t.Errorf("%s: refused text changed the file", c.name)
		}
	}
	cfg, err := policy.Load(s.etc)
	if err != nil || !cfg.AcceptMailFor["alias.test"] || cfg.DomainAliases["alias.test"] != "second.test" {
		t.Errorf("configuration after the saves: %v", err)
	}
	// Only the table's names are served; a path in the name selects none.
	for _, p := range []string{"/admin/settings/nosuchsetting", "/admin/settings/..%2fetc%2fpasswd", "/admin/settings/userdb.db", "/admin/settings/aliases.dat"} {
		if r := b.get(p); r.code != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", p, r.code)
		}
		if r := b.post(p, url.Values{"content": {"x"}}); r.code != http.StatusNotFound && r.code != http.StatusMethodNotAllowed {
			t.Errorf("POST %s: %d, want 404", p, r.code)
		}
	}
}

func enqueue(t *testing.T, dir, from, to string) string {
	t.Helper()
	q, err := queue.Open(queue.Options{Dir: dir, Hostname: "mail.example.test"})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	id, err := q.Enqueue(context.Background(), delivery.Envelope{From: from, Rcpts: []delivery.Recipient{{Addr: to}}}, strings.NewReader("Subject: x\r\n\r\nx\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// The queue: list with sender and recipients, show, retry, bounce, and
// delete after a confirmation.
func TestQueue(t *testing.T) {
	s := newSite(t, true)
	id1 := enqueue(t, s.queue, "alice@example.test", "far@remote.example")
	id2 := enqueue(t, s.queue, "", "<b>odd</b>@remote.example")
	b := s.browser().login()
	r := b.get("/admin/queue")
	for _, want := range []string{id1, id2, "alice@example.test", "far@remote.example", "&lt;&gt;", "&lt;b&gt;odd", "2 message(s)"} {
		if !strings.Contains(r.body, want) {
			t.Errorf("queue list lacks %q", want)
		}
	}
	if strings.Contains(r.body, "<b>odd") {
		t.Error("a recipient's markup is not escaped")
	}
	if r := b.get("/admin/queue/show?id=" + id1); r.code != 200 || !strings.Contains(r.body, "pending") {
		t.Errorf("show: %d", r.code)
	}
	for _, bad := range []string{"../../etc/passwd", "nosuch", ""} {
		if r := b.get("/admin/queue/show?id=" + url.QueryEscape(bad)); r.code != http.StatusNotFound {
			t.Errorf("show %q: %d, want 404", bad, r.code)
		}
	}
	if r := b.post("/admin/queue/retry", url.Values{"id": {id1}}); r.code != http.StatusSeeOther {
		t.Errorf("retry: %d %s", r.code, r.body)
	}
	if r := b.post("/admin/queue/delete", url.Values{"id": {id1}}); r.code != http.StatusBadRequest {
		t.Errorf("delete without confirmation: %d", r.code)
	}
	if r := b.get("/admin/queue/delete?id=" + id1); r.code != 200 || !strings.Contains(r.body, `name="confirm"`) {
		t.Errorf("delete confirmation page: %d", r.code)
	}
	if r := b.post("/admin/queue/delete", url.Values{"id": {id1}, "confirm": {"yes"}}); r.code != http.StatusSeeOther {
		t.Fatalf("delete: %d %s", r.code, r.body)
	}
	if r := b.post("/admin/queue/bounce", url.Values{"id": {id2}}); r.code != http.StatusSeeOther {
		t.Errorf("bounce: %d %s", r.code, r.body)
	}
	list, err := queue.List(s.queue)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].ID != id2 || !list[0].BounceRequested {
		t.Errorf("queue after delete and bounce: %+v", list)
	}
	if !strings.Contains(s.logs.String(), "id="+id1) {
		t.Error("queue delete not logged with the id")
	}
}

// Hostile requests get a clear answer: a form too large, a search that
// is markup, a name too long.
func TestHostileInput(t *testing.T) {
	s := newSite(t, true)
	b := s.browser().login()
	huge := url.Values{"csrf": {b.csrf}, "content": {strings.Repeat("x", maxForm+10)}}
	if r := b.do("POST", "/admin/settings/aliases", huge); r.code != http.StatusRequestEntityTooLarge {
		t.Errorf("huge form: %d, want 413", r.code)
	}
	r := b.get("/admin/accounts?q=" + url.QueryEscape(`"><script>alert(1)</script>`))
	if r.code != 200 || strings.Contains(r.body, "<script>alert") {
		t.Errorf("search echo not escaped: %d", r.code)
	}
	if r := b.post("/admin/accounts/new", url.Values{"name": {strings.Repeat("a", 300) + "@example.test"}, "password": {"x"}, "password2": {"x"}}); r.code != http.StatusBadRequest {
		t.Errorf("long name: %d", r.code)
	}
	if r := b.do("POST", "/admin/login", url.Values{"name": {strings.Repeat("n", 100000)}, "password": {"x"}}); r.code != http.StatusForbidden && r.code != http.StatusUnauthorized {
		t.Errorf("huge login name: %d", r.code)
	}
	if r := b.get("/admin/account?name=" + url.QueryEscape("\xff<x>")); r.code != http.StatusNotFound || strings.Contains(r.body, "<x>") {
		t.Errorf("unknown account with markup: %d", r.code)
	}
	// The stylesheet is served from the static path the CSP allows.
	if r := b.get("/admin/static/admin.css"); r.code != 200 || !strings.Contains(r.body, "body") {
		t.Errorf("stylesheet: %d", r.code)
	}
}
