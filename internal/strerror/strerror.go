// Package strerror words an error as the C library's strerror(3) does,
// for the tools that reproduce Courier's messages ("DIR: No such file or
// directory"): the path or program of a *os.PathError or *exec.Error is
// dropped, a system error number is given its capitalised text; any other
// error is its own text.
package strerror

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
	"unicode"
	"unicode/utf8"
)

// Text is err as strerror(3) would word it.
func Text(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	var ee *exec.Error
	if errors.As(err, &ee) {
		err = ee.Err
	}
	switch {
	case errors.Is(err, os.ErrNotExist), errors.Is(err, exec.ErrNotFound):
		return "No such file or directory"
	case errors.Is(err, os.ErrPermission):
		return "Permission denied"
	}
	var en syscall.Errno
	if errors.As(err, &en) {
		return capitalize(en.Error())
	}
	return err.Error()
}

func capitalize(s string) string {
	r, n := utf8.DecodeRuneInString(s)
	if n == 0 || !unicode.IsLower(r) {
		return s
	}
	return string(unicode.ToUpper(r)) + s[n:]
}
