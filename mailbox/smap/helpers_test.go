package smap

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"postern/auth"
	"postern/auth/passwd"
	"postern/auth/userdb"
	"postern/mailbox/maildir"
)

// checkGoroutines fails the test if goroutines it started are still
// running after its cleanups (registered first, so it runs last).
func checkGoroutines(t *testing.T) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(10 * time.Second)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<16)
				buf = buf[:runtime.Stack(buf, true)]
				t.Errorf("goroutine leak: %d before, %d after\n%s", before, runtime.NumGoroutine(), buf)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

// testEnv is a running SMAP server with two userdb accounts, alice and
// bob (password "secret"), whose Maildirs are real.
type testEnv struct {
	t     *testing.T
	srv   *Server
	addr  string
	dir   string
	root  string // alice's Maildir
	md    *maildir.Maildir
	auth  *auth.Service
	users map[string]string // name -> Maildir
}

// newAuth compiles a userdb with alice and bob under dir and returns the
// service over it.
func newAuth(t *testing.T, dir string) (*auth.Service, map[string]string) {
	t.Helper()
	hash, err := passwd.Hash("secret", passwd.SchemeMD5Crypt)
	if err != nil {
		t.Fatal(err)
	}
	users := map[string]string{}
	var src strings.Builder
	for _, u := range []string{"alice", "bob"} {
		home := filepath.Join(dir, u)
		md := filepath.Join(home, "Maildir")
		if err := os.MkdirAll(home, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := maildir.Make(md); err != nil {
			t.Fatal(err)
		}
		users[u] = md
		fmt.Fprintf(&src, "%s\tuid=%d|gid=%d|home=%s|mail=%s|systempw=%s\n", u, os.Getuid(), os.Getgid(), home, md, hash)
	}
	srcPath := filepath.Join(dir, "userdb")
	if err := os.WriteFile(srcPath, []byte(src.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	dbPath := filepath.Join(dir, "userdb.db")
	if err := userdb.Compile(srcPath, dbPath); err != nil {
		t.Fatal(err)
	}
	db, err := userdb.Open(dbPath, userdb.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return auth.NewService(db), users
}

func newTestEnv(t *testing.T, opts ...func(*Options)) *testEnv {
	t.Helper()
	checkGoroutines(t)
	dir := t.TempDir()
	svc, users := newAuth(t, dir)
	opt := Options{Hostname: "test.example", Auth: svc, AllowInsecureAuth: true, Logger: testLogger(t)}
	for _, o := range opts {
		o(&opt)
	}
	srv := NewServer(opt)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-done; err != ErrServerClosed {
			t.Errorf("Serve returned %v", err)
		}
	})
	md, err := maildir.Open(users["alice"])
	if err != nil {
		t.Fatal(err)
	}
	return &testEnv{t: t, srv: srv, addr: l.Addr().String(), dir: dir, root: users["alice"], md: md, auth: svc, users: users}
}

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("SMAP_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// deliver puts a message into alice's folder (INBOX: into new/).
func (e *testEnv) deliver(folder, msg string) string {
	e.t.Helper()
	key, err := e.md.Deliver(folder, strings.NewReader(msg), maildir.DeliverOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return key
}

// client speaks SMAP to a server.
type client struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func (e *testEnv) dial() *client {
	e.t.Helper()
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	cl := &client{t: e.t, c: c, r: bufio.NewReader(c)}
	c.SetDeadline(time.Now().Add(60 * time.Second))
	greet := cl.line()
	if !strings.HasPrefix(greet, "* OK [CAPABILITY SMAP1") {
		e.t.Fatalf("greeting %q", greet)
	}
	return cl
}

// login dials and logs in as alice.
func (e *testEnv) login() *client {
	cl := e.dial()
	if got := cl.cmd(`\SMAP1 LOGIN alice secret`); got != "+OK SMAP1 LOGIN Ok.\n" {
		e.t.Fatalf("login: %q", got)
	}
	return cl
}

func (cl *client) line() string {
	cl.t.Helper()
	l, err := cl.r.ReadString('\n')
	if err != nil {
		cl.t.Fatalf("read: %v (after %q)", err, l)
	}
	return l
}

func (cl *client) send(s string) {
	cl.t.Helper()
	if _, err := io.WriteString(cl.c, s); err != nil {
		cl.t.Fatal(err)
	}
}

// cmd sends one command line and returns everything up to and including
// its final "+OK", "-ERR" or "> " line, message data included as sent.
func (cl *client) cmd(line string) string {
	cl.t.Helper()
	cl.send(line + "\n")
	return cl.reply()
}

// reply reads one reply (see cmd).
func (cl *client) reply() string {
	cl.t.Helper()
	var b strings.Builder
	for {
		l := cl.line()
		b.WriteString(l)
		switch {
		case strings.HasPrefix(l, "+OK"), strings.HasPrefix(l, "-ERR"), strings.HasPrefix(l, "> "):
			return b.String()
		case strings.HasPrefix(l, "{."):
			// Header lines up to ".".
			for {
				h := cl.line()
				b.WriteString(h)
				if h == ".\n" {
					break
				}
			}
		case strings.HasPrefix(l, "{"):
			n, _ := strconv.Atoi(l[1:strings.IndexByte(l, '/')])
			for {
				buf := make([]byte, n)
				if _, err := io.ReadFull(cl.r, buf); err != nil {
					cl.t.Fatal(err)
				}
				b.Write(buf)
				next := cl.line()
				b.WriteString(next)
				if next == "\n" {
					break
				}
				n, _ = strconv.Atoi(strings.TrimSpace(next))
			}
		}
	}
}

// waitFor polls cond until it holds (no fixed sleeps in tests).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// nopConn is a net.Conn for code that only sets deadlines.
type nopConn struct{ net.Conn }

func (nopConn) SetReadDeadline(time.Time) error { return nil }
