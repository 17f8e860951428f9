package imap

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestReplaceTranscript goes through RFC 8508 on the wire: REPLACE in the
// selected mailbox (APPENDUID, EXISTS, EXPUNGE, one message left), UID
// REPLACE into another mailbox, and the refusals that must leave both
// mailboxes as they were.
func TestReplaceTranscript(t *testing.T) {
	env := newTestEnv(t, nil)
	env.deliver("alice", "INBOX", "Subject: draft 1\r\n\r\nfirst\r\n")
	env.deliver("alice", "INBOX", "Subject: other\r\n\r\nkeep me\r\n")
	draft2 := "Subject: draft 2\r\n\r\nsecond\r\n"
	r := env.login("alice", "secret")
	r.send("c CAPABILITY\r\n")
	if caps := r.until("c OK"); !strings.Contains(caps[0], " REPLACE") {
		t.Fatalf("REPLACE not advertised: %q", caps[0])
	}
	r.send("s SELECT INBOX\r\n")
	r.until("s OK")

	r.send("r1 REPLACE 1 INBOX (\\Seen \\Draft) {" + strconv.Itoa(len(draft2)) + "}\r\n")
	r.expect("+ ")
	r.send(draft2 + "\r\n")
	got := r.until("r1 ")
	// The expunge is reported first, then the count it leaves.
	want := []string{"* OK [APPENDUID ", "* 1 EXPUNGE", "* 2 EXISTS", "r1 OK REPLACE completed"}
	if len(got) < 4 {
		t.Fatalf("REPLACE: %q", got)
	}
	got = slicesWithout(got, "* ", " RECENT")
	for i, w := range want {
		if i >= len(got) || !strings.HasPrefix(got[i], w) {
			t.Fatalf("REPLACE answered %q, want %q", got, want)
		}
	}
	if !strings.Contains(got[0], " 3] ") {
		t.Errorf("APPENDUID: %q", got[0])
	}
	r.send("f1 FETCH 1:* (UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\n")
	lines := strings.Join(r.until("f1 OK"), "\n")
	if !strings.Contains(lines, "other") || !strings.Contains(lines, "draft 2") || strings.Contains(lines, "draft 1") ||
		!strings.Contains(lines, `\Draft`) {
		t.Errorf("after REPLACE:\n%s", lines)
	}

	// UID REPLACE into another mailbox, non-synchronizing literal.
	r.send("c1 CREATE Drafts\r\n")
	r.until("c1 ") // made with the account, or now
	draft3 := "Subject: draft 3\r\n\r\nthird\r\n"
	r.send("r2 UID REPLACE 3 Drafts {" + strconv.Itoa(len(draft3)) + "+}\r\n" + draft3 + "\r\n")
	got = slicesWithout(r.until("r2 "), "* ", " RECENT")
	if len(got) != 3 || !strings.HasPrefix(got[0], "* OK [APPENDUID ") || got[1] != "* 2 EXPUNGE" || got[2] != "r2 OK UID REPLACE completed" {
		t.Fatalf("UID REPLACE: %q", got)
	}
	r.send("st STATUS Drafts (MESSAGES)\r\nsi STATUS INBOX (MESSAGES)\r\n")
	if l := r.until("st OK")[0]; l != "* STATUS Drafts (MESSAGES 1)" {
		t.Errorf("Drafts: %q", l)
	}
	if l := r.until("si OK")[0]; l != "* STATUS INBOX (MESSAGES 1)" {
		t.Errorf("INBOX: %q", l)
	}

	// Refusals: nothing appended, nothing expunged, the connection in step.
	r.send("b1 REPLACE 9 INBOX {3}\r\n")
	r.expect("b1 BAD")
	r.send("b2 UID REPLACE 99 INBOX {3+}\r\nabc\r\n")
	r.expect("b2 NO [NONEXISTENT]")
	r.send("b3 REPLACE 1 Nowhere {3}\r\n")
	r.expect("b3 NO [TRYCREATE]")
	r.send("b4 REPLACE 1 INBOX {3+}\r\nabc {3+}\r\nxyz\r\n")
	r.expect("b4 BAD")
	r.send("b5 REPLACE 1:2 INBOX {3}\r\n")
	r.expect("b5 BAD")
	r.send("n NOOP\r\n")
	r.until("n OK")
	r.send("x EXAMINE INBOX\r\n")
	r.until("x OK")
	r.send("b6 REPLACE 1 INBOX {3}\r\n")
	r.expect("b6 NO [READ-ONLY]")
	r.send("si2 STATUS INBOX (MESSAGES)\r\n")
	if l := r.until("si2 OK")[0]; l != "* STATUS INBOX (MESSAGES 1)" {
		t.Errorf("INBOX after refusals: %q", l)
	}
	for _, dir := range []string{"tmp", ".Drafts/tmp"} {
		if entries, _ := os.ReadDir(filepath.Join(env.maildirPath("alice"), dir)); len(entries) != 0 {
			t.Errorf("%s holds %v after the refusals", dir, entries)
		}
	}
}

// slicesWithout drops the lines that start with prefix and end with
// suffix (RECENT counts, which depend on the session).
func slicesWithout(lines []string, prefix, suffix string) []string {
	var out []string
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) && strings.HasSuffix(l, suffix) {
			continue
		}
		out = append(out, l)
	}
	return out
}

// TestReplaceWithImaplib replaces a draft with Python's imaplib, which
// sends REPLACE as an ordinary command with a literal.
func TestReplaceWithImaplib(t *testing.T) {
	env := newTestEnv(t, nil)
	env.deliver("alice", "INBOX", "Subject: draft 1\r\n\r\nfirst\r\n")
	runImaplib(t, env, `
imaplib.Commands["REPLACE"] = ("SELECTED",)
typ, data = M.select("INBOX")
M.literal = b"Subject: draft 2\r\n\r\nsecond\r\n"
typ, data = M._simple_command("REPLACE", "1", "INBOX")
assert typ == "OK", (typ, data)
typ, data = M.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
assert len([d for d in data if isinstance(d, tuple)]) == 1 and b"draft 2" in data[0][1], data
`)
}
