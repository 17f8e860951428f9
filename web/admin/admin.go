// Package admin is the web admin: server-rendered pages under /admin/ on
// the web listener, for the mail administrator, as Courier's webadmin is.
// It shows the server (listeners, version, uptime, queue size, the
// configuration check) and reloads it; manages the userdb's accounts;
// edits the settings the server reads (a fixed table: domains, the spam
// policy, routes, limits, ...; secrets never), files and directories of
// files alike, each change checked by the parsers the server uses against
// a copy of the configuration before it is written; and lists and acts on
// the queue; and shows the rejection log.
//
// Who may log in is the "webadmin" setting: NAME:HASH lines. Every page
// needs a session (web/websession); every POST carries the session's CSRF
// token; the login form is checked for same origin, and its failures count
// in the server's failed-login guard. Every change is logged with the
// admin's name. The package calls the same functions as the command-line
// tools (auth/authtool, gateway/queue, policy) and imports nothing of the
// server: what it needs comes in Options.
package admin

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"postern/auth"
	"postern/auth/authtool"
	"postern/internal/netserve"
	"postern/web/websession"
)

// Prefix is where the admin is mounted.
const Prefix = "/admin/"

// maxForm bounds a posted form: the largest is a setting's text.
const (
	maxForm        = 2 << 20
	maxSettingSize = 1 << 20
)

//go:embed templates/*.html static/*
var files embed.FS

// Options is what the admin needs from the server.
type Options struct {
	ConfigDir string
	QueueDir  string // the spool (DATADIR/queue)
	// Guard counts failed logins per client network (the server's
	// authlimit); nil counts nothing.
	Guard *auth.Guard
	// Reload reloads the configuration as SIGHUP does; nil: no button.
	Reload func() error
	// CheckConfig checks the configuration in dir as "postern config"
	// does (policy.Load and every other setting serve and reload read);
	// nil error when it loads. The admin calls it on the configuration
	// directory and on copies of it with an edited setting in place;
	// nil: policy.Load alone.
	CheckConfig func(dir string) error
	// Listeners names the bound listeners and their addresses.
	Listeners func() map[string][]string
	Version   string
	Started   time.Time
	Logger    *slog.Logger
	// Registry gets the admin's metrics; nil registers none.
	Registry prometheus.Registerer
	// Secure marks the session cookie Secure even over plain HTTP (a TLS
	// proxy in front).
	Secure bool
	// Sessions, when set, keeps the login sessions beyond the process
	// (the server's state store).
	Sessions websession.Persister
	// Who lists the server's IMAP, POP3 and SMAP sessions and Kick ends
	// those a match selects, saying who asked (postern who and kick);
	// nil: the Sessions page says there is nothing to show.
	Who  func() []netserve.SessionInfo
	Kick func(m netserve.Match, by string) []netserve.SessionInfo
	// RejectLog is the rejection log (DATADIR/state/rejects.jsonl) the
	// Rejects page reads; "": the page says there is none. One request
	// reads at most RejectsMaxRead records (default 20000) for at most
	// RejectsTimeout (default 5s).
	RejectLog      string
	RejectsMaxRead int
	RejectsTimeout time.Duration
}

// Handler serves the admin pages.
type Handler struct {
	opt      Options
	log      *slog.Logger
	store    *websession.Store
	accounts *authtool.Accounts
	pages    map[string]*template.Template
	h        http.Handler
	edit     sync.Mutex // one setting edit at a time
	logins   *prometheus.CounterVec
	changes  *prometheus.CounterVec
}

// New makes the admin handler; mount it at Prefix.
func New(opt Options) (*Handler, error) {
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	if opt.Started.IsZero() {
		opt.Started = time.Now()
	}
	h := &Handler{
		opt: opt,
		log: opt.Logger,
		store: websession.NewStore(websession.Options{Cookie: "postern_admin", Path: Prefix, Idle: 30 * time.Minute, Max: 8 * time.Hour, Limit: 1000,
			Persist: opt.Sessions, Name: "admin", Logger: opt.Logger}),
		accounts: authtool.NewAccounts(opt.ConfigDir),
		pages:    map[string]*template.Template{},
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "postern_webadmin_logins_total", Help: "Web admin logins, by result (ok, failed, blocked, disabled).",
		}, []string{"result"}),
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "postern_webadmin_changes_total", Help: "Changes made through the web admin, by what was changed.",
		}, []string{"what"}),
	}
	h.store.Secure = opt.Secure
	if opt.Registry != nil {
		if err := opt.Registry.Register(h.logins); err != nil {
			return nil, err
		}
		if err := opt.Registry.Register(h.changes); err != nil {
			return nil, err
		}
	}
	funcs := template.FuncMap{"join": strings.Join}
	pages, err := fs.Glob(files, "templates/*.html")
	if err != nil {
		return nil, err
	}
	for _, p := range pages {
		name := strings.TrimSuffix(strings.TrimPrefix(p, "templates/"), ".html")
		if name == "layout" {
			continue
		}
		t, err := template.New(name).Funcs(funcs).ParseFS(files, "templates/layout.html", p)
		if err != nil {
			return nil, err
		}
		h.pages[name] = t
	}
	static, err := fs.Sub(files, "static")
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /admin/static/", http.StripPrefix("/admin/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /admin/login", h.loginForm)
	mux.HandleFunc("POST /admin/login", h.login)
	mux.HandleFunc("POST /admin/logout", h.page(h.logout))
	mux.HandleFunc("GET /admin/{$}", h.page(h.overview))
	mux.HandleFunc("POST /admin/reload", h.page(h.reload))
	mux.HandleFunc("GET /admin/accounts", h.page(h.accountList))
	mux.HandleFunc("GET /admin/accounts/new", h.page(h.accountNewForm))
	mux.HandleFunc("POST /admin/accounts/new", h.page(h.accountAdd))
	mux.HandleFunc("GET /admin/account", h.page(h.accountShow))
	mux.HandleFunc("POST /admin/account/password", h.page(h.accountPassword))
	mux.HandleFunc("POST /admin/account/quota", h.page(h.accountQuota))
	mux.HandleFunc("POST /admin/account/services", h.page(h.accountServices))
	mux.HandleFunc("GET /admin/account/delete", h.page(h.accountDeleteForm))
	mux.HandleFunc("POST /admin/account/delete", h.page(h.accountDelete))
	mux.HandleFunc("GET /admin/settings", h.page(h.settingList))
	mux.HandleFunc("GET /admin/settings/{name}", h.page(h.settingForm))
	mux.HandleFunc("POST /admin/settings/{name}", h.page(h.settingSave))
	mux.HandleFunc("GET /admin/domains", h.page(h.domainList))
	mux.HandleFunc("GET /admin/domains/{domain}", h.page(h.domainShow))
	mux.HandleFunc("POST /admin/domains/{domain}/check", h.page(h.domainCheck))
	mux.HandleFunc("POST /admin/domains/{domain}/dkim", h.page(h.domainDKIM))
	mux.HandleFunc("GET /admin/sessions", h.page(h.sessionList))
	mux.HandleFunc("POST /admin/sessions/kick", h.page(h.sessionKick))
	mux.HandleFunc("GET /admin/rejects", h.page(h.rejectList))
	mux.HandleFunc("GET /admin/rejects/show", h.page(h.rejectShow))
	mux.HandleFunc("GET /admin/queue", h.page(h.queueList))
	mux.HandleFunc("GET /admin/queue/show", h.page(h.queueShow))
	mux.HandleFunc("POST /admin/queue/retry", h.page(h.queueRetry))
	mux.HandleFunc("POST /admin/queue/bounce", h.page(h.queueBounce))
	mux.HandleFunc("GET /admin/queue/delete", h.page(h.queueDeleteForm))
	mux.HandleFunc("POST /admin/queue/delete", h.page(h.queueDelete))
	mux.HandleFunc("/admin/", func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) })
	h.h = websession.Headers(mux)
	return h, nil
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.h.ServeHTTP(w, r) }

// page wraps a handler that needs a session. Without one the browser is
// sent to the login page and nothing is done; a POST must carry the
// session's token.
func (h *Handler) page(fn func(http.ResponseWriter, *http.Request, *websession.Session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s := h.store.Session(r)
		if s == nil {
			http.Redirect(w, r, Prefix+"login", http.StatusSeeOther)
			return
		}
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, maxForm)
			if err := r.ParseForm(); err != nil {
				http.Error(w, "form refused: "+err.Error(), http.StatusRequestEntityTooLarge)
				return
			}
			if !s.Check(r) {
				h.log.Warn("webadmin: POST without a valid token refused", "admin", s.Login, "path", r.URL.Path, "client", websession.ClientAddr(r).String())
				http.Error(w, "This form has expired or did not come from this site. Go back, reload the page and try again.", http.StatusForbidden)
				return
			}
		}
		fn(w, r, s)
	}
}

// view is what every page template gets.
type view struct {
	Title   string
	Section string // the navigation entry to mark
	Admin   string
	CSRF    string
	Flash   string
	Error   string
	Errors  []string
	Data    any
}

// render executes a page into a buffer first, so a template error never
// leaves half a page.
func (h *Handler) render(w http.ResponseWriter, s *websession.Session, status int, page string, v view) {
	t := h.pages[page]
	if s != nil {
		v.Admin, v.CSRF = s.Login, s.CSRF
		if v.Flash == "" {
			v.Flash = s.Get("flash")
			s.Set("flash", "")
		}
	}
	var buf bytes.Buffer
	if t == nil {
		h.log.Error("webadmin: no such page template", "page", page)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	if err := t.ExecuteTemplate(&buf, "layout", v); err != nil {
		h.log.Error("webadmin: rendering", "page", page, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// done records a change: the log line (who, what), the metric, the
// message the next page shows; then sends the browser to next.
func (h *Handler) done(w http.ResponseWriter, r *http.Request, s *websession.Session, what, flash, next string, attrs ...any) {
	h.log.Info("webadmin: "+flash, append([]any{"admin", s.Login, "what", what, "client", websession.ClientAddr(r).String()}, attrs...)...)
	h.changes.WithLabelValues(what).Inc()
	s.Set("flash", flash)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// errorLines splits a joined error into its lines (one per problem).
func errorLines(err error) []string {
	var out []string
	for _, l := range strings.Split(err.Error(), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

func (h *Handler) loginForm(w http.ResponseWriter, r *http.Request) {
	if h.store.Session(r) != nil {
		http.Redirect(w, r, Prefix, http.StatusSeeOther)
		return
	}
	admins, err := LoadAdmins(h.opt.ConfigDir)
	h.render(w, nil, http.StatusOK, "login", view{Title: "Log in", Data: loginData{Enabled: err == nil && len(admins) > 0, ConfigDir: h.opt.ConfigDir}, Errors: errLines(err)})
}

func errLines(err error) []string {
	if err == nil {
		return nil
	}
	return errorLines(err)
}

type loginData struct {
	Enabled   bool
	ConfigDir string
	Name      string
}

func (h *Handler) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil || !websession.SameOrigin(r) {
		h.logins.WithLabelValues("refused").Inc()
		http.Error(w, "login form refused: it did not come from this site", http.StatusForbidden)
		return
	}
	client := websession.ClientAddr(r)
	name, password := r.PostFormValue("name"), r.PostFormValue("password")
	data := loginData{Enabled: true, ConfigDir: h.opt.ConfigDir, Name: truncate(name, maxAdminName)}
	admins, err := LoadAdmins(h.opt.ConfigDir)
	if err != nil || len(admins) == 0 {
		h.logins.WithLabelValues("disabled").Inc()
		h.log.Warn("webadmin: login refused: no admins configured", "client", client.String(), "err", err)
		data.Enabled = false
		h.render(w, nil, http.StatusForbidden, "login", view{Title: "Log in", Data: data, Errors: errLines(err)})
		return
	}
	if h.opt.Guard.Blocked(client) {
		h.logins.WithLabelValues("blocked").Inc()
		h.log.Warn("webadmin: login refused: client blocked after failed logins", "client", client.String())
		h.render(w, nil, http.StatusTooManyRequests, "login", view{Title: "Log in", Data: data, Error: "Too many failed logins from your network. Try again later."})
		return
	}
	if !admins.Check(name, password) {
		h.opt.Guard.Fail(client)
		h.logins.WithLabelValues("failed").Inc()
		h.log.Warn("webadmin: failed login", "name", truncate(name, maxAdminName), "client", client.String())
		h.render(w, nil, http.StatusUnauthorized, "login", view{Title: "Log in", Data: data, Error: "Wrong name or password."})
		return
	}
	h.store.Start(w, r, name)
	h.logins.WithLabelValues("ok").Inc()
	h.log.Info("webadmin: login", "admin", name, "client", client.String())
	http.Redirect(w, r, Prefix, http.StatusSeeOther)
}

func (h *Handler) logout(w http.ResponseWriter, r *http.Request, s *websession.Session) {
	h.log.Info("webadmin: logout", "admin", s.Login, "client", websession.ClientAddr(r).String())
	h.store.End(w, r)
	http.Redirect(w, r, Prefix+"login", http.StatusSeeOther)
}

// errNoReload is shown when the server gave no reload function.
var errNoReload = errors.New("this server cannot be reloaded from here; run postern reload")

func (h *Handler) reload(w http.ResponseWriter, r *http.Request, s *websession.Session) {
	if err := h.reloadServer(); err != nil {
		h.log.Warn("webadmin: reload refused", "admin", s.Login, "err", err)
		s.Set("flash", "Reload refused; the running configuration stays: "+err.Error())
		http.Redirect(w, r, Prefix, http.StatusSeeOther)
		return
	}
	h.done(w, r, s, "reload", "configuration reloaded", Prefix)
}

func (h *Handler) reloadServer() error {
	if h.opt.Reload == nil {
		return errNoReload
	}
	return h.opt.Reload()
}

// formValue returns a trimmed form field, refusing one longer than max.
func formValue(r *http.Request, key string, max int) (string, error) {
	v := strings.TrimSpace(r.PostFormValue(key))
	if len(v) > max {
		return "", fmt.Errorf("%s: longer than %d bytes", key, max)
	}
	return v, nil
}
