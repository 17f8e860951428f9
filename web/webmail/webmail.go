// Package webmail is Postern's webmail, Courier's sqwebmail done the
// modern way: server-rendered HTML pages (html/template, one style sheet,
// no script but the compose page's optional editor, compose.js) that read and change the user's Maildir++ directly through
// mailbox/maildir, so that the folders, flags, keywords and quota are the
// ones the IMAP and POP3 servers see, and a change made in one shows in
// the other.
//
// It owns the pages under /mail/: login and logout, the folder list, a
// folder's messages (paged, sorted, searched), a message (decoded
// headers, text reflowed, HTML sanitized with its cid: images shown,
// attachments as downloads, the raw source as text, keywords set and
// removed, read receipts offered), actions on messages (delete to Trash,
// move, mark read or unread, flag), compose in plain text or HTML (a
// multipart/alternative whose HTML is sanitized and whose text is made
// from it) with reply, reply-all and forward (sent
// through the caller's submission path, a copy kept in Sent), folder
// management, the quota and password changes, and the address book
// (sqwebmail's own file, its nicknames expanded when a message is sent;
// vCard export and import).
//
// Logins are sessions of web/websession behind a cookie; every POST
// carries the session's token. Mail is never served with a type a
// browser would run: HTML mail is sanitized (bluemonday) into the page,
// attachments and the source are downloads or text/plain under a
// sandboxing Content-Security-Policy.
package webmail

import (
	"context"
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/microcosm-cc/bluemonday"

	"postern/auth"
	"postern/mailbox/maildir"
	"postern/mailbox/maildirfilter"
	"postern/web/websession"
)

// Prefix is where the webmail lives on the web listener.
const Prefix = "/mail/"

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Outgoing is a message the user sends: who they are, the envelope and
// the message itself (CRLF line ends).
type Outgoing struct {
	Login string   // the account that logged in
	From  string   // the envelope sender: the user's address, or "<>" (a read receipt)
	Rcpts []string // To, Cc and Bcc
	Msg   []byte
}

// SendFunc hands a message to the mail system (the server wires the
// submission path, gateway.Submitter). A *Refused error is shown to the
// user as it is; any other error means "try again later".
type SendFunc func(ctx context.Context, m Outgoing) error

// Refused is a permanent refusal of a message, with the reason the user
// is shown (an SMTP reply's text, say).
type Refused struct{ Reason string }

func (r *Refused) Error() string { return "refused: " + r.Reason }

// Options configures a Handler. Auth is required.
type Options struct {
	Auth *auth.Service
	// Send delivers composed mail; nil leaves the webmail read-only.
	Send SendFunc
	// MaxMessageSize bounds a composed message with its attachments (the
	// server's sizelimit); nil or 0 means 50 MiB.
	MaxMessageSize func() int64
	// Address is the user's From address; nil means the login name when
	// it has an "@".
	Address func(acct *auth.Account) string
	// ChangePassword changes the password that guards the webmail for
	// acct; nil: the webmail does not offer it.
	ChangePassword func(ctx context.Context, acct *auth.Account, newPassword string) error
	// Idle and Max end a session after that long without a request, and
	// that long after its login (websession's defaults when zero).
	Idle, Max time.Duration
	// Secure marks the cookie Secure even on plain HTTP (a TLS proxy in
	// front).
	Secure bool
	// Purger, when set, applies the retention rules (imapemptytrash) to
	// an account's Maildir at its login, as sqwebmail purges Trash.
	Purger *maildir.Purger
	// Sessions, when set, keeps the login sessions beyond the process
	// (the server's state store): a restart logs nobody out, and nodes
	// sharing the store share the sessions.
	Sessions websession.Persister
	Logger   *slog.Logger
	// DisableFilters turns the mail filter and autoreply pages off.
	DisableFilters bool
	// Mailbot is the autoresponder as the generated filters run it, a
	// shell command; "" means this program's "mailbot" subcommand (the
	// running binary, by its absolute path).
	Mailbot string
	// AutoresponseQuota bounds each user's autoresponses/ unless the
	// Maildir's autoresponsesquota file says otherwise; zero fields are
	// 100 replies and 1 MiB.
	AutoresponseQuota maildirfilter.AutoresponseQuota
	// JunkLearn, when set, is told what the user says of a message by
	// filing it (the server's bayes check, docs/bayes.md): spam when it
	// goes into Junk, ham when it comes out (not to Trash). nil: the
	// Junk buttons still move and mark, nothing learns.
	JunkLearn func(ctx context.Context, login string, msg []byte, spam bool) error
}

// Stats are the webmail's counters, for the server's metrics.
type Stats struct {
	Sessions      int   // logged-in sessions now
	Logins        int64 // successful logins
	LoginFailures int64 // refused logins (wrong password, blocked, disabled)
	MessagesRead  int64 // messages opened
	MessagesSent  int64 // messages handed to Send
	SendFailures  int64 // messages Send refused or failed
}

// Handler serves the webmail. Make one with New.
type Handler struct {
	opt         Options
	log         *slog.Logger
	sessions    *websession.Store
	handler     http.Handler
	pages       map[string]*template.Template
	html        *bluemonday.Policy
	composeHTML *bluemonday.Policy // HTML the user sends or quotes
	strip       *bluemonday.Policy

	mdMu sync.Mutex
	mds  map[string]*maildir.Maildir // by root: keeps each folder's caches warm
	sums summaryCache

	// bookMu serialises changes of address books (read, change, write),
	// so that two forms sent at once do not lose one another's change.
	bookMu sync.Mutex
	// filterMu does the same for mail filters and autoreplies.
	filterMu sync.Mutex
	mailbot  string

	logins, loginFailures, read, sent, sendFailures atomic.Int64
}

// New makes the webmail's handler; mount it at Prefix.
func New(opt Options) (*Handler, error) {
	if opt.Auth == nil {
		return nil, errors.New("webmail: no authentication service")
	}
	log := opt.Logger
	if log == nil {
		log = slog.Default()
	}
	h := &Handler{
		opt: opt, log: log,
		sessions: websession.NewStore(websession.Options{Cookie: "postern_mail", Path: Prefix, Idle: opt.Idle, Max: opt.Max,
			Persist: opt.Sessions, Name: "webmail", Logger: log}),
		html:        newHTMLPolicy(),
		composeHTML: newComposePolicy(),
		strip:       bluemonday.StrictPolicy(),
		mds:         map[string]*maildir.Maildir{},
	}
	h.sessions.Secure = opt.Secure
	h.mailbot = opt.Mailbot
	if h.mailbot == "" {
		h.mailbot = defaultMailbot()
	}
	if h.opt.AutoresponseQuota.Files == 0 {
		h.opt.AutoresponseQuota.Files = 100
	}
	if h.opt.AutoresponseQuota.Bytes == 0 {
		h.opt.AutoresponseQuota.Bytes = 1 << 20
	}
	var err error
	if h.pages, err = parsePages(); err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	mux.Handle("GET "+Prefix+"static/", http.StripPrefix(Prefix+"static/", http.FileServerFS(static)))
	mux.HandleFunc("GET "+Prefix+"{$}", h.home)
	mux.HandleFunc("POST "+Prefix+"login", h.login)
	mux.HandleFunc("POST "+Prefix+"logout", h.logout)
	mux.HandleFunc("GET "+Prefix+"list", h.list)
	mux.HandleFunc("GET "+Prefix+"msg", h.message)
	mux.HandleFunc("GET "+Prefix+"part", h.part)
	mux.HandleFunc("GET "+Prefix+"raw", h.raw)
	mux.HandleFunc("GET "+Prefix+"inline", h.inline)
	mux.HandleFunc("POST "+Prefix+"act", h.act)
	mux.HandleFunc("POST "+Prefix+"mdn", h.mdn)
	mux.HandleFunc("POST "+Prefix+"keywords", h.setKeyword)
	mux.HandleFunc("GET "+Prefix+"compose", h.compose)
	mux.HandleFunc("POST "+Prefix+"send", h.send)
	mux.HandleFunc("GET "+Prefix+"folders", h.folders)
	mux.HandleFunc("POST "+Prefix+"folders", h.manageFolders)
	mux.HandleFunc("GET "+Prefix+"abook", h.abook)
	mux.HandleFunc("GET "+Prefix+"abook/new", h.abookNew)
	mux.HandleFunc("GET "+Prefix+"abook/edit", h.abookEdit)
	mux.HandleFunc("POST "+Prefix+"abook/save", h.abookSave)
	mux.HandleFunc("GET "+Prefix+"abook/delete", h.abookDeleteForm)
	mux.HandleFunc("POST "+Prefix+"abook/delete", h.abookDelete)
	mux.HandleFunc("GET "+Prefix+"abook/export", h.abookExport)
	mux.HandleFunc("POST "+Prefix+"abook/import", h.abookImport)
	mux.HandleFunc("GET "+Prefix+"filters", h.filters)
	mux.HandleFunc("GET "+Prefix+"filters/new", h.filterNew)
	mux.HandleFunc("GET "+Prefix+"filters/edit", h.filterEdit)
	mux.HandleFunc("POST "+Prefix+"filters/save", h.filterSave)
	mux.HandleFunc("POST "+Prefix+"filters/act", h.filterAct)
	mux.HandleFunc("GET "+Prefix+"autoreplies", h.autoreplies)
	mux.HandleFunc("GET "+Prefix+"autoreplies/new", h.autoreplyNew)
	mux.HandleFunc("GET "+Prefix+"autoreplies/edit", h.autoreplyEdit)
	mux.HandleFunc("POST "+Prefix+"autoreplies/save", h.autoreplySave)
	mux.HandleFunc("POST "+Prefix+"autoreplies/delete", h.autoreplyDelete)
	mux.HandleFunc("POST "+Prefix+"vacation", h.vacation)
	mux.HandleFunc("GET "+Prefix+"prefs", h.prefsForm)
	mux.HandleFunc("POST "+Prefix+"prefs", h.savePrefs)
	mux.HandleFunc("GET "+Prefix+"password", h.passwordForm)
	mux.HandleFunc("POST "+Prefix+"password", h.changePassword)
	mux.HandleFunc(Prefix, func(w http.ResponseWriter, r *http.Request) {
		h.fail(w, r, nil, http.StatusNotFound, "There is no such page.")
	})
	h.handler = websession.Headers(mux)
	return h, nil
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.handler.ServeHTTP(w, r) }

// Stats returns the counters now.
func (h *Handler) Stats() Stats {
	return Stats{Sessions: h.sessions.Len(), Logins: h.logins.Load(), LoginFailures: h.loginFailures.Load(),
		MessagesRead: h.read.Load(), MessagesSent: h.sent.Load(), SendFailures: h.sendFailures.Load()}
}

// Session values.
const (
	keyMaildir = "maildir" // the account's Maildir root, from the authentication service
	keyAddress = "address" // the user's From address
	keyFlash   = "flash"   // a one-time notice for the next page
)

// user is a logged-in request: the session and the account's Maildir.
type user struct {
	s  *websession.Session
	md *maildir.Maildir
	// fs is set by openFolder when the folder it opened is a shared
	// one (fsshared.go).
	fs *fsShared
}

// session returns the request's user, or answers the request itself (the
// login page for a GET, 403 for a POST) and returns nil. A POST must
// carry the session's token.
func (h *Handler) session(w http.ResponseWriter, r *http.Request) *user {
	s := h.sessions.Session(r)
	if s == nil {
		if r.Method == http.MethodGet {
			http.Redirect(w, r, Prefix, http.StatusSeeOther)
		} else {
			h.fail(w, r, nil, http.StatusForbidden, "Your session has ended. Log in again.")
		}
		return nil
	}
	if r.Method == http.MethodPost && !s.Check(r) {
		h.log.Warn("webmail: POST without a valid token refused", "user", s.Login, "path", r.URL.Path, "client", websession.ClientAddr(r).String())
		h.fail(w, r, nil, http.StatusForbidden, "This form has expired or did not come from this site. Go back, reload the page and try again.")
		return nil
	}
	uid, err1 := strconv.Atoi(s.Get(keyUID))
	gid, err2 := strconv.Atoi(s.Get(keyGID))
	if err1 != nil || err2 != nil {
		uid, gid = 0, 0 // a session from before the ids were kept: the kernel decides
	}
	md, err := h.openMaildir(s.Get(keyMaildir), uid, gid)
	if err != nil {
		h.log.Error("webmail: open mailbox", "user", s.Login, "err", err)
		h.fail(w, r, nil, http.StatusServiceUnavailable, "Your mailbox cannot be opened now. Try again later.")
		return nil
	}
	return &user{s: s, md: md}
}

// openMaildir opens (and on first use makes) the Maildir at root for the
// user uid, gid, keeping it for the next request. A server running as
// root reads it only as that user could (maildir.OpenAs).
func (h *Handler) openMaildir(root string, uid, gid int) (*maildir.Maildir, error) {
	if root == "" {
		return nil, errors.New("no maildir in session")
	}
	h.mdMu.Lock()
	md := h.mds[root]
	h.mdMu.Unlock()
	if md != nil {
		return md, nil
	}
	md, err := maildir.OpenAs(root, uid, gid)
	if err != nil {
		if _, serr := os.Stat(root); !errors.Is(serr, os.ErrNotExist) {
			return nil, err
		}
		if err := maildir.MakeFor(root, uid, gid); err != nil {
			return nil, err
		}
		if md, err = maildir.OpenAs(root, uid, gid); err != nil {
			return nil, err
		}
	}
	h.mdMu.Lock()
	defer h.mdMu.Unlock()
	if len(h.mds) >= 1000 {
		clear(h.mds)
	}
	if old := h.mds[root]; old != nil {
		return old, nil
	}
	h.mds[root] = md
	return md, nil
}

// limitForm bounds and parses a form without files.
func limitForm(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
	_ = r.ParseForm()
}

// pageData is what every page's template gets.
type pageData struct {
	Title   string
	Login   string
	CSRF    string
	Flash   string
	Folders []folderInfo
	Shared  []sharedInfo // filesystem-shared folders the user may read
	// Subscribed are those of Shared the user subscribed to: the side
	// list shows them beside the user's own, as sqwebmail does.
	Subscribed []sharedInfo
	Current    string // the folder on show
	Quota      *quotaInfo
	CanSend    bool
	Filters    bool // the filter pages are on
	Body       any
}

func (h *Handler) pageFor(u *user, title string, body any) *pageData {
	p := &pageData{Title: title, Body: body, CanSend: h.opt.Send != nil, Filters: !h.opt.DisableFilters}
	if u != nil {
		p.Login, p.CSRF = u.s.Login, u.s.CSRF
		p.Flash = u.s.Get(keyFlash)
		u.s.Set(keyFlash, "")
		p.Folders = h.folderList(u.md)
		p.Shared = h.sharedFolders(u)
		for _, s := range p.Shared {
			if s.Subscribed {
				p.Subscribed = append(p.Subscribed, s)
			}
		}
		p.Quota = quotaOf(u.md)
	}
	return p
}

func (h *Handler) render(w http.ResponseWriter, status int, name string, p *pageData) {
	t := h.pages[name]
	var b strings.Builder
	if err := t.ExecuteTemplate(&b, "layout", p); err != nil {
		h.log.Error("webmail: render", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(b.String()))
}

// fail shows an error page.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, u *user, status int, msg string) {
	p := &pageData{Title: "Error", Body: msg, CanSend: h.opt.Send != nil, Filters: !h.opt.DisableFilters}
	if u != nil {
		p.Login, p.CSRF = u.s.Login, u.s.CSRF
	}
	h.render(w, status, "error.html", p)
}

// flash keeps a notice for the next page and sends the browser there.
func (h *Handler) flash(w http.ResponseWriter, r *http.Request, u *user, msg, to string) {
	u.s.Set(keyFlash, msg)
	http.Redirect(w, r, to, http.StatusSeeOther)
}

// home is the login page, or the inbox for a logged-in user.
func (h *Handler) home(w http.ResponseWriter, r *http.Request) {
	if h.sessions.Session(r) != nil {
		http.Redirect(w, r, listURL(maildir.Inbox, listQuery{}), http.StatusSeeOther)
		return
	}
	h.render(w, http.StatusOK, "login.html", &pageData{Title: "Log in"})
}

// Bounds of the login form's fields.
const (
	maxLoginName     = 256
	maxLoginPassword = 1024
)

func (h *Handler) login(w http.ResponseWriter, r *http.Request) {
	limitForm(w, r)
	refuse := func(status int, msg string) {
		h.loginFailures.Add(1)
		h.render(w, status, "login.html", &pageData{Title: "Log in", Body: msg})
	}
	if !websession.SameOrigin(r) {
		refuse(http.StatusForbidden, "This login form did not come from this site.")
		return
	}
	name, pass := strings.TrimSpace(r.PostFormValue("user")), r.PostFormValue("password")
	if name == "" || pass == "" || len(name) > maxLoginName || len(pass) > maxLoginPassword || strings.ContainsAny(name, "\x00\r\n") {
		refuse(http.StatusUnauthorized, "Wrong user name or password.")
		return
	}
	client := websession.ClientAddr(r)
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	acct, err := h.opt.Auth.AuthenticateFrom(ctx, auth.ServiceWebmail, client, name, pass)
	if err != nil {
		h.log.Info("webmail: login failed", "user", name, "client", client.String(), "err", err)
		switch {
		case errors.Is(err, auth.ErrBlocked):
			refuse(http.StatusTooManyRequests, "Too many failed logins from your address. Try again later.")
		case errors.Is(err, auth.ErrDisabled):
			refuse(http.StatusForbidden, "Webmail is disabled for this account.")
		case errors.Is(err, auth.ErrBadPassword), errors.Is(err, auth.ErrNoSuchUser):
			refuse(http.StatusUnauthorized, "Wrong user name or password.")
		default:
			// ErrTemporary and anything unexpected: the password may
			// well be right.
			refuse(http.StatusServiceUnavailable, "Logging in is not possible right now. Try again later.")
		}
		return
	}
	if _, err := h.openMaildir(acct.MaildirPath(), acct.UID, acct.GID); err != nil {
		h.log.Error("webmail: open mailbox at login", "user", acct.Name, "err", err)
		refuse(http.StatusServiceUnavailable, "Your mailbox cannot be opened now. Try again later.")
		return
	}
	s := h.sessions.Start(w, r, acct.Name)
	s.Set(keyMaildir, acct.MaildirPath())
	s.Set(keyAddress, h.address(acct))
	s.Set(keyHome, acct.Home)
	s.Set(keyUID, itoa(acct.UID))
	s.Set(keyGID, itoa(acct.GID))
	h.logins.Add(1)
	h.opt.Purger.LoggedIn(acct.Name, func() (*maildir.Maildir, error) {
		return maildir.OpenAs(acct.MaildirPath(), acct.UID, acct.GID)
	})
	h.log.Info("webmail: login", "user", acct.Name, "client", client.String())
	http.Redirect(w, r, listURL(maildir.Inbox, listQuery{}), http.StatusSeeOther)
}

func (h *Handler) address(acct *auth.Account) string {
	if h.opt.Address != nil {
		if a := h.opt.Address(acct); a != "" {
			return a
		}
	}
	return acct.Name
}

func (h *Handler) logout(w http.ResponseWriter, r *http.Request) {
	limitForm(w, r)
	if s := h.sessions.Session(r); s != nil {
		if !s.Check(r) {
			h.fail(w, r, nil, http.StatusForbidden, "This form did not come from this site.")
			return
		}
		h.log.Info("webmail: logout", "user", s.Login)
	}
	h.sessions.End(w, r)
	http.Redirect(w, r, Prefix, http.StatusSeeOther)
}

// listQuery is how a folder's list is shown: page, order, search,
// keyword.
type listQuery struct {
	Page  int
	Sort  string // date, from, subject, size
	Order string // asc, desc; "" is the sort's default
	Q     string // search text
	In    string // subject, from, to, body
	KW    string // only messages with this keyword (a valid IMAP atom)
}

func (q listQuery) values(folder string) url.Values {
	v := url.Values{"f": {folder}}
	if q.Page > 1 {
		v.Set("page", itoa(q.Page))
	}
	if q.Sort != "" && q.Sort != "date" {
		v.Set("sort", q.Sort)
	}
	if q.Order != "" {
		v.Set("order", q.Order)
	}
	if q.Q != "" {
		v.Set("q", q.Q)
		v.Set("in", q.In)
	}
	if q.KW != "" {
		v.Set("kw", q.KW)
	}
	return v
}

func listURL(folder string, q listQuery) string {
	return Prefix + "list?" + q.values(folder).Encode()
}

func msgURL(folder string, uid uint32) string {
	return Prefix + "msg?" + url.Values{"f": {folder}, "uid": {utoa(uid)}}.Encode()
}
