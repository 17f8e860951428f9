package main

import (
	"fmt"

	"postern/mailbox/acl"
	"postern/mailbox/maildir"
)

func runMaildirkw(e *env, args []string) int {
	if wantsHelp(args) {
		fmt.Fprint(e.stdout, `Usage: maildirkw [-c] [-l] [-a | -r] MAILDIR MESSAGE [KEYWORD...]
       maildirkw [-c] -L MAILDIR

Sets (or with -a adds, with -r removes) a message's IMAP keywords in the
folder's courierimapkeywords/, as Courier's maildirkw(1); -L lists every
message's keywords. -c: keywords are case-sensitive. See docs/maildirkw.md.
`)
		return 0
	}
	return maildir.MaildirkwMain(args, e.stdout, e.stderr)
}

func runMaildiracl(e *env, args []string) int {
	if wantsHelp(args) {
		fmt.Fprint(e.stdout, `Usage: maildiracl -list MAILDIR INBOX[.FOLDER]
       maildiracl -set MAILDIR INBOX[.FOLDER] [-]IDENTIFIER [+|-]RIGHTS
       maildiracl -delete MAILDIR INBOX[.FOLDER] [-]IDENTIFIER
       maildiracl -compute MAILDIR INBOX[.FOLDER] IDENTIFIER...
       maildiracl -reset MAILDIR

Shows and changes a folder's IMAP access control list in Courier's
courierimapacl files, as Courier's maildiracl(1). See docs/maildiracl.md.
`)
		return 0
	}
	return acl.MaildiraclMain(args, e.stdout, e.stderr)
}
