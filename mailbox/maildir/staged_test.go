package maildir

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Staged messages are invisible until committed; a discarded one leaves
// nothing in tmp/, new/ or cur/.
func TestStageCommitDiscard(t *testing.T) {
	m := newTestMaildir(t)
	f, err := m.Folder(Inbox)
	if err != nil {
		t.Fatal(err)
	}
	keep, err := f.Stage(strings.NewReader("Subject: keep\r\n\r\nx\r\n"), DeliverOptions{Flags: "S"})
	if err != nil {
		t.Fatal(err)
	}
	drop, err := f.Stage(strings.NewReader("Subject: drop\r\n\r\ny\r\n"), DeliverOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if keep.Size() != 20 {
		t.Errorf("Size = %d, want 20", keep.Size())
	}
	snap, err := f.Sync(false)
	if err != nil || len(snap.Messages) != 0 {
		t.Fatalf("staged messages visible: %d %v", len(snap.Messages), err)
	}
	drop.Discard()
	key, err := keep.Commit()
	if err != nil {
		t.Fatal(err)
	}
	snap, err = f.Sync(false)
	if err != nil || len(snap.Messages) != 1 || snap.Messages[0].Key != key || snap.Messages[0].Flags != "S" {
		t.Fatalf("after commit: %+v %v", snap, err)
	}
	tmp, _ := os.ReadDir(filepath.Join(f.Path(), "tmp"))
	if len(tmp) != 0 {
		t.Errorf("tmp/ keeps %d files", len(tmp))
	}
}
