// Package cliflags parses a command's flags the way every postern command
// does: -h, -help and --help print the usage on standard output (so that
// `postern serve --help | less` works) and succeed; a mistake prints the
// error and the usage on the flag set's output (standard error).
package cliflags

import (
	"flag"
	"io"
)

// Parse parses args into fs. For a help flag it prints fs.Usage on stdout
// and returns flag.ErrHelp; for a mistake it prints the error and fs.Usage
// on fs.Output() and returns the error. fs.Usage must write to
// fs.Output().
func Parse(fs *flag.FlagSet, args []string, stdout io.Writer) error {
	usage := fs.Usage
	fs.Usage = func() {} // printed below, on the right stream
	err := fs.Parse(args)
	fs.Usage = usage
	switch {
	case err == flag.ErrHelp:
		out := fs.Output()
		fs.SetOutput(stdout)
		fs.Usage()
		fs.SetOutput(out)
	case err != nil:
		fs.Usage()
	}
	return err
}
