package maildir

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// A server running as root that writes a message for an account (OpenAs:
// IMAP APPEND and COPY out of a shared folder, the webmail's Sent and
// moves, SMAP ADD) gives the file to the account, as a process running as
// the account would have made it: else the reader check refuses the
// message it was just given.
func TestDeliverForReaderIsTheAccounts(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the ownership is for a server running as root")
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
