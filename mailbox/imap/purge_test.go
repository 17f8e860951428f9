package imap

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"postern/mailbox/maildir"
)

// An IMAP login runs the retention rules (imapemptytrash) on the account's
// Maildir: the Trash is emptied of what is past its age, other folders
// are left alone.
func TestLoginPurgesTrash(t *testing.T) {
	purger := &maildir.Purger{Logger: testLogger(t), Rules: func() []maildir.PurgeRule {
		// A negative age puts the cutoff in the future: everything in
		// Trash is past it (a real rule is whole days).
		return []maildir.PurgeRule{{Folder: "Trash", Age: -time.Minute}}
	}}
	env := newTestEnv(t, func(o *Options) { o.Purger = purger })
	md := env.maildir("alice")
	if err := md.CreateFolder("Trash"); err != nil {
		t.Fatal(err)
	}
	env.deliver("alice", "Trash", "Subject: old\r\n\r\nthrown away\r\n")
	env.deliver("alice", "INBOX", "Subject: kept\r\n\r\nin the INBOX\r\n")
	c := env.login("alice", "secret")
	purger.Close() // waits for the purge the login started
	count := func(folder string) int {
		n := 0
		for _, sub := range []string{"cur", "new"} {
			entries, _ := os.ReadDir(filepath.Join(env.maildirPath("alice"), folder, sub))
			n += len(entries)
		}
		return n
	}
	if n := count(".Trash"); n != 0 {
		t.Errorf("%d messages left in Trash after the login", n)
	}
	if n := count(""); n != 1 {
		t.Errorf("%d messages in INBOX, want the 1 delivered", n)
	}
	c.send("a STATUS Trash (MESSAGES)\r\n")
	if lines := c.until("a OK"); lines[0] != `* STATUS Trash (MESSAGES 0)` {
		t.Errorf("STATUS Trash: %q", lines)
	}
}
