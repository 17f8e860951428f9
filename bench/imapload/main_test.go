package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
)

// startIMAPServer runs go-imap's in-memory server on 127.0.0.1:0 with one
// user whose INBOX holds messages messages, and returns its address.
func startIMAPServer(t *testing.T, messages int) string {
	t.Helper()
	mem := imapmemserver.New()
	user := imapmemserver.NewUser("bench", "s3cret")
	if err := user.Create("INBOX", nil); err != nil {
		t.Fatal(err)
	}
	mem.AddUser(user)
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return mem.NewSession(), nil, nil
		},
		Caps:         imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapIMAP4rev2: {}},
		InsecureAuth: true,
		Logger:       log.New(io.Discard, "", 0),
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(l)
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	// Fill INBOX over IMAP itself, with a real client.
	c, err := imapclient.DialInsecure(l.Addr().String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("bench", "s3cret").Wait(); err != nil {
		t.Fatal(err)
	}
	for i := range messages {
		msg := fmt.Sprintf("From: a@b\r\nSubject: %d\r\n\r\nbody\r\n", i)
		cmd := c.Append("INBOX", int64(len(msg)), &imap.AppendOptions{Flags: []imap.Flag{imap.FlagSeen}})
		if _, err := io.WriteString(cmd, msg); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := cmd.Wait(); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Logout().Wait(); err != nil {
		t.Fatal(err)
	}
	return l.Addr().String()
}

func testConfig(addr string) Config {
	cfg := DefaultConfig()
	cfg.Addr = addr
	cfg.User, cfg.Pass = "bench", "s3cret"
	cfg.Timeout = 5 * time.Second
	return cfg
}

func TestRunSessionsAgainstRealServer(t *testing.T) {
	before := runtime.NumGoroutine()
	// Registered first, so it runs after the server's cleanup.
	t.Cleanup(func() { checkNoLeak(t, before) })
	addr := startIMAPServer(t, 25)
	cfg := testConfig(addr)
	cfg.Sessions = 60
	cfg.Concurrency = 6
	var progress bytes.Buffer
	rep, err := Run(context.Background(), cfg, &progress)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Sessions != 60 || rep.Failed != 0 {
		t.Fatalf("sessions %d failed %d (%v %v), want 60 and 0", rep.Sessions, rep.Failed, rep.FailuresByKind, rep.ErrorSamples)
	}
	if rep.Messages != 60*25 {
		t.Errorf("fetched %d messages, want %d", rep.Messages, 60*25)
	}
	for name, s := range map[string]struct {
		count int64
		ok    bool
	}{
		"connect": {rep.Connect.Count, rep.Connect.Consistent()}, "login": {rep.Login.Count, rep.Login.Consistent()},
		"select": {rep.Select.Count, rep.Select.Consistent()}, "fetch": {rep.Fetch.Count, rep.Fetch.Consistent()},
		"logout": {rep.Logout.Count, rep.Logout.Consistent()}, "session": {rep.Session.Count, rep.Session.Consistent()},
	} {
		if s.count != 60 || !s.ok {
			t.Errorf("%s latency: %d samples, consistent %v", name, s.count, s.ok)
		}
	}
	if rep.Session.Max < rep.Fetch.Max || rep.SessionsPerSec <= 0 || rep.MessagesPerSec <= 0 {
		t.Errorf("report %+v", rep)
	}
	if !strings.Contains(progress.String(), "60/60 sessions done, 60 ok, 0 failed") {
		t.Errorf("progress:\n%s", progress.String())
	}
}

func TestRunCountsLoginFailures(t *testing.T) {
	addr := startIMAPServer(t, 1)
	cfg := testConfig(addr)
	cfg.Pass = "wrong"
	cfg.Sessions = 4
	cfg.Concurrency = 2
	rep, err := Run(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Failed != 4 || rep.FailuresByKind["LOGIN NO"] != 4 {
		t.Errorf("failures %v, want LOGIN NO:4", rep.FailuresByKind)
	}
	cfg = testConfig(addr)
	cfg.Mailbox = "Nonexistent"
	cfg.Sessions = 2
	rep, err = Run(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.FailuresByKind["SELECT NO"] != 2 {
		t.Errorf("failures %v, want SELECT NO:2", rep.FailuresByKind)
	}
}

func TestRunTimesOutOnSilentServer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				_, _ = io.Copy(io.Discard, c)
				_ = c.Close()
			}()
		}
	}()
	cfg := testConfig(l.Addr().String())
	cfg.Sessions = 2
	cfg.Timeout = 200 * time.Millisecond
	start := time.Now()
	rep, err := Run(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("run took %v with a 200ms timeout", took)
	}
	if rep.Failed != 2 || rep.FailuresByKind["timeout"] != 2 {
		t.Errorf("failures %v (%v), want timeout:2", rep.FailuresByKind, rep.ErrorSamples)
	}
}

func TestRunDurationAndConfig(t *testing.T) {
	addr := startIMAPServer(t, 3)
	cfg := testConfig(addr)
	cfg.Sessions = 0
	cfg.Duration = 200 * time.Millisecond
	cfg.Concurrency = 2
	start := time.Now()
	rep, err := Run(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 2*time.Second || rep.Sessions == 0 || rep.Failed != 0 {
		t.Errorf("200ms run: took %v, %d sessions, %d failed", took, rep.Sessions, rep.Failed)
	}
	for name, mutate := range map[string]func(*Config){
		"unbounded":     func(c *Config) { c.Sessions, c.Duration = 0, 0 },
		"no user":       func(c *Config) { c.User = "" },
		"CRLF":          func(c *Config) { c.Pass = "a\r\nb" },
		"tls twice":     func(c *Config) { c.StartTLS, c.ImplicitTLS = true, true },
		"no timeout":    func(c *Config) { c.Timeout = 0 },
		"no concurrent": func(c *Config) { c.Concurrency = 0 },
	} {
		c := testConfig(addr)
		mutate(&c)
		if _, err := Run(context.Background(), c, nil); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: error %v, want ErrInvalidConfig", name, err)
		}
	}
}

func TestCommandLine(t *testing.T) {
	addr := startIMAPServer(t, 5)
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"-addr", addr, "-user", "bench", "-pass", "s3cret", "-n", "5", "-c", "2", "-json"}, &stdout, &stderr)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	var rep jsonReport
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Sessions != 5 || rep.Messages != 25 || rep.Fetch.P99MS > rep.Fetch.MaxMS {
		t.Errorf("JSON report %+v", rep)
	}
	stdout.Reset()
	if code := run(context.Background(), []string{"-addr", addr, "-user", "bench", "-pass", "bad", "-n", "1"}, &stdout, &stderr); code != exitFailed {
		t.Errorf("bad password: exit %d, want %d", code, exitFailed)
	}
	if !strings.Contains(stdout.String(), "failed       1 (LOGIN NO: 1)") {
		t.Errorf("report:\n%s", stdout.String())
	}
	if code := run(context.Background(), []string{"-n", "1"}, &stdout, &stderr); code != exitUsage {
		t.Errorf("no -user: exit %d, want %d", code, exitUsage)
	}
}

func checkNoLeak(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<16)
		t.Errorf("goroutines: %d before, %d after:\n%s", before, n, buf[:runtime.Stack(buf, true)])
	}
}
