package smap

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"postern/auth"
	"postern/auth/passwd"
	"postern/auth/userdb"
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

// reachableDir is a temporary directory every user may search, as a
// home or a sharable maildir's parent is.
func reachableDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "postern-smap-fsshared-*")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func maildirmake(t *testing.T, args ...string) {
	t.Helper()
	var out bytes.Buffer
	if rc := maildir.MaildirmakeMain(args, &out, &out); rc != 0 {
		t.Fatalf("maildirmake %q: exit %d: %s", args, rc, out.String())
	}
}

// sharedFixture makes, as an admin would with maildirmake, a sharable
// maildir with a "-s write" folder Lists, a "-s read" folder News and a
// private folder Private, one message in each, and carol (uid 1001), a
// system user whose Maildir names it "team" in shared-maildirs. It
// returns the sharable maildir and carol's Maildir, and sets the server's
// authentication to carol's account (password "secret").
func sharedFixture(t *testing.T, opt *Options) (sharable, carol string) {
	t.Helper()
	top := reachableDir(t)
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
	carol = filepath.Join(home, "Maildir")
	if err := maildir.MakeFor(carol, 1001, 1001); err != nil {
		t.Fatal(err)
	}
	maildirmake(t, "--add", "team="+sharable, carol)

	hash, err := passwd.Hash("secret", passwd.SchemeMD5Crypt)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	src := fmt.Sprintf("carol\tuid=1001|gid=1001|home=%s|mail=%s|systempw=%s\n", home, carol, hash)
	if err := os.WriteFile(filepath.Join(dir, "userdb"), []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := userdb.Compile(filepath.Join(dir, "userdb"), filepath.Join(dir, "userdb.db")); err != nil {
		t.Fatal(err)
	}
	db, err := userdb.Open(filepath.Join(dir, "userdb.db"), userdb.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	opt.Auth = auth.NewService(db)
	return sharable, carol
}

// messageFiles lists a folder's message files as "cur/NAME" or "new/NAME".
func messageFiles(t *testing.T, folder string) []string {
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

func wantReply(t *testing.T, what, got, want string) {
	t.Helper()
	if got != want {
		t.Fatalf("%s:\n got %q\nwant %q", what, got, want)
	}
}

// TestFSSharedFolders is the admin's scenario over a real SMAP listener:
// carol lists the shared folders she may read (not the private one),
// opens and reads a read-only one, where every change is refused, and a
// writable one, where her flags stay hers, ADD and COPY put messages into
// the sharable folder as hers, and EXPUNGE removes only what the
// permissions let her remove.
func TestFSSharedFolders(t *testing.T) {
	needRoot(t)
	var sharable, carol string
	env := newTestEnv(t, func(o *Options) { sharable, carol = sharedFixture(t, o) })
	cl := env.dial()
	wantReply(t, "login", cl.cmd(`\SMAP1 LOGIN carol secret`), "+OK SMAP1 LOGIN Ok.\n")

	wantReply(t, "LIST", cl.cmd("LIST"), `* LIST "INBOX" "New Mail" FOLDER`+"\n"+
		`* LIST "INBOX" "Folders" DIRECTORY`+"\n"+
		`* LIST "public" "Public Folders" DIRECTORY`+"\n"+
		`* LIST "shared" "Shared Folders" DIRECTORY`+"\n+OK LIST completed\n")
	wantReply(t, "LIST shared", cl.cmd("LIST shared"), `* LIST "team" "team" DIRECTORY`+"\n+OK LIST completed\n")
	// Private has no group or world permissions: it does not show.
	wantReply(t, "LIST shared team", cl.cmd("LIST shared team"),
		`* LIST "Lists" "Lists" FOLDER`+"\n"+`* LIST "News" "News" FOLDER`+"\n+OK LIST completed\n")
	wantReply(t, "OPEN Private", cl.cmd("OPEN shared team Private"), "-ERR Cannot open the folder: No such file or directory\n")
	wantReply(t, "STATUS Private", cl.cmd("STATUS FULL shared team Private"), "-ERR Cannot read folder status: No such file or directory\n")

	// The read-only folder: read, never changed.
	wantReply(t, "STATUS News", cl.cmd("STATUS FULL shared team News"), "* STATUS EXISTS=1 UNSEEN=1\n+OK Folder status retrieved\n")
	wantReply(t, "OPEN News", cl.cmd("OPEN shared team News"), "* EXISTS 1\n+OK Folder opened\n")
	if got := cl.cmd("FETCH 1 CONTENTS=BODY"); !strings.Contains(got, "News body") || strings.Contains(got, "FLAGS=SEEN") {
		t.Fatalf("FETCH in a read-only folder: %q (want the body, and no SEEN set)", got)
	}
	wantReply(t, "STORE News", cl.cmd("STORE 1 +FLAGS=SEEN"), "-ERR Cannot update folder status: Permission denied\n")
	wantReply(t, "FLAGS News", cl.cmd("FETCH 1 FLAGS"), "* FETCH 1 FLAGS=\n+OK Message retrieved.\n")
	wantReply(t, "EXPUNGE News", cl.cmd("EXPUNGE 1"), "-ERR Cannot expunge messages: Permission denied\n")
	wantReply(t, "MOVE out of News", cl.cmd(`MOVE 1 "" INBOX`), "-ERR Cannot copy messages: Permission denied\n")
	wantReply(t, "COPY into News", cl.cmd(`COPY 1 "" shared team News`), "-ERR Cannot copy messages: Permission denied\n")
	wantReply(t, "ADD into News", cl.cmd(`ADD FOLDER shared team News ""`), "-ERR Invalid folder: Permission denied\n")
	cl.cmd("RSET")
	if files := messageFiles(t, filepath.Join(sharable, ".News")); len(files) != 1 || !strings.HasPrefix(files[0], "new/") {
		t.Errorf("the read-only folder changed: %q", files)
	}
	// COPY out of a shared folder copies the message itself, never the
	// link to it.
	if got := cl.cmd(`COPY 1 "" INBOX`); !strings.HasPrefix(got, `* COPY 1 "NEWUID=`) {
		t.Fatalf("COPY to INBOX: %q", got)
	}
	for _, f := range messageFiles(t, carol) {
		if st, err := os.Lstat(filepath.Join(carol, f)); err != nil || !st.Mode().IsRegular() {
			t.Errorf("INBOX %s is not a regular file: %v", f, err)
		}
	}

	// The writable folder: flags are carol's own.
	wantReply(t, "OPEN Lists", cl.cmd("OPEN shared team Lists"), "* EXISTS 1\n+OK Folder opened\n")
	wantReply(t, "STORE Lists", cl.cmd("STORE 1 +FLAGS=MARKED,SEEN"), "* FETCH 1 FLAGS=MARKED,SEEN\n+OK Folder status updated\n")
	for _, f := range messageFiles(t, filepath.Join(sharable, ".Lists")) {
		if !strings.HasSuffix(f, ":2,") {
			t.Errorf("carol's flags reached the sharable folder's file %q", f)
		}
	}
	view := filepath.Join(carol, "shared-folders", "team", "Lists")
	if files := messageFiles(t, view); len(files) != 1 || !strings.HasSuffix(files[0], ":2,FS") {
		t.Errorf("view files %q: want one link with carol's flags FS", files)
	}

	// ADD puts the message into the sharable folder, as carol's.
	wantReply(t, "ADD folder", cl.cmd(`ADD FOLDER shared team Lists ""`), "+OK Will add to this folder\n")
	wantReply(t, "ADD data", cl.cmd("ADD {.}"), "> Go ahead\n")
	got := cl.cmd("Subject: from carol\n\ncarol's body\n.")
	if !strings.HasPrefix(got, `* ADD "UID=`) || !strings.HasSuffix(got, "+OK Message saved\n") {
		t.Fatalf("ADD: %q", got)
	}
	var carols string
	for _, f := range messageFiles(t, filepath.Join(sharable, ".Lists")) {
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join(sharable, ".Lists", f), &st); err != nil {
			t.Fatal(err)
		}
		if st.Uid == 1001 {
			carols = f
		}
	}
	if carols == "" {
		t.Fatal("ADD's message in the sharable folder is not carol's")
	}
	wantReply(t, "NOOP", cl.cmd("NOOP"), "* EXISTS 2\n+OK Folder updated\n")
	if got := cl.cmd("FETCH 2 CONTENTS.PEEK=BODY"); !strings.Contains(got, "carol's body") {
		t.Fatalf("FETCH of the added message: %q", got)
	}

	// EXPUNGE: carol may remove her own message from the sticky folder,
	// not root's, which stays and loses DELETED, as in Courier.
	wantReply(t, "STORE DELETED", cl.cmd("STORE 1-2 +FLAGS=DELETED"),
		"* FETCH 1 FLAGS=MARKED,SEEN,DELETED\n* FETCH 2 FLAGS=DELETED\n+OK Folder status updated\n")
	got = cl.cmd("EXPUNGE")
	if !strings.Contains(got, "* EXPUNGE 2\n") || strings.Contains(got, "* EXPUNGE 1\n") || !strings.HasSuffix(got, "+OK Folder updated\n") {
		t.Fatalf("EXPUNGE: %q", got)
	}
	if files := messageFiles(t, filepath.Join(sharable, ".Lists")); len(files) != 1 || files[0] == carols {
		t.Errorf("sharable folder after EXPUNGE: %q (want root's message only)", files)
	}
	if got := cl.cmd("FETCH 1 FLAGS"); got != "* FETCH 1 FLAGS=MARKED,SEEN\n+OK Message retrieved.\n" {
		t.Errorf("the message carol may not remove: %q (want it kept, without DELETED)", got)
	}

	// Hostile names make nothing and read nothing.
	for _, cmd := range []string{"OPEN shared team ../x", "OPEN shared ../team Lists", "OPEN shared team Lists/../../x", `OPEN shared team ""`, "OPEN shared team"} {
		if got := cl.cmd(cmd); !strings.HasPrefix(got, "-ERR ") {
			t.Errorf("%s: %q", cmd, got)
		}
	}
	entries, _ := os.ReadDir(filepath.Join(carol, "shared-folders"))
	if len(entries) != 1 || entries[0].Name() != "team" {
		t.Errorf("shared-folders holds %v, want only team", entries)
	}
	cl.cmd("LOGOUT")
}

// TestFSSharedWithoutSharedMaildirs: a user without shared-maildirs sees
// Courier's top level and "shared" stays an invalid first word.
func TestFSSharedWithoutSharedMaildirs(t *testing.T) {
	env := newTestEnv(t)
	cl := env.login()
	wantReply(t, "LIST", cl.cmd("LIST"), `* LIST "INBOX" "New Mail" FOLDER`+"\n"+
		`* LIST "INBOX" "Folders" DIRECTORY`+"\n"+
		`* LIST "public" "Public Folders" DIRECTORY`+"\n+OK LIST completed\n")
	wantReply(t, "LIST shared", cl.cmd("LIST shared"), "+OK LIST completed\n")
	wantReply(t, "OPEN shared", cl.cmd("OPEN shared team Lists"), "-ERR Invalid folder: Invalid argument\n")
	if _, err := os.Stat(filepath.Join(env.root, "shared-folders")); err == nil {
		t.Error("shared-folders made for a user without shared-maildirs")
	}
}
