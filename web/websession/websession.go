// Package websession is the plumbing the web applications (webmail, the
// web admin) share: server-side login sessions behind a cookie, a
// per-session token that every state-changing request must carry (CSRF),
// a same-origin check for forms posted before there is a session (the
// login form), and the security headers every page is served with.
//
// Sessions live in memory and, when Options.Persist is set (the server
// passes its state store, docs/state.md), in that store too: a restart
// then keeps everyone logged in, and with a shared store (Redis) a
// session started on one node is good on the others behind a load
// balancer. Without it a restart logs everyone out. A session ends
// after Idle without a request or Max after its login, whichever comes
// first, and at logout. The cookie holds only a random 256-bit identifier;
// it is HttpOnly, SameSite=Strict, and Secure when the request came over
// TLS (or Store.Secure says the site is reached over TLS through a proxy).
package websession

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Session is one logged-in user. Login and CSRF do not change during its
// life; Values is for the application (under the store's lock: use Get and
// Set).
type Session struct {
	id      string
	Login   string // the account name, as the authentication service knows it
	CSRF    string // the token forms carry (field "csrf") and that Check compares
	Created time.Time

	st     *Store // for Set to persist the values
	mu     sync.Mutex
	seen   time.Time
	saved  time.Time // seen as last persisted
	gen    int64     // the login's generation it belongs to (persist.go)
	values map[string]string
}

// Get returns a value the application kept in the session.
func (s *Session) Get(key string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.values[key]
}

// Set keeps a value in the session (a flash message, a sort order).
func (s *Session) Set(key, value string) {
	s.mu.Lock()
	if s.values == nil {
		s.values = make(map[string]string)
	}
	if value == "" {
		delete(s.values, key)
	} else {
		s.values[key] = value
	}
	s.mu.Unlock()
	if s.st != nil {
		s.st.save(s)
	}
}

// Store holds the sessions of one web application. The zero value is not
// usable; make one with NewStore.
type Store struct {
	cookie string
	path   string
	idle   time.Duration
	max    time.Duration
	limit  int
	// Secure forces the Secure attribute on the cookie even for plain
	// HTTP requests: set it when a TLS proxy stands in front.
	Secure bool

	persist Persister
	prefix  string // of its keys in persist
	log     *slog.Logger

	mu       sync.Mutex
	sessions map[string]*Session
	now      func() time.Time
}

// Options tunes NewStore.
type Options struct {
	Cookie string        // cookie name; required
	Path   string        // cookie path; default "/"
	Idle   time.Duration // end a session after this long without a request; default 30 minutes
	Max    time.Duration // end a session this long after its login; default 12 hours
	Limit  int           // most sessions at once; the oldest idle one goes first; default 10000
	// Persist, when set, keeps the sessions beyond this process
	// (persist.go); Name keeps one application's sessions apart from
	// another's in it ("webmail", "admin").
	Persist Persister
	Name    string
	// Logger reports trouble with Persist; nil: slog.Default().
	Logger *slog.Logger
}

// NewStore makes an empty store.
func NewStore(opt Options) *Store {
	if opt.Path == "" {
		opt.Path = "/"
	}
	if opt.Idle <= 0 {
		opt.Idle = 30 * time.Minute
	}
	if opt.Max <= 0 {
		opt.Max = 12 * time.Hour
	}
	if opt.Limit <= 0 {
		opt.Limit = 10000
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	return &Store{cookie: opt.Cookie, path: opt.Path, idle: opt.Idle, max: opt.Max, limit: opt.Limit,
		persist: opt.Persist, prefix: "websession:" + opt.Name + ":", log: opt.Logger,
		sessions: make(map[string]*Session), now: time.Now}
}

func token() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("websession: no randomness: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// Start logs login in: a new session with a new identifier (never one the
// browser brought, so a planted cookie cannot become a logged-in session)
// and its cookie on w.
func (st *Store) Start(w http.ResponseWriter, r *http.Request, login string) *Session {
	if old := st.lookup(r); old != nil {
		st.remove(old.id)
	}
	now := st.now()
	s := &Session{id: token(), Login: login, CSRF: token(), Created: now, seen: now, gen: now.UnixNano()}
	if st.persist != nil {
		s.st = st
	}
	st.mu.Lock()
	st.sweepLocked(now)
	for len(st.sessions) >= st.limit {
		var oldest *Session
		for _, c := range st.sessions {
			if oldest == nil || c.lastSeen().Before(oldest.lastSeen()) {
				oldest = c
			}
		}
		delete(st.sessions, oldest.id)
	}
	st.sessions[s.id] = s
	st.mu.Unlock()
	st.save(s)
	http.SetCookie(w, st.cookieFor(r, s.id, 0))
	return s
}

// Session returns the request's live session, or nil. It counts as a
// request of the session (its idle time starts again).
func (st *Store) Session(r *http.Request) *Session {
	s := st.lookup(r)
	if s == nil {
		return nil
	}
	now := st.now()
	if st.expired(s, now) || !st.current(s) {
		st.remove(s.id)
		return nil
	}
	s.mu.Lock()
	s.seen = now
	stale := now.Sub(s.saved) > saveEvery
	s.mu.Unlock()
	if stale {
		st.save(s) // keeps the stored copy's idle time from running out
	}
	return s
}

// End logs the request's session out and clears its cookie.
func (st *Store) End(w http.ResponseWriter, r *http.Request) {
	if s := st.lookup(r); s != nil {
		st.remove(s.id)
	}
	http.SetCookie(w, st.cookieFor(r, "", -1))
}

// EndLogin ends every session of login (after a password change, say),
// but keep.
func (st *Store) EndLogin(login string, keep *Session) {
	st.mu.Lock()
	for id, s := range st.sessions {
		if s.Login == login && s != keep {
			delete(st.sessions, id)
		}
	}
	st.mu.Unlock()
	st.endGeneration(login, keep)
}

// Len counts the live sessions.
func (st *Store) Len() int {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.sweepLocked(st.now())
	return len(st.sessions)
}

func (st *Store) lookup(r *http.Request) *Session {
	c, err := r.Cookie(st.cookie)
	if err != nil || c.Value == "" || len(c.Value) > 100 {
		return nil
	}
	st.mu.Lock()
	s := st.sessions[c.Value]
	st.mu.Unlock()
	if s == nil && st.persist != nil {
		s = st.load(c.Value) // started before a restart, or on another node
	}
	return s
}

func (st *Store) remove(id string) {
	st.mu.Lock()
	delete(st.sessions, id)
	st.mu.Unlock()
	st.forget(id)
}

func (s *Session) lastSeen() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen
}

func (st *Store) expired(s *Session, now time.Time) bool {
	return now.Sub(s.lastSeen()) > st.idle || now.Sub(s.Created) > st.max
}

func (st *Store) sweepLocked(now time.Time) {
	for id, s := range st.sessions {
		if st.expired(s, now) {
			delete(st.sessions, id)
		}
	}
}

func (st *Store) cookieFor(r *http.Request, value string, maxAge int) *http.Cookie {
	return &http.Cookie{Name: st.cookie, Value: value, Path: st.path, MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: st.Secure || r.TLS != nil}
}

// Check reports whether a state-changing request (POST) may go ahead for
// s: its form carries the session's token in the field "csrf", and the
// browser does not say it comes from another site. Call it before acting
// on any POST.
func (s *Session) Check(r *http.Request) bool {
	if s == nil || !SameOrigin(r) {
		return false
	}
	got := r.PostFormValue("csrf")
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(s.CSRF)) == 1
}

// SameOrigin reports whether the browser sent r from a page of this site.
// Browsers send Sec-Fetch-Site (all current ones) or Origin with a POST;
// a request that carries neither (a script, curl) passes, since it
// carries no one else's cookies either. Used alone for the login form,
// which has no session yet.
func SameOrigin(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "same-origin", "none":
		return true
	case "":
	default:
		return false
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	if origin == "null" {
		return false
	}
	u, err := url.Parse(origin)
	return err == nil && strings.EqualFold(u.Host, r.Host)
}

// Headers wraps h so that every response carries the headers that keep a
// page of mail from doing harm: no script but the site's own files, no
// framing, no sniffing of content types, no Referer to other sites (a
// link in a message must not tell its target which message it was in),
// and no caching of pages with mail in them; over TLS, HSTS.
func Headers(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Cache-Control", "no-store")
		hd.Set("Cross-Origin-Opener-Policy", "same-origin")
		if r.TLS != nil {
			// Reached over TLS: browsers keep to HTTPS for this host.
			hd.Set("Strict-Transport-Security", "max-age=31536000")
		}
		h.ServeHTTP(w, r)
	})
}

// ClientAddr is the address of the client that sent r (the peer of the
// connection), for the failed-login guard and the logs.
func ClientAddr(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap()
}
