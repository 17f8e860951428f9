package reformime

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// goldenName is NAME-OPTION.out or NAME-e-s-SECTION.out (see
// testdata/golden/README: outputs of Courier's reformime 2.9.3).
var goldenName = regexp.MustCompile(`^(.+?)(-e-s-([0-9.]+)|-(i|r7|r8|u|D))\.out$`)

// TestGolden checks our output against Courier's, recorded, so that it
// runs where Courier is not installed.
func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/golden/*.out")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	for _, f := range files {
		m := goldenName.FindStringSubmatch(filepath.Base(f))
		if m == nil {
			t.Fatalf("%s: unexpected name", f)
		}
		args := []string{"-" + m[4]}
		if m[3] != "" {
			args = []string{"-e", "-s", m[3]}
		}
		msg, err := os.ReadFile(filepath.Join("testdata/corpus", m[1]+".eml"))
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var out, errb bytes.Buffer
		cfg := Config{Env: []string{"LANG=C.UTF-8"}, Now: time.Now, Hostname: "test.example", PID: 1}
		Run(context.Background(), cfg, args, bytes.NewReader(msg), &out, &errb)
		if got := normalize(out.Bytes()); !bytes.Equal(got, want) {
			t.Errorf("reformime %s < %s.eml:\ngot:  %q\nwant: %q", strings.Join(args, " "), m[1], got, want)
		}
	}
}

// TestExtractErrors covers what Courier's reformime crashes on (so the
// differential tests cannot compare): a missing program for -X, a missing
// section for -x, -x and -X with no -s (every leaf section is extracted).
func TestExtractErrors(t *testing.T) {
	msg, err := os.ReadFile("testdata/corpus/nested.eml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	run := func(args ...string) (string, string, int) {
		var out, errb bytes.Buffer
		cfg := Config{Env: []string{"LANG=C.UTF-8"}, Now: func() time.Time { return time.Unix(1700000000, 0) }, Hostname: "h", PID: 7, Dir: dir}
		code := Run(context.Background(), cfg, args, bytes.NewReader(msg), &out, &errb)
		return out.String(), errb.String(), code
	}
	if _, errs, code := run("-s", "1.1", "-X", "/nonexistent/program"); code != 21 || errs != "exec: No such file or directory\nreformime: /nonexistent/program exited with status 1.\n" {
		t.Errorf("-X missing program: exit %d, stderr %q", code, errs)
	}
	if _, errs, code := run("-s", "1.9", "-xp-"); code != 1 || errs != "reformime: MIME section 1.9 not found.\n" {
		t.Errorf("-x missing section: exit %d, stderr %q", code, errs)
	}
	if out, _, code := run("-X", "/bin/sh", "-c", `echo "$CONTENT_TYPE $FILENAME"`); code != 0 ||
		out != "text/plain 1700000000.7-0.h\napplication/octet-stream file_one.txt\ntext/plain 1700000000.7-1.h\n" {
		t.Errorf("-X on every section: exit %d, stdout %q", code, out)
	}
	if _, _, code := run("-xall-"); code != 0 {
		t.Errorf("-x on every section: exit %d", code)
	}
	names, _ := filepath.Glob(filepath.Join(dir, "all-*"))
	if len(names) != 3 {
		t.Errorf("-x on every section wrote %v, want the three leaf sections", names)
	}
	if _, _, code := run("-e"); code != 0 {
		t.Errorf("-e with no -s: exit %d", code)
	}
}

// TestInteractiveExtract: -x without a prefix asks for each section and
// saves the ones answered "y", under the name given or the default.
func TestInteractiveExtract(t *testing.T) {
	msg, err := os.ReadFile("testdata/corpus/nested.eml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var out, errb bytes.Buffer
	cfg := Config{Env: []string{"LANG=C.UTF-8"}, Now: func() time.Time { return time.Unix(1700000000, 0) }, Hostname: "h", PID: 7, Dir: dir,
		TTY: strings.NewReader("y\n\ny\nmyname\nn\n")}
	if code := Run(context.Background(), cfg, []string{"-s", "1.1,1.2,1.3.1", "-x"}, bytes.NewReader(msg), &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	want := "Extract text/plain? Filename [1700000000.7-0.h]: Extract application/octet-stream? Filename [file_one.txt]: Extract text/plain? "
	if out.String() != want {
		t.Errorf("prompts %q, want %q", out.String(), want)
	}
	for name, content := range map[string]string{"1700000000.7-0.h": "Hello é world\nsecond line", "myname": "hello world\n"} {
		if b, err := os.ReadFile(filepath.Join(dir, name)); err != nil || string(b) != content {
			t.Errorf("%s: %q, %v", name, b, err)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Errorf("%d files written, want 2", len(entries))
	}
}
