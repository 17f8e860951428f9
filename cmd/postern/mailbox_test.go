package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"postern/mailbox/maildir"
	"postern/policy"
	"postern/server"
)

// mailboxEnv is a configuration made by postern init with accounts in
// its userdb and their Maildirs on disk, for postern mailbox's tests.
type mailboxEnv struct {
	t   *testing.T
	dir string
	etc string
}

func newMailboxEnv(t *testing.T) *mailboxEnv {
	t.Helper()
	dir := t.TempDir()
	if err := policy.Init(dir, "example.test", "mail.example.test", false); err != nil {
		t.Fatal(err)
	}
	return &mailboxEnv{t: t, dir: dir, etc: filepath.Join(dir, "etc")}
}

// addUser adds LOCAL@example.test with the user add options given and
// returns its Maildir.
func (m *mailboxEnv) addUser(local string, opts ...string) string {
	m.t.Helper()
	args := append([]string{"--config", m.etc, "user", "add", local + "@example.test", "--password", "pw"}, opts...)
	if code, _, errb := runCmd(m.t, "", args...); code != 0 {
		m.t.Fatalf("user add %s: %d %s", local, code, errb)
	}
	return filepath.Join(m.dir, "data", "mail", "example.test", local, "Maildir")
}

// run runs postern mailbox ARGS.
func (m *mailboxEnv) run(args ...string) (int, string, string) {
	m.t.Helper()
	return runCmd(m.t, "", append([]string{"--config", m.etc, "mailbox"}, args...)...)
}

// must runs postern mailbox ARGS, which must succeed, and returns its
// output.
func (m *mailboxEnv) must(args ...string) string {
	m.t.Helper()
	code, out, errb := m.run(args...)
	if code != 0 {
		m.t.Fatalf("postern mailbox %q: exit %d\n%s%s", args, code, out, errb)
	}
	return out
}

// putMessage puts a message into a folder of the Maildir at root, as the
// delivery agent or IMAP APPEND would, and returns its key.
func putMessage(t *testing.T, root, folder, msg string, opt maildir.DeliverOptions) string {
	t.Helper()
	md, err := maildir.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	key, err := md.Deliver(folder, strings.NewReader(msg), opt)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// lines splits output into its lines.
func lines(out string) []string {
	return strings.Split(strings.TrimSuffix(out, "\n"), "\n")
}

// listing is what a directory holds, for "nothing was made" checks.
func listing(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// Folders are made, listed, subscribed, renamed and deleted as IMAP
// shows and names them, and status counts what they hold.
func TestMailboxFolderRoundTrips(t *testing.T) {
	m := newMailboxEnv(t)
	alice := m.addUser("alice")
	m.addUser("bob")
	u := []string{"-u", "alice@example.test"}

	m.must(append([]string{"create", "-s"}, append(u, "Sent", "Ünïcode", "Work", "Work.2024")...)...)
	for _, dir := range []string{".Sent", ".&ANw-n&AO8-code", ".Work", ".Work.2024"} {
		if _, err := os.Stat(filepath.Join(alice, dir, "maildirfolder")); err != nil {
			t.Errorf("create made no Maildir++ folder %s: %v", dir, err)
		}
	}
	if got := lines(m.must(append([]string{"list"}, u...)...)); !slices.Equal(got, []string{"INBOX", "Sent", "Work", "Work.2024", "Ünïcode"}) {
		t.Errorf("list: %q", got)
	}
	if got := lines(m.must(append([]string{"list"}, append(u, "W%")...)...)); !slices.Equal(got, []string{"Work"}) {
		t.Errorf("list W%%: %q", got)
	}
	subs, _ := os.ReadFile(filepath.Join(alice, "courierimapsubscribed"))
	if !strings.Contains(string(subs), "INBOX.Sent\n") || !strings.Contains(string(subs), "INBOX.&ANw-n&AO8-code\n") {
		t.Errorf("courierimapsubscribed: %q", subs)
	}
	if code, _, errb := m.run(append([]string{"create"}, append(u, "Sent")...)...); code != 1 || !strings.Contains(errb, "already exists") {
		t.Errorf("create an existing folder: %d %q", code, errb)
	}
	// With -A each line names the account; bob has no folders but INBOX.
	out := m.must("list", "-A")
	if !regexpLine(out, "^alice@example.test\tWork.2024$") || !regexpLine(out, "^bob@example.test\tINBOX$") {
		t.Errorf("list -A:\n%s", out)
	}

	// rename moves the children and, with -s, the subscriptions.
	m.must(append([]string{"subscribe"}, append(u, "Work.2024")...)...)
	m.must(append([]string{"rename", "-s"}, append(u, "Work", "Old")...)...)
	if got := lines(m.must(append([]string{"list"}, u...)...)); !slices.Equal(got, []string{"INBOX", "Old", "Old.2024", "Sent", "Ünïcode"}) {
		t.Errorf("list after rename: %q", got)
	}
	if got := lines(m.must(append([]string{"list", "-s"}, u...)...)); !slices.Equal(got, []string{"Old", "Old.2024", "Sent", "Ünïcode"}) {
		t.Errorf("list -s after rename: %q", got)
	}

	// status counts; vsize is the size with CRLF line ends.
	putMessage(t, alice, "INBOX", "Subject: one\n\nline\n", maildir.DeliverOptions{})
	putMessage(t, alice, "INBOX", "Subject: two\r\n\r\nline\r\n", maildir.DeliverOptions{Flags: "S"})
	putMessage(t, alice, "Old.2024", "Subject: three\n\nx\n", maildir.DeliverOptions{Flags: "S"})
	vsize := len("Subject: one\r\n\r\nline\r\n") + len("Subject: two\r\n\r\nline\r\n")
	out = m.must(append([]string{"status"}, append(u, "messages recent unseen vsize", "INBOX")...)...)
	if want := fmt.Sprintf("INBOX messages=2 recent=1 unseen=1 vsize=%d\n", vsize); out != want {
		t.Errorf("status INBOX: %q, want %q", out, want)
	}
	out = m.must(append([]string{"status", "-t"}, append(u, "messages,unseen", "*")...)...)
	if out != "messages=3 unseen=1\n" {
		t.Errorf("status -t: %q", out)
	}
	var st []map[string]any
	out = m.must(append([]string{"status", "--json"}, append(u, "all", "Old*")...)...)
	if err := json.Unmarshal([]byte(out), &st); err != nil || len(st) != 2 || st[1]["mailbox"] != "Old.2024" || st[1]["messages"] != 1.0 || st[1]["uidnext"] != 2.0 {
		t.Errorf("status --json all Old*: %v %s", err, out)
	}
	if code, _, errb := m.run(append([]string{"status"}, append(u, "messages", "Nope")...)...); code != 1 || !strings.Contains(errb, "Nope: maildir: no such folder") {
		t.Errorf("status of a missing folder: %d %q", code, errb)
	}
	if code, _, errb := m.run(append([]string{"status"}, append(u, "messages guid", "INBOX")...)...); code != 64 || !strings.Contains(errb, "unknown status field 'guid'") {
		t.Errorf("status guid: %d %q", code, errb)
	}

	// delete -e keeps a folder with messages; -r takes the children.
	if code, _, errb := m.run(append([]string{"delete", "-e", "-r"}, append(u, "Old")...)...); code != 1 || !strings.Contains(errb, "Old.2024 holds 1 messages") {
		t.Errorf("delete -e of a folder with messages: %d %q", code, errb)
	}
	m.must(append([]string{"delete"}, append(u, "Old")...)...)
	if got := lines(m.must(append([]string{"list"}, u...)...)); !slices.Equal(got, []string{"INBOX", "Old.2024", "Sent", "Ünïcode"}) {
		t.Errorf("delete without -r takes only the folder: %q", got)
	}
	m.must(append([]string{"create"}, append(u, "Old")...)...)
	m.must(append([]string{"delete", "-r", "-s"}, append(u, "Old")...)...)
	if got := lines(m.must(append([]string{"list"}, u...)...)); !slices.Equal(got, []string{"INBOX", "Sent", "Ünïcode"}) {
		t.Errorf("delete -r: %q", got)
	}
	if got := lines(m.must(append([]string{"list", "-s"}, u...)...)); !slices.Equal(got, []string{"Sent", "Ünïcode"}) {
		t.Errorf("delete -s left subscriptions: %q", got)
	}
	if code, _, _ := m.run(append([]string{"delete"}, append(u, "Old")...)...); code != 1 {
		t.Errorf("delete a missing folder: %d", code)
	}
	if code, _, errb := m.run(append([]string{"subscribe"}, append(u, "Nope")...)...); code != 1 || !strings.Contains(errb, "no such folder") {
		t.Errorf("subscribe a missing folder: %d %q", code, errb)
	}
	m.must(append([]string{"unsubscribe"}, append(u, "Sent")...)...)
	if got := lines(m.must(append([]string{"list", "-s"}, u...)...)); !slices.Equal(got, []string{"Ünïcode"}) {
		t.Errorf("unsubscribe: %q", got)
	}
}

// Under imapnamespace courier, names are shown under INBOX. and taken
// with or without it.
func TestMailboxCourierNamespace(t *testing.T) {
	m := newMailboxEnv(t)
	alice := m.addUser("alice")
	os.WriteFile(filepath.Join(m.etc, "imapnamespace"), []byte("courier\n"), 0o644)
	m.must("create", "-u", "alice@example.test", "INBOX.Sent", "Drafts")
	if _, err := os.Stat(filepath.Join(alice, ".Sent", "cur")); err != nil {
		t.Fatal(err)
	}
	if got := lines(m.must("list", "-u", "alice@example.test")); !slices.Equal(got, []string{"INBOX", "INBOX.Drafts", "INBOX.Sent"}) {
		t.Errorf("list: %q", got)
	}
	if got := lines(m.must("status", "-u", "alice@example.test", "messages", "INBOX.%")); !slices.Equal(got, []string{"INBOX.Drafts messages=0", "INBOX.Sent messages=0"}) {
		t.Errorf("status INBOX.%%: %q", got)
	}
}

// Names that could leave the Maildir, or that IMAP could not name, are
// refused before any account is touched, and nothing is made anywhere.
func TestMailboxHostileNames(t *testing.T) {
	m := newMailboxEnv(t)
	alice := m.addUser("alice")
	home := filepath.Dir(alice)
	beforeRoot, beforeHome := listing(t, alice), listing(t, home)
	for _, c := range []struct{ name, why string }{
		{"../x", `contains "/"`},
		{"a/b", `contains "/"`},
		{"INBOX", "INBOX always exists"},
		{"inbox", "INBOX always exists"},
		{"a\x01b", "control character"},
		{"a\nb", "control character"},
		{"a\x7fb", "control character"},
		{"a\u0085b", "control character"},
		{"a..b", "empty component"},
		{".x", "empty component"},
		{"x.", "empty component"},
		{"", "empty"},
		{"INBOX.INBOX", "INBOX is the root folder"},
		{"bad\xffutf8", "not valid UTF-8"},
		{"a*b", "wildcards"},
		{strings.Repeat("x", 300), "too long"},
	} {
		code, _, errb := m.run("create", "-u", "alice@example.test", c.name)
		if code != 64 || !strings.Contains(errb, c.why) {
			t.Errorf("create %q: exit %d %q, want 64 and %q", c.name, code, errb, c.why)
		}
	}
	m.must("create", "-u", "alice@example.test", "Work")
	for _, args := range [][]string{
		{"rename", "Work", "../Work"}, {"rename", "Work", "INBOX"}, {"rename", "INBOX", "Other"},
		{"delete", "INBOX"}, {"delete", "../.."}, {"subscribe", "x\r\ny"},
		{"status", "messages", "../x"}, {"move", "../x", "mailbox", "INBOX", "all"},
	} {
		code, _, errb := m.run(append([]string{args[0], "-u", "alice@example.test"}, args[1:]...)...)
		if code != 64 || errb == "" {
			t.Errorf("%q: exit %d %q, want 64", args, code, errb)
		}
	}
	m.must("delete", "-u", "alice@example.test", "Work")
	if got := listing(t, alice); !slices.Equal(got, beforeRoot) {
		t.Errorf("the Maildir holds %q, was %q", got, beforeRoot)
	}
	if got := listing(t, home); !slices.Equal(got, beforeHome) {
		t.Errorf("the home holds %q, was %q", got, beforeHome)
	}
}

// maildirsizeUsage adds up maildirsize's usage lines.
func maildirsizeUsage(t *testing.T, root string) (bytes, count int64) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "maildirsize"))
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range lines(string(data)) {
		f := strings.Fields(l)
		if i == 0 || len(f) != 2 {
			continue
		}
		b, _ := strconv.ParseInt(f[0], 10, 64)
		c, _ := strconv.ParseInt(f[1], 10, 64)
		bytes += b
		count += c
	}
	return bytes, count
}

// The doveadm classic: every account's Trash purged of what has been in
// it for more than a week, and nothing else; the quota stays right.
func TestMailboxExpungeOldTrashOfEveryAccount(t *testing.T) {
	m := newMailboxEnv(t)
	roots := map[string]string{
		"alice": m.addUser("alice", "--quota", "1000000S,100C"),
		"bob":   m.addUser("bob", "--quota", "1000000S,100C"),
		"carol": m.addUser("carol"), // no Trash at all
	}
	for _, u := range []string{"alice", "bob"} {
		m.must("create", "-u", u+"@example.test", "Trash", "Trash.2024")
		// The account's quota into maildirsize, as a delivery puts it.
		if code, _, errb := runCmd(t, "", "--config", m.etc, "quota", "get", u+"@example.test"); code != 0 {
			t.Fatalf("quota get: %s", errb)
		}
	}
	// Old: saved before the cutoff (the save date is the file's ctime,
	// which no call can set back, so the clock is moved forward instead).
	for _, u := range []string{"alice", "bob"} {
		for i := range 2 {
			putMessage(t, roots[u], "Trash", fmt.Sprintf("Subject: old %s %d\n\nx\n", u, i), maildir.DeliverOptions{Flags: "S"})
		}
		putMessage(t, roots[u], "Trash.2024", "Subject: old child\n\nx\n", maildir.DeliverOptions{})
		putMessage(t, roots[u], "INBOX", "Subject: old inbox\n\nx\n", maildir.DeliverOptions{})
	}
	putMessage(t, roots["carol"], "INBOX", "Subject: old carol\n\nx\n", maildir.DeliverOptions{})
	cutoff := time.Now().Add(500 * time.Millisecond)
	time.Sleep(1100 * time.Millisecond)
	for _, u := range []string{"alice", "bob"} {
		putMessage(t, roots[u], "Trash", "Subject: new "+u+"\n\nx\n", maildir.DeliverOptions{})
	}
	defer func(old func() time.Time) { mailboxClock = old }(mailboxClock)
	mailboxClock = func() time.Time { return cutoff.Add(7 * 24 * time.Hour) }

	if code, _, errb := m.run("expunge", "-A", "savedbefore", "7d"); code != 64 || !strings.Contains(errb, "names no mailbox") {
		t.Fatalf("expunge without a mailbox: %d %q", code, errb)
	}
	code, out, errb := m.run("expunge", "-A", "-v", "mailbox", "Trash", "savedbefore", "7d")
	if code != 0 || out != "" {
		t.Fatalf("expunge: %d %q %q", code, out, errb)
	}
	for _, want := range []string{"alice@example.test: 2 expunged", "bob@example.test: 2 expunged", "carol@example.test: 0 expunged"} {
		if !strings.Contains(errb, want) {
			t.Errorf("progress lacks %q:\n%s", want, errb)
		}
	}
	mailboxClock = time.Now
	for _, u := range []string{"alice", "bob"} {
		out := m.must("search", "-u", u+"@example.test", "all")
		if !slices.Equal(lines(out), []string{"INBOX\t1", "Trash\t3", "Trash.2024\t1"}) {
			t.Errorf("%s after the expunge:\n%s", u, out)
		}
		out = m.must("fetch", "-u", u+"@example.test", "hdr.subject", "mailbox", "Trash")
		if out != "hdr.subject: new "+u+"\n" {
			t.Errorf("%s's Trash keeps %q", u, out)
		}
	}
	if out := m.must("search", "-u", "carol@example.test", "all"); out != "INBOX\t1\n" {
		t.Errorf("carol: %q", out)
	}

	// From INBOX, which the quota counts: maildirsize follows, as a
	// recalculation confirms.
	putMessage(t, roots["alice"], "INBOX", "Subject: big\n\n"+strings.Repeat("y", 5000)+"\n", maildir.DeliverOptions{})
	putMessage(t, roots["alice"], "INBOX", "Subject: deleted\n\nz\n", maildir.DeliverOptions{Flags: "T"})
	m.must("expunge", "-u", "alice@example.test", "mailbox", "INBOX", "(", "larger", "4k", "OR", "deleted", ")")
	if out := m.must("search", "-u", "alice@example.test", "mailbox", "INBOX", "all"); out != "INBOX\t1\n" {
		t.Errorf("INBOX after expunge: %q", out)
	}
	bytes, count := maildirsizeUsage(t, roots["alice"])
	md, err := maildir.Open(roots["alice"])
	if err != nil {
		t.Fatal(err)
	}
	_, used, err := md.RecalculateQuota()
	if err != nil {
		t.Fatal(err)
	}
	if bytes != used.Bytes || count != used.Messages || count != 2 {
		t.Errorf("maildirsize says %d bytes in %d messages, a recount %d in %d", bytes, count, used.Bytes, used.Messages)
	}
}

// search and fetch: keys, OR, NOT, parentheses, header search on RFC
// 2047-encoded fields, and doveadm's output forms.
func TestMailboxSearchAndFetch(t *testing.T) {
	m := newMailboxEnv(t)
	alice := m.addUser("alice")
	m.must("create", "-u", "alice@example.test", "Archive")
	old := time.Date(2025, 1, 10, 12, 0, 0, 0, time.Local)
	msgs := []struct {
		folder, text string
		opt          maildir.DeliverOptions
	}{
		{"INBOX", "From: =?UTF-8?Q?Ren=C3=A9e?= <renee@example.org>\nSubject: =?UTF-8?Q?Caf=C3=A9_menu?=\nMessage-ID: <1@x>\nDate: Fri, 10 Jan 2025 12:00:00 +0000\n\nsoup\n",
			maildir.DeliverOptions{Flags: "FS", InternalDate: old}},
		{"INBOX", "From: bob@example.org\nSubject: Meeting\nX-Tag: Project-ABC\n\n" + strings.Repeat("agenda\n", 2000),
			maildir.DeliverOptions{}},
		{"INBOX", "From: carl@example.org\nSubject: =?ISO-8859-1?B?3GJlciBhbGxlcw==?=\n\nhi\n",
			maildir.DeliverOptions{Keywords: []string{"$Junk"}, InternalDate: old}},
		{"Archive", "From: renee@example.org\nSubject: archived\n\nold\n",
			maildir.DeliverOptions{Flags: "S", InternalDate: old}},
	}
	for _, msg := range msgs {
		putMessage(t, alice, msg.folder, msg.text, msg.opt)
	}
	search := func(words ...string) string {
		t.Helper()
		return strings.Join(lines(m.must(append([]string{"search", "-u", "alice@example.test"}, words...)...)), " ")
	}
	for _, c := range []struct {
		query []string
		want  string
	}{
		{[]string{"all"}, "INBOX\t1 INBOX\t2 INBOX\t3 Archive\t1"},
		{[]string{"subject", "CAFÉ"}, "INBOX\t1"},
		{[]string{"subject", "über"}, "INBOX\t3"},
		{[]string{"from", "renée"}, "INBOX\t1"},
		{[]string{"from", "renee@"}, "INBOX\t1 Archive\t1"},
		{[]string{"header", "x-tag", "project-abc"}, "INBOX\t2"},
		{[]string{"header", "X-Tag", ""}, "INBOX\t2"},
		{[]string{"mailbox", "INBOX", "(", "seen", "OR", "larger", "10k", ")"}, "INBOX\t1 INBOX\t2"},
		{[]string{"mailbox", "INBOX", "seen", "OR", "flagged", "OR", "keyword", "$Junk"}, "INBOX\t1 INBOX\t3"},
		{[]string{"NOT", "seen", "mailbox", "INBOX"}, "INBOX\t2 INBOX\t3"},
		{[]string{"NOT", "(", "mailbox", "INBOX", "OR", "unseen", ")"}, "Archive\t1"},
		{[]string{"mailbox", "Arch*"}, "Archive\t1"},
		{[]string{"mailbox", "Nope", "OR", "mailbox", "Archive"}, "Archive\t1"},
		{[]string{"before", "2025-06-01"}, "INBOX\t1 INBOX\t3 Archive\t1"},
		{[]string{"since", "1-Jun-2025", "smaller", "1k"}, ""},
		{[]string{"since", "30d"}, "INBOX\t2"},
		{[]string{"mailbox", "INBOX", "uid", "2:*"}, "INBOX\t2 INBOX\t3"},
		{[]string{"uid", "1", "unkeyword", "$Junk", "mailbox", "INBOX"}, "INBOX\t1"},
	} {
		if got := search(c.query...); got != c.want {
			t.Errorf("search %q: %q, want %q", c.query, got, c.want)
		}
	}

	out := m.must("fetch", "-u", "alice@example.test", "uid flags hdr.subject hdr.from date.received", "mailbox", "INBOX", "NOT", "uid", "2")
	want := "uid: 1\nflags: \\Flagged \\Seen\nhdr.subject: Café menu\nhdr.from: Renée <renee@example.org>\n" +
		"date.received: " + old.Format(time.DateTime) + "\n" +
		"\f\nuid: 3\nflags: $Junk\nhdr.subject: Über alles\nhdr.from: carl@example.org\n" +
		"date.received: " + old.Format(time.DateTime) + "\n"
	if out != want {
		t.Errorf("fetch:\n%q\nwant\n%q", out, want)
	}
	out = m.must("fetch", "-u", "alice@example.test", "size text", "mailbox", "Archive")
	if out != fmt.Sprintf("size: %d\ntext:\n%s", len(msgs[3].text), msgs[3].text) {
		t.Errorf("fetch text: %q", out)
	}
	out = m.must("fetch", "-A", "--json", "user mailbox uid hdr.message-id date.sent size.virtual body", "subject", "café")
	var got []map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil || len(got) != 1 {
		t.Fatalf("fetch --json: %v %s", err, out)
	}
	if g := got[0]; g["user"] != "alice@example.test" || g["mailbox"] != "INBOX" || g["uid"] != 1.0 || g["hdr.message-id"] != "<1@x>" ||
		g["date.sent"] != "2025-01-10T12:00:00Z" || g["size.virtual"] != float64(len(msgs[0].text)+6) || g["body"] != "soup\n" {
		t.Errorf("fetch --json: %v", g)
	}
	if code, _, errb := m.run("fetch", "-u", "alice@example.test", "uid guid", "all"); code != 64 || !strings.Contains(errb, "unknown fetch field 'guid'") {
		t.Errorf("fetch guid: %d %q", code, errb)
	}

	// Query mistakes say which word is wrong, and nothing runs.
	for _, c := range []struct {
		query []string
		want  string
	}{
		{[]string{"mailbox", "INBOX", "frob"}, "search query: unknown key 'frob' at word 3"},
		{[]string{"(", "seen", "OR", "flagged"}, "'(' without its ')' at word 1"},
		{[]string{"seen", ")"}, "unexpected ')' at word 2"},
		{[]string{"OR", "seen"}, "'OR' needs a search key before it at word 1"},
		{[]string{"seen", "OR"}, "expected a search key at word 3"},
		{[]string{"before", "yesterday"}, "'before' at word 2: 'yesterday' is neither a date"},
		{[]string{"larger", "10q"}, "'larger' at word 2: '10q' is not a size"},
		{[]string{"uid", "0"}, "'uid' at word 2: '0' is not a UID"},
		{[]string{"header", "Subject"}, "'header' needs the text to look for at word 3"},
		{[]string{}, "search query: empty"},
	} {
		code, out, errb := m.run(append([]string{"search", "-u", "alice@example.test"}, c.query...)...)
		if code != 64 || out != "" || !strings.Contains(errb, c.want) {
			t.Errorf("search %q: %d %q %q, want 64 and %q", c.query, code, out, errb, c.want)
		}
	}
}

// A message moved while an IMAP session has its folder selected leaves
// that session's view at its next NOOP, and appears in the target folder
// with its flags and keywords under a new UID; flags set from the
// command reach the session the same way.
func TestMailboxMoveSeenByIMAPSession(t *testing.T) {
	m := newMailboxEnv(t)
	os.WriteFile(filepath.Join(m.etc, "listen"), []byte("imap 127.0.0.1:0\n"), 0o640)
	alice := m.addUser("alice")
	m.must("create", "-u", "alice@example.test", "Archive")
	putMessage(t, alice, "Archive", "Subject: already archived\n\nx\n", maildir.DeliverOptions{Flags: "S"})
	putMessage(t, alice, "INBOX", "Subject: stays\n\nx\n", maildir.DeliverOptions{})
	putMessage(t, alice, "INBOX", "Subject: report Q3\n\nfigures\n", maildir.DeliverOptions{Flags: "FS", Keywords: []string{"work"}})

	srv, err := server.New(m.etc, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	conn, err := net.DialTimeout("tcp", srv.Addrs("imap")[0].String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(conn)
	r.ReadString('\n')
	// cmd sends one command and returns the lines up to its tagged reply.
	cmd := func(tag, line string) []string {
		t.Helper()
		fmt.Fprintf(conn, "%s %s\r\n", tag, line)
		var got []string
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("%s: %v after %q", line, err, got)
			}
			got = append(got, strings.TrimRight(l, "\r\n"))
			if strings.HasPrefix(l, tag+" ") {
				if !strings.HasPrefix(l, tag+" OK") {
					t.Fatalf("%s: %q", line, got)
				}
				return got
			}
		}
	}
	has := func(got []string, pattern string) bool {
		re := regexp.MustCompile(pattern)
		return slices.ContainsFunc(got, re.MatchString)
	}
	cmd("a", "LOGIN alice@example.test pw")
	if got := cmd("b", "STATUS Archive (MESSAGES UIDNEXT)"); !has(got, `^\* STATUS Archive \(MESSAGES 1 UIDNEXT 2\)$`) {
		t.Fatalf("STATUS before: %q", got)
	}
	if got := cmd("c", "SELECT INBOX"); !has(got, `^\* 2 EXISTS$`) {
		t.Fatalf("SELECT: %q", got)
	}

	m.must("move", "-u", "alice@example.test", "Archive", "mailbox", "INBOX", "subject", "report")

	if got := cmd("d", "NOOP"); !has(got, `^\* 2 EXPUNGE$`) {
		t.Errorf("the session did not see the message leave: %q", got)
	}
	if got := cmd("e", "STATUS Archive (MESSAGES UIDNEXT)"); !has(got, `^\* STATUS Archive \(MESSAGES 2 UIDNEXT 3\)$`) {
		t.Errorf("STATUS after: %q", got)
	}
	cmd("f", "SELECT Archive")
	if got := cmd("g", "UID FETCH 2 (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])"); !has(got, `^\* 2 FETCH \(UID 2 FLAGS \(.*\\Flagged \\Seen work.*\) BODY`) ||
		!has(got, `^Subject: report Q3$`) {
		t.Errorf("the moved message in Archive: %q", got)
	}

	m.must("flags", "-u", "alice@example.test", "add", `\Answered $Label1`, "mailbox", "Archive", "uid", "2")
	m.must("flags", "-u", "alice@example.test", "remove", `\Seen`, "mailbox", "Archive", "uid", "1")
	got := cmd("h", "NOOP")
	if !has(got, `^\* 2 FETCH \(.*FLAGS \(\\Answered \\Flagged \\Seen \$Label1 work\)`) || !has(got, `^\* 1 FETCH \(.*FLAGS \(\)`) {
		t.Errorf("the session did not see the flags change: %q", got)
	}
	out := m.must("fetch", "-u", "alice@example.test", "flags", "mailbox", "Archive", "all")
	if out != "flags: \\Answered \\Flagged \\Seen $Label1 work\n\f\nflags: \n" && out != "flags: \n\f\nflags: \\Answered \\Flagged \\Seen $Label1 work\n" {
		t.Errorf("fetch flags: %q", out)
	}
	m.must("flags", "-u", "alice@example.test", "replace", `\Deleted`, "mailbox", "Archive", "uid", "2")
	if out := m.must("fetch", "-u", "alice@example.test", "flags", "mailbox", "Archive", "uid", "2"); out != "flags: \\Deleted\n" {
		t.Errorf("flags replace: %q", out)
	}
	if code, _, errb := m.run("move", "-u", "alice@example.test", "Nope", "mailbox", "INBOX", "all"); code != 1 || !strings.Contains(errb, "no such folder") {
		t.Errorf("move to a missing folder: %d %q", code, errb)
	}
	if code, _, errb := m.run("flags", "-u", "alice@example.test", "add", `\Recent`, "all"); code != 64 || !strings.Contains(errb, "not a flag one may set") {
		t.Errorf("flags add \\Recent: %d %q", code, errb)
	}
}

// Run as root for an account of another uid, what the command makes (a
// Maildir, folders, the UID database, subscriptions, moved messages'
// keyword files) is the account's, as if the account had made it.
func TestMailboxAsRootGivesTheAccountItsFiles(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the ownership is for a command run as root")
	}
	m := newMailboxEnv(t)
	os.Chmod(m.dir, 0o755)
	os.Chmod(filepath.Dir(m.dir), 0o755)
	pub := filepath.Join(m.dir, "pub")
	os.Mkdir(pub, 0o755)
	home := filepath.Join(pub, "dave")
	if code, _, errb := runCmd(t, "", "--config", m.etc, "user", "add", "dave@example.test", "--password", "pw",
		"--uid", "1234", "--gid", "1235", "--home", home, "--no-maildir"); code != 0 {
		t.Fatalf("user add: %s", errb)
	}
	os.Mkdir(home, 0o700)
	os.Chown(home, 1234, 1235)
	root := filepath.Join(home, "Maildir")
	u := []string{"-u", "dave@example.test"}
	// No Maildir yet: create makes it, as a first IMAP login would.
	m.must(append([]string{"create", "-s"}, append(u, "Archive")...)...)
	md, err := maildir.OpenAs(root, 1234, 1235)
	if err != nil {
		t.Fatal(err)
	}
	inbox, _ := md.Folder("INBOX")
	if _, err := inbox.Deliver(strings.NewReader("Subject: s\n\nx\n"), maildir.DeliverOptions{Keywords: []string{"todo"}}); err != nil {
		t.Fatal(err)
	}
	m.must(append([]string{"status"}, append(u, "all", "*")...)...)
	m.must(append([]string{"move"}, append(u, "Archive", "mailbox", "INBOX", "all")...)...)
	var wrong []string
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Sys().(*syscall.Stat_t).Uid != 1234 {
			wrong = append(wrong, p)
		}
		return nil
	})
	if len(wrong) > 0 {
		t.Errorf("not the account's: %q", wrong)
	}
	if out := m.must(append([]string{"search"}, append(u, "keyword", "todo")...)...); out != "Archive\t1\n" {
		t.Errorf("search after the move: %q", out)
	}
}

// Accounts are chosen by name, pattern or -A; the exit status says what
// went wrong.
func TestMailboxAccountsAndExitCodes(t *testing.T) {
	m := newMailboxEnv(t)
	m.addUser("alice")
	m.addUser("amy")
	bob := m.addUser("bob")
	if out := m.must("list", "-u", "a*"); out != "alice@example.test\tINBOX\namy@example.test\tINBOX\n" {
		t.Errorf("list -u a*: %q", out)
	}
	if out := m.must("list", "-u", "bob@example.test", "--json"); strings.TrimSpace(out) != `[`+"\n"+`{"mailbox":"INBOX","user":"bob@example.test"}]` {
		t.Errorf("list --json: %q", out)
	}
	if code, _, errb := m.run("list", "-u", "nobody@example.test,alice@example.test"); code != 67 || !strings.Contains(errb, "nobody@example.test: no such account") {
		t.Errorf("an unknown account: %d %q", code, errb)
	}
	if code, _, errb := m.run("list", "-u", "z*"); code != 67 || !strings.Contains(errb, "no account matches") {
		t.Errorf("a pattern matching nobody: %d %q", code, errb)
	}
	// A Maildir that cannot be opened is a temporary failure.
	os.RemoveAll(bob)
	os.WriteFile(bob, []byte("not a directory"), 0o600)
	if code, _, errb := m.run("list", "-A"); code != 75 || !strings.Contains(errb, "bob@example.test:") {
		t.Errorf("a broken Maildir: %d %q", code, errb)
	}
	for _, bad := range [][]string{{}, {"frob"}, {"list"}, {"list", "-A", "-u", "alice@example.test"}, {"status", "-A", "messages"},
		{"rename", "-A", "x"}, {"flags", "-A", "toggle", `\Seen`, "all"}, {"status", "-A", "-t", "uidnext", "INBOX"}} {
		if code, _, _ := m.run(bad...); code != 64 {
			t.Errorf("%q: exit %d, want 64", bad, code)
		}
	}
	for _, s := range mailboxSubcommands {
		code, out, _ := m.run(s.name, "--help")
		if code != 0 || strings.Count(out, "Usage: postern mailbox "+s.name) != 1 {
			t.Errorf("mailbox %s --help: %d %q", s.name, code, out)
		}
	}
	if code, out, _ := m.run("--help"); code != 0 || !strings.Contains(out, "expunge QUERY") {
		t.Errorf("mailbox --help: %d %q", code, out)
	}
}
