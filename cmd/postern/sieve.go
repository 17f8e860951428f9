package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"postern/auth"
	"postern/mailbox/deliver"
	"postern/mailbox/sievestore"
	"postern/policy"
	"postern/rules/sieve"
)

const sieveUsage = `Usage: postern sieve check FILE...
       postern sieve test [-f FROM] [-t RCPT] FILE < MESSAGE
       postern sieve list USER
       postern sieve get USER NAME
       postern sieve put [-a] USER NAME < SCRIPT
       postern sieve activate USER NAME
       postern sieve deactivate USER
       postern sieve delete USER NAME
       postern sieve rename USER OLD NEW

check       reports errors in Sieve scripts as FILE:LINE:COL: message (sievec).
test        runs FILE on the message and prints the actions it would take,
            without delivering or sending anything (Pigeonhole's sieve-test).
list, get, put, activate, deactivate, delete, rename
            manage an account's stored scripts in its home directory, as
            ManageSieve does (doveadm sieve): ~/sieve/NAME.sieve, the active
            one linked from ~/.dovecot.sieve. put checks the script first and
            keeps the sievemaxscripts, sievemaxscriptsize and sievequota
            limits; -a makes it the active one.
Exit status: 0 ok, 1 a script with errors, 64 usage, 67 no such account,
75 a temporary failure (storage, authentication service).
See docs/sieve.md and docs/managesieve.md.
`

func runSieve(e *env, args []string) int {
	if len(args) == 0 || wantsHelp(args) || args[0] == "help" {
		w, code := e.stderr, 64
		if len(args) > 0 {
			w, code = e.stdout, 0
		}
		fmt.Fprint(w, sieveUsage)
		return code
	}
	switch args[0] {
	case "check":
		return sieveCheck(e, args[1:])
	case "test":
		return sieveTest(e, args[1:])
	case "list", "get", "put", "activate", "deactivate", "delete", "rename":
		return sieveStorage(e, args[0], args[1:])
	}
	fmt.Fprintf(e.stderr, "postern sieve: unknown subcommand %q\n%s", args[0], sieveUsage)
	return 64
}

func sieveCheck(e *env, args []string) int {
	fs := newFlags(e, "sieve check", "FILE...", "Reports the errors of Sieve scripts as FILE:LINE:COL: message; silent and exit 0 when all are good.")
	if code, done := parseFlags(e, fs, args); done {
		return code
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 64
	}
	status := 0
	for _, f := range fs.Args() {
		src, err := os.ReadFile(f)
		if err != nil {
			fmt.Fprintf(e.stderr, "postern sieve check: %v\n", err)
			status = 1
			continue
		}
		if _, err := sieve.Parse(src, deliver.SieveOptions); err != nil {
			fmt.Fprintf(e.stdout, "%s:%v\n", f, err)
			status = 1
		}
	}
	return status
}

func sieveTest(e *env, args []string) int {
	fs := newFlags(e, "sieve test", "[-f FROM] [-t RCPT] FILE < MESSAGE",
		"Runs a Sieve script on a message and prints the actions it takes, one a line, without carrying any out. Vacation replies are printed whole.")
	from := fs.String("f", "sender@example.org", "envelope sender (\"\" for a bounce)")
	to := fs.String("t", "user@example.test", "envelope recipient (the user)")
	if code, done := parseFlags(e, fs, args); done {
		return code
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 64
	}
	src, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		fmt.Fprintf(e.stderr, "postern sieve test: %v\n", err)
		return 1
	}
	script, err := sieve.Parse(src, deliver.SieveOptions)
	if err != nil {
		fmt.Fprintf(e.stdout, "%s:%v\n", fs.Arg(0), err)
		return 1
	}
	msg, err := io.ReadAll(io.LimitReader(e.stdin, 64<<20))
	if err != nil {
		fmt.Fprintf(e.stderr, "postern sieve test: reading the message: %v\n", err)
		return 1
	}
	now := time.Now()
	res, err := script.Execute(context.Background(), &sieve.Env{
		Message: msg, From: *from, To: *to, User: *to, Addresses: []string{*to},
		Now: now, Host: "localhost", Domain: domainPart(*to),
		MailboxExists: func(string) bool { return true },
	})
	if err != nil {
		fmt.Fprintf(e.stdout, "error: %v\nimplicit keep (the error keeps the message)\n", err)
		return 1
	}
	for _, a := range res.Actions {
		fmt.Fprintln(e.stdout, a)
		if v, ok := a.(sieve.Vacation); ok {
			for _, line := range strings.Split(strings.TrimRight(string(v.Reply(now)), "\r\n"), "\n") {
				fmt.Fprintln(e.stdout, "  | "+strings.TrimRight(line, "\r"))
			}
		}
	}
	if len(res.Actions) == 0 {
		fmt.Fprintln(e.stdout, "discarded: no action keeps the message")
	}
	if res.Message != nil {
		fmt.Fprintln(e.stdout, "the header was edited: the message delivered is")
		e.stdout.Write(res.Message)
	}
	return 0
}

func domainPart(addr string) string {
	if at := strings.LastIndexByte(addr, '@'); at >= 0 {
		return addr[at+1:]
	}
	return ""
}

// sieveStorage runs the doveadm-sieve-like subcommands on one account.
func sieveStorage(e *env, sub string, args []string) int {
	spec := map[string]struct {
		synopsis string
		nargs    int
	}{
		"list": {"USER", 1}, "get": {"USER NAME", 2}, "put": {"[-a] USER NAME < SCRIPT", 2}, "activate": {"USER NAME", 2},
		"deactivate": {"USER", 1}, "delete": {"USER NAME", 2}, "rename": {"USER OLD NEW", 3},
	}[sub]
	fs := newFlags(e, "sieve "+sub, spec.synopsis, "Manages the account's stored Sieve scripts (docs/sieve.md).")
	activate := false
	if sub == "put" {
		fs.BoolVar(&activate, "a", false, "make the script the active one")
	}
	if code, done := parseFlags(e, fs, args); done {
		return code
	}
	if fs.NArg() != spec.nargs {
		fs.Usage()
		return 64
	}
	cfg, err := policy.Load(e.configDir)
	if err != nil {
		fmt.Fprintf(e.stderr, "postern sieve: configuration:\n%v\n", err)
		return 78
	}
	svc, closeAll, code := authService(e, "sieve", slog.LevelWarn)
	if svc == nil {
		return code
	}
	defer closeAll()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	acct, err := svc.Lookup(ctx, fs.Arg(0))
	switch {
	case errors.Is(err, auth.ErrNoSuchUser):
		fmt.Fprintf(e.stderr, "postern sieve %s: no such account: %s\n", sub, fs.Arg(0))
		return 67
	case err != nil:
		fmt.Fprintf(e.stderr, "postern sieve %s: %v\n", sub, err)
		return 75
	case acct.Home == "":
		fmt.Fprintf(e.stderr, "postern sieve %s: %s has no home directory for scripts\n", sub, acct.Name)
		return 67
	}
	st := sievestore.Open(acct.Home, sievestore.Owner{UID: acct.UID, GID: acct.GID}, sievestore.Limits{
		MaxScripts: int(cfg.SieveMaxScripts), MaxScriptSize: cfg.SieveMaxScriptSize, MaxStorage: cfg.SieveQuota,
	})
	fail := func(err error) int {
		fmt.Fprintf(e.stderr, "postern sieve %s: %v\n", sub, err)
		if errors.Is(err, sievestore.ErrNotFound) || errors.Is(err, sievestore.ErrExists) || errors.Is(err, sievestore.ErrActive) ||
			errors.Is(err, sievestore.ErrQuota) || errors.Is(err, sievestore.ErrBadName) {
			return 1
		}
		return 75
	}
	switch sub {
	case "list":
		scripts, err := st.List()
		if err != nil {
			return fail(err)
		}
		for _, s := range scripts {
			mark := ""
			if s.Active {
				mark = "  ACTIVE"
			}
			fmt.Fprintf(e.stdout, "%s%s\n", s.Name, mark)
		}
	case "get":
		src, err := st.Get(fs.Arg(1))
		if err != nil {
			return fail(err)
		}
		e.stdout.Write(src)
	case "put":
		src, err := io.ReadAll(io.LimitReader(e.stdin, cfg.SieveMaxScriptSize+1))
		if err != nil {
			return fail(err)
		}
		if _, err := sieve.Parse(src, deliver.SieveOptions); err != nil {
			fmt.Fprintf(e.stderr, "postern sieve put: %s:%v\n", fs.Arg(1), err)
			return 1
		}
		if err := st.Put(fs.Arg(1), src); err != nil {
			return fail(err)
		}
		if activate {
			if err := st.SetActive(fs.Arg(1)); err != nil {
				return fail(err)
			}
		}
	case "activate":
		if err := st.SetActive(fs.Arg(1)); err != nil {
			return fail(err)
		}
	case "deactivate":
		if err := st.SetActive(""); err != nil {
			return fail(err)
		}
	case "delete":
		if err := st.Delete(fs.Arg(1)); err != nil {
			return fail(err)
		}
	case "rename":
		if err := st.Rename(fs.Arg(1), fs.Arg(2)); err != nil {
			return fail(err)
		}
	}
	return 0
}
