//go:build !pam || !cgo

package pamauth

import (
	"strings"
	"testing"
)

// TestWithoutPAM: a binary built without PAM says how to get it.
func TestWithoutPAM(t *testing.T) {
	if _, err := Open(Config{}, nil); err == nil || !strings.Contains(err.Error(), "libpam0g-dev") {
		t.Errorf("Open without PAM: %v", err)
	}
}
