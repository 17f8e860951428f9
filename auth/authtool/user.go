package authtool

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"postern/auth/passwd"
	"postern/auth/userdb"
	"postern/mailbox/maildir"
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
	r := bufio.NewReader(io.LimitReader(u.stdin, passwd.MaxPasswordLen+2))
	line, err := r.ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read password from stdin: %w", err)
	}
	if !strings.HasSuffix(line, "\n") && len(line) > passwd.MaxPasswordLen {
		return "", fmt.Errorf("password longer than %d bytes", passwd.MaxPasswordLen)
	}
	line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	if line == "" {
		return "", errors.New("no password given (use --password, a line on stdin, or --no-password)")
	}
	return line, nil
}

// editTarget says which file "postern user" edits: the source itself when
// it is a file (created if missing), or OwnFileName inside it when it is a
// directory.
func (u *userCmd) editTarget() (string, error) {
	st, err := os.Stat(u.paths.Source)
	switch {
	case err == nil && st.IsDir():
		return filepath.Join(u.paths.Source, OwnFileName), nil
	case err == nil:
		return u.paths.Source, nil
	case errors.Is(err, os.ErrNotExist):
		return u.paths.Source, nil
	default:
		return "", err
	}
}

// loadAll reads the whole source (empty if it does not exist yet).
func (u *userCmd) loadAll() ([]userdb.Entry, error) {
	if _, err := os.Stat(u.paths.Source); errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return userdb.LoadSource(u.paths.Source)
}

func find(entries []userdb.Entry, name string) *userdb.Entry {
	for i := range entries {
		if entries[i].Name == name {
			return &entries[i]
		}
	}
	return nil
}

// editable refuses to change an entry that lives outside the file we edit.
func editable(e *userdb.Entry, target string) error {
	if filepath.Clean(e.File) != filepath.Clean(target) {
		return fmt.Errorf("%s is defined at %s, not in %s which postern user manages; edit that file by hand (then run postern makeuserdb) or move the line into %s", e.Name, e.Location(), target, target)
	}
	return nil
}

// rewrite changes the target file under the edit lock: change receives its
// lines (without newlines) and returns the new ones. Then the database is
// recompiled.
func (u *userCmd) rewrite(target string, change func(lines []string) ([]string, error)) error {
	var lines []string
	data, err := os.ReadFile(target)
	switch {
	case err == nil:
		text := strings.TrimSuffix(string(data), "\n")
		if text != "" {
			lines = strings.Split(text, "\n")
		}
	case errors.Is(err, os.ErrNotExist):
	default:
		return err
	}
	lines, err = change(lines)
	if err != nil {
		return err
	}
	out := strings.Join(lines, "\n")
	if out != "" {
		out += "\n"
	}
	if err := writeFileAtomic(target, []byte(out)); err != nil {
		return err
	}
	if err := userdb.Compile(u.paths.Source, u.paths.DB); err != nil {
		return fmt.Errorf("%s changed, but the recompile failed: %w", target, err)
	}
	return nil
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
	if *uid < 0 || *gid < 0 {
		return errors.New("--uid and --gid must not be negative")
	}

	fields := map[string]string{
		userdb.FieldUID: strconv.Itoa(*uid),
		userdb.FieldGID: strconv.Itoa(*gid),
	}
	if *home == "" {
		dataDir, err := DataDir(u.paths.ConfigDir)
		if err != nil {
			return err
		}
		*home, err = defaultHome(dataDir, name)
		if err != nil {
			return err
		}
	}
	absHome, err := filepath.Abs(*home)
	if err != nil {
		return err
	}
	fields[userdb.FieldHome] = absHome
	if *mail != "" {
		fields[userdb.FieldMail] = *mail
	}
	if *quota != "" {
		fields[userdb.FieldQuota] = *quota
	}
	if given && *noPassword {
		fmt.Fprintf(u.stderr, "%s: --password and --no-password contradict each other\n", fs.Name())
		return errUsage
	}
	if !*noPassword {
		clear, err := u.password(*pw, given)
		if err != nil {
			return err
		}
		hash, err := passwd.Hash(clear, *scheme)
		if err != nil {
			return err
		}
		fields[userdb.FieldSystemPW] = hash
	}
	entry := userdb.Entry{Name: name, Fields: fields}
	line, err := entry.Format()
	if err != nil {
		return fmt.Errorf("account %q: %w", name, err)
	}
	// The line must also read back: Format and the parser agree on rules.
	if _, _, err := userdb.ParseLine(line); err != nil {
		return fmt.Errorf("account %q: %w", name, err)
	}

	unlock, err := lockEdits(u.paths)
	if err != nil {
		return err
	}
	defer unlock()
	entries, err := u.loadAll()
	if err != nil {
		return err
	}
	if e := find(entries, name); e != nil {
		return fmt.Errorf("%s already exists (%s)", name, e.Location())
	}
	target, err := u.editTarget()
	if err != nil {
		return err
	}
	if !*noMaildir {
		maildirPath := filepath.Join(absHome, "Maildir")
		if m := *mail; m != "" {
			maildirPath = m
			if !filepath.IsAbs(m) {
				maildirPath = filepath.Join(absHome, m)
			}
		}
		if err := makeHomeAndMaildir(absHome, maildirPath, *uid, *gid); err != nil {
			return err
		}
	}
	if err := u.rewrite(target, func(lines []string) ([]string, error) {
		return append(lines, line), nil
	}); err != nil {
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

// makeHomeAndMaildir creates the home directory and the Maildir, and when
// running as root hands them to the account's uid and gid.
func makeHomeAndMaildir(home, maildirPath string, uid, gid int) error {
	_, statErr := os.Stat(home)
	newHome := errors.Is(statErr, os.ErrNotExist)
	if err := os.MkdirAll(home, 0o700); err != nil {
		return fmt.Errorf("home %s: %w", home, err)
	}
	if err := maildir.Make(maildirPath); err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return nil
	}
	var paths []string
	if newHome {
		paths = append(paths, home)
	}
	paths = append(paths, maildirPath)
	for _, sub := range []string{"tmp", "new", "cur"} {
		paths = append(paths, filepath.Join(maildirPath, sub))
	}
	for _, p := range paths {
		if err := os.Lchown(p, uid, gid); err != nil {
			return fmt.Errorf("chown %s: %w", p, err)
		}
	}
	return nil
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
	hash, err := passwd.Hash(clear, *scheme)
	if err != nil {
		return err
	}
	return u.changeEntry(name, func(e *userdb.Entry) (string, error) {
		e.Fields[userdb.FieldSystemPW] = hash
		for k := range e.Fields {
			if k != userdb.FieldSystemPW && strings.HasSuffix(k, userdb.PasswordFieldSuffix) {
				fmt.Fprintf(u.stderr, "note: %s also has %s, which still wins for that service\n", name, k)
			}
		}
		line, err := e.Format()
		if err == nil {
			fmt.Fprintf(u.stdout, "password of %s changed\n", name)
		}
		return line, err
	})
}

func (u *userCmd) del(args []string) error {
	fs := u.flags("del", "NAME", `Delete the account NAME from the userdb. Its home directory and mail are
left on disk.`)
	pos, err := u.parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	name := pos[0]
	return u.changeEntry(name, func(e *userdb.Entry) (string, error) {
		fmt.Fprintf(u.stdout, "deleted %s (mail left in %s)\n", name, e.Fields[userdb.FieldHome])
		return "", nil
	})
}

// changeEntry replaces (or, when change returns "", removes) the line of
// name, which must live in the file postern user manages.
func (u *userCmd) changeEntry(name string, change func(e *userdb.Entry) (string, error)) error {
	unlock, err := lockEdits(u.paths)
	if err != nil {
		return err
	}
	defer unlock()
	entries, err := u.loadAll()
	if err != nil {
		return err
	}
	e := find(entries, name)
	if e == nil {
		return fmt.Errorf("no such account %q", name)
	}
	target, err := u.editTarget()
	if err != nil {
		return err
	}
	if err := editable(e, target); err != nil {
		return err
	}
	newLine, err := change(e)
	if err != nil {
		return err
	}
	return u.rewrite(target, func(lines []string) ([]string, error) {
		i := e.Line - 1
		if i < 0 || i >= len(lines) {
			return nil, fmt.Errorf("%s changed under us; try again", target)
		}
		if newLine == "" {
			return append(lines[:i], lines[i+1:]...), nil
		}
		lines[i] = newLine
		return lines, nil
	})
}

func (u *userCmd) list(args []string) error {
	fs := u.flags("list", "[--long]", "List the accounts of the userdb source, one name per line, in source order.")
	long := fs.Bool("long", false, "also print uid, gid, home and where the line is")
	if _, err := u.parse(fs, args, 0, 0); err != nil {
		return err
	}
	entries, err := u.loadAll()
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
	entries, err := u.loadAll()
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
		u := &userCmd{paths: PathsFor(configDir), stdout: io.Discard, stderr: io.Discard}
		return u.changeEntry(name, func(e *userdb.Entry) (string, error) {
			field := userdb.FieldSystemPW
			for _, k := range userdb.PasswordFields(service) {
				if _, ok := e.Fields[k]; ok {
					field = k
					break
				}
			}
			hash, err := passwd.Hash(newPassword, schemeOf(e.Fields[field]))
			if err != nil {
				return "", err
			}
			e.Fields[field] = hash
			return e.Format()
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
