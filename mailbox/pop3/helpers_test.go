package pop3

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"postern/auth"
	"postern/internal/netserve/netservetest"
	"postern/mailbox/maildir"
)

// mapAuth is a small auth.Module over a map: user -> password, maildir.
type mapAuth struct {
	users map[string]mapUser
}

type mapUser struct {
	password string
	maildir  string
	options  map[string]string
	tempFail bool
}

func (m *mapAuth) Name() string { return "testmap" }

func (m *mapAuth) Lookup(ctx context.Context, name string) (*auth.Account, error) {
	u, ok := m.users[name]
	if !ok {
		return nil, auth.ErrNoSuchUser
	}
	return &auth.Account{Name: name, Maildir: u.maildir, Options: u.options, Module: m.Name()}, nil
}

func (m *mapAuth) Authenticate(ctx context.Context, service, name, password string) (*auth.Account, error) {
	u, ok := m.users[name]
	if !ok {
		return nil, auth.ErrNoSuchUser
	}
	if u.tempFail {
		return nil, auth.ErrTemporary
	}
	if u.password != password {
		return nil, auth.ErrBadPassword
	}
	return m.Lookup(ctx, name)
}

// testEnv is a running server with one user, alice, whose maildir is real.
type testEnv struct {
	t         *testing.T
	srv       *Server
	addr      string
	tlsAddr   string
	root      string // alice's maildir
	md        *maildir.Maildir
	clientTLS *tls.Config // trusts the server's certificate
	serveErrs chan error
}

type envOption func(*Options)

// checkGoroutines fails the test if goroutines started during it are still
// running after its cleanups (registered first, so it runs last).
func checkGoroutines(t *testing.T) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for {
			n := runtime.NumGoroutine()
			if n <= before {
				return
			}
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<16)
				buf = buf[:runtime.Stack(buf, true)]
				t.Errorf("goroutine leak: %d before, %d after\n%s", before, n, buf)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

func newTestEnv(t *testing.T, opts ...envOption) *testEnv {
	t.Helper()
	checkGoroutines(t)
	dir := t.TempDir()
	root := filepath.Join(dir, "alice", "Maildir")
	if err := os.MkdirAll(filepath.Dir(root), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := maildir.Make(root); err != nil {
		t.Fatalf("maildir.Make: %v", err)
	}
	md, err := maildir.Open(root)
	if err != nil {
		t.Fatalf("maildir.Open: %v", err)
	}
	bobRoot := filepath.Join(dir, "bob", "Maildir")
	os.MkdirAll(filepath.Dir(bobRoot), 0o700)
	if err := maildir.Make(bobRoot); err != nil {
		t.Fatal(err)
	}
	users := &mapAuth{users: map[string]mapUser{
		"alice":  {password: "secret pass", maildir: root},
		"bob":    {password: "bobpw", maildir: bobRoot, options: map[string]string{"disablepop3": "1"}},
		"carol":  {password: "x", maildir: root, tempFail: true},
		"nomail": {password: "x", maildir: filepath.Join(dir, "missing")},
		"dave":   {password: "x", maildir: root, options: map[string]string{"disableinsecurepop3": "1"}},
	}}
	tlsConf, clientTLS := netservetest.TLSConfigs(t, "pop.example.test")
	opt := Options{
		Hostname:         "pop.example.test",
		TLSConfig:        tlsConf,
		Auth:             auth.NewService(users),
		Logger:           slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		AuthFailureDelay: 5 * time.Millisecond,
	}
	for _, o := range opts {
		o(&opt)
	}
	srv := NewServer(opt)
	env := &testEnv{t: t, srv: srv, root: root, md: md, clientTLS: clientTLS, serveErrs: make(chan error, 2)}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lt, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	env.addr, env.tlsAddr = l.Addr().String(), lt.Addr().String()
	go func() { env.serveErrs <- srv.Serve(l) }()
	go func() { env.serveErrs <- srv.ServeTLS(lt) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		for range 2 {
			if err := <-env.serveErrs; !errors.Is(err, ErrServerClosed) {
				t.Errorf("Serve returned %v, want ErrServerClosed", err)
			}
		}
	})
	return env
}

// testWriter sends server logs to the test log, so they show on failure.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// clientTLSConfig trusts the server's certificate.
func (e *testEnv) clientTLSConfig() *tls.Config { return e.clientTLS.Clone() }

// deliver puts a message into alice's INBOX (new/) and returns its key.
func (e *testEnv) deliver(body string) string {
	e.t.Helper()
	key, err := e.md.Deliver(maildir.Inbox, strings.NewReader(body), maildir.DeliverOptions{})
	if err != nil {
		e.t.Fatalf("Deliver: %v", err)
	}
	return key
}

// client is a line-oriented POP3 client over a real connection.
type client struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func (e *testEnv) dial() *client {
	e.t.Helper()
	conn, err := net.DialTimeout("tcp", e.addr, 5*time.Second)
	if err != nil {
		e.t.Fatal(err)
	}
	c := &client{t: e.t, conn: conn, r: bufio.NewReader(conn)}
	e.t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	if g := c.line(); !strings.HasPrefix(g, "+OK") {
		e.t.Fatalf("greeting %q", g)
	}
	return c
}

// login dials and logs in as alice with USER/PASS.
func (e *testEnv) login() *client {
	e.t.Helper()
	c := e.dial()
	c.ok("USER alice")
	c.ok("PASS secret pass")
	return c
}

func (c *client) send(line string) {
	c.t.Helper()
	if _, err := c.conn.Write([]byte(line + "\r\n")); err != nil {
		c.t.Fatalf("send %q: %v", line, err)
	}
}

// line reads one response line without CRLF, failing on a bare LF.
func (c *client) line() string {
	c.t.Helper()
	l, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v (got %q)", err, l)
	}
	if !strings.HasSuffix(l, "\r\n") {
		c.t.Fatalf("line %q does not end in CRLF", l)
	}
	return strings.TrimSuffix(l, "\r\n")
}

func (c *client) cmd(line string) string {
	c.t.Helper()
	c.send(line)
	return c.line()
}

func (c *client) ok(line string) string {
	c.t.Helper()
	r := c.cmd(line)
	if !strings.HasPrefix(r, "+OK") {
		c.t.Fatalf("%s: got %q, want +OK", line, r)
	}
	return r
}

// multi reads a multi-line body up to the "." line and undoes
// byte-stuffing; it returns the raw body too.
func (c *client) multi() (lines []string, raw []byte) {
	c.t.Helper()
	for {
		l, err := c.r.ReadString('\n')
		if err != nil {
			c.t.Fatalf("read multi-line: %v", err)
		}
		if !strings.HasSuffix(l, "\r\n") {
			c.t.Fatalf("line %q does not end in CRLF", l)
		}
		if l == ".\r\n" {
			return lines, raw
		}
		raw = append(raw, l...)
		l = strings.TrimSuffix(l, "\r\n")
		if strings.HasPrefix(l, ".") {
			l = l[1:]
		}
		lines = append(lines, l)
	}
}

// closed reports whether the server has closed the connection.
func (c *client) closed() bool {
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.r.ReadByte()
	return err != nil
}

func newReader(c net.Conn) *bufio.Reader { return bufio.NewReader(c) }
