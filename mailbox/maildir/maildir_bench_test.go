package maildir

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkDeliver measures one durable delivery of a 4 KiB message:
// write to tmp/, fsync, link into new/, fsync the directory.
func BenchmarkDeliver(b *testing.B) {
	m := newBenchMaildir(b)
	inbox, _ := m.Folder(Inbox)
	msg := bytes.Repeat([]byte("0123456789abcde\n"), 256) // 4096 bytes
	b.SetBytes(int64(len(msg)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := inbox.Deliver(bytes.NewReader(msg), DeliverOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDeliverJournal is BenchmarkDeliver through the delivery
// journal: the message and its name are flushed by one log write, the
// file itself by the checkpoints.
func BenchmarkDeliverJournal(b *testing.B) {
	m := newBenchMaildir(b)
	inbox, _ := m.Folder(Inbox)
	j, err := OpenJournal(filepath.Join(b.TempDir(), "delivery.journal"), JournalOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	msg := bytes.Repeat([]byte("0123456789abcde\n"), 256) // 4096 bytes
	b.SetBytes(int64(len(msg)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := inbox.Deliver(bytes.NewReader(msg), DeliverOptions{Journal: j}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSync measures a warm Sync of a 10,000-message folder: the UID
// database is current, so Sync lists the directories and builds the
// snapshot without locking or writing.
func BenchmarkSync(b *testing.B) {
	m := newBenchMaildir(b)
	inbox, _ := m.Folder(Inbox)
	for i := 0; i < 10000; i++ {
		name := fmt.Sprintf("%d.M%dP1Q%d.bench,S=4096:2,S", 1700000000+i/100, i%100, i)
		if err := os.WriteFile(filepath.Join(inbox.Path(), "cur", name), nil, 0o600); err != nil {
			b.Fatal(err)
		}
	}
	if snap, err := inbox.Sync(true); err != nil || len(snap.Messages) != 10000 {
		b.Fatalf("initial sync: %v", err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		snap, err := inbox.Sync(true)
		if err != nil || len(snap.Messages) != 10000 {
			b.Fatalf("sync: %d messages, %v", len(snap.Messages), err)
		}
	}
}

func newBenchMaildir(b *testing.B) *Maildir {
	b.Helper()
	root := filepath.Join(b.TempDir(), "Maildir")
	if err := Make(root); err != nil {
		b.Fatal(err)
	}
	m, err := OpenWithOptions(root, Options{Hostname: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	return m
}
