package rules

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"postern/mailbox/maildir"
)

// TestCompatCorpus plays every case of testdata/compat through the engine
// the way tools/maildrop-compat.sh runs Courier's maildrop, renders the
// outcome identically, and compares it with expected.txt — the record of
// what the real maildrop 2.9.3 did. A case whose behaviour deliberately
// differs carries postern-expected.txt (and a note in docs/rules.md).
func TestCompatCorpus(t *testing.T) {
	cases, err := os.ReadDir("testdata/compat")
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) < 30 {
		t.Fatalf("corpus has only %d cases", len(cases))
	}
	for _, c := range cases {
		name := c.Name()
		t.Run(name, func(t *testing.T) {
			src := filepath.Join("testdata/compat", name)
			want, err := os.ReadFile(filepath.Join(src, "postern-expected.txt"))
			if err != nil {
				if want, err = os.ReadFile(filepath.Join(src, "expected.txt")); err != nil {
					t.Fatal(err)
				}
			}
			got := runCompatCase(t, src)
			if got != string(want) {
				t.Errorf("outcome differs from maildrop's\n--- got\n%s\n--- want\n%s", got, want)
			}
		})
	}
}

func runCompatCase(t *testing.T, src string) string {
	t.Helper()
	work := t.TempDir()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() == "expected.txt" || e.Name() == "postern-expected.txt" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(work, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	root := filepath.Join(work, "Maildir")
	if err := maildir.Make(root); err != nil {
		t.Fatal(err)
	}
	md, err := maildir.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"Spam", "Lists", "Archive"} {
		if err := md.CreateFolder(f); err != nil {
			t.Fatal(err)
		}
	}
	var stdout bytes.Buffer
	code := runFilterLikeMaildrop(t, work, &stdout)
	return renderOutcome(t, work, code, stdout.String())
}

// runFilterLikeMaildrop is "maildrop ./filter < input.eml" in dir work.
func runFilterLikeMaildrop(t *testing.T, work string, stdout *bytes.Buffer) int {
	t.Helper()
	input, err := os.ReadFile(filepath.Join(work, "input.eml"))
	if err != nil {
		t.Fatal(err)
	}
	msg := NewMessage(input)
	src, err := os.ReadFile(filepath.Join(work, "filter"))
	if err != nil {
		t.Fatal(err)
	}
	prog, err := Parse("./filter", src)
	if err != nil {
		t.Logf("syntax error (maildrop: EX_TEMPFAIL): %v", err)
		return ExitTempFail
	}
	env := Env{
		Vars:    StandardVars(VarOptions{Home: work, Logname: "test", Default: "/var/mail/test", Hostname: "test", Filter: "./filter"}, msg),
		Environ: map[string]string{"PATH": "/usr/bin:/bin", "POSTERN_COMPAT": "imported"},
		Dir:     work,
		Stdout:  stdout,
		Run:     ExecCommand,
		Deliver: func(ctx context.Context, d Delivery) (int, error) {
			return deliverForTest(ctx, work, d)
		},
	}
	res, err := prog.Run(context.Background(), msg, env)
	if err != nil {
		t.Logf("run error: %v", err)
	}
	return res.ExitCode
}

// deliverForTest gives destinations maildrop's meaning: "|cmd" runs a
// command with the message on stdin, a directory is a maildir (a
// Maildir++ folder when it holds maildirfolder), anything else is refused.
func deliverForTest(ctx context.Context, work string, d Delivery) (int, error) {
	dest := strings.TrimSpace(d.Dest)
	if strings.HasPrefix(dest, "|") {
		res, err := ExecCommand(ctx, Command{Kind: "pipe", Cmd: strings.TrimSpace(dest[1:]), Shell: "/bin/sh", Dir: work, Env: []string{"PATH=/usr/bin:/bin"}, Stdin: d.Message.Output()})
		return res.Code, err
	}
	path := dest
	if !filepath.IsAbs(path) {
		path = filepath.Join(work, path)
	}
	path = filepath.Clean(path)
	st, err := os.Stat(path)
	if err != nil || !st.IsDir() {
		return 0, fmt.Errorf("%s: not a maildir (mbox delivery is not part of this test)", dest)
	}
	root, folder := path, maildir.Inbox
	if _, err := os.Stat(filepath.Join(path, "maildirfolder")); err == nil {
		root, folder = filepath.Dir(path), strings.TrimPrefix(filepath.Base(path), ".")
	}
	md, err := maildir.Open(root)
	if err != nil {
		return 0, err
	}
	flags := []byte(strings.ToUpper(d.Flags))
	sort.Slice(flags, func(i, j int) bool { return flags[i] < flags[j] })
	_, err = md.Deliver(folder, bytes.NewReader(d.Message.Output()), maildir.DeliverOptions{Flags: string(flags)})
	return 0, err
}

var skipNames = regexp.MustCompile(`^(.*\.db|maildirfolder|maildirsize|courierimap.*|dovecot.*)$`)

// renderOutcome mirrors render() in tools/maildrop-compat.sh.
func renderOutcome(t *testing.T, work string, code int, stdout string) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "exit: %d\n--- stdout\n%s--- log\n", code, stdout)
	if logData, err := os.ReadFile(filepath.Join(work, "log.txt")); err == nil {
		b.WriteString(regexp.MustCompile(`(?m)^Date: .*$`).ReplaceAllString(string(logData), "Date: *"))
	}
	b.WriteString("--- files\n")
	var lines []string
	err := filepath.WalkDir(work, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(work, p)
		dir := filepath.Dir(rel)
		switch {
		case rel == "filter" || rel == "input.eml" || rel == "log.txt":
			return nil
		case filepath.Base(dir) == "tmp" || skipNames.MatchString(e.Name()):
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		if base := filepath.Base(dir); base == "new" || base == "cur" {
			info := ""
			if i := strings.Index(e.Name(), ":2,"); i >= 0 {
				info = e.Name()[i:]
			}
			rel = dir + "/MSG" + info
		}
		lines = append(lines, fmt.Sprintf("%s %d %s", rel, len(data), hex.EncodeToString(sum[:])[:16]))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	for _, l := range lines {
		b.WriteString(l + "\n")
	}
	return b.String()
}
