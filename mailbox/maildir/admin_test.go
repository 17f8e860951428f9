package maildir

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A message's save date is when it came into the folder: a copy made
// later has a later one, while its internal date (mtime) stays the
// original's.
func TestSaveDate(t *testing.T) {
	root := filepath.Join(t.TempDir(), "Maildir")
	if err := Make(root); err != nil {
		t.Fatal(err)
	}
	md, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	if err := md.CreateFolder("Archive"); err != nil {
		t.Fatal(err)
	}
	inbox, _ := md.Folder(Inbox)
	archive, _ := md.Folder("Archive")
	arrived := time.Now().Add(-48 * time.Hour).Truncate(time.Second)
	before := time.Now().Add(-time.Second)
	key, err := inbox.Deliver(strings.NewReader("Subject: s\n\nbody\n"), DeliverOptions{InternalDate: arrived})
	if err != nil {
		t.Fatal(err)
	}
	saved, err := inbox.SaveDate(key)
	if err != nil {
		t.Fatal(err)
	}
	if saved.Before(before) || saved.After(time.Now().Add(time.Second)) {
		t.Errorf("save date %v, want about now", saved)
	}
	time.Sleep(20 * time.Millisecond)
	copied, err := inbox.CopyTo(archive, key)
	if err != nil {
		t.Fatal(err)
	}
	copySaved, err := archive.SaveDate(copied)
	if err != nil {
		t.Fatal(err)
	}
	if !copySaved.After(saved) {
		t.Errorf("the copy's save date %v is not after the original's %v", copySaved, saved)
	}
	if d, err := archive.InternalDate(copied); err != nil || !d.Equal(arrived) {
		t.Errorf("the copy's internal date %v %v, want %v", d, err, arrived)
	}
	if err := inbox.Remove(key); err != nil {
		t.Fatal(err)
	}
	if _, err := inbox.SaveDate(key); !errors.Is(err, ErrNoMessage) {
		t.Errorf("a removed message's save date: %v, want ErrNoMessage", err)
	}
}

// Root working on an account's Maildir (OpenAs) gives the account the
// state files it wrote, and leaves other owners' files alone.
func TestGiveState(t *testing.T) {
	root, md := accountMaildir(t)
	if err := md.CreateFolder("Work"); err != nil {
		t.Fatal(err)
	}
	work, _ := md.Folder("Work")
	key, err := work.Deliver(strings.NewReader("Subject: w\n\nbody\n"), DeliverOptions{Keywords: []string{"$Label1"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := work.Sync(false); err != nil { // writes courierimapuiddb as root
		t.Fatal(err)
	}
	if err := work.SetFlags(key, "S", []string{"$Label1", "todo"}); err != nil {
		t.Fatal(err)
	}
	if err := md.Subscribe("INBOX.Work", true); err != nil {
		t.Fatal(err)
	}
	if err := md.SetQuota(Quota{Bytes: 100000}); err != nil {
		t.Fatal(err)
	}
	// A file of another user stays theirs.
	other := filepath.Join(root, ".Work", keywordsName)
	os.Chown(other, 1002, 1002)

	if err := md.GiveState(); err != nil {
		t.Fatal(err)
	}
	owner := func(p string) uint32 {
		st, err := os.Lstat(p)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		return st.Sys().(*syscall.Stat_t).Uid
	}
	for _, p := range []string{
		filepath.Join(root, subscribedName), filepath.Join(root, subscribedLock), filepath.Join(root, maildirsizeName),
		filepath.Join(root, ".Work", uidDBName), filepath.Join(root, ".Work", uidLockName), filepath.Join(root, ".Work", courierKwDir),
	} {
		if u := owner(p); u != 1001 {
			t.Errorf("%s owned by %d, want the account's 1001", p, u)
		}
	}
	entries, _ := os.ReadDir(filepath.Join(root, ".Work", courierKwDir))
	for _, e := range entries {
		if u := owner(filepath.Join(root, ".Work", courierKwDir, e.Name())); u != 1001 {
			t.Errorf("courierimapkeywords/%s owned by %d", e.Name(), u)
		}
	}
	if u := owner(other); u != 1002 {
		t.Errorf("another user's file was taken: owned by %d", u)
	}
	if err := md.GiveState("../x"); !errors.Is(err, ErrBadFolderName) {
		t.Errorf("a hostile folder name: %v", err)
	}
}
