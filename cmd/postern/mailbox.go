package main

// postern mailbox: doveadm's mailbox, expunge, search, fetch, move and
// flags commands for accounts' Maildir++ mailboxes. Every change goes
// through mailbox/maildir, the code the IMAP server uses (Sync's UID
// assignment under the folder's lock, Remove's maildirsize line,
// CopyTo's hard link), so a running server's sessions see it at their
// next rescan as they see another session's or Courier's changes.

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"postern/auth"
	"postern/auth/authtool"
	"postern/mailbox/maildir"
	"postern/policy"
)

// mailboxClock is the time queries count intervals from; tests move it.
var mailboxClock = time.Now

// mailboxCmd is one run of a postern mailbox subcommand.
type mailboxCmd struct {
	e       *env
	sub     string
	all     bool
	users   accountList
	asJSON  bool
	verbose bool
	names   folderNames
	now     time.Time

	status  int // the exit status so far
	records int // records printed so far
}

// mailboxSubcommands are the subcommands, in the order the usage lists them.
var mailboxSubcommands = []struct {
	name string
	run  func(c *mailboxCmd, args []string) int
}{
	{"list", (*mailboxCmd).list},
	{"status", (*mailboxCmd).statusCmd},
	{"create", (*mailboxCmd).create},
	{"delete", (*mailboxCmd).delete},
	{"rename", (*mailboxCmd).rename},
	{"subscribe", (*mailboxCmd).subscribe},
	{"unsubscribe", (*mailboxCmd).subscribe},
	{"search", (*mailboxCmd).search},
	{"fetch", (*mailboxCmd).fetch},
	{"expunge", (*mailboxCmd).expunge},
	{"move", (*mailboxCmd).move},
	{"flags", (*mailboxCmd).flagsCmd},
}

const mailboxUsage = `Usage: postern mailbox SUBCOMMAND (-A | -u USER[,USER...] | -u 'PATTERN') [-v] [--json] [OPTIONS] ARGS

Looks after the folders and messages of accounts' Maildir++ mailboxes, as
doveadm's mailbox, expunge, search, fetch, move and flags commands do for
Dovecot. Options come before the arguments.

  list [-s] [PATTERN...]                folders, as IMAP names them (-s: the subscribed)
  status [-t] FIELDS MAILBOX...         messages recent unseen vsize uidnext uidvalidity, or all
  create [-s] NAME...                   make folders (-s: and subscribe to them)
  delete [-r] [-e] [-s] NAME...         remove folders (-r: with their children, -e: only empty ones)
  rename [-s] OLD NEW                   rename a folder and its children
  subscribe NAME...                     add folders to the subscriptions
  unsubscribe NAME...                   take folders off them
  search QUERY                          the mailbox and UID of each message QUERY matches
  fetch FIELDS QUERY                    fields of those messages (uid flags size date.saved hdr.subject text ...)
  expunge QUERY                         remove those messages for good (QUERY must name a mailbox)
  move DEST QUERY                       move them into the folder DEST (QUERY must name a mailbox)
  flags add|remove|replace FLAGS QUERY  change their flags and keywords ('\Seen $Junk')

Accounts: -u USER[,USER...] (repeatable), -u 'PATTERN' (shell wildcards over
every account), or -A for every account of every authentication module. With
more than one account, each output line starts with the account and a tab.

QUERY is doveadm-search-query(7)'s words: mailbox NAME (wildcards * and %),
all, seen, unseen, flagged, deleted, answered, draft (and un...), keyword KW,
before|since|savedbefore|savedsince 2026-01-31|30d|12h|2w, larger|smaller
10k|2M, header NAME TEXT, from|to|cc|bcc|subject TEXT (case-insensitive, RFC
2047 decoded), uid 1,5:9,20:*; several keys must all match; KEY OR KEY, NOT
KEY, and ( ... ) as separate words.

Exit status: 0; 1 when an account refused the operation (no such mailbox,
one that exists already, one that is not empty); 64 for a usage error (bad
names and queries are refused before any account is touched); 67 for an
account that does not exist; 75 for a temporary failure (the authentication
backend, an I/O error, over quota). 'postern mailbox SUBCOMMAND --help'
describes a subcommand; docs/mailbox.md has the details.
`

// runMailbox is postern mailbox.
func runMailbox(e *env, args []string) int {
	if len(args) == 0 || wantsHelp(args) || args[0] == "help" {
		if len(args) == 0 {
			fmt.Fprint(e.stderr, mailboxUsage)
			return 64
		}
		fmt.Fprint(e.stdout, mailboxUsage)
		return 0
	}
	for _, s := range mailboxSubcommands {
		if s.name == args[0] {
			c := &mailboxCmd{e: e, sub: args[0], now: mailboxClock()}
			return s.run(c, args[1:])
		}
	}
	fmt.Fprintf(e.stderr, "postern mailbox: unknown subcommand %q\n%s", args[0], mailboxUsage)
	return 64
}

// accountList is the -u flag: names or patterns, comma-separated, and
// the flag repeatable.
type accountList []string

func (l *accountList) String() string { return strings.Join(*l, ",") }

func (l *accountList) Set(v string) error {
	for name := range strings.SplitSeq(v, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			return errors.New("an empty account name")
		}
		if _, err := path.Match(name, ""); err != nil {
			return fmt.Errorf("pattern %q: %v", name, err)
		}
		*l = append(*l, name)
	}
	return nil
}

// isAccountPattern: a -u value with shell wildcards.
func isAccountPattern(s string) bool { return strings.ContainsAny(s, "*?[") }

// flags makes the subcommand's flag set with the options every
// subcommand has.
func (c *mailboxCmd) flags(synopsis, description string) *flag.FlagSet {
	fs := newFlags(c.e, "mailbox "+c.sub, "(-A | -u USER) [-v] [--json] "+synopsis, description)
	fs.BoolVar(&c.all, "A", false, "every account of every authentication module")
	fs.Var(&c.users, "u", "the `accounts`: names or shell patterns, comma-separated")
	fs.BoolVar(&c.asJSON, "json", false, "print a JSON array")
	fs.BoolVar(&c.verbose, "v", false, "a progress line per account on standard error (the default on a terminal with several accounts)")
	return fs
}

// parse parses args and checks the account selection; done says the
// command is over, with exit code.
func (c *mailboxCmd) parse(fs *flag.FlagSet, args []string) (code int, done bool) {
	if code, done := parseFlags(c.e, fs, args); done {
		return code, true
	}
	if c.all == (len(c.users) > 0) {
		fmt.Fprintf(c.e.stderr, "postern mailbox %s: name the accounts with -u USER, or -A for all of them\n", c.sub)
		return 64, true
	}
	return 0, false
}

// usageError reports a mistake in the arguments: exit 64.
func (c *mailboxCmd) usageError(format string, args ...any) int {
	fmt.Fprintf(c.e.stderr, "postern mailbox %s: %s\n", c.sub, fmt.Sprintf(format, args...))
	return 64
}

// multi: the output names the account on each line.
func (c *mailboxCmd) multi() bool {
	return c.all || len(c.users) > 1 || (len(c.users) == 1 && isAccountPattern(c.users[0]))
}

// fail records an exit status; the most serious one wins.
func (c *mailboxCmd) fail(code int) {
	rank := func(code int) int {
		switch code {
		case 0:
			return 0
		case 1:
			return 1
		case 75:
			return 3
		}
		return 2
	}
	if rank(code) > rank(c.status) {
		c.status = code
	}
}

// errNotEmpty: delete -e found messages.
var errNotEmpty = errors.New("mailbox is not empty")

// exitCodeOf is the exit status an account's error stands for.
func exitCodeOf(err error) int {
	switch {
	case errors.Is(err, maildir.ErrNoFolder), errors.Is(err, maildir.ErrFolderExists),
		errors.Is(err, maildir.ErrInboxProtected), errors.Is(err, errNotEmpty):
		return 1
	case errors.Is(err, maildir.ErrBadFolderName), errors.Is(err, maildir.ErrBadKeyword),
		errors.Is(err, maildir.ErrTooManyKeywords):
		return 64
	}
	return 75
}

// accountFunc does a subcommand's work on one account's Maildir and
// returns what the progress line says of it.
type accountFunc func(a *auth.Account, md *maildir.Maildir) (string, error)

// forEachAccount runs fn on every account selected. An account without a
// Maildir is skipped, unless create (a folder or a subscription is to be
// made): then it is made, as the IMAP server does at a first login.
// Whatever root wrote for an account is given to it afterwards.
func (c *mailboxCmd) forEachAccount(create bool, fn accountFunc) int {
	svc, closeAll, code := authService(c.e, "mailbox "+c.sub, slog.LevelWarn)
	if svc == nil {
		return code
	}
	defer closeAll()
	ctx, cancel := context.WithTimeout(context.Background(), 24*time.Hour)
	defer cancel()
	if c.asJSON {
		fmt.Fprint(c.e.stdout, "[")
		defer fmt.Fprint(c.e.stdout, "]\n")
	}
	showProgress := c.verbose || (c.multi() && writerIsTerminal(c.e.stderr))
	done := 0
	each := func(a *auth.Account) {
		done++
		summary, err := c.onAccount(a, create, fn)
		if err != nil {
			fmt.Fprintf(c.e.stderr, "postern mailbox %s: %s: %v\n", c.sub, a.Name, err)
			c.fail(exitCodeOf(err))
			return
		}
		if showProgress {
			fmt.Fprintf(c.e.stderr, "postern mailbox %s: [%d] %s: %s\n", c.sub, done, a.Name, summary)
		}
	}
	var names, patterns []string
	for _, u := range c.users {
		if isAccountPattern(u) {
			patterns = append(patterns, strings.ToLower(u))
		} else {
			names = append(names, u)
		}
	}
	for _, name := range names {
		a, err := svc.Lookup(ctx, name)
		switch {
		case errors.Is(err, auth.ErrNoSuchUser):
			fmt.Fprintf(c.e.stderr, "postern mailbox %s: %s: no such account\n", c.sub, name)
			c.fail(67)
		case err != nil:
			fmt.Fprintf(c.e.stderr, "postern mailbox %s: %s: %v\n", c.sub, name, err)
			c.fail(75)
		default:
			each(a)
		}
	}
	if c.all || len(patterns) > 0 {
		matched := 0
		err := svc.Enumerate(ctx, func(a *auth.Account) error {
			if !c.all && !slices.ContainsFunc(patterns, func(p string) bool {
				ok, _ := path.Match(p, strings.ToLower(a.Name))
				return ok
			}) {
				return nil
			}
			matched++
			each(a)
			return nil
		})
		if err != nil {
			fmt.Fprintf(c.e.stderr, "postern mailbox %s: listing the accounts: %v\n", c.sub, err)
			c.fail(75)
		} else if matched == 0 && len(patterns) > 0 {
			fmt.Fprintf(c.e.stderr, "postern mailbox %s: no account matches %s\n", c.sub, strings.Join(patterns, ", "))
			c.fail(67)
		}
	}
	return c.status
}

// onAccount opens one account's Maildir and runs fn on it.
func (c *mailboxCmd) onAccount(a *auth.Account, create bool, fn accountFunc) (string, error) {
	md, err := openAccountMaildir(a, create)
	if err != nil || md == nil {
		return "no Maildir", err
	}
	summary, err := fn(a, md)
	if gerr := md.GiveState(); gerr != nil && err == nil {
		err = gerr
	}
	return summary, err
}

// openAccountMaildir opens the account's Maildir as the account reads it
// (maildir.OpenAs); nil when there is none and create is false.
func openAccountMaildir(a *auth.Account, create bool) (*maildir.Maildir, error) {
	root := a.MaildirPath()
	if !filepath.IsAbs(root) {
		return nil, fmt.Errorf("the account's Maildir %q is not an absolute path", root)
	}
	md, err := maildir.OpenAs(root, a.UID, a.GID)
	if err == nil {
		return md, nil
	}
	if _, serr := os.Stat(root); !errors.Is(serr, fs.ErrNotExist) {
		return nil, err
	}
	if !create {
		return nil, nil
	}
	if err := maildir.MakeFor(root, a.UID, a.GID); err != nil {
		return nil, err
	}
	return maildir.OpenAs(root, a.UID, a.GID)
}

// writerIsTerminal reports whether w is a terminal.
func writerIsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && authtool.IsTerminal(f)
}

// loadNames reads how the IMAP server names folders (imapnamespace).
func (c *mailboxCmd) loadNames() int {
	cfg, err := policy.Load(c.e.configDir)
	if err != nil {
		fmt.Fprintf(c.e.stderr, "postern mailbox %s: configuration:\n%v\n", c.sub, err)
		return 78
	}
	c.names = folderNames{courier: cfg.IMAPCourierNS}
	return 0
}

// run loads the configuration and runs fn on every selected account.
func (c *mailboxCmd) run(create bool, fn accountFunc) int {
	if code := c.loadNames(); code != 0 {
		return code
	}
	return c.forEachAccount(create, fn)
}

// emitText prints one line of output, after the account's name when the
// run has several.
func (c *mailboxCmd) emitText(a *auth.Account, line string) {
	if c.multi() {
		fmt.Fprintf(c.e.stdout, "%s\t", a.Name)
	}
	fmt.Fprintln(c.e.stdout, line)
	c.records++
}

// emitJSON prints one element of the JSON array.
func (c *mailboxCmd) emitJSON(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		b, _ = json.Marshal(map[string]string{"error": err.Error()})
	}
	if c.records > 0 {
		fmt.Fprint(c.e.stdout, ",")
	}
	fmt.Fprintf(c.e.stdout, "\n%s", b)
	c.records++
}

// folderNames maps Maildir++ folder names to the names Postern's IMAP
// server shows (UTF-8, under "INBOX." in Courier's namespace) and back.
type folderNames struct{ courier bool }

// both is a folder's name as IMAP shows it and without Courier's
// "INBOX." (the same in the default namespace): a pattern or a name may
// be given either way.
func (n folderNames) both(folder string) [2]string {
	if folder == maildir.Inbox {
		return [2]string{"INBOX", "INBOX"}
	}
	bare, err := maildir.DecodeModifiedUTF7(folder)
	if err != nil {
		bare = folder // not valid modified UTF-7 (another program made it): as it is
	}
	if n.courier {
		return [2]string{"INBOX." + bare, bare}
	}
	return [2]string{bare, bare}
}

// display is the folder's name as IMAP shows it.
func (n folderNames) display(folder string) string { return n.both(folder)[0] }

// folder maps a mailbox name as an admin types it (UTF-8; "INBOX.Sent"
// or "Sent" in either namespace) to the Maildir++ folder name. Names
// that could reach outside the Maildir or confuse the IMAP server are
// refused: "/", control characters, empty components, "..", INBOX as a
// parent.
func (n folderNames) folder(name string) (string, error) {
	bad := func(why string) error {
		return fmt.Errorf("mailbox name %s: %s: %w", quoteWord(name), why, maildir.ErrBadFolderName)
	}
	if !utf8.ValidString(name) {
		return "", bad("not valid UTF-8")
	}
	for _, r := range name {
		switch {
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0):
			return "", bad("contains a control character")
		case r == '/':
			return "", bad(`contains "/"`)
		}
	}
	name = canonicalInboxName(name)
	if name == "INBOX" {
		return maildir.Inbox, nil
	}
	bare := strings.TrimPrefix(name, "INBOX.")
	folder := maildir.EncodeModifiedUTF7(bare)
	if err := maildir.ValidFolderName(folder); err != nil {
		return "", bad(strings.TrimPrefix(strings.TrimSuffix(err.Error(), ": "+maildir.ErrBadFolderName.Error()), fmt.Sprintf("folder %q: ", folder)))
	}
	return folder, nil
}

// canonicalInboxName upper-cases a leading "inbox" that is the whole name
// or a parent: INBOX is case-insensitive (RFC 3501 5.1).
func canonicalInboxName(name string) string {
	if len(name) >= 5 && strings.EqualFold(name[:5], "INBOX") && (len(name) == 5 || name[5] == '.') {
		return "INBOX" + name[5:]
	}
	return name
}

// pattern compiles a mailbox pattern: "*" matches anything, "%" anything
// but the hierarchy delimiter "."; the rest literally (INBOX in any
// case). A regular expression keeps hostile patterns linear.
func (folderNames) pattern(p string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^")
	for _, r := range canonicalInboxName(p) {
		switch r {
		case '*':
			b.WriteString(".*")
		case '%':
			b.WriteString(`[^.]*`)
		default:
			b.WriteString(regexp.QuoteMeta(string(r)))
		}
	}
	b.WriteString("$")
	return regexp.MustCompile("(?s)" + b.String())
}

// subscriptionName is a folder as courierimapsubscribed names it
// ("INBOX.Sent" in both namespaces, as Postern's IMAP server writes it).
func subscriptionName(folder string) string {
	if folder == maildir.Inbox {
		return "INBOX"
	}
	return "INBOX." + folder
}

// parseFolderArgs maps names to folders, refusing INBOX when noInbox is
// set: what it says why.
func (c *mailboxCmd) parseFolderArgs(names []string, noInbox string) ([]string, bool) {
	var folders []string
	for _, name := range names {
		f, err := c.names.folder(name)
		if err != nil {
			c.usageError("%v", err)
			return nil, false
		}
		if f == maildir.Inbox && noInbox != "" {
			c.usageError("%s", noInbox)
			return nil, false
		}
		folders = append(folders, f)
	}
	return folders, true
}

// refuseWildcards: a new folder's name may not hold IMAP's wildcards,
// which LIST could then not name alone.
func (c *mailboxCmd) refuseWildcards(names ...string) bool {
	for _, n := range names {
		if strings.ContainsAny(n, "*%") {
			c.usageError("mailbox name %s: the wildcards * and %% are not allowed in a new name", quoteWord(n))
			return true
		}
	}
	return false
}
