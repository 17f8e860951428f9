package imap

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// These tests run Courier's own maildirkw(1) and maildiracl(1) (Debian's
// courier-base; skipped when absent) on the Maildir a running server
// serves, to show that Courier's keyword and ACL files and Postern's are one
// format: what Courier's tools write, the server shows, and what the server
// writes, Courier's tools read.

func courierTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("Courier's %s is not installed", name)
	}
	return path
}

func runTool(t *testing.T, path string, args ...string) string {
	t.Helper()
	out, err := exec.Command(path, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %q: %v\n%s", filepath.Base(path), args, err, out)
	}
	return string(out)
}

// TestCourierMaildirkwInterop: keywords set with Courier's maildirkw show in
// FETCH FLAGS; keywords STOREd over IMAP show in maildirkw -L.
func TestCourierMaildirkwInterop(t *testing.T) {
	kw := courierTool(t, "maildirkw")
	env := newTestEnv(t, nil)
	key1 := env.deliver("alice", "INBOX", "Subject: one\n\nbody\n")
	key2 := env.deliver("alice", "INBOX", "Subject: two\n\nbody\n")
	md := env.maildirPath("alice")

	// Courier first: a message still in new/ and one keyword set.
	runTool(t, kw, md, key1, "Project", "$Label1")
	r := env.login("alice", "secret")
	r.send("A1 SELECT INBOX\r\n")
	r.until("A1 OK")
	r.send("A2 FETCH 1:2 (UID FLAGS)\r\n")
	lines := r.until("A2 OK")
	if !strings.Contains(lines[0], `FLAGS ($Label1 Project)`) && !strings.Contains(lines[0], `FLAGS (Project $Label1)`) {
		t.Fatalf("after maildirkw, message 1: %q", lines[0])
	}
	if !strings.Contains(lines[1], `FLAGS (\Recent)`) {
		t.Fatalf("message 2: %q", lines[1])
	}

	// Postern's STORE, read by Courier's tool.
	r.send("A3 STORE 2 +FLAGS (Work \\Seen)\r\n")
	r.until("A3 OK")
	r.send("A4 STORE 1 -FLAGS (Project)\r\n")
	r.until("A4 OK")
	got := strings.Split(strings.TrimSpace(runTool(t, kw, "-L", md)), "\n")
	slices.Sort(got)
	want := []string{key1 + " $Label1", key2 + " Work"}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("maildirkw -L after STORE = %q, want %q", got, want)
	}

	// Courier changes a set the server has already seen (-a adds, -r
	// removes); the session sees it at its next NOOP.
	runTool(t, kw, "-a", md, key2, "Later")
	runTool(t, kw, "-r", md, key1, "$Label1")
	r.send("A45 NOOP\r\n")
	r.until("A45 OK")
	r.send("A5 FETCH 1:2 (FLAGS)\r\n")
	lines = r.until("A5 OK")
	joined := strings.Join(lines, "\n")
	if !strings.Contains(joined, "* 1 FETCH (FLAGS ())") || !strings.Contains(joined, "Later") || !strings.Contains(joined, "Work") {
		t.Fatalf("after maildirkw -a/-r: %q", lines)
	}

	// Expunged and re-listed: Courier's -L (which merges into :list)
	// leaves the server's view intact.
	runTool(t, kw, "-L", md)
	r.send("A6 FETCH 2 (FLAGS)\r\n")
	lines = r.until("A6 OK")
	if !strings.Contains(lines[0], "Later") || !strings.Contains(lines[0], "Work") || !strings.Contains(lines[0], `\Seen`) {
		t.Fatalf("after maildirkw -L: %q", lines)
	}
}

// TestCourierMaildiraclInterop: an ACL set with Courier's maildiracl is what
// GETACL and MYRIGHTS answer; one set with SETACL is what maildiracl -list
// and -compute show.
func TestCourierMaildiraclInterop(t *testing.T) {
	tool := courierTool(t, "maildiracl")
	env := newTestEnv(t, nil)
	m := env.maildir("alice")
	md := env.maildirPath("alice")
	if err := m.CreateFolder("Work"); err != nil {
		t.Fatal(err)
	}
	// Set before alice's first login, which registers her shared
	// folders (docs/imap.md, "Registry").
	runTool(t, tool, "-set", md, "INBOX.Work", "user=bob", "lrsw")
	runTool(t, tool, "-set", md, "INBOX.Work", "-user=bob", "w")
	r := env.login("alice", "secret")
	r.send("A2 CREATE Notes\r\n")
	r.expect("A2 OK")
	r.send("A3 GETACL Work\r\n")
	lines := r.until("A3 OK")
	if lines[0] != `* ACL Work alice lrswipkxteacd administrators lrswikxteacd bob lrsw -bob w` {
		t.Fatalf("GETACL after maildiracl -set: %q", lines[0])
	}
	b := env.login("bob", "hunter2")
	b.send("B1 MYRIGHTS #shared.alice.Work\r\n")
	lines = b.until("B1 OK")
	if lines[0] != `* MYRIGHTS #shared.alice.Work lrs` {
		t.Fatalf("bob's MYRIGHTS: %q", lines[0])
	}
	if got := runTool(t, tool, "-compute", md, "INBOX.Work", "user=bob"); got != "lrs\n" {
		t.Fatalf("maildiracl -compute = %q", got)
	}

	// SETACL, read by Courier's tool.
	r.send("A4 SETACL Notes bob lri\r\n")
	r.expect("A4 OK")
	r.send("A5 SETACL Notes anyone l\r\n")
	r.expect("A5 OK")
	got := runTool(t, tool, "-list", md, "INBOX.Notes")
	for _, line := range []string{"owner\taceilprstwx\n", "user=bob\tilr\n", "anyone\tl\n"} {
		if !strings.Contains(got, line) {
			t.Fatalf("maildiracl -list after SETACL = %q, lacks %q", got, line)
		}
	}
	if c := runTool(t, tool, "-compute", md, "INBOX.Notes", "user=bob", "anyone"); c != "ilr\n" {
		t.Fatalf("maildiracl -compute = %q", c)
	}
	// Courier's tool rewrote the file (adding administrators): the
	// server still reads it.
	r.send("A6 DELETEACL Notes anyone\r\n")
	r.expect("A6 OK")
	data, err := os.ReadFile(filepath.Join(md, ".Notes", "courierimapacl"))
	if err != nil {
		t.Fatal(err)
	}
	if c := runTool(t, tool, "-list", md, "INBOX.Notes"); strings.Contains(c, "anyone") {
		t.Fatalf("after DELETEACL, maildiracl -list = %q (file %q)", c, data)
	}
}
