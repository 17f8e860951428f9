package imap

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"postern/mailbox/maildir"
)

// MULTIAPPEND (RFC 3502): several messages in one APPEND, all or none.

func (e *testEnv) inboxCount(t *testing.T, user string) int {
	t.Helper()
	f, err := e.maildir(user).Folder(maildir.Inbox)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := f.Sync(false)
	if err != nil {
		t.Fatal(err)
	}
	return len(snap.Messages)
}

func (e *testEnv) tmpFiles(t *testing.T, user string) int {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(e.maildirPath(user), "tmp"))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func msgN(n int) string { return fmt.Sprintf("Subject: m%d\r\n\r\nbody %d\r\n", n, n) }

func TestMultiAppend(t *testing.T) {
	env := newTestEnv(t, nil)
	r := env.login("alice", "secret")
	r.send("c1 CAPABILITY\r\n")
	if l := r.expect("* CAPABILITY"); !strings.Contains(l, " MULTIAPPEND") {
		t.Errorf("MULTIAPPEND not advertised: %s", l)
	}
	r.expect("c1 OK")
	m1, m2, m3 := msgN(1), msgN(2), msgN(3)
	// Non-synchronizing, then synchronizing, then a literal8; flags and
	// dates per message.
	r.send(fmt.Sprintf("a1 APPEND INBOX (\\Seen) {%d+}\r\n%s (\\Flagged) \"02-Jan-2024 10:00:00 +0000\" {%d}\r\n", len(m1), m1, len(m2)))
	r.expect("+ ")
	r.send(fmt.Sprintf("%s ~{%d+}\r\n%s\r\n", m2, len(m3), m3))
	r.expect("a1 OK [APPENDUID ")
	r.send("a2 SELECT INBOX\r\n")
	r.until("a2 OK")
	r.send("a3 FETCH 1:* (UID FLAGS INTERNALDATE BODY.PEEK[HEADER.FIELDS (Subject)])\r\n")
	lines := strings.Join(r.until("a3 OK"), "\n")
	for _, want := range []string{
		"* 1 FETCH (UID 1 FLAGS (\\Seen)", "Subject: m1",
		"* 2 FETCH (UID 2 FLAGS (\\Flagged) INTERNALDATE \"02-Jan-2024 10:00:00 +0000\"", "Subject: m2",
		"* 3 FETCH (UID 3 FLAGS (\\Recent)", "Subject: m3",
	} {
		if !strings.Contains(lines, want) {
			t.Errorf("missing %q in\n%s", want, lines)
		}
	}
	if n := env.tmpFiles(t, "alice"); n != 0 {
		t.Errorf("tmp/ holds %d files", n)
	}
}

func TestMultiAppendAllOrNothing(t *testing.T) {
	env := newTestEnv(t, func(o *Options) { o.MaxLiteralSize = 1000 })
	r := env.login("alice", "secret")
	m1, m2 := msgN(1), msgN(2)
	big := strings.Repeat("x", 1001)
	steps := []struct {
		name string
		send func()
		want string
	}{
		{"second message too big (synchronizing: refused before its data)", func() {
			r.send(fmt.Sprintf("b2 APPEND INBOX {%d+}\r\n%s {%d}\r\n", len(m1), m1, len(big)))
		}, "b2 NO [TOOBIG]"},
		{"syntax error after the second literal", func() {
			r.send(fmt.Sprintf("b3 APPEND INBOX {%d+}\r\n%s {%d+}\r\n%s junk\r\n", len(m1), m1, len(m2), m2))
		}, "b3 BAD"},
		{"bad flag in the second message", func() {
			r.send(fmt.Sprintf("b4 APPEND INBOX {%d+}\r\n%s (\\Bogus) {%d+}\r\n%s\r\n", len(m1), m1, len(m2), m2))
		}, "b4 BAD unknown system flag"},
		{"mailbox missing", func() {
			r.send(fmt.Sprintf("b5 APPEND Nope {%d+}\r\n%s {%d+}\r\n%s\r\n", len(m1), m1, len(m2), m2))
		}, "b5 NO [TRYCREATE]"},
	}
	for _, st := range steps {
		st.send()
		r.expect(st.want)
		if n := env.inboxCount(t, "alice"); n != 0 {
			t.Fatalf("%s: %d messages appended, want none", st.name, n)
		}
		if n := env.tmpFiles(t, "alice"); n != 0 {
			t.Fatalf("%s: tmp/ holds %d files", st.name, n)
		}
		// The session goes on.
		r.send("n NOOP\r\n")
		r.expect("n OK")
	}
	// A non-synchronizing literal over the limit ends the connection
	// (RFC 7888 4); what came before it in the command is dropped too.
	r.send(fmt.Sprintf("b1 APPEND INBOX {%d+}\r\n%s {%d+}\r\n%s\r\n", len(m1), m1, len(big), big))
	r.expect("b1 NO [TOOBIG]")
	r.expect("* BYE")
	if n := env.inboxCount(t, "alice"); n != 0 || env.tmpFiles(t, "alice") != 0 {
		t.Fatalf("after a refused non-synchronizing literal: %d messages, %d tmp files", n, env.tmpFiles(t, "alice"))
	}
	r = env.login("alice", "secret")
	// Over quota only all together: two fit, three do not.
	if err := env.maildir("alice").SetQuota(maildir.Quota{Messages: 2}); err != nil {
		t.Fatal(err)
	}
	r.send(fmt.Sprintf("q1 APPEND INBOX {%d+}\r\n%s {%d+}\r\n%s {%d+}\r\n%s\r\n", len(m1), m1, len(m2), m2, len(m1), m1))
	r.expect("q1 NO [OVERQUOTA]")
	if n := env.inboxCount(t, "alice"); n != 0 {
		t.Fatalf("over quota: %d messages appended, want none", n)
	}
	r.send(fmt.Sprintf("q2 APPEND INBOX {%d+}\r\n%s {%d+}\r\n%s\r\n", len(m1), m1, len(m2), m2))
	r.expect("q2 OK [APPENDUID ")
	if n := env.inboxCount(t, "alice"); n != 2 {
		t.Fatalf("%d messages, want 2", n)
	}
}

// A client that goes away in the middle of a MULTIAPPEND leaves nothing.
func TestMultiAppendDisconnect(t *testing.T) {
	env := newTestEnv(t, nil)
	r := env.login("alice", "secret")
	m1 := msgN(1)
	r.send(fmt.Sprintf("d1 APPEND INBOX {%d+}\r\n%s {100+}\r\nonly part", len(m1), m1))
	time.Sleep(100 * time.Millisecond)
	r.c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for env.tmpFiles(t, "alice") != 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := env.tmpFiles(t, "alice"); n != 0 {
		t.Errorf("tmp/ holds %d files after the disconnect", n)
	}
	if n := env.inboxCount(t, "alice"); n != 0 {
		t.Errorf("%d messages appended, want none", n)
	}
}
