package server

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

// smapConn is a minimal SMAP client for the server's tests.
type smapConn struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func (h *harness) smapDial(listener string) *smapConn {
	h.t.Helper()
	conn, err := net.DialTimeout("tcp", h.addr(listener), 5*time.Second)
	if err != nil {
		h.t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(60 * time.Second))
	h.t.Cleanup(func() { conn.Close() })
	s := &smapConn{t: h.t.(*testing.T), conn: conn, r: bufio.NewReader(conn)}
	greet := s.line()
	if !strings.Contains(greet, "SMAP1") {
		h.t.Fatalf("greeting without SMAP1: %q", greet)
	}
	return s
}

func (s *smapConn) line() string {
	s.t.Helper()
	l, err := s.r.ReadString('\n')
	if err != nil {
		s.t.Fatalf("read: %v", err)
	}
	return l
}

// cmd sends a command and returns the reply up to its +OK, -ERR or "> "
// line. An empty c sends nothing (the reply to data already sent).
func (s *smapConn) cmd(c string) string {
	s.t.Helper()
	if c != "" {
		if _, err := s.conn.Write([]byte(c + "\n")); err != nil {
			s.t.Fatal(err)
		}
	}
	var b strings.Builder
	for {
		l := s.line()
		b.WriteString(l)
		if strings.HasPrefix(l, "+OK") || strings.HasPrefix(l, "-ERR") || strings.HasPrefix(l, "> ") {
			return b.String()
		}
	}
}

func newSMAPHarness(t *testing.T) *harness {
	h := newHarness(t)
	h.writeSetting("listen", "smtp 127.0.0.1:0\nimap 127.0.0.1:0\nsmap 127.0.0.1:0\nweb 127.0.0.1:0\n")
	h.writeSetting("smapcapability", "SMAP1\n")
	h.restart()
	return h
}

// The smap listener serves SMAP: login with the account's password, the
// INBOX with a message delivered over SMTP.
func TestSMAPListenerServes(t *testing.T) {
	h := newSMAPHarness(t)
	if err := h.send("bob@example.net", []string{h.user}, testMessage("over smap", "body\r\n")); err != nil {
		t.Fatal(err)
	}
	h.settle()
	s := h.smapDial("smap")
	if got := s.cmd(`\SMAP1 LOGIN "` + h.user + `" "` + h.pass + `"`); got != "+OK SMAP1 LOGIN Ok.\n" {
		t.Fatalf("login: %q", got)
	}
	if got := s.cmd("OPEN INBOX"); got != "* EXISTS 1\n+OK Folder opened\n" {
		t.Fatalf("OPEN: %q", got)
	}
	if got := s.cmd("FETCH 1 CONTENTS.PEEK=HEADERS(Subject)"); !strings.Contains(got, "Subject: over smap\n") {
		t.Fatalf("FETCH: %q", got)
	}
	if got := s.cmd(`\SMAP1 LOGIN x y`); got != "-ERR Syntax error.\n" {
		t.Errorf("after login, LOGIN is not a command: %q", got)
	}
	resp, err := http.Get("http://" + h.addr("web") + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{"postern_smap_logins_total 1", "postern_smap_sessions_active 1", "postern_smap_commands_total 3"} {
		if !strings.Contains(string(body), want+"\n") {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// With smapcapability, IMAP lists SMAP1 and a "\SMAP1" command switches
// the connection; an IMAP STORE is seen over SMAP and an SMAP STORE over
// IMAP.
func TestSMAPInsideIMAPAndCrossProtocolFlags(t *testing.T) {
	h := newSMAPHarness(t)
	if err := h.send("bob@example.net", []string{h.user}, testMessage("shared", "body\r\n")); err != nil {
		t.Fatal(err)
	}
	h.settle()
	c := h.imapLogin(nil)
	caps, err := c.Capability().Wait()
	if err != nil {
		t.Fatal(err)
	}
	if !caps.Has("SMAP1") {
		t.Errorf("IMAP CAPABILITY without SMAP1: %v", caps)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}

	// Courier's way in: the IMAP greeting, then "\SMAP1 LOGIN".
	conn, err := net.DialTimeout("tcp", h.addr("imap"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(60 * time.Second))
	s := &smapConn{t: t, conn: conn, r: bufio.NewReader(conn)}
	if greet := s.line(); !strings.Contains(greet, "SMAP1") {
		t.Fatalf("IMAP greeting without SMAP1: %q", greet)
	}
	if got := s.cmd(`\SMAP1 CAPABILITY`); !strings.HasSuffix(got, "+OK CAPABILITY completed\r\n") {
		t.Fatalf("CAPABILITY: %q", got)
	}
	if got := s.cmd(`\SMAP1 LOGIN "` + h.user + `" "` + h.pass + `"`); got != "+OK SMAP1 LOGIN Ok.\n" {
		t.Fatalf("login: %q", got)
	}
	if got := s.cmd("OPEN INBOX"); got != "* EXISTS 1\n+OK Folder opened\n" {
		t.Fatalf("OPEN: %q", got)
	}

	// IMAP → SMAP.
	store := &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged, "$Work"}, Silent: true}
	if err := c.Store(imap.SeqSetNum(1), store, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if got := s.cmd("NOOP"); got != "* FETCH 1 FLAGS=MARKED \"KEYWORDS=$Work\"\n+OK Folder updated\n" {
		t.Errorf("SMAP NOOP after IMAP STORE: %q", got)
	}

	// SMAP → IMAP.
	if got := s.cmd("STORE 1 +FLAGS=SEEN,REPLIED"); got != "* FETCH 1 FLAGS=MARKED,REPLIED,SEEN\n+OK Folder status updated\n" {
		t.Fatalf("SMAP STORE: %q", got)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if err := c.Noop().Wait(); err != nil {
			t.Fatal(err)
		}
		msgs, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{Flags: true}).Collect()
		if err != nil || len(msgs) != 1 {
			t.Fatalf("IMAP FETCH: %v", err)
		}
		flags := msgs[0].Flags
		has := func(f imap.Flag) bool {
			for _, x := range flags {
				if x == f {
					return true
				}
			}
			return false
		}
		if has(imap.FlagSeen) && has(imap.FlagAnswered) && has(imap.FlagFlagged) && has("$Work") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("IMAP flags after SMAP STORE: %v", flags)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Without smapcapability (Courier's default) IMAP neither lists SMAP1 nor
// switches.
func TestSMAPOffInIMAPByDefault(t *testing.T) {
	h := newHarness(t)
	c := h.imapLogin(nil)
	caps, err := c.Capability().Wait()
	if err != nil {
		t.Fatal(err)
	}
	if caps.Has("SMAP1") {
		t.Errorf("SMAP1 advertised without smapcapability: %v", caps)
	}
}

// ADD with RCPTTO sends the message through the local submission path
// (delivered here, since the recipient is local) and keeps a copy in the
// folder; a sender the login does not own is refused (postern init's
// senderlogin is "own") and nothing is kept.
func TestSMAPAddSendsAndSaves(t *testing.T) {
	h := newSMAPHarness(t)
	s := h.smapDial("smap")
	if got := s.cmd(`\SMAP1 LOGIN "` + h.user + `" "` + h.pass + `"`); got != "+OK SMAP1 LOGIN Ok.\n" {
		t.Fatalf("login: %q", got)
	}
	s.cmd(`CREATE INBOX Sent`)
	if got := s.cmd(`ADD FOLDER INBOX Sent "" FLAGS=SEEN "RCPTTO=` + h.user + `"`); got != "+OK RCPT TO set\n" {
		t.Fatalf("ADD settings: %q", got)
	}
	if got := s.cmd("ADD {.}"); got != "> Go ahead\n" {
		t.Fatalf("ADD: %q", got)
	}
	s.conn.Write([]byte("Subject: sent over smap\nTo: " + h.user + "\n\nhello\n.\n"))
	if got := s.cmd(""); !strings.HasPrefix(got, "* ADD \"UID=") || !strings.HasSuffix(got, "+OK Message saved\n") {
		t.Fatalf("ADD reply: %q", got)
	}
	h.settle()
	if got := s.cmd("STATUS X INBOX Sent"); got != "* STATUS EXISTS=1 UNSEEN=0\n+OK Folder status retrieved\n" {
		t.Errorf("Sent: %q", got)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := s.cmd("STATUS X INBOX")
		if got == "* STATUS EXISTS=1 UNSEEN=1\n+OK Folder status retrieved\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("INBOX after sending: %q", got)
		}
		time.Sleep(20 * time.Millisecond)
	}
	delivered, _ := filepath.Glob(filepath.Join(h.maildir(h.user), "new", "*"))
	if len(delivered) != 1 {
		t.Fatalf("new/ after sending: %v", delivered)
	}
	if b, _ := os.ReadFile(delivered[0]); !bytes.Contains(b, []byte("Received: (from "+h.user+" via postern smap)")) {
		t.Errorf("the sent message's Received does not say it came over SMAP:\n%s", b)
	}
	s.cmd(`ADD FOLDER INBOX Sent "" MAILFROM=boss@example.net "RCPTTO=` + h.user + `"`)
	s.cmd("ADD {.}")
	s.conn.Write([]byte("Subject: forged\n\nx\n.\n"))
	if got := s.cmd(""); !strings.HasPrefix(got, "-ERR <boss@example.net>: Sender address rejected") {
		t.Errorf("forged sender: %q", got)
	}
	if got := s.cmd("STATUS X INBOX Sent"); got != "* STATUS EXISTS=1 UNSEEN=0\n+OK Folder status retrieved\n" {
		t.Errorf("Sent after a refusal: %q", got)
	}
}
