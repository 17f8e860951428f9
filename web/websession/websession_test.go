package websession

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// app is a small application on a real listener: /login starts a session
// for the form's user, /whoami names the session's user, /post is a
// state-changing request that needs the token, /logout ends it.
func app(t *testing.T, st *Store, tls bool) *httptest.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		if !SameOrigin(r) {
			http.Error(w, "cross-site", http.StatusForbidden)
			return
		}
		s := st.Start(w, r, r.PostFormValue("user"))
		io.WriteString(w, s.CSRF)
	})
	mux.HandleFunc("GET /whoami", func(w http.ResponseWriter, r *http.Request) {
		if s := st.Session(r); s != nil {
			io.WriteString(w, s.Login)
			return
		}
		http.Error(w, "no session", http.StatusUnauthorized)
	})
	mux.HandleFunc("POST /post", func(w http.ResponseWriter, r *http.Request) {
		if s := st.Session(r); !s.Check(r) {
			http.Error(w, "refused", http.StatusForbidden)
			return
		}
		io.WriteString(w, "done")
	})
	mux.HandleFunc("POST /logout", func(w http.ResponseWriter, r *http.Request) {
		st.End(w, r)
	})
	var srv *httptest.Server
	if tls {
		srv = httptest.NewTLSServer(Headers(mux))
	} else {
		srv = httptest.NewServer(Headers(mux))
	}
	t.Cleanup(srv.Close)
	return srv
}

func client(t *testing.T, srv *httptest.Server) *http.Client {
	jar, _ := cookiejar.New(nil)
	c := *srv.Client() // a browser of its own: the server's client is shared
	c.Jar = jar
	return &c
}

func do(t *testing.T, c *http.Client, method, u string, form url.Values, hdr map[string]string) (int, string, *http.Response) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp
}

func TestSessionLifecycle(t *testing.T) {
	st := NewStore(Options{Cookie: "pw"})
	srv := app(t, st, false)
	c := client(t, srv)

	if code, _, _ := do(t, c, "GET", srv.URL+"/whoami", nil, nil); code != http.StatusUnauthorized {
		t.Fatalf("before login: %d, want 401", code)
	}
	code, csrf, resp := do(t, c, "POST", srv.URL+"/login", url.Values{"user": {"alice@example.test"}}, nil)
	if code != 200 || csrf == "" {
		t.Fatalf("login: %d %q", code, csrf)
	}
	var ck *http.Cookie
	for _, x := range resp.Cookies() {
		if x.Name == "pw" {
			ck = x
		}
	}
	if ck == nil || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Secure || len(ck.Value) < 40 {
		t.Fatalf("session cookie %+v: want HttpOnly, SameSite=Strict, not Secure over plain HTTP, a long random value", ck)
	}
	if h := resp.Header.Get("Content-Security-Policy"); !strings.Contains(h, "default-src 'none'") || !strings.Contains(h, "frame-ancestors 'none'") {
		t.Errorf("Content-Security-Policy %q", h)
	}
	for _, h := range []string{"X-Frame-Options", "X-Content-Type-Options", "Referrer-Policy", "Cache-Control"} {
		if resp.Header.Get(h) == "" {
			t.Errorf("no %s header", h)
		}
	}
	if code, who, _ := do(t, c, "GET", srv.URL+"/whoami", nil, nil); code != 200 || who != "alice@example.test" {
		t.Fatalf("whoami: %d %q", code, who)
	}
	if st.Len() != 1 {
		t.Fatalf("%d sessions, want 1", st.Len())
	}
	do(t, c, "POST", srv.URL+"/logout", url.Values{}, nil)
	if code, _, _ := do(t, c, "GET", srv.URL+"/whoami", nil, nil); code != http.StatusUnauthorized {
		t.Fatalf("after logout: %d, want 401", code)
	}
	if st.Len() != 0 {
		t.Fatalf("%d sessions after logout, want 0", st.Len())
	}
}

func TestCSRF(t *testing.T) {
	st := NewStore(Options{Cookie: "pw"})
	srv := app(t, st, false)
	c := client(t, srv)
	_, csrf, _ := do(t, c, "POST", srv.URL+"/login", url.Values{"user": {"bob"}}, nil)

	cases := []struct {
		name string
		form url.Values
		hdr  map[string]string
		want int
	}{
		{"no token", url.Values{}, nil, 403},
		{"wrong token", url.Values{"csrf": {csrf[:len(csrf)-1] + "x"}}, nil, 403},
		{"token of the session", url.Values{"csrf": {csrf}}, nil, 200},
		{"same origin", url.Values{"csrf": {csrf}}, map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": srv.URL}, 200},
		{"another site, with the token", url.Values{"csrf": {csrf}}, map[string]string{"Sec-Fetch-Site": "cross-site"}, 403},
		{"same site, another origin", url.Values{"csrf": {csrf}}, map[string]string{"Sec-Fetch-Site": "same-site"}, 403},
		{"foreign Origin", url.Values{"csrf": {csrf}}, map[string]string{"Origin": "http://evil.test"}, 403},
		{"null Origin", url.Values{"csrf": {csrf}}, map[string]string{"Origin": "null"}, 403},
	}
	for _, tc := range cases {
		if code, _, _ := do(t, c, "POST", srv.URL+"/post", tc.form, tc.hdr); code != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, code, tc.want)
		}
	}
	// Another browser (no cookie) with a stolen token gets nowhere.
	other := client(t, srv)
	if code, _, _ := do(t, other, "POST", srv.URL+"/post", url.Values{"csrf": {csrf}}, nil); code != 403 {
		t.Errorf("token without the session: %d, want 403", code)
	}
	// The login form is refused from another site.
	if code, _, _ := do(t, other, "POST", srv.URL+"/login", url.Values{"user": {"x"}}, map[string]string{"Sec-Fetch-Site": "cross-site"}); code != 403 {
		t.Errorf("cross-site login: %d, want 403", code)
	}
}

// A session identifier the browser brought (planted by an attacker) is
// never the one a login gets.
func TestFixation(t *testing.T) {
	st := NewStore(Options{Cookie: "pw"})
	srv := app(t, st, false)
	c := client(t, srv)
	u, _ := url.Parse(srv.URL)
	c.Jar.SetCookies(u, []*http.Cookie{{Name: "pw", Value: "planted-by-attacker"}})
	_, _, resp := do(t, c, "POST", srv.URL+"/login", url.Values{"user": {"carol"}}, nil)
	for _, x := range resp.Cookies() {
		if x.Name == "pw" && x.Value == "planted-by-attacker" {
			t.Fatal("login kept the planted identifier")
		}
	}
	// A second login from the same browser replaces the first session.
	do(t, c, "POST", srv.URL+"/login", url.Values{"user": {"carol"}}, nil)
	if n := st.Len(); n != 1 {
		t.Fatalf("%d sessions after a second login, want 1", n)
	}
}

func TestSecureCookieOverTLS(t *testing.T) {
	st := NewStore(Options{Cookie: "pw"})
	srv := app(t, st, true)
	c := client(t, srv)
	_, _, resp := do(t, c, "POST", srv.URL+"/login", url.Values{"user": {"dave"}}, nil)
	if len(resp.Cookies()) == 0 || !resp.Cookies()[0].Secure {
		t.Fatalf("cookie over TLS %+v: want Secure", resp.Cookies())
	}
	if h := resp.Header.Get("Strict-Transport-Security"); !strings.HasPrefix(h, "max-age=") {
		t.Errorf("Strict-Transport-Security over TLS: %q", h)
	}
	plain := app(t, NewStore(Options{Cookie: "pw"}), false)
	_, _, resp = do(t, client(t, plain), "POST", plain.URL+"/login", url.Values{"user": {"dave"}}, nil)
	if h := resp.Header.Get("Strict-Transport-Security"); h != "" {
		t.Errorf("Strict-Transport-Security over plain HTTP: %q", h)
	}
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestExpiry(t *testing.T) {
	clk := &clock{t: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)}
	st := NewStore(Options{Cookie: "pw", Idle: 10 * time.Minute, Max: time.Hour})
	st.now = clk.now
	srv := app(t, st, false)
	c := client(t, srv)
	do(t, c, "POST", srv.URL+"/login", url.Values{"user": {"erin"}}, nil)

	// Requests every 9 minutes keep it alive, until an hour after login.
	for i := 0; i < 6; i++ {
		clk.add(9 * time.Minute)
		if code, _, _ := do(t, c, "GET", srv.URL+"/whoami", nil, nil); code != 200 {
			t.Fatalf("request %d, %v after login: %d, want 200", i, time.Duration(i+1)*9*time.Minute, code)
		}
	}
	clk.add(7 * time.Minute) // 61 minutes after login, 7 idle
	if code, _, _ := do(t, c, "GET", srv.URL+"/whoami", nil, nil); code != 401 {
		t.Fatalf("past Max: %d, want 401", code)
	}

	do(t, c, "POST", srv.URL+"/login", url.Values{"user": {"erin"}}, nil)
	clk.add(11 * time.Minute)
	if code, _, _ := do(t, c, "GET", srv.URL+"/whoami", nil, nil); code != 401 {
		t.Fatalf("idle 11 minutes: %d, want 401", code)
	}
	if st.Len() != 0 {
		t.Fatalf("%d sessions left, want 0", st.Len())
	}
}

func TestLimitAndEndLogin(t *testing.T) {
	clk := &clock{t: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)}
	st := NewStore(Options{Cookie: "pw", Limit: 3})
	st.now = clk.now
	srv := app(t, st, false)
	var clients []*http.Client
	for _, u := range []string{"a", "b", "c", "a"} {
		c := client(t, srv)
		do(t, c, "POST", srv.URL+"/login", url.Values{"user": {u}}, nil)
		clients = append(clients, c)
		clk.add(time.Second)
	}
	if st.Len() != 3 {
		t.Fatalf("%d sessions, want the limit 3", st.Len())
	}
	if code, _, _ := do(t, clients[0], "GET", srv.URL+"/whoami", nil, nil); code != 401 {
		t.Fatalf("the oldest session survived the limit: %d", code)
	}
	// A password change ends a's other sessions.
	req := httptest.NewRequest("GET", "/", nil)
	for _, ck := range clients[3].Jar.Cookies(mustURL(srv.URL)) {
		req.AddCookie(ck)
	}
	keep := st.Session(req)
	if keep == nil || keep.Login != "a" {
		t.Fatalf("session of the fourth client: %+v", keep)
	}
	st.EndLogin("a", keep)
	if code, who, _ := do(t, clients[3], "GET", srv.URL+"/whoami", nil, nil); code != 200 || who != "a" {
		t.Fatalf("the kept session: %d %q", code, who)
	}
	st.EndLogin("b", nil)
	if code, _, _ := do(t, clients[1], "GET", srv.URL+"/whoami", nil, nil); code != 401 {
		t.Fatalf("b's session after EndLogin: %d", code)
	}
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

func TestClientAddr(t *testing.T) {
	for in, want := range map[string]string{"127.0.0.1:5555": "127.0.0.1", "[::ffff:10.0.0.1]:1": "10.0.0.1", "[2001:db8::1]:80": "2001:db8::1", "garbage": "invalid IP"} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = in
		if got := ClientAddr(r).String(); got != want {
			t.Errorf("ClientAddr(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestValues(t *testing.T) {
	s := &Session{}
	s.Set("flash", "saved")
	if s.Get("flash") != "saved" {
		t.Fatal("value not kept")
	}
	s.Set("flash", "")
	if s.Get("flash") != "" {
		t.Fatal("empty value not removed")
	}
}
