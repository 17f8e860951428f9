package mailbot

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const lunch = "From: Alice Example <alice@ex.com>\nTo: bob@our.example\nCc: carol@ex.com\nSubject: Lunch?\nMessage-ID: <q1@ex.com>\nReferences: <q0@ex.com>\nDate: Mon, 1 Jan 2024 10:00:00 +0000\nContent-Type: text/plain\n\nShall we have lunch?\nBye\n"

func testConfig(env map[string]string) Config {
	var environ []string
	for k, v := range env {
		environ = append(environ, k+"="+v)
	}
	environ = append(environ, "PATH=/usr/bin:/bin")
	return Config{
		Getenv:   func(k string) string { return env[k] },
		Environ:  environ,
		Now:      func() time.Time { return time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC) },
		Hostname: "test.example", Location: time.UTC, LockWait: 5 * time.Second,
	}
}

func writeFile(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func run(t *testing.T, cfg Config, input string, args ...string) (string, string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := Run(context.Background(), cfg, args, strings.NewReader(input), &out, &errOut)
	return out.String(), errOut.String(), code
}

// TestSendsThroughSendmail runs the reply through a recording "sendmail"
// script: the default-style command line gets the reply on stdin.
func TestSendsThroughSendmail(t *testing.T) {
	dir := t.TempDir()
	text := writeFile(t, dir, "away.txt", "I am away.\n")
	rec := filepath.Join(dir, "recorded")
	sendmail := writeFile(t, dir, "sendmail", "#!/bin/sh\nprintf '%s|' \"$@\" > "+rec+".args\ncat > "+rec+"\nexit 0\n")
	os.Chmod(sendmail, 0o755)
	_, stderr, code := run(t, testConfig(nil), lunch, "-t", text, "-A", "From: bob@our.example", sendmail, "-f", "")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	args, _ := os.ReadFile(rec + ".args")
	if string(args) != "-f||" {
		t.Errorf("sendmail args %q, want null envelope sender", args)
	}
	got, _ := os.ReadFile(rec)
	for _, want := range []string{
		"From: bob@our.example\nPrecedence: junk\nAuto-Submitted: auto-replied\nTo: Alice Example <alice@ex.com>\n",
		"References: <q0@ex.com>\n            <q1@ex.com>\nIn-Reply-To: <q1@ex.com>\nSubject: Re: Lunch?\n",
		"Alice Example writes:\n\n> Shall we have lunch?\n> Bye\n\nI am away.\n",
	} {
		if !strings.Contains(string(got), want) {
			t.Errorf("reply lacks %q:\n%s", want, got)
		}
	}
	// The mail program's failure is mailbot's exit status.
	failing := writeFile(t, dir, "failing", "#!/bin/sh\ncat >/dev/null\nexit 75\n")
	os.Chmod(failing, 0o755)
	if _, _, code := run(t, testConfig(nil), lunch, "-t", text, failing); code != 75 {
		t.Errorf("failing sendmail: exit %d, want 75", code)
	}
}

func TestNeverAnswers(t *testing.T) {
	dir := t.TempDir()
	text := writeFile(t, dir, "away.txt", "away\n")
	base := "From: a@ex.com\nTo: me@our.example\nSubject: s\n"
	cases := map[string]struct {
		msg string
		env map[string]string
	}{
		"precedence bulk":  {base + "Precedence: bulk\n\nb\n", nil},
		"precedence list":  {base + "Precedence: list\n\nb\n", nil},
		"precedence junk":  {base + "Precedence: junk\n\nb\n", nil},
		"list-id":          {base + "List-Id: <l.ex.com>\n\nb\n", nil},
		"list-unsub":       {base + "List-Unsubscribe: <mailto:u@ex.com>\n\nb\n", nil},
		"auto-submitted":   {base + "Auto-Submitted: auto-replied\n\nb\n", nil},
		"dsn":              {base + "Content-Type: multipart/report; report-type=delivery-status; boundary=x\n\nb\n", nil},
		"no sender":        {"Subject: s\n\nb\n", nil},
		"null SENDER":      {base + "\nb\n", map[string]string{"SENDER": ""}},
		"null return-path": {"Return-Path: <>\n" + base + "\nb\n", nil},
		"mailer-daemon":    {"From: MAILER-DAEMON@ex.com\nSubject: s\n\nb\n", nil},
		"list owner":       {"From: owner-list@ex.com\nSubject: s\n\nb\n", nil},
		"not to us (-r)":   {base + "\nb\n", nil},
	}
	for name, c := range cases {
		args := []string{"-n", "-t", text}
		if name == "not to us (-r)" {
			args = append(args, "-r", "other@our.example,third@our.example")
		}
		out, _, code := run(t, testConfig(c.env), c.msg, args...)
		if code != 0 || out != "" {
			t.Errorf("%s: answered (exit %d):\n%s", name, code, out)
		}
	}
	// Controls: the same message without the marker is answered.
	for _, env := range []map[string]string{nil, {"SENDER": "a@ex.com"}} {
		if out, _, _ := run(t, testConfig(env), base+"Auto-Submitted: no\n\nb\n", "-n", "-t", text, "-r", "ME@our.example"); !strings.Contains(out, "To: a@ex.com") {
			t.Errorf("ordinary mail not answered (env %v): %q", env, out)
		}
	}
}

func TestOncePerSenderPerPeriod(t *testing.T) {
	dir := t.TempDir()
	text := writeFile(t, dir, "away.txt", "away\n")
	db := filepath.Join(dir, "vacation")
	cfg := testConfig(nil)
	now := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	cfg.Now = func() time.Time { return now }
	msg := "From: A@Ex.com\nSubject: s\n\nb\n"
	answered := func() bool {
		out, stderr, code := run(t, cfg, msg, "-n", "-t", text, "-d", db, "-D", "2")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		return out != ""
	}
	if !answered() {
		t.Fatal("first message not answered")
	}
	now = now.Add(47 * time.Hour)
	if answered() {
		t.Fatal("answered again within 2 days")
	}
	msg = "From: other@ex.com\nSubject: s\n\nb\n"
	if !answered() {
		t.Fatal("a second sender was not answered")
	}
	msg = "From: a@ex.COM\nSubject: s\n\nb\n"
	now = now.Add(2 * time.Hour)
	if !answered() {
		t.Fatal("not answered again after 2 days")
	}
	// A database that cannot be opened defers the delivery (75).
	if _, _, code := run(t, cfg, msg, "-n", "-t", text, "-d", filepath.Join(dir, "no", "dir", "db")); code != 75 {
		t.Fatalf("unusable database: exit %d, want 75", code)
	}
}

func TestFormats(t *testing.T) {
	dir := t.TempDir()
	text := writeFile(t, dir, "away.txt", "away\n")
	mimeFile := writeFile(t, dir, "away.mime", "Content-Type: text/plain; charset=\"iso-8859-1\"\nContent-Transfer-Encoding: quoted-printable\n\nmime body\n")
	cfg := testConfig(nil)
	checks := []struct {
		args []string
		want []string
		not  []string
	}{
		{[]string{"-T", "replyall"}, []string{"Cc: bob@our.example, carol@ex.com\n"}, nil},
		{[]string{"-N", "-s", "Away"}, []string{"Subject: Away\n", "\n\naway\n"}, []string{"writes:"}},
		{[]string{"-S", "On %{%Y-%m-%d}d %f (%F) said:%n"}, []string{"On 2024-01-01 alice@ex.com (Alice Example) said:\n"}, nil},
		{[]string{"-T", "forward", "-F", "=== fwd ==="}, []string{"Subject: Lunch? (fwd)\n", "=== fwd ===\nFrom: Alice Example <alice@ex.com>\n", "Shall we have lunch?"}, []string{"\nTo: Alice"}},
		{[]string{"-T", "forwardatt"}, []string{"multipart/mixed", "Content-Type: message/rfc822\n", "References: <q0@ex.com>\n"}, nil},
		{[]string{"-M", "bob@our.example", "-N"}, []string{"multipart/report; report-type=delivery-status", "Final-Recipient: rfc822; bob@our.example\n", "text/rfc822-headers"}, nil},
	}
	for _, c := range checks {
		args := append([]string{"-n", "-t", text}, c.args...)
		out, stderr, code := run(t, cfg, lunch, args...)
		if code != 0 {
			t.Errorf("%q: exit %d %s", c.args, code, stderr)
		}
		for _, w := range c.want {
			if !strings.Contains(out, w) {
				t.Errorf("%q: lacks %q:\n%s", c.args, w, out)
			}
		}
		for _, w := range c.not {
			if strings.Contains(out, w) {
				t.Errorf("%q: has %q:\n%s", c.args, w, out)
			}
		}
	}
	out, _, _ := run(t, cfg, lunch, "-n", "-m", mimeFile)
	if !strings.Contains(out, "Content-Type: text/plain; charset=\"iso-8859-1\"\nContent-Transfer-Encoding: 8bit\n") || strings.Contains(out, "quoted-printable") {
		t.Errorf("-m part not used as given:\n%s", out)
	}
	// -T replydraft: the newest message in the maildir is the reply.
	md := filepath.Join(dir, "Vacation")
	for _, sub := range []string{"new", "cur", "tmp"} {
		os.MkdirAll(filepath.Join(md, sub), 0o755)
	}
	old := writeFile(t, filepath.Join(md, "cur"), "1.a:2,S", "From: me\nContent-Type: text/plain\n\nold draft\n")
	os.Chtimes(old, time.Unix(1000, 0), time.Unix(1000, 0))
	writeFile(t, filepath.Join(md, "cur"), "2.b:2,S", "From: me\nSubject: x\nContent-Type: text/plain\n\nnew draft\n")
	writeFile(t, filepath.Join(md, "cur"), "3.c:2,ST", "Content-Type: text/plain\n\ndeleted draft\n")
	os.Chtimes(filepath.Join(md, "cur", "3.c:2,ST"), time.Now().Add(time.Hour), time.Now().Add(time.Hour))
	out, _, _ = run(t, cfg, lunch, "-n", "-N", "-T", "replydraft", "-l", md)
	if !strings.Contains(out, "new draft") || strings.Contains(out, "From: me") {
		t.Errorf("replydraft:\n%s", out)
	}
	if out, _, code := run(t, cfg, lunch, "-n", "-T", "replydraft", "-l", filepath.Join(dir, "none")); out != "" || code != 0 {
		t.Errorf("empty draft folder: exit %d %q", code, out)
	}
}

func TestUsage(t *testing.T) {
	for _, args := range [][]string{{}, {"-n"}, {"-t", "a", "-m", "b"}, {"-T", "replydraft", "-t", "x"}, {"-z", "-t", "x"}, {"-T", "feedback", "-t", "x"}} {
		if _, _, code := run(t, testConfig(nil), lunch, args...); code != 75 {
			t.Errorf("%q: exit %d, want 75", args, code)
		}
	}
}

// TestAgainstCourierMailbot compares the addressing of our reply with
// Debian's real mailbot, when it is installed.
func TestAgainstCourierMailbot(t *testing.T) {
	real, err := exec.LookPath("mailbot")
	if err != nil {
		t.Skip("Courier's mailbot not installed")
	}
	dir := t.TempDir()
	text := writeFile(t, dir, "away.txt", "away\n")
	inputs := []string{lunch, "From: a@ex.com\nReply-To: rt@ex.com\nSubject: Re: x\n\nb\n", "From: a@ex.com\nPrecedence: bulk\n\nb\n", "From: a@ex.com\nErrors-To: e@ex.com\nSubject: s\n\nb\n"}
	for _, in := range inputs {
		for _, args := range [][]string{{"-n", "-t", text}, {"-n", "-T", "replyall", "-t", text}, {"-n", "-e", "-t", text}} {
			cmd := exec.Command(real, args...)
			cmd.Stdin = strings.NewReader(in)
			cmd.Env = []string{"PATH=/usr/bin:/bin"}
			want, err := cmd.Output()
			if err != nil {
				t.Fatalf("real mailbot: %v", err)
			}
			got, _, _ := run(t, Config{Now: time.Now, Location: time.UTC}, in, args...)
			if g, w := addressing(got), addressing(string(want)); g != w {
				t.Errorf("%q on %q:\n got %q\nwant %q", args, in, g, w)
			}
		}
	}
}

func addressing(msg string) string {
	head, _, _ := strings.Cut(msg, "\n\n")
	var keep []string
	for _, line := range strings.Split(head, "\n") {
		for _, p := range []string{"To:", "Cc:", "Subject:", "In-Reply-To:", "References:", " ", "Auto-Submitted:", "Precedence:"} {
			if strings.HasPrefix(line, p) {
				keep = append(keep, line)
				break
			}
		}
	}
	return strings.Join(keep, "\n")
}
