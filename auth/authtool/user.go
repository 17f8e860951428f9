package authtool

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"postern/auth/passwd"
	"postern/auth/userdb"
)

// Exit statuses of the commands.
const (
	ExitOK    = 0
	ExitError = 1
	ExitUsage = 64 // EX_USAGE, sysexits.h
)

// errUsage marks a command-line mistake (exit 64) rather than a failure.
var errUsage = errors.New("usage")

const userUsage = `Usage: postern user COMMAND [ARGS]

Manage the accounts in the userdb (CONFIGDIR/userdb), then recompile it
(CONFIGDIR/userdb.db). A running server picks the change up within a second.

Commands:
  add NAME [options]      create an account (and its Maildir)
  passwd NAME [options]   set an account's password (systempw)
  del NAME                delete an account (its mail is left on disk)
  list [--long]           list the accounts
  show NAME               print an account's fields

'postern user COMMAND --help' describes a command's options.
`

// UserMain runs "postern user ARGS" against the configuration in configDir.
// It returns 0 on success, 1 on failure, 64 on a usage error.
func UserMain(args []string, stdin io.Reader, stdout, stderr io.Writer, configDir string) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, userUsage)
		return ExitUsage
	}
	u := &userCmd{paths: PathsFor(configDir), stdin: stdin, stdout: stdout, stderr: stderr}
	var err error
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, userUsage)
		return ExitOK
	case "add":
		err = u.add(args[1:])
	case "passwd", "password":
		err = u.passwd(args[1:])
	case "del", "delete", "rm":
		err = u.del(args[1:])
	case "list", "ls":
		err = u.list(args[1:])
	case "show":
		err = u.show(args[1:])
	default:
		fmt.Fprintf(stderr, "postern user: unknown command %q\n\n%s", args[0], userUsage)
		return ExitUsage
	}
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, flag.ErrHelp):
		return ExitOK
	case errors.Is(err, errUsage):
		return ExitUsage
	default:
		fmt.Fprintf(stderr, "postern user %s: %v\n", args[0], err)
		return ExitError
	}
}

type userCmd struct {
	paths          Paths
	stdin          io.Reader
	stdout, stderr io.Writer
}

// flags makes a subcommand flag set whose --help goes to stdout.
func (u *userCmd) flags(name, synopsis, description string) *flag.FlagSet {
	fs := flag.NewFlagSet("postern user "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		fmt.Fprintf(u.stdout, "Usage: postern user %s %s\n\n%s\n", name, synopsis, description)
		has := false
		fs.VisitAll(func(*flag.Flag) { has = true })
		if has {
			fmt.Fprintf(u.stdout, "\nOptions:\n")
			fs.SetOutput(u.stdout)
			fs.PrintDefaults()
			fs.SetOutput(io.Discard)
		}
	}
	return fs
}

// parse parses flags that may come before or after the positional
// arguments ("user add NAME --password P"), and checks their number.
func (u *userCmd) parse(fs *flag.FlagSet, args []string, minPos, maxPos int) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, flag.ErrHelp // fs.Parse has printed the usage
			}
			fmt.Fprintf(u.stderr, "%s: %v (see --help)\n", fs.Name(), err)
			return nil, errUsage
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(pos) < minPos || len(pos) > maxPos {
		fmt.Fprintf(u.stderr, "%s: wrong number of arguments (see --help)\n", fs.Name())
		return nil, errUsage
	}
	return pos, nil
}

// password returns the --password value, or reads one line from stdin.
func (u *userCmd) password(flagValue string, given bool) (string, error) {
	if given {
		if flagValue == "" {
			return "", errors.New("empty password")
		}
		return flagValue, nil
	}
	line, err := ReadPasswordLine(u.stdin)
	if errors.Is(err, ErrNoPassword) {
		return "", errors.New("no password given (use --password, a line on stdin, or --no-password)")
	}
	return line, err
}

func (u *userCmd) add(args []string) error {
	fs := u.flags("add", "NAME [options]", `Create the account NAME (usually a full address, matched exactly) with
a password from --password or from the first line of stdin, and create its
Maildir. Defaults: uid and gid of this process, home DATADIR/mail/DOMAIN/LOCAL,
Maildir HOME/Maildir.`)
	pw := fs.String("password", "", "the password (default: read one line from stdin)")
	noPassword := fs.Bool("no-password", false, "create the account without a password (it cannot log in; mail is still delivered)")
	home := fs.String("home", "", "home `directory`")
	mail := fs.String("maildir", "", "Maildir `path` (relative paths are under the home directory)")
	uid := fs.Int("uid", os.Getuid(), "system `uid` that owns the mail")
	gid := fs.Int("gid", os.Getgid(), "system `gid`")
	quota := fs.String("quota", "", "Maildir++ `quota`, e.g. 10000000S,1000C")
	scheme := fs.String("scheme", passwd.SchemeBcrypt, "password hash `scheme`: bcrypt, sha512-crypt, sha256-crypt, md5-crypt")
	noMaildir := fs.Bool("no-maildir", false, "do not create the Maildir")
	pos, err := u.parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	name := pos[0]
	given := flagGiven(fs, "password")
	if given && *noPassword {
		fmt.Fprintf(u.stderr, "%s: --password and --no-password contradict each other\n", fs.Name())
		return errUsage
	}
	if *uid < 0 || *gid < 0 {
		return errors.New("--uid and --gid must not be negative")
	}
	n := NewAccount{Name: name, NoPassword: *noPassword, Home: *home, Maildir: *mail,
		SetIDs: true, UID: *uid, GID: *gid, Quota: *quota, Scheme: *scheme, NoMaildir: *noMaildir}
	if !*noPassword {
		if n.Password, err = u.password(*pw, given); err != nil {
			return err
		}
	}
	absHome, err := NewAccounts(u.paths.ConfigDir).Add(n)
	if err != nil {
		return err
	}
	fmt.Fprintf(u.stdout, "added %s (home %s)\n", name, absHome)
	if *uid == 0 {
		fmt.Fprintf(u.stderr, "note: %s's mail is owned by uid 0 (root); pass --uid and --gid to use a mail user\n", name)
	}
	return nil
}

func flagGiven(fs *flag.FlagSet, name string) bool {
	given := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			given = true
		}
	})
	return given
}

// defaultHome is DATADIR/mail/DOMAIN/LOCAL for "LOCAL@DOMAIN". Both parts
// become directory names, so they may not be empty, "." or "..".
func defaultHome(dataDir, name string) (string, error) {
	at := strings.LastIndexByte(name, '@')
	if at < 0 {
		return "", fmt.Errorf("%q has no @DOMAIN, so there is no default home; give --home", name)
	}
	local, domain := name[:at], strings.ToLower(name[at+1:])
	for _, part := range []string{local, domain} {
		if part == "" || part == "." || part == ".." || strings.ContainsAny(part, "/\\") {
			return "", fmt.Errorf("%q cannot be a directory name for a default home; give --home", part)
		}
	}
	return filepath.Join(dataDir, "mail", domain, local), nil
}

func (u *userCmd) passwd(args []string) error {
	fs := u.flags("passwd", "NAME [options]", `Set the password (the systempw field) of NAME from --password or from the
first line of stdin. Per-service passwords (imappw, pop3pw, ...) are left
alone and still win for their service.`)
	pw := fs.String("password", "", "the new password (default: read one line from stdin)")
	scheme := fs.String("scheme", passwd.SchemeBcrypt, "password hash `scheme`: bcrypt, sha512-crypt, sha256-crypt, md5-crypt")
	pos, err := u.parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	name := pos[0]
	clear, err := u.password(*pw, flagGiven(fs, "password"))
	if err != nil {
		return err
	}
	others, err := NewAccounts(u.paths.ConfigDir).SetPassword(name, clear, *scheme)
	if err != nil {
		return err
	}
	for _, k := range others {
		fmt.Fprintf(u.stderr, "note: %s also has %s, which still wins for that service\n", name, k)
	}
	fmt.Fprintf(u.stdout, "password of %s changed\n", name)
	return nil
}

func (u *userCmd) del(args []string) error {
	fs := u.flags("del", "NAME", `Delete the account NAME from the userdb. Its home directory and mail are
left on disk.`)
	pos, err := u.parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	e, err := NewAccounts(u.paths.ConfigDir).Delete(pos[0], false)
	if err != nil {
		return err
	}
	fmt.Fprintf(u.stdout, "deleted %s (mail left in %s)\n", pos[0], e.Fields[userdb.FieldHome])
	return nil
}

func (u *userCmd) list(args []string) error {
	fs := u.flags("list", "[--long]", "List the accounts of the userdb source, one name per line, in source order.\n(Every module's accounts, SQL, LDAP and PAM too: postern authenumerate.)")
	long := fs.Bool("long", false, "also print uid, gid, home and where the line is")
	if _, err := u.parse(fs, args, 0, 0); err != nil {
		return err
	}
	entries, err := NewAccounts(u.paths.ConfigDir).List()
	if err != nil {
		return err
	}
	for _, e := range entries {
		if *long {
			fmt.Fprintf(u.stdout, "%s\t%s\t%s\t%s\t%s\n", e.Name, e.Fields[userdb.FieldUID], e.Fields[userdb.FieldGID], e.Fields[userdb.FieldHome], e.Location())
		} else {
			fmt.Fprintln(u.stdout, e.Name)
		}
	}
	return nil
}

func (u *userCmd) show(args []string) error {
	fs := u.flags("show", "NAME", "Print where NAME is defined and its fields, one field=value per line.")
	pos, err := u.parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	entries, err := NewAccounts(u.paths.ConfigDir).List()
	if err != nil {
		return err
	}
	e := find(entries, pos[0])
	if e == nil {
		return fmt.Errorf("no such account %q", pos[0])
	}
	line, err := e.Format()
	if err != nil {
		return err
	}
	_, rest, _ := strings.Cut(line, "\t")
	fmt.Fprintf(u.stdout, "# %s\n%s\n", e.Location(), e.Name)
	for _, f := range strings.Split(rest, "|") {
		fmt.Fprintf(u.stdout, "  %s\n", f)
	}
	return nil
}

// UserdbPasswordChanger changes passwords in the userdb of configDir, for
// authtest's three-argument form (Courier's authuserdb does the same for
// its authtest and authpasswd): the field that guards the service
// (imappw for imap when the account has one, else systempw) gets a hash of
// the new password in the old hash's scheme when Postern can make it,
// else bcrypt. The source is edited under the edit lock and recompiled.
func UserdbPasswordChanger(configDir string) PasswordChanger {
	return func(name, service, newPassword string) error {
		if newPassword == "" {
			return errors.New("empty password")
		}
		return NewAccounts(configDir).Change(name, func(e *userdb.Entry) error {
			field := userdb.FieldSystemPW
			for _, k := range userdb.PasswordFields(service) {
				if _, ok := e.Fields[k]; ok {
					field = k
					break
				}
			}
			hash, err := passwd.Hash(newPassword, schemeOf(e.Fields[field]))
			if err != nil {
				return err
			}
			e.Fields[field] = hash
			return nil
		})
	}
}

// schemeOf names the scheme of a crypt string Hash can make again; ""
// (bcrypt) for any other.
func schemeOf(hash string) string {
	switch {
	case strings.HasPrefix(hash, "$1$"):
		return passwd.SchemeMD5Crypt
	case strings.HasPrefix(hash, "$5$"):
		return passwd.SchemeSHA256Crypt
	case strings.HasPrefix(hash, "$6$"):
		return passwd.SchemeSHA512Crypt
	}
	return ""
}
