package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"postern/auth/passwd"
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
		if code, done := parseFlags(fs, args); done {
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
		pw, err = readPasswordLine(e.stdin)
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
	if code, done := parseFlags(fs, args); done {
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

// readPasswordLine reads one line (without its line end) of at most
// passwd.MaxPasswordLen bytes.
func readPasswordLine(r io.Reader) (string, error) {
	br := bufio.NewReader(io.LimitReader(r, passwd.MaxPasswordLen+2))
	line, err := br.ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("reading the password: %w", err)
	}
	if !strings.HasSuffix(line, "\n") && len(line) > passwd.MaxPasswordLen {
		return "", fmt.Errorf("password longer than %d bytes", passwd.MaxPasswordLen)
	}
	line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	if line == "" {
		return "", errors.New("empty password")
	}
	return line, nil
}

// promptPassword asks twice on the terminal, with echo off.
func promptPassword(e *env) (string, error) {
	f, ok := e.stdin.(*os.File)
	if !ok {
		return "", errors.New("standard input is not a terminal: use --stdin")
	}
	fd := int(f.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return "", errors.New("standard input is not a terminal: use --stdin")
	}
	noEcho := *old
	noEcho.Lflag &^= unix.ECHO
	noEcho.Lflag |= unix.ICANON | unix.ISIG
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &noEcho); err != nil {
		return "", err
	}
	defer unix.IoctlSetTermios(fd, unix.TCSETS, old)
	// Ctrl-C at the prompt must not leave the terminal without echo.
	sigs := make(chan os.Signal, 1)
	done := make(chan struct{})
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer func() { signal.Stop(sigs); close(done) }()
	go func() {
		select {
		case <-sigs:
			unix.IoctlSetTermios(fd, unix.TCSETS, old)
			fmt.Fprintln(e.stderr)
			os.Exit(130)
		case <-done:
		}
	}()
	br := bufio.NewReader(f)
	ask := func(prompt string) (string, error) {
		fmt.Fprint(e.stderr, prompt)
		line, err := br.ReadString('\n')
		fmt.Fprintln(e.stderr)
		if err != nil && !errors.Is(err, io.EOF) {
			return "", err
		}
		return strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r"), nil
	}
	pw, err := ask("New password: ")
	if err != nil {
		return "", err
	}
	if pw == "" {
		return "", errors.New("empty password")
	}
	if len(pw) > passwd.MaxPasswordLen {
		return "", fmt.Errorf("password longer than %d bytes", passwd.MaxPasswordLen)
	}
	again, err := ask("Again: ")
	if err != nil {
		return "", err
	}
	if again != pw {
		return "", errors.New("the passwords differ; nothing changed")
	}
	return pw, nil
}
