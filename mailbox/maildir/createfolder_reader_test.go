package maildir

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// A server running as root that makes a folder for an account (OpenAs:
// the webmail's Trash and Junk, an IMAP CREATE) gives it to the account,
// as maildirmake -f run by the user would: else the reader check refuses
// the folder it was just given, and every move into it fails.
func TestCreateFolderForReader(t *testing.T) {
	root, md := accountMaildir(t)
	if err := md.CreateFolder("Trash"); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, ".Trash")
	for _, p := range []string{dir, filepath.Join(dir, "tmp"), filepath.Join(dir, "new"), filepath.Join(dir, "cur"), filepath.Join(dir, maildirfolderName)} {
		st, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		if sys := st.Sys().(*syscall.Stat_t); sys.Uid != 1001 || sys.Gid != 1001 {
			t.Errorf("%s owned by %d:%d, want 1001:1001", p, sys.Uid, sys.Gid)
		}
	}
	// The account's message, moved into the folder, is read back.
	inbox, err := md.Folder(Inbox)
	if err != nil {
		t.Fatal(err)
	}
	key, err := inbox.Deliver(strings.NewReader("Subject: x\r\n\r\nbody\r\n"), DeliverOptions{})
	if err != nil {
		t.Fatal(err)
	}
	os.Chown(filepath.Join(root, "new", key), 1001, 1001) // as the delivery agent leaves it
	trash, err := md.Folder("Trash")
	if err != nil {
		t.Fatalf("the folder made for the account: %v", err)
	}
	newKey, err := inbox.CopyTo(trash, key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := trash.Sync(false); err != nil {
		t.Fatal(err)
	}
	if b, err := trash.ReadMessage(newKey, nil, 1<<10); err != nil || !strings.Contains(string(b), "body") {
		t.Fatalf("read back: %q %v", b, err)
	}
}

// A server running as root that writes a message for an account (OpenAs:
// IMAP APPEND and COPY out of a shared folder, the webmail's Sent and
// moves, SMAP ADD) gives the file to the account, as a process running as
// the account would have made it: else the reader check refuses the
// message it was just given.
func TestDeliverForReaderIsTheAccounts(t *testing.T) {
	root, md := accountMaildir(t)
	inbox, err := md.Folder(Inbox)
	if err != nil {
		t.Fatal(err)
	}
	key, err := inbox.Deliver(strings.NewReader("Subject: appended\r\n\r\nbody\r\n"), DeliverOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(root, "new", key))
	if err != nil {
		t.Fatal(err)
	}
	if sys := st.Sys().(*syscall.Stat_t); sys.Uid != 1001 || sys.Gid != 1001 {
		t.Errorf("the message is owned by %d:%d, want the account's 1001:1001", sys.Uid, sys.Gid)
	}
	f, err := inbox.Open(key)
	if err != nil {
		t.Fatalf("the message just written for the account: %v", err)
	}
	b, _ := io.ReadAll(f)
	f.Close()
	if !strings.Contains(string(b), "appended") {
		t.Fatalf("read back %q", b)
	}
}

// accountMaildir makes uid 1001's Maildir, as root, in a temporary
// directory every user may pass, and opens it for that account (OpenAs).
// Without root the test is skipped: the ownership is for a server running
// as root.
func accountMaildir(t *testing.T) (root string, md *Maildir) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the ownership is for a server running as root")
	}
	top := t.TempDir()
	os.Chmod(top, 0o755)
	os.Chmod(filepath.Dir(top), 0o755)
	root = filepath.Join(top, "alice", "Maildir")
	if err := MakeFor(root, 1001, 1001); err != nil {
		t.Fatal(err)
	}
	md, err := OpenAs(root, 1001, 1001)
	if err != nil {
		t.Fatal(err)
	}
	return root, md
}
