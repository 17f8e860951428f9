package deliver

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"postern/auth"
	"postern/internal/dirfact"
	"postern/mailbox/maildir"
)

func TestDeliverPlainGoesToInboxWithTrace(t *testing.T) {
	s := newTestSite(t, "alice@example.test")
	o := s.deliver("alice@example.test", "", "From: b@example.org\r\nSubject: x\r\n\r\nbody\r\n")
	wantOK(t, o)
	if len(o.Delivered) != 1 || o.Delivered[0] != s.account("alice@example.test").MaildirPath() {
		t.Fatalf("delivered %v", o.Delivered)
	}
	got := s.folder("alice@example.test", "INBOX")
	want := "Return-Path: <bob@example.org>\nDelivered-To: alice@example.test\nFrom: b@example.org\nSubject: x\n\nbody\n"
	if len(got) != 1 || got[0] != want {
		t.Fatalf("INBOX %q, want %q (CRLF made LF)", got, want)
	}
}

func TestDeliverNoAccountIsPermanent(t *testing.T) {
	s := newTestSite(t)
	o := s.agent.Deliver(context.Background(), Request{Message: strings.NewReader(testMessage)})
	if o.Status != StatusPermanent || o.ExitCode != ExitNoUser {
		t.Fatalf("%+v", o)
	}
}

func TestDeliverOverQuotaIs77(t *testing.T) {
	s := newTestSite(t, "alice@example.test 200S")
	wantOK(t, s.deliver("alice@example.test", "", testMessage))
	o := s.deliver("alice@example.test", "", testMessage)
	if o.Status != StatusPermanent || o.ExitCode != ExitOverQuota || o.Reason != "maildir over quota." {
		t.Fatalf("second delivery %+v, want 77 maildir over quota.", o)
	}
	// Through a filter as well.
	s.write("alice@example.test", ".mailfilter", "to $DEFAULT\n")
	o = s.deliver("alice@example.test", "", testMessage)
	if o.ExitCode != ExitOverQuota {
		t.Fatalf("filter delivery %+v, want 77", o)
	}
}

func TestDeliverStickyHomeHoldsMail(t *testing.T) {
	s := newTestSite(t, "alice@example.test")
	home := s.home("alice@example.test")
	os.Chmod(home, 0o700|os.ModeSticky)
	o := s.deliver("alice@example.test", "", testMessage)
	if o.Status != StatusTemporary || o.ExitCode != ExitTempFail {
		t.Fatalf("%+v", o)
	}
	os.Chmod(home, 0o700)
	wantOK(t, s.deliver("alice@example.test", "", testMessage))
}

// The agent remembers a home without instruction files or filters while
// the home is unchanged (dirfact); creating one there must be seen at the
// very next delivery.
func TestInstructionFilesCreatedInARememberedHomeAreSeen(t *testing.T) {
	s := newTestSite(t, "alice@example.test")
	s.makeFolder("alice@example.test", "Work")
	home := s.home("alice@example.test")
	before, err := os.Stat(home)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(dirfact.Settle + 100*time.Millisecond) // the home settles: it is remembered
	wantOK(t, s.deliver("alice@example.test", "", testMessage))
	if st, _ := os.Stat(home); !s.agent.plainHomes.Holds(home, st) || !st.ModTime().Equal(before.ModTime()) {
		t.Fatal("a settled home without instruction files was not remembered")
	}
	s.write("alice@example.test", ".courier", "./Maildir/.Work/\n")
	wantOK(t, s.deliver("alice@example.test", "", testMessage))
	if got := s.folder("alice@example.test", "Work"); len(got) != 1 {
		t.Fatalf("a .courier created after the home was remembered was not followed: Work has %d messages", len(got))
	}
	os.Remove(filepath.Join(home, ".courier"))
	time.Sleep(dirfact.Settle + 100*time.Millisecond)
	wantOK(t, s.deliver("alice@example.test", "", testMessage))
	s.write("alice@example.test", ".mailfilter", "to $DEFAULT/.Work/\n")
	wantOK(t, s.deliver("alice@example.test", "", testMessage))
	if got := s.folder("alice@example.test", "Work"); len(got) != 2 {
		t.Fatalf("a .mailfilter created after the home was remembered was not run: Work has %d messages", len(got))
	}
	if got := s.folder("alice@example.test", "INBOX"); len(got) != 2 {
		t.Fatalf("INBOX has %d messages, want the 2 plain deliveries", len(got))
	}
}

func TestDotCourierEveryLineKind(t *testing.T) {
	s := newTestSite(t, "alice@example.test")
	s.makeFolder("alice@example.test", "Work")
	s.write("alice@example.test", ".courier", `# Alice's delivery instructions

./Maildir/.Work/
./mbox
| cat > prog.out; echo "$SENDER $RECIPIENT $EXT" > env.out
&carol@example.org, dave@example.net
erin@example.com
./Maildir/
`)
	o := s.deliver("alice@example.test", "", testMessage)
	wantOK(t, o)
	home := s.home("alice@example.test")
	if got := s.folder("alice@example.test", "Work"); len(got) != 1 || !strings.HasSuffix(got[0], testMessage) {
		t.Fatalf("Work: %q", got)
	}
	if got := s.folder("alice@example.test", "INBOX"); len(got) != 1 {
		t.Fatalf("INBOX: %q", got)
	}
	mbox := readFile(t, filepath.Join(home, "mbox"))
	if !strings.HasPrefix(mbox, "From bob@example.org ") || !strings.Contains(mbox, "\nReturn-Path: <bob@example.org>\n") || !strings.HasSuffix(mbox, "see you.\n\n") {
		t.Fatalf("mbox %q", mbox)
	}
	if got := readFile(t, filepath.Join(home, "prog.out")); !strings.HasSuffix(got, testMessage) {
		t.Fatalf("program stdin %q", got)
	}
	if got := readFile(t, filepath.Join(home, "env.out")); got != "bob@example.org alice@example.test \n" {
		t.Fatalf("program env %q", got)
	}
	sent := s.sent()
	if !strings.Contains(sent, "-oi -f bob@example.org carol@example.org dave@example.net\n---\n") || !strings.Contains(sent, "-oi -f bob@example.org erin@example.com\n") {
		t.Fatalf("forwards: %q", sent)
	}
	if len(o.Delivered) != 6 {
		t.Fatalf("delivered %q", o.Delivered)
	}
}

func TestDotCourierProgramExitCodes(t *testing.T) {
	for _, tc := range []struct {
		code      string
		status    Status
		exit      int
		nextLine  bool // the ./Maildir/ line after the program ran
		delivered bool
	}{
		{"0", StatusOK, 0, true, true},
		{"99", StatusOK, 0, false, true},
		{"100", StatusPermanent, 100, false, false},
		{"64", StatusPermanent, 64, false, false},
		{"77", StatusPermanent, 77, false, false},
		{"112", StatusPermanent, 112, false, false},
		{"75", StatusTemporary, 75, false, false},
		{"111", StatusTemporary, 75, false, false},
	} {
		t.Run("exit"+tc.code, func(t *testing.T) {
			s := newTestSite(t, "alice@example.test")
			s.write("alice@example.test", ".courier", "|exit "+tc.code+"\n./Maildir/\n")
			o := s.deliver("alice@example.test", "", testMessage)
			if o.Status != tc.status || o.ExitCode != tc.exit {
				t.Fatalf("outcome %+v, want %v %d", o, tc.status, tc.exit)
			}
			inbox, _ := maildir.Open(s.account("alice@example.test").MaildirPath())
			got := 0
			if inbox != nil {
				got = len(s.folder("alice@example.test", "INBOX"))
			}
			if (got == 1) != tc.nextLine {
				t.Fatalf("INBOX has %d messages; next line should run: %v", got, tc.nextLine)
			}
			if o.Status != StatusOK && o.Reason == "" {
				t.Fatal("no reason")
			}
		})
	}
}

func TestDotCourierDynamicInstructions(t *testing.T) {
	s := newTestSite(t, "alice@example.test")
	s.makeFolder("alice@example.test", "Dyn")
	s.write("alice@example.test", ".courier", "|| echo ./Maildir/.Dyn/; echo '# a comment'\n./mbox\n")
	wantOK(t, s.deliver("alice@example.test", "", testMessage))
	if got := s.folder("alice@example.test", "Dyn"); len(got) != 1 {
		t.Fatalf("Dyn %q", got)
	}
	if _, err := os.Stat(filepath.Join(s.home("alice@example.test"), "mbox")); err != nil {
		t.Fatal("the line after || did not run")
	}
	// Output that recurses forever is stopped.
	s.write("alice@example.test", ".courier", "|| echo '|| echo ./mbox2'; echo '|| cat .courier'\n")
	os.WriteFile(filepath.Join(s.home("alice@example.test"), ".courier"), []byte("|| cat .courier\n"), 0o600)
	if o := s.deliver("alice@example.test", "", testMessage); o.Status != StatusTemporary {
		t.Fatalf("recursive || %+v", o)
	}
}

func TestDotCourierExtensions(t *testing.T) {
	s := newTestSite(t, "alice@example.test")
	s.write("alice@example.test", ".courier-foo-bar", "./foo-bar.mbox\n")
	s.write("alice@example.test", ".courier-foo-default", "./foo-default.mbox\n| echo \"$DEFAULT $EXT $EXT2\" > default.out\n")
	s.write("alice@example.test", ".courier-default", "./default.mbox\n")
	s.write("alice@example.test", ".qmail-list", "./list.mbox\n")
	home := s.home("alice@example.test")
	count := func(f string) int {
		b, _ := os.ReadFile(filepath.Join(home, f))
		return strings.Count(string(b), "\nReturn-Path: ")
	}
	wantOK(t, s.deliver("alice@example.test", "foo-bar", testMessage))
	wantOK(t, s.deliver("alice@example.test", "Foo-Baz-Qux", testMessage))
	wantOK(t, s.deliver("alice@example.test", "other", testMessage))
	wantOK(t, s.deliver("alice@example.test", "list", testMessage))
	wantOK(t, s.deliver("alice@example.test", "", testMessage))
	if count("foo-bar.mbox") != 1 || count("foo-default.mbox") != 1 || count("default.mbox") != 1 || count("list.mbox") != 1 {
		t.Fatalf("foo-bar %d foo-default %d default %d list %d", count("foo-bar.mbox"), count("foo-default.mbox"), count("default.mbox"), count("list.mbox"))
	}
	if got := readFile(t, filepath.Join(home, "default.out")); got != "Baz-Qux Foo-Baz-Qux Baz-Qux\n" {
		t.Fatalf("DEFAULT EXT EXT2 = %q", got)
	}
	if got := s.folder("alice@example.test", "INBOX"); len(got) != 1 {
		t.Fatalf("no extension: INBOX %d", len(got))
	}
}

func TestDotCourierEmptyAndCommentOnly(t *testing.T) {
	s := newTestSite(t, "alice@example.test")
	s.write("alice@example.test", ".courier", "")
	wantOK(t, s.deliver("alice@example.test", "", testMessage))
	if got := s.folder("alice@example.test", "INBOX"); len(got) != 1 {
		t.Fatalf("empty .courier: INBOX %d, want default delivery", len(got))
	}
	s.write("alice@example.test", ".courier", "#\n")
	o := s.deliver("alice@example.test", "", testMessage)
	wantOK(t, o)
	if len(o.Delivered) != 0 || len(s.folder("alice@example.test", "INBOX")) != 1 {
		t.Fatalf("comment-only .courier should discard: %+v", o)
	}
}

func TestDotCourierReadsQmail(t *testing.T) {
	s := newTestSite(t, "alice@example.test")
	s.write("alice@example.test", ".qmail", "./Maildir/\n|exit 99\n./never.mbox\n")
	wantOK(t, s.deliver("alice@example.test", "", testMessage))
	if len(s.folder("alice@example.test", "INBOX")) != 1 || fileExists(filepath.Join(s.home("alice@example.test"), "never.mbox")) {
		t.Fatal(".qmail not followed")
	}
}

func TestDotCourierRefusesEscapes(t *testing.T) {
	s := newTestSite(t, "alice@example.test")
	s.write("alice@example.test", ".courier", "../../../etc/postern-escape\n")
	o := s.deliver("alice@example.test", "", testMessage)
	if o.Status != StatusTemporary || !strings.Contains(o.Reason, "outside") {
		t.Fatalf("%+v", o)
	}
	if fileExists("/etc/postern-escape") {
		t.Fatal("escaped")
	}
	s.write("alice@example.test", ".courier", "-oQ/tmp/x\n")
	if o := s.deliver("alice@example.test", "", testMessage); o.Status != StatusTemporary {
		t.Fatalf("option as address: %+v", o)
	}
}

func TestFilterEveryTargetKind(t *testing.T) {
	s := newTestSite(t, "alice@example.test")
	s.makeFolder("alice@example.test", "Lists")
	s.makeFolder("alice@example.test", "Spam")
	os.WriteFile(filepath.Join(s.etc, "maildroprc"), []byte("SYSTEM=ran\nif (/^Subject: .*viagra/)\n  to \"$HOME/Maildir/.Spam/\"\n"), 0o644)
	s.write("alice@example.test", ".mailfilter", `
cc "./copy.mbox"
cc "| cat > piped.out"
cc "! archive@example.org"
if (/^Subject: hello/ && $SYSTEM eq "ran")
{
  FLAGS=SF
  to "Maildir/.Lists"
}
`)
	o := s.deliver("alice@example.test", "", testMessage)
	wantOK(t, o)
	home := s.home("alice@example.test")
	if !strings.Contains(readFile(t, filepath.Join(home, "copy.mbox")), "Subject: hello there") {
		t.Fatal("cc mbox")
	}
	if !strings.HasSuffix(readFile(t, filepath.Join(home, "piped.out")), testMessage) {
		t.Fatal("cc program")
	}
	if !strings.Contains(s.sent(), "-oi -f bob@example.org archive@example.org\n") {
		t.Fatalf("forward %q", s.sent())
	}
	md, _ := maildir.Open(s.account("alice@example.test").MaildirPath())
	f, _ := md.Folder("Lists")
	snap, _ := f.Sync(false)
	if len(snap.Messages) != 1 || snap.Messages[0].Flags != "FS" {
		t.Fatalf("Lists %+v", snap.Messages)
	}
	if len(s.folder("alice@example.test", "INBOX")) != 0 {
		t.Fatal("to should have stopped default delivery")
	}
	// The system rules run first and can dispose of the message.
	wantOK(t, s.deliver("alice@example.test", "", strings.Replace(testMessage, "hello there", "cheap viagra", 1)))
	if len(s.folder("alice@example.test", "Spam")) != 1 {
		t.Fatal("maildroprc did not file into Spam")
	}
}

func TestFilterDefaultDeliveryAndExit(t *testing.T) {
	s := newTestSite(t, "alice@example.test")
	s.write("alice@example.test", ".mailfilter", "if (/^Subject: drop/)\n  exit\n")
	wantOK(t, s.deliver("alice@example.test", "", testMessage))
	if len(s.folder("alice@example.test", "INBOX")) != 1 {
		t.Fatal("no default delivery")
	}
	o := s.deliver("alice@example.test", "", "Subject: drop me\n\nx\n")
	wantOK(t, o)
	if len(o.Delivered) != 0 || len(s.folder("alice@example.test", "INBOX")) != 1 {
		t.Fatalf("exit should discard: %+v", o)
	}
	s.write("alice@example.test", ".mailfilter", "EXITCODE=77\nexit\n")
	if o := s.deliver("alice@example.test", "", testMessage); o.Status != StatusPermanent || o.ExitCode != 77 {
		t.Fatalf("EXITCODE=77: %+v", o)
	}
	s.write("alice@example.test", ".mailfilter", "to \"|exit 3\"\n")
	if o := s.deliver("alice@example.test", "", testMessage); o.Status != StatusTemporary || o.ExitCode != 3 {
		t.Fatalf("to |exit 3: %+v (maildrop exits with the program's code)", o)
	}
}

func TestFilterRefusesHostilePaths(t *testing.T) {
	s := newTestSite(t, "alice@example.test")
	for _, dest := range []string{"../../etc/x", "/etc/postern-x", "Maildir/../../../x"} {
		s.write("alice@example.test", ".mailfilter", "to \""+dest+"\"\n")
		o := s.deliver("alice@example.test", "", testMessage)
		if o.Status != StatusTemporary || o.ExitCode != ExitTempFail || !strings.Contains(o.Reason, "outside") {
			t.Fatalf("to %s: %+v", dest, o)
		}
	}
	if fileExists("/etc/x") || fileExists("/etc/postern-x") {
		t.Fatal("escaped")
	}
}

func TestFilterPermissionsChecked(t *testing.T) {
	s := newTestSite(t, "alice@example.test")
	p := s.write("alice@example.test", ".mailfilter", "to $DEFAULT\n")
	os.Chmod(p, 0o620)
	o := s.deliver("alice@example.test", "", testMessage)
	if o.Status != StatusTemporary || !strings.Contains(o.Reason, "group or world") {
		t.Fatalf("%+v", o)
	}
}

func TestFilterSyntaxErrorDefers(t *testing.T) {
	s := newTestSite(t, "alice@example.test")
	s.write("alice@example.test", ".mailfilter", "if (\n")
	o := s.deliver("alice@example.test", "", testMessage)
	if o.Status != StatusTemporary || o.ExitCode != 75 || !strings.Contains(o.Reason, ".mailfilter:") {
		t.Fatalf("%+v", o)
	}
}

func TestInstructionsTakePrecedenceOverFilter(t *testing.T) {
	s := newTestSite(t, "alice@example.test")
	s.write("alice@example.test", ".mailfilter", "to ./filtered.mbox\n")
	s.write("alice@example.test", ".courier", "./courier.mbox\n")
	wantOK(t, s.deliver("alice@example.test", "", testMessage))
	home := s.home("alice@example.test")
	if !fileExists(filepath.Join(home, "courier.mbox")) || fileExists(filepath.Join(home, "filtered.mbox")) {
		t.Fatal(".courier should win over .mailfilter")
	}
	// maildrop -d semantics: NoInstructions reads only the filter.
	o := s.agent.Deliver(context.Background(), Request{Account: s.account("alice@example.test"), Message: strings.NewReader(testMessage), NoInstructions: true})
	wantOK(t, o)
	if !fileExists(filepath.Join(home, "filtered.mbox")) {
		t.Fatal("NoInstructions should run .mailfilter")
	}
}

func TestResolveDestination(t *testing.T) {
	home := t.TempDir()
	root := filepath.Join(home, "Maildir")
	maildir.Make(root)
	md, _ := maildir.Open(root)
	md.CreateFolder("Work.Sub")
	os.Mkdir(filepath.Join(home, "other"), 0o700)
	outside := t.TempDir()
	os.Symlink(outside, filepath.Join(home, "link"))
	conf := Confinement{Home: home, Maildir: root}
	for _, tc := range []struct {
		dest   string
		kind   DestKind
		folder string
		err    error
	}{
		{"./Maildir/", DestMaildir, "INBOX", nil},
		{"./Maildir", DestMaildir, "INBOX", nil},
		{home + "/Maildir/.Work.Sub/", DestMaildir, "Work.Sub", nil},
		{"Maildir/.Work.Sub", DestMaildir, "Work.Sub", nil},
		{"./mbox", DestMbox, "", nil},
		{"other", DestMaildir, "INBOX", nil},
		{"| procmail -a x", DestProgram, "", nil},
		{"! a@example.org b@example.org", DestForward, "", nil},
		{"../../etc/x", 0, "", ErrOutsideHome},
		{"/etc/passwd", 0, "", ErrOutsideHome},
		{"link/x", 0, "", ErrOutsideHome},
		{"Maildir/.Work.Sub/../../..", 0, "", ErrOutsideHome},
		{"Maildir/..Bad/", 0, "", ErrBadDestination},
		{"bad\x01name", 0, "", ErrBadDestination},
		{"", 0, "", ErrBadDestination},
		{"! -oQ/tmp", 0, "", ErrBadDestination},
		{"|", 0, "", ErrBadDestination},
	} {
		d, err := ResolveDestination(home, conf, tc.dest)
		if tc.err != nil {
			if !errors.Is(err, tc.err) {
				t.Errorf("%q: err %v, want %v", tc.dest, err, tc.err)
			}
			continue
		}
		if err != nil || d.Kind != tc.kind || (tc.kind == DestMaildir && d.Folder != tc.folder) {
			t.Errorf("%q: %+v %v, want %v %s", tc.dest, d, err, tc.kind, tc.folder)
		}
	}
}

func TestMailfilterOwnedByAnotherUserIsRefusedAsRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown")
	}
	s := newTestSite(t, "alice@example.test")
	p := s.write("alice@example.test", ".mailfilter", "to $DEFAULT\n")
	os.Chown(p, 4242, 4242)
	o := s.deliver("alice@example.test", "", testMessage)
	if o.Status != StatusTemporary || !strings.Contains(o.Reason, "owned by uid 4242") {
		t.Fatalf("%+v", o)
	}
}

var _ = auth.ErrNoSuchUser

func TestFilterCacheSeesEdits(t *testing.T) {
	s := newTestSite(t, "alice@example.test")
	home := s.home("alice@example.test")
	p := s.write("alice@example.test", ".mailfilter", "to ./one.mbox\n")
	t1 := time.Now().Add(-time.Hour)
	os.Chtimes(p, t1, t1)
	wantOK(t, s.deliver("alice@example.test", "", testMessage))
	wantOK(t, s.deliver("alice@example.test", "", testMessage)) // from the cache
	s.write("alice@example.test", ".mailfilter", "to ./two.mbox\n")
	t2 := t1.Add(time.Minute)
	os.Chtimes(p, t2, t2)
	wantOK(t, s.deliver("alice@example.test", "", testMessage))
	if strings.Count(readFile(t, filepath.Join(home, "one.mbox")), "\nReturn-Path:") != 2 || !fileExists(filepath.Join(home, "two.mbox")) {
		t.Fatal("edited filter not picked up")
	}
}

func TestQuotaWarningOncePerDay(t *testing.T) {
	s := newTestSite(t, "alice@example.test 400S")
	a, err := New(Options{Config: s.cfg, Logger: s.agent.log, Sendmail: []string{"/bin/false"}, QuotaWarnPercent: 30})
	if err != nil {
		t.Fatal(err)
	}
	acct := s.account("alice@example.test")
	deliver := func() {
		t.Helper()
		wantOK(t, a.Deliver(context.Background(), Request{Account: acct, Message: strings.NewReader(testMessage)}))
	}
	deliver()
	deliver()
	got := s.folder("alice@example.test", "INBOX")
	warnings := 0
	for _, m := range got {
		if strings.Contains(m, "Subject: Mail quota warning") && strings.Contains(m, "Message-Id: <") {
			warnings++
		}
	}
	if len(got) != 3 || warnings != 1 {
		t.Fatalf("%d messages, %d warnings; want 2 + 1 warning", len(got), warnings)
	}
}

func TestMessageTooLargeIsPermanent(t *testing.T) {
	s := newTestSite(t, "alice@example.test")
	a, _ := New(Options{Config: s.cfg, Logger: s.agent.log, Sendmail: []string{"/bin/false"}, MaxMessageSize: 50})
	acct := s.account("alice@example.test")
	o := a.Deliver(context.Background(), Request{Account: acct, Message: strings.NewReader(testMessage)})
	if o.Status != StatusPermanent || o.ExitCode != ExitDataErr {
		t.Fatalf("plain: %+v", o)
	}
	s.write("alice@example.test", ".mailfilter", "to $DEFAULT\n")
	o = a.Deliver(context.Background(), Request{Account: acct, Message: strings.NewReader(testMessage)})
	if o.Status != StatusPermanent || o.ExitCode != ExitDataErr {
		t.Fatalf("filter: %+v", o)
	}
	if msgs, _ := os.ReadDir(filepath.Join(acct.MaildirPath(), "new")); len(msgs) != 0 {
		t.Fatal("a partial message was delivered")
	}
	if msgs, _ := os.ReadDir(filepath.Join(acct.MaildirPath(), "tmp")); len(msgs) != 0 {
		t.Fatal("a partial message was left in tmp/")
	}
}

func TestFolderDeliveryCountsAgainstTheMaildirQuota(t *testing.T) {
	s := newTestSite(t, "alice@example.test 200S")
	s.makeFolder("alice@example.test", "Lists")
	s.write("alice@example.test", ".mailfilter", "to ./Maildir/.Lists/\n")
	wantOK(t, s.deliver("alice@example.test", "", testMessage))
	if o := s.deliver("alice@example.test", "", testMessage); o.ExitCode != ExitOverQuota {
		t.Fatalf("%+v", o)
	}
	if got := s.folder("alice@example.test", "Lists"); len(got) != 1 {
		t.Fatalf("Lists has %d", len(got))
	}
}

// With SRS on (srssecrets), a .courier forward is resent with the sender's
// SRS address at our domain, which turns back into the author's address;
// a sender of our own domain and the null sender are kept.
func TestDotCourierForwardUsesSRS(t *testing.T) {
	s := newTestSite(t, "alice@example.test")
	if err := os.WriteFile(filepath.Join(s.etc, "srssecrets"), []byte("a long enough SRS secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.reload(true)
	s.write("alice@example.test", ".courier", "carol@example.net\n")
	for _, from := range []string{"bob@example.org", "dora@example.test", ""} {
		o := s.agent.Deliver(context.Background(), Request{Account: s.account("alice@example.test"), Sender: from,
			Recipient: "alice@example.test", Message: strings.NewReader(testMessage)})
		if o.Status != StatusOK {
			t.Fatalf("from %q: %+v", from, o)
		}
	}
	var senders []string
	for _, block := range strings.Split(s.sent(), "===\n") {
		if f := strings.Fields(block); len(f) >= 3 && f[0] == "-oi" && f[1] == "-f" {
			senders = append(senders, f[2])
		}
	}
	if len(senders) != 3 || !strings.HasPrefix(senders[0], "SRS0=") || !strings.HasSuffix(senders[0], "=example.org=bob@example.test") ||
		senders[1] != "dora@example.test" || senders[2] != "<>" {
		t.Fatalf("forward senders %q", senders)
	}
	if back, err := s.cfg.SRS.Reverse(senders[0]); err != nil || back != "bob@example.org" {
		t.Fatalf("Reverse(%q) = %q, %v", senders[0], back, err)
	}
}
