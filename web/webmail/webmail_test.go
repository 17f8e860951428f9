package webmail

import (
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"postern/auth"
	"postern/mailbox/maildir"
)

func simpleMessage(from, subject, body string) string {
	return fmt.Sprintf("From: %s\nTo: alice@example.test\nSubject: %s\nDate: Mon, 2 Mar 2026 10:00:00 +0000\nMessage-ID: <%s@example.net>\n\n%s\n",
		from, subject, strings.ReplaceAll(strings.ToLower(subject), " ", "."), body)
}

func TestLoginLogout(t *testing.T) {
	e := newEnv(t)
	b := e.browser()

	// Not logged in: the login form, and pages send the browser there.
	if r := b.get("/mail/"); r.status != 200 || len(find(r.doc(t), "input", "")) < 2 || !strings.Contains(r.body, `action="/mail/login"`) {
		t.Fatalf("login page: %d %s", r.status, r.body)
	}
	if r := b.get("/mail/list?f=INBOX"); r.status != http.StatusSeeOther || r.header.Get("Location") != "/mail/" {
		t.Fatalf("list without a session: %d %v", r.status, r.header)
	}

	r := b.post("/mail/login", url.Values{"user": {alice.name}, "password": {"wrong"}})
	if r.status != http.StatusUnauthorized || !strings.Contains(r.body, "Wrong user name or password") {
		t.Fatalf("wrong password: %d %s", r.status, r.body)
	}
	r = b.post("/mail/login", url.Values{"user": {"nobody@example.test"}, "password": {"x"}})
	if r.status != http.StatusUnauthorized || !strings.Contains(r.body, "Wrong user name or password") {
		t.Fatalf("unknown user: %d %s", r.status, r.body)
	}

	b = e.login(alice)
	page := b.get("/mail/list?f=INBOX")
	if page.status != 200 || !strings.Contains(text(page.doc(t)), alice.name) {
		t.Fatalf("inbox after login: %d %s", page.status, page.body)
	}
	for _, h := range []string{"Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options", "Referrer-Policy"} {
		if page.header.Get(h) == "" {
			t.Errorf("page without %s", h)
		}
	}

	// Logout needs the token too.
	if r := b.post("/mail/logout", url.Values{}); r.status != http.StatusForbidden {
		t.Fatalf("logout without token: %d", r.status)
	}
	if r := b.post("/mail/logout", url.Values{"csrf": {b.csrf}}); r.status != http.StatusSeeOther {
		t.Fatalf("logout: %d %s", r.status, r.body)
	}
	if r := b.get("/mail/list?f=INBOX"); r.status != http.StatusSeeOther {
		t.Fatalf("list after logout: %d", r.status)
	}
	if n := e.h.Stats().Logins; n != 1 {
		t.Errorf("logins counted: %d", n)
	}
}

func TestLoginFromOtherSiteRefused(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	r := b.postWith("/mail/login", url.Values{"user": {alice.name}, "password": {alice.pass}}, map[string]string{"Origin": "https://evil.example"})
	if r.status != http.StatusForbidden {
		t.Fatalf("cross-site login: %d %s", r.status, r.body)
	}
}

func TestLoginTemporaryFailure(t *testing.T) {
	e := newEnv(t)
	r := e.browser().post("/mail/login", url.Values{"user": {"flaky@example.test"}, "password": {"whatever"}})
	if r.status != http.StatusServiceUnavailable || !strings.Contains(r.body, "Try again later") || strings.Contains(r.body, "Wrong") {
		t.Fatalf("temporary failure: %d %s", r.status, r.body)
	}
}

func TestLoginWebmailOptions(t *testing.T) {
	disabled := testUser{"carol@example.test", "carol pass", "options=disablewebmail=1"}
	ownPW := testUser{"dave@example.test", "dave system", "webmailpw=dave web"}
	e := newEnv(t, alice, disabled, ownPW)
	r := e.browser().post("/mail/login", url.Values{"user": {disabled.name}, "password": {disabled.pass}})
	if r.status != http.StatusForbidden || !strings.Contains(r.body, "disabled") {
		t.Fatalf("disablewebmail: %d %s", r.status, r.body)
	}
	r = e.browser().post("/mail/login", url.Values{"user": {ownPW.name}, "password": {"dave system"}})
	if r.status != http.StatusUnauthorized {
		t.Fatalf("systempw where webmailpw is set: %d", r.status)
	}
	e.login(testUser{ownPW.name, "dave web", ""})
}

func TestLoginGuardBlocks(t *testing.T) {
	e := newEnv(t)
	// No exemption: the test's 127.0.0.1 counts as any client.
	e.svc.SetGuard(auth.NewGuard(auth.GuardConfig{Failures: 3, Window: time.Hour, Block: time.Hour, Exempt: []netip.Prefix{}}))
	b := e.browser()
	for i := 0; i < 3; i++ {
		b.post("/mail/login", url.Values{"user": {alice.name}, "password": {"wrong"}})
	}
	r := b.post("/mail/login", url.Values{"user": {alice.name}, "password": {alice.pass}})
	if r.status != http.StatusTooManyRequests || !strings.Contains(r.body, "Too many failed logins") {
		t.Fatalf("blocked client with the right password: %d %s", r.status, r.body)
	}
}

func TestFolderListCounts(t *testing.T) {
	e := newEnv(t)
	for i := 0; i < 3; i++ {
		e.deliver(alice, maildir.Inbox, simpleMessage("x@example.net", fmt.Sprintf("Hello %d", i), "hi"))
	}
	e.deliver(alice, "Work", simpleMessage("x@example.net", "Work item", "hi"))
	f, _ := e.maildir(alice).Folder(maildir.Inbox)
	m := e.messages(alice, maildir.Inbox)[0]
	if err := f.SetFlags(m.Key, "S", nil); err != nil {
		t.Fatal(err)
	}
	b := e.login(alice)
	doc := b.get("/mail/folders").doc(t)
	got := map[string]string{}
	for _, tb := range find(doc, "table", "folders") {
		for _, tr := range find(tb, "tr", "")[1:] {
			tds := find(tr, "td", "")
			got[strings.TrimSpace(text(tds[0]))] = strings.TrimSpace(text(tds[1])) + "/" + strings.TrimSpace(text(tds[2]))
		}
	}
	if got["Inbox"] != "2/3" || got["Work"] != "1/1" {
		t.Fatalf("unread/total: %v", got)
	}
}

func TestMessageListPagesAndSorts(t *testing.T) {
	e := newEnv(t)
	for i := 0; i < 120; i++ {
		from := fmt.Sprintf("Sender %03d <s%d@example.net>", (i*7)%120, i)
		e.deliver(alice, maildir.Inbox, simpleMessage(from, fmt.Sprintf("Subject %03d", i), strings.Repeat("x", i*10)))
	}
	f, _ := e.maildir(alice).Folder(maildir.Inbox)
	read := e.messages(alice, maildir.Inbox)[119]
	if err := f.SetFlags(read.Key, "S", nil); err != nil {
		t.Fatal(err)
	}
	b := e.login(alice)

	r := b.get("/mail/list?f=INBOX")
	rs := rows(t, r)
	if len(rs) != PageSize {
		t.Fatalf("first page: %d rows", len(rs))
	}
	// Newest first; the newest was read, the next is not.
	if s := cell(rs[0], "subject"); s != "Subject 119" || hasClass(rs[0], "unread") {
		t.Fatalf("first row: %q unread=%v", s, hasClass(rs[0], "unread"))
	}
	if s := cell(rs[1], "subject"); s != "Subject 118" || !hasClass(rs[1], "unread") {
		t.Fatalf("second row: %q unread=%v", s, hasClass(rs[1], "unread"))
	}
	if c := cell(rs[0], "from"); c != "Sender 113" {
		t.Fatalf("from column: %q", c)
	}
	if rs := rows(t, b.get("/mail/list?f=INBOX&page=3")); len(rs) != 20 || cell(rs[19], "subject") != "Subject 000" {
		t.Fatalf("last page: %d rows", len(rs))
	}
	if rs := rows(t, b.get("/mail/list?f=INBOX&sort=subject")); cell(rs[0], "subject") != "Subject 000" {
		t.Fatalf("by subject: %q", cell(rs[0], "subject"))
	}
	if rs := rows(t, b.get("/mail/list?f=INBOX&sort=subject&order=desc")); cell(rs[0], "subject") != "Subject 119" {
		t.Fatalf("by subject, descending: %q", cell(rs[0], "subject"))
	}
	if rs := rows(t, b.get("/mail/list?f=INBOX&sort=from")); cell(rs[0], "from") != "Sender 000" || cell(rs[1], "from") != "Sender 001" {
		t.Fatalf("by sender: %q %q", cell(rs[0], "from"), cell(rs[1], "from"))
	}
	if rs := rows(t, b.get("/mail/list?f=INBOX&sort=size")); cell(rs[0], "subject") != "Subject 119" {
		t.Fatalf("by size: %q", cell(rs[0], "subject"))
	}
	if rs := rows(t, b.get("/mail/list?f=INBOX&sort=size&order=asc")); cell(rs[0], "subject") != "Subject 000" {
		t.Fatalf("by size, ascending: %q", cell(rs[0], "subject"))
	}
	// Nonsense parameters fall back to the defaults.
	if r := b.get("/mail/list?f=INBOX&sort=%3Cscript%3E&page=-4&order=up"); r.status != 200 || len(rows(t, r)) != PageSize {
		t.Fatalf("bad parameters: %d", r.status)
	}
}

func TestMessageViewDecodesAndMarksSeen(t *testing.T) {
	e := newEnv(t)
	msg := "From: =?utf-8?q?J=C3=BCrgen_M=C3=BCller?= <jm@example.net>\n" +
		"To: alice@example.test\nSubject: =?utf-8?b?R3LDvMOfZQ==?=\nDate: Mon, 2 Mar 2026 10:00:00 +0000\n" +
		"MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8; format=flowed\nContent-Transfer-Encoding: quoted-printable\n\n" +
		"This paragraph is =\nflowed over \nseveral lines.\n> quoted and \n> flowed\n-- \nSig\n"
	e.deliver(alice, maildir.Inbox, msg)
	b := e.login(alice)
	m := e.messages(alice, maildir.Inbox)[0]
	if !unread(&m) {
		t.Fatal("delivered message already seen")
	}
	r := b.get(fmt.Sprintf("/mail/msg?f=INBOX&uid=%d", m.UID))
	if r.status != 200 {
		t.Fatalf("message: %d %s", r.status, r.body)
	}
	doc := r.doc(t)
	if h := find(doc, "h1", "subject"); len(h) != 1 || text(h[0]) != "Grüße" {
		t.Fatalf("subject: %v", r.body)
	}
	if dd := find(doc, "dd", ""); len(dd) == 0 || text(dd[0]) != "Jürgen Müller <jm@example.net>" {
		t.Fatalf("from: %q", text(dd[0]))
	}
	pre := find(doc, "pre", "text")
	if len(pre) != 1 {
		t.Fatalf("no text part: %s", r.body)
	}
	want := "This paragraph is flowed over several lines.\n> quoted and flowed\n-- \nSig\n"
	if got := text(pre[0]); got != want {
		t.Fatalf("flowed text:\n%q\nwant\n%q", got, want)
	}
	if m := e.messages(alice, maildir.Inbox)[0]; unread(&m) {
		t.Fatalf("opened message not seen: flags %q", m.Flags)
	}
}

func TestRawSourceIsText(t *testing.T) {
	e := newEnv(t)
	e.deliver(alice, maildir.Inbox, "Subject: src\nContent-Type: text/html\n\n<script>alert(1)</script>\n")
	b := e.login(alice)
	m := e.messages(alice, maildir.Inbox)[0]
	r := b.get(fmt.Sprintf("/mail/raw?f=INBOX&uid=%d", m.UID))
	if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") || !strings.Contains(r.body, "<script>alert(1)</script>") {
		t.Fatalf("raw: %d %v %q", r.status, r.header, r.body)
	}
	if csp := r.header.Get("Content-Security-Policy"); !strings.Contains(csp, "sandbox") {
		t.Fatalf("raw without sandbox: %q", csp)
	}
}
