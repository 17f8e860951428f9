package main

import (
	"errors"
	"fmt"
	"slices"

	"postern/auth/authtool"
	"postern/web/admin"
)

const webadminUsage = `Usage: postern webadmin passwd [--stdin] NAME
       postern webadmin list

passwd  sets the password of the web admin login NAME (adding it when it is
        new) in CONFIGDIR/webadmin, as a bcrypt hash. On a terminal it asks
        twice, without echo; with --stdin it reads one line from standard
        input instead.
list    prints the names that may log in.

The web admin is served under /admin/ on the web listener; without a
webadmin file (or with no lines in it) every login is refused. A running
server reads the file at every login: no reload is needed. See docs/webadmin.md.
`

func runWebadmin(e *env, args []string) int {
	if len(args) == 0 {
		fmt.Fprint(e.stderr, webadminUsage)
		return 64
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(e.stdout, webadminUsage)
		return 0
	case "passwd", "password":
		return webadminPasswd(e, args[1:])
	case "list":
		return webadminList(e, args[1:])
	}
	fmt.Fprintf(e.stderr, "postern webadmin: unknown subcommand %q\n\n%s", args[0], webadminUsage)
	return 64
}

func webadminPasswd(e *env, args []string) int {
	fs := newFlags(e, "webadmin passwd", "[--stdin] NAME", `
Sets the password of the web admin login NAME in CONFIGDIR/webadmin (added
when new; other lines are kept). On a terminal it asks twice without echo;
with --stdin it reads one line from standard input.`)
	fromStdin := fs.Bool("stdin", false, "read the password as one line from standard input")
	// Flags may follow the name: "webadmin passwd admin --stdin".
	var pos []string
	for {
		if code, done := parseFlags(e, fs, args); done {
			return code
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(pos) != 1 {
		fs.Usage()
		return 64
	}
	name := pos[0]
	var pw string
	var err error
	if *fromStdin {
		pw, err = authtool.ReadPasswordLine(e.stdin)
	} else {
		pw, err = promptPassword(e)
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "postern webadmin passwd: %v\n", err)
		return 1
	}
	if err := admin.SetPassword(e.configDir, name, pw); err != nil {
		fmt.Fprintf(e.stderr, "postern webadmin passwd: %v\n", err)
		return 1
	}
	fmt.Fprintf(e.stdout, "password of web admin %s set in %s/%s\n", name, e.configDir, admin.SettingName)
	return 0
}

func webadminList(e *env, args []string) int {
	fs := newFlags(e, "webadmin list", "", "Prints the names in CONFIGDIR/webadmin that may log in to the web admin.")
	if code, done := parseFlags(e, fs, args); done {
		return code
	}
	admins, err := admin.LoadAdmins(e.configDir)
	if err != nil {
		fmt.Fprintf(e.stderr, "postern webadmin list: %v\n", err)
		return 78
	}
	names := make([]string, 0, len(admins))
	for n := range admins {
		names = append(names, n)
	}
	if len(names) == 0 {
		fmt.Fprintf(e.stderr, "no web admin logins: set one with postern webadmin passwd NAME\n")
		return 0
	}
	for _, n := range slices.Sorted(slices.Values(names)) {
		fmt.Fprintln(e.stdout, n)
	}
	return 0
}

// promptPassword asks twice on the terminal, with echo off.
func promptPassword(e *env) (string, error) {
	if !authtool.IsTerminal(e.stdin) {
		return "", errors.New("standard input is not a terminal: use --stdin")
	}
	return authtool.PromptPassword(e.stdin, e.stderr, "New password: ", "Again: ")
}
