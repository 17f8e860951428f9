package maildir

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"postern/internal/couriertest"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// Differential tests of MaildirkwMain against Courier's maildirkw
// (courier-base 1.0.16; skipped when it is not installed): the same
// commands on two copies of a Maildir must give the same output, exit
// status and keyword store. Normalised, because they are Courier's by
// design: the order of -L's lines and of :list (Courier's hash order; the
// sets are compared), and the time unit in ".N.KEY" names.

type kwRun struct {
	stdout, stderr string
	code           int
}

func runCourierKw(t *testing.T, bin string, args ...string) kwRun {
	t.Helper()
	o, e, code := couriertest.Run(t, bin, args...)
	return kwRun{o, e, code}
}

func runPosternKw(args ...string) kwRun {
	var o, e bytes.Buffer
	code := MaildirkwMain(args, &o, &e)
	return kwRun{o.String(), e.String(), code}
}

func sortedLines(s string) string {
	l := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	slices.Sort(l)
	return strings.Join(l, "\n")
}

var dotN = regexp.MustCompile(`^\.[0-9]+\.`)

// kwState is the keyword store's files (".N." normalised) with the
// contents of update files, and the merged sets.
func kwState(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	entries, _ := os.ReadDir(filepath.Join(dir, courierKwDir))
	for _, e := range entries {
		if e.Name() == ":list" {
			fmt.Fprintf(&b, ":list\n")
			continue
		}
		data, _ := os.ReadFile(filepath.Join(dir, courierKwDir, e.Name()))
		fmt.Fprintf(&b, "%s = %q\n", dotN.ReplaceAllString(e.Name(), ".N."), data)
	}
	ck, err := ReadCourierKeywords(dir, false, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	keys := slices.Clone(ck.Order)
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "set %s %q\n", k, ck.Sets[k])
	}
	tmp, _ := os.ReadDir(filepath.Join(dir, "tmp"))
	fmt.Fprintf(&b, "tmp/ holds %d\n", len(tmp))
	return b.String()
}

func TestMaildirkwAgainstCourier(t *testing.T) {
	bin, err := exec.LookPath("maildirkw")
	if err != nil {
		t.Skip("Courier's maildirkw is not installed")
	}
	base := t.TempDir()
	courier, ours := filepath.Join(base, "courier"), filepath.Join(base, "ours")
	for _, d := range []string{courier, ours} {
		if err := Make(d); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(d, "cur", "100.A.h,S=2:2,S"), []byte("x\n"), 0o600)
		os.WriteFile(filepath.Join(d, "new", "101.B.h,S=2"), []byte("y\n"), 0o600)
	}
	steps := [][]string{
		{"-L", "MD"},
		{"MD", "100.A.h,S=2:2,S", "Work", "$Label1"},
		{"MD", "101.B.h,S=2", "zed", "Alpha"},
		{"-L", "MD"},
		{"-a", "MD", "100.A.h,S=2", "Later", "Work"},
		{"-r", "MD", "101.B.h,S=2", "zed", "missing"},
		{"-L", "MD"},
		{"MD", "101.B.h,S=2"},
		{"-c", "-L", "MD"},
		{"-l", "MD", "102.C.h", "one"},
		{"-L", "MD"},
		{"-x", "MD", "K", "x"},
		{"MD"},
		{"-L"},
		{},
		{"-L", filepath.Join(base, "nonexistent")},
		{filepath.Join(base, "nonexistent"), "K", "x"},
	}
	for _, step := range steps {
		args := func(md string) []string { return couriertest.Fill(step, "MD", md) }
		want := runCourierKw(t, bin, args(courier)...)
		got := runPosternKw(args(ours)...)
		want.stderr = strings.ReplaceAll(strings.ReplaceAll(want.stderr, courier, "MD"), bin+":", "maildirkw:")
		got.stderr = strings.ReplaceAll(got.stderr, ours, "MD")
		want.stdout, got.stdout = sortedLines(want.stdout), sortedLines(got.stdout)
		if want != got {
			t.Errorf("maildirkw %q:\n courier %+v\n postern %+v", step, want, got)
		}
		if w, g := kwState(t, courier), kwState(t, ours); w != g {
			t.Errorf("after maildirkw %q, stores differ:\n courier:\n%s postern:\n%s", step, w, g)
		}
	}
}
