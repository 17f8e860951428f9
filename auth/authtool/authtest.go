package authtool

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"postern/auth"
	"postern/auth/userdb"
)

// authtestTimeout bounds one authtest: modules may be network services.
const authtestTimeout = 30 * time.Second

const authtestUsage = `Usage: postern authtest [-s SERVICE] USER [PASSWORD [NEWPASSWORD]]

Look USER up in the authentication modules and print what they return, in
the layout of Courier's authtest. With PASSWORD, also check the password for
SERVICE (default "login"; imap, pop3, smtp and webmail pick that service's
password field and "disable" option). With NEWPASSWORD, change the password
that guards SERVICE to NEWPASSWORD once PASSWORD has been checked.

Options:
`

// PasswordChanger changes the password field that guards service for name
// (a userdb account: the source is edited and recompiled).
type PasswordChanger func(name, service, newPassword string) error

// AuthtestMain runs "postern authtest ARGS" against svc. Exit 0 when the
// lookup (or, with a password, the login) succeeded, 1 when it failed, 64 on
// a usage error.
//
// change, when not nil, carries out the three-argument form; without it
// that form fails.
func AuthtestMain(args []string, stdout, stderr io.Writer, svc *auth.Service, change PasswordChanger) int {
	fs := flag.NewFlagSet("postern authtest", flag.ContinueOnError)
	service := fs.String("s", "login", "`service` name")
	if stop, code := parseCommand(fs, authtestUsage, args, 1, 3, stdout, stderr); stop {
		return code
	}
	name := fs.Arg(0)
	ctx, cancel := context.WithTimeout(context.Background(), authtestTimeout)
	defer cancel()

	var a *auth.Account
	var err error
	if fs.NArg() >= 2 {
		a, err = svc.Authenticate(ctx, *service, name, fs.Arg(1))
	} else {
		a, err = svc.Lookup(ctx, name)
	}
	if err != nil {
		fmt.Fprintf(stderr, "Authentication FAILED: %s\n", failureReason(err))
		return ExitError
	}
	if fs.NArg() == 3 {
		// As Courier's: the outcome on standard error, nothing on
		// standard output.
		var err error
		switch setter := passwordSetter(svc, a.Module); {
		case setter != nil:
			err = setter.SetPassword(ctx, a, *service, fs.Arg(2))
		case change != nil && a.Module == userdb.ModuleName:
			err = change(a.Name, *service, fs.Arg(2))
		default:
			fmt.Fprintln(stderr, "Password change failed: not supported here")
			return ExitError
		}
		if err != nil {
			fmt.Fprintf(stderr, "Password change failed: %v\n", err)
			return ExitError
		}
		fmt.Fprintln(stderr, "Password change succeeded.")
		return ExitOK
	}
	// Courier's authtest says so for a lookup too, and shows the clear
	// text it was given once it has been checked.
	fmt.Fprint(stdout, "Authentication succeeded.\n\n")
	clear := a.Fields["clearpw"]
	if fs.NArg() == 2 {
		clear = fs.Arg(1)
	}
	printAccount(stdout, a, *service, clear)
	return ExitOK
}

// passwordSetter returns the module named name when it can change
// passwords itself (the SQL and LDAP modules).
func passwordSetter(svc *auth.Service, name string) auth.PasswordSetter {
	for _, m := range svc.Modules() {
		if m.Name() == name {
			return auth.SetterOf(m)
		}
	}
	return nil
}

// failureReason words an auth error for a person.
func failureReason(err error) string {
	switch {
	case errors.Is(err, auth.ErrNoSuchUser):
		return "no such user"
	case errors.Is(err, auth.ErrBadPassword):
		return "wrong password"
	case errors.Is(err, auth.ErrDisabled):
		return "service disabled for this account"
	case errors.Is(err, auth.ErrTemporary):
		return "temporary failure, try again later (" + err.Error() + ")"
	}
	return err.Error()
}

// printAccount writes Courier authtest's block: labels right-aligned to
// "Encrypted Password:", "(none)" for what is not set.
func printAccount(w io.Writer, a *auth.Account, service, clear string) {
	none := func(s string) string {
		if s == "" {
			return "(none)"
		}
		return s
	}
	hash, _ := userdb.PasswordFor(a.Fields, service)
	fmt.Fprintf(w, "     Authenticated: %s  (uid %d, gid %d)\n", a.Name, a.UID, a.GID)
	fmt.Fprintf(w, "    Home Directory: %s\n", none(a.Home))
	fmt.Fprintf(w, "           Maildir: %s\n", none(a.Maildir))
	fmt.Fprintf(w, "             Quota: %s\n", none(a.Quota))
	fmt.Fprintf(w, "Encrypted Password: %s\n", none(hash))
	fmt.Fprintf(w, "Cleartext Password: %s\n", none(clear))
	fmt.Fprintf(w, "           Options: %s\n", none(formatOptions(a)))
}

func formatOptions(a *auth.Account) string {
	if raw, ok := a.Fields[userdb.FieldOptions]; ok {
		return raw
	}
	keys := make([]string, 0, len(a.Options))
	for k := range a.Options {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + a.Options[k]
	}
	return strings.Join(parts, ",")
}

const makeuserdbUsage = `Usage: postern makeuserdb [-f SOURCE] [-v]

Compile the userdb source (CONFIGDIR/userdb, a file or a directory of files
read in lexical order) into CONFIGDIR/userdb.db. The new file replaces the
old one atomically; running servers pick it up within a second. A bad line
is reported as FILE:LINE: reason and the old database is kept.

Options:
`

// MakeuserdbMain runs "postern makeuserdb ARGS": 0 compiled, 1 refused, 64
// usage error.
func MakeuserdbMain(args []string, stdout, stderr io.Writer, configDir string) int {
	p := PathsFor(configDir)
	fs := flag.NewFlagSet("postern makeuserdb", flag.ContinueOnError)
	source := fs.String("f", "", "compile `SOURCE` into SOURCE.db instead of CONFIGDIR/userdb into CONFIGDIR/userdb.db")
	verbose := fs.Bool("v", false, "report how many accounts were compiled")
	if stop, code := parseCommand(fs, makeuserdbUsage, args, 0, 0, stdout, stderr); stop {
		return code
	}
	src, db := p.Source, p.DB
	if *source != "" {
		src, db = *source, strings.TrimRight(*source, "/")+".db"
	} else {
		// Edits by "postern user" hold this lock; do not compile mid-edit.
		unlock, err := lockEdits(p)
		if err != nil {
			fmt.Fprintf(stderr, "postern makeuserdb: %v\n", err)
			return ExitError
		}
		defer unlock()
	}
	entries, err := userdb.LoadSource(src)
	if err == nil {
		err = userdb.WriteDB(entries, db, src)
	}
	if err != nil {
		fmt.Fprintf(stderr, "postern makeuserdb: %v\n", err)
		return ExitError
	}
	if *verbose {
		fmt.Fprintf(stdout, "%s: %d accounts compiled into %s\n", src, len(entries), db)
	}
	return ExitOK
}
