package webmail

import (
	"bytes"
	"errors"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"postern/mailbox/maildir"
)

// needRoot: the filesystem-shared tests give an account its own uid and
// own files as it; CI runs as root, so there they must run.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("filesystem-shared folder tests need root (CI runs as root)")
		}
		t.Skip("needs root to own files as another user")
	}
}

func maildirmake(t *testing.T, args ...string) {
	t.Helper()
	var out bytes.Buffer
	if rc := maildir.MaildirmakeMain(args, &out, &out); rc != 0 {
		t.Fatalf("maildirmake %q: exit %d: %s", args, rc, out.String())
	}
}

// sharedSetup makes, as an admin would with maildirmake, a sharable
// maildir with a "-s write" folder Lists, a "-s read" folder News and a
// private folder Private, one message in each, and the home of carol
// (uid 1001), whose Maildir names it "team" in shared-maildirs. It
// returns carol's account (to log in) and the two maildirs.
func sharedSetup(t *testing.T) (carol testUser, sharable, carolMaildir string) {
	t.Helper()
	top, err := os.MkdirTemp("", "postern-webmail-fsshared-*")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(top) })
	if err := os.Chmod(top, 0o755); err != nil {
		t.Fatal(err)
	}
	sharable = filepath.Join(top, "team")
	maildirmake(t, "-S", sharable)
	maildirmake(t, "-s", "write", "-f", "Lists", sharable)
	maildirmake(t, "-s", "read", "-f", "News", sharable)
	maildirmake(t, "-f", "Private", sharable)
	md, err := maildir.Open(sharable)
	if err != nil {
		t.Fatal(err)
	}
	for _, folder := range []string{"Lists", "News", "Private"} {
		key, err := md.Deliver(folder, strings.NewReader("Subject: in "+folder+"\n\n"+folder+" body\n"), maildir.DeliverOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// Readable by others, as an MDA with umask 022 leaves it.
		if err := os.Chmod(filepath.Join(sharable, "."+folder, "new", key), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	home := filepath.Join(top, "carol")
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(home, 1001, 1001); err != nil {
		t.Fatal(err)
	}
	carolMaildir = filepath.Join(home, "Maildir")
	if err := maildir.MakeFor(carolMaildir, 1001, 1001); err != nil {
		t.Fatal(err)
	}
	maildirmake(t, "--add", "team="+sharable, carolMaildir)
	carol = testUser{"carol@example.test", "carol pass", "uid=1001|gid=1001|home=" + home}
	return carol, sharable, carolMaildir
}

// filesIn lists a maildir folder's message files as "cur/NAME", "new/NAME".
func filesIn(t *testing.T, folder string) []string {
	t.Helper()
	var out []string
	for _, sub := range []string{"new", "cur"} {
		entries, err := os.ReadDir(filepath.Join(folder, sub))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			out = append(out, sub+"/"+e.Name())
		}
	}
	return out
}

// sharedRows are the rows of the folders page's shared folders table:
// folder, access, the subscription button.
func sharedRows(t *testing.T, r response) map[string][2]string {
	t.Helper()
	out := map[string][2]string{}
	tables := find(r.doc(t), "table", "folders")
	if len(tables) < 2 {
		return out
	}
	for _, tr := range find(tables[1], "tr", "")[1:] {
		tds := find(tr, "td", "")
		out[strings.TrimSpace(text(tds[0]))] = [2]string{strings.TrimSpace(text(tds[1])), strings.TrimSpace(text(tds[2]))}
	}
	return out
}

// TestFSSharedFoldersWebmail is the admin's scenario over real HTTP:
// carol sees the shared folders she may read (not the private one),
// subscribes, reads a read-only one, where every change is refused,
// flags in a writable one (her flags only) and moves a message into it,
// and unsubscribes; hostile names open nothing and make nothing.
func TestFSSharedFoldersWebmail(t *testing.T) {
	needRoot(t)
	carol, sharable, carolMD := sharedSetup(t)
	e := newEnv(t, carol, alice)
	b := e.login(carol)

	page := b.get("/mail/folders")
	if side := find(page.doc(t), "ul", "shared"); len(side) != 0 {
		t.Errorf("a side list of shared folders before any subscription: %v", text(side[0]))
	}
	got := sharedRows(t, page)
	want := map[string][2]string{
		"shared.team.Lists": {"read and write", "Subscribe"},
		"shared.team.News":  {"read-only", "Subscribe"},
	}
	if len(got) != len(want) || got["shared.team.Lists"] != want["shared.team.Lists"] || got["shared.team.News"] != want["shared.team.News"] {
		t.Fatalf("shared folders on the folders page: %q, want %q", got, want)
	}

	// Listing shared folders (the folders page, the side list of
	// every page) makes no private view: the webmail shows no counts
	// of a shared folder, and makes a view only when one is opened,
	// subscribed to or moved into (openShared), as Courier does.
	b.get("/mail/list?f=INBOX")
	if _, err := os.Stat(filepath.Join(carolMD, "shared-folders")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a private view made by listing shared folders: %v", err)
	}

	r := b.post("/mail/folders", url.Values{"csrf": {b.csrf}, "op": {"subscribe"}, "f": {"shared/team/News"}})
	if f := flash(t, b.follow(r)); f != "Subscribed to shared.team.News." {
		t.Fatalf("subscribe: %q", f)
	}
	view := filepath.Join(carolMD, "shared-folders", "team", "News")
	if link, err := os.Readlink(filepath.Join(view, "shared")); err != nil || link != sharable+"/.News" {
		t.Fatalf("view link %q, %v", link, err)
	}
	side := find(b.get("/mail/folders").doc(t), "ul", "shared")
	if len(side) != 1 || !strings.Contains(text(side[0]), "shared.team.News") || strings.Contains(text(side[0]), "Lists") {
		t.Fatalf("the side list of subscribed shared folders: %v", side)
	}

	// The read-only folder: read, never changed.
	list := b.get("/mail/list?f=" + url.QueryEscape("shared/team/News"))
	rs := rows(t, list)
	if list.status != http.StatusOK || len(rs) != 1 || cell(rs[0], "subject") != "in News" {
		t.Fatalf("list of News: %d %d rows", list.status, len(rs))
	}
	msg := b.get("/mail/msg?f=" + url.QueryEscape("shared/team/News") + "&uid=1")
	if msg.status != http.StatusOK || !strings.Contains(msg.body, "News body") {
		t.Fatalf("message in News: %d %s", msg.status, msg.body)
	}
	for _, op := range []string{"read", "flag", "delete"} {
		r := b.act(url.Values{"f": {"shared/team/News"}, "op": {op}, "uid": {"1"}, "back": {"/mail/list?f=shared%2Fteam%2FNews"}})
		if f := flash(t, b.follow(r)); !strings.Contains(f, "read-only") {
			t.Errorf("%s in a read-only shared folder: %q", op, f)
		}
	}
	r = b.act(url.Values{"f": {"shared/team/News"}, "op": {"move"}, "to": {"INBOX"}, "uid": {"1"}})
	if f := flash(t, b.follow(r)); !strings.Contains(f, "read-only") {
		t.Errorf("move out of a read-only shared folder: %q", f)
	}
	if files := filesIn(t, view); len(files) != 1 || !strings.HasSuffix(files[0], ":2,") {
		t.Errorf("view of News after reading and refused changes: %q (want one link, no flags)", files)
	}
	if files := filesIn(t, filepath.Join(sharable, ".News")); len(files) != 1 {
		t.Errorf("the read-only sharable folder changed: %q", files)
	}

	// The writable folder: carol's flags are hers; a move brings her
	// message into the sharable folder, as hers.
	r = b.act(url.Values{"f": {"shared/team/Lists"}, "op": {"flag"}, "uid": {"1"}})
	if f := flash(t, b.follow(r)); f != "1 message flagged." {
		t.Fatalf("flag in Lists: %q", f)
	}
	if files := filesIn(t, filepath.Join(carolMD, "shared-folders", "team", "Lists")); len(files) != 1 || !strings.HasSuffix(files[0], ":2,F") {
		t.Errorf("view of Lists: %q, want one link flagged F", files)
	}
	for _, f := range filesIn(t, filepath.Join(sharable, ".Lists")) {
		if !strings.HasSuffix(f, ":2,") {
			t.Errorf("carol's flag reached the sharable file %q", f)
		}
	}
	own, err := maildir.OpenAs(carolMD, 1001, 1001)
	if err != nil {
		t.Fatal(err)
	}
	key, err := own.Deliver(maildir.Inbox, strings.NewReader("Subject: carol's\n\ncarol's body\n"), maildir.DeliverOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(carolMD, "new", key), 1001, 1001); err != nil {
		t.Fatal(err)
	}
	r = b.act(url.Values{"f": {"INBOX"}, "op": {"move"}, "to": {"shared/team/News"}, "uid": {"1"}})
	if f := flash(t, b.follow(r)); !strings.Contains(f, "read-only") {
		t.Errorf("move into a read-only shared folder: %q", f)
	}
	r = b.act(url.Values{"f": {"INBOX"}, "op": {"move"}, "to": {"shared/team/Lists"}, "uid": {"1"}})
	if f := flash(t, b.follow(r)); f != "1 message moved." {
		t.Fatalf("move into Lists: %q", f)
	}
	var carols int
	for _, f := range filesIn(t, filepath.Join(sharable, ".Lists")) {
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join(sharable, ".Lists", f), &st); err == nil && st.Uid == 1001 {
			carols++
		}
	}
	if carols != 1 {
		t.Errorf("carol's moved message in the sharable folder: %d files of hers", carols)
	}
	if rs := rows(t, b.get("/mail/list?f="+url.QueryEscape("shared/team/Lists"))); len(rs) != 2 {
		t.Errorf("Lists shows %d messages, want 2", len(rs))
	}

	// Hostile and unreadable names: nothing opened, nothing made.
	for _, f := range []string{"shared/team/Private", "shared/team/../x", "shared/../team/Lists", "shared/team/Lists/../../x", "shared/team", "shared/nobody/Lists", "shared//Lists"} {
		if r := b.get("/mail/list?f=" + url.QueryEscape(f)); r.status != http.StatusNotFound && r.status != http.StatusBadRequest {
			t.Errorf("list %q: %d", f, r.status)
		}
	}
	r = b.post("/mail/folders", url.Values{"csrf": {b.csrf}, "op": {"subscribe"}, "f": {"shared/team/Private"}})
	if f := flash(t, b.follow(r)); f != "There is no shared folder by that name." {
		t.Errorf("subscribe to Private: %q", f)
	}
	entries, _ := os.ReadDir(filepath.Join(carolMD, "shared-folders", "team"))
	var names []string
	for _, en := range entries {
		names = append(names, en.Name())
	}
	if strings.Join(names, ",") != "Lists,News" {
		t.Errorf("shared-folders/team holds %q, want Lists,News", names)
	}

	r = b.post("/mail/folders", url.Values{"csrf": {b.csrf}, "op": {"unsubscribe"}, "f": {"shared/team/News"}})
	if f := flash(t, b.follow(r)); f != "Unsubscribed from shared.team.News." {
		t.Fatalf("unsubscribe: %q", f)
	}
	if _, err := os.Lstat(view); err == nil {
		t.Error("the view is still there after unsubscribing")
	}
	if files := filesIn(t, filepath.Join(sharable, ".News")); len(files) != 1 {
		t.Errorf("unsubscribing touched the sharable folder: %q", files)
	}

	// A user without shared-maildirs sees no shared folders.
	a := e.login(alice)
	if page := a.get("/mail/folders"); strings.Contains(page.body, "Shared folders") {
		t.Error("alice, with no shared-maildirs, is shown shared folders")
	}
}

func TestParseSharedParam(t *testing.T) {
	for _, c := range []struct {
		in           string
		nick, folder string
		shared, ok   bool
	}{
		{"Work", "", "", false, true},
		{"INBOX", "", "", false, true},
		{"shared/team/Lists", "team", "Lists", true, true},
		{"shared/team/Lists.2024", "team", "Lists.2024", true, true},
		{"shared/team/../x", "", "", true, false},
		{"shared/team/Lists/x", "", "", true, false},
		{"shared//Lists", "", "", true, false},
		{"shared/team/", "", "", true, false},
		{"shared/team/INBOX", "", "", true, false},
		{"shared/team/a\x01b", "", "", true, false},
		{"shared/team/&Jjo", "", "", true, false}, // not modified UTF-7
	} {
		nick, folder, shared, err := parseSharedParam(c.in)
		if shared != c.shared || (err == nil) != c.ok || nick != c.nick || folder != c.folder {
			t.Errorf("parseSharedParam(%q) = %q %q %v %v", c.in, nick, folder, shared, err)
		}
	}
}
