package deliver

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"postern/mailbox/maildir"
	"postern/mailbox/sievestore"
)

const alice = "alice@example.test"

// activate stores src as the account's script NAME and makes it active,
// the way ManageSieve does.
func (s *testSite) activate(name, script, src string) {
	s.t.Helper()
	a := s.account(name)
	st := sievestore.Open(a.Home, sievestore.Owner{UID: a.UID, GID: a.GID}, sievestore.Limits{})
	if err := st.Put(script, []byte(src)); err != nil {
		s.t.Fatal(err)
	}
	if err := st.SetActive(script); err != nil {
		s.t.Fatal(err)
	}
}

func (s *testSite) sieveLog(name string) string {
	b, _ := os.ReadFile(filepath.Join(s.home(name), SieveLogFile))
	return string(b)
}

func TestSieveFileintoWithFlags(t *testing.T) {
	s := newTestSite(t, alice)
	s.makeFolder(alice, "Work")
	s.activate(alice, "main", `require ["fileinto", "imap4flags"];
if header :contains "subject" "hello" { fileinto :flags ["\\Seen", "$Important"] "INBOX.Work"; }
`)
	o := s.deliver(alice, "", testMessage)
	wantOK(t, o)
	if got := s.folder(alice, "Work"); len(got) != 1 || !strings.HasSuffix(got[0], testMessage) {
		t.Fatalf("Work %q", got)
	}
	if got := s.folder(alice, "INBOX"); len(got) != 0 {
		t.Fatalf("fileinto did not cancel the implicit keep: INBOX %q", got)
	}
	cur, _ := filepath.Glob(filepath.Join(s.account(alice).MaildirPath(), ".Work", "cur", "*:2,S*"))
	if len(cur) != 1 {
		all, _ := filepath.Glob(filepath.Join(s.account(alice).MaildirPath(), ".Work", "*", "*"))
		t.Fatalf("no \\Seen file in Work/cur: %v", all)
	}
	md, _ := maildir.Open(s.account(alice).MaildirPath())
	f, _ := md.Folder("Work")
	snap, err := f.Sync(false)
	if err != nil || len(snap.Messages) != 1 {
		t.Fatalf("sync: %v", err)
	}
	if kw := strings.Join(snap.Messages[0].Keywords, ","); !strings.Contains(kw, "$Important") {
		t.Fatalf("keywords %q, want $Important", kw)
	}
	// No match: the implicit keep files into INBOX.
	wantOK(t, s.deliver(alice, "", strings.Replace(testMessage, "hello there", "other", 1)))
	if got := s.folder(alice, "INBOX"); len(got) != 1 {
		t.Fatalf("INBOX %q, want the implicit keep", got)
	}
}

func TestSieveFileintoMissingFolder(t *testing.T) {
	s := newTestSite(t, alice)
	s.activate(alice, "main", `require ["fileinto", "mailbox"];
if mailboxexists "Lists" { fileinto "Nowhere"; }
fileinto "Archive/2026";
fileinto :create "Lists/Go";
`)
	wantOK(t, s.deliver(alice, "", testMessage))
	// "Archive/2026" does not exist and has no :create: kept in INBOX,
	// and the user's log says why.
	if got := s.folder(alice, "INBOX"); len(got) != 1 {
		t.Fatalf("INBOX %q", got)
	}
	if log := s.sieveLog(alice); !strings.Contains(log, `fileinto "Archive/2026": no such folder`) {
		t.Fatalf("sieve log %q", log)
	}
	if got := s.folder(alice, "Lists.Go"); len(got) != 1 {
		t.Fatalf("Lists.Go %q: :create should have made it", got)
	}
	// mailboxexists saw no "Lists" folder at the start.
	if _, err := os.Stat(filepath.Join(s.account(alice).MaildirPath(), ".Nowhere")); err == nil {
		t.Fatal("Nowhere was made")
	}
}

func TestSieveHostileMailboxNames(t *testing.T) {
	s := newTestSite(t, alice)
	s.activate(alice, "main", `require ["fileinto", "mailbox"];
fileinto :create "../../etc";
fileinto :create "a/../../b";
fileinto :create "INBOX..x";
`)
	wantOK(t, s.deliver(alice, "", testMessage))
	if got := s.folder(alice, "INBOX"); len(got) != 1 {
		t.Fatalf("INBOX %q, want the message kept once", got)
	}
	entries, _ := os.ReadDir(s.account(alice).MaildirPath())
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") && e.IsDir() {
			t.Fatalf("folder %s made from a hostile name", e.Name())
		}
	}
	if _, err := os.Stat(filepath.Join(s.dir, "etc", "new")); err == nil {
		t.Fatal("delivered outside the Maildir")
	}
}

func TestSieveRedirectAndCopy(t *testing.T) {
	s := newTestSite(t, alice)
	s.activate(alice, "main", `require "copy";
redirect :copy "carol@example.org";
redirect "dave@example.org";
`)
	o := s.deliver(alice, "", testMessage)
	wantOK(t, o)
	sent := s.sent()
	for _, want := range []string{"-oi -f bob@example.org carol@example.org\n", "-oi -f bob@example.org dave@example.org\n"} {
		if !strings.Contains(sent, want) {
			t.Fatalf("sendmail got %q, want %q", sent, want)
		}
	}
	// The plain redirect cancelled the implicit keep.
	if fileExists(filepath.Join(s.account(alice).MaildirPath(), "new")) && len(s.folder(alice, "INBOX")) != 0 {
		t.Fatal("kept as well")
	}
}

func TestSieveReject(t *testing.T) {
	s := newTestSite(t, alice)
	s.activate(alice, "main", `require "reject";
if address :is "from" "bob@example.org" { reject "I do not take mail from Bob."; }
`)
	o := s.deliver(alice, "", testMessage)
	if o.Status != StatusPermanent || !strings.Contains(o.Reason, "I do not take mail from Bob.") {
		t.Fatalf("outcome %+v, want a permanent failure with the script's reason", o)
	}
}

func TestSieveVacationOncePerPeriod(t *testing.T) {
	s := newTestSite(t, alice)
	s.activate(alice, "main", `require "vacation";
vacation :days 3 :subject "Away" "I am away until Monday.";
`)
	wantOK(t, s.deliver(alice, "", testMessage))
	sent := s.sent()
	if !strings.Contains(sent, "-oi -f <> bob@example.org\n") || !strings.Contains(sent, "Subject: Away") || !strings.Contains(sent, "Auto-Submitted: auto-replied") {
		t.Fatalf("vacation reply %q", sent)
	}
	if got := s.folder(alice, "INBOX"); len(got) != 1 {
		t.Fatalf("INBOX %q: vacation keeps the message", got)
	}
	wantOK(t, s.deliver(alice, "", testMessage))
	if n := strings.Count(s.sent(), "===\n"); n != 1 {
		t.Fatalf("%d replies to the same sender within :days, want 1", n)
	}
	if _, err := os.Stat(filepath.Join(s.home(alice), SieveMemoryFile)); err != nil {
		t.Fatalf("vacation memory: %v", err)
	}
}

func TestSieveBrokenScriptKeeps(t *testing.T) {
	s := newTestSite(t, alice)
	a := s.account(alice)
	st := sievestore.Open(a.Home, sievestore.Owner{UID: a.UID, GID: a.GID}, sievestore.Limits{})
	// Stored behind ManageSieve's back (ManageSieve checks scripts).
	if err := st.Put("main", []byte("if header :frob \"x\" { discard; }\n")); err != nil {
		t.Fatal(err)
	}
	if err := st.SetActive("main"); err != nil {
		t.Fatal(err)
	}
	wantOK(t, s.deliver(alice, "", testMessage))
	if got := s.folder(alice, "INBOX"); len(got) != 1 {
		t.Fatalf("INBOX %q: a broken script keeps the message", got)
	}
	if log := s.sieveLog(alice); !strings.Contains(log, "script main: 1:") {
		t.Fatalf("sieve log %q, want the parse error with its position", log)
	}
}

func TestSieveDiscardAndEditheader(t *testing.T) {
	s := newTestSite(t, alice)
	s.activate(alice, "main", `require ["editheader", "variables"];
if header :matches "subject" "*there" { addheader "X-Sieve-Seen" "${1}"; }
if header :contains "subject" "spam" { discard; stop; }
`)
	wantOK(t, s.deliver(alice, "", testMessage))
	got := s.folder(alice, "INBOX")
	if len(got) != 1 || !strings.Contains(got[0], "X-Sieve-Seen: hello \n") && !strings.Contains(got[0], "X-Sieve-Seen: hello\n") {
		t.Fatalf("INBOX %q, want the added field", got)
	}
	o := s.deliver(alice, "", strings.Replace(testMessage, "hello there", "cheap spam", 1))
	wantOK(t, o)
	if len(o.Delivered) != 0 || len(s.folder(alice, "INBOX")) != 1 {
		t.Fatalf("discard delivered %v", o.Delivered)
	}
}

func TestSieveIncludePersonal(t *testing.T) {
	s := newTestSite(t, alice)
	s.makeFolder(alice, "Bob")
	a := s.account(alice)
	st := sievestore.Open(a.Home, sievestore.Owner{UID: a.UID, GID: a.GID}, sievestore.Limits{})
	if err := st.Put("people", []byte("require \"fileinto\";\nif address :is \"from\" \"bob@example.org\" { fileinto \"Bob\"; }\n")); err != nil {
		t.Fatal(err)
	}
	s.activate(alice, "main", "require \"include\";\ninclude :personal \"people\";\ninclude :optional \"missing\";\n")
	wantOK(t, s.deliver(alice, "", testMessage))
	if got := s.folder(alice, "Bob"); len(got) != 1 {
		t.Fatalf("Bob %q, want the included rule's fileinto", got)
	}
}

func TestSieveGivesWayToMailfilter(t *testing.T) {
	s := newTestSite(t, alice)
	s.activate(alice, "main", "discard;\n")
	s.write(alice, ".mailfilter", "to \"$DEFAULT\"\n")
	wantOK(t, s.deliver(alice, "", testMessage))
	if got := s.folder(alice, "INBOX"); len(got) != 1 {
		t.Fatalf("INBOX %q: .mailfilter, not the Sieve script, decides", got)
	}
}

func TestSieveAfterMaildroprc(t *testing.T) {
	s := newTestSite(t, alice)
	s.makeFolder(alice, "Sieved")
	s.makeFolder(alice, "System")
	if err := os.WriteFile(filepath.Join(s.etc, "maildroprc"), []byte("if (/^Subject: *urgent/)\n{\n  to \"$DEFAULT/.System/\"\n}\nxfilter \"sed -e 's/^Subject: hello/Subject: HELLO/'\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s.reload(true)
	s.activate(alice, "main", "require \"fileinto\";\nif header :is :comparator \"i;octet\" \"subject\" \"HELLO there\" { fileinto \"Sieved\"; }\n")
	// maildroprc leaves it undecided (after rewriting it): the script
	// files the rewritten message.
	wantOK(t, s.deliver(alice, "", testMessage))
	if got := s.folder(alice, "Sieved"); len(got) != 1 || !strings.Contains(got[0], "Subject: HELLO there") {
		t.Fatalf("Sieved %q", got)
	}
	// maildroprc delivers: the script does not run.
	wantOK(t, s.deliver(alice, "", strings.Replace(testMessage, "hello there", "urgent", 1)))
	if got := s.folder(alice, "System"); len(got) != 1 {
		t.Fatalf("System %q", got)
	}
	if got := s.folder(alice, "Sieved"); len(got) != 1 {
		t.Fatalf("Sieved %q: the script ran after maildroprc delivered", got)
	}
}

// enotify's mailto method (RFC 5436) sends a notification through
// sendmail with the recipient as its sender, and keeps the message.
func TestSieveNotifyMailto(t *testing.T) {
	s := newTestSite(t, alice)
	s.activate(alice, "main", `require ["enotify"];
if header :contains "subject" "hello" {
  notify :importance "1" :message "mail from Bob" "mailto:pager@example.net?subject=New%20mail";
}
`)
	wantOK(t, s.deliver(alice, "", testMessage))
	sent := s.sent()
	for _, want := range []string{"-oi -f " + alice + " pager@example.net\n", "Auto-Submitted: auto-notified", "Subject: mail from Bob", "To: pager@example.net"} {
		if !strings.Contains(sent, want) {
			t.Fatalf("notification lacks %q:\n%s", want, sent)
		}
	}
	if got := s.folder(alice, "INBOX"); len(got) != 1 {
		t.Fatalf("INBOX %q: notify keeps the message", got)
	}
}

// fileinto :specialuse files into the folder with the attribute when it
// exists (RFC 8579), else into the name given; :mailboxid (RFC 9042)
// finds a folder by the MAILBOXID the IMAP server gave it, even after a
// rename.
func TestSieveSpecialUseAndMailboxID(t *testing.T) {
	s := newTestSite(t, alice)
	if err := maildir.Make(s.account(alice).MaildirPath()); err != nil {
		t.Fatal(err)
	}
	md, err := maildir.Open(s.account(alice).MaildirPath())
	if err != nil {
		t.Fatal(err)
	}
	if err := md.CreateFolder("Renamed"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.account(alice).MaildirPath(), ".Renamed", maildir.MailboxIDFile), []byte("Fabc123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.activate(alice, "main", `require ["fileinto", "special-use", "mailboxid", "mailbox"];
if specialuse_exists "\\Junk" { fileinto "JunkExists"; stop; }
if mailboxidexists "Fabc123" { fileinto :mailboxid "Fabc123" "Elsewhere"; }
fileinto :specialuse "\\Junk" :create "Spam";
`)
	wantOK(t, s.deliver(alice, "", testMessage))
	if got := s.folder(alice, "Renamed"); len(got) != 1 {
		t.Fatalf("Renamed %q: fileinto :mailboxid missed the folder", got)
	}
	if got := s.folder(alice, "Spam"); len(got) != 1 {
		t.Fatalf("Spam %q: without a \\Junk folder the name given is used (:create)", got)
	}
	// Once Junk exists, the attribute wins over the name.
	if err := md.CreateFolder("Junk"); err != nil {
		t.Fatal(err)
	}
	s.activate(alice, "main", `require ["fileinto", "special-use"];
fileinto :specialuse "\\Junk" "Spam";
`)
	wantOK(t, s.deliver(alice, "", testMessage))
	if got, spam := s.folder(alice, "Junk"), s.folder(alice, "Spam"); len(got) != 1 || len(spam) != 1 {
		t.Fatalf("Junk %q, Spam %q: want the second message in Junk", got, spam)
	}
}
