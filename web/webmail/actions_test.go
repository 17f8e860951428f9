package webmail

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"postern/mailbox/maildir"
)

func uidsOf(ms []maildir.Message) []string {
	var out []string
	for _, m := range ms {
		out = append(out, fmt.Sprint(m.UID))
	}
	return out
}

func TestActionsOnMessages(t *testing.T) {
	e := newEnv(t)
	for i := 0; i < 4; i++ {
		e.deliver(alice, maildir.Inbox, simpleMessage("x@example.net", fmt.Sprintf("Msg %d", i), "hi"))
	}
	if err := e.maildir(alice).CreateFolder("Archive"); err != nil {
		t.Fatal(err)
	}
	b := e.login(alice)
	ms := e.messages(alice, maildir.Inbox)

	// Mark two read, then one of them unread again.
	r := b.act(url.Values{"f": {"INBOX"}, "uid": uidsOf(ms[:2]), "op": {"read"}})
	if got := flash(t, b.follow(r)); got != "2 messages marked as read." {
		t.Fatalf("notice: %q", got)
	}
	b.act(url.Values{"f": {"INBOX"}, "uid": uidsOf(ms[1:2]), "op": {"unread"}})
	// Keywords an IMAP client set are shown, and kept by the webmail's
	// flag changes.
	f, _ := e.maildir(alice).Folder(maildir.Inbox)
	if err := f.SetFlags(ms[2].Key, "", []string{"$Work", "later"}); err != nil {
		t.Fatal(err)
	}
	if page := b.get(fmt.Sprintf("/mail/msg?f=INBOX&uid=%d", ms[2].UID)); !strings.Contains(text(find(page.doc(t), "dd", "keywords")[0]), "$Work, later") {
		t.Fatalf("keywords not shown")
	}
	b.act(url.Values{"f": {"INBOX"}, "uid": uidsOf(ms[2:3]), "op": {"unread"}})
	b.act(url.Values{"f": {"INBOX"}, "uid": uidsOf(ms[2:3]), "op": {"flag"}})
	now := e.messages(alice, maildir.Inbox)
	if now[0].Flags != "S" || now[1].Flags != "" || now[2].Flags != "F" {
		t.Fatalf("flags: %q %q %q", now[0].Flags, now[1].Flags, now[2].Flags)
	}
	if strings.Join(now[2].Keywords, " ") != "$Work later" {
		t.Fatalf("keywords lost: %v", now[2].Keywords)
	}
	b.act(url.Values{"f": {"INBOX"}, "uid": uidsOf(ms[2:3]), "op": {"unflag"}})
	if now := e.messages(alice, maildir.Inbox); now[2].Flags != "" {
		t.Fatalf("unflag: %q", now[2].Flags)
	}

	// Move one to Archive: it keeps its flags.
	r = b.act(url.Values{"f": {"INBOX"}, "uid": uidsOf(ms[:1]), "op": {"move"}, "to": {"Archive"}})
	if got := flash(t, b.follow(r)); got != "1 message moved." {
		t.Fatalf("notice: %q", got)
	}
	if arch := e.messages(alice, "Archive"); len(arch) != 1 || arch[0].Flags != "S" {
		t.Fatalf("Archive: %+v", arch)
	}

	// Delete two: to Trash, made on the way.
	b.act(url.Values{"f": {"INBOX"}, "uid": uidsOf(ms[1:3]), "op": {"delete"}})
	if n := len(e.messages(alice, maildir.Inbox)); n != 1 {
		t.Fatalf("INBOX after delete: %d", n)
	}
	trash := e.messages(alice, folderTrash)
	if len(trash) != 2 {
		t.Fatalf("Trash: %d", len(trash))
	}
	subs, _ := e.maildir(alice).Subscriptions()
	if !strings.Contains(strings.Join(subs, ","), "INBOX.Trash") {
		t.Errorf("Trash not subscribed: %v", subs)
	}
	// Deleting in Trash is for good.
	b.act(url.Values{"f": {folderTrash}, "uid": uidsOf(trash[:1]), "op": {"delete"}})
	if n := len(e.messages(alice, folderTrash)); n != 1 {
		t.Fatalf("Trash after delete: %d", n)
	}

	// Unknown action, no selection, move nowhere.
	if r := b.act(url.Values{"f": {"INBOX"}, "uid": {"1"}, "op": {"explode"}}); r.status != http.StatusBadRequest {
		t.Fatalf("unknown op: %d", r.status)
	}
	if r := b.act(url.Values{"f": {"INBOX"}, "op": {"delete"}}); flash(t, b.follow(r)) != "Select one or more messages first." {
		t.Fatalf("no selection")
	}
	if r := b.act(url.Values{"f": {"INBOX"}, "uid": uidsOf(ms[3:]), "op": {"move"}, "to": {"Nowhere"}}); flash(t, b.follow(r)) != "There is no folder by that name." {
		t.Fatalf("move to a missing folder")
	}
}

func TestSearch(t *testing.T) {
	e := newEnv(t)
	e.deliver(alice, maildir.Inbox, simpleMessage("Anna <anna@example.net>", "Budget 2026", "numbers"))
	e.deliver(alice, maildir.Inbox, simpleMessage("Ben <ben@example.net>", "Lunch", "the budget is fine"))
	e.deliver(alice, maildir.Inbox, "From: carl@example.net\nTo: team@example.org\nSubject: Other\n\nnothing\n")
	b := e.login(alice)
	for _, c := range []struct {
		q, in string
		want  []string
	}{
		{"budget", "subject", []string{"Budget 2026"}},
		{"BUDGET", "body", []string{"Lunch"}},
		{"anna", "from", []string{"Budget 2026"}},
		{"team@", "to", []string{"Other"}},
		{"nothing matches this", "subject", nil},
	} {
		rs := rows(t, b.get("/mail/list?"+url.Values{"f": {"INBOX"}, "q": {c.q}, "in": {c.in}}.Encode()))
		var got []string
		for _, r := range rs {
			got = append(got, cell(r, "subject"))
		}
		if strings.Join(got, "|") != strings.Join(c.want, "|") {
			t.Errorf("search %q in %s: %v, want %v", c.q, c.in, got, c.want)
		}
	}
}

func TestFolderManagement(t *testing.T) {
	e := newEnv(t)
	b := e.login(alice)
	post := func(form url.Values) string {
		t.Helper()
		form.Set("csrf", b.csrf)
		return flash(t, b.follow(b.post("/mail/folders", form)))
	}
	if got := post(url.Values{"op": {"create"}, "name": {"Projekt Ä"}}); got != "Folder Projekt Ä created." {
		t.Fatalf("create: %q", got)
	}
	// On disk in modified UTF-7, as IMAP and Courier keep it.
	if _, err := e.maildir(alice).Folder("Projekt &AMQ-"); err != nil {
		t.Fatalf("folder on disk: %v", err)
	}
	subs, _ := e.maildir(alice).Subscriptions()
	if !strings.Contains(strings.Join(subs, ","), "INBOX.Projekt &AMQ-") {
		t.Errorf("not subscribed: %v", subs)
	}
	if got := post(url.Values{"op": {"create"}, "name": {"Projekt Ä"}}); got != "A folder by that name exists already." {
		t.Fatalf("create twice: %q", got)
	}
	post(url.Values{"op": {"create"}, "name": {"Projekt Ä.Sub"}})
	if got := post(url.Values{"op": {"rename"}, "f": {"Projekt &AMQ-"}, "name": {"Done"}}); got != "Folder Projekt Ä renamed to Done." {
		t.Fatalf("rename: %q", got)
	}
	if _, err := e.maildir(alice).Folder("Done.Sub"); err != nil {
		t.Fatalf("child not renamed: %v", err)
	}
	if got := post(url.Values{"op": {"delete"}, "f": {"Done.Sub"}}); got != "Folder Done.Sub deleted with its messages." {
		t.Fatalf("delete: %q", got)
	}
	if _, err := e.maildir(alice).Folder("Done.Sub"); err == nil {
		t.Fatal("folder still there")
	}
	for _, name := range []string{"", "../x", "a/b", "INBOX", "inbox", "a..b", ".x", "x.", "tab\there", "back\\slash", strings.Repeat("x", 300)} {
		if got := post(url.Values{"op": {"create"}, "name": {name}}); !strings.HasPrefix(got, "That name cannot be a folder") {
			t.Errorf("create %q: %q", name, got)
		}
	}
	for _, name := range []string{"INBOX", "Trash", "Sent", "Drafts"} {
		if got := post(url.Values{"op": {"delete"}, "f": {name}}); !strings.HasSuffix(got, "cannot be deleted.") {
			t.Errorf("delete %s: %q", name, got)
		}
	}
	if got := post(url.Values{"op": {"delete"}, "f": {"../../" + bob.name}}); got != "There is no folder by that name." {
		t.Errorf("delete outside: %q", got)
	}
	folders, _ := e.maildir(alice).Folders()
	if strings.Join(folders, ",") != "INBOX,Done" {
		t.Fatalf("folders left: %v", folders)
	}
}

func TestQuotaShown(t *testing.T) {
	e := newEnv(t)
	if err := e.maildir(alice).SetQuota(maildir.Quota{Bytes: 10 << 20, Messages: 100}); err != nil {
		t.Fatal(err)
	}
	e.deliver(alice, maildir.Inbox, simpleMessage("x@example.net", "One", strings.Repeat("x", 4000)))
	b := e.login(alice)
	doc := b.get("/mail/list?f=INBOX").doc(t)
	q := find(doc, "p", "quota")
	if len(q) != 1 || !strings.Contains(text(q[0]), "of 10.0 MB") || !strings.Contains(text(q[0]), "1 of 100 messages") {
		t.Fatalf("quota: %v", q)
	}
}

func TestChangePassword(t *testing.T) {
	fixed := testUser{"erin@example.test", "erin pass", "options=wbnochangepass=1"}
	e := newEnv(t, alice, fixed)
	b := e.login(alice)
	other := e.login(alice)
	change := func(b *browser, old, pw, pw2 string) response {
		return b.post("/mail/password", url.Values{"csrf": {b.csrf}, "old": {old}, "new": {pw}, "new2": {pw2}})
	}
	if r := change(b, "wrong", "new pass", "new pass"); r.status != http.StatusForbidden || !strings.Contains(r.body, "current password is wrong") {
		t.Fatalf("wrong old password: %d", r.status)
	}
	if r := change(b, alice.pass, "new pass", "other"); r.status != http.StatusBadRequest {
		t.Fatalf("mismatch: %d", r.status)
	}
	if r := change(b, alice.pass, "bad\npass", "bad\npass"); r.status != http.StatusBadRequest {
		t.Fatalf("control character: %d", r.status)
	}
	r := change(b, alice.pass, "new pass", "new pass")
	if got := flash(t, b.follow(r)); got != "Password changed." {
		t.Fatalf("change: %d %q", r.status, got)
	}
	// The other session ended; the new password logs in, the old does not.
	if r := other.get("/mail/list?f=INBOX"); r.status != http.StatusSeeOther {
		t.Fatalf("other session still alive: %d", r.status)
	}
	e.login(testUser{alice.name, "new pass", ""})
	if r := e.browser().post("/mail/login", url.Values{"user": {alice.name}, "password": {alice.pass}}); r.status != http.StatusUnauthorized {
		t.Fatalf("old password still works: %d", r.status)
	}
	// wbnochangepass=1 forbids it.
	fb := e.login(fixed)
	if r := change(fb, fixed.pass, "x y z", "x y z"); r.status != http.StatusForbidden || !strings.Contains(r.body, "cannot be changed") {
		t.Fatalf("wbnochangepass: %d", r.status)
	}
}

func TestFolderTree(t *testing.T) {
	e := newEnv(t)
	md := e.maildir(alice)
	for _, f := range []string{"Home", "Home.Kids", "Home.Kids.School", "Work.2024"} {
		if err := md.CreateFolder(f); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for _, fi := range e.h.folderList(md) {
		got = append(got, fmt.Sprintf("%d:%s", fi.Depth, fi.Leaf))
	}
	// Work.2024 has no Work above it: its whole name, at the top.
	if want := "0:Inbox 0:Home 1:Kids 2:School 0:Work.2024"; strings.Join(got, " ") != want {
		t.Fatalf("tree %q, want %q", strings.Join(got, " "), want)
	}
}
