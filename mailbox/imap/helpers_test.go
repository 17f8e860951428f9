package imap

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"postern/auth"
	"postern/mailbox/maildir"
)

// mapModule is a real auth.Module over a map of user → password, each user's
// Maildir under one directory.
type mapModule struct {
	root     string
	users    map[string]string
	disabled map[string]bool
	tempFail bool

	mu     sync.Mutex
	groups map[string]string // user → Courier's "group=" option
	ids    map[string][2]int // user → uid, gid (0, 0 when not set)
}

// setIDs gives an account a system uid and gid (the file permissions of
// filesystem-shared folders are checked for them).
// setIDs gives name's account uid and gid. The test's directories are
// made reachable for them (a server running as root reads a maildir only
// as its user could: maildir.Options.Reader).
func (m *mapModule) setIDs(name string, uid, gid int) {
	for d := m.root; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ids == nil {
		m.ids = map[string][2]int{}
	}
	m.ids[name] = [2]int{uid, gid}
}

func (m *mapModule) Name() string { return "testmap" }

// addUser adds an account, with its ACL group when group is not "".
func (m *mapModule) addUser(name, password, group string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.users[name] = password
	if group != "" {
		if m.groups == nil {
			m.groups = map[string]string{}
		}
		m.groups[name] = group
	}
}

func (m *mapModule) account(name string) *auth.Account {
	a := &auth.Account{Name: name, Maildir: filepath.Join(m.root, name, "Maildir"), Module: m.Name(), Options: map[string]string{}}
	if m.disabled[name] {
		a.Options["disableimap"] = "1"
	}
	if g := m.groups[name]; g != "" {
		a.Options["group"] = g
	}
	if id, ok := m.ids[name]; ok {
		a.UID, a.GID = id[0], id[1]
	}
	return a
}

func (m *mapModule) Lookup(ctx context.Context, name string) (*auth.Account, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.users[name]; !ok {
		return nil, auth.ErrNoSuchUser
	}
	return m.account(name), nil
}

func (m *mapModule) Authenticate(ctx context.Context, service, name, password string) (*auth.Account, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.tempFail {
		return nil, auth.ErrTemporary
	}
	p, ok := m.users[name]
	if !ok {
		return nil, auth.ErrNoSuchUser
	}
	if p != password {
		return nil, auth.ErrBadPassword
	}
	return m.account(name), nil
}

// testEnv is one running server on 127.0.0.1 with real Maildirs.
type testEnv struct {
	t      *testing.T
	root   string
	module *mapModule
	opt    Options
	srv    *Server
	addr   string
	done   chan error
}

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("IMAP_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// newTestEnv starts a server for users alice/secret and bob/hunter2 and
// checks at cleanup that Shutdown ends every goroutine it started.
func newTestEnv(t *testing.T, mutate func(*Options)) *testEnv {
	t.Helper()
	before := runtime.NumGoroutine()
	root := t.TempDir()
	mod := &mapModule{root: root, users: map[string]string{"alice": "secret", "bob": "hunter2"}, disabled: map[string]bool{}}
	opt := Options{
		Hostname:          "imap.test",
		Auth:              auth.NewService(mod),
		Logger:            testLogger(t),
		AllowInsecureAuth: true,
	}
	if mutate != nil {
		mutate(&opt)
	}
	env := &testEnv{t: t, root: root, module: mod, opt: opt}
	env.start()
	t.Cleanup(func() {
		env.stop()
		waitGoroutines(t, before)
	})
	return env
}

func (e *testEnv) start() {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	e.srv = NewServer(e.opt)
	e.addr = l.Addr().String()
	e.done = make(chan error, 1)
	go func() { e.done <- e.srv.Serve(l) }()
}

func (e *testEnv) stop() {
	if e.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err != nil {
		e.t.Errorf("shutdown: %v", err)
	}
	if err := <-e.done; !errors.Is(err, ErrServerClosed) {
		e.t.Errorf("Serve returned %v, want ErrServerClosed", err)
	}
	e.srv = nil
}

// restart replaces the server with a new one over the same Maildirs.
func (e *testEnv) restart() {
	e.stop()
	e.start()
}

func waitGoroutines(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= before {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Errorf("goroutine leak: %d before, %d after\n%s", before, n, buf)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func newAuth(m auth.Module) *auth.Service { return auth.NewService(m) }

func makeMaildir(path string) error { return maildir.Make(path) }

func (e *testEnv) maildirPath(user string) string {
	return filepath.Join(e.root, user, "Maildir")
}

// maildir opens a user's Maildir (creating it) for test setup and checks.
func (e *testEnv) maildir(user string) *maildir.Maildir {
	e.t.Helper()
	path := filepath.Join(e.root, user, "Maildir")
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		acct := e.module.account(user)
		if err := maildir.MakeFor(path, acct.UID, acct.GID); err != nil {
			e.t.Fatal(err)
		}
	}
	m, err := maildir.Open(path)
	if err != nil {
		e.t.Fatal(err)
	}
	return m
}

// deliver puts a message into a user's folder as an MTA would (new/).
func (e *testEnv) deliver(user, folder, msg string) string {
	e.t.Helper()
	key, err := e.maildir(user).Deliver(folder, strings.NewReader(msg), maildir.DeliverOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return key
}

// rawConn is a line-level client for transcripts and hostile input.
type rawConn struct {
	t  testing.TB
	c  net.Conn
	br *bufio.Reader
}

func (e *testEnv) dial() *rawConn {
	e.t.Helper()
	c, err := net.DialTimeout("tcp", e.addr, 5*time.Second)
	if err != nil {
		e.t.Fatal(err)
	}
	rc := &rawConn{t: e.t, c: c, br: bufio.NewReader(c)}
	e.t.Cleanup(func() { c.Close() })
	return rc
}

func (r *rawConn) send(s string) {
	r.t.Helper()
	r.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.c.Write([]byte(s)); err != nil {
		r.t.Fatalf("send %q: %v", s, err)
	}
}

func (r *rawConn) readLine() (string, error) {
	r.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := r.br.ReadString('\n')
	return strings.TrimRight(line, "\r\n"), err
}

func (r *rawConn) expect(prefix string) string {
	r.t.Helper()
	line, err := r.readLine()
	if err != nil {
		r.t.Fatalf("waiting for %q: %v", prefix, err)
	}
	if !strings.HasPrefix(line, prefix) {
		r.t.Fatalf("got %q, want prefix %q", line, prefix)
	}
	return line
}

// until reads lines until one starts with prefix and returns all read.
func (r *rawConn) until(prefix string) []string {
	r.t.Helper()
	var lines []string
	for {
		line, err := r.readLine()
		if err != nil {
			r.t.Fatalf("waiting for %q after %q: %v", prefix, lines, err)
		}
		lines = append(lines, line)
		if strings.HasPrefix(line, prefix) {
			return lines
		}
	}
}

// login opens a raw connection and logs in.
func (e *testEnv) login(user, pass string) *rawConn {
	r := e.dial()
	r.expect("* OK")
	r.send("L1 LOGIN " + user + " " + pass + "\r\n")
	r.expect("L1 OK")
	return r
}
