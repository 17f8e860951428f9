package main

// postern mailbox's folder subcommands: list, status, create, delete,
// rename, subscribe and unsubscribe.

import (
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"postern/auth"
	"postern/mailbox/maildir"
)

const listDescription = `
Lists each account's folders by the names Postern's IMAP server shows: INBOX
first, then the others sorted, UTF-8 (decoded from the modified UTF-7 the
Maildir++ directories are named in), under "INBOX." when imapnamespace is
courier. -s lists the subscribed folders instead (courierimapsubscribed),
whether they exist or not. PATTERNs (* anything, % anything but ".") keep
the names that match one. As doveadm mailbox list.`

func (c *mailboxCmd) list(args []string) int {
	fs := c.flags("[-s] [PATTERN...]", listDescription)
	subscribed := fs.Bool("s", false, "the subscribed folders")
	if code, done := c.parse(fs, args); done {
		return code
	}
	var patterns []*regexp.Regexp
	for _, p := range fs.Args() {
		patterns = append(patterns, c.names.pattern(p))
	}
	return c.run(false, func(a *auth.Account, md *maildir.Maildir) (string, error) {
		folders, err := c.folders(md)
		if *subscribed && err == nil {
			folders, err = subscribedFolders(md, c.names)
		}
		if err != nil {
			return "", err
		}
		n := 0
		for _, f := range folders {
			names := c.names.both(f)
			if len(patterns) > 0 && !slices.ContainsFunc(patterns, func(p *regexp.Regexp) bool {
				return p.MatchString(names[0]) || p.MatchString(names[1])
			}) {
				continue
			}
			n++
			if c.asJSON {
				c.emitJSON(map[string]string{"user": a.Name, "mailbox": names[0]})
			} else {
				c.emitText(a, names[0])
			}
		}
		return fmt.Sprintf("%d folders", n), nil
	})
}

// subscribedFolders are the folders courierimapsubscribed names, in
// folders' order; lines of other forms (the shared namespace) are not
// the account's own folders and are left out.
func subscribedFolders(md *maildir.Maildir, names folderNames) ([]string, error) {
	subs, err := md.Subscriptions()
	if err != nil {
		return nil, err
	}
	var folders []string
	inbox := false
	for _, s := range subs {
		s = canonicalInboxName(s)
		switch {
		case s == "INBOX":
			inbox = true
		case strings.HasPrefix(s, "INBOX.") && maildir.ValidFolderName(s[6:]) == nil:
			folders = append(folders, s[6:])
		}
	}
	if inbox {
		folders = append(folders, maildir.Inbox)
	}
	return names.sorted(folders), nil
}

// folders are the account's folders: INBOX first, then the others by
// the names IMAP shows.
func (c *mailboxCmd) folders(md *maildir.Maildir) ([]string, error) {
	all, err := md.Folders()
	if err != nil {
		return nil, err
	}
	return c.names.sorted(all), nil
}

// sorted sorts folders in place, INBOX first, then by the names IMAP
// shows (the Maildir++ names sort by their modified UTF-7).
func (n folderNames) sorted(folders []string) []string {
	slices.SortFunc(folders, func(a, b string) int {
		switch {
		case a == b:
			return 0
		case a == maildir.Inbox:
			return -1
		case b == maildir.Inbox:
			return 1
		}
		return strings.Compare(n.both(a)[1], n.both(b)[1])
	})
	return slices.Compact(folders)
}

// statusFields are the fields status knows, in the order it prints them.
var statusFields = []string{"messages", "recent", "unseen", "vsize", "uidnext", "uidvalidity"}

const statusDescription = `
Prints the status of each MAILBOX (a name or a pattern: * anything, % anything
but "."), as doveadm mailbox status does: FIELDS is one argument, the fields
separated by spaces or commas, of messages, recent (still in new/: no IMAP
session has seen them), unseen, vsize (the size in bytes with CRLF line ends,
as IMAP counts it), uidnext, uidvalidity, or all. A line per folder: the name,
then field=value pairs. -t sums messages, recent, unseen and vsize over the
folders instead. A folder named without wildcards must exist.`

func (c *mailboxCmd) statusCmd(args []string) int {
	fs := c.flags("[-t] FIELDS MAILBOX...", statusDescription)
	totals := fs.Bool("t", false, "one line per account: the sums over the folders")
	if code, done := c.parse(fs, args); done {
		return code
	}
	if fs.NArg() < 2 {
		return c.usageError("want FIELDS and at least one MAILBOX")
	}
	var fields []string
	for f := range strings.FieldsFuncSeq(strings.ToLower(fs.Arg(0)), func(r rune) bool { return r == ' ' || r == ',' }) {
		switch {
		case f == "all":
			fields = append(fields, statusFields...)
		case !slices.Contains(statusFields, f):
			return c.usageError("unknown status field %s (known: %s, all)", quoteWord(f), strings.Join(statusFields, " "))
		case *totals && (f == "uidnext" || f == "uidvalidity"):
			return c.usageError("-t sums messages, recent, unseen and vsize; not %s", f)
		default:
			fields = append(fields, f)
		}
	}
	if *totals {
		fields = slices.DeleteFunc(fields, func(f string) bool { return f == "uidnext" || f == "uidvalidity" })
	}
	if len(fields) == 0 {
		return c.usageError("no status fields")
	}
	sel, ok := c.folderSelection(fs.Args()[1:])
	if !ok {
		return 64
	}
	return c.run(false, func(a *auth.Account, md *maildir.Maildir) (string, error) {
		folders, err := sel.folders(md, c.names)
		if err != nil && len(folders) == 0 {
			return "", err
		}
		sum := map[string]int64{}
		for _, folder := range folders {
			st, serr := folderStatus(md, folder, fields)
			if serr != nil {
				err = firstErr(err, serr)
				continue
			}
			if *totals {
				for k, v := range st {
					sum[k] += v
				}
				continue
			}
			c.emitStatus(a, c.names.display(folder), fields, st)
		}
		if *totals {
			c.emitStatus(a, "", fields, sum)
		}
		return fmt.Sprintf("%d folders", len(folders)), err
	})
}

// firstErr keeps the first error.
func firstErr(first, next error) error {
	if first != nil {
		return first
	}
	return next
}

// emitStatus prints one status line ("INBOX messages=3 unseen=1"), or its
// JSON object; mailbox is empty for -t's sums.
func (c *mailboxCmd) emitStatus(a *auth.Account, mailbox string, fields []string, st map[string]int64) {
	if c.asJSON {
		obj := map[string]any{"user": a.Name}
		if mailbox != "" {
			obj["mailbox"] = mailbox
		}
		for _, f := range fields {
			obj[f] = st[f]
		}
		c.emitJSON(obj)
		return
	}
	var parts []string
	if mailbox != "" {
		parts = append(parts, mailbox)
	}
	for _, f := range fields {
		parts = append(parts, f+"="+strconv.FormatInt(st[f], 10))
	}
	c.emitText(a, strings.Join(parts, " "))
}

// folderSelection is the MAILBOX arguments of status: patterns, and
// names that must exist.
type folderSelection struct {
	patterns []*regexp.Regexp
	literal  []string // Maildir++ names
}

// folderSelection checks the MAILBOX arguments.
func (c *mailboxCmd) folderSelection(args []string) (folderSelection, bool) {
	var sel folderSelection
	for _, a := range args {
		if strings.ContainsAny(a, "*%") {
			sel.patterns = append(sel.patterns, c.names.pattern(a))
			continue
		}
		f, err := c.names.folder(a)
		if err != nil {
			c.usageError("%v", err)
			return sel, false
		}
		sel.literal = append(sel.literal, f)
	}
	return sel, true
}

// folders are the account's folders the selection names, in the order of
// folders; the error is for a named folder that does not exist.
func (sel folderSelection) folders(md *maildir.Maildir, names folderNames) ([]string, error) {
	all, err := md.Folders()
	if err != nil {
		return nil, err
	}
	all = names.sorted(all)
	var out []string
	for _, f := range all {
		both := names.both(f)
		if slices.Contains(sel.literal, f) || slices.ContainsFunc(sel.patterns, func(p *regexp.Regexp) bool {
			return p.MatchString(both[0]) || p.MatchString(both[1])
		}) {
			out = append(out, f)
		}
	}
	for _, f := range sel.literal {
		if !slices.Contains(all, f) {
			err = firstErr(err, fmt.Errorf("%s: %w", names.display(f), maildir.ErrNoFolder))
		}
	}
	return out, err
}

// folderStatus counts one folder's fields. The Sync leaves new/ alone,
// as IMAP STATUS does (a move to cur/ would take \Recent from the next
// session), and numbers new messages under the folder's lock as every
// Sync does.
func folderStatus(md *maildir.Maildir, folder string, fields []string) (map[string]int64, error) {
	f, err := md.Folder(folder)
	if err != nil {
		return nil, err
	}
	snap, err := f.Sync(false)
	if err != nil {
		return nil, err
	}
	st := map[string]int64{
		"messages":    int64(len(snap.Messages)),
		"recent":      int64(len(snap.NewUIDs)),
		"uidnext":     int64(snap.UIDNext),
		"uidvalidity": int64(snap.UIDValidity),
	}
	for i := range snap.Messages {
		m := &snap.Messages[i]
		if strings.IndexByte(m.Flags, maildir.FlagSeen) < 0 {
			st["unseen"]++
		}
		if !slices.Contains(fields, "vsize") {
			continue
		}
		n, err := virtualSize(f, m)
		if errors.Is(err, maildir.ErrNoMessage) {
			continue // expunged meanwhile
		}
		if err != nil {
			return nil, err
		}
		st["vsize"] += n
	}
	return st, nil
}

// virtualSize is a message's size with CRLF line ends (IMAP's
// RFC822.SIZE): Dovecot's ",W=" when the name has it, else counted.
func virtualSize(f *maildir.Folder, m *maildir.Message) (int64, error) {
	if m.VirtualSize > 0 {
		return m.VirtualSize, nil
	}
	file, err := f.Open(m.Key)
	if err != nil {
		return 0, err
	}
	defer file.Close()
	var n int64
	var prev byte
	buf := make([]byte, 64<<10)
	for {
		k, err := file.Read(buf)
		for _, b := range buf[:k] {
			if b == '\n' && prev != '\r' {
				n++ // the CR IMAP adds
			}
			prev = b
		}
		n += int64(k)
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return 0, fmt.Errorf("%s: %w", file.Name(), err)
		}
	}
}

const createDescription = `
Makes each folder NAME (a Maildir++ directory with tmp/, new/, cur/ and a
maildirfolder file, owned by the account), as IMAP CREATE does; -s subscribes
to it too. An account without a Maildir gets one first. Names are given as
IMAP shows them ("Sent", or "INBOX.Sent" in Courier's namespace; either is
taken) in UTF-8; "/", control characters, empty components, "..", wildcards
and INBOX are refused. A folder that exists already is an error (exit 1).`

func (c *mailboxCmd) create(args []string) int {
	fs := c.flags("[-s] NAME...", createDescription)
	subscribe := fs.Bool("s", false, "subscribe to the new folders too")
	if code, done := c.parse(fs, args); done {
		return code
	}
	if fs.NArg() == 0 {
		return c.usageError("name the folders to create")
	}
	if c.refuseWildcards(fs.Args()...) {
		return 64
	}
	folders, ok := c.parseFolderArgs(fs.Args(), "INBOX always exists")
	if !ok {
		return 64
	}
	return c.onFolders(true, folders, "created", func(md *maildir.Maildir, f string) (int, error) {
		err := md.CreateFolder(f)
		if err == nil && *subscribe {
			err = md.Subscribe(subscriptionName(f), true)
		}
		return 1, err
	})
}

const deleteDescription = `
Removes each folder NAME with its messages, as IMAP DELETE does; its
children stay (Maildir++ folders are independent directories) unless -r
removes them too. -e removes only folders without messages (with -r: all of
them must be empty). -s also takes them off the subscriptions. INBOX cannot
be deleted. The quota (maildirsize) is lowered by the messages removed.`

func (c *mailboxCmd) delete(args []string) int {
	fs := c.flags("[-r] [-e] [-s] NAME...", deleteDescription)
	recursive := fs.Bool("r", false, "delete the folders' children too")
	onlyEmpty := fs.Bool("e", false, "delete only folders without messages")
	unsubscribe := fs.Bool("s", false, "unsubscribe from them too")
	if code, done := c.parse(fs, args); done {
		return code
	}
	if fs.NArg() == 0 {
		return c.usageError("name the folders to delete")
	}
	folders, ok := c.parseFolderArgs(fs.Args(), "INBOX cannot be deleted")
	if !ok {
		return 64
	}
	return c.onFolders(false, folders, "deleted", func(md *maildir.Maildir, f string) (int, error) {
		return c.deleteFolder(md, f, *recursive, *onlyEmpty, *unsubscribe)
	})
}

// deleteFolder deletes one folder and, with recursive, its children
// (deepest first), after checking that all are empty when onlyEmpty.
func (c *mailboxCmd) deleteFolder(md *maildir.Maildir, folder string, recursive, onlyEmpty, unsubscribe bool) (int, error) {
	all, err := md.Folders()
	if err != nil {
		return 0, err
	}
	var doomed []string
	for _, f := range all {
		if f == folder || (recursive && strings.HasPrefix(f, folder+".")) {
			doomed = append(doomed, f)
		}
	}
	if len(doomed) == 0 {
		return 0, maildir.ErrNoFolder
	}
	// Children before parents, so that a failure leaves no orphan.
	slices.SortFunc(doomed, func(a, b string) int { return len(b) - len(a) })
	if onlyEmpty {
		for _, f := range doomed {
			if n, err := messageCount(md, f); err != nil {
				return 0, err
			} else if n > 0 {
				return 0, fmt.Errorf("%s holds %d messages: %w", c.names.display(f), n, errNotEmpty)
			}
		}
	}
	deleted := 0
	for _, f := range doomed {
		if err := md.DeleteFolder(f); err != nil {
			return deleted, err
		}
		deleted++
		if unsubscribe {
			if err := md.Subscribe(subscriptionName(f), false); err != nil {
				return deleted, err
			}
		}
	}
	return deleted, nil
}

// messageCount is how many messages a folder holds now.
func messageCount(md *maildir.Maildir, folder string) (int, error) {
	f, err := md.Folder(folder)
	if err != nil {
		return 0, err
	}
	snap, err := f.Sync(false)
	if err != nil {
		return 0, err
	}
	return len(snap.Messages), nil
}

const renameDescription = `
Renames the folder OLD to NEW, and its children with it ("Work" to "Old"
moves "Work.2024" to "Old.2024"), as IMAP RENAME does; UIDs and flags stay.
-s moves the subscriptions along. INBOX cannot be renamed (move its
messages instead: postern mailbox move NEW mailbox INBOX all).`

func (c *mailboxCmd) rename(args []string) int {
	fs := c.flags("[-s] OLD NEW", renameDescription)
	subscriptions := fs.Bool("s", false, "rename the subscriptions too")
	if code, done := c.parse(fs, args); done {
		return code
	}
	if fs.NArg() != 2 {
		return c.usageError("want OLD and NEW")
	}
	if c.refuseWildcards(fs.Arg(1)) {
		return 64
	}
	folders, ok := c.parseFolderArgs(fs.Args(), "INBOX cannot be renamed; move its messages: postern mailbox move NEW mailbox INBOX all")
	if !ok {
		return 64
	}
	from, to := folders[0], folders[1]
	return c.run(false, func(a *auth.Account, md *maildir.Maildir) (string, error) {
		before, err := md.Folders()
		if err != nil {
			return "", err
		}
		if err := md.RenameFolder(from, to); err != nil {
			return "", err
		}
		if !*subscriptions {
			return "renamed", nil
		}
		for _, f := range before {
			if f != from && !strings.HasPrefix(f, from+".") {
				continue
			}
			subs, err := md.Subscriptions()
			if err != nil {
				return "renamed", err
			}
			if !slices.Contains(subs, subscriptionName(f)) {
				continue
			}
			if err := md.Subscribe(subscriptionName(to+f[len(from):]), true); err != nil {
				return "renamed", err
			}
			if err := md.Subscribe(subscriptionName(f), false); err != nil {
				return "renamed", err
			}
		}
		return "renamed", nil
	})
}

const subscribeDescription = `
subscribe adds each folder NAME to the account's subscriptions
(courierimapsubscribed, in Courier's "INBOX.Name" form, as Postern's IMAP
server keeps them); the folder must exist. unsubscribe takes each NAME off.`

func (c *mailboxCmd) subscribe(args []string) int {
	fs := c.flags("NAME...", subscribeDescription)
	if code, done := c.parse(fs, args); done {
		return code
	}
	if fs.NArg() == 0 {
		return c.usageError("name the folders")
	}
	folders, ok := c.parseFolderArgs(fs.Args(), "")
	if !ok {
		return 64
	}
	on := c.sub == "subscribe"
	return c.onFolders(on, folders, c.sub+"d", func(md *maildir.Maildir, f string) (int, error) {
		if on {
			if _, err := md.Folder(f); err != nil {
				return 0, err
			}
		}
		return 1, md.Subscribe(subscriptionName(f), on)
	})
}

// folderOp does a subcommand's work on one folder of an account and says
// how many folders it changed.
type folderOp func(md *maildir.Maildir, folder string) (int, error)

// onFolders runs op on each folder of every account; an account's error
// is its first folder's that failed, and the progress line counts the
// folders done.
func (c *mailboxCmd) onFolders(create bool, folders []string, done string, op folderOp) int {
	return c.run(create, func(a *auth.Account, md *maildir.Maildir) (string, error) {
		var first error
		n := 0
		for _, f := range folders {
			k, err := op(md, f)
			n += k
			if err != nil {
				first = firstErr(first, fmt.Errorf("%s %s: %w", c.sub, c.names.display(f), err))
			}
		}
		return fmt.Sprintf("%d %s", n, done), first
	})
}
