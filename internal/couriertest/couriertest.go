// Package couriertest holds what the tests that run Courier's own tools
// next to Postern's share: running a program for its output and exit
// status, and filling a placeholder in a step's arguments.
package couriertest

import (
	"bytes"
	"errors"
	"os/exec"
	"slices"
	"testing"
)

// Run runs bin with args and returns its standard output, standard error
// and exit status; a program that cannot be started fails the test.
func Run(t testing.TB, bin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatal(err)
		}
		code = ee.ExitCode()
	}
	return o.String(), e.String(), code
}

// Fill returns a copy of args with every argument equal to placeholder
// replaced by value (the same step run on Courier's copy and on ours).
func Fill(args []string, placeholder, value string) []string {
	out := slices.Clone(args)
	for i, a := range out {
		if a == placeholder {
			out[i] = value
		}
	}
	return out
}
