package imap

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"

	"postern/internal/netserve/netservetest"
)

// expectClosed reads until the server closes, returning what it said.
func (r *rawConn) expectClosed(t *testing.T) []string {
	t.Helper()
	var lines []string
	for {
		line, err := r.readLine()
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("server did not close the connection; said %q", lines)
			}
			return lines
		}
		lines = append(lines, line)
	}
}

func containsPrefix(lines []string, prefix string) bool {
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}

// stillServes checks that the server answers a fresh client.
func stillServes(t *testing.T, env *testEnv) {
	t.Helper()
	r := env.login("bob", "hunter2")
	r.send("n1 NOOP\r\n")
	r.expect("n1 OK")
}

func TestMegabyteLineWithoutNewline(t *testing.T) {
	env := newTestEnv(t, nil)
	r := env.dial()
	r.expect("* OK")
	go func() {
		// The server may close before all is written; errors are expected.
		r.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		r.c.Write([]byte(strings.Repeat("a", 1<<20)))
	}()
	lines := r.expectClosed(t)
	if !containsPrefix(lines, "* BYE") {
		t.Fatalf("want BYE before close, got %q", lines)
	}
	stillServes(t, env)
}

func TestTenThousandCommandsWithoutNewline(t *testing.T) {
	env := newTestEnv(t, nil)
	r := env.dial()
	r.expect("* OK")
	go func() {
		r.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		r.c.Write([]byte(strings.Repeat("a NOOP ", 10000)))
	}()
	lines := r.expectClosed(t)
	if !containsPrefix(lines, "a BAD ") || !containsPrefix(lines, "* BYE command line too long") {
		t.Fatalf("want BAD and BYE, got %q", lines)
	}
	stillServes(t, env)
}

func TestHugeNonSyncLiteralClosesConnection(t *testing.T) {
	env := newTestEnv(t, nil)
	r := env.login("alice", "secret")
	r.send("a1 APPEND INBOX {100000000+}\r\nSubject: x\r\n")
	lines := r.expectClosed(t)
	if !containsPrefix(lines, "a1 NO [TOOBIG]") || !containsPrefix(lines, "* BYE") {
		t.Fatalf("got %q", lines)
	}
	// A huge non-synchronizing literal in any other command, too.
	r2 := env.login("alice", "secret")
	r2.send("a2 LOGIN {100000000+}\r\nxx")
	if lines := r2.expectClosed(t); !containsPrefix(lines, "* BYE") {
		t.Fatalf("got %q", lines)
	}
	stillServes(t, env)
}

func TestLiteralAnnouncedNotSent(t *testing.T) {
	env := newTestEnv(t, nil)
	r := env.login("alice", "secret")
	r.send("a1 APPEND INBOX {100}\r\n")
	r.expect("+ ")
	r.send("Subject: partial\r\n")
	r.c.Close()
	time.Sleep(100 * time.Millisecond)
	// Nothing half-written may be visible in the mailbox.
	f, err := env.maildir("alice").Folder("INBOX")
	if err != nil {
		t.Fatal(err)
	}
	snap, err := f.Sync(false)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Messages) != 0 {
		t.Fatalf("a partial APPEND left %d messages", len(snap.Messages))
	}
	stillServes(t, env)
}

func TestSkippedNonSyncLiteralKeepsStep(t *testing.T) {
	env := newTestEnv(t, nil)
	r := env.login("alice", "secret")
	// A refused APPEND with a non-synchronizing literal: the literal is
	// skipped, and the line after it is the next command.
	r.send("a1 APPEND Nope {5+}\r\nhello\r\na2 NOOP\r\n")
	r.expect("a1 NO [TRYCREATE]")
	r.expect("a2 OK")
	// A syntax error before a non-synchronizing literal: the same.
	r.send("a3 FROB {4+}\r\nabcd and more\r\na4 NOOP\r\n")
	r.expect("a3 BAD")
	r.expect("a4 OK")
	// An inline literal over 64 KiB is refused but skipped.
	r.send("a5 CREATE {70000+}\r\n" + strings.Repeat("z", 70000) + "\r\na6 NOOP\r\n")
	r.expect("a5 BAD literal too big")
	r.expect("a6 OK")
}

func TestUnauthenticatedIdleTimeout(t *testing.T) {
	env := newTestEnv(t, func(o *Options) { o.testUnauthTimeout = 200 * time.Millisecond })
	r := env.dial()
	r.expect("* OK")
	lines := r.expectClosed(t)
	if !containsPrefix(lines, "* BYE autologout") {
		t.Fatalf("got %q", lines)
	}
}

func TestShutdownSaysBye(t *testing.T) {
	env := newTestEnv(t, nil)
	idle := env.login("alice", "secret")
	idle.send("s1 SELECT INBOX\r\n")
	idle.until("s1 OK")
	idle.send("i1 IDLE\r\n")
	idle.expect("+ idling")
	waiting := env.login("bob", "hunter2")
	env.stop()
	for _, r := range []*rawConn{idle, waiting} {
		if lines := r.expectClosed(t); !containsPrefix(lines, "* BYE server shutting down") {
			t.Fatalf("got %q", lines)
		}
	}
}

func TestAuthenticationOutcomes(t *testing.T) {
	env := newTestEnv(t, nil)
	env.module.disabled["bob"] = true
	r := env.dial()
	r.expect("* OK")
	r.send("a1 LOGIN bob hunter2\r\n")
	r.expect("a1 NO [CONTACTADMIN]")
	// SASL-IR (RFC 4959).
	ir := base64.StdEncoding.EncodeToString([]byte("\x00alice\x00wrong"))
	r.send("a2 AUTHENTICATE PLAIN " + ir + "\r\n")
	r.expect("a2 NO [AUTHENTICATIONFAILED]")
	r.send("a3 AUTHENTICATE PLAIN\r\n")
	r.expect("+ ")
	r.send("*\r\n")
	r.expect("a3 BAD")
	r.send("a4 AUTHENTICATE PLAIN\r\n")
	r.expect("+ ")
	r.send(base64.StdEncoding.EncodeToString([]byte("bob\x00alice\x00secret")) + "\r\n")
	r.expect("a4 NO [AUTHORIZATIONFAILED]")
	r.send("a5 AUTHENTICATE PLAIN\r\n")
	r.expect("+ ")
	r.send(base64.StdEncoding.EncodeToString([]byte("\x00alice\x00secret")) + "\r\n")
	r.expect("a5 OK [CAPABILITY IMAP4rev1")

	env.module.tempFail = true
	r2 := env.dial()
	r2.expect("* OK")
	r2.send("b1 LOGIN alice secret\r\n")
	r2.expect("b1 NO [UNAVAILABLE]")
	env.module.tempFail = false

	// Five failures end the connection.
	r3 := env.dial()
	r3.expect("* OK")
	for i := 0; i < maxAuthFailures-1; i++ {
		r3.send("c LOGIN alice nope\r\n")
		r3.expect("c NO [AUTHENTICATIONFAILED]")
	}
	r3.send("c LOGIN alice nope\r\n")
	if lines := r3.expectClosed(t); !containsPrefix(lines, "* BYE too many authentication failures") {
		t.Fatalf("got %q", lines)
	}
}

// selfSignedTLS serves a certificate for imap.test; the tests' clients
// do not verify it.
func selfSignedTLS(t *testing.T) *tls.Config {
	server, _ := netservetest.TLSConfigs(t, "imap.test")
	return server
}

func TestStartTLSAndLoginDisabled(t *testing.T) {
	cfg := selfSignedTLS(t)
	env := newTestEnv(t, func(o *Options) { o.TLSConfig = cfg; o.AllowInsecureAuth = false })
	r := env.dial()
	greeting := r.expect("* OK [CAPABILITY ")
	if !strings.Contains(greeting, "STARTTLS") || !strings.Contains(greeting, "LOGINDISABLED") || strings.Contains(greeting, "AUTH=PLAIN") {
		t.Fatalf("plain-text greeting: %q", greeting)
	}
	r.send("a1 LOGIN alice secret\r\n")
	r.expect("a1 NO [PRIVACYREQUIRED]")
	// Pipelining after STARTTLS is refused (command injection).
	r.send("a2 STARTTLS\r\na3 NOOP\r\n")
	if lines := r.expectClosed(t); !containsPrefix(lines, "* BYE") {
		t.Fatalf("got %q", lines)
	}

	c, err := imapclient.DialStartTLS(env.addr, &imapclient.Options{TLSConfig: &tls.Config{InsecureSkipVerify: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if caps := c.Caps(); caps.Has("STARTTLS") || caps.Has("LOGINDISABLED") {
		t.Fatalf("capabilities after STARTTLS: %v", caps)
	}
	if err := c.Login("alice", "secret").Wait(); err != nil {
		t.Fatal(err)
	}
	c.Logout().Wait()
}

func TestImplicitTLS(t *testing.T) {
	cfg := selfSignedTLS(t)
	env := newTestEnv(t, func(o *Options) { o.TLSConfig = cfg; o.AllowInsecureAuth = false })
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- env.srv.ServeTLS(l) }()
	c, err := imapclient.DialTLS(l.Addr().String(), &imapclient.Options{TLSConfig: &tls.Config{InsecureSkipVerify: true}})
	if err != nil {
		t.Fatal(err)
	}
	if c.Caps().Has("STARTTLS") {
		t.Fatal("STARTTLS offered on implicit TLS")
	}
	if err := c.Login("alice", "secret").Wait(); err != nil {
		t.Fatal(err)
	}
	c.Logout().Wait()
	c.Close()
	env.stop()
	if err := <-done; err != ErrServerClosed {
		t.Fatalf("ServeTLS returned %v", err)
	}
}

// Hostile mailbox names are refused with NO and leave the disk untouched.
func TestHostileMailboxNamesCreateNothing(t *testing.T) {
	env := newTestEnv(t, nil)
	r := env.login("alice", "secret")
	before, err := os.ReadDir(filepath.Dir(env.maildirPath("alice")))
	if err != nil {
		t.Fatal(err)
	}
	listing := func() []string {
		var names []string
		filepath.Walk(env.root, func(p string, info os.FileInfo, err error) error {
			if err == nil && info.IsDir() {
				names = append(names, p)
			}
			return nil
		})
		return names
	}
	dirs := listing()
	for i, name := range []string{"..", "../x", "a/b", "/etc", "a\x00b", "a\x01b", "a..b", ".a", "&AC8-etc", "&AAA-", "INBOX.", ""} {
		tag := fmt.Sprintf("h%d", i)
		for _, cmd := range []string{"CREATE", "RENAME Sent", "APPEND"} {
			line := fmt.Sprintf("%s %s {%d+}\r\n%s", tag, cmd, len(name), name)
			if cmd == "APPEND" {
				line += " {1+}\r\nx"
			}
			r.send(line + "\r\n")
			got := r.expect(tag + " ")
			if !strings.HasPrefix(got, tag+" NO ") && !strings.HasPrefix(got, tag+" BAD ") {
				t.Fatalf("%s %q: %q", cmd, name, got)
			}
		}
	}
	after, _ := os.ReadDir(filepath.Dir(env.maildirPath("alice")))
	if len(after) != len(before) {
		t.Fatalf("entries beside the Maildir changed: %v -> %v", before, after)
	}
	if got := listing(); strings.Join(got, "\n") != strings.Join(dirs, "\n") {
		t.Fatalf("directories changed:\n%v\n%v", dirs, got)
	}
	if _, err := os.Stat(filepath.Join(env.maildirPath("alice"), ".Sent")); err != nil {
		t.Fatalf("Sent was renamed away: %v", err)
	}
}

// A session stuck inside a command (an APPEND whose literal never comes)
// does not hold Shutdown past its context: it is closed hard.
func TestShutdownDeadlineClosesStuckSessions(t *testing.T) {
	env := newTestEnv(t, nil)
	r := env.login("alice", "secret")
	r.send("a1 APPEND INBOX {100}\r\n")
	r.expect("+ ")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err := env.srv.Shutdown(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want deadline exceeded", err)
	}
	if err := <-env.done; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve = %v", err)
	}
	env.srv = nil
	r.expectClosed(t)
}

// A STARTTLS whose handshake negotiates an ALPN protocol (the ACME CA's
// acme-tls/1, offered only by the server's challenge configuration) ends
// the connection with nothing sent after the handshake; a client that
// asks for no protocol on the same server goes on as usual.
func TestStartTLSWithALPNProtocolCloses(t *testing.T) {
	cfg := selfSignedTLS(t)
	cfg.NextProtos = []string{"acme-tls/1"}
	env := newTestEnv(t, func(o *Options) { o.TLSConfig = cfg; o.AllowInsecureAuth = false })
	r := env.dial()
	r.expect("* OK")
	r.send("a1 STARTTLS\r\n")
	r.expect("a1 OK")
	tc := tls.Client(r.c, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"acme-tls/1"}})
	if err := tc.Handshake(); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	if p := tc.ConnectionState().NegotiatedProtocol; p != "acme-tls/1" {
		t.Fatalf("negotiated %q", p)
	}
	tc.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := tc.Read(make([]byte, 64))
	if n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("after the handshake: %d bytes, %v; want the connection closed with nothing sent", n, err)
	}

	c, err := imapclient.DialStartTLS(env.addr, &imapclient.Options{TLSConfig: &tls.Config{InsecureSkipVerify: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("alice", "secret").Wait(); err != nil {
		t.Fatalf("a client without ALPN after that: %v", err)
	}
}
