package deliver

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"postern/auth/authtool"
)

// The .courier file Courier's dotforward(1) asks for: read ~/.forward if
// there is one, else deliver to the Maildir. "dotforward" is not installed
// on this machine's PATH, so the agent runs its own (this test binary, see
// TestMain), through the real delivery agent.
const dotforwardCourier = "|| dotforward\n./Maildir/\n"

func TestDotforwardWithoutForwardDeliversToMaildir(t *testing.T) {
	s := newTestSite(t, "alice@example.test")
	s.write("alice@example.test", ".courier", dotforwardCourier)
	wantOK(t, s.deliver("alice@example.test", "", testMessage))
	if got := s.folder("alice@example.test", "INBOX"); len(got) != 1 || !strings.HasSuffix(got[0], testMessage) {
		t.Fatalf("INBOX %q", got)
	}
	if sent := s.sent(); sent != "" {
		t.Fatalf("forwarded: %q", sent)
	}
}

func TestDotforwardForwardsInsteadOfDelivering(t *testing.T) {
	s := newTestSite(t, "alice@example.test")
	s.write("alice@example.test", ".courier", dotforwardCourier)
	s.write("alice@example.test", ".forward", "# to my other address\ncarol@example.org\n")
	o := s.deliver("alice@example.test", "", testMessage)
	wantOK(t, o)
	sent := s.sent()
	if !strings.Contains(sent, "-oi -f bob@example.org carol@example.org\n---\n") || !strings.Contains(sent, "Delivered-To: alice@example.test\n") {
		t.Fatalf("forward %q", sent)
	}
	if strings.Count(sent, "===\n") != 1 {
		t.Fatalf("%d forwards, want 1: %q", strings.Count(sent, "===\n"), sent)
	}
	if fileExists(filepath.Join(s.account("alice@example.test").MaildirPath(), "new")) && len(s.folder("alice@example.test", "INBOX")) != 0 {
		t.Fatal("delivered locally too")
	}
	if len(o.Delivered) != 1 || o.Delivered[0] != "!carol@example.org" {
		t.Fatalf("delivered %q", o.Delivered)
	}
}

func TestDotforwardOwnAddressKeepsACopy(t *testing.T) {
	s := newTestSite(t, "alice@example.test")
	s.write("alice@example.test", ".courier", dotforwardCourier)
	s.write("alice@example.test", ".forward", "\\alice, carol@example.org, mark\n")
	wantOK(t, s.deliver("alice@example.test", "", testMessage))
	if !strings.Contains(s.sent(), "-oi -f bob@example.org carol@example.org mark@example.test\n") {
		t.Fatalf("forward %q", s.sent())
	}
	if got := s.folder("alice@example.test", "INBOX"); len(got) != 1 {
		t.Fatalf("INBOX %q, want the local copy", got)
	}
}

func TestDotforwardProgramAndFile(t *testing.T) {
	s := newTestSite(t, "alice@example.test")
	home := s.home("alice@example.test")
	s.write("alice@example.test", ".courier", dotforwardCourier)
	s.write("alice@example.test", ".forward", `"|cat > piped.out"
`+filepath.Join(home, "saved.mbox")+`
"./quoted.mbox", "| echo $RECIPIENT > env.out"
`)
	wantOK(t, s.deliver("alice@example.test", "", testMessage))
	if got := readFile(t, filepath.Join(home, "piped.out")); !strings.HasSuffix(got, testMessage) {
		t.Fatalf("program got %q", got)
	}
	if got := readFile(t, filepath.Join(home, "env.out")); got != "alice@example.test\n" {
		t.Fatalf("program env %q", got)
	}
	for _, f := range []string{"saved.mbox", "quoted.mbox"} {
		if got := readFile(t, filepath.Join(home, f)); !strings.HasPrefix(got, "From bob@example.org ") || !strings.Contains(got, "Subject: hello there\n") {
			t.Fatalf("%s: %q", f, got)
		}
	}
	if s.sent() != "" {
		t.Fatalf("forwarded: %q", s.sent())
	}
	if inbox, _ := os.ReadDir(filepath.Join(s.account("alice@example.test").MaildirPath(), "new")); len(inbox) != 0 {
		t.Fatal("delivered to the Maildir too")
	}
}

// A message that already went through carol (a Delivered-To field) is not
// sent back to her; with nothing left to do, it stays here.
func TestDotforwardBreaksLoops(t *testing.T) {
	s := newTestSite(t, "alice@example.test")
	s.write("alice@example.test", ".courier", dotforwardCourier)
	s.write("alice@example.test", ".forward", "Carol@Example.org\n")
	wantOK(t, s.deliver("alice@example.test", "", "Delivered-To: carol@example.org\n"+testMessage))
	if s.sent() != "" {
		t.Fatalf("forwarded round the loop: %q", s.sent())
	}
	if got := s.folder("alice@example.test", "INBOX"); len(got) != 1 {
		t.Fatalf("INBOX %q", got)
	}
}

// A .forward others can write is not obeyed (they could run commands as
// the user); the mail is delivered as if it were not there.
func TestDotforwardIgnoresAnUnsafeForward(t *testing.T) {
	s := newTestSite(t, "alice@example.test")
	s.write("alice@example.test", ".courier", dotforwardCourier)
	p := s.write("alice@example.test", ".forward", "\"|touch pwned\"\ncarol@example.org\n")
	if err := os.Chmod(p, 0o622); err != nil {
		t.Fatal(err)
	}
	wantOK(t, s.deliver("alice@example.test", "", testMessage))
	if fileExists(filepath.Join(s.home("alice@example.test"), "pwned")) || s.sent() != "" {
		t.Fatalf("unsafe .forward obeyed (sent %q)", s.sent())
	}
	if got := s.folder("alice@example.test", "INBOX"); len(got) != 1 {
		t.Fatalf("INBOX %q", got)
	}
}

// A .forward line that cannot be read defers the message, with the reason,
// rather than deliver it somewhere the user did not ask for.
func TestDotforwardBadLineDefers(t *testing.T) {
	s := newTestSite(t, "alice@example.test")
	s.write("alice@example.test", ".courier", dotforwardCourier)
	s.write("alice@example.test", ".forward", "Carol Smith\n")
	o := s.deliver("alice@example.test", "", testMessage)
	if o.Status != StatusTemporary || o.ExitCode != ExitTempFail {
		t.Fatalf("outcome %+v, want deferred", o)
	}
	if s.sent() != "" {
		t.Fatalf("forwarded: %q", s.sent())
	}
}

// "||" output runs after exit 99 too, and 99 then stops (dot-courier(5)).
func TestDynamicInstructionsRunAfterExit99(t *testing.T) {
	s := newTestSite(t, "alice@example.test")
	s.write("alice@example.test", ".courier", "|| echo ./dyn.mbox; exit 99\n./Maildir/\n")
	o := s.deliver("alice@example.test", "", testMessage)
	wantOK(t, o)
	if !fileExists(filepath.Join(s.home("alice@example.test"), "dyn.mbox")) {
		t.Fatal("the output of a || program that exited 99 was not carried out")
	}
	if fileExists(filepath.Join(s.account("alice@example.test").MaildirPath(), "new")) && len(s.folder("alice@example.test", "INBOX")) != 0 {
		t.Fatal("the line after the 99 ran")
	}
}

func TestBuiltinDotforwardOnlyWhenNotInstalled(t *testing.T) {
	a := &Agent{dotforward: []string{"/opt/post'ern/bin/postern", "dotforward"}}
	dir := t.TempDir()
	for cmd, want := range map[string]string{
		"dotforward":            `'/opt/post'\''ern/bin/postern' 'dotforward'`,
		"  dotforward -x; true": `'/opt/post'\''ern/bin/postern' 'dotforward' -x; true`,
		"dotforwarder":          "dotforwarder",
		"/usr/bin/dotforward":   "/usr/bin/dotforward",
		"echo dotforward":       "echo dotforward",
	} {
		if got := a.builtinCommand(cmd, dir); got != want {
			t.Errorf("builtinCommand(%q) = %q, want %q", cmd, got, want)
		}
	}
	// An installed dotforward (Courier's) is the admin's choice.
	if err := os.WriteFile(filepath.Join(dir, "dotforward"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got := a.builtinCommand("dotforward", "/nonexistent:"+dir); got != "dotforward" {
		t.Fatalf("installed dotforward replaced: %q", got)
	}
}

func TestParseInstructionsBangForward(t *testing.T) {
	ins, err := ParseInstructions([]byte("!a@x.test, b@y.test\n"))
	if err != nil || len(ins) != 1 || ins[0].Kind != InstrForward || strings.Join(ins[0].Addrs, " ") != "a@x.test b@y.test" {
		t.Fatalf("%+v %v", ins, err)
	}
}

// Running as root for an account with another uid, dotforward runs in the
// child that switched to the account's uid: a .forward of the account's is
// obeyed, and its program runs as the account.
func TestDotforwardAsAccountUID(t *testing.T) {
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
	os.MkdirAll(home, 0o700)
	for p := filepath.Dir(home); p != "/" && p != os.TempDir(); p = filepath.Dir(p) {
		os.Chmod(p, 0o755)
	}
	// The child runs this test binary as dotforward after dropping root:
	// it must be a copy the account can execute (go test's is not).
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(s.dir, "bin", "deliver.test")
	os.MkdirAll(filepath.Dir(bin), 0o755)
	src, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, src, 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		".courier": dotforwardCourier,
		".forward": "\\nob, \"|id -u > dotforward.uid\"\n",
	}
	os.Chown(home, uid, gid)
	for name, content := range files {
		p := filepath.Join(home, name)
		os.WriteFile(p, []byte(content), 0o600)
		os.Chown(p, uid, gid)
	}
	agent, err := New(Options{Config: s.cfg, Logger: slog.New(slog.DiscardHandler), Reexec: []string{bin}, ReexecEnv: []string{"POSTERN_DELIVER_TEST_MAILDROP=1"}})
	if err != nil {
		t.Fatal(err)
	}
	wantOK(t, agent.Deliver(context.Background(), Request{Account: s.account("nob@example.test"), Sender: "bob@example.org",
		Recipient: "nob@example.test", Message: strings.NewReader(testMessage), AddTrace: true}))
	if got := readFile(t, filepath.Join(home, "dotforward.uid")); got != "65534\n" {
		t.Fatalf(".forward program ran as uid %q", got)
	}
	if got := s.folder("nob@example.test", "INBOX"); len(got) != 1 {
		t.Fatalf("INBOX %q, want the copy \\nob asked for", got)
	}
}
