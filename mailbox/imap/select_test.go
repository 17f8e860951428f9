package imap

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// SELECT answers UNSEEN and RECENT from the shared view's counts
// (RFC 3501 6.3.1, 7.1): the first session builds the view, later ones are
// served from it, and a flag change leads to a new view with new counts.
func TestSelectUnseenFromSharedView(t *testing.T) {
	env := newTestEnv(t, nil)
	for i := 0; i < 3; i++ {
		env.deliver("alice", "INBOX", "Subject: m\r\n\r\nbody\r\n")
	}
	hasLine := func(lines []string, want string) bool { return slices.Contains(lines, want) }
	noUnseen := func(lines []string) bool {
		return !slices.ContainsFunc(lines, func(l string) bool { return strings.Contains(l, "[UNSEEN") })
	}

	a := env.login("alice", "secret")
	a.send("s SELECT INBOX\r\n")
	lines := a.until("s ")
	if !hasLine(lines, "* 3 RECENT") || !hasLine(lines, "* OK [UNSEEN 1] First unseen") {
		t.Fatalf("first SELECT (messages from new/): %q", lines)
	}
	a.send("f STORE 1:2 +FLAGS.SILENT (\\Seen)\r\n")
	a.until("f OK")
	a.send("z LOGOUT\r\n")
	a.until("z OK")
	// cur/ as if last changed an hour ago: its listing is trusted, so the
	// next SELECTs see one snapshot and share one view.
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(filepath.Join(env.maildirPath("alice"), "cur"), old, old); err != nil {
		t.Fatal(err)
	}

	b := env.login("alice", "secret")
	b.send("s SELECT INBOX\r\n")
	lines = b.until("s ")
	if !hasLine(lines, "* 0 RECENT") || !hasLine(lines, "* OK [UNSEEN 3] First unseen") {
		t.Fatalf("SELECT that builds the shared view: %q", lines)
	}
	c := env.login("alice", "secret")
	c.send("s SELECT INBOX\r\n")
	lines = c.until("s ")
	if !hasLine(lines, "* 0 RECENT") || !hasLine(lines, "* OK [UNSEEN 3] First unseen") {
		t.Fatalf("SELECT served from the shared view: %q", lines)
	}
	b.send("f STORE 3 +FLAGS.SILENT (\\Seen)\r\n")
	b.until("f OK")
	d := env.login("alice", "secret")
	d.send("s SELECT INBOX\r\n")
	lines = d.until("s ")
	if !hasLine(lines, "* 3 EXISTS") || !noUnseen(lines) {
		t.Fatalf("SELECT after every message was seen: %q", lines)
	}
	c.send("s SELECT INBOX\r\n")
	lines = c.until("s ")
	if !noUnseen(lines) {
		t.Fatalf("SELECT again from the shared view: %q", lines)
	}
	for _, r := range []*rawConn{b, c, d} {
		r.send("z LOGOUT\r\n")
		r.until("z OK")
	}
}

// \Recent is kept beside the shared view: after an APPEND (into new/),
// the first session to SELECT has the new message \Recent, the next does
// not, and both are served from one view, which the folder's index
// extended in place rather than rebuilt (RFC 3501 2.3.2, 6.3.1).
func TestRecentBesideSharedView(t *testing.T) {
	env := newTestEnv(t, nil)
	for i := 0; i < 3; i++ {
		env.deliver("alice", "INBOX", crlfMessage)
	}
	a := env.login("alice", "secret")
	a.send("s SELECT INBOX\r\n")
	if lines := a.until("s OK"); !slices.Contains(lines, "* 3 RECENT") {
		t.Fatalf("first SELECT: %q", lines)
	}
	// As if cur/ were last changed long ago: its listing is trusted, and
	// the SELECTs below only add what new/ holds to the last snapshot.
	old := time.Now().Add(-time.Hour)
	os.Chtimes(filepath.Join(env.maildirPath("alice"), "cur"), old, old)
	a.send("n NOOP\r\n")
	a.until("n OK")
	a.send("z LOGOUT\r\n")
	a.until("z OK")
	view := func() []viewMessage {
		env.srv.hub.mu.Lock()
		e := env.srv.hub.indexes[filepath.Join(env.maildirPath("alice"))]
		env.srv.hub.mu.Unlock()
		if e == nil {
			t.Fatal("no index for INBOX")
		}
		e.ix.mu.Lock()
		defer e.ix.mu.Unlock()
		return e.ix.view
	}
	b := env.login("alice", "secret")
	b.send("s SELECT INBOX\r\n")
	b.until("s OK")
	before := view()
	if len(before) != 3 {
		t.Fatalf("shared view of %d messages, want 3", len(before))
	}

	appender := env.login("alice", "secret")
	msg := "Subject: appended\r\n\r\nbody\r\n"
	appender.send(fmt.Sprintf("p APPEND INBOX {%d+}\r\n%s\r\n", len(msg), msg))
	if lines := appender.until("p OK"); !strings.Contains(lines[len(lines)-1], "[APPENDUID ") || !strings.Contains(lines[len(lines)-1], " 4]") {
		t.Fatalf("APPEND: %q", lines)
	}
	c := env.login("alice", "secret")
	c.send("s SELECT INBOX\r\n")
	if lines := c.until("s OK"); !slices.Contains(lines, "* 4 EXISTS") || !slices.Contains(lines, "* 1 RECENT") {
		t.Fatalf("SELECT after the APPEND: %q", lines)
	}
	d := env.login("alice", "secret")
	d.send("s SELECT INBOX\r\n")
	if lines := d.until("s OK"); !slices.Contains(lines, "* 4 EXISTS") || !slices.Contains(lines, "* 0 RECENT") {
		t.Fatalf("second SELECT after the APPEND: %q", lines)
	}
	after := view()
	if len(after) != 4 || &after[0] != &before[0] || after[3].uid != 4 {
		t.Errorf("view after the APPEND: %d messages, same array %v", len(after), len(after) > 0 && &after[0] == &before[0])
	}
	for _, s := range []struct {
		conn   *rawConn
		recent bool
	}{{c, true}, {d, false}} {
		s.conn.send("f FETCH 3:4 FLAGS\r\ns SEARCH RECENT\r\nn SEARCH NEW\r\no SEARCH OLD\r\n")
		lines := s.conn.until("o OK")
		want := []string{"* 3 FETCH (FLAGS ())", "* 4 FETCH (FLAGS ())", "* SEARCH", "* SEARCH", "* SEARCH 1 2 3 4"}
		if s.recent {
			want = []string{"* 3 FETCH (FLAGS ())", `* 4 FETCH (FLAGS (\Recent))`, "* SEARCH 4", "* SEARCH 4", "* SEARCH 1 2 3"}
		}
		var got []string
		for _, l := range lines {
			if strings.HasPrefix(l, "* ") {
				got = append(got, l)
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("recent=%v: got %q, want %q", s.recent, got, want)
		}
	}
	// The next message reaches c by a rescan: it is \Recent there only.
	appender.send(fmt.Sprintf("q APPEND INBOX {%d+}\r\n%s\r\n", len(msg), msg))
	appender.until("q OK")
	c.send("n NOOP\r\n")
	if lines := c.until("n OK"); !slices.Contains(lines, "* 5 EXISTS") || !slices.Contains(lines, "* 2 RECENT") {
		t.Fatalf("NOOP after another APPEND: %q", lines)
	}
	d.send("n NOOP\r\n")
	if lines := d.until("n OK"); !slices.Contains(lines, "* 5 EXISTS") || !slices.Contains(lines, "* 0 RECENT") {
		t.Fatalf("NOOP in the other session: %q", lines)
	}
	// The sessions' rescans only added the message to the shared view.
	if v := view(); len(v) != 5 || &v[0] != &before[0] || v[4].uid != 5 {
		t.Errorf("view after the rescans: %d messages, same array %v", len(v), len(v) > 0 && &v[0] == &before[0])
	}
	d.send("f FETCH 5 FLAGS\r\n")
	if lines := d.until("f OK"); !slices.Contains(lines, "* 5 FETCH (FLAGS ())") {
		t.Errorf("FETCH in the other session: %q", lines)
	}
	for _, r := range []*rawConn{b, c, d, appender} {
		r.send("z LOGOUT\r\n")
		r.until("z OK")
	}
}
