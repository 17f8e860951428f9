package webmail

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"postern/mailbox/maildir"
	"postern/mailbox/maildirfilter"
	"postern/mailbox/sievestore"
)

// The mail filter and autoreply pages, sqwebmail's: rules a user builds
// in forms, kept in the home's .mailfilter in sqwebmail's format (a
// maildrop recipe the delivery agent runs at the next delivery, its rules
// also kept as "##" lines that are read back), and named replies in the
// Maildir's autoresponses/. The vacation switch is one of those rules: an
// autoreply named "vacation" to any message. A .mailfilter the user wrote
// by hand is shown as such and never replaced. The formats are
// mailbox/maildirfilter's.

// vacationName is the autoreply (and the rule) the vacation switch keeps.
const (
	vacationName     = "vacation"
	vacationRuleName = "Vacation"
)

// Session values the filter pages need besides the Maildir.
const (
	keyHome = "home" // the account's home, which holds .mailfilter
	keyUID  = "uid"  // who owns what is written, when the server is root
	keyGID  = "gid"
)

// filterAccount is where the session's user keeps filters; ok is false
// when the account has no home (nowhere to put .mailfilter).
func (h *Handler) filterAccount(u *user) (maildirfilter.Account, bool) {
	home := u.s.Get(keyHome)
	if home == "" || !filepath.IsAbs(home) {
		return maildirfilter.Account{}, false
	}
	uid, err1 := strconv.Atoi(u.s.Get(keyUID))
	gid, err2 := strconv.Atoi(u.s.Get(keyGID))
	if err1 != nil || err2 != nil {
		uid, gid = -1, -1
	}
	return maildirfilter.Account{Home: home, Maildir: u.md.Root(), UID: uid, GID: gid}, true
}

// recipe is what the generated recipe needs to know of this user.
func (h *Handler) recipe(u *user, a maildirfilter.Account) maildirfilter.Recipe {
	return maildirfilter.Recipe{Maildir: a.RecipeMaildir(), From: u.s.Get(keyAddress), Mailbot: h.mailbot}
}

// filterUser is the session and the account of a filter page, or nil when
// the page has answered (no session, filters off, no home).
func (h *Handler) filterUser(w http.ResponseWriter, r *http.Request) (*user, maildirfilter.Account) {
	if h.opt.DisableFilters {
		h.fail(w, r, nil, http.StatusNotFound, "There is no such page.")
		return nil, maildirfilter.Account{}
	}
	u := h.session(w, r)
	if u == nil {
		return nil, maildirfilter.Account{}
	}
	a, ok := h.filterAccount(u)
	if !ok {
		h.fail(w, r, u, http.StatusServiceUnavailable, "Mail filters need a home directory, and your account has none. Ask your administrator.")
		return nil, maildirfilter.Account{}
	}
	return u, a
}

// foreignText is what a user with a hand-written .mailfilter is told.
const foreignText = "Your mail filter file (.mailfilter in your home directory) was written by hand or by another program. It is not changed here; edit it as you did before, or remove it to build your filters on this page."

// loadRules reads the rules; the message is for the user when err is set.
func (h *Handler) loadRules(u *user, a maildirfilter.Account) ([]maildirfilter.Rule, []maildirfilter.Problem, string, error) {
	rs, problems, err := a.LoadRules()
	switch {
	case err == nil:
		return rs, problems, "", nil
	case errors.Is(err, maildirfilter.ErrForeign):
		return nil, nil, foreignText, err
	}
	h.log.Error("webmail: read filters", "user", u.s.Login, "err", err)
	return nil, nil, "Your mail filters cannot be read now. Try again later.", err
}

type filterRow struct {
	Index              int
	Name, Test, Action string
	Continue           bool
	EditURL            string
	First, Last        bool
}

type filtersPage struct {
	Rows     []filterRow
	Problems []string
	Foreign  string
	Error    string
	// Sieve tells a user who also has an active Sieve script which of
	// the two decides (the delivery agent runs the script only when there
	// is no .mailfilter; docs/sieve.md).
	Sieve string
}

// sieveNotice is what the filters page says about an active Sieve script.
func sieveNotice(a maildirfilter.Account) string {
	name, src, err := sievestore.Open(a.Home, sievestore.Owner{UID: a.UID, GID: a.GID}, sievestore.Limits{}).Active()
	if err != nil || src == nil {
		return ""
	}
	if name == "" {
		name = ".dovecot.sieve"
	}
	if _, err := os.Stat(a.FilterFile()); err == nil {
		return fmt.Sprintf("You also have an active Sieve script (%s, from a ManageSieve client). The filters here decide and the script is not run; delete every filter here to let the script decide again.", name)
	}
	return fmt.Sprintf("Your active Sieve script (%s, from a ManageSieve client) decides where your mail goes. Saving a filter here takes over from it.", name)
}

// filters lists the rules in the order they run.
func (h *Handler) filters(w http.ResponseWriter, r *http.Request) {
	u, a := h.filterUser(w, r)
	if u == nil {
		return
	}
	p := &filtersPage{Sieve: sieveNotice(a)}
	rs, problems, msg, err := h.loadRules(u, a)
	status := http.StatusOK
	if errors.Is(err, maildirfilter.ErrForeign) {
		p.Foreign = msg
	} else if err != nil {
		p.Error, status = msg, http.StatusServiceUnavailable
	}
	for i, rule := range rs {
		p.Rows = append(p.Rows, filterRow{Index: i, Name: rule.Name, Test: describeTest(rule), Action: describeAction(rule),
			Continue: rule.Continue, EditURL: Prefix + "filters/edit?" + url.Values{"name": {rule.Name}}.Encode(),
			First: i == 0, Last: i == len(rs)-1})
	}
	for _, pr := range problems {
		p.Problems = append(p.Problems, fmt.Sprintf("%s: %s", clean(pr.Name), sentence(pr.Err)))
	}
	h.render(w, status, "filters.html", h.pageFor(u, "Mail filters", p))
}

// describeTest is a rule's test in words.
func describeTest(r maildirfilter.Rule) string {
	not := ""
	if r.DoesNot {
		not = "not "
	}
	what := r.Header
	if r.Body {
		what = "the body"
	}
	kind := "text"
	if !r.PlainString {
		kind = "pattern"
	}
	switch r.Op {
	case maildirfilter.Contains:
		return fmt.Sprintf("%s does %scontain the %s %q", what, not, kind, r.Value)
	case maildirfilter.StartsWith:
		return fmt.Sprintf("%s does %sstart with the %s %q", what, not, kind, r.Value)
	case maildirfilter.EndsWith:
		return fmt.Sprintf("%s does %send with the %s %q", what, not, kind, r.Value)
	case maildirfilter.HasRecipient:
		return fmt.Sprintf("%s is %sa recipient", r.Value, not)
	case maildirfilter.IsLargerThan:
		if r.DoesNot {
			return fmt.Sprintf("size is at most %s bytes", r.Value)
		}
		return fmt.Sprintf("size is larger than %s bytes", r.Value)
	case maildirfilter.MimeMultipart:
		if r.DoesNot {
			return "has no attachments"
		}
		return "has attachments"
	case maildirfilter.TextPlain:
		return "is " + not + "plain text"
	}
	if r.DoesNot {
		return "no message"
	}
	return "any message"
}

// describeAction is a rule's action in words.
func describeAction(r maildirfilter.Rule) string {
	switch r.Kind() {
	case maildirfilter.ActForward:
		return "forward to " + strings.Join(strings.Fields(r.Action[1:]), ", ")
	case maildirfilter.ActBounce:
		return "return to the sender: " + r.Action[1:]
	case maildirfilter.ActDiscard:
		return "delete"
	case maildirfilter.ActAutoreply:
		ar, _ := maildirfilter.ParseAutoreply(r.Action[1:])
		s := "reply with " + ar.Name
		if ar.Days > 0 {
			s += fmt.Sprintf(", once in %d days per sender", ar.Days)
		}
		return s
	}
	return "move to " + displayName(strings.TrimPrefix(r.Action, maildir.Inbox+"."))
}

// ruleForm is the rule form's fields, as typed.
type ruleForm struct {
	Old       string // the rule edited; "" for a new one
	Name      string
	Test      string // contains, startswith, endswith, hasrecipient, larger, smaller, mimemultipart, textplain, anymessage
	Where     string // header, body
	Header    string
	Value     string
	Plain     bool
	Not       bool
	Action    string // folder, forward, bounce, discard, autoreply
	Folder    string
	Forward   string
	Bounce    string
	Autoreply string
	Days      string
	NoQuote   bool
	From      string
	Continue  bool
}

type filterEditPage struct {
	F           ruleForm
	Folders     []folderOption
	Autoreplies []string
	Error       string
}

type folderOption struct{ Name, Display string }

func (h *Handler) folderOptions(u *user) []folderOption {
	var out []folderOption
	for _, f := range h.folderList(u.md) {
		out = append(out, folderOption{Name: f.Name, Display: displayName(f.Name)})
	}
	return out
}

// formOf turns a rule into the form's fields.
func formOf(r maildirfilter.Rule) ruleForm {
	f := ruleForm{Old: r.Name, Name: r.Name, Test: string(r.Op), Where: "header", Header: r.Header, Value: r.Value,
		Plain: r.PlainString, Not: r.DoesNot, From: r.From, Continue: r.Continue}
	if r.Body {
		f.Where = "body"
	}
	if r.Op == maildirfilter.IsLargerThan {
		f.Test, f.Not = "larger", false
		if r.DoesNot {
			f.Test = "smaller"
		}
	}
	switch r.Kind() {
	case maildirfilter.ActForward:
		f.Action, f.Forward = "forward", strings.TrimSpace(r.Action[1:])
	case maildirfilter.ActBounce:
		f.Action, f.Bounce = "bounce", r.Action[1:]
	case maildirfilter.ActDiscard:
		f.Action = "discard"
	case maildirfilter.ActAutoreply:
		ar, _ := maildirfilter.ParseAutoreply(r.Action[1:])
		f.Action, f.Autoreply, f.NoQuote = "autoreply", ar.Name, ar.NoQuote
		if ar.Days > 0 {
			f.Days = strconv.Itoa(ar.Days)
		}
	default:
		f.Action = "folder"
		f.Folder = maildir.Inbox
		if name, ok := strings.CutPrefix(r.Action, maildir.Inbox+"."); ok {
			f.Folder = name
		}
	}
	return f
}

// ruleOf turns the form into a rule; its errors are for the user.
func ruleOf(f ruleForm) (maildirfilter.Rule, error) {
	r := maildirfilter.Rule{Name: f.Name, PlainString: f.Plain, DoesNot: f.Not, Continue: f.Continue}
	switch f.Test {
	case "contains", "startswith", "endswith":
		r.Op, r.Value = maildirfilter.Op(f.Test), f.Value
		if f.Where == "body" {
			r.Body = true
		} else {
			r.Header = f.Header
		}
	case "hasrecipient":
		r.Op, r.Value, r.PlainString = maildirfilter.HasRecipient, f.Value, false
	case "larger", "smaller":
		r.Op, r.Value, r.DoesNot, r.PlainString = maildirfilter.IsLargerThan, f.Value, f.Test == "smaller", false
	case "mimemultipart", "textplain", "anymessage":
		r.Op, r.PlainString = maildirfilter.Op(f.Test), false
	default:
		return r, errors.New("Choose a test.")
	}
	switch f.Action {
	case "folder":
		name, err := folderParam(f.Folder)
		if err != nil {
			return r, fmt.Errorf("%.60q is not a folder.", f.Folder)
		}
		r.Action = maildir.Inbox
		if name != maildir.Inbox {
			r.Action = maildir.Inbox + "." + name
		}
	case "forward":
		r.Action = "!" + strings.Join(strings.Fields(strings.ReplaceAll(f.Forward, ",", " ")), " ")
	case "bounce":
		r.Action = "*" + f.Bounce
	case "discard":
		r.Action = "exit"
	case "autoreply":
		ar := maildirfilter.Autoreply{Name: f.Autoreply, NoQuote: f.NoQuote}
		if f.Days != "" {
			d, err := strconv.Atoi(f.Days)
			if err != nil || d < 0 || d > maildirfilter.MaxDays {
				return r, fmt.Errorf("Days between replies: a number from 0 to %d.", maildirfilter.MaxDays)
			}
			ar.Days = d
		}
		if err := maildirfilter.CheckAutoresponseName(ar.Name); err != nil {
			return r, errors.New("Choose an autoreply (make one on the Autoreplies page first).")
		}
		r.Action, r.From = ar.String(), f.From
	default:
		return r, errors.New("Choose an action.")
	}
	if err := r.Check(); err != nil {
		return r, sentenceErr(err)
	}
	return r, nil
}

func (h *Handler) autoreplyNames(a maildirfilter.Account) []string {
	names, _ := a.Autoresponses()
	return names
}

// filterNew shows the form for a new rule.
func (h *Handler) filterNew(w http.ResponseWriter, r *http.Request) {
	u, a := h.filterUser(w, r)
	if u == nil {
		return
	}
	ep := &filterEditPage{F: ruleForm{Test: "contains", Where: "header", Header: "Subject", Plain: true, Action: "folder", Folder: maildir.Inbox},
		Folders: h.folderOptions(u), Autoreplies: h.autoreplyNames(a)}
	h.render(w, http.StatusOK, "filteredit.html", h.pageFor(u, "New mail filter", ep))
}

// filterEdit shows the form for an existing rule.
func (h *Handler) filterEdit(w http.ResponseWriter, r *http.Request) {
	u, a := h.filterUser(w, r)
	if u == nil {
		return
	}
	rs, _, msg, err := h.loadRules(u, a)
	if err != nil {
		h.fail(w, r, u, http.StatusConflict, msg)
		return
	}
	i := slices.IndexFunc(rs, func(x maildirfilter.Rule) bool { return x.Name == r.URL.Query().Get("name") })
	if i < 0 {
		h.fail(w, r, u, http.StatusNotFound, "There is no such mail filter.")
		return
	}
	ep := &filterEditPage{F: formOf(rs[i]), Folders: h.folderOptions(u), Autoreplies: h.autoreplyNames(a)}
	h.render(w, http.StatusOK, "filteredit.html", h.pageFor(u, "Edit "+rs[i].Name, ep))
}

// saveRules writes the rules, mapping errors to what the user is told.
func (h *Handler) saveRules(u *user, a maildirfilter.Account, rs []maildirfilter.Rule) (int, string) {
	err := a.SaveRules(rs, h.recipe(u, a))
	var invalid *maildirfilter.InvalidError
	switch {
	case err == nil:
		return 0, ""
	case errors.Is(err, maildirfilter.ErrForeign):
		return http.StatusConflict, foreignText
	case errors.As(err, &invalid):
		h.log.Info("webmail: filters refused", "user", u.s.Login, "err", err)
		return http.StatusBadRequest, sentence(err)
	}
	h.log.Error("webmail: write filters", "user", u.s.Login, "err", err)
	return http.StatusServiceUnavailable, "Your mail filters could not be saved now. Try again later."
}

// filterSave adds a rule (at the end) or changes one (old names it).
func (h *Handler) filterSave(w http.ResponseWriter, r *http.Request) {
	limitForm(w, r)
	u, a := h.filterUser(w, r)
	if u == nil {
		return
	}
	v := r.PostForm
	trim := func(k string) string { return strings.TrimSpace(v.Get(k)) }
	f := ruleForm{Old: v.Get("old"), Name: trim("name"), Test: v.Get("test"), Where: v.Get("where"), Header: trim("header"),
		Value: v.Get("value"), Plain: v.Get("plain") != "", Not: v.Get("not") != "", Action: v.Get("action"),
		Folder: v.Get("folder"), Forward: trim("forward"), Bounce: trim("bounce"), Autoreply: v.Get("autoreply"),
		Days: trim("days"), NoQuote: v.Get("noquote") != "", From: trim("from"), Continue: v.Get("continue") != ""}
	again := func(status int, msg string) {
		for _, s := range []*string{&f.Old, &f.Name, &f.Header, &f.Value, &f.Folder, &f.Forward, &f.Bounce, &f.Autoreply, &f.Days, &f.From} {
			*s = clean(*s)
		}
		ep := &filterEditPage{F: f, Folders: h.folderOptions(u), Autoreplies: h.autoreplyNames(a), Error: msg}
		h.render(w, status, "filteredit.html", h.pageFor(u, "Mail filter", ep))
	}
	rule, err := ruleOf(f)
	if err != nil {
		again(http.StatusBadRequest, err.Error())
		return
	}
	h.filterMu.Lock()
	defer h.filterMu.Unlock()
	rs, _, msg, err := h.loadRules(u, a)
	if err != nil {
		again(http.StatusConflict, msg)
		return
	}
	at := -1
	if f.Old != "" {
		if at = slices.IndexFunc(rs, func(x maildirfilter.Rule) bool { return x.Name == f.Old }); at < 0 {
			again(http.StatusNotFound, "The rule is no longer among your filters.")
			return
		}
	}
	if j := slices.IndexFunc(rs, func(x maildirfilter.Rule) bool { return x.Name == rule.Name }); j >= 0 && j != at {
		again(http.StatusConflict, fmt.Sprintf("There is a rule named %s already: choose another name.", rule.Name))
		return
	}
	if at >= 0 {
		rs[at] = rule
	} else {
		rs = append(rs, rule)
	}
	if status, msg := h.saveRules(u, a, rs); status != 0 {
		again(status, msg)
		return
	}
	h.log.Info("webmail: filter saved", "user", u.s.Login, "rule", rule.Name)
	h.flash(w, r, u, "Saved "+rule.Name+".", Prefix+"filters")
}

// filterAct moves a rule up or down, or deletes it.
func (h *Handler) filterAct(w http.ResponseWriter, r *http.Request) {
	limitForm(w, r)
	u, a := h.filterUser(w, r)
	if u == nil {
		return
	}
	back := Prefix + "filters"
	h.filterMu.Lock()
	defer h.filterMu.Unlock()
	rs, _, msg, err := h.loadRules(u, a)
	if err != nil {
		h.flash(w, r, u, msg, back)
		return
	}
	name := r.PostFormValue("name")
	i := slices.IndexFunc(rs, func(x maildirfilter.Rule) bool { return x.Name == name })
	if i < 0 {
		h.flash(w, r, u, "There is no such mail filter.", back)
		return
	}
	done := ""
	switch r.PostFormValue("op") {
	case "up":
		if i > 0 {
			rs[i-1], rs[i] = rs[i], rs[i-1]
		}
		done = "Moved " + name + " up."
	case "down":
		if i < len(rs)-1 {
			rs[i+1], rs[i] = rs[i], rs[i+1]
		}
		done = "Moved " + name + " down."
	case "delete":
		rs = slices.Delete(rs, i, i+1)
		done = "Deleted " + name + "."
	default:
		h.flash(w, r, u, "Unknown action.", back)
		return
	}
	if status, msg := h.saveRules(u, a, rs); status != 0 {
		h.flash(w, r, u, msg, back)
		return
	}
	h.log.Info("webmail: filters changed", "user", u.s.Login, "op", r.PostFormValue("op"), "rule", name)
	h.flash(w, r, u, done, back)
}

// Autoreplies.

type autoreplyRow struct {
	Name, EditURL string
	InUse         bool
}

type autorepliesPage struct {
	Rows        []autoreplyRow
	VacationOn  bool
	VacationTxt string
	Days        string
	Foreign     string
	Error       string
}

// vacationRule is the index of the vacation switch's rule, or -1.
func vacationRule(rs []maildirfilter.Rule) int {
	return slices.IndexFunc(rs, func(x maildirfilter.Rule) bool {
		if x.Op != maildirfilter.AnyMessage || x.DoesNot || x.Kind() != maildirfilter.ActAutoreply {
			return false
		}
		ar, err := maildirfilter.ParseAutoreply(x.Action[1:])
		return err == nil && ar.Name == vacationName
	})
}

// autoreplies lists the replies and shows the vacation switch.
func (h *Handler) autoreplies(w http.ResponseWriter, r *http.Request) {
	u, a := h.filterUser(w, r)
	if u == nil {
		return
	}
	p := &autorepliesPage{Days: "7"}
	rs, _, msg, err := h.loadRules(u, a)
	if errors.Is(err, maildirfilter.ErrForeign) {
		p.Foreign = msg
	} else if err != nil {
		p.Error = msg
	}
	used := map[string]bool{}
	for _, rule := range rs {
		if rule.Kind() == maildirfilter.ActAutoreply {
			if ar, err := maildirfilter.ParseAutoreply(rule.Action[1:]); err == nil {
				used[ar.Name] = true
			}
		}
	}
	if i := vacationRule(rs); i >= 0 {
		p.VacationOn = true
		ar, _ := maildirfilter.ParseAutoreply(rs[i].Action[1:])
		p.Days = strconv.Itoa(ar.Days)
	}
	if ar, err := a.ReadAutoresponse(vacationName); err == nil && ar.Editable {
		p.VacationTxt = ar.Text
	}
	names, err := a.Autoresponses()
	if err != nil {
		h.log.Error("webmail: list autoreplies", "user", u.s.Login, "err", err)
		p.Error = "Your autoreplies cannot be read now. Try again later."
	}
	for _, n := range names {
		p.Rows = append(p.Rows, autoreplyRow{Name: n, InUse: used[n], EditURL: Prefix + "autoreplies/edit?" + url.Values{"name": {n}}.Encode()})
	}
	h.render(w, http.StatusOK, "autoreplies.html", h.pageFor(u, "Autoreplies", p))
}

type autoreplyEditPage struct {
	Old, Name, Text string
	NotEditable     bool
	Error           string
}

func (h *Handler) autoreplyNew(w http.ResponseWriter, r *http.Request) {
	u, _ := h.filterUser(w, r)
	if u == nil {
		return
	}
	h.render(w, http.StatusOK, "autoreplyedit.html", h.pageFor(u, "New autoreply", &autoreplyEditPage{}))
}

func (h *Handler) autoreplyEdit(w http.ResponseWriter, r *http.Request) {
	u, a := h.filterUser(w, r)
	if u == nil {
		return
	}
	ar, err := a.ReadAutoresponse(r.URL.Query().Get("name"))
	if err != nil {
		h.fail(w, r, u, http.StatusNotFound, "There is no such autoreply.")
		return
	}
	ep := &autoreplyEditPage{Old: ar.Name, Name: ar.Name, Text: clean(ar.Text), NotEditable: !ar.Editable}
	h.render(w, http.StatusOK, "autoreplyedit.html", h.pageFor(u, "Edit "+ar.Name, ep))
}

// writeAutoreply writes one reply; the message is for the user.
func (h *Handler) writeAutoreply(u *user, a maildirfilter.Account, name, text string) (int, string) {
	err := a.WriteAutoresponse(name, text, a.Quota(h.opt.AutoresponseQuota))
	var invalid *maildirfilter.InvalidError
	switch {
	case err == nil:
		return 0, ""
	case errors.Is(err, maildirfilter.ErrQuota):
		return http.StatusInsufficientStorage, "Your autoreplies would exceed their quota: delete one, or make this one shorter."
	case errors.As(err, &invalid):
		return http.StatusBadRequest, sentence(err)
	}
	h.log.Error("webmail: write autoreply", "user", u.s.Login, "err", err)
	return http.StatusServiceUnavailable, "The autoreply could not be saved now. Try again later."
}

// autoreplySave makes or changes a reply (a new name is a new reply; the
// rules that use the old name keep it).
func (h *Handler) autoreplySave(w http.ResponseWriter, r *http.Request) {
	limitForm(w, r)
	u, a := h.filterUser(w, r)
	if u == nil {
		return
	}
	ep := &autoreplyEditPage{Old: r.PostFormValue("old"), Name: strings.TrimSpace(r.PostFormValue("name")), Text: r.PostFormValue("text")}
	again := func(status int, msg string) {
		ep.Old, ep.Name, ep.Text, ep.Error = clean(ep.Old), clean(ep.Name), clean(ep.Text), msg
		h.render(w, status, "autoreplyedit.html", h.pageFor(u, "Autoreply", ep))
	}
	if err := maildirfilter.CheckAutoresponseName(ep.Name); err != nil {
		again(http.StatusBadRequest, sentence(err))
		return
	}
	if ep.Old != ep.Name && slices.Contains(h.autoreplyNames(a), ep.Name) {
		again(http.StatusConflict, fmt.Sprintf("There is an autoreply named %s already: choose another name.", ep.Name))
		return
	}
	h.filterMu.Lock()
	defer h.filterMu.Unlock()
	if status, msg := h.writeAutoreply(u, a, ep.Name, ep.Text); status != 0 {
		again(status, msg)
		return
	}
	h.log.Info("webmail: autoreply saved", "user", u.s.Login, "name", ep.Name)
	h.flash(w, r, u, "Saved "+ep.Name+".", Prefix+"autoreplies")
}

// autoreplyDelete removes a reply that no rule uses.
func (h *Handler) autoreplyDelete(w http.ResponseWriter, r *http.Request) {
	limitForm(w, r)
	u, a := h.filterUser(w, r)
	if u == nil {
		return
	}
	back := Prefix + "autoreplies"
	name := r.PostFormValue("name")
	h.filterMu.Lock()
	defer h.filterMu.Unlock()
	rs, _, _, err := h.loadRules(u, a)
	if err == nil {
		for _, rule := range rs {
			if rule.Kind() != maildirfilter.ActAutoreply {
				continue
			}
			if ar, err := maildirfilter.ParseAutoreply(rule.Action[1:]); err == nil && ar.Name == name {
				h.flash(w, r, u, fmt.Sprintf("The rule %s uses %s: change or delete the rule first.", rule.Name, name), back)
				return
			}
		}
	}
	if err := a.DeleteAutoresponse(name); err != nil {
		h.flash(w, r, u, "There is no such autoreply.", back)
		return
	}
	h.log.Info("webmail: autoreply deleted", "user", u.s.Login, "name", name)
	h.flash(w, r, u, "Deleted "+name+".", back)
}

// vacation turns the vacation reply on (its text saved, its rule first
// among the filters, so that a rule that files the message away does not
// keep it from being answered) or off (the rule removed, the text kept).
func (h *Handler) vacation(w http.ResponseWriter, r *http.Request) {
	limitForm(w, r)
	u, a := h.filterUser(w, r)
	if u == nil {
		return
	}
	back := Prefix + "autoreplies"
	on := r.PostFormValue("on") != ""
	days := 0
	if on {
		d, err := strconv.Atoi(strings.TrimSpace(r.PostFormValue("days")))
		if err != nil || d < 0 || d > maildirfilter.MaxDays {
			h.flash(w, r, u, fmt.Sprintf("Days between replies to one sender: a number from 0 to %d.", maildirfilter.MaxDays), back)
			return
		}
		days = d
	}
	h.filterMu.Lock()
	defer h.filterMu.Unlock()
	rs, _, msg, err := h.loadRules(u, a)
	if err != nil {
		h.flash(w, r, u, msg, back)
		return
	}
	for i := vacationRule(rs); i >= 0; i = vacationRule(rs) {
		rs = slices.Delete(rs, i, i+1)
	}
	if on {
		text := r.PostFormValue("text")
		if strings.TrimSpace(text) == "" {
			h.flash(w, r, u, "Write the vacation message's text.", back)
			return
		}
		if status, msg := h.writeAutoreply(u, a, vacationName, text); status != 0 {
			h.flash(w, r, u, msg, back)
			return
		}
		name := vacationRuleName
		for n := 2; slices.ContainsFunc(rs, func(x maildirfilter.Rule) bool { return x.Name == name }); n++ {
			name = fmt.Sprintf("%s %d", vacationRuleName, n)
		}
		rule := maildirfilter.Rule{Name: name, Op: maildirfilter.AnyMessage, Action: maildirfilter.Autoreply{Name: vacationName, Days: days}.String()}
		rs = slices.Insert(rs, 0, rule)
	}
	if status, msg := h.saveRules(u, a, rs); status != 0 {
		h.flash(w, r, u, msg, back)
		return
	}
	h.log.Info("webmail: vacation", "user", u.s.Login, "on", on, "days", days)
	if on {
		h.flash(w, r, u, "The vacation reply is on.", back)
	} else {
		h.flash(w, r, u, "The vacation reply is off.", back)
	}
}

// defaultMailbot is this program's mailbot, as a command the recipe can
// carry: its absolute path when that is made of plain characters only
// (no quoting needed in the recipe's backquotes), else "mailbot" from
// $PATH.
func defaultMailbot() string {
	exe, err := os.Executable()
	if err != nil || !filepath.IsAbs(exe) {
		return "mailbot"
	}
	for _, c := range []byte(exe) {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || strings.IndexByte("/._-+", c) >= 0) {
			return "mailbot"
		}
	}
	return exe + " mailbot"
}
