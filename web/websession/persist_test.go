package websession

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"postern/filters/state"
)

// stores gives each test the two real state stores the server may use:
// the embedded one (bbolt) and Redis on 127.0.0.1, under a prefix of its
// own.
func stores(t *testing.T) map[string]func() Persister {
	t.Helper()
	dir := t.TempDir()
	prefix := fmt.Sprintf("websession-test-%d:", time.Now().UnixNano())
	return map[string]func() Persister{
		"embedded": func() Persister {
			s, err := state.OpenEmbedded(filepath.Join(dir, "state.db"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
		"redis": func() Persister {
			s, err := state.OpenRedis(state.RedisOptions{Addr: "127.0.0.1:6379", Prefix: prefix})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			if _, _, err := s.Get(context.Background(), "probe"); err != nil {
				t.Fatalf("Redis on 127.0.0.1:6379: %v", err)
			}
			return s
		},
	}
}

// A session outlives the process that started it: a new Store on the
// same state (a restart; with Redis, another node too) knows its login,
// its token and its values; logout, idle expiry and EndLogin reach the
// stored copies.
func TestPersistedSessions(t *testing.T) {
	for name, open := range stores(t) {
		t.Run(name, func(t *testing.T) {
			p := open()
			clk := &clock{t: time.Now()}
			newStore := func() *Store {
				st := NewStore(Options{Cookie: "ps", Idle: 10 * time.Minute, Max: time.Hour, Persist: p, Name: "test"})
				st.now = clk.now
				return st
			}
			first := newStore()
			srv1 := app(t, first, false)
			c := client(t, srv1)
			_, csrf, _ := do(t, c, "POST", srv1.URL+"/login", url.Values{"user": {"alice"}}, nil)
			req := httptest.NewRequest("GET", "/", nil)
			for _, ck := range c.Jar.Cookies(mustURL(srv1.URL)) {
				req.AddCookie(ck)
			}
			first.Session(req).Set("maildir", "/var/mail/alice")

			// "Restart": a new Store and server; the browser keeps its cookie.
			second := newStore()
			srv2 := app(t, second, false)
			if code, who, _ := do(t, c, "GET", srv2.URL+"/whoami", nil, nil); code != 200 || who != "alice" {
				t.Fatalf("after a restart: %d %q", code, who)
			}
			if code, out, _ := do(t, c, "POST", srv2.URL+"/post", url.Values{"csrf": {csrf}}, nil); code != 200 || out != "done" {
				t.Fatalf("the token after a restart: %d %q", code, out)
			}
			req2 := httptest.NewRequest("GET", "/", nil)
			for _, ck := range c.Jar.Cookies(mustURL(srv2.URL)) {
				req2.AddCookie(ck)
			}
			if v := second.Session(req2).Get("maildir"); v != "/var/mail/alice" {
				t.Fatalf("value after a restart: %q", v)
			}
			// The stored copy holds the cookie's hash, never the cookie.
			ck := cookieValue(t, c, srv2.URL)
			if _, found, _ := p.Get(context.Background(), "websession:test:s:"+ck); found {
				t.Fatal("the session is stored under the cookie's own value")
			}

			// A password change ends the other sessions everywhere.
			other := client(t, srv2)
			do(t, other, "POST", srv2.URL+"/login", url.Values{"user": {"alice"}}, nil)
			clk.add(time.Second)
			third := newStore()
			srv3 := app(t, third, false)
			req3 := httptest.NewRequest("GET", "/", nil)
			for _, ck := range other.Jar.Cookies(mustURL(srv3.URL)) {
				req3.AddCookie(ck)
			}
			keep := third.Session(req3)
			if keep == nil {
				t.Fatal("the second browser's session is unknown to a third process")
			}
			third.EndLogin("alice", keep)
			if code, _, _ := do(t, c, "GET", srv2.URL+"/whoami", nil, nil); code != 401 {
				t.Fatalf("the first session, on the process that holds it, after EndLogin elsewhere: %d", code)
			}
			if code, _, _ := do(t, other, "GET", srv3.URL+"/whoami", nil, nil); code != 200 {
				t.Fatalf("the kept session: %d", code)
			}
			if code, _, _ := do(t, other, "GET", srv1.URL+"/whoami", nil, nil); code != 200 {
				t.Fatalf("the kept session on the first process: %d", code)
			}

			// Logout removes the stored copy: a restart does not bring it back.
			old := cookieValue(t, other, srv3.URL)
			do(t, other, "POST", srv3.URL+"/logout", nil, nil)
			fourth := newStore()
			srv4 := app(t, fourth, false)
			if code := whoamiWith(t, srv4.URL, old); code != 401 {
				t.Fatalf("a logged-out session after a restart: %d", code)
			}

			// Idle expiry holds for the stored copy too.
			d := client(t, srv4)
			do(t, d, "POST", srv4.URL+"/login", url.Values{"user": {"bob"}}, nil)
			clk.add(11 * time.Minute)
			fifth := newStore()
			srv5 := app(t, fifth, false)
			if code, _, _ := do(t, d, "GET", srv5.URL+"/whoami", nil, nil); code != 401 {
				t.Fatalf("an idle session after a restart: %d", code)
			}
		})
	}
}

// A stored record that is not a session (damaged, or written by a
// future version) logs nobody in and is removed.
func TestPersistedGarbage(t *testing.T) {
	p := stores(t)["embedded"]()
	st := NewStore(Options{Cookie: "ps", Persist: p, Name: "test"})
	for _, junk := range []string{"", "{", `{"login":"","csrf":"x"}`, `{"login":"root"}`, strings.Repeat("[", 1000)} {
		id := token()
		p.Set(context.Background(), st.sessionKey(id), []byte(junk), time.Minute)
		r := httptest.NewRequest("GET", "/", nil)
		r.AddCookie(st.cookieFor(r, id, 0))
		if s := st.Session(r); s != nil {
			t.Fatalf("%q made a session for %q", junk, s.Login)
		}
		if _, found, _ := p.Get(context.Background(), st.sessionKey(id)); found {
			t.Fatalf("%q was left in the store", junk)
		}
	}
}

// whoamiWith asks srv who the session cookie value is, as a browser
// that kept it would.
func whoamiWith(t *testing.T, srvURL, value string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", srvURL+"/whoami", nil)
	req.AddCookie(&http.Cookie{Name: "ps", Value: value})
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func cookieValue(t *testing.T, c *http.Client, srvURL string) string {
	t.Helper()
	for _, ck := range c.Jar.Cookies(mustURL(srvURL)) {
		if ck.Name == "ps" {
			return ck.Value
		}
	}
	t.Fatal("no session cookie")
	return ""
}
