package authtool

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"postern/auth"
)

// authenumerateTimeout bounds one listing: a large table or directory is
// read page by page, not at once.
const authenumerateTimeout = 15 * time.Minute

const authenumerateUsage = `Usage: postern authenumerate [-o] [-s]

List every account of the authentication modules, in the order of
authmodulelist, one a line, in the layout of Courier's authenumerate:

  NAME<TAB>UID<TAB>GID<TAB>HOME<TAB>MAILDIR[<TAB>OPTIONS]

MAILDIR is empty when the account's Maildir is HOME/Maildir. A name an
earlier module listed is left out (a lookup finds the earlier module's
account); accounts with uid or gid 0 are left out, as Courier's are. The
exit status is 1, with the reason on standard error, when a module could
not list its accounts: the list is then incomplete and must not be used
(for a shared folder index, say).

Options:
`

// AuthenumerateMain runs "postern authenumerate ARGS" against svc: 0 when
// every module listed its accounts, 1 when one failed, 64 on a usage
// error.
func AuthenumerateMain(args []string, stdout, stderr io.Writer, svc *auth.Service) int {
	fs := flag.NewFlagSet("postern authenumerate", flag.ContinueOnError)
	options := fs.Bool("o", false, "also print each account's options")
	shared := fs.Bool("s", false, "leave out the accounts whose options say disableshared")
	if stop, code := parseCommand(fs, authenumerateUsage, args, 0, 0, stdout, stderr); stop {
		return code
	}
	ctx, cancel := context.WithTimeout(context.Background(), authenumerateTimeout)
	defer cancel()
	w := bufio.NewWriter(stdout)
	err := svc.Enumerate(ctx, func(a *auth.Account) error {
		if a.UID == 0 || a.GID == 0 || (*shared && a.Disabled("shared")) {
			return nil
		}
		_, err := w.WriteString(enumeratedLine(a, *options))
		return err
	})
	if err == nil {
		err = w.Flush()
	}
	if err != nil {
		w.Flush()
		fmt.Fprintf(stderr, "postern authenumerate: %v (the list is incomplete)\n", err)
		return ExitError
	}
	return ExitOK
}

// enumeratedLine is one line of the list; a tab or line break in a field
// would shift the fields or split the line, so it becomes a blank.
func enumeratedLine(a *auth.Account, options bool) string {
	clean := func(s string) string {
		return strings.Map(func(r rune) rune {
			if r == '\t' || r == '\n' || r == '\r' || r == 0 {
				return ' '
			}
			return r
		}, s)
	}
	line := clean(a.Name) + "\t" + strconv.Itoa(a.UID) + "\t" + strconv.Itoa(a.GID) + "\t" + clean(a.Home) + "\t" + clean(a.Maildir)
	if options {
		line += "\t" + clean(formatOptions(a))
	}
	return line + "\n"
}
