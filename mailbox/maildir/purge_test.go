package maildir

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// countMessages counts a folder's files in cur/ and new/.
func countMessages(t *testing.T, dir string) int {
	t.Helper()
	return countFiles(t, filepath.Join(dir, "cur")) + countFiles(t, filepath.Join(dir, "new"))
}

// PurgeOlder goes by ctime, as Courier does: a message delivered long ago
// (old mtime) but put in Trash just now is kept; once the cutoff passes
// its ctime it is deleted, and the quota's usage follows.
func TestPurgeOlderByCtime(t *testing.T) {
	md := newTestMaildir(t)
	if err := md.CreateFolder("Sent"); err != nil {
		t.Fatal(err)
	}
	if err := md.SetQuota(Quota{Bytes: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	sent, _ := md.Folder("Sent")
	for i := 0; i < 3; i++ {
		if _, err := sent.Deliver(strings.NewReader("Subject: x\r\n\r\nbody\r\n"), DeliverOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	month := time.Now().Add(-30 * 24 * time.Hour)
	for _, sub := range []string{"cur", "new"} {
		names, _ := readNames(filepath.Join(sent.Path(), sub))
		for _, n := range names {
			os.Chtimes(filepath.Join(sent.Path(), sub, n), month, month) // mtime old; ctime now
		}
	}
	if n, err := sent.PurgeOlder(time.Now().Add(-7 * 24 * time.Hour)); err != nil || n != 0 {
		t.Fatalf("purge of week-old ctimes removed %d (%v); the files' ctime is now", n, err)
	}
	_, before, _ := md.Quota()
	n, err := sent.PurgeOlder(time.Now().Add(time.Second))
	if err != nil || n != 3 || countMessages(t, sent.Path()) != 0 {
		t.Fatalf("purge with a future cutoff: %d removed, %v, %d left", n, err, countMessages(t, sent.Path()))
	}
	if _, after, _ := md.Quota(); after.Messages != before.Messages-3 {
		t.Errorf("quota usage %+v after purging 3 of %+v", after, before)
	}
}

// The Purger runs the rules in the background at most once per account
// per period, skips folders the account lacks, and Close waits for it.
func TestPurgerThrottlesPerAccount(t *testing.T) {
	md := newTestMaildir(t)
	md.CreateFolder("Trash")
	trash, _ := md.Folder("Trash")
	deliver := func() {
		if _, err := trash.Deliver(strings.NewReader("Subject: x\r\n\r\nbody\r\n"), DeliverOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	deliver()
	p := &Purger{Rules: func() []PurgeRule {
		return []PurgeRule{{Folder: "Trash", Age: -time.Minute}, {Folder: "Nonexistent", Age: time.Hour}}
	}, Logger: slog.New(slog.DiscardHandler)}
	open := func() (*Maildir, error) { return Open(md.Root()) }
	p.LoggedIn("alice", open)
	p.Close()
	if n := countMessages(t, trash.Path()); n != 0 {
		t.Fatalf("%d messages left in Trash after the purge", n)
	}
	p = &Purger{Rules: p.Rules, Logger: slog.New(slog.DiscardHandler)}
	p.LoggedIn("alice", open)
	p.wg.Wait()
	deliver()
	p.LoggedIn("alice", open) // within the hour: nothing
	p.Close()
	if n := countMessages(t, trash.Path()); n != 1 {
		t.Fatalf("a second login within the period purged again: %d left", n)
	}
	p.LoggedIn("bob", open) // after Close: nothing starts
	p.wg.Wait()
	if n := countMessages(t, trash.Path()); n != 1 {
		t.Fatalf("a purge started after Close")
	}
}
