package server

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	dkimpkg "postern/filters/dkim"
	dnspkg "postern/filters/dns"
	"postern/filters/dns/dnstest"
	maildirpkg "postern/mailbox/maildir"
)

// Rules in the maildrop language run inside the SMTP session: a rule that
// rejects by header content gives its own 5xx text; a per-recipient rule
// refuses only that recipient at RCPT; ADDHEADER adds a header; a rule that
// fails at run time tempfails instead of losing or wrongly accepting mail.
func TestSMTPRules(t *testing.T) {
	rulesFile := `# SMTP-time rules
if (/^Subject:.*pharmacy/:h)
{
	echo "550 5.7.1 No pharmacy offers here, $SENDER"
	EXITCODE=1
	exit
}
if ($RECIPIENT eq "closed@example.test")
{
	echo "This mailbox is closed"
	EXITCODE=1
	exit
}
if (/^Subject:.*broken rule/:h)
{
	include "/nonexistent/rules/file"
}
ADDHEADER="X-Rules-Seen: from $REMOTE_ADDR as $HELO"
`
	h := newFilterHarness(t, baseZone(), map[string]string{"filters": "", "smtprules": rulesFile})
	h.addUser("closed@example.test", "pw")

	c := dialRaw(t, h.addr("smtp"))
	c.as("192.0.2.20", "mx.shop.example")
	code, text := c.send("offers@shop.example", h.user, testMessage("cheap pharmacy deals", "x\r\n"))
	if code != 550 || !strings.Contains(text, "No pharmacy offers here, offers@shop.example") || !strings.HasPrefix(text, "5.7.1") {
		t.Fatalf("header rule: %d %s", code, text)
	}
	c.cmd("RSET")

	// Per recipient: the closed mailbox is refused at RCPT, alice still gets it.
	if code, _ := c.cmd("MAIL FROM:<friend@shop.example>"); code != 250 {
		t.Fatal("MAIL refused")
	}
	if code, text := c.cmd("RCPT TO:<closed@example.test>"); code != 550 || !strings.Contains(text, "This mailbox is closed") {
		t.Fatalf("per-recipient rule: %d %s", code, text)
	}
	if code, text := c.cmd("RCPT TO:<%s>", h.user); code != 250 {
		t.Fatalf("other recipient refused: %d %s", code, text)
	}
	c.cmd("DATA")
	c.conn.Write(testMessage("hello friend", "x\r\n"))
	if code, text := c.cmd("."); code != 250 {
		t.Fatalf("message: %d %s", code, text)
	}
	msgs := inboxMessages(t, h, h.user)
	if len(msgs) != 1 || !strings.Contains(string(msgs[0]), "X-Rules-Seen: from 192.0.2.20 as mx.shop.example") {
		t.Fatalf("ADDHEADER not applied: %q", msgs)
	}
	// The rules ran at both RCPTs and after DATA; the field is added once.
	if n := strings.Count(string(msgs[0]), "X-Rules-Seen:"); n != 1 {
		t.Fatalf("ADDHEADER added %d times", n)
	}

	// A rule error tempfails.
	if code, text := c.send("x@shop.example", h.user, testMessage("a broken rule", "x\r\n")); code != 451 {
		t.Fatalf("rule error: %d %s", code, text)
	}
}

// DKIM signing: mail from an authenticated user whose From domain has a
// key is signed, and the signature verifies against the record that
// "postern dkim keygen" printed; so is mail from a relay client
// (smtpaccess RELAYCLIENT: an application server) and from sendmail, as
// OpenDKIM signs for Postfix's internal hosts and local submissions.
func TestDKIMSigningOnSubmission(t *testing.T) {
	h := &harness{t: t, dir: t.TempDir(), user: "alice@example.test", pass: "s3cret pass"}
	h.etc = filepath.Join(h.dir, "etc")
	if err := writeInit(h); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := dkimpkg.KeygenMain([]string{"example.test", "--selector", "s1", "--type", "ed25519"}, &out, &errb, h.etc); code != 0 {
		t.Fatalf("keygen: %s", errb.String())
	}
	record := out.String()
	i := strings.Index(record, "v=DKIM1")
	if i < 0 {
		t.Fatalf("no record printed: %s", record)
	}
	txt := strings.NewReplacer("\"", "", "\n", "", "\t", "", " ", "", ")", "").Replace(record[i:])
	zone := dnstest.NewZone().Add(`s1._domainkey.example.test. 300 IN TXT "` + txt + `"`)
	dnsSrv := dnstest.Start(t, zone)
	h.writeSetting("xclient", "127.0.0.1\n")
	h.writeSetting("smtpaccess", "192.0.2.9\tallow,RELAYCLIENT\n")
	h.start()
	t.Cleanup(h.stop)
	r, err := dnspkg.New(dnspkg.Options{Servers: []string{dnsSrv.Addr}})
	if err != nil {
		t.Fatal(err)
	}
	verify := func(how string, n int) {
		t.Helper()
		msgs := inboxMessages(t, h, h.user)
		if len(msgs) != n {
			t.Fatalf("%s: %d messages, want %d", how, len(msgs), n)
		}
		var stored []byte
		for _, m := range msgs {
			if bytes.Contains(m, []byte("Subject: "+how+"\n")) {
				stored = m
			}
		}
		if !bytes.Contains(stored, []byte("DKIM-Signature:")) {
			t.Fatalf("%s: not signed:\n%s", how, stored)
		}
		// Verify what the recipient got, from the signature down (CRLF).
		crlf := bytes.ReplaceAll(stored, []byte("\n"), []byte("\r\n"))
		start := bytes.Index(crlf, []byte("DKIM-Signature:"))
		v, err := dkimpkg.Verify(context.Background(), r, bytes.NewReader(crlf[start:]), dkimpkg.VerifyOptions{})
		if err != nil || len(v.PassingDomains()) != 1 || v.PassingDomains()[0] != "example.test" {
			t.Fatalf("%s: our signature does not verify: %v %+v", how, err, v)
		}
	}
	msg := func(how string) []byte {
		return []byte("From: alice@example.test\r\nTo: alice@example.test\r\nSubject: " + how + "\r\n\r\nhello\r\n")
	}
	if err := submit(t, h, h.user, []string{h.user}, msg("submission"), nil, nil); err != nil {
		t.Fatal(err)
	}
	verify("submission", 1)

	c := dialRaw(t, h.addr("smtp"))
	c.as("192.0.2.9", "app.example.test")
	if code, text := c.send("alice@example.test", h.user, msg("relay client")); code != 250 {
		t.Fatalf("relay client: %d %s", code, text)
	}
	verify("relay client", 2)

	cmd := exec.Command(buildPostern(t), "--config", h.etc, "sendmail", "-t")
	cmd.Stdin = bytes.NewReader(msg("sendmail"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sendmail -t: %v\n%s", err, out)
	}
	verify("sendmail", 3)
}

// The delivery agent runs for mail from SMTP: the user's ~/.mailfilter files
// by subject, and a .courier-EXT file takes mail to user-EXT@.
func TestMailfilterAndDotCourierThroughSMTP(t *testing.T) {
	h := newHarness(t)
	home := filepath.Dir(h.maildir(h.user))
	filter := "if (/^Subject:.*\\[list\\]/)\n{\n\tto \"$DEFAULT/.Lists/\"\n}\n"
	if err := os.WriteFile(filepath.Join(home, ".mailfilter"), []byte(filter), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, ".courier-archive"), []byte("./Maildir/.Archive/\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	md := h.maildir(h.user)
	for _, f := range []string{"Lists", "Archive"} {
		if err := maildirpkg.Make(filepath.Join(md, "."+f)); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.send("bob@example.net", []string{h.user}, testMessage("[list] weekly digest", "x\r\n")); err != nil {
		t.Fatal(err)
	}
	if err := h.send("bob@example.net", []string{h.user}, testMessage("plain", "x\r\n")); err != nil {
		t.Fatal(err)
	}
	if err := h.send("bob@example.net", []string{"alice-archive@example.test"}, testMessage("keep this", "x\r\n")); err != nil {
		t.Fatal(err)
	}
	count := func(folder string) int {
		n := 0
		for _, sub := range []string{"new", "cur"} {
			files, _ := os.ReadDir(filepath.Join(md, folder, sub))
			n += len(files)
		}
		return n
	}
	if got := count(".Lists"); got != 1 {
		t.Errorf(".mailfilter: %d messages in Lists, want 1", got)
	}
	if got := count(".Archive"); got != 1 {
		t.Errorf(".courier-archive: %d messages in Archive, want 1", got)
	}
	if got := count(""); got != 1 {
		t.Errorf("INBOX has %d messages, want 1", got)
	}
}

// A rule's SCORE_ADD counts once per message: the rules also run at each
// RCPT, and a score set whatever the stage was added once per recipient
// and once more after DATA (three recipients: 4 became 16, over the
// reject threshold).
func TestSMTPRulesScoreOncePerMessage(t *testing.T) {
	h := newFilterHarness(t, baseZone(), map[string]string{"filters": "", "smtprules": "SCORE_ADD=4\n", "spamscore": "quarantine 5\nreject 10\n"})
	h.addUser("bob@example.test", "pw")
	h.addUser("carol@example.test", "pw")
	c := dialRaw(t, h.addr("smtp"))
	c.as("192.0.2.20", "mx.shop.example")
	c.cmd("MAIL FROM:<friend@shop.example>")
	for _, r := range []string{h.user, "bob@example.test", "carol@example.test"} {
		if code, text := c.cmd("RCPT TO:<%s>", r); code != 250 {
			t.Fatalf("RCPT %s: %d %s", r, code, text)
		}
	}
	c.cmd("DATA")
	c.conn.Write(testMessage("scored once", "x\r\n"))
	if code, text := c.cmd("."); code != 250 {
		t.Fatalf("a message scored 4 by the rules: %d %s", code, text)
	}
	msgs := inboxMessages(t, h, h.user)
	score := regexp.MustCompile(`X-Postern-Score: [^\r\n]*`).FindString(string(msgs[0]))
	if !strings.HasPrefix(score, "X-Postern-Score: 4") {
		t.Errorf("score header %q, want a total of 4", score)
	}
}
