package server

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"postern/internal/netserve"
	"postern/web/admin"
)

// lineConn is a line-oriented client for the who/kick tests, which must
// see the exact line a kicked session is told.
type lineConn struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func dialLines(t *testing.T, addr string) *lineConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	t.Cleanup(func() { c.Close() })
	rc := &lineConn{t: t, conn: c, r: bufio.NewReader(c)}
	rc.line() // greeting
	return rc
}

func (c *lineConn) line() string {
	c.t.Helper()
	l, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return strings.TrimRight(l, "\r\n")
}

// send writes a command and reads lines up to the one starting with
// until.
func (c *lineConn) send(cmd, until string) string {
	c.t.Helper()
	if _, err := c.conn.Write([]byte(cmd + "\r\n")); err != nil {
		c.t.Fatal(err)
	}
	for {
		if l := c.line(); strings.HasPrefix(l, until) {
			return l
		}
	}
}

func (h *harness) control(command string, args ...string) ([]netserve.SessionInfo, *ControlReply) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	reply, err := Control(ctx, filepath.Join(h.dir, "data"), ControlRequest{Command: command, Args: args})
	if err != nil {
		h.t.Fatal(err)
	}
	var infos []netserve.SessionInfo
	if reply.Status == 0 {
		if err := json.Unmarshal([]byte(reply.Stdout), &infos); err != nil {
			h.t.Fatalf("%s: %v: %q", command, err, reply.Stdout)
		}
	}
	return infos, reply
}

func describe(infos []netserve.SessionInfo) []string {
	var out []string
	for _, i := range infos {
		out = append(out, i.Protocol+" "+i.User+" "+i.Mailbox)
	}
	return out
}

// postern who lists the IMAP, POP3 and SMAP sessions with their users
// and IMAP's selected folder; postern kick ends a user's sessions with
// the reason (an IDLE one at once), leaves the others alone, deletes
// nothing for a kicked POP3 session, and by address ends the sessions of
// a client, logged in or not.
func TestWhoAndKick(t *testing.T) {
	h := newHarness(t)
	h.writeSetting("listen", "smtp 127.0.0.1:0\nimap 127.0.0.1:0\npop3 127.0.0.1:0\nsmap 127.0.0.1:0\nweb 127.0.0.1:0\n")
	h.writeSetting("smapcapability", "SMAP1\n")
	h.addUser("bob@example.test", "bob pass")
	h.restart()
	if err := h.send("carol@example.net", []string{h.user}, testMessage("kept", "body\r\n")); err != nil {
		t.Fatal(err)
	}
	h.settle()

	idle := dialLines(t, h.addr("imap"))
	idle.send(`a LOGIN "`+h.user+`" "`+h.pass+`"`, "a OK")
	idle.send("b SELECT INBOX", "b OK")
	idle.send("c IDLE", "+ ")
	bob := dialLines(t, h.addr("imap"))
	bob.send(`a LOGIN "bob@example.test" "bob pass"`, "a OK")
	anon := dialLines(t, h.addr("imap"))
	pop := dialLines(t, h.addr("pop3"))
	pop.send("USER "+h.user, "+OK")
	pop.send("PASS "+h.pass, "+OK")
	pop.send("DELE 1", "+OK")
	smap := dialLines(t, h.addr("smap"))
	smap.send(`\SMAP1 LOGIN "`+h.user+`" "`+h.pass+`"`, "+OK")
	smap.send("OPEN INBOX", "+OK")

	infos, _ := h.control("who")
	got := strings.Join(describe(infos), "|")
	want := "imap alice@example.test INBOX|imap bob@example.test |imap  |pop3 alice@example.test |smap alice@example.test INBOX"
	if got != want {
		t.Fatalf("who:\n got %s\nwant %s", got, want)
	}
	if infos[0].Local != h.addr("imap") || infos[0].RemoteIP().String() != "127.0.0.1" || infos[0].TLS || infos[0].Since.IsZero() {
		t.Errorf("who's first session: %+v", infos[0])
	}
	if infos, _ := h.control("who", "BOB*"); strings.Join(describe(infos), "|") != "imap bob@example.test " {
		t.Errorf("who BOB*: %v", describe(infos))
	}
	if _, reply := h.control("who", "["); reply.Status != 64 {
		t.Errorf("who with a bad mask: %+v", reply)
	}

	kicked, _ := h.control("kick", h.user)
	if got := strings.Join(describe(kicked), "|"); got != "imap alice@example.test INBOX|pop3 alice@example.test |smap alice@example.test INBOX" {
		t.Fatalf("kick %s: %s", h.user, got)
	}
	if l := idle.line(); l != "* BYE disconnected by the administrator" {
		t.Errorf("IDLE session told %q", l)
	}
	if l := pop.line(); l != "-ERR disconnected by the administrator" {
		t.Errorf("POP3 session told %q", l)
	}
	if l := smap.line(); l != "* BYE disconnected by the administrator" {
		t.Errorf("SMAP session told %q", l)
	}
	if l := bob.send("d NOOP", "d "); l != "d OK NOOP completed" && !strings.HasPrefix(l, "d OK") {
		t.Errorf("bob's session after alice was kicked: %q", l)
	}
	// The POP3 session never reached UPDATE: its DELE did not happen.
	files, _ := filepath.Glob(filepath.Join(h.maildir(h.user), "*", "*"))
	n := 0
	for _, f := range files {
		if fi, err := os.Stat(f); err == nil && fi.Mode().IsRegular() && (strings.Contains(f, "/cur/") || strings.Contains(f, "/new/")) {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d messages left in the Maildir after the kicked POP3 DELE, want 1: %v", n, files)
	}

	if kicked, _ := h.control("kick", "", "127.0.0.0/8"); strings.Join(describe(kicked), "|") != "imap bob@example.test |imap  " {
		t.Errorf("kick by network: %v", describe(kicked))
	}
	if l := anon.line(); l != "* BYE disconnected by the administrator" {
		t.Errorf("session before login told %q", l)
	}
	if l := bob.line(); l != "* BYE disconnected by the administrator" {
		t.Errorf("bob told %q", l)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		infos, _ := h.control("who")
		if len(infos) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sessions still listed after kick: %v", describe(infos))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if kicked, reply := h.control("kick", "nobody*"); len(kicked) != 0 || reply.Status != 0 {
		t.Errorf("kick matching nothing: %v %+v", kicked, reply)
	}
}

// The web admin's Sessions page lists the sessions and its buttons end a
// user's (only that user's, a wildcard in the name is no mask) or a
// client's.
func TestWebadminSessionsPage(t *testing.T) {
	h := newHarness(t)
	h.addUser("b*b@example.test", "bob pass")
	if err := admin.SetPassword(h.etc, "ops", "admin pw"); err != nil {
		t.Fatal(err)
	}
	alice := dialLines(t, h.addr("imap"))
	alice.send(`a LOGIN "`+h.user+`" "`+h.pass+`"`, "a OK")
	alice.send("b SELECT INBOX", "b OK")
	bob := dialLines(t, h.addr("imap"))
	bob.send(`a LOGIN "b*b@example.test" "bob pass"`, "a OK")

	anon, _ := h.adminLogin("", "")
	if code, page := anon("GET", "/admin/sessions", nil); code != 200 || strings.Contains(page, h.user) {
		t.Fatalf("sessions without logging in: %d, shows alice: %v", code, strings.Contains(page, h.user))
	}
	do, csrf := h.adminLogin("ops", "admin pw")
	code, page := do("GET", "/admin/sessions", nil)
	if code != 200 || !strings.Contains(page, "2 of 2 IMAP") || !strings.Contains(page, "<td>"+h.user+"</td>") || !strings.Contains(page, "<td>INBOX</td>") {
		t.Fatalf("sessions page: %d\n%s", code, page)
	}
	if code, page := do("GET", "/admin/sessions?user=alice*", nil); code != 200 || !strings.Contains(page, "1 of 2 IMAP") {
		t.Errorf("filtered: %d\n%s", code, page)
	}
	if code, _ := do("GET", "/admin/sessions?network=nonsense", nil); code != 400 {
		t.Errorf("bad network filter: %d", code)
	}
	if code, _ := do("POST", "/admin/sessions/kick", url.Values{"user": {"b*b@example.test"}}); code != http.StatusForbidden {
		t.Errorf("kick without the CSRF token: %d", code)
	}
	if l := alice.send("c NOOP", "c "); !strings.HasPrefix(l, "c OK") {
		t.Fatalf("alice after a kick without token: %q", l)
	}
	code, page = do("POST", "/admin/sessions/kick", url.Values{"csrf": {csrf}, "user": {"b*b@example.test"}})
	if code != 200 || !strings.Contains(page, "1 session of user b*b@example.test ended") {
		t.Fatalf("kick bob: %d\n%s", code, page)
	}
	if l := bob.line(); l != "* BYE disconnected by the administrator" {
		t.Errorf("bob told %q", l)
	}
	if l := alice.send("d NOOP", "d "); !strings.HasPrefix(l, "d OK") {
		t.Fatalf("alice's session ended with b*b's (the name was taken as a mask): %q", l)
	}
	code, page = do("POST", "/admin/sessions/kick", url.Values{"csrf": {csrf}, "ip": {"127.0.0.1"}})
	if code != 200 || !strings.Contains(page, "1 session of client 127.0.0.1 ended") {
		t.Fatalf("kick by client: %d\n%s", code, page)
	}
	if l := alice.line(); l != "* BYE disconnected by the administrator" {
		t.Errorf("alice told %q", l)
	}
}
