package imap

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	imap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"postern/mailbox/acl"
)

// listNames returns the names LIST "" "*" shows a client.
func listNames(t *testing.T, c *imapclient.Client) []string {
	t.Helper()
	boxes, err := c.List("", "*", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, b := range boxes {
		names = append(names, b.Mailbox)
	}
	return names
}

func isNoPerm(err error) bool {
	var ie *imap.Error
	return errors.As(err, &ie) && ie.Type == imap.StatusResponseTypeNo && ie.Code == "NOPERM"
}

// TestSharedFolderGrantAndRevoke is the scenario, driven with
// go-imap v2: alice grants bob "lr" on Work; bob sees #shared.alice.Work,
// reads it, may not change it (NOPERM); alice revokes and it is gone.
func TestSharedFolderGrantAndRevoke(t *testing.T) {
	registry := ""
	env := newTestEnv(t, func(o *Options) {
		registry = filepath.Join(t.TempDir(), "state", "imap-shared")
		o.SharedRegistry = registry
	})
	alice := env.dialClient("alice", "secret", nil)
	if err := alice.Create("Work", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := alice.Create("Private", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	env.deliver("alice", "Work", "Subject: plans\n\nthe plans\n")
	env.deliver("alice", "Private", "Subject: diary\n\nsecret\n")

	bob := env.dialClient("bob", "hunter2", nil)
	for _, n := range listNames(t, bob) {
		if strings.HasPrefix(n, "#shared") {
			t.Fatalf("bob sees %q before any grant", n)
		}
	}
	if _, err := bob.Select("#shared.alice.Work", nil).Wait(); err == nil {
		t.Fatal("bob selected alice's Work without a grant")
	}

	if err := alice.SetACL("Work", "bob", imap.RightModificationReplace, imap.RightSet("lr")).Wait(); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(registry); err != nil || string(data) != "alice\tWork\n" {
		t.Fatalf("registry = %q, %v", data, err)
	}
	acls, err := alice.GetACL("Work").Wait()
	if err != nil {
		t.Fatal(err)
	}
	if got := string(acls.Rights["bob"]); got != "lr" {
		t.Fatalf("GETACL bob = %q, want lr (%v)", got, acls.Rights)
	}

	names := strings.Join(listNames(t, bob), " ")
	if !strings.Contains(names, "#shared.alice.Work") {
		t.Fatalf("bob's LIST %q lacks #shared.alice.Work", names)
	}
	if strings.Contains(names, "Private") {
		t.Fatalf("bob's LIST %q reveals alice's Private", names)
	}
	my, err := bob.MyRights("#shared.alice.Work").Wait()
	if err != nil || string(my.Rights) != "lr" {
		t.Fatalf("MYRIGHTS = %+v, %v; want lr", my, err)
	}
	sel, err := bob.Select("#shared.alice.Work", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if sel.NumMessages != 1 {
		t.Fatalf("bob sees %d messages, want 1", sel.NumMessages)
	}
	msgs, err := bob.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{
		UID: true, Flags: true,
		BodySection: []*imap.FetchItemBodySection{{}},
	}).Collect()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("FETCH: %v %v", msgs, err)
	}
	if body := msgs[0].FindBodySection(&imap.FetchItemBodySection{}); !strings.Contains(string(body), "the plans") {
		t.Fatalf("body %q", body)
	}
	// Without "s" the FETCH of the body did not set \Seen for everyone.
	flags := fetchUIDFlags(t, bob)
	for _, f := range flags[msgs[0].UID] {
		if f == imap.FlagSeen {
			t.Fatal("FETCH BODY[] set \\Seen without the s right")
		}
	}
	err = bob.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagSeen}}, nil).Close()
	if !isNoPerm(err) {
		t.Fatalf("STORE \\Seen: %v, want NO [NOPERM]", err)
	}
	err = bob.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close()
	if !isNoPerm(err) {
		t.Fatalf("STORE \\Deleted: %v, want NO [NOPERM]", err)
	}
	if err := bob.Expunge().Close(); !isNoPerm(err) {
		t.Fatalf("EXPUNGE: %v, want NO [NOPERM]", err)
	}
	msg := []byte("Subject: from bob\r\n\r\nhi\r\n")
	app := bob.Append("#shared.alice.Work", int64(len(msg)), nil)
	app.Write(msg)
	app.Close()
	if _, err := app.Wait(); !isNoPerm(err) {
		t.Fatalf("APPEND: %v, want NO [NOPERM]", err)
	}
	if _, err := bob.Copy(imap.SeqSetNum(1), "#shared.alice.Work").Wait(); !isNoPerm(err) {
		t.Fatalf("COPY into: %v, want NO [NOPERM]", err)
	}
	if err := bob.SetACL("#shared.alice.Work", "bob", imap.RightModificationAdd, imap.RightSet("w")).Wait(); !isNoPerm(err) {
		t.Fatalf("SETACL without a: %v, want NO [NOPERM]", err)
	}
	if err := bob.Delete("#shared.alice.Work").Wait(); !isNoPerm(err) {
		t.Fatalf("DELETE without x: %v, want NO [NOPERM]", err)
	}
	// A folder without "l" is as good as absent.
	if _, err := bob.Select("#shared.alice.Private", nil).Wait(); err == nil || isNoPerm(err) || !strings.Contains(err.Error(), "NONEXISTENT") {
		t.Fatalf("SELECT Private: %v, want NO [NONEXISTENT]", err)
	}
	if _, err := bob.Status("#shared.alice.Private", &imap.StatusOptions{NumMessages: true}).Wait(); err == nil || !strings.Contains(err.Error(), "NONEXISTENT") {
		t.Fatalf("STATUS Private: %v, want NO [NONEXISTENT]", err)
	}
	// alice's message is untouched: not \Seen, not \Deleted.
	if _, err := alice.Select("Work", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	for _, fl := range fetchUIDFlags(t, alice) {
		if len(fl) != 0 {
			t.Fatalf("alice's message has flags %v after bob's attempts", fl)
		}
	}

	// Revoked: gone from LIST and from SELECT.
	if err := alice.SetACL("Work", "bob", imap.RightModificationRemove, imap.RightSet("lr")).Wait(); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(registry); err != nil || string(data) != "" {
		t.Fatalf("registry after revoke = %q, %v", data, err)
	}
	for _, n := range listNames(t, bob) {
		if strings.HasPrefix(n, "#shared") {
			t.Fatalf("bob still sees %q after the revoke", n)
		}
	}
	if _, err := bob.Select("#shared.alice.Work", nil).Wait(); err == nil {
		t.Fatal("bob selected alice's Work after the revoke")
	}
	// The ACL file is Courier's.
	data, err := os.ReadFile(filepath.Join(env.maildirPath("alice"), ".Work", acl.FileName))
	if err != nil || string(data) != "owner aceilprstwx\n" {
		t.Fatalf("courierimapacl = %q, %v", data, err)
	}
}

// TestSharedCourierACLFile: a courierimapacl file as Courier's maildiracl
// writes it (docs/imap.md, "ACL") is honoured: found at the owner's next
// login, "anyone" and "user=" rights add up, a negative right takes away,
// "c" is the create right, and a child folder inherits its parent's ACL.
func TestSharedCourierACLFile(t *testing.T) {
	env := newTestEnv(t, func(o *Options) {
		o.SharedRegistry = filepath.Join(t.TempDir(), "imap-shared")
	})
	env.module.users["carol"] = "pw"
	md := env.maildir("alice")
	for _, f := range []string{"Projects", "Projects.Old"} {
		if err := md.CreateFolder(f); err != nil {
			t.Fatal(err)
		}
	}
	env.deliver("alice", "Projects.Old", "Subject: old\n\nold project\n")
	sample := "owner aceilrstwx\nanyone lr\nuser=bob   swc\n-user=carol r\nadministrators aceilrstwx\n"
	if err := os.WriteFile(filepath.Join(env.maildirPath("alice"), ".Projects", acl.FileName), []byte(sample), 0o600); err != nil {
		t.Fatal(err)
	}
	// alice logs in once: the registry learns that she shares.
	a := env.login("alice", "secret")
	a.send("A1 GETACL Projects\r\n")
	a.expect(`* ACL Projects alice lrswipkxteacd anyone lr bob swkc -carol r administrators lrswikxteacd`)
	a.expect("A1 OK")

	b := env.login("bob", "hunter2")
	b.send(`B1 LIST "" "#shared*"` + "\r\n")
	lines := b.until("B1 OK")
	want := []string{
		`* LIST (\Noselect \HasChildren) "." #shared`,
		`* LIST (\Noselect \HasChildren) "." #shared.alice`,
		`* LIST (\HasChildren) "." #shared.alice.Projects`,
		`* LIST (\HasNoChildren) "." #shared.alice.Projects.Old`,
	}
	if strings.Join(lines[:len(lines)-1], "\n") != strings.Join(want, "\n") {
		t.Fatalf("bob's LIST:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	b.send("B2 MYRIGHTS #shared.alice.Projects\r\n")
	b.expect(`* MYRIGHTS #shared.alice.Projects lrswkc`)
	b.expect("B2 OK")
	b.send("B3 MYRIGHTS #shared.alice.Projects.Old\r\n")
	b.expect(`* MYRIGHTS #shared.alice.Projects.Old lrswkc`) // inherited
	b.expect("B3 OK")
	b.send("B4 SELECT #shared.alice.Projects.Old\r\n")
	sel := strings.Join(b.until("B4 OK [READ-WRITE]"), "\n")
	if !strings.Contains(sel, `* OK [PERMANENTFLAGS (\Answered \Flagged \Seen \Draft \*)]`) {
		t.Errorf("PERMANENTFLAGS for rights lrswkc:\n%s", sel)
	}
	b.send("B5 STORE 1 +FLAGS (\\Seen)\r\n")
	b.expect(`* 1 FETCH (FLAGS (\Seen`)
	b.expect("B5 OK")
	b.send("B6 STORE 1 +FLAGS (\\Answered)\r\n")
	b.until("B6 OK") // w
	b.send("B7 STORE 1 +FLAGS (\\Deleted)\r\n")
	b.expect("B7 NO [NOPERM]") // no t
	// "k" on the parent lets bob create a child in alice's Maildir.
	b.send("B8 CREATE #shared.alice.Projects.New\r\n")
	created := b.expect("B8 OK [MAILBOXID (")
	if _, err := os.Stat(filepath.Join(env.maildirPath("alice"), ".Projects.New")); err != nil {
		t.Fatalf("CREATE did not make alice's folder: %v", err)
	}
	// The MAILBOXID is the folder's, whoever asks (RFC 8474 4.1).
	if id, err := mailboxID(filepath.Join(env.maildirPath("alice"), ".Projects.New")); err != nil || !strings.Contains(created, "("+id+")") {
		t.Errorf("CREATE answered %q; the folder's id is %q (%v)", created, id, err)
	}
	b.send("B9 STATUS #shared.alice.Projects.Old (MESSAGES)\r\n")
	b.expect(`* STATUS #shared.alice.Projects.Old (MESSAGES 1)`)
	b.expect("B9 OK")

	// carol: "anyone lr" minus "-user=carol r": she sees it, cannot open it.
	c := env.login("carol", "pw")
	c.send("C1 MYRIGHTS #shared.alice.Projects\r\n")
	c.expect(`* MYRIGHTS #shared.alice.Projects l`)
	c.expect("C1 OK")
	c.send("C2 EXAMINE #shared.alice.Projects\r\n")
	c.expect("C2 NO [NOPERM]")
	c.send("C3 STATUS #shared.alice.Projects (MESSAGES)\r\n")
	c.expect("C3 NO [NOPERM]")
	// Names that look like the namespace but name nothing.
	for i, n := range []string{"#shared", "#shared.", "#shared.alice", "#shared.alice.", "#shared.nobody.INBOX", "#shared.alice..Projects", "#shared.alice.Projects/../x", "#shared.bob.INBOX"} {
		tag := "N" + string(rune('a'+i))
		c.send(tag + ` SELECT "` + n + `"` + "\r\n")
		line := c.expect(tag + " ")
		if !strings.HasPrefix(line, tag+" NO") {
			t.Errorf("SELECT %q: %q, want NO", n, line)
		}
	}
	// No personal folder may take a #shared name.
	c.send("D1 CREATE #shared.mine\r\n")
	c.expect("D1 NO")
	c.send("D2 CREATE #sharedX\r\n")
	c.expect("D2 OK")
}

// TestSharedExpungeRights: with "lrst" but no "e", bob may mark a message
// \Deleted but not remove it: EXPUNGE is NOPERM, CLOSE leaves it, MOVE out
// is NOPERM, COPY out into his own folder works. alice's session on the
// same folder sees bob's flag change as it would another session's of
// her own.
func TestSharedExpungeRights(t *testing.T) {
	env := newTestEnv(t, func(o *Options) { o.testIdlePoll = 50 * time.Millisecond })
	env.maildir("alice").CreateFolder("Team")
	env.deliver("alice", "Team", "Subject: one\n\nfirst\n")
	a := env.login("alice", "secret")
	a.send("A1 SETACL Team bob lrst\r\n")
	a.expect("A1 OK")
	a.send("A2 SELECT Team\r\n")
	a.until("A2 OK")

	b := env.login("bob", "hunter2")
	b.send("B1 SELECT #shared.alice.Team\r\n")
	b.until("B1 OK [READ-WRITE]")
	b.send("B2 STORE 1 +FLAGS.SILENT (\\Deleted \\Seen)\r\n")
	b.expect("B2 OK")
	// alice is told about bob's change at her next command.
	a.send("A3 NOOP\r\n")
	lines := strings.Join(a.until("A3 OK"), "\n")
	if !strings.Contains(lines, `\Deleted`) || !strings.Contains(lines, `\Seen`) {
		t.Fatalf("alice's NOOP after bob's STORE:\n%s", lines)
	}
	b.send("B3 EXPUNGE\r\n")
	b.expect("B3 NO [NOPERM]")
	b.send("B4 MOVE 1 INBOX\r\n")
	b.expect("B4 NO [NOPERM]")
	b.send("B5 COPY 1 INBOX\r\n")
	b.expect("B5 OK")
	b.send("B6 CLOSE\r\n")
	b.expect("B6 OK")
	b.send("B7 STATUS #shared.alice.Team (MESSAGES)\r\n")
	b.expect("* STATUS #shared.alice.Team (MESSAGES 1)") // CLOSE did not expunge
	b.expect("B7 OK")
	b.send("B8 STATUS INBOX (MESSAGES)\r\n")
	b.expect("* STATUS INBOX (MESSAGES 1)")
	b.expect("B8 OK")
	// With "e" as well, EXPUNGE works, and alice sees it.
	a.send("A4 SETACL Team bob +e\r\n")
	a.until("A4 OK")
	b.send("B9 SELECT #shared.alice.Team\r\n")
	b.until("B9 OK")
	b.send("C1 EXPUNGE\r\n")
	if lines := strings.Join(b.until("C1 OK"), "\n"); !strings.Contains(lines, "* 1 EXPUNGE") {
		t.Fatalf("bob's EXPUNGE:\n%s", lines)
	}
	a.send("A5 NOOP\r\n")
	if lines := strings.Join(a.until("A5 OK"), "\n"); !strings.Contains(lines, "* 1 EXPUNGE") {
		t.Fatalf("alice's NOOP after bob's EXPUNGE:\n%s", lines)
	}
}

// TestSharedCourierNamespace: in Courier mode personal names carry
// "INBOX." but shared ones do not: #shared.OWNER.FOLDER in both modes.
// A change to a folder's ACL does not reach existing children.
func TestSharedCourierNamespace(t *testing.T) {
	env := newTestEnv(t, func(o *Options) { o.CourierNamespace = true })
	a := env.login("alice", "secret")
	a.send("A1 CREATE INBOX.Work\r\n")
	a.expect("A1 OK")
	a.send("A0 CREATE INBOX.Work.Q1\r\n")
	a.expect("A0 OK")
	a.send("A2 SETACL INBOX.Work anyone lr\r\n")
	a.expect("A2 OK")
	a.send("A3 SETACL INBOX bob lr\r\n")
	a.expect("A3 OK")
	b := env.login("bob", "hunter2")
	b.send("B1 NAMESPACE\r\n")
	b.expect(`* NAMESPACE (("INBOX." ".")) (("#shared." ".")) NIL`)
	b.expect("B1 OK")
	b.send(`B2 LIST "" "#shared.alice.*"` + "\r\n")
	lines := b.until("B2 OK")
	got := strings.Join(lines[:len(lines)-1], "\n")
	// Work.Q1 existed before Work was shared: it kept its own ACL (owner
	// only), as in Courier, and granting INBOX shared no other folder.
	want := strings.Join([]string{
		`* LIST (\HasNoChildren) "." #shared.alice.INBOX`,
		`* LIST (\HasNoChildren) "." #shared.alice.Work`,
	}, "\n")
	if got != want {
		t.Fatalf("LIST:\n%s\nwant:\n%s", got, want)
	}
	b.send("B3 EXAMINE #shared.alice.INBOX\r\n")
	b.until("B3 OK [READ-ONLY]")
	b.send("B4 GETACL INBOX.Work\r\n")
	b.expect("B4 NO") // bob's own, and it does not exist
	// A folder created after the grant inherits it.
	a.send("A4 CREATE INBOX.Work.Q2\r\n")
	a.expect("A4 OK")
	b.send(`B5 LIST "" "#shared.alice.Work.*"` + "\r\n")
	b.expect(`* LIST (\HasNoChildren) "." #shared.alice.Work.Q2`)
	b.expect("B5 OK")
}

// TestEffectiveACLsMatchReadFolder: LIST's one-pass reading gives every
// folder the ACL acl.ReadFolder gives it, inheritance included.
func TestEffectiveACLsMatchReadFolder(t *testing.T) {
	root := t.TempDir()
	folders := []string{"INBOX", "A", "A.B", "A.B.C", "X.Y", "Z"}
	for _, f := range folders[1:] {
		if err := os.Mkdir(filepath.Join(root, "."+f), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	write := func(f, body string) {
		if err := os.WriteFile(filepath.Join(folderPath(root, f), acl.FileName), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("INBOX", "owner aceilrstwx\nuser=bob l\n")
	write("A", "user=bob lr\n")
	write("A.B.C", "anyone lrs\n")
	got := effectiveACLs(root, folders)
	for _, f := range folders {
		want, err := acl.ReadFolder(root, f)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got[f]) != fmt.Sprint(want) {
			t.Errorf("%s: one pass %v, ReadFolder %v", f, got[f], want)
		}
	}
	if r := got["A.B"].Rights("bob", false).String(); r != "lr" {
		t.Errorf("A.B inherits A: bob has %q", r)
	}
	if r := got["X.Y"].Rights("bob", false).String(); r != "l" {
		t.Errorf("X.Y (no X) inherits INBOX: bob has %q", r)
	}
}

// TestSharedSubscribe: a shared mailbox can be subscribed, LSUB and
// LIST (SUBSCRIBED) show it, and after a revoke it stays subscribed but
// not selectable until the user unsubscribes.
func TestSharedSubscribe(t *testing.T) {
	env := newTestEnv(t, nil)
	env.maildir("alice").CreateFolder("Work")
	a := env.login("alice", "secret")
	a.send("A1 SETACL Work bob lr\r\n")
	a.expect("A1 OK")
	b := env.login("bob", "hunter2")
	b.send("B0 SUBSCRIBE #shared.alice.Nope\r\n")
	b.expect("B0 NO [NONEXISTENT]")
	b.send("B1 SUBSCRIBE #shared.alice.Work\r\n")
	b.expect("B1 OK")
	b.send(`B2 LSUB "" "#shared*"` + "\r\n")
	b.expect(`* LSUB () "." #shared.alice.Work`)
	b.expect("B2 OK")
	b.send(`B3 LIST (SUBSCRIBED) "" "#shared*"` + "\r\n")
	b.expect(`* LIST (\HasNoChildren \Subscribed) "." #shared.alice.Work`)
	b.expect("B3 OK")
	a.send("A2 DELETEACL Work bob\r\n")
	a.expect("A2 OK")
	b.send(`B4 LSUB "" "#shared*"` + "\r\n")
	b.expect(`* LSUB (\Noselect) "." #shared.alice.Work`)
	b.expect("B4 OK")
	b.send("B5 UNSUBSCRIBE #shared.alice.Work\r\n")
	b.expect("B5 OK")
	b.send(`B6 LSUB "" "*"` + "\r\n")
	for _, l := range b.until("B6 OK") {
		if strings.Contains(l, "#shared") {
			t.Fatalf("still subscribed: %q", l)
		}
	}
	data, err := os.ReadFile(filepath.Join(env.maildirPath("bob"), "courierimapsubscribed"))
	if err != nil || strings.Contains(string(data), "#shared") {
		t.Fatalf("courierimapsubscribed = %q, %v", data, err)
	}
}

// Courier's "group=NAME" account option puts a user in an ACL group:
// "group=NAME" entries grant (and negative ones take away) rights to its
// members, and members of "administrators" have every right on every
// folder.
func TestSharedGroupIdentifiers(t *testing.T) {
	env := newTestEnv(t, func(o *Options) {
		o.SharedRegistry = filepath.Join(t.TempDir(), "state", "imap-shared")
	})
	env.module.addUser("carol", "pw-carol", "sales")
	env.module.addUser("dave", "pw-dave", "")
	env.module.addUser("root", "pw-root", acl.Administrators)
	alice := env.dialClient("alice", "secret", nil)
	for _, f := range []string{"Work", "Private"} {
		if err := alice.Create(f, nil).Wait(); err != nil {
			t.Fatal(err)
		}
	}
	env.deliver("alice", "Work", "Subject: plans\n\nthe plans\n")
	env.deliver("alice", "Private", "Subject: diary\n\nsecret\n")
	if err := alice.SetACL("Work", "group=sales", imap.RightModificationReplace, imap.RightSet("lr")).Wait(); err != nil {
		t.Fatal(err)
	}

	carol := env.dialClient("carol", "pw-carol", nil)
	names := strings.Join(listNames(t, carol), " ")
	if !strings.Contains(names, "#shared.alice.Work") || strings.Contains(names, "Private") {
		t.Fatalf("carol (group sales) lists %s", names)
	}
	if d, err := carol.Select("#shared.alice.Work", nil).Wait(); err != nil || d.NumMessages != 1 {
		t.Fatalf("carol selects alice's Work: %v, %+v", err, d)
	}
	carol.Unselect().Wait()

	dave := env.dialClient("dave", "pw-dave", nil)
	if strings.Contains(strings.Join(listNames(t, dave), " "), "#shared.alice") {
		t.Fatal("dave, in no group, sees alice's folders")
	}
	if _, err := dave.Select("#shared.alice.Work", nil).Wait(); err == nil {
		t.Fatal("dave selected a folder shared with a group he is not in")
	}

	// A negative group entry takes "r" back from the members.
	if err := alice.SetACL("Work", "-group=sales", imap.RightModificationReplace, imap.RightSet("r")).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := carol.Select("#shared.alice.Work", nil).Wait(); err == nil {
		t.Fatal("carol selected Work after -group=sales r")
	}

	// An administrator reaches a folder shared with nobody, with every right.
	root := env.dialClient("root", "pw-root", nil)
	if d, err := root.Select("#shared.alice.Private", nil).Wait(); err != nil || d.NumMessages != 1 {
		t.Fatalf("administrator selects alice's Private: %v, %+v", err, d)
	}
	// Also an account that shares nothing (bob: not in the registry).
	env.deliver("bob", "INBOX", "Subject: bob's\n\nhi\n")
	if d, err := root.Select("#shared.bob.INBOX", nil).Wait(); err != nil || d.NumMessages != 1 {
		t.Fatalf("administrator selects bob's INBOX: %v, %+v", err, d)
	}
	if _, err := carol.Select("#shared.bob.INBOX", nil).Wait(); err == nil {
		t.Fatal("carol, not an administrator, selected bob's INBOX")
	}
	mr, err := root.MyRights("#shared.alice.Private").Wait()
	if err != nil {
		t.Fatal(err)
	}
	if got := string(mr.Rights); !strings.Contains(got, "a") || !strings.Contains(got, "r") || !strings.Contains(got, "x") {
		t.Fatalf("administrator's MYRIGHTS on alice's Private = %q, want every right", got)
	}
}
