package maildir_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"postern/mailbox/maildir"
)

// Example shows the life of a message as the SMTP, IMAP and POP3 servers
// use the package.
func Example() {
	dir, _ := os.MkdirTemp("", "maildir-example")
	defer os.RemoveAll(dir)
	root := filepath.Join(dir, "Maildir")
	_ = maildir.Make(root)
	m, _ := maildir.Open(root)
	_ = m.SetQuota(maildir.Quota{Bytes: 1000000, Messages: 1000})

	key, _ := m.Deliver(maildir.Inbox, strings.NewReader("Subject: hi\r\n\r\nhello\r\n"), maildir.DeliverOptions{})
	inbox, _ := m.Folder(maildir.Inbox)
	snap, _ := inbox.Sync(true) // IMAP SELECT: new/ moves to cur/, UIDs assigned
	_ = inbox.SetFlags(key, "S", []string{"$Important"})
	snap, _ = inbox.Sync(true)
	msg := snap.Messages[0]
	fmt.Println(msg.UID, msg.Flags, msg.Keywords, msg.Size, snap.UIDNext)
	_, used, _ := m.Quota()
	fmt.Println(used)
	// Output:
	// 1 S [$Important] 22 2
	// 22S,1C
}
