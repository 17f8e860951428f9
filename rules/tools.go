package rules

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// VarOptions are the facts maildrop's fixed default variables come from.
type VarOptions struct {
	Home     string // the recipient's home directory
	Logname  string // the recipient's user name
	Default  string // the default mailbox ($DEFAULT), e.g. "./Maildir"
	From     string // the envelope sender (-f); empty: Return-Path, then MAILER-DAEMON
	Hostname string
	Filter   string // $MAILFILTER: the filter file named on the command line
}

// StandardVars returns the variables maildrop always resets to their
// defaults (maildropfilter(7), "Predefined variables"), for Env.Vars.
func StandardVars(o VarOptions, msg *Message) map[string]string {
	from := o.From
	if from == "" && msg != nil {
		if rp, ok := msg.Header("Return-Path"); ok {
			if a := addresses(rp); len(a) > 0 {
				from = a[0]
			} else {
				// "Return-Path: <>": maildrop 2.9.3 takes the user's
				// name (with no Return-Path at all, MAILER-DAEMON).
				from = o.Logname
			}
		} else {
			from = "MAILER-DAEMON"
		}
	}
	return map[string]string{
		"HOME":        o.Home,
		"LOGNAME":     o.Logname,
		"DEFAULT":     o.Default,
		"FROM":        from,
		"HOSTNAME":    o.Hostname,
		"MAILFILTER":  o.Filter,
		"SHELL":       "/bin/sh",
		"PATH":        "/bin:/usr/bin:/usr/local/bin",
		"SENDMAIL":    "/usr/sbin/sendmail -oi",
		"LOCKEXT":     ".lock",
		"LOCKSLEEP":   "5",
		"LOCKTIMEOUT": "60",
		"LOCKREFRESH": "15",
		"UMASK":       "077",
		// Reset like the others, empty unless the account has a quota.
		"MAILDIRQUOTA": "",
	}
}

// CheckMain is "postern rules check FILE...": it parses each file and
// prints syntax errors as FILE:LINE:COL: message. Exit 0 when all parse, 1
// when any does not, 2 on usage errors.
func CheckMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("rules check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintln(stderr, "usage: postern rules check FILE...") }
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	status := 0
	for _, name := range fs.Args() {
		src, err := readLimited(name)
		if err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", name, err)
			status = 1
			continue
		}
		prog, err := Parse(name, src)
		if err != nil {
			fmt.Fprintln(stderr, err)
			status = 1
			continue
		}
		if len(prog.Warnings) > 0 {
			// The file runs, but these patterns never match.
			for _, w := range prog.Warnings {
				fmt.Fprintf(stderr, "%s:%s\n", name, w)
			}
			status = 1
			continue
		}
		fmt.Fprintf(stdout, "%s: OK\n", name)
	}
	return status
}

func readLimited(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSourceSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxSourceSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrLimit, maxSourceSize)
	}
	return b, nil
}

type varFlags map[string]string

func (v varFlags) String() string { return "" }
func (v varFlags) Set(s string) error {
	k, val, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return errors.New("want NAME=VALUE")
	}
	v[k] = val
	return nil
}

// RunTestMain is "postern rules test [-x] [-m] [-f FROM] [-V NAME=VALUE]
// FILE [ARG...] < message": it runs the filter without delivering anything
// and prints, step by step, the conditions evaluated (with line numbers),
// the assignments, the deliveries that would happen and the exit code.
// Commands (backticks, system, xfilter) only run with -x; otherwise they
// are reported and yield empty output with RETURNCODE 0. Exit status: the
// filter's exit code (75 on errors), 2 on usage errors.
func RunTestMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("rules test", flag.ContinueOnError)
	fs.SetOutput(stderr)
	allowCmds := fs.Bool("x", false, "really run backtick, system and xfilter commands")
	embedded := fs.Bool("m", false, "embedded mode (as maildrop -m)")
	from := fs.String("f", "", "envelope sender ($FROM)")
	vars := varFlags{}
	fs.Var(vars, "V", "set a variable before the run (NAME=VALUE, repeatable)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: postern rules test [-x] [-m] [-f FROM] [-V NAME=VALUE] FILE [ARG...] < message")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	file := fs.Arg(0)
	src, err := readLimited(file)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", file, err)
		return ExitTempFail
	}
	prog, err := Parse(file, src)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return ExitTempFail
	}
	msg, err := ReadMessage(stdin, 64<<20)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return ExitTempFail
	}
	home, _ := os.UserHomeDir()
	host, _ := os.Hostname()
	logname := os.Getenv("LOGNAME")
	// As maildrop's manual mode: the environment's variables, then the
	// fixed ones.
	initial := environMap(os.Environ())
	for k, v := range StandardVars(VarOptions{Home: home, Logname: logname, Default: "./Maildir", From: *from, Hostname: host, Filter: file}, msg) {
		initial[k] = v
	}
	env := Env{
		Vars:     initial,
		Environ:  environMap(os.Environ()),
		Args:     fs.Args()[1:],
		Dir:      filepath.Dir(file),
		Stdout:   stdout,
		Stderr:   stderr,
		Embedded: *embedded,
	}
	for k, v := range vars {
		env.Vars[k] = v
	}
	env.Trace = func(st Step) {
		loc := "(end)"
		if st.File != "" {
			loc = fmt.Sprintf("%s:%d", st.File, st.Line)
		}
		fmt.Fprintf(stdout, "%s: %s: %s\n", loc, st.What, st.Text)
	}
	env.Deliver = func(ctx context.Context, d Delivery) (int, error) {
		extra := ""
		if d.Flags != "" {
			extra += " FLAGS=" + d.Flags
		}
		if d.Keywords != "" {
			extra += " KEYWORDS=" + d.Keywords
		}
		fmt.Fprintf(stdout, "would deliver (%s) to %q%s, %d bytes\n", d.Kind, d.Dest, extra, d.Message.Size())
		return 0, nil
	}
	if *allowCmds {
		env.Run = ExecCommand
	} else {
		env.Run = func(ctx context.Context, c Command) (CommandResult, error) {
			fmt.Fprintf(stdout, "would run (%s) %q (not run; use -x)\n", c.Kind, c.Cmd)
			out := []byte(nil)
			if c.Kind == "xfilter" {
				out = c.Stdin
			}
			return CommandResult{Stdout: out}, nil
		}
	}
	res, err := prog.Run(context.Background(), msg, env)
	if err != nil {
		fmt.Fprintf(stdout, "error: %v\n", err)
	}
	if !res.Disposed && err == nil && *embedded {
		fmt.Fprintln(stdout, "embedded mode: no default delivery")
	}
	fmt.Fprintf(stdout, "exit code %d\n", res.ExitCode)
	return res.ExitCode
}

func environMap(environ []string) map[string]string {
	m := make(map[string]string, len(environ))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}
