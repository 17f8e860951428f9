package authdaemon

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"postern/mailbox/maildir"
)

// The differential tests run Courier's own clients, from Debian's
// courier-authdaemon and courier-imap packages, against Postern's server.
// Their library is compiled to use one socket path (DefaultSocket), so
// these tests serve there, which needs root (CI runs as root) and no
// authdaemond of Courier's running.

// requireCourier returns the path of Courier's program name in /usr/sbin
// or /usr/bin, skipping the test when it is not installed (failing under
// CI, whose .ci/run installs it).
func requireCourier(t *testing.T, path, pkg string) string {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("Courier's %s is missing; .ci/run installs %s", path, pkg)
		}
		t.Skipf("Courier's %s (%s) is not installed", path, pkg)
	}
	return path
}

// serveAtCourierSocket serves f at DefaultSocket for the test, making its
// directory when missing and removing what it made afterwards.
func serveAtCourierSocket(t *testing.T, f *fixture) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("the Courier differential tests need root, to serve at " + DefaultSocket)
		}
		t.Skip("not root: cannot serve at " + DefaultSocket)
	}
	if c, err := net.DialTimeout("unix", DefaultSocket, time.Second); err == nil {
		c.Close()
		t.Fatalf("something answers at %s already (Courier's authdaemond? stop it: systemctl stop courier-authdaemon)", DefaultSocket)
	}
	// Remove, afterwards, the directories this test makes.
	var made []string
	for d := filepath.Dir(DefaultSocket); d != "/"; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil {
			break
		}
		made = append(made, d)
	}
	ln, err := Listen(DefaultSocket)
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(ServerOptions{Auth: f.svc, Logger: quietLog, ChangePassword: f.changer()})
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Shutdown(t.Context())
		<-done
		if _, err := os.Lstat(DefaultSocket); err == nil {
			t.Errorf("%s still there after Shutdown", DefaultSocket)
		}
		for _, d := range made {
			os.Remove(d)
		}
	})
}

// run runs a Courier program and returns its exit code and output.
func run(t *testing.T, stdin string, env []string, name string, args ...string) (int, string, string) {
	t.Helper()
	c := exec.Command(name, args...)
	c.Env = append([]string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}, env...)
	c.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	c.Stdout, c.Stderr = &out, &errOut
	err := c.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("%s: %v", name, err)
		}
		code = ee.ExitCode()
	}
	return code, out.String(), errOut.String()
}

func TestCourierAuthtest(t *testing.T) {
	authtest := requireCourier(t, "/usr/sbin/authtest", "courier-authdaemon")
	f := newFixture(t)
	serveAtCourierSocket(t, f)

	// A lookup (PRE): every field of the account, no password.
	code, out, errOut := run(t, "", nil, authtest, "alice@example.test")
	want := "Authentication succeeded.\n\n" +
		"     Authenticated: alice@example.test  (uid 1001, gid 1002)\n" +
		"    Home Directory: /home/alice\n" +
		"           Maildir: /home/alice/Maildir\n" +
		"             Quota: 10000000S,1000C\n" +
		"Encrypted Password: (none)\n" +
		"Cleartext Password: (none)\n" +
		"           Options: disablepop3=1,group=staff\n"
	if code != 0 || out != want {
		t.Errorf("authtest alice: exit %d\n%s\nstderr: %s\nwant:\n%s", code, out, errOut, want)
	}

	// A login (AUTH login), right password: the clear text comes back.
	code, out, errOut = run(t, "", nil, authtest, "alice@example.test", "secret")
	if code != 0 || out != strings.Replace(want, "Cleartext Password: (none)", "Cleartext Password: secret", 1) {
		t.Errorf("authtest alice secret: exit %d\n%s\nstderr: %s", code, out, errOut)
	}
	// Wrong password, unknown user: refused.
	for _, args := range [][]string{
		{"alice@example.test", "wrong"},
		{"nobody@example.test", "secret"},
		{"nobody@example.test"},
		{"-s", "pop3", "alice@example.test", "secret"}, // disablepop3=1
	} {
		code, out, errOut = run(t, "", nil, authtest, args...)
		if code != 1 || !strings.Contains(errOut, "Authentication FAILED") || strings.Contains(out, "succeeded") {
			t.Errorf("authtest %q: exit %d, stdout %q, stderr %q; want exit 1 and FAILED", args, code, out, errOut)
		}
	}
	// -s imap: the service reaches the modules.
	code, out, errOut = run(t, "", nil, authtest, "-s", "imap", "bob@example.test", "hunter2")
	if code != 0 || !strings.Contains(out, "     Authenticated: bob@example.test  (uid 1003, gid 1003)\n") ||
		!strings.Contains(out, "           Maildir: (none)\n") || !strings.Contains(out, "           Options: (none)\n") {
		t.Errorf("authtest -s imap bob: exit %d\n%s\nstderr: %s", code, out, errOut)
	}

	// The three-argument form is auth_passwd: a PASSWD request.
	code, _, errOut = run(t, "", nil, authtest, "-s", "imap", "bob@example.test", "hunter2", "n3wpass")
	if code != 0 || !strings.Contains(errOut, "Password change succeeded.") {
		t.Fatalf("authtest password change: exit %d, stderr %q", code, errOut)
	}
	if code, _, errOut = run(t, "", nil, authtest, "-s", "imap", "bob@example.test", "n3wpass"); code != 0 {
		t.Errorf("login with the changed password: exit %d, %s", code, errOut)
	}
	if code, _, _ = run(t, "", nil, authtest, "-s", "imap", "bob@example.test", "hunter2"); code != 1 {
		t.Errorf("login with the old password: exit %d, want 1", code)
	}
	if code, _, errOut = run(t, "", nil, authtest, "-s", "imap", "bob@example.test", "wrong", "x"); code != 1 {
		t.Errorf("password change with a wrong old password: exit %d, want 1 (%s)", code, errOut)
	}
}

func TestCourierAuthenumerate(t *testing.T) {
	authenumerate := requireCourier(t, "/usr/sbin/authenumerate", "courier-authdaemon")
	f := newFixture(t)
	serveAtCourierSocket(t, f)
	code, out, errOut := run(t, "", nil, authenumerate)
	want := "alice@example.test\t1001\t1002\t/home/alice\t/home/alice/Maildir\n" +
		"bob@example.test\t1003\t1003\t/home/bob\t\n"
	if code != 0 || out != want {
		t.Errorf("authenumerate: exit %d\n%q\nstderr: %s\nwant %q", code, out, errOut, want)
	}
	code, out, errOut = run(t, "", nil, authenumerate, "-o")
	want = "alice@example.test\t1001\t1002\t/home/alice\t/home/alice/Maildir\tdisablepop3=1,group=staff\n" +
		"bob@example.test\t1003\t1003\t/home/bob\t\t\n"
	if code != 0 || out != want {
		t.Errorf("authenumerate -o: exit %d\n%q\nstderr: %s\nwant %q", code, out, errOut, want)
	}
}

// TestCourierIMAPLogin: Courier's IMAP server (imaplogin, then imapd)
// logs alice in through Postern's socket, becomes her uid, and lists
// the INBOX Postern's Maildir code delivered to.
func TestCourierIMAPLogin(t *testing.T) {
	imaplogin := requireCourier(t, "/usr/lib/courier/courier/imaplogin", "courier-imap")
	imapd := requireCourier(t, "/usr/bin/imapd", "courier-imap")
	f := newFixture(t)
	serveAtCourierSocket(t, f)

	// alice's home, owned by her uid, where Courier's imapd may reach it.
	base, err := os.MkdirTemp("", "courierimap")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(base)
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(base, "alice")
	md := filepath.Join(home, "Maildir")
	if err := maildir.Make(md); err != nil {
		t.Fatal(err)
	}
	box, err := maildir.Open(md)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := box.Deliver("INBOX", strings.NewReader("From: bob@example.test\r\nSubject: through Postern\r\n\r\nhello\r\n"), maildir.DeliverOptions{}); err != nil {
		t.Fatal(err)
	}
	filepath.Walk(home, func(p string, _ os.FileInfo, _ error) error { return os.Chown(p, 1001, 1002) })
	if err := f.setHome("alice@example.test", home, md); err != nil {
		t.Fatal(err)
	}

	env := []string{"TCPREMOTEIP=192.0.2.9", "IMAP_CAPABILITY=IMAP4rev1", "IMAP_TLS=0", "IMAP_STARTTLS=NO", "IMAP_EMPTYTRASH=", "IMAP_UMASK=022"}
	out, errOut := imapSession(t, env, imaplogin, imapd, "secret",
		"b SELECT INBOX\r\nc FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\nd LOGOUT\r\n")
	if !strings.Contains(out, "a OK LOGIN Ok.") || !strings.Contains(out, "* 1 EXISTS") ||
		!strings.Contains(out, "Subject: through Postern") || !strings.Contains(out, "d OK LOGOUT") {
		t.Fatalf("Courier's imapd through Postern's socket:\n%s\nstderr: %s", out, errOut)
	}

	// A wrong password is refused by Courier's imaplogin, and counts in
	// Postern's guard against the address imaplogin passes on
	// (TCPREMOTEIP).
	if n := f.svc.Guard().Stats().Tracked; n != 0 {
		t.Fatalf("%d client networks counted before any failure", n)
	}
	out, errOut = imapSession(t, env, imaplogin, imapd, "wrong", "b LOGOUT\r\n")
	if !strings.Contains(out, "a NO") || strings.Contains(out, "a OK") {
		t.Errorf("wrong password:\n%s\nstderr: %s", out, errOut)
	}
	if n := f.svc.Guard().Stats().Tracked; n != 1 {
		t.Errorf("%d client networks counted after a failed login through Courier's imapd, want 1", n)
	}
}

// imapSession logs alice in with password through imaplogin, and once it
// has answered sends the rest of the session (imaplogin reads ahead, so
// what follows LOGIN must wait for the imapd it starts).
func imapSession(t *testing.T, env []string, imaplogin, imapd, password, rest string) (string, string) {
	t.Helper()
	c := exec.Command(imaplogin, imapd, "Maildir")
	c.Env = append([]string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}, env...)
	stdin, err := c.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := c.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var errOut bytes.Buffer
	c.Stderr = &errOut
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(20*time.Second, func() { c.Process.Kill() })
	defer timer.Stop()
	r := bufio.NewReader(stdout)
	var out strings.Builder
	io.WriteString(stdin, "a LOGIN alice@example.test "+password+"\r\n")
	for {
		line, err := r.ReadString('\n')
		out.WriteString(line)
		if err != nil || strings.HasPrefix(line, "a ") {
			break
		}
	}
	io.WriteString(stdin, rest)
	stdin.Close()
	b, _ := io.ReadAll(r)
	out.Write(b)
	c.Wait()
	return out.String(), errOut.String()
}
