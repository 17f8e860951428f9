package deliver

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"postern/mailbox/maildir"
)

// The differential tests run each case through Courier's real maildrop
// (Debian's maildrop 2.9.3, /usr/bin/maildrop) and through Postern's
// "postern maildrop" (this test binary re-executed, see TestMain), in
// manual mode: "maildrop ./filter ARG... < message", in a scratch
// directory holding a Maildir with folders .Spam, .Lists and .Archive,
// the filter (mode 0600) and the case's extra files, with only the case's
// environment (env -i). Both run as the test's user; maildrop's manual
// mode needs no system account, and runs as root too.
//
// The outcome compared: the exit code, standard output, standard error
// (only for cases that ask, with the scratch directory's path replaced by
// DIR), and every file left in the scratch directory — maildir messages by
// folder and flags with their bytes (the unique file names normalised to
// MSG), log files with their "Date:" lines masked, mbox files with the
// date of their "From " lines masked, and the record a fake $SENDMAIL
// writes. Nothing else is normalised.
//
// Courier's maildrop is found with exec.LookPath; without it the tests
// skip. Manual mode reads HOME and SHELL from the password file and its
// default DEFAULT is /var/mail/$LOGNAME, so every case that can reach the
// default delivery sets DEFAULT itself, and the test fails if the
// invoking user's mail spool changed.

type diffCase struct {
	name   string
	filter string
	msg    string            // the message; testMsg when empty
	opts   []string          // maildrop options before the filter file
	args   []string          // arguments after the filter file ($1, $2, ...)
	files  map[string]string // extra files in the scratch directory
	env    []string          // the environment besides PATH
	stderr bool              // compare standard error too
	// deliberate names a difference kept on purpose (documented in
	// docs/maildrop.md, DIFFERENCES FROM COURIER); adjust turns Courier's
	// outcome into the one Postern must produce.
	deliberate string
	adjust     func(courier string) string
}

const diffMsg = "Return-Path: <bob@example.org>\n" +
	"From: Bob Smith <bob@example.org>\n" +
	"To: Alice <alice@example.test>, carol@example.test\n" +
	"Cc: \"Dave D.\" <dave@example.net>\n" +
	"Subject: Hello there\n" +
	"Message-ID: <1@example.org>\n" +
	"X-Spam-Score: 7.5\n" +
	"\n" +
	"Hi Alice,\n" +
	"From the desk of Bob.\n" +
	"The lottery numbers are 4 8 15 16 23 42.\n"

func courierMaildrop(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("maildrop")
	if err != nil {
		t.Skip("Courier's maildrop is not installed (apt-get install maildrop)")
	}
	// Postern's own binary may be installed as "maildrop"; Courier's
	// names its copyright holder.
	out, _ := exec.Command(p, "-v").CombinedOutput()
	if !bytes.Contains(out, []byte("Double Precision")) {
		t.Skipf("%s is not Courier's maildrop: %q", p, out)
	}
	return p
}

func runDiffCases(t *testing.T, cases []diffCase) {
	courier := courierMaildrop(t)
	spool := userSpool()
	before := fileState(spool)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want := runOneImpl(t, c, []string{courier})
			got := runOneImpl(t, c, []string{os.Args[0]}, "POSTERN_DELIVER_TEST_MAILDROP=1")
			if c.adjust != nil {
				adjusted := c.adjust(want)
				if adjusted == want {
					t.Fatalf("deliberate difference %q: adjust changed nothing in Courier's outcome:\n%s", c.deliberate, want)
				}
				want = adjusted
			}
			if got != want {
				t.Errorf("Postern's maildrop differs from Courier's\n--- filter\n%s\n--- postern\n%s--- courier\n%s", c.filter, got, want)
			}
		})
	}
	if after := fileState(spool); after != before {
		t.Errorf("%s changed during the tests: a case reached maildrop's default DEFAULT", spool)
	}
}

func userSpool() string {
	name := os.Getenv("USER")
	if out, err := exec.Command("id", "-un").Output(); err == nil {
		name = strings.TrimSpace(string(out))
	}
	return "/var/mail/" + name
}

func fileState(p string) string {
	st, err := os.Stat(p)
	if err != nil {
		return "absent"
	}
	return fmt.Sprintf("%d %v", st.Size(), st.ModTime())
}

// runOneImpl runs one implementation on the case in a fresh scratch
// directory and renders the outcome.
func runOneImpl(t *testing.T, c diffCase, argv []string, extraEnv ...string) string {
	t.Helper()
	dir := t.TempDir()
	root := filepath.Join(dir, "Maildir")
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
	if err := os.WriteFile(filepath.Join(dir, "filter"), []byte(c.filter), 0o600); err != nil {
		t.Fatal(err)
	}
	// A sendmail that records how it was called, for "!" forwards.
	recorder := "#!/bin/sh\n{ echo \"argv: $*\"; cat; echo \"--- end\"; } >> sendmail.out\n"
	if err := os.WriteFile(filepath.Join(dir, "sendmail"), []byte(recorder), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range c.files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o600)
		if strings.HasSuffix(name, ".sh") {
			mode = 0o700
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
	msg := c.msg
	if msg == "" {
		msg = diffMsg
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	args := append(append(append([]string{}, argv[1:]...), c.opts...), "./filter")
	args = append(args, c.args...)
	cmd := exec.CommandContext(ctx, argv[0], args...)
	cmd.Dir = dir
	cmd.Env = append(append([]string{"PATH=/usr/bin:/bin"}, c.env...), extraEnv...)
	cmd.Stdin = strings.NewReader(msg)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("%s: %v", argv[0], err)
		}
		code = ee.ExitCode()
	}
	if ctx.Err() != nil {
		t.Fatalf("%s: timed out", argv[0])
	}
	var b strings.Builder
	fmt.Fprintf(&b, "exit: %d\n--- stdout\n%s", code, stdout.String())
	if c.stderr {
		fmt.Fprintf(&b, "--- stderr\n%s", strings.ReplaceAll(stderr.String(), dir, "DIR"))
	}
	b.WriteString(renderFiles(t, dir, c))
	return b.String()
}

var (
	logDate  = regexp.MustCompile(`(?m)^Date: .*$`)
	mboxFrom = regexp.MustCompile(`(?m)^(From \S+) .*$`)
)

// renderFiles lists what is left in dir besides the case's own files.
func renderFiles(t *testing.T, dir string, c diffCase) string {
	t.Helper()
	var parts []string
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		parent := filepath.Base(filepath.Dir(rel))
		switch {
		case rel == "filter" || rel == "sendmail":
			return nil
		case parent == "tmp", e.Name() == "maildirfolder", e.Name() == "maildirsize",
			strings.HasPrefix(e.Name(), "courierimap"):
			return nil
		}
		if _, own := c.files[rel]; own {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		text := string(data)
		switch {
		case parent == "new" || parent == "cur":
			info := ""
			if i := strings.Index(e.Name(), ":2,"); i >= 0 {
				info = e.Name()[i:]
			}
			rel = filepath.Dir(rel) + "/MSG" + info
		case strings.HasSuffix(rel, ".log"):
			text = logDate.ReplaceAllString(text, "Date: *")
		case strings.HasSuffix(rel, "mbox"):
			text = mboxFrom.ReplaceAllString(text, "$1 DATE")
		}
		if len(text) > 4096 {
			sum := sha256.Sum256([]byte(text))
			text = fmt.Sprintf("%d bytes, sha256 %s\n", len(text), hex.EncodeToString(sum[:]))
		}
		parts = append(parts, fmt.Sprintf("--- file %s\n%s", rel, text))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(parts)
	return strings.Join(parts, "")
}

func TestDifferentialBasics(t *testing.T) {
	runDiffCases(t, []diffCase{
		{name: "to-inbox", filter: "to ./Maildir/\n"},
		{name: "to-folder", filter: "to \"./Maildir/.Spam/\"\n"},
		{name: "to-folder-noslash", filter: "to Maildir/.Lists\n"},
		{name: "default-var", filter: "DEFAULT=./Maildir/.Archive/\n"},
		{name: "cc-then-to", filter: "cc ./Maildir/.Spam/\nto ./Maildir/\n"},
		{name: "to-mbox", filter: "to ./mbox\n"},
		{name: "exit-discards", filter: "exit\n"},
		{name: "exitcode", filter: "EXITCODE=9\nexit\n"},
		{name: "echo", filter: "echo \"hello $SIZE $LINES $FROM\"\nexit\n"},
	})
}
