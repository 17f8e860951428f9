// Command maildropcmd runs deliver.MaildropMain on its own, so that
// tools/maildrop-agent-compat.sh can compare Postern's maildrop with
// Courier's without the full postern binary. It is not installed.
package main

import (
	"os"

	"postern/mailbox/deliver"
)

func main() {
	os.Exit(deliver.MaildropMain(os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv("POSTERN_CONFIG")))
}
