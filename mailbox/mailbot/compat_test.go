package mailbot

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

var addressingField = regexp.MustCompile(`^((To|Cc|Subject|In-Reply-To|References|Auto-Submitted|Precedence):| )`)

// TestCompatCorpus replays the cases recorded from Debian's mailbot by
// tools/reformail-compat.sh: the same decision to answer, the same exit
// status and the same addressing fields.
func TestCompatCorpus(t *testing.T) {
	dirs, err := filepath.Glob("testdata/compat/*")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no corpus: %v", err)
	}
	root, _ := os.Getwd()
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			dir := filepath.Join(root, dir)
			read := func(name string) string {
				b, err := os.ReadFile(filepath.Join(dir, name))
				if err != nil {
					t.Fatal(err)
				}
				return string(b)
			}
			args := []string{"-n"}
			if a := strings.TrimSuffix(read("args"), "\n"); a != "" {
				args = append(args, strings.Split(a, "\n")...)
			}
			wantExit, _ := strconv.Atoi(strings.TrimSpace(read("expected-exit")))
			work := t.TempDir()
			if err := os.CopyFS(work, os.DirFS(filepath.Join(dir, "files"))); err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
			t.Chdir(work)
			var out, errOut bytes.Buffer
			cfg := Config{Now: time.Now, Location: time.UTC, Environ: []string{"PATH=/usr/bin:/bin"}}
			code := Run(context.Background(), cfg, args, strings.NewReader(read("input")), &out, &errOut)
			if code != wantExit {
				t.Errorf("exit %d, want %d (%s)", code, wantExit, errOut.String())
			}
			head, _, _ := strings.Cut(out.String(), "\n\n")
			var got strings.Builder
			for _, line := range strings.Split(head, "\n") {
				if line != "" && addressingField.MatchString(line) {
					got.WriteString(line + "\n")
				}
			}
			if want := read("expected-headers"); got.String() != want {
				t.Errorf("got\n%s\nwant\n%s", got.String(), want)
			}
		})
	}
}
