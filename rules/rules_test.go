package rules

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const testMessage = "From: Alice <alice@example.org>\nTo: bob@example.net\nSubject: hello world\n\nbody text\n"

// run parses src and runs it on testMessage with deliveries recorded.
func run(t *testing.T, src string, lim Limits, mod func(*Env)) (Result, string, error) {
	t.Helper()
	prog, err := Parse("test.rules", []byte(src))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	var out bytes.Buffer
	env := Env{
		Vars:   map[string]string{"DEFAULT": "./Maildir"},
		Dir:    t.TempDir(),
		Stdout: &out,
		Limits: lim,
		Deliver: func(ctx context.Context, d Delivery) (int, error) {
			return 0, nil
		},
	}
	if mod != nil {
		mod(&env)
	}
	res, err := prog.Run(context.Background(), NewMessage([]byte(testMessage)), env)
	return res, out.String(), err
}

func TestSyntaxErrorsNameFileLineColumn(t *testing.T) {
	tests := []struct {
		src       string
		line, col int
		msg       string
	}{
		{"A=1\nif (/x/\n{\n}\n", 2, 8, `expected ")"`},
		{"echo \"unterminated\n", 1, 6, "unterminated"},
		{"if (1 < 2 < 3)\n{\n}\n", 1, 11, "not associative"},
		{"foo(\n", 1, 4, "unexpected"},
		{"A=/x/:q\n", 0, 0, ""}, // after "=", text starting with "/" is a word: no error
		{"if (/a(?=b)/)\n{\n}\n", 1, 5, "lookahead"},
		{"if (/(a)\\1/)\n{\n}\n", 1, 5, "backreference"},
		{"}\n", 1, 1, `unexpected "}"`},
		{"else\n", 1, 1, "without a matching if"},
		{"substr(\"a\")\n", 1, 1, "takes 2 to 3 arguments"},
		{"if (1)\n{\n", 3, 1, `missing "}"`},
	}
	for _, tc := range tests {
		_, err := Parse("f.rules", []byte(tc.src))
		if tc.msg == "" {
			if err != nil {
				t.Errorf("%q: unexpected error %v", tc.src, err)
			}
			continue
		}
		var se *SyntaxError
		if !errors.As(err, &se) {
			t.Errorf("%q: want *SyntaxError, got %v", tc.src, err)
			continue
		}
		if se.File != "f.rules" || se.Line != tc.line || se.Col != tc.col || !strings.Contains(se.Msg, tc.msg) {
			t.Errorf("%q: got %s, want f.rules:%d:%d: ...%s...", tc.src, se, tc.line, tc.col, tc.msg)
		}
	}
}

// Pattern options as maildrop 2.9.3 reads them (checked with Debian's
// maildrop 2.9.3; mailbox/deliver's differential tests compare live): w
// alone is header and body, any other unknown letter is ignored.
func TestPatternOptionsAsMaildrop293(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"echo (/^body/:w)\n", "2\n"},
		{"echo (/^body/:hw)\n", "0\n"},
		{"echo (/^from:/:bw)\n", "0\n"},
		{"echo (/^body/:H)\n", "0\n"},
		{"echo (/^from:/:Bq)\n", "2\n"},
		{"echo (/o/:w,1,2)\n", "15\n"},
		{"echo (/o/:hb1,2)\n", "15\n"}, // the weight right after the letters
		{"echo (/o/:3)\n", "9\n"},
	} {
		_, out, err := run(t, tc.src+"exit\n", Limits{}, nil)
		if err != nil || out != tc.want {
			t.Errorf("%q: got %q, %v; want %q", tc.src, out, err, tc.want)
		}
	}
}

// A pattern that is not a regular expression does not stop the file, as
// in maildrop 2.9.3: it is reported on Stderr and does not match; "rules
// check" lists it as a warning.
func TestInvalidRegexDoesNotMatchAndIsReported(t *testing.T) {
	var errOut bytes.Buffer
	src := "if (/([a-z/)\n{\n  echo yes\n}\nP=\"(\"\nif (/$P/:b)\n{\n  echo yes\n}\necho after\nexit\n"
	prog, err := Parse("test.rules", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if len(prog.Warnings) != 1 || !strings.HasPrefix(prog.Warnings[0], "1:5: invalid pattern /([a-z/") {
		t.Errorf("warnings %q", prog.Warnings)
	}
	_, out, err := run(t, src, Limits{}, func(e *Env) { e.Stderr = &errOut })
	if err != nil || out != "after\n" {
		t.Errorf("got %q, %v; want after", out, err)
	}
	if n := strings.Count(errOut.String(), "the pattern does not match"); n != 2 ||
		!strings.Contains(errOut.String(), "test.rules:1: invalid pattern") || !strings.Contains(errOut.String(), "test.rules:6: invalid pattern /(/") {
		t.Errorf("stderr %q", errOut.String())
	}
}

func TestHostileFiltersAreStoppedByLimits(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "loop.rules"), []byte("include \"loop.rules\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		src  string
		lim  Limits
	}{
		{"endless while", "while (1)\n{\n  A=1\n}\n", Limits{MaxSteps: 10000}},
		{"include cycle", "include \"loop.rules\"\n", Limits{}},
		{"giant string", "A=x\nwhile (1)\n{\n  A=\"$A$A\"\n}\n", Limits{MaxVarSize: 1 << 16}},
		{"huge regex", "R=\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"\nR=\"$R$R$R$R$R$R$R$R$R$R$R$R\"\nif (/$R$R$R/)\n{\n}\n", Limits{MaxRegexSize: 1000}},
		{"too many deliveries", "while (1)\n{\n  cc ./Maildir\n}\n", Limits{MaxDeliveries: 5}},
		{"timeout", "while (1)\n{\n  A=1\n}\n", Limits{MaxSteps: 1 << 40, Timeout: 100 * time.Millisecond}},
		{"limit not caught by exception", "exception {\n  while (1)\n  {\n    A=1\n  }\n}\n", Limits{MaxSteps: 1000}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			res, _, err := run(t, tc.src, tc.lim, func(e *Env) { e.Dir = dir })
			if !errors.Is(err, ErrLimit) {
				t.Fatalf("want ErrLimit, got %v", err)
			}
			if res.ExitCode != ExitTempFail {
				t.Errorf("exit code %d, want 75", res.ExitCode)
			}
			var re *RuntimeError
			if !errors.As(err, &re) || re.Line == 0 {
				t.Errorf("error %v does not name a line", err)
			}
			if time.Since(start) > 10*time.Second {
				t.Errorf("took %v", time.Since(start))
			}
		})
	}
}

func TestToEndsTheFilterAndExitCodes(t *testing.T) {
	var got []string
	res, out, err := run(t, "EXITCODE=7\ncc ./Maildir/.A\nto ./Maildir/.B\necho \"not reached\"\n", Limits{}, func(e *Env) {
		e.Deliver = func(ctx context.Context, d Delivery) (int, error) {
			got = append(got, d.Kind+" "+d.Dest)
			return 0, nil
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, ",") != "cc ./Maildir/.A,to ./Maildir/.B" || out != "" || !res.Disposed || res.ExitCode != 7 {
		t.Errorf("deliveries %v, out %q, disposed %v, exit %d", got, out, res.Disposed, res.ExitCode)
	}
	// A failed delivery is a temporary failure.
	res, _, err = run(t, "to ./Maildir\n", Limits{}, func(e *Env) {
		e.Deliver = func(ctx context.Context, d Delivery) (int, error) { return 0, errors.New("disk full") }
	})
	if err == nil || res.ExitCode != ExitTempFail {
		t.Errorf("failed delivery: err %v exit %d", err, res.ExitCode)
	}
	// Without to or exit, the message goes to $DEFAULT.
	got = nil
	res, _, err = run(t, "A=1\n", Limits{}, func(e *Env) {
		e.Deliver = func(ctx context.Context, d Delivery) (int, error) {
			got = append(got, d.Kind+" "+d.Dest)
			return 0, nil
		}
	})
	if err != nil || strings.Join(got, ",") != "default ./Maildir" || res.ExitCode != 0 {
		t.Errorf("default delivery: %v %v %d", err, got, res.ExitCode)
	}
}

func TestEmbeddedModeRefusesDeliveriesAndCommands(t *testing.T) {
	for _, src := range []string{"to ./Maildir\n", "cc ./Maildir\n", "xfilter \"cat\"\n", "system \"true\"\n", "A=`true`\n", "logfile \"x\"\n", "dotlock \"x\"\n{\n}\n", "gdbmopen(\"x.db\", \"C\")\n"} {
		res, _, err := run(t, src, Limits{}, func(e *Env) { e.Embedded = true; e.Run = ExecCommand })
		if !errors.Is(err, ErrNotAllowed) || res.ExitCode != ExitTempFail {
			t.Errorf("%q in embedded mode: err %v exit %d", src, err, res.ExitCode)
		}
	}
	// echo and EXITCODE are how an embedded filter answers; no default delivery.
	res, out, err := run(t, "if (/^Subject: hello/)\n{\n  echo \"550 no thanks\"\n  EXITCODE=1\n}\n", Limits{}, func(e *Env) {
		e.Embedded = true
		e.Deliver = nil
	})
	if err != nil || out != "550 no thanks\n" || res.ExitCode != 1 || len(res.Deliveries) != 0 {
		t.Errorf("embedded answer: err %v out %q exit %d", err, out, res.ExitCode)
	}
}

func TestCommandsRefusedWithoutRunner(t *testing.T) {
	_, _, err := run(t, "A=`echo hi`\n", Limits{}, nil)
	if !errors.Is(err, ErrNotAllowed) {
		t.Errorf("want ErrNotAllowed, got %v", err)
	}
}

func TestSessionSharesVariablesAcrossFiles(t *testing.T) {
	sys, err := Parse("maildroprc", []byte("SPAMFOLDER=\"./Maildir/.Junk\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	user, err := Parse(".mailfilter", []byte("if (/^Subject: hello/)\n{\n  to $SPAMFOLDER\n}\n"))
	if err != nil {
		t.Fatal(err)
	}
	var dest string
	s := NewSession(NewMessage([]byte(testMessage)), Env{Deliver: func(ctx context.Context, d Delivery) (int, error) {
		dest = d.File + ":" + fmt.Sprint(d.Line) + " " + d.Dest
		return 0, nil
	}})
	ctx := context.Background()
	if err := s.Run(ctx, sys); err != nil {
		t.Fatal(err)
	}
	if err := s.Run(ctx, user); err != nil {
		t.Fatal(err)
	}
	res, err := s.Finish(ctx, true)
	if err != nil || !res.Disposed || dest != ".mailfilter:3 ./Maildir/.Junk" {
		t.Errorf("err %v disposed %v dest %q", err, res.Disposed, dest)
	}
}

func TestCheckMain(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	bad := filepath.Join(dir, "bad")
	os.WriteFile(good, []byte("if (/^Subject: x/)\n{\n  to ./Maildir/.X\n}\n"), 0o600)
	os.WriteFile(bad, []byte("A=1\nif (/x/\n"), 0o600)
	var out, errOut bytes.Buffer
	if code := CheckMain([]string{good}, &out, &errOut); code != 0 {
		t.Errorf("good file: exit %d, %s", code, errOut.String())
	}
	out.Reset()
	errOut.Reset()
	code := CheckMain([]string{good, bad}, &out, &errOut)
	if code != 1 || !strings.HasPrefix(errOut.String(), bad+":2:8: ") {
		t.Errorf("bad file: exit %d, stderr %q", code, errOut.String())
	}
	if code := CheckMain(nil, &out, &errOut); code != 2 {
		t.Errorf("no args: exit %d", code)
	}
}

func TestRunTestMainTracesWithoutDelivering(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "filter")
	os.WriteFile(f, []byte("X=`date`\nif (/^Subject: (.*)/)\n{\n  to \"./Maildir/.$MATCH1\"\n}\n"), 0o600)
	var out, errOut bytes.Buffer
	code := RunTestMain([]string{f}, strings.NewReader(testMessage), &out, &errOut)
	text := out.String()
	for _, want := range []string{
		"would run (backtick) \"date\" (not run; use -x)",
		f + ":2: match: /^Subject: (.*)/ matched \"Subject: hello world\"",
		f + ":2: if: condition is true",
		"would deliver (to) to \"./Maildir/.hello world\"",
		"exit code 0",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	if code != 0 {
		t.Errorf("exit %d", code)
	}
	if _, err := os.Stat(filepath.Join(dir, "Maildir")); err == nil {
		t.Error("test mode created a Maildir")
	}
}
