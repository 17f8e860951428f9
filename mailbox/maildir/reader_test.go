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

// TestReaderServesOnlyWhatTheUserCouldRead: a server running as root
// reads uid 1001's maildir for them (OpenAs). Their own message is
// served; what they planted is not: a link to a root-only file, a link to
// another user's message, a FIFO, a root-only file dropped in their cur/;
// nor a maildir root or cur/ that is a link into another user's 0700
// maildir.
func TestReaderServesOnlyWhatTheUserCouldRead(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the guard is for a server running as root")
	}
	top := t.TempDir()
	os.Chmod(top, 0o755)
	os.Chmod(filepath.Dir(top), 0o755) // t.TempDir's own parent is 0700
	mk := func(path string, uid int) {
		t.Helper()
		if err := MakeFor(path, uid, uid); err != nil {
			t.Fatal(err)
		}
	}
	alice := filepath.Join(top, "alice", "Maildir")
	bob := filepath.Join(top, "bob", "Maildir")
	mk(alice, 1001)
	mk(bob, 1002)
	if st, _ := os.Stat(filepath.Join(top, "alice")); st.Sys().(*syscall.Stat_t).Uid != 1001 {
		t.Fatal("MakeFor did not give the parent it made to the user")
	}
	write := func(path, body string, uid int, mode os.FileMode) {
		t.Helper()
		if err := os.WriteFile(path, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
		os.Chown(path, uid, uid)
		os.Chmod(path, mode)
	}
	write(filepath.Join(alice, "cur", "1.own:2,"), "Subject: mine\r\n\r\nalice's own\r\n", 1001, 0o600)
	secret := filepath.Join(top, "secret")
	write(secret, "root's secret\n", 0, 0o600)
	write(filepath.Join(bob, "cur", "9.bob:2,"), "bob's private mail\n", 1002, 0o600)
	os.Symlink(secret, filepath.Join(alice, "cur", "2.secret:2,"))
	os.Symlink(filepath.Join(bob, "cur", "9.bob:2,"), filepath.Join(alice, "cur", "3.bob:2,"))
	syscall.Mkfifo(filepath.Join(alice, "cur", "4.fifo:2,"), 0o644)
	os.Chown(filepath.Join(alice, "cur", "4.fifo:2,"), 1001, 1001)
	write(filepath.Join(alice, "cur", "5.dropped:2,"), "root-only file in alice's cur\n", 0, 0o600)

	md, err := OpenAs(alice, 1001, 1001)
	if err != nil {
		t.Fatal(err)
	}
	inbox, err := md.Folder(Inbox)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := inbox.Sync(false)
	if err != nil {
		t.Fatal(err)
	}
	served := map[string]bool{}
	for _, m := range snap.Messages {
		f, err := inbox.Open(m.Key)
		if err == nil {
			f.Close()
			served[m.Key] = true
		} else if !errors.Is(err, ErrNotReadable) {
			t.Errorf("%s: %v, want ErrNotReadable", m.Key, err)
		}
		if _, err := inbox.ReadMessage(m.Key, nil, 1<<20); (err == nil) != served[m.Key] {
			t.Errorf("%s: ReadMessage and Open disagree: %v", m.Key, err)
		}
	}
	if len(served) != 1 || !served["1.own"] {
		t.Errorf("served %v, want only alice's own message", served)
	}

	// Her maildir's root, or its cur/, as a link into bob's.
	evil := filepath.Join(top, "mallory")
	os.Mkdir(evil, 0o755)
	os.Chown(evil, 1001, 1001)
	os.Symlink(bob, filepath.Join(evil, "Maildir"))
	if _, err := OpenAs(filepath.Join(evil, "Maildir"), 1001, 1001); !errors.Is(err, ErrNotReadable) {
		t.Errorf("a maildir linked to bob's opened for alice: %v", err)
	}
	os.Rename(filepath.Join(alice, "cur"), filepath.Join(alice, "cur.real"))
	os.Symlink(filepath.Join(bob, "cur"), filepath.Join(alice, "cur"))
	md2, err := OpenAs(alice, 1001, 1001)
	if err == nil {
		if _, err = md2.Folder(Inbox); err == nil {
			t.Error("alice's cur/ linked to bob's was opened for her")
		}
	}
	if !errors.Is(err, ErrNotReadable) {
		t.Errorf("cur/ linked to bob's: %v, want ErrNotReadable", err)
	}

	// Not root, or reading root's own mail: the kernel decides, no guard.
	if ReaderFor(0, 0) != nil {
		t.Error("a reader for root's own mail")
	}
}

// TestFIFOInMaildirIsRefused: a FIFO in a maildir (anyone's, read by
// anyone) is refused at once instead of blocking the reader for ever.
func TestFIFOInMaildirIsRefused(t *testing.T) {
	root := filepath.Join(t.TempDir(), "Maildir")
	if err := Make(root); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(root, "cur", "1.fifo:2,"), 0o600); err != nil {
		t.Fatal(err)
	}
	md, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	inbox, _ := md.Folder(Inbox)
	if _, err := inbox.Sync(false); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := inbox.Open("1.fifo")
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, ErrNotReadable) {
			t.Fatalf("a FIFO opened as a message: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("opening a FIFO in the maildir blocks")
	}
}

// TestReaderDeliversOnlyWhereTheUserCouldWrite: root delivering for uid
// 1001 (the delivery agent) writes into their own tmp/ and new/, but not
// into a system directory their new/ or tmp/ was linked to.
func TestReaderDeliversOnlyWhereTheUserCouldWrite(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the guard is for a process running as root")
	}
	top := t.TempDir()
	os.Chmod(top, 0o755)
	os.Chmod(filepath.Dir(top), 0o755)
	root := filepath.Join(top, "alice", "Maildir")
	if err := MakeFor(root, 1001, 1001); err != nil {
		t.Fatal(err)
	}
	md, err := OpenAs(root, 1001, 1001)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := md.Deliver(Inbox, strings.NewReader("Subject: fine\n\nok\n"), DeliverOptions{}); err != nil {
		t.Fatalf("a delivery into the user's own maildir: %v", err)
	}
	system := filepath.Join(top, "system") // root's, 0755, as /etc/cron.d
	os.Mkdir(system, 0o755)
	for _, sub := range []string{"new", "tmp"} {
		real := filepath.Join(root, sub+".real")
		os.Rename(filepath.Join(root, sub), real)
		os.Symlink(system, filepath.Join(root, sub))
		md, err := OpenAs(root, 1001, 1001)
		if err == nil {
			_, err = md.Deliver(Inbox, strings.NewReader("Subject: evil\n\n* * * * * root id\n"), DeliverOptions{})
		}
		if !errors.Is(err, ErrNotReadable) {
			t.Errorf("%s/ linked to a root directory: %v, want ErrNotReadable", sub, err)
		}
		if left, _ := os.ReadDir(system); len(left) != 0 {
			t.Errorf("root wrote %d files into the directory %s/ was linked to", len(left), sub)
		}
		os.Remove(filepath.Join(root, sub))
		os.Rename(real, filepath.Join(root, sub))
	}
}
