package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"postern/mailbox/maildir"
)

// imapdOver runs "postern imapd ARGS" on one end of a pipe, as inetd or
// sshd would with its standard input and output, and returns a client
// on the other end and the command's exit status when it ends.
func imapdOver(t *testing.T, configDir string, args ...string) (*imapclient.Client, chan int, *bytes.Buffer) {
	t.Helper()
	srvEnd, cliEnd := net.Pipe()
	var errb bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(append([]string{"postern", "--config", configDir, "imapd"}, args...), &env{stdin: srvEnd, stdout: srvEnd, stderr: &errb})
		srvEnd.Close()
	}()
	c := imapclient.New(cliEnd, nil)
	t.Cleanup(func() { c.Close() })
	return c, done, &errb
}

func exitOf(t *testing.T, done chan int) int {
	t.Helper()
	select {
	case code := <-done:
		return code
	case <-time.After(30 * time.Second):
		t.Fatal("postern imapd did not end after LOGOUT")
		return -1
	}
}

func TestIMAPDPreauth(t *testing.T) {
	md := filepath.Join(t.TempDir(), "Maildir")
	if err := maildir.Make(md); err != nil {
		t.Fatal(err)
	}
	c, done, errb := imapdOver(t, t.TempDir(), "--preauth", md)
	if err := c.WaitGreeting(); err != nil {
		t.Fatal(err)
	}
	if c.State() != imap.ConnStateAuthenticated {
		t.Fatalf("state after the greeting: %v, want authenticated (PREAUTH)", c.State())
	}
	msg := "From: a@example.test\r\nSubject: over a pipe\r\n\r\nhello\r\n"
	cmd := c.Append("INBOX", int64(len(msg)), nil)
	cmd.Write([]byte(msg))
	cmd.Close()
	if _, err := cmd.Wait(); err != nil {
		t.Fatalf("APPEND: %v", err)
	}
	if err := c.Create("Work", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil || sel.NumMessages != 1 {
		t.Fatalf("SELECT: %+v %v", sel, err)
	}
	if err := c.Logout().Wait(); err != nil {
		t.Fatalf("LOGOUT: %v", err)
	}
	if code := exitOf(t, done); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	// What the session did is in the Maildir on disk.
	files, _ := os.ReadDir(filepath.Join(md, "new"))
	cur, _ := os.ReadDir(filepath.Join(md, "cur"))
	if len(files)+len(cur) != 1 {
		t.Errorf("%d messages in the Maildir, want 1", len(files)+len(cur))
	}
	if st, err := os.Stat(filepath.Join(md, ".Work")); err != nil || !st.IsDir() {
		t.Errorf("folder Work not made: %v", err)
	}
}

func TestIMAPDPreauthRefusesANonMaildir(t *testing.T) {
	code, _, errs := runCmd(t, "", "imapd", "--preauth", t.TempDir())
	if code != 1 || !strings.Contains(errs, "is not a Maildir") {
		t.Fatalf("exit %d, %q", code, errs)
	}
	if code, _, _ := runCmd(t, "", "imapd", "/some/Maildir"); code != 64 {
		t.Fatalf("a MAILDIR without --preauth: exit %d, want 64", code)
	}
}

// Without --preauth the client logs in against the configuration's
// accounts, as on a listener (here insecureauth allows it without TLS).
func TestIMAPDLogin(t *testing.T) {
	dir := t.TempDir()
	etc := filepath.Join(dir, "etc")
	if code, _, errs := runCmd(t, "", "init", dir, "--domain", "example.test"); code != 0 {
		t.Fatalf("init: %s", errs)
	}
	if code, _, errs := runCmd(t, "pipe pass\n", "--config", etc, "user", "add", "pipe@example.test"); code != 0 {
		t.Fatalf("user add: %s", errs)
	}
	os.WriteFile(filepath.Join(etc, "insecureauth"), []byte("yes\n"), 0o644)
	c, done, errb := imapdOver(t, etc)
	if err := c.WaitGreeting(); err != nil {
		t.Fatal(err)
	}
	if c.State() != imap.ConnStateNotAuthenticated {
		t.Fatalf("state after the greeting: %v, want not authenticated", c.State())
	}
	if err := c.Login("pipe@example.test", "wrong").Wait(); err == nil {
		t.Fatal("a wrong password logged in")
	}
	if err := c.Login("pipe@example.test", "pipe pass").Wait(); err != nil {
		t.Fatalf("LOGIN: %v (%s)", err, errb.String())
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatalf("SELECT: %v", err)
	}
	c.Logout().Wait()
	if code := exitOf(t, done); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
}

// A real client through its tunnel: mbsync (isync) with Tunnel runs
// "postern imapd --preauth" and syncs a Maildir both ways.
func TestIMAPDTunnelWithMbsync(t *testing.T) {
	mbsync, err := exec.LookPath("mbsync")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("mbsync is missing; .ci/run installs isync")
		}
		t.Skip("mbsync (isync) is not installed")
	}
	bin := filepath.Join(t.TempDir(), "postern")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	dir := t.TempDir()
	server, local := filepath.Join(dir, "server", "Maildir"), filepath.Join(dir, "local")
	if err := maildir.Make(server); err != nil {
		t.Fatal(err)
	}
	m, err := maildir.Open(server)
	if err != nil {
		t.Fatal(err)
	}
	inbox, _ := m.Folder("INBOX")
	if _, err := inbox.Deliver(strings.NewReader("From: a@example.test\r\nSubject: tunnelled\r\n\r\nx\r\n"), maildir.DeliverOptions{}); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(local, 0o700)
	rc := filepath.Join(dir, "mbsyncrc")
	os.WriteFile(rc, []byte(`IMAPAccount tunnel
Tunnel "`+bin+` imapd --preauth `+server+`"

IMAPStore remote
Account tunnel

MaildirStore local
Path `+local+`/
Inbox `+local+`/INBOX
SubFolders Verbatim

Channel all
Far :remote:
Near :local:
Patterns *
Create Both
SyncState *
`), 0o600)
	out, err := exec.Command(mbsync, "-c", rc, "-a").CombinedOutput()
	if err != nil {
		t.Fatalf("mbsync: %v\n%s", err, out)
	}
	got, _ := filepath.Glob(filepath.Join(local, "INBOX", "*", "*"))
	if len(got) != 1 {
		t.Fatalf("%d messages synced to the local INBOX, want 1\n%s", len(got), out)
	}
	data, _ := os.ReadFile(got[0])
	if !bytes.Contains(data, []byte("Subject: tunnelled")) {
		t.Fatalf("synced message: %q", data)
	}
}

// pop3d: a session over a pipe, with a login against a postern init
// configuration, retrieves the message delivered into the account.
func TestPOP3D(t *testing.T) {
	dir := t.TempDir()
	etc := filepath.Join(dir, "etc")
	if code, _, errs := runCmd(t, "", "init", dir, "--domain", "example.test"); code != 0 {
		t.Fatalf("init: %s", errs)
	}
	if code, _, errs := runCmd(t, "pop pass\n", "--config", etc, "user", "add", "pop@example.test"); code != 0 {
		t.Fatalf("user add: %s", errs)
	}
	os.WriteFile(filepath.Join(etc, "insecureauth"), []byte("yes\n"), 0o644)
	md := filepath.Join(dir, "data", "mail", "example.test", "pop", "Maildir")
	m, err := maildir.Open(md)
	if err != nil {
		t.Fatal(err)
	}
	inbox, _ := m.Folder("INBOX")
	if _, err := inbox.Deliver(strings.NewReader("From: a@example.test\r\nSubject: by pop3d\r\n\r\nhello\r\n"), maildir.DeliverOptions{}); err != nil {
		t.Fatal(err)
	}
	srvEnd, cliEnd := net.Pipe()
	var errb bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run([]string{"postern", "--config", etc, "pop3d"}, &env{stdin: srvEnd, stdout: srvEnd, stderr: &errb})
		srvEnd.Close()
	}()
	defer cliEnd.Close()
	r := bufio.NewReader(cliEnd)
	line := func() string {
		l, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("read: %v (%s)", err, errb.String())
		}
		return l
	}
	say := func(cmd string) string {
		fmt.Fprintf(cliEnd, "%s\r\n", cmd)
		return line()
	}
	if l := line(); !strings.HasPrefix(l, "+OK") {
		t.Fatalf("greeting %q", l)
	}
	say("USER pop@example.test")
	if l := say("PASS wrong"); !strings.HasPrefix(l, "-ERR") {
		t.Fatalf("wrong password: %q", l)
	}
	say("USER pop@example.test")
	if l := say("PASS pop pass"); !strings.HasPrefix(l, "+OK") {
		t.Fatalf("PASS: %q (%s)", l, errb.String())
	}
	if l := say("STAT"); !strings.HasPrefix(l, "+OK 1 ") {
		t.Fatalf("STAT: %q", l)
	}
	say("RETR 1")
	var msg strings.Builder
	for l := line(); l != ".\r\n"; l = line() {
		msg.WriteString(l)
	}
	if !strings.Contains(msg.String(), "Subject: by pop3d") {
		t.Fatalf("RETR: %q", msg.String())
	}
	say("QUIT")
	if code := exitOf(t, done); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
}
