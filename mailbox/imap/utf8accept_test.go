package imap

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	imap "github.com/emersion/go-imap/v2"
)

// TestUTF8AcceptTranscript goes through RFC 6855 on the wire: APPEND's
// UTF8 data item refused before ENABLE and taken after it, UTF-8 mailbox
// names both ways (modified UTF-7 on disk and for a session that did not
// enable it), 8-bit header search, and the CHARSET rules.
func TestUTF8AcceptTranscript(t *testing.T) {
	env := newTestEnv(t, nil)
	msg := "From: jürgen@example.org\r\nSubject: Grüße\r\n\r\nHallo\r\n"
	size := strconv.Itoa(len(msg))
	r := env.login("alice", "secret")
	r.send("c CAPABILITY\r\n")
	if caps := r.until("c OK"); !strings.Contains(caps[0], " UTF8=ACCEPT") {
		t.Fatalf("UTF8=ACCEPT not advertised: %q", caps[0])
	}
	// Before ENABLE: refused, and the literal (non-synchronizing) is
	// skipped so the next command is read as one.
	r.send("a0 APPEND INBOX UTF8 (~{" + size + "+}\r\n" + msg + ")\r\nn0 NOOP\r\n")
	r.expect("a0 BAD")
	r.expect("n0 OK")

	r.send("e ENABLE UTF8=ACCEPT\r\n")
	r.expect("* ENABLED UTF8=ACCEPT")
	r.expect("e OK")
	r.send("c1 CREATE \"Café\"\r\n")
	r.until("c1 OK")
	if _, err := os.Stat(filepath.Join(env.maildirPath("alice"), ".Caf&AOk-")); err != nil {
		t.Fatalf("on disk the name is not modified UTF-7: %v", err)
	}
	r.send("l1 LIST \"\" \"Caf*\"\r\n")
	if l := strings.Join(r.until("l1 OK"), "\n"); !strings.Contains(l, "Café") || strings.Contains(l, "&AOk-") {
		t.Errorf("LIST after ENABLE:\n%s", l)
	}
	r.send("a1 APPEND \"Café\" (\\Seen) UTF8 (~{" + size + "}\r\n")
	r.expect("+ ")
	r.send(msg + ") UTF8 (~{" + size + "+}\r\n" + msg + ")\r\n")
	if l := r.expect("a1 OK"); !strings.Contains(l, "APPENDUID") || !strings.HasSuffix(strings.Fields(l)[4], ":2]") {
		t.Errorf("APPEND UTF8: %q", l)
	}
	r.send("s1 SELECT \"Café\"\r\n")
	r.until("s1 OK")
	r.send("f1 FETCH 1 BODY.PEEK[HEADER.FIELDS (SUBJECT)]\r\n")
	r.expect("* 1 FETCH (BODY[HEADER.FIELDS (SUBJECT)] {")
	if l, _ := r.readLine(); l != "Subject: Grüße" {
		t.Errorf("stored header: %q", l)
	}
	r.until("f1 OK")
	r.send("q1 SEARCH SUBJECT \"grüße\"\r\n")
	if l := r.until("q1 OK")[0]; l != "* SEARCH 1 2" {
		t.Errorf("SEARCH in UTF-8: %q", l)
	}
	r.send("q2 SEARCH CHARSET UTF-8 ALL\r\n")
	r.expect("q2 BAD")
	r.send("q3 SORT (SUBJECT) US-ASCII ALL\r\n")
	r.expect("q3 BAD")
	r.send("q4 SORT (SUBJECT) UTF-8 ALL\r\n")
	if l := r.until("q4 OK")[0]; l != "* SORT 1 2" {
		t.Errorf("SORT UTF-8: %q", l)
	}
	r.send("a2 APPEND INBOX UTF8 ({3+}\r\nabc)\r\n")
	r.until("a2 BAD")

	// A session that did not enable it sees modified UTF-7.
	o := env.login("alice", "secret")
	o.send("l LIST \"\" \"Caf*\"\r\n")
	if l := o.until("l OK")[0]; l != `* LIST (\HasNoChildren) "." Caf&AOk-` {
		t.Errorf("LIST without ENABLE: %q", l)
	}
}

// TestUTF8AcceptWithGoIMAPClient enables UTF8=ACCEPT with go-imap, which
// then sends and reads mailbox names as UTF-8.
func TestUTF8AcceptWithGoIMAPClient(t *testing.T) {
	env := newTestEnv(t, nil)
	c := env.dialClient("alice", "secret", nil)
	if !c.Caps().Has(imap.CapUTF8Accept) {
		t.Fatalf("capabilities %v lack UTF8=ACCEPT", c.Caps())
	}
	en, err := c.Enable(imap.CapUTF8Accept).Wait()
	if err != nil || !en.Caps.Has(imap.CapUTF8Accept) {
		t.Fatalf("ENABLE: %+v %v", en, err)
	}
	if err := c.Create("Ünïcödé & Co", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	list, err := c.List("", "*", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, l := range list {
		found = found || l.Mailbox == "Ünïcödé & Co"
	}
	if !found {
		t.Errorf("LIST: %+v", list)
	}
	appendMessage(t, c, "Ünïcödé & Co", []byte(crlfMessage), nil)
	sel, err := c.Select("Ünïcödé & Co", nil).Wait()
	if err != nil || sel.NumMessages != 1 {
		t.Fatalf("SELECT: %+v %v", sel, err)
	}
}
