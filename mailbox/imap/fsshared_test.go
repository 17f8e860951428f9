package imap

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"postern/mailbox/maildir"
)

// needRoot: the filesystem-shared tests give accounts their own uids and
// chown files to them; CI runs as root (.ci/run), so there it must work.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("filesystem-shared folder tests need root (CI runs as root)")
		}
		t.Skip("needs root to own files as other users")
	}
}

// maildirmake runs Postern's maildirmake (the command's own code path).
func maildirmake(t *testing.T, args ...string) {
	t.Helper()
	var out, errOut bytes.Buffer
	if rc := maildir.MaildirmakeMain(args, &out, &errOut); rc != 0 {
		t.Fatalf("maildirmake %q: exit %d: %s%s", args, rc, out.String(), errOut.String())
	}
}

// sharableMaildir makes, as an admin would, a sharable maildir with a
// "-s write" folder Lists, a "-s read" folder News and a private folder
// Private, in a directory other users can reach.
func sharableMaildir(t *testing.T) string {
	t.Helper()
	top, err := os.MkdirTemp("", "postern-fsshared-*")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(top) })
	if err := os.Chmod(top, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(top, "shared")
	maildirmake(t, "-S", path)
	maildirmake(t, "-s", "write", "-f", "Lists", path)
	maildirmake(t, "-s", "read", "-f", "News", path)
	maildirmake(t, "-f", "Private", path)
	return path
}

// deliverTo delivers into a folder of the sharable maildir as an MTA
// would (new/) and returns the file's key.
func deliverTo(t *testing.T, sharable, folder, msg string) string {
	t.Helper()
	md, err := maildir.Open(sharable)
	if err != nil {
		t.Fatal(err)
	}
	key, err := md.Deliver(folder, strings.NewReader(msg), maildir.DeliverOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Readable by others, as an MDA with umask 022 leaves it (Postern's
	// Deliver writes 0600).
	if err := os.Chmod(filepath.Join(sharable, "."+folder, "new", key), 0o644); err != nil {
		t.Fatal(err)
	}
	return key
}

// sharableFiles lists the message files of a sharable folder (cur/ and
// new/), as "cur/NAME".
func sharableFiles(t *testing.T, sharable, folder string) []string {
	t.Helper()
	var out []string
	for _, sub := range []string{"cur", "new"} {
		entries, err := os.ReadDir(filepath.Join(sharable, "."+folder, sub))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			out = append(out, sub+"/"+e.Name())
		}
	}
	slices.Sort(out)
	return out
}

// cmd sends one tagged command and returns every line up to its result;
// the result must start with want ("OK", "NO", ...).
func (r *rawConn) cmd(tag, command, want string) []string {
	r.t.Helper()
	r.send(tag + " " + command + "\r\n")
	lines := r.until(tag + " ")
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, tag+" "+want) {
		r.t.Fatalf("%s: got %q, want %s (all: %q)", command, last, want, lines)
	}
	return lines
}

func hasLine(lines []string, want string) bool { return slices.Contains(lines, want) }

// seqOfSubject finds the sequence number whose FETCH response carries the
// subject, in lines of a FETCH ... BODY[] answer.
func seqOfSubject(t *testing.T, lines []string, subject string) string {
	t.Helper()
	re := regexp.MustCompile(`^\* (\d+) FETCH`)
	cur := ""
	for _, l := range lines {
		if m := re.FindStringSubmatch(l); m != nil {
			cur = m[1]
		}
		if strings.Contains(l, "Subject: "+subject) {
			return cur
		}
	}
	t.Fatalf("no message with subject %q in %q", subject, lines)
	return ""
}

// TestFSSharedFoldersEndToEnd is the admin's scenario over a real IMAP
// listener: a sharable maildir made with maildirmake -S, a writable and a
// read-only folder, two deliveries, bob's maildirmake --add; bob lists,
// subscribes, selects, reads, keeps \Seen to himself and expunges from
// the sharable folder what the permissions let him.
func TestFSSharedFoldersEndToEnd(t *testing.T) {
	needRoot(t)
	env := newTestEnv(t, nil)
	env.module.setIDs("bob", 1001, 1001)
	env.module.setIDs("alice", 1002, 1002)
	sharable := sharableMaildir(t)
	deliverTo(t, sharable, "Lists", "Subject: first\r\n\r\nfirst body\r\n")
	deliverTo(t, sharable, "Lists", "Subject: second\r\n\r\nsecond body\r\n")
	deliverTo(t, sharable, "News", "Subject: news\r\n\r\nnews body\r\n")
	deliverTo(t, sharable, "Private", "Subject: private\r\n\r\nnot for bob\r\n")
	for _, u := range []string{"bob", "alice"} {
		env.maildir(u)
		maildirmake(t, "--add", "team="+sharable, env.maildirPath(u))
	}

	bob := env.login("bob", "hunter2")
	if l := bob.cmd("a", "NAMESPACE", "OK"); !hasLine(l, `* NAMESPACE (("" ".")) (("#shared." ".")) (("shared." "."))`) {
		t.Fatalf("NAMESPACE: %q", l)
	}
	list := bob.cmd("b", `LIST "" "shared*"`, "OK")
	for _, want := range []string{
		`* LIST (\Noselect \HasChildren) "." shared`,
		`* LIST (\Noselect \HasChildren) "." shared.team`,
		`* LIST (\HasNoChildren) "." shared.team.Lists`,
		`* LIST (\HasNoChildren) "." shared.team.News`,
	} {
		if !hasLine(list, want) {
			t.Errorf("LIST lacks %q: %q", want, list)
		}
	}
	if strings.Contains(strings.Join(list, "\n"), "Private") {
		t.Errorf("LIST shows the folder without group or world permissions: %q", list)
	}
	if l := bob.cmd("c", `LSUB "" "*"`, "OK"); strings.Contains(strings.Join(l, "\n"), "shared.team") {
		t.Errorf("LSUB shows a shared folder before SUBSCRIBE: %q", l)
	}
	bob.cmd("d", "SUBSCRIBE shared.team.Lists", "OK")
	view := filepath.Join(env.maildirPath("bob"), "shared-folders", "team", "Lists")
	if link, err := os.Readlink(filepath.Join(view, "shared")); err != nil || link != sharable+"/.Lists" {
		t.Fatalf("shared link = %q, %v; want %q (Courier's layout)", link, err, sharable+"/.Lists")
	}
	if l := bob.cmd("e", `LSUB "" "*"`, "OK"); !hasLine(l, `* LSUB () "." shared.team.Lists`) {
		t.Errorf("LSUB after SUBSCRIBE: %q", l)
	}

	// LIST-EXTENDED (RFC 5258): SUBSCRIBED selects the same.
	ext := bob.cmd("e2", `LIST (SUBSCRIBED) "" "shared*"`, "OK")
	if j := strings.Join(ext, "\n"); !strings.Contains(j, `\Subscribed`) || !strings.Contains(j, "shared.team.Lists") || strings.Contains(j, "News") {
		t.Errorf("LIST (SUBSCRIBED): %q", ext)
	}

	sel := bob.cmd("f", "SELECT shared.team.Lists", "OK [READ-WRITE]")
	if !hasLine(sel, "* 2 EXISTS") {
		t.Fatalf("SELECT: %q", sel)
	}
	fetch := bob.cmd("g", "FETCH 1:2 (BODY[])", "OK")
	body := strings.Join(fetch, "\n")
	if !strings.Contains(body, "first body") || !strings.Contains(body, "second body") {
		t.Fatalf("FETCH bodies: %q", fetch)
	}
	first, second := seqOfSubject(t, fetch, "first"), seqOfSubject(t, fetch, "second")
	bob.cmd("h", "STORE "+first+" +FLAGS (\\Seen)", "OK")
	// \Seen is bob's: the sharable folder's files keep their names, and
	// alice, another reader, sees the message unseen.
	for _, f := range sharableFiles(t, sharable, "Lists") {
		if strings.HasPrefix(f, "new/") || !strings.HasSuffix(f, ":2,") {
			t.Errorf("sharable folder file %q: want cur/KEY:2, untouched by bob's flags", f)
		}
	}
	alice := env.login("alice", "secret")
	alice.cmd("a", "EXAMINE shared.team.Lists", "OK")
	af := alice.cmd("b", "FETCH 1:2 (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])", "OK")
	if strings.Contains(strings.Join(af, "\n"), `\Seen`) {
		t.Errorf("alice sees bob's \\Seen: %q", af)
	}

	// EXPUNGE: Lists is writable but sticky (maildirmake -s write), so bob
	// removes the message he owns and not the one the admin delivered,
	// which stays without \Deleted, as with Courier.
	files := sharableFiles(t, sharable, "Lists")
	var secondFile string
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join(sharable, ".Lists", f))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(data), "second body") {
			secondFile = f
		}
	}
	if err := os.Lchown(filepath.Join(sharable, ".Lists", secondFile), 1001, 1001); err != nil {
		t.Fatal(err)
	}
	bob.cmd("i", "STORE 1:2 +FLAGS (\\Deleted)", "OK")
	exp := bob.cmd("j", "EXPUNGE", "OK")
	expunges := 0
	for _, l := range exp {
		if strings.HasSuffix(l, " EXPUNGE") {
			expunges++
		}
	}
	if !hasLine(exp, "* "+second+" EXPUNGE") || expunges != 1 {
		t.Errorf("EXPUNGE: %q, want only message %s expunged", exp, second)
	}
	after := sharableFiles(t, sharable, "Lists")
	if len(after) != 1 || slices.Contains(after, secondFile) {
		t.Errorf("sharable Lists after EXPUNGE = %q, want only the admin's message", after)
	}
	fl := bob.cmd("k", "FETCH 1 (FLAGS)", "OK")
	if strings.Contains(fl[0], `\Deleted`) || !strings.Contains(fl[0], `\Seen`) {
		t.Errorf("the message bob may not remove: %q, want \\Seen without \\Deleted", fl)
	}

	// APPEND into the writable folder lands in the sharable folder.
	msg := "Subject: from bob\r\n\r\nhello team\r\n"
	bob.send("l APPEND shared.team.Lists {" + itoa(len(msg)) + "}\r\n")
	bob.expect("+")
	bob.send(msg + "\r\n")
	bob.expect("l OK")
	if n := len(sharableFiles(t, sharable, "Lists")); n != 2 {
		t.Errorf("sharable Lists holds %d messages after APPEND, want 2", n)
	}
	if l := bob.cmd("m", "NOOP", "OK"); !hasLine(l, "* 2 EXISTS") {
		t.Errorf("NOOP after APPEND: %q, want the appended message in the view", l)
	}

	// A "-s read" folder: read-only for bob whatever he asks; STORE and
	// EXPUNGE are refused and the message stays.
	bob.cmd("n", "SELECT shared.team.News", "OK [READ-ONLY]")
	nf := bob.cmd("o", "FETCH 1 (BODY[])", "OK")
	if !strings.Contains(strings.Join(nf, "\n"), "news body") {
		t.Errorf("FETCH news: %q", nf)
	}
	bob.cmd("p", "STORE 1 +FLAGS (\\Deleted)", "NO")
	bob.cmd("q", "EXPUNGE", "NO")
	if n := len(sharableFiles(t, sharable, "News")); n != 1 {
		t.Errorf("sharable News holds %d messages, want 1", n)
	}
	bob.send("r APPEND shared.team.News {" + itoa(len(msg)) + "}\r\n")
	if l := bob.expect("r NO"); !strings.Contains(l, "NOPERM") {
		t.Errorf("APPEND into a read-only folder: %q", l)
	}

	// The folder without permissions for others is not there at all.
	bob.cmd("s", "SELECT shared.team.Private", "NO [NONEXISTENT]")
	bob.cmd("t", "UNSUBSCRIBE shared.team.Lists", "OK")
	if _, err := os.Lstat(view); err == nil {
		t.Error("UNSUBSCRIBE left the private view")
	}
	if n := len(sharableFiles(t, sharable, "Lists")); n != 2 {
		t.Errorf("UNSUBSCRIBE touched the sharable folder: %d messages", n)
	}
}

// TestFSSharedCourierNamespace: with CourierNamespace the personal folders
// are "INBOX." and the shared ones "shared.", as Courier lists them.
func TestFSSharedCourierNamespace(t *testing.T) {
	needRoot(t)
	env := newTestEnv(t, func(o *Options) { o.CourierNamespace = true })
	env.module.setIDs("bob", 1001, 1001)
	sharable := sharableMaildir(t)
	env.maildir("bob")
	maildirmake(t, "--add", "team="+sharable, env.maildirPath("bob"))
	bob := env.login("bob", "hunter2")
	if l := bob.cmd("a", "NAMESPACE", "OK"); !hasLine(l, `* NAMESPACE (("INBOX." ".")) (("#shared." ".")) (("shared." "."))`) {
		t.Fatalf("NAMESPACE: %q", l)
	}
	l := bob.cmd("b", `LIST "" "*"`, "OK")
	if !hasLine(l, `* LIST (\HasNoChildren) "." shared.team.Lists`) || !hasLine(l, `* LIST (\HasNoChildren \Sent) "." INBOX.Sent`) {
		t.Errorf("LIST: %q", l)
	}
	bob.cmd("c", "CREATE shared.team.New", "NO")
	bob.cmd("d", "EXAMINE shared.team.Lists", "OK [READ-ONLY]")
}

// TestFSSharedWithoutSharedMaildirs: a user without shared-maildirs has no
// "shared." hierarchy; the name is an ordinary folder name.
func TestFSSharedWithoutSharedMaildirs(t *testing.T) {
	env := newTestEnv(t, nil)
	bob := env.login("bob", "hunter2")
	if l := bob.cmd("a", "NAMESPACE", "OK"); !hasLine(l, `* NAMESPACE (("" ".")) (("#shared." ".")) NIL`) {
		t.Fatalf("NAMESPACE: %q", l)
	}
	bob.cmd("b", "CREATE shared.x", "OK")
	bob.cmd("c", "SELECT shared.x", "OK")
}

// TestFSSharedStatusDoesNotSubscribe: STATUS and LIST-STATUS of shared
// folders the user has not subscribed to answer from the sharable folder
// and make nothing: no private view (which would subscribe the user), no
// claim of the folder's new/ messages. Once subscribed, STATUS reads the
// view as before.
func TestFSSharedStatusDoesNotSubscribe(t *testing.T) {
	needRoot(t)
	env := newTestEnv(t, nil)
	env.module.setIDs("bob", 1001, 1001)
	sharable := sharableMaildir(t)
	deliverTo(t, sharable, "Lists", "Subject: first\r\n\r\nfirst body\r\n")
	deliverTo(t, sharable, "Lists", "Subject: second\r\n\r\nsecond body\r\n")
	env.maildir("bob")
	maildirmake(t, "--add", "team="+sharable, env.maildirPath("bob"))
	before := sharableFiles(t, sharable, "Lists")
	views := filepath.Join(env.maildirPath("bob"), "shared-folders")

	bob := env.login("bob", "hunter2")
	list := bob.cmd("a", `LIST "" "*" RETURN (STATUS (MESSAGES UNSEEN RECENT UIDNEXT UIDVALIDITY SIZE))`, "OK")
	if !hasLine(list, `* STATUS shared.team.Lists (MESSAGES 2 UNSEEN 2 RECENT 2 UIDNEXT 3 SIZE 62)`) ||
		!hasLine(list, `* STATUS shared.team.News (MESSAGES 0 UNSEEN 0 RECENT 0 UIDNEXT 1 SIZE 0)`) {
		t.Errorf("LIST-STATUS of unsubscribed shared folders:\n%s", strings.Join(list, "\n"))
	}
	st := bob.cmd("b", "STATUS shared.team.Lists (MESSAGES UIDVALIDITY MAILBOXID)", "OK")
	if !hasLine(st, `* STATUS shared.team.Lists (MESSAGES 2)`) {
		t.Errorf("STATUS: %q", st)
	}
	bob.cmd("c", "STATUS shared.team.Private (MESSAGES)", "NO")
	if _, err := os.Stat(views); err == nil {
		entries, _ := os.ReadDir(filepath.Join(views, "team"))
		t.Fatalf("STATUS made private views: %v", entries)
	}
	if after := sharableFiles(t, sharable, "Lists"); !slices.Equal(before, after) {
		t.Errorf("STATUS touched the sharable folder: %q, was %q", after, before)
	}
	if l := bob.cmd("d", `LSUB "" "*"`, "OK"); strings.Contains(strings.Join(l, "\n"), "shared.team") {
		t.Errorf("LSUB after STATUS: %q", l)
	}

	// Subscribed: the view answers, with what only it has.
	bob.cmd("e", "SUBSCRIBE shared.team.Lists", "OK")
	st = bob.cmd("f", "STATUS shared.team.Lists (MESSAGES UIDNEXT UIDVALIDITY)", "OK")
	if !regexp.MustCompile(`^\* STATUS shared\.team\.Lists \(MESSAGES 2 UIDNEXT 3 UIDVALIDITY \d+\)$`).MatchString(st[0]) {
		t.Errorf("STATUS of the subscribed folder: %q", st)
	}
}
