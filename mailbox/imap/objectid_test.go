package imap

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// field returns the first submatch of re in the lines, failing the test
// when there is none.
func field(t *testing.T, lines []string, re string) string {
	t.Helper()
	rx := regexp.MustCompile(re)
	for _, l := range lines {
		if m := rx.FindStringSubmatch(l); m != nil {
			return m[1]
		}
	}
	t.Fatalf("no %s in:\n%s", re, strings.Join(lines, "\n"))
	return ""
}

const (
	threadRootMsg  = "From: a@example.org\r\nSubject: plan\r\nMessage-ID: <root@example.org>\r\n\r\nLet us plan.\r\n"
	threadReplyMsg = "From: b@example.org\r\nSubject: Re: plan\r\nMessage-ID: <reply@example.org>\r\nIn-Reply-To: <root@example.org>\r\nReferences: <root@example.org>\r\n\r\nAgreed.\r\n"
	otherMsg       = "From: c@example.org\r\nSubject: other\r\nMessage-ID: <other@example.org>\r\n\r\nSomething else.\r\n"
)

// TestObjectIDTranscript goes through RFC 8474: MAILBOXID on CREATE,
// SELECT and STATUS, kept by RENAME and across a restart, new after
// DELETE and CREATE; EMAILID kept by COPY; THREADID shared by a reply and
// its root; SEARCH by both.
func TestObjectIDTranscript(t *testing.T) {
	env := newTestEnv(t, nil)
	env.deliver("alice", "INBOX", threadRootMsg)
	env.deliver("alice", "INBOX", threadReplyMsg)
	env.deliver("alice", "INBOX", otherMsg)
	r := env.login("alice", "secret")
	r.send("c CAPABILITY\r\n")
	if caps := r.until("c OK"); !strings.Contains(caps[0], " OBJECTID") {
		t.Fatalf("OBJECTID not advertised: %q", caps[0])
	}

	r.send("c1 CREATE Work\r\n")
	created := field(t, r.until("c1 "), `^c1 OK \[MAILBOXID \(([A-Za-z0-9_-]+)\)\]`)
	r.send("s1 STATUS Work (MESSAGES MAILBOXID)\r\n")
	if got := field(t, r.until("s1 OK"), `MAILBOXID \(([^)]+)\)`); got != created {
		t.Errorf("STATUS MAILBOXID %s, CREATE said %s", got, created)
	}
	r.send("r1 RENAME Work Play\r\n")
	r.until("r1 OK")
	r.send("s2 STATUS Play (MAILBOXID)\r\n")
	if got := field(t, r.until("s2 OK"), `MAILBOXID \(([^)]+)\)`); got != created {
		t.Errorf("after RENAME: MAILBOXID %s, want %s", got, created)
	}

	r.send("x1 SELECT INBOX\r\n")
	inboxID := field(t, r.until("x1 OK"), `^\* OK \[MAILBOXID \(([^)]+)\)\]`)
	if inboxID == created {
		t.Fatalf("INBOX and Play share MAILBOXID %s", inboxID)
	}
	r.send("f1 FETCH 1:3 (EMAILID THREADID)\r\n")
	lines := r.until("f1 OK")
	ids := map[string][2]string{}
	rx := regexp.MustCompile(`^\* (\d) FETCH \(EMAILID \(([^)]+)\) THREADID \(([^)]+)\)\)$`)
	for _, l := range lines[:len(lines)-1] {
		m := rx.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("FETCH line %q", l)
		}
		ids[m[1]] = [2]string{m[2], m[3]}
	}
	if len(ids) != 3 || ids["1"][0] == ids["2"][0] || ids["1"][0] == ids["3"][0] {
		t.Fatalf("EMAILIDs not distinct: %v", ids)
	}
	if ids["1"][1] != ids["2"][1] || ids["1"][1] == ids["3"][1] {
		t.Errorf("THREADIDs: root %s reply %s other %s", ids["1"][1], ids["2"][1], ids["3"][1])
	}

	r.send("se1 SEARCH EMAILID " + ids["2"][0] + "\r\n")
	if l := r.until("se1 OK"); l[0] != "* SEARCH 2" {
		t.Errorf("SEARCH EMAILID: %q", l)
	}
	r.send("se2 UID SEARCH THREADID " + ids["1"][1] + "\r\n")
	if l := r.until("se2 OK"); l[0] != "* SEARCH 1 2" {
		t.Errorf("SEARCH THREADID: %q", l)
	}
	r.send("se3 SEARCH EMAILID bad/id\r\n")
	r.expect("se3 BAD")

	r.send("cp COPY 2 Play\r\n")
	r.until("cp OK")
	r.send("x2 SELECT Play\r\n")
	if got := field(t, r.until("x2 OK"), `^\* OK \[MAILBOXID \(([^)]+)\)\]`); got != created {
		t.Errorf("SELECT Play: MAILBOXID %s, want %s", got, created)
	}
	r.send("f2 FETCH 1 (EMAILID THREADID)\r\n")
	if l := r.until("f2 OK"); l[0] != "* 1 FETCH (EMAILID ("+ids["2"][0]+") THREADID ("+ids["2"][1]+"))" {
		t.Errorf("copy's ids: %q, want the original's %v", l[0], ids["2"])
	}

	r.send("d1 CLOSE\r\nd2 DELETE Play\r\nd3 CREATE Play\r\n")
	r.until("d2 OK")
	if again := field(t, r.until("d3 "), `^d3 OK \[MAILBOXID \(([^)]+)\)\]`); again == created {
		t.Errorf("a new mailbox with a deleted one's name kept its MAILBOXID %s", again)
	}

	// A new process reads the same MAILBOXID and computes the same EMAILID.
	env.restart()
	r = env.login("alice", "secret")
	r.send("x3 EXAMINE INBOX\r\n")
	if got := field(t, r.until("x3 OK"), `^\* OK \[MAILBOXID \(([^)]+)\)\]`); got != inboxID {
		t.Errorf("after restart: MAILBOXID %s, want %s", got, inboxID)
	}
	r.send("f3 FETCH 3 EMAILID\r\n")
	if l := r.until("f3 OK"); l[0] != "* 3 FETCH (EMAILID ("+ids["3"][0]+"))" {
		t.Errorf("after restart: %q, want %s", l[0], ids["3"][0])
	}
}

// TestMailboxIDFile checks the file's creation race and its validation.
func TestMailboxIDFile(t *testing.T) {
	dir := t.TempDir()
	results := make(chan string, 8)
	for range 8 {
		go func() {
			id, err := mailboxID(dir)
			if err != nil {
				t.Error(err)
			}
			results <- id
		}()
	}
	first := <-results
	for range 7 {
		if id := <-results; id != first {
			t.Errorf("concurrent creation gave %s and %s", first, id)
		}
	}
	if !validObjectID(first) {
		t.Errorf("invalid objectid %q", first)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
	if err := os.WriteFile(filepath.Join(dir, mailboxIDFileName), []byte("no/slashes\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := mailboxID(dir); err == nil {
		t.Error("a corrupt MAILBOXID file was accepted")
	}
}

// TestSaveDate checks FETCH SAVEDATE and the SAVED* search keys
// (RFC 8514): the save date of a copy is when it was copied, not the
// internal date it keeps.
func TestSaveDate(t *testing.T) {
	env := newTestEnv(t, nil)
	old := time.Date(2020, 3, 4, 5, 6, 7, 0, time.UTC)
	env.deliver("alice", "INBOX", crlfMessage)
	// An old message: delivered (named) and dated in 2020.
	oldKey := "1583298367.M1P1Q1.host,S=19"
	if err := os.WriteFile(filepath.Join(env.maildirPath("alice"), "cur", oldKey+":2,S"), []byte("Subject: x\r\n\r\nold\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(filepath.Join(env.maildirPath("alice"), "cur", oldKey+":2,S"), old, old); err != nil {
		t.Fatal(err)
	}
	r := env.login("alice", "secret")
	r.send("c CAPABILITY\r\n")
	if caps := r.until("c OK"); !strings.Contains(caps[0], " SAVEDATE") {
		t.Fatalf("SAVEDATE not advertised: %q", caps[0])
	}
	r.send("s SELECT INBOX\r\n")
	r.until("s OK")
	r.send("f1 FETCH 1:2 (UID SAVEDATE INTERNALDATE)\r\n")
	lines := r.until("f1 OK")
	today := time.Now().Format("02-Jan-2006")
	oldSave := time.Unix(1583298367, 0).Format("02-Jan-2006 15:04:05 -0700")
	var sawOld, sawNew bool
	for _, l := range lines[:len(lines)-1] {
		switch {
		case strings.Contains(l, `SAVEDATE "`+oldSave+`"`):
			sawOld = true
		case strings.Contains(l, `SAVEDATE "`+today):
			sawNew = true
		}
	}
	if !sawOld || !sawNew {
		t.Fatalf("SAVEDATE: want %s and today:\n%s", oldSave, strings.Join(lines, "\n"))
	}
	r.send("q1 UID SEARCH SAVEDSINCE " + today + "\r\n")
	newUIDs := r.until("q1 OK")[0]
	r.send("q2 UID SEARCH SAVEDBEFORE 1-Jan-2021\r\n")
	oldUIDs := r.until("q2 OK")[0]
	r.send("q3 SEARCH SAVEDON 4-Mar-2020\r\n")
	on := r.until("q3 OK")[0]
	if newUIDs == oldUIDs || len(newUIDs) != len("* SEARCH 1") || len(oldUIDs) != len("* SEARCH 1") || on == "* SEARCH" {
		t.Errorf("SAVEDSINCE %q, SAVEDBEFORE %q, SAVEDON %q", newUIDs, oldUIDs, on)
	}
	r.send("q4 SEARCH SAVEDATESUPPORTED\r\n")
	if l := r.until("q4 OK")[0]; l != "* SEARCH 1 2" {
		t.Errorf("SAVEDATESUPPORTED: %q", l)
	}

	// A copy of the old message is saved now, and keeps its internal date.
	r.send("c1 CREATE Keep\r\n")
	r.until("c1 OK")
	r.send("c2 UID COPY " + strings.TrimPrefix(oldUIDs, "* SEARCH ") + " Keep\r\n")
	r.until("c2 OK")
	r.send("s2 SELECT Keep\r\n")
	r.until("s2 OK")
	r.send("f2 FETCH 1 (SAVEDATE INTERNALDATE)\r\n")
	l := r.until("f2 OK")[0]
	if !strings.Contains(l, `SAVEDATE "`+today) || !strings.Contains(l, `INTERNALDATE "04-Mar-2020`) {
		t.Errorf("copy: %q", l)
	}
}
