package maildirfilter

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"postern/auth"
	"postern/mailbox/deliver"
	"postern/mailbox/maildir"
)

// The differential test runs a filter file Generate wrote through
// Courier's own maildrop (Debian's package, which .ci/run installs) and
// through Postern's delivery agent, message by message, and compares
// where each message went, the exit code and what the filter printed.
// Courier's maildrop runs in manual mode ("maildrop ./.mailfilter <
// message") in a scratch home, as the test's user; Postern's agent
// delivers to an account whose home is a second scratch home. Without
// Courier's maildrop the test skips, and fails under CI.

func courierMaildrop(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("maildrop")
	if err == nil {
		out, _ := exec.Command(p, "-v").CombinedOutput()
		if !bytes.Contains(out, []byte("Double Precision")) {
			err = errors.New(p + " is not Courier's maildrop")
		}
	}
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("Courier's maildrop is needed under CI (apt-get install maildrop): %v", err)
		}
		t.Skipf("Courier's maildrop is not installed (apt-get install maildrop): %v", err)
	}
	return p
}

var diffFolders = []string{"Spam", "Lists", "Archive", "Attach", "Other", "Shout", "Greetings"}

// diffRules has every test and action sqwebmail offers but forward and
// autoreply (both send mail; the webmail tests run those through
// Postern's agent and mailbot).
var diffRules = []Rule{
	{Name: "spam", Op: StartsWith, Header: "X-Spam-Flag", Value: "YES", Action: "INBOX.Spam"},
	{Name: "drop", Op: StartsWith, Body: true, Value: "unsubscribe", PlainString: true, Action: "exit"},
	{Name: "lists", Op: Contains, Header: "Subject", Value: "[list]", PlainString: true, Action: "INBOX.Lists"},
	{Name: "team copy", Op: HasRecipient, Value: "team@example.org", Action: "INBOX.Archive", Continue: true},
	{Name: "big", Op: IsLargerThan, Value: "3000", Action: "*Message too large for me"},
	{Name: "attachments", Op: MimeMultipart, Action: "INBOX.Attach"},
	{Name: "shout", Op: EndsWith, Header: "Subject", Value: `\!\!\!`, Action: "INBOX.Shout"},
	{Name: "greetings", Op: Contains, Header: "Subject", Value: "Grüße", PlainString: true, Action: "INBOX.Greetings"},
	{Name: "not plain", Op: TextPlain, DoesNot: true, Action: "INBOX.Other"},
	{Name: "small body", Op: Contains, Body: true, Value: "^ok( then)?", DoesNot: true, Continue: true, Action: "INBOX"},
}

func diffMessage(hdr, body string) string {
	return "From: Bob <bob@example.org>\nTo: me@example.test\n" + hdr + "Message-ID: <x@example.org>\n\n" + body
}

var diffMessages = map[string]string{
	"plain":      diffMessage("Subject: hello\n", "ok\n"),
	"spam":       diffMessage("Subject: win\nX-Spam-Flag: YES\n", "ok\n"),
	"unsub":      diffMessage("Subject: news\n", "unsubscribe me\n"),
	"list":       diffMessage("Subject: [list] weekly\n", "ok\n"),
	"team":       diffMessage("Subject: plans\nCc: Team <team@example.org>\n", "ok then\n"),
	"big":        diffMessage("Subject: huge\n", strings.Repeat("ok ok ok ok ok ok ok ok\n", 200)),
	"attachment": diffMessage("Subject: file\nContent-Type: multipart/mixed; boundary=b\n", "--b\n\nok\n--b--\n"),
	"shout":      diffMessage("Subject: help!!!\n", "ok\n"),
	"greetings":  diffMessage("Subject: Viele Grüße\n", "ok\n"),
	"html":       diffMessage("Subject: web\nContent-Type: text/html\n", "ok\n"),
	"text":       diffMessage("Subject: web\nContent-Type: text/plain; charset=utf-8\n", "something else\n"),
}

func scratchHome(t *testing.T, filter []byte) string {
	t.Helper()
	home := t.TempDir()
	if err := maildir.Make(filepath.Join(home, "Maildir")); err != nil {
		t.Fatal(err)
	}
	md, err := maildir.Open(filepath.Join(home, "Maildir"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range diffFolders {
		if err := md.CreateFolder(f); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(home, ".mailfilter"), filter, 0o600); err != nil {
		t.Fatal(err)
	}
	return home
}

// landed lists "FOLDER: subject" for every message in a scratch home,
// sorted, and empties the folders for the next message.
func landed(t *testing.T, home string) []string {
	t.Helper()
	var out []string
	for _, f := range append([]string{""}, diffFolders...) {
		dir := filepath.Join(home, "Maildir")
		name := maildir.Inbox
		if f != "" {
			dir, name = filepath.Join(dir, "."+f), f
		}
		for _, sub := range []string{"new", "cur"} {
			ents, _ := os.ReadDir(filepath.Join(dir, sub))
			for _, e := range ents {
				p := filepath.Join(dir, sub, e.Name())
				b, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				subj := ""
				for _, line := range strings.Split(string(b), "\n") {
					if s, ok := strings.CutPrefix(line, "Subject: "); ok {
						subj = s
						break
					}
				}
				out = append(out, name+": "+subj)
				os.Remove(p)
			}
		}
	}
	slices.Sort(out)
	return out
}

func TestGeneratedRecipeAgainstCourierMaildrop(t *testing.T) {
	courier := courierMaildrop(t)
	filter, err := Generate(diffRules, Recipe{Maildir: "./Maildir", From: "me@example.test", Mailbot: "/usr/bin/mailbot"})
	if err != nil {
		t.Fatal(err)
	}
	courierHome, posternHome := scratchHome(t, filter), scratchHome(t, filter)
	var echoed bytes.Buffer
	agent, err := deliver.New(deliver.Options{Sendmail: []string{"/bin/false"}, Stdout: &echoed, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	acct := &auth.Account{Name: "me@example.test", UID: os.Getuid(), GID: os.Getgid(), Home: posternHome}
	names := make([]string, 0, len(diffMessages))
	for n := range diffMessages {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		msg := diffMessages[n]
		cmd := exec.Command(courier, "./.mailfilter")
		cmd.Dir = courierHome
		cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + courierHome}
		cmd.Stdin = strings.NewReader(msg)
		var cout, cerr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &cout, &cerr
		code := 0
		if err := cmd.Run(); err != nil {
			var ee *exec.ExitError
			if !errors.As(err, &ee) {
				t.Fatal(err)
			}
			code = ee.ExitCode()
		}
		if code == 75 {
			t.Fatalf("%s: Courier's maildrop cannot run the generated filter: %s\n%s", n, cerr.String(), filter)
		}
		echoed.Reset()
		o := agent.Deliver(context.Background(), deliver.Request{Account: acct, Sender: "bob@example.org", Recipient: acct.Name,
			Message: strings.NewReader(msg), NoInstructions: true})
		courierGot, posternGot := landed(t, courierHome), landed(t, posternHome)
		if o.ExitCode != code || !slices.Equal(courierGot, posternGot) || echoed.String() != cout.String() {
			t.Errorf("%s:\n Courier: exit %d, %q, printed %q (%s)\n Postern: exit %d, %q, printed %q (%s)",
				n, code, courierGot, cout.String(), cerr.String(), o.ExitCode, posternGot, echoed.String(), o.Reason)
		}
		t.Logf("%s: exit %d %q %q", n, code, courierGot, cout.String())
		if n == "plain" && (len(courierGot) != 1 || courierGot[0] != "INBOX: hello") {
			t.Errorf("plain message: Courier put it %q", courierGot)
		}
	}
}

// The vacation rule and its autoresponse file as Courier's own tools run
// them: Courier's maildrop runs the recipe, Courier's mailbot (with -n,
// the reply written to a file instead of sent) reads the autoresponse
// Postern wrote and keeps its once-per-sender database: the first
// message from a sender is answered with the text, the second is not.
func TestAutoreplyWithCourierTools(t *testing.T) {
	courier := courierMaildrop(t)
	mailbotPath, err := exec.LookPath("mailbot")
	if err == nil {
		// Courier's usage names $MAILER; Postern's (postern mailbot)
		// does not.
		if out, _ := exec.Command(mailbotPath, "-v").CombinedOutput(); !bytes.Contains(out, []byte("$MAILER")) {
			err = errors.New(mailbotPath + " is not Courier's mailbot")
		}
	}
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("Courier's mailbot is needed under CI (apt-get install maildrop): %v", err)
		}
		t.Skip(err)
	}
	home := t.TempDir()
	a := Account{Home: home, Maildir: filepath.Join(home, "Maildir"), UID: -1, GID: -1}
	if err := maildir.Make(a.Maildir); err != nil {
		t.Fatal(err)
	}
	if err := a.WriteAutoresponse("vacation", "Away until Monday.\n", AutoresponseQuota{}); err != nil {
		t.Fatal(err)
	}
	replies := filepath.Join(home, "replies")
	wrapper := filepath.Join(home, "mailbot-n")
	// Not exec: maildrop reads a backtick command's output to its end and
	// may stop writing the message then, so the wrapper's own output (the
	// pipe maildrop reads) stays open until mailbot has read the message
	// and written its reply. With exec, the pipe closed at once and
	// mailbot now and then read only the first header lines.
	if err := os.WriteFile(wrapper, []byte("#!/bin/sh\n"+mailbotPath+" -n \"$@\" >> "+replies+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	rs := []Rule{{Name: "Vacation", Op: AnyMessage, Action: Autoreply{Name: "vacation", Days: 7}.String()}}
	if err := a.SaveRules(rs, Recipe{Maildir: a.RecipeMaildir(), From: "me@example.test", Mailbot: wrapper}); err != nil {
		t.Fatal(err)
	}
	run := func(subject string) {
		t.Helper()
		cmd := exec.Command(courier, "./.mailfilter")
		cmd.Dir = home
		cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + home}
		cmd.Stdin = strings.NewReader("From: Carol <carol@example.org>\nTo: me@example.test\nSubject: " + subject + "\nMessage-ID: <" + subject + "@example.org>\n\nHello.\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("Courier's maildrop: %v\n%s", err, out)
		}
	}
	run("one")
	first, _ := os.ReadFile(replies)
	for _, want := range []string{"To: Carol <carol@example.org>", "From: me@example.test", "Away until Monday.", "Subject: Re: one"} {
		if !bytes.Contains(first, []byte(want)) {
			t.Errorf("Courier's mailbot's reply lacks %q:\n%s", want, first)
		}
	}
	run("two")
	second, _ := os.ReadFile(replies)
	if !bytes.Equal(first, second) {
		t.Fatalf("second message from the same sender answered again:\n%s", second[len(first):])
	}
	if got := landed(t, home); len(got) != 2 {
		t.Fatalf("delivered: %q", got)
	}
	if m, _ := filepath.Glob(filepath.Join(a.Maildir, "autoresponses", "vacation.dat*")); len(m) == 0 {
		t.Fatal("Courier's mailbot kept no database beside the autoresponse")
	}
}
