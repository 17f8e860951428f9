package imap

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Items that need only the header (ENVELOPE, RFC822.HEADER,
// BODY[HEADER.FIELDS]) are answered from the header block and agree with
// a full read; RFC822.SIZE in the same FETCH is still the whole message's.
func TestHeaderOnlyFetchAgreesWithFullRead(t *testing.T) {
	env := newTestEnv(t, nil)
	env.maildir("alice")
	body := strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n", 40000) // 2.5 MB
	msg := "From: Ann <ann@example.org>\nTo: bob@example.org\nSubject: big one\nMessage-ID: <big@example.org>\n" +
		"Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nhi\n--b\nContent-Type: application/octet-stream\n\n" +
		body + "--b--\n"
	env.deliver("alice", "INBOX", msg)
	env.deliver("alice", "INBOX", "Subject: no body at all\n") // the file ends inside the header
	r := env.login("alice", "secret")
	r.send("s SELECT INBOX\r\n")
	r.until("s OK")

	crlf := strings.ReplaceAll(msg, "\n", "\r\n")
	header := crlf[:strings.Index(crlf, "\r\n\r\n")+4]
	fetch := func(tag, items string) string {
		r.send(tag + " FETCH 1 " + items + "\r\n")
		return strings.Join(r.until(tag+" OK"), "\n")
	}
	got := fetch("a", "(ENVELOPE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (Subject)] RFC822.HEADER)")
	for _, want := range []string{
		`ENVELOPE (NIL "big one" (("Ann" NIL "ann" "example.org"))`,
		"RFC822.SIZE " + itoa(len(crlf)),
		"BODY[HEADER.FIELDS (Subject)] {20}",
		"RFC822.HEADER {" + itoa(len(header)) + "}",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("FETCH answer lacks %q:\n%.600s", want, got)
		}
	}
	// The same items with BODYSTRUCTURE force a full read: same answers.
	full := fetch("b", "(ENVELOPE RFC822.SIZE BODYSTRUCTURE)")
	env1 := got[strings.Index(got, "ENVELOPE"):strings.Index(got, " RFC822.SIZE")]
	if !strings.Contains(full, env1) || !strings.Contains(full, "RFC822.SIZE "+itoa(len(crlf))) {
		t.Errorf("full read differs:\n%.600s\nheader-only:\n%.600s", full, got)
	}
	// A message that is all header.
	r.send("d FETCH 2 (ENVELOPE RFC822.SIZE RFC822.HEADER)\r\n")
	got = strings.Join(r.until("d OK"), "\n")
	if !strings.Contains(got, `"no body at all"`) || !strings.Contains(got, "RFC822.SIZE 25") || !strings.Contains(got, "RFC822.HEADER {25}") {
		t.Errorf("header-only message:\n%s", got)
	}
}

// An ENVELOPE is rendered once and kept in the folder index, across a
// restart: after the file is removed behind the server's back the stored
// ENVELOPE is still served while the body is not.
func TestEnvelopeKeptInIndex(t *testing.T) {
	env := newTestEnv(t, nil)
	env.maildir("alice")
	key := env.deliver("alice", "INBOX", "From: Ann <ann@example.org>\nSubject: kept\n\nbody\n")
	r := env.login("alice", "secret")
	r.send("s SELECT INBOX\r\n")
	r.until("s OK")
	r.send("a FETCH 1 ENVELOPE\r\n")
	first := r.until("a OK")
	r.send("z LOGOUT\r\n")
	r.until("z OK")
	env.restart()

	matches, _ := filepath.Glob(filepath.Join(env.maildirPath("alice"), "*", key+"*"))
	if len(matches) != 1 {
		t.Fatalf("message file: %v", matches)
	}
	r = env.login("alice", "secret")
	r.send("s SELECT INBOX\r\n")
	r.until("s OK")
	if err := os.Remove(matches[0]); err != nil {
		t.Fatal(err)
	}
	r.send("b FETCH 1 ENVELOPE\r\n")
	again := r.until("b ")
	if again[0] != first[0] || !strings.HasPrefix(again[len(again)-1], "b OK") {
		t.Errorf("stored ENVELOPE not served: first %q, now %q", first, again)
	}
	r.send("c FETCH 1 BODY.PEEK[]\r\n")
	if last := r.until("c "); !strings.HasPrefix(last[len(last)-1], "c NO") {
		t.Errorf("body of a removed file: %q", last)
	}
}
