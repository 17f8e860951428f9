package aliases

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"
)

const makealiasesUsage = `Usage: postern makealiases [-src=PATH] [-alias=FILE] [-tmp=FILE] [-protocol=PROTO] [-chk] [-dump] [-v] [local]

Compile the alias source (CONFIGDIR/aliases, a file or a directory of files
read in lexical order) into CONFIGDIR/aliases.db. The new file replaces the
old one atomically; a running server uses it within a second. Problems are
printed as FILE:LINE: reason and the old file is kept.

Options:
`

// MakealiasesMain runs "postern makealiases ARGS" (also reached as
// "newaliases"); args excludes the command name. It returns the exit
// status: 0 compiled (or checked, or dumped), 1 refused or usage error.
func MakealiasesMain(args []string, stdout, stderr io.Writer, configDir string) int {
	fs := flag.NewFlagSet("postern makealiases", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	src := fs.String("src", "", "read the alias source from `PATH` (file or directory) instead of CONFIGDIR/aliases")
	out := fs.String("alias", "", "write the compiled index to `FILE` instead of CONFIGDIR/aliases.db")
	tmp := fs.String("tmp", "", "build the new index beside `FILE` (its directory must be on the same file system as the index)")
	protocol := fs.String("protocol", "", "compile the aliases private to `PROTO` (esmtp or local): CONFIGDIR/aliases-PROTO into aliases-PROTO.db")
	check := fs.Bool("chk", false, "check the source and report problems; write nothing")
	dump := fs.Bool("dump", false, "print the expanded aliases instead of writing the index")
	verbose := fs.Bool("v", false, "report how many aliases were compiled")
	printUsage := func(w io.Writer) {
		fmt.Fprint(w, makealiasesUsage)
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(stdout)
			return 0
		}
		fmt.Fprintf(stderr, "postern makealiases: %v\n\n", err)
		printUsage(stderr)
		return 1
	}
	// Courier's optional module argument picks address-rewriting rules;
	// Postern has only the local rules, so only "local" means anything.
	if fs.NArg() > 1 || (fs.NArg() == 1 && fs.Arg(0) != "local") {
		fmt.Fprintf(stderr, "postern makealiases: unknown module %q (only \"local\")\n\n", strings.Join(fs.Args(), " "))
		printUsage(stderr)
		return 1
	}

	setting := SettingName
	switch *protocol {
	case "":
	case "esmtp", "local":
		setting = SettingName + "-" + *protocol
	default:
		fmt.Fprintf(stderr, "postern makealiases: -protocol=%s: not esmtp or local\n", *protocol)
		return 1
	}
	srcDir, srcName := configDir, setting
	if *src != "" {
		clean := filepath.Clean(*src)
		srcDir, srcName = filepath.Dir(clean), filepath.Base(clean)
	}
	dbPath := *out
	if dbPath == "" {
		dbPath = filepath.Join(configDir, setting+".db")
	}
	tmpDir := ""
	if *tmp != "" {
		tmpDir = filepath.Dir(*tmp)
	}

	a, err := loadSetting(configDir, srcDir, srcName)
	if err != nil {
		n := printProblems(stderr, err)
		fmt.Fprintf(stderr, "postern makealiases: %d problem(s) in %s; %s not changed\n", n, filepath.Join(srcDir, srcName), dbPath)
		return 1
	}
	switch {
	case *dump:
		if err := a.Dump(stdout); err != nil {
			fmt.Fprintf(stderr, "postern makealiases: %v\n", err)
			return 1
		}
		return 0
	case *check:
		if *verbose {
			fmt.Fprintf(stdout, "%s: %d aliases, no problems\n", filepath.Join(srcDir, srcName), a.Len())
		}
		return 0
	}
	if err := a.WriteDB(dbPath, tmpDir, filepath.Join(srcDir, srcName)); err != nil {
		fmt.Fprintf(stderr, "postern makealiases: %v\n", err)
		return 1
	}
	if *verbose {
		fmt.Fprintf(stdout, "%s: %d aliases compiled into %s\n", filepath.Join(srcDir, srcName), a.Len(), dbPath)
	}
	return 0
}

// printProblems prints each joined error on its own line and returns how
// many there were.
func printProblems(w io.Writer, err error) int {
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	for _, e := range errs {
		fmt.Fprintln(w, e)
	}
	return len(errs)
}
