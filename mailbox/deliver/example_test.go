package deliver_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"postern/auth"
	"postern/mailbox/deliver"
)

// The gateway's local delivery: one Agent for the server, one Deliver call
// per local recipient.
func ExampleAgent_Deliver() {
	home, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(home)
	agent, err := deliver.New(deliver.Options{Logger: slog.New(slog.DiscardHandler), Sendmail: []string{"/usr/sbin/sendmail"}})
	if err != nil {
		panic(err)
	}
	acct := &auth.Account{Name: "alice@example.test", UID: os.Geteuid(), GID: os.Getegid(), Home: home}
	out := agent.Deliver(context.Background(), deliver.Request{
		Account:   acct,
		Sender:    "bob@example.org",
		Recipient: "alice@example.test",
		Message:   strings.NewReader("Subject: hi\n\nhello\n"),
		AddTrace:  true,
	})
	fmt.Println(out.Status, out.ExitCode, out.Delivered[0] == filepath.Join(home, "Maildir"))
	// Output: ok 0 true
}
