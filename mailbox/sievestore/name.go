package sievestore

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// MaxNameLength is the longest script name ValidName accepts, in octets:
// RFC 5804 section 1.6 asks servers to allow 128 Unicode characters, which
// take up to 512 octets in UTF-8.
const MaxNameLength = 512

// maxFileNameLength is NAME_MAX on Linux file systems; a script is stored
// as NAME.sieve, so its name can be at most this less the suffix.
const maxFileNameLength = 255

// scriptSuffix is the file-name ending of a stored script (Pigeonhole's).
const scriptSuffix = ".sieve"

// ErrBadName is wrapped by every error about a script name that cannot be
// used; the message says why.
var ErrBadName = errors.New("invalid script name")

// ValidName checks a script name against RFC 5804 section 1.6: UTF-8 text
// of 1 to MaxNameLength octets without the control characters U+0000 to
// U+001F, U+007F, U+0080 to U+009F, LINE SEPARATOR (U+2028) and PARAGRAPH
// SEPARATOR (U+2029). Because a name is also a file name, it may not
// contain "/" nor start with "." (so "..", ".dovecot" and hidden files
// are out). The empty name is refused here: only SETACTIVE gives it a
// meaning (no script active). Names are compared octet by octet, as
// Pigeonhole does; they are not Unicode-normalized.
func ValidName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: the name is empty", ErrBadName)
	case len(name) > MaxNameLength:
		return fmt.Errorf("%w: the name is %d octets long, at most %d are allowed", ErrBadName, len(name), MaxNameLength)
	case !utf8.ValidString(name):
		return fmt.Errorf("%w: the name is not valid UTF-8", ErrBadName)
	case name[0] == '.':
		return fmt.Errorf("%w: the name may not start with \".\"", ErrBadName)
	case strings.ContainsRune(name, '/'):
		return fmt.Errorf("%w: the name may not contain \"/\"", ErrBadName)
	}
	for i, r := range name {
		if forbiddenInName(r) {
			return fmt.Errorf("%w: control character U+%04X at octet %d", ErrBadName, r, i+1)
		}
	}
	return nil
}

// forbiddenInName reports the characters RFC 5804 section 1.6 excludes
// from script names.
func forbiddenInName(r rune) bool {
	return r <= 0x1f || (r >= 0x7f && r <= 0x9f) || r == 0x2028 || r == 0x2029
}

// storableName is ValidName plus the file system's own limit: NAME.sieve
// must fit in one directory entry.
func storableName(name string) error {
	if err := ValidName(name); err != nil {
		return err
	}
	if max := maxFileNameLength - len(scriptSuffix); len(name) > max {
		return fmt.Errorf("%w: the name is %d octets long, this server stores names of at most %d", ErrBadName, len(name), max)
	}
	return nil
}

// nameOfFile returns the script name a directory entry of the storage
// holds, and false for anything that is not a script (compiled binaries,
// temporary files, hidden files).
func nameOfFile(file string) (string, bool) {
	name, ok := strings.CutSuffix(file, scriptSuffix)
	if !ok || storableName(name) != nil {
		return "", false
	}
	return name, true
}
