package webmail

import (
	"bytes"
	"fmt"
	"net/http"
	"net/mail"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"postern/mailbox/maildir"
)

// bookFile is the path of u's address book.
func (e *testEnv) bookFile(u testUser) string {
	return filepath.Join(e.dir, "mail", u.name, "Maildir", addressBookFile)
}

func (e *testEnv) writeBook(u testUser, content string) {
	e.t.Helper()
	if err := os.WriteFile(e.bookFile(u), []byte(content), 0o600); err != nil {
		e.t.Fatal(err)
	}
}

func (e *testEnv) readBook(u testUser) string {
	e.t.Helper()
	b, err := os.ReadFile(e.bookFile(u))
	if err != nil && !os.IsNotExist(err) {
		e.t.Fatal(err)
	}
	return string(b)
}

// saveEntry posts the entry form: old names the entry edited ("" adds),
// rows are name, address pairs.
func (b *browser) saveEntry(old, nick string, rows ...string) response {
	b.e.t.Helper()
	form := url.Values{"csrf": {b.csrf}, "old": {old}, "nick": {nick}}
	for i := 0; i+1 < len(rows); i += 2 {
		form.Add("name", rows[i])
		form.Add("addr", rows[i+1])
	}
	return b.post("/mail/abook/save", form)
}

// bookRows are the list's rows: name, nickname, addresses.
func bookRows(t *testing.T, r response) [][3]string {
	t.Helper()
	var out [][3]string
	for _, tb := range find(r.doc(t), "table", "abook") {
		for _, tr := range find(tb, "tr", "")[1:] {
			out = append(out, [3]string{cell(tr, "name"), cell(tr, "nick"), cell(tr, "addrs")})
		}
	}
	return out
}

// The pages over HTTP: add, list (sorted by name, searched), edit, delete
// after a confirmation; the file holds what the pages say.
func TestAddressBookPages(t *testing.T) {
	e := newEnv(t)
	b := e.login(alice)
	if r := b.get("/mail/abook"); r.status != 200 || !strings.Contains(r.body, "Your address book is empty.") {
		t.Fatalf("empty book: %d", r.status)
	}
	if r := b.get("/mail/abook/new"); r.status != 200 || formValue(r.doc(t), "csrf") != b.csrf {
		t.Fatalf("new entry form: %d", r.status)
	}
	for _, c := range [][]string{
		{"zed", "Anna Zed", "anna@example.org"},
		{"Bob", "Bob Smith", "bob@example.test"},
		{"team", "Carol", "carol@example.org", "", "dave@example.net", "", ""},
	} {
		r := b.saveEntry("", c[0], c[1:]...)
		if got := flash(t, b.follow(r)); got != "Saved "+strings.ToLower(c[0])+"." {
			t.Fatalf("save %s: %d %q", c[0], r.status, got)
		}
	}
	want := "zed: \"Anna Zed\" <anna@example.org>\nbob: \"Bob Smith\" <bob@example.test>\nteam: \"Carol\" <carol@example.org>,\n    <dave@example.net>\n"
	if got := e.readBook(alice); got != want {
		t.Fatalf("file:\n%s\nwant:\n%s", got, want)
	}
	if st, _ := os.Stat(e.bookFile(alice)); st.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v", st.Mode())
	}
	rows := bookRows(t, b.get("/mail/abook"))
	if len(rows) != 3 || rows[0][0] != "Anna Zed" || rows[1][0] != "Bob Smith" || rows[2][0] != "Carol" {
		t.Fatalf("list not sorted by name: %v", rows)
	}
	if rows[2][2] != "Carol <carol@example.org>dave@example.net" {
		t.Fatalf("list addresses: %q", rows[2][2])
	}
	for q, n := range map[string]int{"BOB": 1, "example.org": 2, "team": 1, "nobody": 0} {
		r := b.get("/mail/abook?q=" + url.QueryEscape(q))
		if got := len(bookRows(t, r)); got != n {
			t.Errorf("search %q: %d rows, want %d", q, got, n)
		}
	}
	// A nickname taken, an address that is none: the form comes back
	// with what was typed and the reason.
	r := b.saveEntry("", "bob", "Other", "other@example.org")
	if r.status != http.StatusConflict || !strings.Contains(r.body, "The nickname bob is taken") || formValue(r.doc(t), "addr") != "other@example.org" {
		t.Fatalf("taken nickname: %d %s", r.status, r.body)
	}
	r = b.saveEntry("", "x", "X", "not an address")
	if r.status != http.StatusBadRequest || !strings.Contains(r.body, "is not an address") {
		t.Fatalf("bad address: %d", r.status)
	}

	// Edit: the form holds the entry; rename it, change a name, add an
	// address, drop one.
	doc := b.get("/mail/abook/edit?nick=team").doc(t)
	if formValue(doc, "old") != "team" || formValue(doc, "nick") != "team" || formValue(doc, "addr") != "carol@example.org" {
		t.Fatalf("edit form: %q %q", formValue(doc, "nick"), formValue(doc, "addr"))
	}
	if n := len(find(doc, "input", "")); n < 2+2*(2+blankRows) {
		t.Fatalf("edit form has %d inputs", n)
	}
	r = b.saveEntry("team", "crew", "Carol C.", "carol@example.org", "", "", "Eve", "eve@example.org")
	b.follow(r)
	if got := e.readBook(alice); !strings.Contains(got, "crew: \"Carol C.\" <carol@example.org>,\n    \"Eve\" <eve@example.org>\n") || strings.Contains(got, "team") || strings.Contains(got, "dave") {
		t.Fatalf("after edit:\n%s", got)
	}
	if r := b.get("/mail/abook/edit?nick=team"); r.status != http.StatusNotFound {
		t.Fatalf("old nickname after rename: %d", r.status)
	}

	// Delete asks first: the GET changes nothing.
	r = b.get("/mail/abook/delete?nick=bob")
	if r.status != 200 || !strings.Contains(r.body, "Delete bob?") || !strings.Contains(e.readBook(alice), "bob:") {
		t.Fatalf("confirmation: %d", r.status)
	}
	if formValue(r.doc(t), "nick") != "bob" || formValue(r.doc(t), "csrf") != b.csrf {
		t.Fatal("confirmation form")
	}
	if got := flash(t, b.follow(b.post("/mail/abook/delete", url.Values{"csrf": {b.csrf}, "nick": {"bob"}}))); got != "Deleted bob." {
		t.Fatalf("delete: %q", got)
	}
	if strings.Contains(e.readBook(alice), "bob") {
		t.Fatal("bob still in the file")
	}
	if r := b.post("/mail/abook/delete", url.Values{"csrf": {b.csrf}, "nick": {"bob"}}); r.status != http.StatusNotFound {
		t.Fatalf("deleting again: %d", r.status)
	}
	// Another user's book is their own.
	if got := bookRows(t, e.login(bob).get("/mail/abook")); len(got) != 0 {
		t.Fatalf("bob sees %v", got)
	}
}

// An address book written by sqwebmail shows, and its broken lines are
// reported and survive an edit.
func TestAddressBookPagesWithSqwebmailFile(t *testing.T) {
	e := newEnv(t)
	e.writeBook(alice, sqwebmailFile+"garbage without colon\n")
	b := e.login(alice)
	r := b.get("/mail/abook")
	rows := bookRows(t, r)
	if len(rows) != 5 || rows[0][1] != "bob" || rows[2][1] != "courier" || rows[4][0] != "Иван Петров" {
		t.Fatalf("rows: %v", rows)
	}
	if !strings.Contains(text(r.doc(t)), "line 8: no colon after the nickname") {
		t.Fatalf("problem not reported:\n%s", r.body)
	}
	b.follow(b.saveEntry("dave", "dave", "Dave", "dave@example.net"))
	got := e.readBook(alice)
	if !strings.Contains(got, "garbage without colon\n") || !strings.Contains(got, "dave: \"Dave\" <dave@example.net>\n") ||
		!strings.Contains(got, "испытание: \"Иван Петров\" <ivan@example.org>\n") {
		t.Fatalf("after edit:\n%s", got)
	}
}

// Compose offers the entries (a datalist, no script); "write to" fills
// in the addresses; a nickname in To, Cc or Bcc is expanded when the
// message is sent, nested nicknames too, and an unknown word is refused.
func TestAddressBookCompose(t *testing.T) {
	e := newEnv(t)
	e.writeBook(alice, "team: \"Bob\" <bob@example.test>,\n    <carol@example.org>\n"+
		"boss: \"Dora Boss\" <dora@example.org>\n"+
		"all: team, boss, <erin@example.org>\n"+
		"loop: loop, <fay@example.org>\n"+
		"ünï: \"Ünï Cödé\" <u@example.org>\n")
	b := e.login(alice)
	doc := b.get("/mail/compose").doc(t)
	var opts []string
	for _, dl := range find(doc, "datalist", "") {
		if id, _ := attr(dl, "id"); id != "abook-nicks" {
			t.Fatalf("datalist id %q", id)
		}
		for _, o := range find(dl, "option", "") {
			v, _ := attr(o, "value")
			opts = append(opts, v)
		}
	}
	if strings.Join(opts, ",") != "all,boss,loop,team,ünï" {
		t.Fatalf("datalist: %v", opts)
	}
	for _, in := range find(doc, "input", "") {
		if name, _ := attr(in, "name"); name == "to" || name == "cc" || name == "bcc" {
			if l, _ := attr(in, "list"); l != "abook-nicks" {
				t.Errorf("%s has list=%q", name, l)
			}
		}
	}

	// Write to: the entry's addresses in To.
	r := b.get("/mail/compose?abook=team")
	if to := formValue(r.doc(t), "to"); to != `"Bob" <bob@example.test>, carol@example.org` {
		t.Fatalf("write to: %q", to)
	}
	if r := b.get("/mail/compose?abook=nobody"); r.status != http.StatusNotFound {
		t.Fatalf("write to a missing nickname: %d", r.status)
	}

	r = b.sendForm(map[string]string{"to": "Team, x@example.net", "cc": "boss", "bcc": "loop, ünï", "subject": "s", "body": "b"}, nil)
	if got := flash(t, b.follow(r)); got != "Message sent." {
		t.Fatalf("send: %d %s", r.status, r.body)
	}
	out := e.lastSent()
	if got := strings.Join(out.Rcpts, ","); got != "bob@example.test,carol@example.org,x@example.net,dora@example.org,fay@example.org,u@example.org" {
		t.Fatalf("recipients: %s", got)
	}
	msg, _ := mail.ReadMessage(bytes.NewReader(out.Msg))
	to, _ := msg.Header.AddressList("To")
	cc, _ := msg.Header.AddressList("Cc")
	if len(to) != 3 || to[0].Name != "Bob" || to[1].Address != "carol@example.org" || len(cc) != 1 || cc[0].Name != "Dora Boss" {
		t.Fatalf("header To %v Cc %v", to, cc)
	}
	if msg.Header.Get("Bcc") != "" || bytes.Contains(out.Msg, []byte("fay@")) {
		t.Fatal("Bcc in the message")
	}
	// Nested: all = team + boss + erin.
	b.follow(b.sendForm(map[string]string{"to": "all", "subject": "s", "body": "b"}, nil))
	if got := strings.Join(e.lastSent().Rcpts, ","); got != "bob@example.test,carol@example.org,dora@example.org,erin@example.org" {
		t.Fatalf("nested: %s", got)
	}
	// A word that is no nickname: refused, with what was typed kept.
	r = b.sendForm(map[string]string{"to": "teem", "subject": "s", "body": "b"}, nil)
	if r.status != http.StatusBadRequest || !strings.Contains(text(r.doc(t)), `"teem" is neither an address nor a nickname in your address book`) || formValue(r.doc(t), "to") != "teem" {
		t.Fatalf("unknown nickname: %d %s", r.status, r.body)
	}
	// A draft holds the expanded addresses.
	b.follow(b.sendForm(map[string]string{"save": "draft", "to": "boss", "subject": "d", "body": "b"}, nil))
	d := e.messages(alice, folderDrafts)
	f, _ := e.maildir(alice).Folder(folderDrafts)
	raw, _ := f.ReadMessage(d[0].Key, nil, 1<<20)
	if !bytes.Contains(raw, []byte("dora@example.org")) {
		t.Fatalf("draft:\n%s", raw)
	}
}

// From a message: "add the sender" opens the form filled in with the
// sender's name, address and a nickname made of the address.
func TestAddressBookAddSender(t *testing.T) {
	e := newEnv(t)
	e.deliver(alice, maildir.Inbox, "From: =?utf-8?q?J=C3=BCrgen_M=C3=BCller?= <Juergen.Mueller@example.org>\nSubject: hi\n\nhello\n")
	b := e.login(alice)
	m := e.messages(alice, maildir.Inbox)[0]
	doc := b.get(fmt.Sprintf("/mail/msg?f=INBOX&uid=%d", m.UID)).doc(t)
	var link string
	for _, a := range find(doc, "a", "") {
		if text(a) == "Add sender to address book" {
			link, _ = attr(a, "href")
		}
	}
	if !strings.HasPrefix(link, "/mail/abook/new?") {
		t.Fatalf("no add-sender link: %q", link)
	}
	doc = b.get(link).doc(t)
	if formValue(doc, "nick") != "juergen.mueller" || formValue(doc, "name") != "Jürgen Müller" || formValue(doc, "addr") != "Juergen.Mueller@example.org" || formValue(doc, "old") != "" {
		t.Fatalf("form: %q %q %q", formValue(doc, "nick"), formValue(doc, "name"), formValue(doc, "addr"))
	}
	b.follow(b.saveEntry("", formValue(doc, "nick"), formValue(doc, "name"), formValue(doc, "addr")))
	if got := e.readBook(alice); got != "juergen.mueller: \"Jürgen Müller\" <Juergen.Mueller@example.org>\n" {
		t.Fatalf("file: %q", got)
	}
}

// Every POST of the address book needs the session's token and this
// site's origin; a refused one changes nothing.
func TestAddressBookCSRF(t *testing.T) {
	e := newEnv(t)
	e.writeBook(alice, "bob: <bob@example.test>\n")
	b := e.login(alice)
	save := url.Values{"old": {""}, "nick": {"evil"}, "name": {"E"}, "addr": {"evil@example.net"}}
	del := url.Values{"nick": {"bob"}}
	for _, c := range []struct {
		name string
		tok  string
		hdr  map[string]string
	}{
		{"no token", "", map[string]string{"Origin": e.srv.URL}},
		{"wrong token", "AAAA", map[string]string{"Origin": e.srv.URL}},
		{"another site", b.csrf, map[string]string{"Origin": "https://evil.example"}},
		{"cross-site fetch", b.csrf, map[string]string{"Sec-Fetch-Site": "cross-site"}},
	} {
		for path, form := range map[string]url.Values{"/mail/abook/save": save, "/mail/abook/delete": del} {
			f := withValue(form, "csrf", c.tok)
			if r := b.postWith(path, f, c.hdr); r.status != http.StatusForbidden {
				t.Errorf("%s to %s: %d", c.name, path, r.status)
			}
		}
	}
	if got := e.readBook(alice); got != "bob: <bob@example.test>\n" {
		t.Fatalf("file changed by refused posts: %q", got)
	}
	// Logged out: refused too.
	if r := e.browser().post("/mail/abook/save", withValue(save, "csrf", b.csrf)); r.status != http.StatusForbidden {
		t.Fatalf("without a session: %d", r.status)
	}
}

// Hostile input to the forms and in the file: a clear refusal, never a
// crash or a partial write; the pages keep working.
func TestAddressBookHostileInput(t *testing.T) {
	e := newEnv(t)
	e.writeBook(alice, "keep: <keep@example.org>\n")
	b := e.login(alice)
	for _, c := range []struct {
		nick string
		rows []string
		want string
	}{
		{strings.Repeat("n", 100000), []string{"", "a@example.org"}, "longer than 64"},
		{"a\r\nb", []string{"", "a@example.org"}, "may not hold"},
		{"x:y", []string{"", "a@example.org"}, "may not hold"},
		{"a@b", []string{"", "a@example.org"}, "may not hold"},
		{"\xff\xfe", []string{"", "a@example.org"}, "not UTF-8"},
		{"x", []string{"Name\r\nBcc: evil@example.net", "a@example.org"}, "control character"},
		{"x", []string{"", "a@example.org>\r\nBcc: evil@example.net"}, "is not an address"},
		{"x", []string{"", "a b@example.org"}, "is not an address"},
		{"x", []string{"", `"quoted"@example.org`}, "is not an address"},
		{"x", []string{strings.Repeat("N", 5000), "a@example.org"}, "too long"},
		{"x", []string{"", strings.Repeat("a", 5000) + "@example.org"}, "is not an address"},
		{"x", []string{"Only a name", ""}, "has no address"},
		{"x", []string{"", ""}, "Give at least one address"},
	} {
		r := b.saveEntry("", c.nick, c.rows...)
		if r.status != http.StatusBadRequest || !strings.Contains(r.body, c.want) {
			t.Errorf("nick %.20q rows %.40q: %d, want %q", c.nick, c.rows, r.status, c.want)
		}
		assertInert(t, "abook form", r.doc(t))
	}
	// Script in a name is shown as text.
	b.follow(b.saveEntry("", "xss", "<script>alert(1)</script>", "x@example.org"))
	r := b.get("/mail/abook")
	assertInert(t, "abook list", r.doc(t))
	if !strings.Contains(text(r.doc(t)), "<script>alert(1)</script>") {
		t.Fatal("name not shown as text")
	}
	// Thousands of addresses in one form.
	var rows []string
	for i := 0; i < maxRecipients+blankRows+1; i++ {
		rows = append(rows, "", fmt.Sprintf("a%d@example.org", i))
	}
	if r := b.saveEntry("", "many", rows...); r.status != http.StatusBadRequest {
		t.Errorf("too many addresses: %d", r.status)
	}
	// Mismatched rows.
	if r := b.post("/mail/abook/save", url.Values{"csrf": {b.csrf}, "nick": {"x"}, "name": {"a", "b"}, "addr": {"a@b.c"}}); r.status != http.StatusBadRequest {
		t.Errorf("mismatched rows: %d", r.status)
	}
	if got := e.readBook(alice); got != "keep: <keep@example.org>\nxss: \"<script>alert(1)</script>\" <x@example.org>\n" {
		t.Fatalf("file after hostile forms: %q", got)
	}

	// A file past its bound: the list says so, nothing is written, and
	// sending to plain addresses still works.
	huge := strings.Repeat("x: <x@example.org>\n", maxBookFile/19+1)
	e.writeBook(alice, huge)
	if r := b.get("/mail/abook"); r.status != http.StatusInsufficientStorage || !strings.Contains(r.body, "larger than 1024 KiB") {
		t.Fatalf("huge file: %d", r.status)
	}
	if r := b.saveEntry("", "new", "", "n@example.org"); r.status != http.StatusInsufficientStorage {
		t.Fatalf("save into a huge file: %d", r.status)
	}
	if e.readBook(alice) != huge {
		t.Fatal("huge file changed")
	}
	if got := flash(t, b.follow(b.sendForm(map[string]string{"to": "bob@example.test", "subject": "s", "body": "b"}, nil))); got != "Message sent." {
		t.Fatalf("send with an unreadable book: %q", got)
	}
	r = b.sendForm(map[string]string{"to": "keep", "subject": "s", "body": "b"}, nil)
	if r.status != http.StatusBadRequest || !strings.Contains(r.body, "cannot be read now") {
		t.Fatalf("nickname with an unreadable book: %d", r.status)
	}
	// A full book refuses one more entry.
	var full strings.Builder
	for i := 0; i < maxBookEntries; i++ {
		fmt.Fprintf(&full, "n%d: <n%d@example.org>\n", i, i)
	}
	e.writeBook(alice, full.String())
	if r := b.saveEntry("", "one-more", "", "m@example.org"); r.status != http.StatusInsufficientStorage || !strings.Contains(r.body, "full") {
		t.Fatalf("full book: %d", r.status)
	}
	if r := b.get("/mail/abook"); r.status != 200 || len(bookRows(t, r)) != maxBookEntries {
		t.Fatalf("full list: %d", r.status)
	}
	// Garbage in the file: the list shows what it can.
	e.writeBook(alice, "\x00\x01\x02\n:\n::::\n\xff: <a@b>\n  \n\t\nok: <ok@example.org>\n"+strings.Repeat("(", 10000)+"\n")
	r = b.get("/mail/abook")
	if r.status != 200 || len(bookRows(t, r)) != 1 || !strings.Contains(r.body, "Lines not read") {
		t.Fatalf("garbage file: %d %v", r.status, bookRows(t, r))
	}
}
