package strerror

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
	"testing"
)

func TestText(t *testing.T) {
	_, notExist := os.Open("/nonexistent/x")
	_, notFound := exec.LookPath("no-such-program-here")
	for _, c := range []struct {
		err  error
		want string
	}{
		{notExist, "No such file or directory"},
		{notFound, "No such file or directory"},
		{&os.PathError{Op: "open", Path: "/x", Err: syscall.EACCES}, "Permission denied"},
		{&os.PathError{Op: "mkdir", Path: "/x", Err: syscall.EEXIST}, "File exists"},
		{syscall.ENOTDIR, "Not a directory"},
		{errors.New("not a system error"), "not a system error"},
		{errors.New(""), ""},
	} {
		if got := Text(c.err); got != c.want {
			t.Errorf("%v: %q, want %q", c.err, got, c.want)
		}
	}
}
