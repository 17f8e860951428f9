package authdaemon

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"postern/auth"
	"postern/auth/authtool"
	"postern/auth/passwd"
	"postern/auth/userdb"
)

var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// fixture is a userdb (source and compiled file, as "postern user" keeps
// them) in a configuration directory, and the service answering from it.
type fixture struct {
	configDir string
	svc       *auth.Service
	db        *userdb.DB
}

// testAccounts are the accounts of every fixture: alice has every field
// Courier's reply can carry; bob is plain.
func testAccounts(t *testing.T) []userdb.Entry {
	t.Helper()
	hash := func(pw string) string {
		h, err := passwd.Hash(pw, passwd.SchemeSHA512Crypt)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	return []userdb.Entry{
		{Name: "alice@example.test", Fields: map[string]string{
			"uid": "1001", "gid": "1002", "home": "/home/alice", "mail": "/home/alice/Maildir",
			"quota": "10000000S,1000C", "gecos": "Alice Liddell,Room 1", "options": "disablepop3=1,group=staff",
			"systempw": hash("secret"),
		}},
		{Name: "bob@example.test", Fields: map[string]string{
			"uid": "1003", "gid": "1003", "home": "/home/bob", "systempw": hash("hunter2"),
		}},
	}
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	p := authtool.PathsFor(dir)
	entries := testAccounts(t)
	var src strings.Builder
	for _, e := range entries {
		line, err := e.Format()
		if err != nil {
			t.Fatal(err)
		}
		src.WriteString(line + "\n")
	}
	if err := os.WriteFile(p.Source, []byte(src.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := userdb.WriteDB(entries, p.DB, p.Source); err != nil {
		t.Fatal(err)
	}
	db, err := userdb.Open(p.DB, userdb.WithLogger(quietLog), userdb.WithCheckInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	svc := auth.NewService(db)
	svc.SetGuard(auth.NewGuard(auth.GuardConfig{Failures: 3, Window: time.Hour, Block: time.Hour}))
	return &fixture{configDir: dir, svc: svc, db: db}
}

// changer changes userdb passwords as "postern serve" does: the source
// is edited and recompiled.
func (f *fixture) changer() func(context.Context, *auth.Account, string, string) error {
	change := authtool.UserdbPasswordChanger(f.configDir)
	return func(_ context.Context, a *auth.Account, service, pw string) error {
		return change(a.Name, service, pw)
	}
}

// setHome moves name's home and Maildir.
func (f *fixture) setHome(name, home, maildir string) error {
	return authtool.NewAccounts(f.configDir).Change(name, func(e *userdb.Entry) error {
		e.Fields[userdb.FieldHome] = home
		e.Fields[userdb.FieldMail] = maildir
		return nil
	})
}

// serve starts a Server for f on a socket in a fresh directory and returns
// the socket's path.
func (f *fixture) serve(t *testing.T, opts ServerOptions) (string, *Server) {
	t.Helper()
	// Unix socket paths are short (108 bytes): not under t.TempDir().
	base, err := os.MkdirTemp("", "authd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	path := filepath.Join(base, "authdaemon", "socket")
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	opts.Auth = f.svc
	if opts.Logger == nil {
		opts.Logger = quietLog
	}
	if opts.ChangePassword == nil {
		opts.ChangePassword = f.changer()
	}
	srv := NewServer(opts)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return path, srv
}

// exchange sends raw and returns everything the server answers until it
// closes the connection.
func exchange(t *testing.T, path, raw string) string {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(c)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		// A reset is the server closing on a request it did not read
		// to its end (too long): an answer of nothing.
		t.Fatalf("reading the answer to %.60q: %v", raw, err)
	}
	return string(b)
}

func TestSocketModes(t *testing.T) {
	f := newFixture(t)
	path, srv := f.serve(t, ServerOptions{})
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode()&os.ModeSocket == 0 || st.Mode().Perm() != 0o777 {
		t.Errorf("socket mode %v, want a socket with 0777", st.Mode())
	}
	dst, err := os.Stat(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if dst.Mode().Perm() != 0o750 {
		t.Errorf("directory mode %04o, want 0750", dst.Mode().Perm())
	}
	// A second server on the same path is refused while the first runs.
	if ln, err := Listen(path); err == nil {
		ln.Close()
		t.Error("Listen on a socket another server answers succeeded")
	}
	// Shutdown removes the socket (once Serve has it: an answer says so).
	if got := exchange(t, path, "PRE . imap bob@example.test\n"); !strings.HasPrefix(got, "UID=") {
		t.Fatalf("PRE bob: %q", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(ctx)
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket still there after Shutdown: %v", err)
	}
}

func TestListenRefusesOpenDirectory(t *testing.T) {
	base, err := os.MkdirTemp("", "authd")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(base)
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	if ln, err := Listen(filepath.Join(base, "socket")); err == nil {
		ln.Close()
		t.Fatal("Listen in a directory every user may enter succeeded")
	}
}

func TestStaleSocketReplaced(t *testing.T) {
	base, err := os.MkdirTemp("", "authd")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(base)
	os.Chmod(base, 0o750)
	path := filepath.Join(base, "socket")
	// A socket file nobody listens on: what a killed daemon leaves.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	ln2, err := Listen(path)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	ln2.Close()
}

func TestPre(t *testing.T) {
	f := newFixture(t)
	path, _ := f.serve(t, ServerOptions{})
	got := exchange(t, path, "PRE . imap alice@example.test\n")
	want := "UID=1001\nGID=1002\nHOME=/home/alice\nADDRESS=alice@example.test\nNAME=Alice Liddell\n" +
		"MAILDIR=/home/alice/Maildir\nQUOTA=10000000S,1000C\nOPTIONS=disablepop3=1,group=staff\n.\n"
	if got != want {
		t.Errorf("PRE alice:\n got %q\nwant %q", got, want)
	}
	if strings.Contains(got, "PASSWD") {
		t.Error("PRE revealed a password field")
	}
	// The meta lines authlib 0.71 sends first are accepted.
	if got := exchange(t, path, "TCPREMOTEIP=::1\nPRE . imap bob@example.test\n"); !strings.HasPrefix(got, "UID=1003\n") || !strings.HasSuffix(got, "\n.\n") {
		t.Errorf("PRE bob after TCPREMOTEIP: %q", got)
	}
	if got := exchange(t, path, "PRE . imap nobody@example.test\n"); got != "FAIL\n" {
		t.Errorf("PRE of an unknown name: %q, want FAIL", got)
	}
	// One module by name, with or without Courier's "auth" prefix.
	for _, m := range []string{"authuserdb", "userdb"} {
		if got := exchange(t, path, "PRE "+m+" imap bob@example.test\n"); !strings.HasPrefix(got, "UID=1003\n") {
			t.Errorf("PRE %s bob: %q", m, got)
		}
	}
	if got := exchange(t, path, "PRE authldap imap bob@example.test\n"); got != "FAIL\n" {
		t.Errorf("PRE of a module not in the list: %q, want FAIL", got)
	}
}

func TestAuthLogin(t *testing.T) {
	f := newFixture(t)
	path, _ := f.serve(t, ServerOptions{})
	req := (&Request{Kind: KindAuth, Service: "imap", AuthType: "login", Name: "alice@example.test", Password: "secret"}).String()
	got := exchange(t, path, req)
	if !strings.HasPrefix(got, "UID=1001\nGID=1002\nHOME=/home/alice\nADDRESS=alice@example.test\n") ||
		!strings.Contains(got, "\nPASSWD2=secret\n") || !strings.HasSuffix(got, "\n.\n") {
		t.Errorf("AUTH alice: %q", got)
	}
	if strings.Contains(got, "\nPASSWD=") || strings.Contains(got, "$6$") {
		t.Errorf("AUTH revealed the password hash: %q", got)
	}
	bad := (&Request{Kind: KindAuth, Service: "imap", AuthType: "login", Name: "alice@example.test", Password: "wrong"}).String()
	if got := exchange(t, path, bad); got != "FAIL\n" {
		t.Errorf("AUTH with a wrong password: %q, want FAIL", got)
	}
	// A service the account's options disable is refused.
	pop := (&Request{Kind: KindAuth, Service: "pop3", AuthType: "login", Name: "alice@example.test", Password: "secret"}).String()
	if got := exchange(t, path, pop); got != "FAIL\n" {
		t.Errorf("AUTH pop3 for an account with disablepop3=1: %q, want FAIL", got)
	}
	// CRAM-MD5: no module can check it; refused as Courier refuses a
	// type no module takes.
	cram := (&Request{Kind: KindAuth, Service: "imap", AuthType: "cram-md5", AuthData: "PDEyMz4=\nYWxpY2UgMDAw\n"}).String()
	if got := exchange(t, path, cram); got != "FAIL\n" {
		t.Errorf("AUTH cram-md5: %q, want FAIL", got)
	}
}

// TestAuthGuard: failed AUTH logins count in the service's guard by the
// address the client names (TCPREMOTEIP); once blocked, even the right
// password gets no answer (temporary failure), while another address
// still logs in.
func TestAuthGuard(t *testing.T) {
	f := newFixture(t)
	path, _ := f.serve(t, ServerOptions{})
	login := func(ip, pw string) string {
		req := &Request{Kind: KindAuth, Meta: map[string]string{"TCPREMOTEIP": ip}, Service: "imap", AuthType: "login", Name: "bob@example.test", Password: pw}
		return exchange(t, path, req.String())
	}
	for i := 0; i < 3; i++ {
		if got := login("192.0.2.7", "wrong"); got != "FAIL\n" {
			t.Fatalf("failure %d: %q", i+1, got)
		}
	}
	if !f.svc.Guard().Blocked(netip.MustParseAddr("192.0.2.7")) {
		t.Fatal("three failed AUTHs did not block the address")
	}
	if got := login("192.0.2.7", "hunter2"); got != "" {
		t.Errorf("blocked address with the right password: %q, want no answer", got)
	}
	if got := login("198.51.100.1", "hunter2"); !strings.HasPrefix(got, "UID=1003\n") {
		t.Errorf("another address: %q", got)
	}
}

func TestEnumerate(t *testing.T) {
	f := newFixture(t)
	path, _ := f.serve(t, ServerOptions{})
	got := exchange(t, path, "ENUMERATE\n")
	want := "# userdb\n\n" +
		"alice@example.test\t1001\t1002\t/home/alice\t/home/alice/Maildir\tdisablepop3=1,group=staff\n" +
		"bob@example.test\t1003\t1003\t/home/bob\t\t\n.\n"
	if got != want {
		t.Errorf("ENUMERATE:\n got %q\nwant %q", got, want)
	}
}

func TestPasswd(t *testing.T) {
	f := newFixture(t)
	path, _ := f.serve(t, ServerOptions{})
	if got := exchange(t, path, "PASSWD imap\tbob@example.test\twrong\tnewpass\n"); got != "FAIL\n" {
		t.Errorf("PASSWD with a wrong old password: %q", got)
	}
	if got := exchange(t, path, "PASSWD imap\tbob@example.test\thunter2\tnewpass\n"); got != "OK\n" {
		t.Fatalf("PASSWD: %q", got)
	}
	ctx := context.Background()
	if _, err := f.svc.Authenticate(ctx, "imap", "bob@example.test", "newpass"); err != nil {
		t.Errorf("login with the new password: %v", err)
	}
	if _, err := f.svc.Authenticate(ctx, "imap", "bob@example.test", "hunter2"); !errors.Is(err, auth.ErrBadPassword) {
		t.Errorf("login with the old password: %v, want ErrBadPassword", err)
	}
}

// TestBadInput: oversized and malformed requests get FAIL or a closed
// connection, never a hang, and the server goes on answering.
func TestBadInput(t *testing.T) {
	f := newFixture(t)
	path, _ := f.serve(t, ServerOptions{Timeout: time.Second, MaxConns: 4})
	cases := map[string]string{
		"unknown verb":        "HELLO\n",
		"long line":           "PRE . imap " + strings.Repeat("a", 3*MaxLine) + "\n",
		"AUTH too big":        "AUTH 100000\n",
		"AUTH negative":       "AUTH -5\n",
		"AUTH not a number":   "AUTH x\n",
		"AUTH short body":     "AUTH 50\nimap\nlogin\n",
		"AUTH no password":    "AUTH 18\nimap\nlogin\nalice\n\n\n",
		"PRE short":           "PRE . imap\n",
		"PASSWD short":        "PASSWD imap\talice\n",
		"PASSWD control":      "PASSWD imap\talice\x01\tx\ty\n",
		"too many meta":       strings.Repeat("X=1\n", MaxMetaLines+1) + "ENUMERATE\n",
		"meta with control":   "X=\x01\nENUMERATE\n",
		"NUL":                 "\x00\x00\x00\n",
		"no newline then EOF": "PRE . imap alice@example.test",
		"ENUMERATE arguments": "ENUMERATE all\n",
	}
	for name, raw := range cases {
		got := exchange(t, path, raw)
		if got != "FAIL\n" && got != "" {
			t.Errorf("%s: answer %.80q, want FAIL or nothing", name, got)
		}
	}
	// A client that sends nothing is cut off at the deadline.
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	if _, err := io.ReadAll(c); err != nil {
		t.Errorf("silent client: %v (not closed by the server's deadline)", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("silent client closed after %v", d)
	}
	c.Close()
	// More silent clients than MaxConns: the server still answers once
	// their deadlines pass.
	var idle []net.Conn
	for i := 0; i < 6; i++ {
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
	}
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	if got := exchange(t, path, "PRE . imap bob@example.test\n"); !strings.HasPrefix(got, "UID=1003\n") {
		t.Errorf("after bad input, PRE bob: %q", got)
	}
}

// TestClient: the client module against Postern's own server over a real
// socket.
func TestClient(t *testing.T) {
	f := newFixture(t)
	path, srv := f.serve(t, ServerOptions{})
	c := NewClient(path)
	ctx := context.Background()

	a, err := c.Lookup(ctx, "alice@example.test")
	if err != nil {
		t.Fatal(err)
	}
	if a.Name != "alice@example.test" || a.UID != 1001 || a.GID != 1002 || a.Home != "/home/alice" ||
		a.Maildir != "/home/alice/Maildir" || a.Quota != "10000000S,1000C" || a.Options["group"] != "staff" ||
		!a.Disabled("pop3") || a.Module != ModuleName {
		t.Errorf("Lookup alice: %+v", a)
	}
	if _, err := c.Lookup(ctx, "nobody@example.test"); !errors.Is(err, auth.ErrNoSuchUser) {
		t.Errorf("Lookup of an unknown name: %v, want ErrNoSuchUser", err)
	}
	if _, err := c.Authenticate(ctx, "imap", "bob@example.test", "wrong"); !errors.Is(err, auth.ErrBadPassword) {
		t.Errorf("wrong password: %v, want ErrBadPassword", err)
	}
	b, err := c.Authenticate(ctx, "imap", "bob@example.test", "hunter2")
	if err != nil {
		t.Fatal(err)
	}
	if b.UID != 1003 || b.Home != "/home/bob" {
		t.Errorf("Authenticate bob: %+v", b)
	}
	if err := c.SetPassword(ctx, b, "imap", "changed"); err != nil {
		t.Fatalf("SetPassword: %v", err)
	}
	if _, err := c.Authenticate(ctx, "imap", "bob@example.test", "changed"); err != nil {
		t.Errorf("login with the changed password: %v", err)
	}
	if _, err := c.Authenticate(ctx, "imap", "bob@example.test", "hunter2"); !errors.Is(err, auth.ErrBadPassword) {
		t.Errorf("login with the old password: %v, want ErrBadPassword", err)
	}
	var names []string
	if err := c.Enumerate(ctx, func(a *auth.Account) error { names = append(names, a.Name); return nil }); err != nil {
		t.Fatal(err)
	}
	if strings.Join(names, " ") != "alice@example.test bob@example.test" {
		t.Errorf("Enumerate: %v", names)
	}
	// Through a service, as authmodulelist uses it.
	svc := auth.NewService(c)
	if _, err := svc.Authenticate(ctx, "imap", "alice@example.test", "secret"); err != nil {
		t.Errorf("service over the client: %v", err)
	}

	// The daemon goes away: temporary failure, not "no such user".
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	if _, err := c.Lookup(ctx, "alice@example.test"); !errors.Is(err, auth.ErrTemporary) {
		t.Errorf("Lookup with the daemon down: %v, want ErrTemporary", err)
	}
	if _, err := c.Authenticate(ctx, "imap", "alice@example.test", "secret"); !errors.Is(err, auth.ErrTemporary) {
		t.Errorf("Authenticate with the daemon down: %v, want ErrTemporary", err)
	}
}

// TestClientSilentDaemon: a daemon that accepts and closes without an
// answer (Courier's temporary failure), or never answers, is
// ErrTemporary, within the client's timeout.
func TestClientSilentDaemon(t *testing.T) {
	base, err := os.MkdirTemp("", "authd")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(base)
	path := filepath.Join(base, "socket")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	hold := make(chan struct{})
	defer close(hold)
	go func() {
		for i := 0; ; i++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			bufio.NewReader(c).ReadString('\n')
			if i == 0 {
				c.Close() // closes without an answer
				continue
			}
			go func() { <-hold; c.Close() }() // never answers
		}
	}()
	c := &Client{Path: path, Timeout: 300 * time.Millisecond}
	if _, err := c.Lookup(context.Background(), "alice"); !errors.Is(err, auth.ErrTemporary) {
		t.Errorf("closed without an answer: %v, want ErrTemporary", err)
	}
	start := time.Now()
	if _, err := c.Lookup(context.Background(), "alice"); !errors.Is(err, auth.ErrTemporary) {
		t.Errorf("no answer: %v, want ErrTemporary", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("no answer took %v", d)
	}
}

// TestReload: the server answers from the service's current modules, so
// a reload's SetModules is seen by the next request.
func TestReload(t *testing.T) {
	f := newFixture(t)
	path, _ := f.serve(t, ServerOptions{})
	f.svc.SetModules()
	if got := exchange(t, path, "PRE . imap alice@example.test\n"); got != "FAIL\n" {
		t.Errorf("after the modules were removed: %q", got)
	}
	f.svc.SetModules(f.db)
	if got := exchange(t, path, "PRE . imap alice@example.test\n"); !strings.HasPrefix(got, "UID=1001\n") {
		t.Errorf("after the userdb came back: %q", got)
	}
}

func TestRequestRoundTrip(t *testing.T) {
	for _, req := range []*Request{
		{Kind: KindPre, Module: ".", Service: "imap", Name: "a@b"},
		{Kind: KindAuth, Service: "imap", AuthType: "login", Name: "a@b", Password: "p w"},
		{Kind: KindPasswd, Service: "imap", Name: "a@b", Password: "o", NewPassword: "n"},
		{Kind: KindEnumerate, Meta: map[string]string{"TCPREMOTEIP": "::1"}},
	} {
		got, err := ReadRequest(bufio.NewReader(strings.NewReader(req.String())))
		if err != nil {
			t.Errorf("%q: %v", req.String(), err)
			continue
		}
		if got.Kind != req.Kind || got.Name != req.Name || got.Password != req.Password || got.Service != req.Service ||
			got.NewPassword != req.NewPassword || got.Meta["TCPREMOTEIP"] != req.Meta["TCPREMOTEIP"] {
			t.Errorf("%q read back as %+v", req.String(), got)
		}
	}
}
