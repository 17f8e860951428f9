package cliflags

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	newSet := func(stderr *bytes.Buffer) *flag.FlagSet {
		fs := flag.NewFlagSet("postern demo", flag.ContinueOnError)
		fs.SetOutput(stderr)
		fs.Bool("v", false, "be verbose")
		fs.Usage = func() { fmt.Fprintln(fs.Output(), "Usage: postern demo [-v]") }
		return fs
	}
	for _, help := range []string{"-h", "-help", "--help"} {
		var out, errb bytes.Buffer
		if err := Parse(newSet(&errb), []string{help}, &out); !errors.Is(err, flag.ErrHelp) {
			t.Fatalf("%s: %v", help, err)
		}
		if strings.Count(out.String(), "Usage:") != 1 || errb.Len() != 0 {
			t.Fatalf("%s: stdout %q, stderr %q", help, out.String(), errb.String())
		}
	}
	var out, errb bytes.Buffer
	fs := newSet(&errb)
	if err := Parse(fs, []string{"--nope"}, &out); err == nil || errors.Is(err, flag.ErrHelp) {
		t.Fatalf("a bad flag: %v", err)
	}
	if out.Len() != 0 || !strings.Contains(errb.String(), "not defined: -nope") || strings.Count(errb.String(), "Usage:") != 1 {
		t.Fatalf("a bad flag: stdout %q, stderr %q", out.String(), errb.String())
	}
	errb.Reset()
	if err := Parse(newSet(&errb), []string{"-v", "arg"}, &out); err != nil || out.Len() != 0 || errb.Len() != 0 {
		t.Fatalf("good flags: %v %q %q", err, out.String(), errb.String())
	}
}
