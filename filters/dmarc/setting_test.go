package dmarc_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"postern/filters/dmarc"
	"postern/policy"
)

func TestLoadOptions(t *testing.T) {
	dir := t.TempDir()
	opts, err := dmarc.LoadOptions(dir)
	if err != nil || opts.TempFail || opts.Override != nil {
		t.Fatalf("absent setting: %+v, %v", opts, err)
	}
	os.WriteFile(filepath.Join(dir, "dmarc"), []byte(`# local DMARC policy
override reject quarantine
tempfail
rejectbadfrom
checkauthenticated
timeout 5s
score fail 3.5
`), 0o644)
	opts, err = dmarc.LoadOptions(dir)
	if err != nil {
		t.Fatal(err)
	}
	if opts.Override[dmarc.PolicyReject] != dmarc.PolicyQuarantine || !opts.TempFail || !opts.RejectBadFrom ||
		!opts.CheckAuthenticated || opts.Timeout != 5*time.Second || opts.Scores.Fail != 3.5 || opts.Scores.Pass != dmarc.DefaultScores.Pass {
		t.Errorf("options %+v scores %+v", opts, opts.Scores)
	}

	os.WriteFile(filepath.Join(dir, "dmarc"), []byte("override reject drop\ntempfail now\nscore fail lots\nscore maybe 1\ntimeout forever\nfrobnicate\n"), 0o644)
	_, err = dmarc.LoadOptions(dir)
	var pe *policy.Error
	if !errors.As(err, &pe) {
		t.Fatalf("got %v, want *policy.Error", err)
	}
	for _, want := range []string{"dmarc:1:", "dmarc:2:", "dmarc:3:", "dmarc:4:", "dmarc:5:", "dmarc:6:"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %s:\n%v", want, err)
		}
	}
}
