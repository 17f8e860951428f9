package deliver

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"postern/auth/sqlauth/sqltest"
	"strings"
	"syscall"
	"testing"

	"postern/auth"
	"postern/auth/authtool"
	"postern/mailbox/dotforward"
	"postern/mailbox/maildir"
	"postern/policy"
)

// TestMain lets the test binary stand in for "postern maildrop" when the
// agent re-executes itself to deliver as another uid, and for "postern
// dotforward" when a .courier file runs "|| dotforward" (the agent runs
// this binary + "dotforward", see Options.Dotforward).
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "dotforward" {
		os.Exit(dotforward.Main(os.Args[2:], os.Getenv, os.Stdin, os.Stdout, os.Stderr))
	}
	if os.Getenv("POSTERN_DELIVER_TEST_MAILDROP") == "1" {
		// Not seen by the filter's import or its commands: the
		// differential tests compare those with Courier's maildrop.
		os.Unsetenv("POSTERN_DELIVER_TEST_MAILDROP")
		os.Exit(MaildropMain(os.Args[1:], os.Stdin, os.Stdout, os.Stderr, ""))
	}
	os.Exit(m.Run())
}

func runMaildrop(t *testing.T, configDir, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := MaildropMain(args, strings.NewReader(stdin), &out, &errb, configDir)
	return code, out.String(), errb.String()
}

// A Postfix-style invocation: argv=/usr/bin/maildrop -d ${recipient}.
func TestMaildropDeliveryModePostfixStyle(t *testing.T) {
	s := newTestSite(t, "alice@example.test")
	s.write("alice@example.test", ".mailfilter", `if ($1 eq "one" && $FROM eq "bob@example.org")
  cc ./args.mbox
`)
	code, _, errs := runMaildrop(t, s.etc, testMessage, "-A", "X-Filtered: yes", "-f", "bob@example.org", "-d", "alice@example.test", "one", "two")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	got := s.folder("alice@example.test", "INBOX")
	if len(got) != 1 || got[0] != "X-Filtered: yes\n"+testMessage {
		t.Fatalf("INBOX %q", got)
	}
	if !fileExists(filepath.Join(s.home("alice@example.test"), "args.mbox")) {
		t.Fatal("$1 or FROM not set")
	}
}

func TestMaildropExitCodes(t *testing.T) {
	s := newTestSite(t, "alice@example.test 150S")
	if code, _, errs := runMaildrop(t, s.etc, testMessage, "-d", "nobody@example.test"); code != ExitNoUser || !strings.Contains(errs, "Invalid user specified.") {
		t.Fatalf("unknown user: %d %q", code, errs)
	}
	if code, _, _ := runMaildrop(t, s.etc, testMessage, "-x"); code != ExitTempFail {
		t.Fatalf("bad option: %d", code)
	}
	if code, _, _ := runMaildrop(t, s.etc, testMessage, "-d"); code != ExitTempFail {
		t.Fatalf("-d without user: %d", code)
	}
	if code, _, _ := runMaildrop(t, s.etc, testMessage, "-d", "alice@example.test"); code != 0 {
		t.Fatal("first delivery")
	}
	if code, _, errs := runMaildrop(t, s.etc, testMessage, "-d", "alice@example.test"); code != ExitOverQuota || errs != "maildrop: maildir over quota.\n" {
		t.Fatalf("over quota: %d %q", code, errs)
	}
	if code, _, _ := runMaildrop(t, filepath.Join(s.dir, "missing"), testMessage, "-d", "alice@example.test"); code != ExitTempFail {
		t.Fatalf("missing config: %d", code)
	}
}

func TestMaildropExtensionAndInstructions(t *testing.T) {
	s := newTestSite(t, "alice@example.test")
	s.write("alice@example.test", ".courier-lists", "./lists.mbox\n")
	code, _, errs := runMaildrop(t, s.etc, testMessage, "--instructions", "-d", "alice-lists@example.test")
	if code != 0 {
		t.Fatalf("%d %s", code, errs)
	}
	if !fileExists(filepath.Join(s.home("alice@example.test"), "lists.mbox")) {
		t.Fatal(".courier-lists not used")
	}
	// Without --instructions, maildrop -d never reads .courier files.
	if code, _, _ := runMaildrop(t, s.etc, testMessage, "-d", "alice-lists@example.test"); code != 0 || len(s.folder("alice@example.test", "INBOX")) != 1 {
		t.Fatal("maildrop -d should deliver to INBOX")
	}
}

func TestMaildropManualAndEmbeddedModes(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if err := maildir.Make(filepath.Join(dir, "Maildir")); err != nil {
		t.Fatal(err)
	}
	os.WriteFile("filter", []byte("if (/^Subject: hello/)\n  to ./Maildir/\n"), 0o600)
	if code, _, errs := runMaildrop(t, "", testMessage, "./filter"); code != 0 {
		t.Fatalf("manual: %d %s", code, errs)
	}
	md, _ := maildir.Open(filepath.Join(dir, "Maildir"))
	f, _ := md.Folder("INBOX")
	if snap, _ := f.Sync(false); len(snap.Messages) != 1 {
		t.Fatal("manual mode did not deliver")
	}
	os.WriteFile("embedded", []byte("if (/^Subject: hello/)\n{\n  echo \"matched $1\"\n  EXITCODE=5\n}\n"), 0o600)
	code, out, errs := runMaildrop(t, "", testMessage, "-m", "./embedded", "arg")
	if code != 5 || out != "matched arg\n" {
		t.Fatalf("embedded: %d %q %q", code, out, errs)
	}
	os.WriteFile("bad", []byte("to ./Maildir/\n"), 0o600)
	if code, _, _ := runMaildrop(t, "", testMessage, "-m", "./bad"); code != ExitTempFail {
		t.Fatalf("to in embedded mode: %d", code)
	}
	code, _, errs = runMaildrop(t, "", testMessage, "-V", "2", "-m", "./embedded", "arg")
	if code != 5 || !strings.Contains(errs, "embedded:1: if:") {
		t.Fatalf("-V trace: %q", errs)
	}
}

// Manual mode starts with every environment variable as a variable,
// delivery mode (here -M with -d) with the locale's only, as maildrop 2.9.3
// does (the differential tests compare manual mode with it).
func TestMaildropVariablesFromTheEnvironment(t *testing.T) {
	t.Setenv("POSTERN_TEST_FOO", "bar")
	t.Setenv("LC_TIME", "C")
	show := "echo \"[$POSTERN_TEST_FOO] [$LC_TIME]\"\nexit\n"
	t.Chdir(t.TempDir())
	os.WriteFile("filter", []byte(show), 0o600)
	if code, out, errs := runMaildrop(t, "", testMessage, "-m", "./filter"); code != 0 || out != "[bar] [C]\n" {
		t.Fatalf("manual mode: %d %q %q", code, out, errs)
	}
	s := newTestSite(t, "alice@example.test")
	s.write("alice@example.test", ".mailfilters/env", show)
	os.Chmod(filepath.Join(s.home("alice@example.test"), ".mailfilters"), 0o700)
	if code, out, errs := runMaildrop(t, s.etc, testMessage, "-M", "env", "-d", "alice@example.test"); code != 0 || out != "[] [C]\n" {
		t.Fatalf("delivery mode: %d %q %q", code, out, errs)
	}
}

func TestMaildropSpecialEmbeddedFilter(t *testing.T) {
	s := newTestSite(t, "alice@example.test")
	home := s.home("alice@example.test")
	s.write("alice@example.test", ".mailfilters/lists-default", "echo \"default for lists\"\nEXITCODE=0\n")
	os.Chmod(filepath.Join(home, ".mailfilters"), 0o700)
	code, out, errs := runMaildrop(t, s.etc, testMessage, "-M", "lists-foo", "-d", "alice@example.test")
	if code != 0 || out != "default for lists\n" {
		t.Fatalf("-M: %d %q %q", code, out, errs)
	}
	if code, _, _ := runMaildrop(t, s.etc, testMessage, "-M", "../x", "-d", "alice@example.test"); code != ExitTempFail {
		t.Fatal("-M with a period must be refused")
	}
}

// Running as root for an account with another uid, user files are read and
// user programs run by a child that switched to the account's uid.
func TestDeliverAsAccountUID(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	const uid, gid = 65534, 65534
	s := newTestSite(t)
	var out bytes.Buffer
	home := filepath.Join(s.dir, "home", "nob")
	if code := authtool.UserMain([]string{"add", "nob@example.test", "--password", "pw", "--no-maildir", "--home", home, "--uid", "65534", "--gid", "65534"}, strings.NewReader(""), &out, &out, s.etc); code != 0 {
		t.Fatal(out.String())
	}
	s.reload(true)
	s2 := s
	os.MkdirAll(home, 0o700)
	for p := filepath.Dir(home); p != "/" && p != os.TempDir(); p = filepath.Dir(p) {
		os.Chmod(p, 0o755)
	}
	os.Chown(home, uid, gid)
	os.WriteFile(filepath.Join(home, ".courier"), []byte("| id -u > uid.out\n./Maildir/\n"), 0o600)
	os.Chown(filepath.Join(home, ".courier"), uid, gid)
	agent, err := New(Options{Config: s2.cfg, Logger: slog.New(slog.DiscardHandler), Reexec: []string{os.Args[0]}, ReexecEnv: []string{"POSTERN_DELIVER_TEST_MAILDROP=1"}})
	if err != nil {
		t.Fatal(err)
	}
	acct := s2.account("nob@example.test")
	o := agent.Deliver(context.Background(), Request{Account: acct, Sender: "bob@example.org", Recipient: "nob@example.test", Message: strings.NewReader(testMessage), AddTrace: true})
	wantOK(t, o)
	if got := readFile(t, filepath.Join(home, "uid.out")); got != "65534\n" {
		t.Fatalf("program ran as uid %q", got)
	}
	st, err := os.Stat(filepath.Join(home, "Maildir", "new"))
	if err != nil {
		t.Fatal(err)
	}
	if owner(st) != uid {
		t.Fatalf("Maildir owned by %d", owner(st))
	}
	got := s2.folder("nob@example.test", "INBOX")
	if len(got) != 1 || !strings.HasPrefix(got[0], "Return-Path: <bob@example.org>\nDelivered-To: nob@example.test\n") {
		t.Fatalf("INBOX %q", got)
	}
	// The plain path stays in process and hands the file over.
	os.Remove(filepath.Join(home, ".courier"))
	wantOK(t, agent.Deliver(context.Background(), Request{Account: acct, Message: strings.NewReader(testMessage)}))
	ents, _ := os.ReadDir(filepath.Join(home, "Maildir", "new"))
	for _, e := range ents {
		info, _ := e.Info()
		if owner(info) != uid {
			t.Fatalf("%s owned by %d", e.Name(), owner(info))
		}
	}
	// A .courier program that is not the account's cannot run as root:
	// check the child really dropped root (setuid back fails).
	if _, err := exec.LookPath("id"); err != nil {
		t.Skip("no id")
	}
}

func owner(fi os.FileInfo) int {
	return int(fi.Sys().(*syscall.Stat_t).Uid)
}

var _ = auth.ErrNoSuchUser

// A configuration that policy.Load refuses for reasons delivery does not
// care about (here a broken tlscert, as when the key is root-only) still
// lets maildrop -d deliver.
func TestMaildropDeliversWithAnUnloadableTLSKey(t *testing.T) {
	s := newTestSite(t, "alice@example.test")
	os.WriteFile(filepath.Join(s.etc, "tlscert"), []byte("/nonexistent/key.pem\n"), 0o644)
	if _, err := policy.Load(s.etc); err == nil {
		t.Fatal("setup: the configuration should not load")
	}
	code, _, errs := runMaildrop(t, s.etc, testMessage, "-d", "alice@example.test")
	if code != 0 {
		t.Fatalf("%d %s", code, errs)
	}
	if len(s.folder("alice@example.test", "INBOX")) != 1 {
		t.Fatal("not delivered")
	}
}

// TestMaildropFindsSQLAccounts: maildrop -d asks the modules of
// authmodulelist, as the server does: an account that lives only in
// PostgreSQL gets its mail, and with the database unreachable the
// delivery is deferred (75), never bounced as an unknown user.
func TestMaildropFindsSQLAccounts(t *testing.T) {
	db, table := sqltest.PostgresTable(t, "postern_maildrop_users", "id text, clear text, uid int, gid int, home text")
	s := newTestSite(t, "alice@example.test")
	home := filepath.Join(s.dir, "sqlhome")
	if _, err := db.Exec("INSERT INTO "+table+" VALUES ('erin@example.test', 'pw', $1, $2, $3)", os.Getuid(), os.Getgid(), home); err != nil {
		t.Fatal(err)
	}
	rc := "PGSQL_CONNECTION host=127.0.0.1 port=%d user=postgres sslmode=disable\nPGSQL_DATABASE test\nPGSQL_USER_TABLE " + table +
		"\nPGSQL_CLEAR_PWFIELD clear\nPGSQL_UID_FIELD uid\nPGSQL_GID_FIELD gid\nPGSQL_HOME_FIELD home\n"
	os.WriteFile(filepath.Join(s.etc, "authmodulelist"), []byte("authuserdb authpgsql\n"), 0o600)
	os.WriteFile(filepath.Join(s.etc, "authpgsqlrc"), []byte(fmt.Sprintf(rc, 5432)), 0o600)
	if code, _, errs := runMaildrop(t, s.etc, testMessage, "-d", "erin@example.test"); code != 0 {
		t.Fatalf("maildrop -d erin: exit %d: %s", code, errs)
	}
	if n, err := os.ReadDir(filepath.Join(home, "Maildir", "new")); err != nil || len(n) != 1 {
		t.Fatalf("erin's Maildir: %v, %d messages", err, len(n))
	}
	if code, _, _ := runMaildrop(t, s.etc, testMessage, "-d", "alice@example.test"); code != 0 {
		t.Fatalf("the userdb's alice: exit %d", code)
	}
	os.WriteFile(filepath.Join(s.etc, "authpgsqlrc"), []byte(fmt.Sprintf(rc, 1)), 0o600)
	if code, _, _ := runMaildrop(t, s.etc, testMessage, "-d", "erin@example.test"); code != ExitTempFail {
		t.Errorf("database unreachable: exit %d, want %d", code, ExitTempFail)
	}
}
