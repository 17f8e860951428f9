package maildir

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Removing messages that are still in new/ (RENAME INBOX moves them out
// without a Sync that moves new/ to cur/) must show in the next Sync even
// when cur/'s listing is reused: cur/'s time does not change.
func TestSyncAfterRemoveFromNew(t *testing.T) {
	m := newTestMaildir(t)
	for i := 0; i < 2; i++ {
		if _, err := m.Deliver(Inbox, strings.NewReader("Subject: x\r\n\r\nbody\r\n"), DeliverOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// cur/ last changed long ago: its listing is trusted and reused.
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(filepath.Join(m.Root(), "cur"), old, old); err != nil {
		t.Fatal(err)
	}
	f, err := m.Folder(Inbox)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ { // the second Sync reuses the first's listing
		snap, err := f.Sync(false)
		if err != nil || len(snap.Messages) != 2 {
			t.Fatalf("before: %v, %v", snap, err)
		}
	}
	snap, _ := f.Sync(false)
	for _, msg := range snap.Messages {
		if err := f.Remove(msg.Key); err != nil {
			t.Fatal(err)
		}
	}
	snap, err = f.Sync(false)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Messages) != 0 {
		t.Fatalf("Sync after removing both messages from new/ shows %d", len(snap.Messages))
	}
}
