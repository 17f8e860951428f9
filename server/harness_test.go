package server

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-smtp"

	"postern/auth/authtool"
	"postern/policy"
)

// harness is one Postern installation made by policy.Init in a temporary
// directory, with listeners on free loopback ports, run in-process.
type harness struct {
	t    testing.TB
	dir  string
	etc  string
	srv  *Server
	user string
	pass string
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	h := &harness{t: t, dir: t.TempDir(), user: "alice@example.test", pass: "s3cret pass"}
	h.etc = filepath.Join(h.dir, "etc")
	if err := writeInit(h); err != nil {
		t.Fatal(err)
	}
	h.start()
	t.Cleanup(h.stop)
	return h
}

// writeInit makes the installation: postern init, listeners on free ports,
// and the harness's user.
func writeInit(h *harness) error {
	if err := policy.Init(h.dir, "example.test", "mail.example.test", false); err != nil {
		return err
	}
	listen := "smtp 127.0.0.1:0\nsubmission 127.0.0.1:0\nimap 127.0.0.1:0\nimaps 127.0.0.1:0\npop3 127.0.0.1:0\nweb 127.0.0.1:0\n"
	h.writeSetting("listen", listen)
	// Tests speak from 127.0.0.1 as an outside client would: no relaying,
	// and the checks apply (postern init trusts loopback, as Courier does).
	h.writeSetting("smtpaccess", "")
	// The checks have tests of their own (filters_test.go) against a DNS
	// server the test runs; elsewhere they would ask this machine's DNS.
	h.writeSetting("filters", "")
	h.addUser(h.user, h.pass)
	return nil
}

// passable makes the test's temporary directories, down to dir, passable
// by other users (t.TempDir makes them 0700): a server running as root
// reaches an account of another uid only where that account could.
func passable(dir string) {
	for d := dir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
}

func (h *harness) writeSetting(name, content string) {
	h.t.Helper()
	if err := os.WriteFile(filepath.Join(h.etc, name), []byte(content), 0o640); err != nil {
		h.t.Fatal(err)
	}
}

// addUser goes through the same code as `postern user add`.
func (h *harness) addUser(name, pass string, extra ...string) {
	h.t.Helper()
	var out, errb bytes.Buffer
	args := append([]string{"add", name, "--password", pass}, extra...)
	if code := authtool.UserMain(args, strings.NewReader(""), &out, &errb, h.etc); code != 0 {
		h.t.Fatalf("user add %s: exit %d: %s%s", name, code, out.String(), errb.String())
	}
}

func (h *harness) start() {
	h.t.Helper()
	log := slog.New(slog.NewTextHandler(testWriter{h.t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	srv, err := New(h.etc, log)
	if err != nil {
		h.t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		h.t.Fatal(err)
	}
	h.srv = srv
}

func (h *harness) stop() {
	if h.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.srv.Shutdown(ctx); err != nil {
		h.t.Errorf("shutdown: %v", err)
	}
	h.srv = nil
}

// restart stops the server and starts a new one on the same configuration
// and data. Ports are fresh (port 0), so callers re-read addr.
func (h *harness) restart() {
	h.t.Helper()
	h.stop()
	h.start()
}

func (h *harness) addr(name string) string {
	h.t.Helper()
	a := h.srv.Addrs(name)
	if len(a) == 0 {
		h.t.Fatalf("no %s listener", name)
	}
	return a[0].String()
}

// send delivers one message over SMTP with go-smtp's client.
func (h *harness) send(from string, to []string, msg []byte) error {
	c, err := smtp.Dial(h.addr("smtp"))
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Hello("client.example.net"); err != nil {
		return err
	}
	if err := c.SendMail(from, to, bytes.NewReader(msg)); err != nil {
		return err
	}
	return c.Quit()
}

func (h *harness) imapLogin(opts *imapclient.Options) *imapclient.Client {
	h.t.Helper()
	c, err := imapclient.DialInsecure(h.addr("imap"), opts)
	if err != nil {
		h.t.Fatal(err)
	}
	if err := c.Login(h.user, h.pass).Wait(); err != nil {
		h.t.Fatalf("imap login: %v", err)
	}
	h.t.Cleanup(func() { c.Close() })
	return c
}

func (h *harness) maildir(user string) string {
	h.settle()
	local, domain, _ := strings.Cut(user, "@")
	return filepath.Join(h.dir, "data", "mail", domain, local, "Maildir")
}

// settle waits until every message acknowledged so far is in its Maildir:
// a 250 comes once the delivery journal holds the message, and the session
// writes the file just after sending it (maildir.Deferred).
func (h *harness) settle() {
	if h.srv == nil || h.srv.mta == nil || h.srv.mta.journal == nil {
		return
	}
	j := h.srv.mta.journal
	for deadline := time.Now().Add(10 * time.Second); j.DeferredPending() > 0; {
		if time.Now().After(deadline) {
			h.t.Fatalf("deferred Maildir writes still pending after 10s: %d", j.DeferredPending())
		}
		time.Sleep(time.Millisecond)
	}
}

// pop3Client is a minimal POP3 client over a real connection: the protocol is
// small enough that a hand-written client reads like the RFC.
type pop3Client struct {
	t    testing.TB
	conn net.Conn
	r    *bufio.Reader
}

func (h *harness) pop3Login() *pop3Client {
	h.t.Helper()
	conn, err := net.DialTimeout("tcp", h.addr("pop3"), 5*time.Second)
	if err != nil {
		h.t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	p := &pop3Client{t: h.t, conn: conn, r: bufio.NewReader(conn)}
	h.t.Cleanup(func() { conn.Close() })
	p.expectOK("")
	p.cmd("USER " + h.user)
	p.cmd("PASS " + h.pass)
	return p
}

func (p *pop3Client) expectOK(what string) string {
	p.t.Helper()
	line, err := p.r.ReadString('\n')
	if err != nil {
		p.t.Fatalf("pop3 %s: %v", what, err)
	}
	if !strings.HasPrefix(line, "+OK") {
		p.t.Fatalf("pop3 %s: %q", what, line)
	}
	return strings.TrimRight(line, "\r\n")
}

func (p *pop3Client) cmd(c string) string {
	p.t.Helper()
	fmt.Fprintf(p.conn, "%s\r\n", c)
	return p.expectOK(c)
}

// multi reads a multi-line response body and undoes the dot-stuffing.
func (p *pop3Client) multi(c string) []byte {
	p.t.Helper()
	p.cmd(c)
	var out bytes.Buffer
	for {
		line, err := p.r.ReadString('\n')
		if err != nil {
			p.t.Fatalf("pop3 %s: %v", c, err)
		}
		if line == ".\r\n" {
			return out.Bytes()
		}
		out.WriteString(strings.TrimPrefix(line, "."))
	}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

var _ io.Writer = testWriter{}
