package webmail

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"postern/internal/dirfact"
	"postern/mailbox/deliver"
	"postern/mailbox/mailbot"
	"postern/mailbox/maildir"
	"postern/mailbox/maildirfilter"
	"postern/mailbox/sievestore"
)

// TestMain lets the test binary stand in for "postern mailbot", which the
// generated filters run for autoreplies (see mailbotScript).
func TestMain(m *testing.M) {
	if os.Getenv("POSTERN_WEBMAIL_TEST_MAILBOT") == "1" {
		os.Unsetenv("POSTERN_WEBMAIL_TEST_MAILBOT")
		os.Exit(mailbot.MailbotMain(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// filterEnv is a webmail whose generated filters run Postern's mailbot
// (this test binary), and the real delivery agent over the same
// accounts, its sendmail a script that records what it is given.
type filterEnv struct {
	*testEnv
	agent *deliver.Agent
	sent  string // the fake sendmail appends "ARGS\n---\nMESSAGE\n===\n" here
}

func newFilterEnv(t *testing.T) *filterEnv {
	t.Helper()
	dir := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	wrapper := filepath.Join(dir, "mailbot")
	if err := os.WriteFile(wrapper, []byte("#!/bin/sh\nPOSTERN_WEBMAIL_TEST_MAILBOT=1 exec "+exe+" \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	e := newEnvWith(t, func(o *Options) { o.Mailbot = wrapper })
	fe := &filterEnv{testEnv: e, sent: filepath.Join(dir, "sent.txt")}
	fake := filepath.Join(dir, "sendmail")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\n{ echo \"$*\"; echo ---; cat; echo ===; } >> "+fe.sent+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	fe.agent, err = deliver.New(deliver.Options{Auth: e.svc, Sendmail: []string{fake}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return fe
}

// deliverMail hands msg to the delivery agent for u, as "postern
// maildrop -d" and the server's local delivery do.
func (fe *filterEnv) deliverMail(u testUser, from, msg string) deliver.Outcome {
	fe.t.Helper()
	acct, err := fe.svc.Lookup(context.Background(), u.name)
	if err != nil {
		fe.t.Fatal(err)
	}
	o := fe.agent.Deliver(context.Background(), deliver.Request{Account: acct, Sender: from, Recipient: u.name,
		Message: strings.NewReader(msg), NoInstructions: true})
	if o.Status != deliver.StatusOK {
		fe.t.Fatalf("delivery: %+v", o)
	}
	return o
}

func (fe *filterEnv) sentMail() string {
	b, _ := os.ReadFile(fe.sent)
	return string(b)
}

func subjects(t *testing.T, e *testEnv, u testUser, folder string) []string {
	t.Helper()
	f, err := e.maildir(u).Folder(folder)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := f.Sync(false)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range snap.Messages {
		r, err := f.Open(m.Key)
		if err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 4096)
		n, _ := r.Read(b)
		r.Close()
		for _, line := range strings.Split(string(b[:n]), "\n") {
			if s, ok := strings.CutPrefix(line, "Subject: "); ok {
				out = append(out, s)
			}
		}
	}
	return out
}

func mailFrom(from, subject string) string {
	return "From: " + from + "\nTo: alice@example.test\nSubject: " + subject + "\nMessage-ID: <" + strings.ReplaceAll(subject, " ", ".") + "@example.org>\n\nHello.\n"
}

func ruleFields(name string, kv ...string) url.Values {
	v := url.Values{"name": {name}}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Set(kv[i], kv[i+1])
	}
	return v
}

func (b *browser) saveRule(v url.Values) response {
	b.e.t.Helper()
	v.Set("csrf", b.csrf)
	return b.post("/mail/filters/save", v)
}

func homeOf(e *testEnv, u testUser) string { return filepath.Join(e.dir, "mail", u.name) }

// A rule made in the webmail takes effect at the next delivery through
// the real agent: "[list]" in the subject goes to Lists, other mail to
// INBOX.
func TestFilterRuleFilesIntoFolder(t *testing.T) {
	fe := newFilterEnv(t)
	if err := fe.maildir(alice).CreateFolder("Lists"); err != nil {
		t.Fatal(err)
	}
	b := fe.login(alice)
	r := b.saveRule(ruleFields("lists", "test", "contains", "where", "header", "header", "Subject", "value", "[list]", "plain", "1", "action", "folder", "folder", "Lists"))
	page := b.follow(r)
	if got := flash(t, page); got != "Saved lists." {
		t.Fatalf("flash %q", got)
	}
	rowsShown := find(page.doc(t), "table", "filters")
	if len(rowsShown) != 1 || !strings.Contains(text(rowsShown[0]), "move to Lists") {
		t.Fatalf("filters page: %s", page.body)
	}
	filter, err := os.ReadFile(filepath.Join(homeOf(fe.testEnv, alice), ".mailfilter"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(filter), "#MFMAILDROP=2\n") || !strings.Contains(string(filter), "##Folder:.Lists\n") ||
		!strings.Contains(string(filter), `to "./Maildir/.Lists/."`) {
		t.Fatalf(".mailfilter:\n%s", filter)
	}

	fe.deliverMail(alice, "bob@example.org", mailFrom("bob@example.org", "[list] weekly news"))
	fe.deliverMail(alice, "bob@example.org", mailFrom("bob@example.org", "lunch?"))
	if got := subjects(t, fe.testEnv, alice, "Lists"); len(got) != 1 || got[0] != "[list] weekly news" {
		t.Fatalf("Lists: %q", got)
	}
	if got := subjects(t, fe.testEnv, alice, maildir.Inbox); len(got) != 1 || got[0] != "lunch?" {
		t.Fatalf("INBOX: %q", got)
	}

	// Reordered and deleted through the list's buttons.
	b.saveRule(ruleFields("drop", "test", "contains", "where", "body", "value", "unsubscribe", "plain", "1", "action", "discard"))
	b.follow(b.post("/mail/filters/act", url.Values{"csrf": {b.csrf}, "name": {"drop"}, "op": {"up"}}))
	rs, _, err := fe.testEnv.filterAccountFor(alice).LoadRules()
	if err != nil || len(rs) != 2 || rs[0].Name != "drop" || rs[1].Name != "lists" {
		t.Fatalf("after up: %+v %v", rs, err)
	}
	b.follow(b.post("/mail/filters/act", url.Values{"csrf": {b.csrf}, "name": {"drop"}, "op": {"delete"}}))
	if rs, _, _ := fe.testEnv.filterAccountFor(alice).LoadRules(); len(rs) != 1 || rs[0].Name != "lists" {
		t.Fatalf("after delete: %+v", rs)
	}
}

// The vacation switch: the first message from a sender is answered once,
// through mailbot and sendmail; a second within the days is not.
func TestVacationRepliesOncePerSender(t *testing.T) {
	fe := newFilterEnv(t)
	b := fe.login(alice)
	r := b.post("/mail/vacation", url.Values{"csrf": {b.csrf}, "on": {"1"}, "days": {"7"}, "text": {"I am away until Monday.\n"}})
	if got := flash(t, b.follow(r)); got != "The vacation reply is on." {
		t.Fatalf("flash %q", got)
	}
	fe.deliverMail(alice, "carol@example.org", mailFrom("Carol <carol@example.org>", "question one"))
	sent := fe.sentMail()
	if strings.Count(sent, "===\n") != 1 {
		t.Fatalf("want one reply, sendmail got:\n%s", sent)
	}
	for _, want := range []string{"-t -f", "To: Carol <carol@example.org>", "From: alice@example.test", "Subject: Re: question one",
		"Auto-Submitted: auto-replied", "I am away until Monday."} {
		if !strings.Contains(sent, want) {
			t.Errorf("reply lacks %q:\n%s", want, sent)
		}
	}
	fe.deliverMail(alice, "carol@example.org", mailFrom("Carol <carol@example.org>", "question two"))
	if got := strings.Count(fe.sentMail(), "===\n"); got != 1 {
		t.Fatalf("second message from the same sender: %d replies in all, want 1:\n%s", got, fe.sentMail())
	}
	// Both messages were delivered, and another sender is answered.
	if got := subjects(t, fe.testEnv, alice, maildir.Inbox); len(got) != 2 {
		t.Fatalf("INBOX: %q", got)
	}
	fe.deliverMail(alice, "dave@example.org", mailFrom("dave@example.org", "hi"))
	if got := strings.Count(fe.sentMail(), "===\n"); got != 2 {
		t.Fatalf("another sender: %d replies in all, want 2", got)
	}

	// Off: the rule goes, the text stays for next time.
	b.follow(b.post("/mail/vacation", url.Values{"csrf": {b.csrf}, "days": {"7"}}))
	fe.deliverMail(alice, "erin@example.org", mailFrom("erin@example.org", "hello"))
	if got := strings.Count(fe.sentMail(), "===\n"); got != 2 {
		t.Fatalf("vacation off, still answered: %d replies", got)
	}
	page := b.get("/mail/autoreplies")
	if !strings.Contains(page.body, "I am away until Monday.") {
		t.Fatalf("vacation text lost: %s", page.body)
	}
}

// A .mailfilter the user wrote is never replaced: saving is refused with
// a message, and the file is as it was. A link in its place is refused
// the same way.
func TestHandWrittenMailfilterKept(t *testing.T) {
	fe := newFilterEnv(t)
	home := homeOf(fe.testEnv, alice)
	own := "# mine\nif (/^Subject: x/)\n  to ./Maildir/.Spam/\n"
	path := filepath.Join(home, ".mailfilter")
	if err := os.WriteFile(path, []byte(own), 0o600); err != nil {
		t.Fatal(err)
	}
	b := fe.login(alice)
	page := b.get("/mail/filters")
	if !strings.Contains(page.body, "written by hand") {
		t.Fatalf("filters page does not say the file is hand-written: %s", page.body)
	}
	r := b.saveRule(ruleFields("any", "test", "anymessage", "action", "discard"))
	if r.status != http.StatusConflict || !strings.Contains(r.body, "written by hand") {
		t.Fatalf("save over a hand-written filter: %d %s", r.status, r.body)
	}
	r = b.post("/mail/vacation", url.Values{"csrf": {b.csrf}, "on": {"1"}, "days": {"1"}, "text": {"away"}})
	b.follow(r)
	if got, _ := os.ReadFile(path); string(got) != own {
		t.Fatalf(".mailfilter changed:\n%s", got)
	}

	// A link to a generated-looking file elsewhere is not followed.
	other := filepath.Join(fe.dir, "elsewhere")
	if err := os.WriteFile(other, []byte("#MFMAILDROP=2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Remove(path)
	if err := os.Symlink(other, path); err != nil {
		t.Fatal(err)
	}
	r = b.saveRule(ruleFields("any", "test", "anymessage", "action", "discard"))
	if r.status == http.StatusSeeOther {
		t.Fatal("saved through a symbolic link")
	}
	if got, _ := os.ReadFile(other); string(got) != "#MFMAILDROP=2\n" {
		t.Fatalf("link target written: %q", got)
	}
}

// Hostile fields are refused with a message and nothing is written.
func TestFilterHostileInputRefused(t *testing.T) {
	fe := newFilterEnv(t)
	b := fe.login(alice)
	path := filepath.Join(homeOf(fe.testEnv, alice), ".mailfilter")
	cases := []struct {
		name string
		form url.Values
		want string
	}{
		{"folder escape", ruleFields("r", "test", "anymessage", "action", "folder", "folder", "../x"), "is not a folder"},
		{"folder escape 2", ruleFields("r", "test", "anymessage", "action", "folder", "folder", "a/../../x"), "is not a folder"},
		{"header newline", ruleFields("r", "test", "contains", "where", "header", "header", "Subject\nto \"/tmp/x\"", "value", "x", "action", "discard"), "is not a header"},
		{"value newline", ruleFields("r", "test", "contains", "where", "header", "header", "Subject", "value", "x\n}\nto \"/tmp\"", "plain", "1", "action", "discard"), "one line"},
		{"bad regexp", ruleFields("r", "test", "contains", "where", "header", "header", "Subject", "value", "(unclosed", "action", "discard"), "is not a regular expression"},
		{"pcre only", ruleFields("r", "test", "contains", "where", "header", "header", "Subject", "value", "(?<=a)b", "action", "discard"), "cannot be used"},
		{"unescaped slash", ruleFields("r", "test", "contains", "where", "header", "header", "Subject", "value", "a/b", "action", "discard"), "write /"},
		{"huge value", ruleFields("r", "test", "contains", "where", "header", "header", "Subject", "value", strings.Repeat("x", 300), "plain", "1", "action", "discard"), "longer than 200"},
		{"huge name", ruleFields(strings.Repeat("n", 300), "test", "anymessage", "action", "discard"), "at most 200"},
		{"quote in name", ruleFields("a\"b", "test", "anymessage", "action", "discard"), "quotes"},
		{"forward pipe", ruleFields("r", "test", "anymessage", "action", "forward", "forward", "a@b.c|touch /tmp/x"), "not an address"},
		{"forward option", ruleFields("r", "test", "anymessage", "action", "forward", "forward", "-oQ/tmp@x"), "not an address"},
		{"bounce quote", ruleFields("r", "test", "anymessage", "action", "bounce", "bounce", "bye\"; system"), "may not hold"},
		{"autoreply path", ruleFields("r", "test", "anymessage", "action", "autoreply", "autoreply", "../../x"), "Choose an autoreply"},
		{"size not number", ruleFields("r", "test", "larger", "value", "1e9", "action", "discard"), "not a size"},
	}
	for _, c := range cases {
		r := b.saveRule(c.form)
		if r.status != http.StatusBadRequest || !strings.Contains(r.body, c.want) {
			t.Errorf("%s: %d, want 400 saying %q; page:\n%s", c.name, r.status, c.want, r.body)
		}
		if _, err := os.Lstat(path); err == nil {
			t.Fatalf("%s: .mailfilter written", c.name)
		}
	}
	// An autoreply named as a path is refused, and nothing appears
	// outside the Maildir.
	r := b.post("/mail/autoreplies/save", url.Values{"csrf": {b.csrf}, "name": {"../../evil"}, "text": {"x"}})
	if r.status != http.StatusBadRequest {
		t.Fatalf("autoreply ../../evil: %d", r.status)
	}
	if _, err := os.Stat(filepath.Join(fe.dir, "mail", "evil")); err == nil {
		t.Fatal("autoreply written outside the Maildir")
	}
}

// filterAccountFor is the filter store of u, as the webmail's session
// names it.
func (e *testEnv) filterAccountFor(u testUser) maildirfilter.Account {
	home := homeOf(e, u)
	return maildirfilter.Account{Home: home, Maildir: filepath.Join(home, "Maildir"), UID: -1, GID: -1}
}

// "Return to the sender" exits 70 with the rule's text as the reason,
// which the bounce carries; nothing is delivered.
func TestFilterBounceReason(t *testing.T) {
	fe := newFilterEnv(t)
	b := fe.login(alice)
	b.follow(b.saveRule(ruleFields("no ads", "test", "contains", "where", "header", "header", "Subject", "value", "ADV:", "plain", "1", "action", "bounce", "bounce", "No advertising here, thank you")))
	acct, err := fe.svc.Lookup(context.Background(), alice.name)
	if err != nil {
		t.Fatal(err)
	}
	o := fe.agent.Deliver(context.Background(), deliver.Request{Account: acct, Sender: "ads@example.org", Recipient: alice.name,
		Message: strings.NewReader(mailFrom("ads@example.org", "ADV: cheap")), NoInstructions: true})
	if o.Status != deliver.StatusPermanent || o.ExitCode != 70 || !strings.Contains(o.Reason, "No advertising here, thank you") {
		t.Fatalf("outcome %+v", o)
	}
	if got := subjects(t, fe.testEnv, alice, maildir.Inbox); len(got) != 0 {
		t.Fatalf("INBOX: %q", got)
	}
}

// Every POST of the filter pages wants the session's token and this
// site; refused ones change nothing.
func TestFilterPostsNeedToken(t *testing.T) {
	fe := newFilterEnv(t)
	b := fe.login(alice)
	rule := ruleFields("any", "test", "anymessage", "action", "discard")
	forms := map[string]url.Values{
		"/mail/filters/save":       rule,
		"/mail/filters/act":        {"name": {"any"}, "op": {"delete"}},
		"/mail/autoreplies/save":   {"name": {"away"}, "text": {"x"}},
		"/mail/autoreplies/delete": {"name": {"away"}},
		"/mail/vacation":           {"on": {"1"}, "days": {"1"}, "text": {"x"}},
	}
	for _, c := range []struct {
		name, tok string
		hdr       map[string]string
	}{
		{"no token", "", map[string]string{"Origin": fe.srv.URL}},
		{"wrong token", "AAAA", map[string]string{"Origin": fe.srv.URL}},
		{"another site", b.csrf, map[string]string{"Origin": "https://evil.example"}},
		{"cross-site fetch", b.csrf, map[string]string{"Sec-Fetch-Site": "cross-site"}},
	} {
		for path, form := range forms {
			f := url.Values{}
			for k, v := range form {
				f[k] = v
			}
			f.Set("csrf", c.tok)
			if r := b.postWith(path, f, c.hdr); r.status != http.StatusForbidden {
				t.Errorf("%s to %s: %d", c.name, path, r.status)
			}
		}
	}
	home := homeOf(fe.testEnv, alice)
	if _, err := os.Lstat(filepath.Join(home, ".mailfilter")); err == nil {
		t.Fatal(".mailfilter written by a refused post")
	}
	if _, err := os.Lstat(filepath.Join(home, "Maildir", "autoresponses")); err == nil {
		t.Fatal("autoresponses/ made by a refused post")
	}
}

// The edit form shows a saved rule as it was entered, and saving it
// under a new name replaces it; the pages are gone when turned off.
func TestFilterEditFormAndSwitch(t *testing.T) {
	fe := newFilterEnv(t)
	b := fe.login(alice)
	b.follow(b.post("/mail/autoreplies/save", url.Values{"csrf": {b.csrf}, "name": {"thanks"}, "text": {"Thank you, I will answer soon.\n"}}))
	b.follow(b.saveRule(ruleFields("thank boss", "test", "hasrecipient", "value", "alice@example.test", "action", "autoreply",
		"autoreply", "thanks", "days", "3", "noquote", "1", "from", "Alice <alice@example.test>")))
	page := b.get("/mail/filters/edit?name=thank+boss")
	doc := page.doc(t)
	if formValue(doc, "value") != "alice@example.test" || formValue(doc, "days") != "3" || formValue(doc, "from") != "Alice <alice@example.test>" || formValue(doc, "old") != "thank boss" {
		t.Fatalf("edit form: %s", page.body)
	}
	v := ruleFields("thanks rule", "old", "thank boss", "test", "hasrecipient", "value", "alice@example.test", "action", "autoreply", "autoreply", "thanks", "days", "3")
	b.follow(b.saveRule(v))
	rs, _, err := fe.filterAccountFor(alice).LoadRules()
	if err != nil || len(rs) != 1 || rs[0].Name != "thanks rule" || rs[0].Action != "+thanks days=3" {
		t.Fatalf("after rename: %+v %v", rs, err)
	}
	// In use: the autoreply cannot be deleted.
	r := b.post("/mail/autoreplies/delete", url.Values{"csrf": {b.csrf}, "name": {"thanks"}})
	if got := flash(t, b.follow(r)); !strings.Contains(got, "uses thanks") {
		t.Fatalf("delete of a used autoreply: %q", got)
	}

	off := newEnvWith(t, func(o *Options) { o.DisableFilters = true })
	ob := off.login(alice)
	if r := ob.get("/mail/filters"); r.status != http.StatusNotFound {
		t.Fatalf("filters page with DisableFilters: %d", r.status)
	}
	if strings.Contains(ob.get("/mail/folders").body, "/mail/filters") {
		t.Fatal("the menu links to the filter pages with DisableFilters")
	}
}

// A generated file with a rule that fails the checks (written by an
// older sqwebmail, or edited) shows the rule as not read; the others work.
func TestFilterRuleNotRead(t *testing.T) {
	fe := newFilterEnv(t)
	file := "#MFMAILDROP=2\n##Op:contains\n##Header:Sub ject\n##Value:x\n##Folder:.\n##Name:broken\n##Op:anymessage\n##Folder:exit\n##DoesNot\n##Name:never\n"
	if err := os.WriteFile(filepath.Join(homeOf(fe.testEnv, alice), ".mailfilter"), []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	b := fe.login(alice)
	page := b.get("/mail/filters")
	doc := page.doc(t)
	problems := find(doc, "ul", "problems")
	if len(problems) != 1 || !strings.Contains(text(problems[0]), "broken") {
		t.Fatalf("problems not listed: %s", page.body)
	}
	if tables := find(doc, "table", "filters"); len(tables) != 1 || !strings.Contains(text(tables[0]), "never") {
		t.Fatalf("rule not listed: %s", page.body)
	}
}

// The agent remembers homes without a filter file while they stay
// unchanged; a rule saved after such a delivery still takes effect at
// the next one, since writing .mailfilter changes the home.
func TestFilterAfterRememberedPlainHome(t *testing.T) {
	fe := newFilterEnv(t)
	if err := fe.maildir(alice).CreateFolder("Lists"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(dirfact.Settle + 200*time.Millisecond) // the home settles, and is remembered as plain
	fe.deliverMail(alice, "bob@example.org", mailFrom("bob@example.org", "[list] before"))
	b := fe.login(alice)
	b.follow(b.saveRule(ruleFields("lists", "test", "contains", "where", "header", "header", "Subject", "value", "[list]", "plain", "1", "action", "folder", "folder", "Lists")))
	fe.deliverMail(alice, "bob@example.org", mailFrom("bob@example.org", "[list] after"))
	if got := subjects(t, fe.testEnv, alice, "Lists"); len(got) != 1 || got[0] != "[list] after" {
		t.Fatalf("Lists: %q", got)
	}
	if got := subjects(t, fe.testEnv, alice, maildir.Inbox); len(got) != 1 || got[0] != "[list] before" {
		t.Fatalf("INBOX: %q", got)
	}
}

// A user with an active Sieve script is told which of the two decides;
// saving a rule here takes over, deleting the last one hands delivery
// back to the script.
func TestFiltersPageAndSieveScript(t *testing.T) {
	fe := newFilterEnv(t)
	for _, f := range []string{"Lists", "Sieved"} {
		if err := fe.maildir(alice).CreateFolder(f); err != nil {
			t.Fatal(err)
		}
	}
	a := fe.testEnv.filterAccountFor(alice)
	st := sievestore.Open(a.Home, sievestore.Owner{UID: -1, GID: -1}, sievestore.Limits{})
	if err := st.Put("main", []byte("require \"fileinto\";\nfileinto \"Sieved\";\n")); err != nil {
		t.Fatal(err)
	}
	if err := st.SetActive("main"); err != nil {
		t.Fatal(err)
	}
	b := fe.login(alice)
	if page := b.get("/mail/filters"); !strings.Contains(page.body, "Your active Sieve script (main") {
		t.Fatalf("filters page without the Sieve notice: %s", page.body)
	}
	fe.deliverMail(alice, "bob@example.org", mailFrom("bob@example.org", "one"))
	if got := subjects(t, fe.testEnv, alice, "Sieved"); len(got) != 1 {
		t.Fatalf("Sieved %q: the script decides", got)
	}
	b.follow(b.saveRule(ruleFields("lists", "test", "contains", "where", "header", "header", "Subject", "value", "two", "plain", "1", "action", "folder", "folder", "Lists")))
	if page := b.get("/mail/filters"); !strings.Contains(page.body, "The filters here decide and the script is not run") {
		t.Fatalf("filters page after a rule: %s", page.body)
	}
	fe.deliverMail(alice, "bob@example.org", mailFrom("bob@example.org", "two"))
	if got := subjects(t, fe.testEnv, alice, "Lists"); len(got) != 1 {
		t.Fatalf("Lists %q: the webmail's rule decides", got)
	}
	b.follow(b.post("/mail/filters/act", url.Values{"csrf": {b.csrf}, "name": {"lists"}, "op": {"delete"}}))
	if _, err := os.Stat(filepath.Join(a.Home, ".mailfilter")); !os.IsNotExist(err) {
		t.Fatalf(".mailfilter after the last rule went: %v", err)
	}
	fe.deliverMail(alice, "bob@example.org", mailFrom("bob@example.org", "three"))
	if got := subjects(t, fe.testEnv, alice, "Sieved"); len(got) != 2 {
		t.Fatalf("Sieved %q: the script decides again", got)
	}
}
