package admin

import (
	"errors"
	"fmt"
	"strings"

	"postern/policy"
)

// maxDropInName bounds the name of a file in a setting directory.
const maxDropInName = 100

// checkDropInName refuses a file name for a setting directory that could
// leave it ("../x", "a/b"), that the server would skip (".hidden",
// "x~", "x.bak", "x.dpkg-new"; policy.SkippedSettingFile), or that an
// admin could not read back in a listing: only letters, digits and
// "._-+@" are taken, which every packaging habit (10-local, 50-spam.conf)
// fits.
func checkDropInName(name string) error {
	switch {
	case name == "":
		return errors.New("a file name is needed")
	case len(name) > maxDropInName:
		return fmt.Errorf("file name longer than %d bytes", maxDropInName)
	case strings.HasPrefix(name, "."):
		return fmt.Errorf("file name %q starts with a dot: the server skips such files", name)
	}
	for _, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._-+@", r)
		if !ok {
			return fmt.Errorf("file name %q: only letters, digits and . _ - + @ are allowed", name)
		}
	}
	if policy.SkippedSettingFile(name) {
		return fmt.Errorf("file name %q: the server skips files named so (editor and package leftovers)", name)
	}
	return nil
}
