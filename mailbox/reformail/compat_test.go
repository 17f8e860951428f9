package reformail

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

// The masks tools/reformail-compat.sh applies to Courier's output.
var (
	maskFromDate  = regexp.MustCompile(`(?m)^(>*From [^ ]+) [A-Z][a-z]{2} [A-Z][a-z]{2} [ 0-9][0-9] [0-9]{2}:[0-9]{2}:[0-9]{2} [0-9]{4}(\r?)$`)
	maskMessageID = regexp.MustCompile(`<[0-9A-F]{16}\.[0-9A-F]{16}\.reformail@[^>]*>`)
)

func maskOutput(b []byte) []byte {
	b = maskFromDate.ReplaceAll(b, []byte("$1 DATE$2"))
	return maskMessageID.ReplaceAll(b, []byte("<MSGID>"))
}

// TestCompatCorpus replays every case recorded from Courier's reformail by
// tools/reformail-compat.sh and expects the same output and exit status.
func TestCompatCorpus(t *testing.T) {
	dirs, err := filepath.Glob("testdata/compat/*")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no corpus: %v", err)
	}
	root, _ := os.Getwd()
	for _, dir := range dirs {
		name := filepath.Base(dir)
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(root, dir)
			args := readArgs(t, filepath.Join(dir, "args"))
			input, err := os.ReadFile(filepath.Join(dir, "input"))
			if err != nil {
				t.Fatal(err)
			}
			wantOut, err := os.ReadFile(filepath.Join(dir, "expected-stdout"))
			if err != nil {
				t.Fatal(err)
			}
			wantExitText, err := os.ReadFile(filepath.Join(dir, "expected-exit"))
			if err != nil {
				t.Fatal(err)
			}
			wantExit, _ := strconv.Atoi(strings.TrimSpace(string(wantExitText)))

			work := t.TempDir()
			if err := os.CopyFS(work, os.DirFS(filepath.Join(dir, "files"))); err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
			t.Chdir(work)
			cfg := Config{Env: []string{"PATH=/usr/bin:/bin"}, Now: time.Now, Hostname: "test.example", PID: 4242}
			var stdout, stderr bytes.Buffer
			got := Run(context.Background(), cfg, args, bytes.NewReader(input), &stdout, &stderr)
			if got != wantExit {
				t.Errorf("exit %d, want %d (stderr %q)", got, wantExit, stderr.String())
			}
			if out := maskOutput(stdout.Bytes()); !bytes.Equal(out, wantOut) {
				t.Errorf("args %q\n--- got\n%s\n--- want\n%s", args, out, wantOut)
			}
		})
	}
}

func readArgs(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.TrimSuffix(string(b), "\n")
	if text == "" {
		return nil
	}
	return strings.Split(text, "\n")
}
