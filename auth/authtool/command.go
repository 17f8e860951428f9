package authtool

import (
	"errors"
	"flag"
	"fmt"
	"io"
)

// parseCommand parses args into fs for the command whose usage text is
// usage, and checks that it has between minArgs and maxArgs operands. It
// reports whether the command should stop here, and with which exit
// status: 0 for --help (printed on stdout), ExitUsage for a bad flag or
// count (printed on stderr).
func parseCommand(fs *flag.FlagSet, usage string, args []string, minArgs, maxArgs int, stdout, stderr io.Writer) (stop bool, code int) {
	fs.SetOutput(io.Discard)
	printUsage := func(w io.Writer) {
		fmt.Fprint(w, usage)
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(stdout)
			return true, ExitOK
		}
		fmt.Fprintf(stderr, "%s: %v\n\n", fs.Name(), err)
		printUsage(stderr)
		return true, ExitUsage
	}
	if fs.NArg() < minArgs || fs.NArg() > maxArgs {
		printUsage(stderr)
		return true, ExitUsage
	}
	return false, 0
}
