package proxy_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"postern/auth"
	"postern/internal/netserve/netservetest"
	"postern/mailbox/imap"
	"postern/mailbox/maildir"
	"postern/mailbox/pop3"
	"postern/mailbox/proxy"
	"postern/mailbox/smap"
)

// accountDB is the one account database every host reads (as one LDAP or
// SQL server would be): name → password and mailhost.
type accountDB struct {
	mu       sync.Mutex
	password map[string]string
	mailhost map[string]string
}

// hostModule is a real auth.Module over an accountDB as one host sees it:
// each account's Maildir under the host's own root (mailbox hosts do not
// share storage), and, for testing a backend whose database disagrees
// with the front's, passwords this host alone has.
type hostModule struct {
	db       *accountDB
	root     string
	override map[string]string
}

func (m *hostModule) Name() string { return "testdb" }

func (m *hostModule) account(name string) *auth.Account {
	a := &auth.Account{Name: name, Maildir: filepath.Join(m.root, name, "Maildir"), Module: m.Name(),
		Options: map[string]string{}, Fields: map[string]string{}}
	if h := m.db.mailhost[name]; h != "" {
		a.Fields["mailhost"] = h
	}
	return a
}

func (m *hostModule) Lookup(ctx context.Context, name string) (*auth.Account, error) {
	m.db.mu.Lock()
	defer m.db.mu.Unlock()
	if _, ok := m.db.password[name]; !ok {
		return nil, auth.ErrNoSuchUser
	}
	return m.account(name), nil
}

func (m *hostModule) Authenticate(ctx context.Context, service, name, password string) (*auth.Account, error) {
	m.db.mu.Lock()
	defer m.db.mu.Unlock()
	want, ok := m.db.password[name]
	if !ok {
		return nil, auth.ErrNoSuchUser
	}
	if p, ok := m.override[name]; ok {
		want = p
	}
	if password != want {
		return nil, auth.ErrBadPassword
	}
	return m.account(name), nil
}

// host is one Postern mailbox host: an IMAP and a POP3 server on
// 127.0.0.1 over Maildirs under root.
type host struct {
	t        *testing.T
	name     string
	root     string
	module   *hostModule
	imap     *imap.Server
	pop3     *pop3.Server
	smap     *smap.Server // SMAP inside the IMAP connections
	imapAddr string
	pop3Addr string
	done     chan error
}

type hostOptions struct {
	name      string
	imapProxy *proxy.Config
	pop3Proxy *proxy.Config
	tls       *tls.Config
	// insecureAuth false: logins only after STARTTLS/STLS.
	secureOnly bool
	override   map[string]string
}

func testLogger() *slog.Logger {
	if os.Getenv("PROXY_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func startHost(t *testing.T, db *accountDB, o hostOptions) *host {
	t.Helper()
	h := &host{t: t, name: o.name, root: t.TempDir(), done: make(chan error, 2)}
	h.module = &hostModule{db: db, root: h.root, override: o.override}
	svc := auth.NewService(h.module)
	log := testLogger().With("host", o.name)
	h.smap = smap.NewServer(smap.Options{Hostname: o.name, Auth: svc, Logger: log, AllowInsecureAuth: !o.secureOnly,
		TLSConfig: o.tls, Proxy: o.imapProxy})
	h.imap = imap.NewServer(imap.Options{Hostname: o.name, Auth: svc, Logger: log, AllowInsecureAuth: !o.secureOnly,
		TLSConfig: o.tls, Proxy: o.imapProxy, SMAP: h.smap})
	h.pop3 = pop3.NewServer(pop3.Options{Hostname: o.name, Auth: svc, Logger: log, AllowInsecureAuth: !o.secureOnly,
		TLSConfig: o.tls, Proxy: o.pop3Proxy, AuthFailureDelay: -1})
	li, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.imapAddr, h.pop3Addr = li.Addr().String(), lp.Addr().String()
	go func() { h.done <- h.imap.Serve(li) }()
	go func() { h.done <- h.pop3.Serve(lp) }()
	t.Cleanup(h.stop)
	return h
}

func (h *host) stop() {
	if h.imap == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Concurrently, as postern serve does: an IMAP session handed to SMAP
	// ends with the SMAP session.
	var wg sync.WaitGroup
	for name, shutdown := range map[string]func(context.Context) error{
		"imap": h.imap.Shutdown, "pop3": h.pop3.Shutdown, "smap": h.smap.Shutdown,
	} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := shutdown(ctx); err != nil {
				h.t.Errorf("%s: %s shutdown: %v", h.name, name, err)
			}
		}()
	}
	wg.Wait()
	for range 2 {
		if err := <-h.done; err != nil && !errors.Is(err, imap.ErrServerClosed) && !errors.Is(err, pop3.ErrServerClosed) {
			h.t.Errorf("%s: serve: %v", h.name, err)
		}
	}
	h.imap = nil
}

// maildir opens (making it when new) user's Maildir on this host.
func (h *host) maildir(user string) *maildir.Maildir {
	h.t.Helper()
	p := filepath.Join(h.root, user, "Maildir")
	if _, err := os.Stat(p); err != nil {
		if err := maildir.Make(p); err != nil {
			h.t.Fatal(err)
		}
	}
	m, err := maildir.Open(p)
	if err != nil {
		h.t.Fatal(err)
	}
	return m
}

// deliver puts a message with subject into user's INBOX on this host.
func (h *host) deliver(user, subject string) {
	h.t.Helper()
	msg := "From: sender@example.test\r\nTo: " + user + "@example.test\r\nSubject: " + subject + "\r\n\r\nbody of " + subject + "\r\n"
	if _, err := h.maildir(user).Deliver(maildir.Inbox, strings.NewReader(msg), maildir.DeliverOptions{}); err != nil {
		h.t.Fatal(err)
	}
}

// countMessages counts the messages in user's INBOX on disk (new/ and cur/).
func (h *host) countMessages(user string) int {
	h.t.Helper()
	n := 0
	for _, sub := range []string{"new", "cur"} {
		ents, err := os.ReadDir(filepath.Join(h.root, user, "Maildir", sub))
		if err != nil && !os.IsNotExist(err) {
			h.t.Fatal(err)
		}
		n += len(ents)
	}
	return n
}

// portOf is the port of addr as a number.
func portOf(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, c := range p {
		n = n*10 + int(c-'0')
	}
	return n
}

// client is a line-oriented client over a real connection.
type client struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{t: t, conn: c, r: bufio.NewReader(c)}
}

func (c *client) send(line string) {
	c.t.Helper()
	c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.conn.Write([]byte(line + "\r\n")); err != nil {
		c.t.Fatalf("send %q: %v", line, err)
	}
}

// line reads one line within d.
func (c *client) lineWithin(d time.Duration) (string, error) {
	c.conn.SetReadDeadline(time.Now().Add(d))
	s, err := c.r.ReadString('\n')
	return strings.TrimRight(s, "\r\n"), err
}

func (c *client) line() string {
	c.t.Helper()
	s, err := c.lineWithin(10 * time.Second)
	if err != nil {
		c.t.Fatalf("read: %v (got %q)", err, s)
	}
	return s
}

// imapCmd sends "tag command" and returns the untagged lines and the
// tagged one.
func (c *client) imapCmd(tag, command string) (untagged []string, tagged string) {
	c.t.Helper()
	c.send(tag + " " + command)
	return c.untilTagged(tag)
}

func (c *client) untilTagged(tag string) (untagged []string, tagged string) {
	c.t.Helper()
	for {
		l := c.line()
		if strings.HasPrefix(l, tag+" ") {
			return untagged, l
		}
		untagged = append(untagged, l)
	}
}

// closed reports whether the server has closed the connection (EOF within
// a few seconds, nothing else read).
func (c *client) closed() bool {
	c.t.Helper()
	s, err := c.lineWithin(5 * time.Second)
	if err == nil || s != "" {
		c.t.Logf("read %q after the expected close", s)
		return false
	}
	var ne net.Error
	return !errors.As(err, &ne) || !ne.Timeout()
}

// testCert makes a self-signed certificate for mbox.test and 127.0.0.1;
// the pool holds it, for the front to verify the backend.
func testCert(t *testing.T) (*tls.Config, *x509.CertPool) {
	t.Helper()
	server, client := netservetest.TLSConfigs(t, "mbox.test", "127.0.0.1")
	return server, client.RootCAs
}

// waitGoroutines fails the test when goroutines started since before are
// still running after a few seconds.
func waitGoroutines(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Errorf("goroutine leak: %d before, %d after\n%s", before, runtime.NumGoroutine(), buf)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// deadPort is a port on 127.0.0.1 nobody listens on.
func deadPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := portOf(t, l.Addr().String())
	l.Close()
	return p
}

// silentListener accepts connections and never says anything: a backend
// that hangs.
func silentListener(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	var mu sync.Mutex
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return portOf(t, l.Addr().String())
}
