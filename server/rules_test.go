package server

import (
	"strings"
	"testing"
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

	// A rule error tempfails.
	if code, text := c.send("x@shop.example", h.user, testMessage("a broken rule", "x\r\n")); code != 451 {
		t.Fatalf("rule error: %d %s", code, text)
	}
}
