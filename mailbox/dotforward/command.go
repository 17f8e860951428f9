package dotforward

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
)

// Usage is the command's --help text.
const Usage = `Usage: dotforward          (in a .courier file: "|| dotforward", then ./Maildir/)
       postern dotforward

Reads sendmail's $HOME/.forward and prints the same destinations as
dot-courier(5) delivery instructions, as Courier's dotforward(1) does. It is
meant to run from a .courier file through "||", which carries out what it
prints. It reads DTLINE (the recipient's address) from the environment and
the message's Delivered-To header fields from standard input.

  no $HOME/.forward     exit 0, print nothing: the next .courier lines apply
  .forward names you    (e.g. "\alice") print the others, exit 0: you keep a copy
  otherwise             print the destinations, exit 99: nothing more is done
  already delivered to  an address in a Delivered-To field is left out (loops)

A .forward that is writable by group or others, or owned by another user,
is ignored (exit 0, a message on standard error). A line that cannot be
read defers the message (exit 75). See docs/dotforward.md.
`

// Main is the dotforward command. getenv gives HOME and DTLINE; the
// message is read from stdin; instructions go to stdout and explanations to
// stderr. It returns the exit code.
func Main(args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	for _, a := range args {
		if a == "-h" || a == "-help" || a == "--help" {
			fmt.Fprint(stdout, Usage)
			return 0
		}
	}
	if len(args) > 0 {
		// Courier's dotforward takes no arguments and ignores any; so do
		// we, rather than bounce mail over a typo in a .courier file.
		fmt.Fprintf(stderr, "dotforward: arguments ignored: %q\n", args)
	}
	home := getenv("HOME")
	if home == "" {
		return ExitContinue // as Courier's: nowhere to look
	}
	if st, err := os.Stat(home); err != nil || !st.IsDir() {
		if err == nil {
			err = errors.New("not a directory")
		}
		fmt.Fprintf(stderr, "dotforward: home directory %s: %v\n", home, err)
		return ExitTempFail
	}
	path := filepath.Join(home, ".forward")
	src, err := readForward(path)
	switch {
	case errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENOTDIR):
		return ExitContinue
	case err != nil:
		// Courier's dotforward treats a .forward it cannot open as
		// missing; the mail is delivered by the next .courier lines.
		fmt.Fprintf(stderr, "dotforward: %v; delivering as if there were no .forward\n", err)
		return ExitContinue
	}
	me := ParseDTLINE(getenv("DTLINE"))
	if me == "" {
		// Not run by the delivery agent (Courier's dotforward quietly
		// exits 0 here too).
		fmt.Fprintln(stderr, "dotforward: DTLINE is not set (run from a .courier file through \"||\"); .forward not read")
		return ExitContinue
	}
	delivered, err := ReadDeliveredTo(stdin)
	if err != nil {
		fmt.Fprintf(stderr, "dotforward: reading the message: %v\n", err)
		return ExitTempFail
	}
	// Take the rest of the message, so that the agent writing it is not
	// cut off by a closed pipe.
	io.Copy(io.Discard, stdin)

	entries, err := Parse(path, src, func(p string) ([]byte, error) {
		if !filepath.IsAbs(p) {
			p = filepath.Join(home, p)
		}
		return readForward(p)
	})
	switch {
	case errors.Is(err, ErrInclude):
		fmt.Fprintf(stderr, "%v\n", err)
		return ExitNoUser
	case err != nil:
		fmt.Fprintf(stderr, "%v; delivery deferred until it is fixed\n", err)
		return ExitTempFail
	case len(entries) == 0:
		// An empty .forward, or comments only: sendmail delivers as
		// usual (Courier's dotforward would exit 99, and drop the mail).
		return ExitContinue
	}
	plan := MakePlan(entries, Recipient{Address: me, DeliveredTo: delivered})
	for _, a := range plan.Dropped {
		fmt.Fprintf(stderr, "dotforward: not forwarding to %s: the message was already delivered there\n", a)
	}
	if _, err := io.WriteString(stdout, plan.Output()); err != nil {
		fmt.Fprintf(stderr, "dotforward: %v\n", err)
		return ExitTempFail
	}
	return plan.ExitCode()
}

// readForward reads a .forward or :include: file that is safe to obey:
// a regular file, owned by this user or root, writable by nobody else
// (sendmail's rule: whoever can write it can run commands as this user).
func readForward(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	if st.Mode().Perm()&0o022 != 0 {
		return nil, fmt.Errorf("%s: writable by group or others (mode %04o), not obeyed", path, st.Mode().Perm())
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && int(sys.Uid) != os.Getuid() && sys.Uid != 0 {
		return nil, fmt.Errorf("%s: owned by uid %d, not by uid %d, not obeyed", path, sys.Uid, os.Getuid())
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(b) > MaxFileSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, MaxFileSize)
	}
	return b, nil
}
