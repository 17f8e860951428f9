package admin

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"postern/auth/authtool"
	"postern/auth/passwd"
	"postern/auth/userdb"
	"postern/web/websession"
)

// pageSize is how many accounts one page of the list shows.
const pageSize = 50

// maxAccountName bounds a name typed into a form (the userdb's own limit
// is checked by Format as well).
const maxAccountName = 255

type accountRow struct {
	Name     string
	Home     string
	Quota    string
	Disabled string
}

type accountListData struct {
	Query          string
	Rows           []accountRow
	Total          int
	Page, Last     int // 0-based
	PageNum, Pages int // 1-based, as shown
	Prev, Next     string
}

func (h *Handler) accountList(w http.ResponseWriter, r *http.Request, s *websession.Session) {
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	if len(q) > maxAccountName {
		q = q[:maxAccountName]
	}
	page, _ := strconv.Atoi(r.URL.Query().Get("page"))
	entries, err := h.accounts.List()
	if err != nil {
		h.render(w, s, http.StatusInternalServerError, "accounts", view{Title: "Accounts", Section: "accounts", Errors: errorLines(err), Data: accountListData{Query: q}})
		return
	}
	var match []userdb.Entry
	lq := strings.ToLower(q)
	for _, e := range entries {
		if q == "" || strings.Contains(strings.ToLower(e.Name), lq) {
			match = append(match, e)
		}
	}
	d := accountListData{Query: q, Total: len(match)}
	d.Last = max(0, (len(match)-1)/pageSize)
	d.Page = min(max(page, 0), d.Last)
	d.PageNum, d.Pages = d.Page+1, d.Last+1
	for _, e := range match[min(d.Page*pageSize, len(match)):min((d.Page+1)*pageSize, len(match))] {
		d.Rows = append(d.Rows, accountRow{Name: e.Name, Home: e.Fields[userdb.FieldHome], Quota: e.Fields[userdb.FieldQuota], Disabled: strings.Join(disabledServices(e), " ")})
	}
	link := func(p int) string {
		v := url.Values{"page": {strconv.Itoa(p)}}
		if q != "" {
			v.Set("q", q)
		}
		return Prefix + "accounts?" + v.Encode()
	}
	if d.Page > 0 {
		d.Prev = link(d.Page - 1)
	}
	if d.Page < d.Last {
		d.Next = link(d.Page + 1)
	}
	h.render(w, s, http.StatusOK, "accounts", view{Title: "Accounts", Section: "accounts", Data: d})
}

// disabledServices lists the services the entry's options switch off.
func disabledServices(e userdb.Entry) []string {
	opts, _ := userdb.ParseOptions(e.Fields[userdb.FieldOptions])
	var out []string
	for _, svc := range authtool.Services {
		if v := opts["disable"+svc]; v != "" && v != "0" {
			out = append(out, svc)
		}
	}
	return out
}

type accountNewData struct {
	Name, Quota string
}

func (h *Handler) accountNewForm(w http.ResponseWriter, r *http.Request, s *websession.Session) {
	h.render(w, s, http.StatusOK, "account-new", view{Title: "Add an account", Section: "accounts", Data: accountNewData{}})
}

// newPassword reads the two password fields of a form.
func newPassword(r *http.Request) (string, error) {
	pw, pw2 := r.PostFormValue("password"), r.PostFormValue("password2")
	switch {
	case pw == "":
		return "", errors.New("the password is empty")
	case len(pw) > passwd.MaxPasswordLen:
		return "", errors.New("the password is too long")
	case pw != pw2:
		return "", errors.New("the two passwords differ")
	}
	return pw, nil
}

func (h *Handler) accountAdd(w http.ResponseWriter, r *http.Request, s *websession.Session) {
	name, err1 := formValue(r, "name", maxAccountName)
	quota, err2 := formValue(r, "quota", 100)
	d := accountNewData{Name: name, Quota: quota}
	fail := func(err error) {
		h.render(w, s, http.StatusBadRequest, "account-new", view{Title: "Add an account", Section: "accounts", Data: d, Errors: errorLines(err)})
	}
	if err := errors.Join(err1, err2); err != nil {
		fail(err)
		return
	}
	if name == "" {
		fail(errors.New("the address is empty"))
		return
	}
	pw, err := newPassword(r)
	if err != nil {
		fail(err)
		return
	}
	// The same defaults as "postern user add": this process's uid and
	// gid, home DATADIR/mail/DOMAIN/LOCAL, Maildir HOME/Maildir, bcrypt.
	home, err := h.accounts.Add(authtool.NewAccount{Name: name, Password: pw, Quota: quota})
	if err != nil {
		fail(err)
		return
	}
	h.done(w, r, s, "account-add", "account "+name+" added", Prefix+"account?name="+url.QueryEscape(name), "account", name, "home", home)
}

type accountData struct {
	Entry    *userdb.Entry
	Home     string
	Maildir  string
	Quota    string
	Services []serviceState
}

type serviceState struct {
	Name     string
	Disabled bool
}

func (h *Handler) accountShow(w http.ResponseWriter, r *http.Request, s *websession.Session) {
	h.showAccount(w, s, r.URL.Query().Get("name"), http.StatusOK, nil)
}

func (h *Handler) showAccount(w http.ResponseWriter, s *websession.Session, name string, status int, problem error) {
	e, err := h.accounts.Get(name)
	if err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, authtool.ErrNoAccount) {
			code = http.StatusNotFound
		}
		h.render(w, s, code, "account", view{Title: "Account", Section: "accounts", Errors: errorLines(err), Data: accountData{}})
		return
	}
	d := accountData{Entry: e, Home: e.Fields[userdb.FieldHome], Maildir: e.Fields[userdb.FieldMail], Quota: e.Fields[userdb.FieldQuota]}
	off := disabledServices(*e)
	for _, svc := range authtool.Services {
		d.Services = append(d.Services, serviceState{svc, contains(off, svc)})
	}
	v := view{Title: "Account " + e.Name, Section: "accounts", Data: d}
	if problem != nil {
		v.Errors = errorLines(problem)
	}
	h.render(w, s, status, "account", v)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func accountURL(name string) string { return Prefix + "account?name=" + url.QueryEscape(name) }

func (h *Handler) accountPassword(w http.ResponseWriter, r *http.Request, s *websession.Session) {
	name := r.PostFormValue("name")
	pw, err := newPassword(r)
	if err != nil {
		h.showAccount(w, s, name, http.StatusBadRequest, err)
		return
	}
	others, err := h.accounts.SetPassword(name, pw, "")
	if err != nil {
		h.showAccount(w, s, name, http.StatusBadRequest, err)
		return
	}
	msg := "password of " + name + " changed"
	if len(others) > 0 {
		msg += " (it also has " + strings.Join(others, ", ") + ", which still win for their services)"
	}
	h.done(w, r, s, "account-password", msg, accountURL(name), "account", name)
}

func (h *Handler) accountQuota(w http.ResponseWriter, r *http.Request, s *websession.Session) {
	name := r.PostFormValue("name")
	quota, err := formValue(r, "quota", 100)
	if err == nil {
		err = h.accounts.SetQuota(name, quota)
	}
	if err != nil {
		h.showAccount(w, s, name, http.StatusBadRequest, err)
		return
	}
	shown := quota
	if shown == "" {
		shown = "none"
	}
	h.done(w, r, s, "account-quota", "quota of "+name+" set to "+shown, accountURL(name), "account", name, "quota", quota)
}

func (h *Handler) accountServices(w http.ResponseWriter, r *http.Request, s *websession.Session) {
	name := r.PostFormValue("name")
	disabled := map[string]bool{}
	var off []string
	for _, svc := range authtool.Services {
		// A checked box means "enabled"; an unchecked one sends nothing.
		disabled[svc] = r.PostFormValue("enable_"+svc) != "1"
		if disabled[svc] {
			off = append(off, svc)
		}
	}
	if err := h.accounts.SetDisabled(name, disabled); err != nil {
		h.showAccount(w, s, name, http.StatusBadRequest, err)
		return
	}
	shown := strings.Join(off, " ")
	if shown == "" {
		shown = "none"
	}
	h.done(w, r, s, "account-services", "services of "+name+" set; disabled: "+shown, accountURL(name), "account", name, "disabled", shown)
}

type accountDeleteData struct {
	Name    string
	Home    string
	Maildir string
}

func (h *Handler) accountDeleteForm(w http.ResponseWriter, r *http.Request, s *websession.Session) {
	h.deleteConfirm(w, s, r.URL.Query().Get("name"), http.StatusOK, nil)
}

func (h *Handler) deleteConfirm(w http.ResponseWriter, s *websession.Session, name string, status int, problem error) {
	e, err := h.accounts.Get(name)
	if err != nil {
		h.showAccount(w, s, name, http.StatusNotFound, nil)
		return
	}
	d := accountDeleteData{Name: e.Name, Home: e.Fields[userdb.FieldHome], Maildir: e.Fields[userdb.FieldMail]}
	if d.Maildir == "" {
		d.Maildir = strings.TrimRight(d.Home, "/") + "/Maildir"
	}
	v := view{Title: "Delete " + e.Name, Section: "accounts", Data: d}
	if problem != nil {
		v.Errors = errorLines(problem)
	}
	h.render(w, s, status, "account-delete", v)
}

func (h *Handler) accountDelete(w http.ResponseWriter, r *http.Request, s *websession.Session) {
	name := r.PostFormValue("name")
	mail := r.PostFormValue("mail")
	if r.PostFormValue("confirm") != "yes" || (mail != "keep" && mail != "remove") {
		h.deleteConfirm(w, s, name, http.StatusBadRequest, errors.New("say what happens to the mail, and tick the box to confirm"))
		return
	}
	e, err := h.accounts.Delete(name, mail == "remove")
	if err != nil && (e == nil || e.Name == "") {
		h.deleteConfirm(w, s, name, http.StatusBadRequest, err)
		return
	}
	msg := "account " + name + " deleted"
	switch {
	case err != nil:
		msg += "; " + err.Error()
	case mail == "remove":
		msg += " with its mail"
	default:
		msg += "; its mail is left in " + e.Fields[userdb.FieldHome]
	}
	h.done(w, r, s, "account-delete", msg, Prefix+"accounts", "account", name, "mail", mail)
}
