package maildir

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func openTestJournal(t *testing.T, path string) *Journal {
	t.Helper()
	j, err := OpenJournal(path, JournalOptions{Size: 1 << 20, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// A deferred delivery returns once its record is durable; the file appears
// in new/ only at Run, with the key Deliver returned, and the quota counts
// it once.
func TestDeferredDeliveryAppearsAtRun(t *testing.T) {
	m := newTestMaildir(t)
	if err := m.SetQuota(Quota{Bytes: 1000000}); err != nil {
		t.Fatal(err)
	}
	j := openTestJournal(t, filepath.Join(t.TempDir(), "delivery.journal"))
	defer j.Close()
	var later Deferred
	inbox := mustFolder(t, m, Inbox)
	body := "Subject: later\n\nhello\n"
	key := deliverString(t, inbox, body, DeliverOptions{Journal: j, Defer: &later})
	path := filepath.Join(m.Root(), "new", key)
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("file there before Run: %v", err)
	}
	if !later.Pending() || j.DeferredPending() != 1 {
		t.Fatalf("pending: %v, journal %d", later.Pending(), j.DeferredPending())
	}
	later.Run()
	got, err := os.ReadFile(path)
	if err != nil || string(got) != body {
		t.Fatalf("after Run: %v %q", err, got)
	}
	if later.Pending() || j.DeferredPending() != 0 || j.DeferredFailures() != 0 {
		t.Fatalf("after Run: pending %v/%d, failures %d", later.Pending(), j.DeferredPending(), j.DeferredFailures())
	}
	if bytes, count := maildirsizeUsage(t, m); count != 1 || bytes != int64(len(body)) {
		t.Fatalf("maildirsize counts %d messages, %d bytes", count, bytes)
	}
	// Then runs after the deliveries queued before it.
	var sawFile bool
	key2 := deliverString(t, inbox, body, DeliverOptions{Journal: j, Defer: &later})
	later.Then(func() {
		_, err := os.Stat(filepath.Join(m.Root(), "new", key2))
		sawFile = err == nil
	})
	later.Run()
	if !sawFile {
		t.Fatal("Then ran before the delivery queued ahead of it")
	}
}

// A crash between the acknowledgement and Run loses nothing: the record
// is not released, and the next start's replay writes the message.
func TestDeferredDeliveryCrashBeforeRun(t *testing.T) {
	m := newTestMaildir(t)
	path := filepath.Join(t.TempDir(), "delivery.journal")
	j := openTestJournal(t, path)
	var later Deferred
	body := "Subject: acknowledged\n\n" + strings.Repeat("body line\n", 100)
	key := deliverString(t, mustFolder(t, m, Inbox), body, DeliverOptions{Journal: j, Defer: &later, InternalDate: time.Unix(1.5e9, 0)})
	// The process dies here: Run never happens. Close keeps unreleased
	// records for the replay, as a crash does.
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j = openTestJournal(t, path)
	defer j.Close()
	st, err := os.Stat(filepath.Join(m.Root(), "new", key))
	if err != nil {
		t.Fatalf("not restored: %v", err)
	}
	got, _ := os.ReadFile(filepath.Join(m.Root(), "new", key))
	if string(got) != body || !st.ModTime().Equal(time.Unix(1.5e9, 0)) {
		t.Fatalf("restored %d bytes, mtime %v", len(got), st.ModTime())
	}
}

// When the deferred write fails, the message is written again the flushed
// way; when that fails too, it stays in the journal (counted) and the next
// start restores it.
func TestDeferredDeliveryFailures(t *testing.T) {
	m := newTestMaildir(t)
	path := filepath.Join(t.TempDir(), "delivery.journal")
	j := openTestJournal(t, path)
	inbox := mustFolder(t, m, Inbox)
	body := "Subject: retried\n\nbody\n"

	// A stale file under the new name: the link fails, the message is
	// written over it.
	var later Deferred
	key := deliverString(t, inbox, body, DeliverOptions{Journal: j, Defer: &later})
	dest := filepath.Join(m.Root(), "new", key)
	if err := os.WriteFile(dest, []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	later.Run()
	if got, _ := os.ReadFile(dest); string(got) != body || j.DeferredFailures() != 0 {
		t.Fatalf("written again: %q, failures %d", got, j.DeferredFailures())
	}

	// A directory in the way: neither way can write it.
	key = deliverString(t, inbox, body, DeliverOptions{Journal: j, Defer: &later})
	dest = filepath.Join(m.Root(), "new", key)
	if err := os.MkdirAll(filepath.Join(dest, "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	later.Run()
	if j.DeferredFailures() != 1 || j.DeferredPending() != 0 {
		t.Fatalf("failures %d, pending %d", j.DeferredFailures(), j.DeferredPending())
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dest); err != nil {
		t.Fatal(err)
	}
	j = openTestJournal(t, path)
	defer j.Close()
	if got, err := os.ReadFile(dest); err != nil || string(got) != body {
		t.Fatalf("not restored at the next start: %v %q", err, got)
	}
}

// Without a journal, or for a message the journal does not take, Defer
// changes nothing: the file is there when Deliver returns.
func TestDeferredDeliveryWithoutJournal(t *testing.T) {
	m := newTestMaildir(t)
	inbox := mustFolder(t, m, Inbox)
	var later Deferred
	key := deliverString(t, inbox, "Subject: plain\n\nx\n", DeliverOptions{Defer: &later})
	if _, err := os.Stat(filepath.Join(m.Root(), "new", key)); err != nil || later.Pending() {
		t.Fatalf("no journal: %v, pending %v", err, later.Pending())
	}
	j := openTestJournal(t, filepath.Join(t.TempDir(), "delivery.journal"))
	defer j.Close()
	big := "Subject: big\n\n" + strings.Repeat("x", 400<<10) + "\n" // over a quarter of the log
	key = deliverString(t, inbox, big, DeliverOptions{Journal: j, Defer: &later})
	if _, err := os.Stat(filepath.Join(m.Root(), "new", key)); err != nil || later.Pending() {
		t.Fatalf("too big for the journal: %v, pending %v", err, later.Pending())
	}
}

// maildirsizeUsage sums maildirsize's usage lines.
func maildirsizeUsage(t *testing.T, m *Maildir) (bytes, count int64) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(m.Root(), "maildirsize"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	for _, l := range lines[1:] {
		var b, c int64
		if _, err := fmt.Sscan(l, &b, &c); err != nil {
			t.Fatalf("maildirsize line %q: %v", l, err)
		}
		bytes, count = bytes+b, count+c
	}
	return bytes, count
}

// A journal full of records whose files are still to be written refuses
// the next one: that delivery is made durable and linked at once.
func TestDeferredDeliveryJournalFull(t *testing.T) {
	m := newTestMaildir(t)
	j := openTestJournal(t, filepath.Join(t.TempDir(), "delivery.journal"))
	defer j.Close()
	inbox := mustFolder(t, m, Inbox)
	var later Deferred
	body := "Subject: big\n\n" + strings.Repeat("y", 200<<10) + "\n" // under a quarter of the 1 MiB log
	var keys []string
	immediate := 0
	for i := 0; i < 8; i++ {
		key := deliverString(t, inbox, body, DeliverOptions{Journal: j, Defer: &later})
		if _, err := os.Stat(filepath.Join(m.Root(), "new", key)); err == nil {
			immediate++
		}
		keys = append(keys, key)
	}
	if immediate == 0 || immediate == len(keys) {
		t.Fatalf("%d of %d delivered at once, want some (the journal full) but not all", immediate, len(keys))
	}
	if j.Stats().Refused == 0 {
		t.Fatal("the journal refused nothing")
	}
	later.Run()
	for _, key := range keys {
		if got, err := os.ReadFile(filepath.Join(m.Root(), "new", key)); err != nil || string(got) != body {
			t.Fatalf("%s: %v, %d bytes", key, err, len(got))
		}
	}
	if j.DeferredPending() != 0 || j.DeferredFailures() != 0 {
		t.Fatalf("pending %d, failures %d", j.DeferredPending(), j.DeferredFailures())
	}
}
