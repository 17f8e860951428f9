package imap

import (
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
