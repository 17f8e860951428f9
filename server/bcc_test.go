package server

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"postern/gateway"
)

// bccHarness is an MTA harness with the bcc setting and the local
// archive accounts archive@ and boss-archive@example.test.
func bccHarness(t *testing.T, bcc string) (*harness, *remoteMTA) {
	t.Helper()
	return newMTAHarnessWith(t, func(h *harness) {
		h.addUser("archive@example.test", "archive pass")
		h.addUser("boss-archive@example.test", "archive pass")
		h.addUser("bob@example.test", "bob pass")
		h.writeSetting("bcc", bcc)
	})
}

// perRecipientFields are the fields local delivery writes per recipient;
// without them two recipients' copies of one message compare equal.
var perRecipientFields = regexp.MustCompile(`(?m)^(Delivered-To|Return-Path): .*\r?\n`)

func countWith(msgs [][]byte, s string) int {
	n := 0
	for _, m := range msgs {
		if bytes.Contains(m, []byte(s)) {
			n++
		}
	}
	return n
}

// always: mail over SMTP to a local user lands in the user's Maildir and,
// unchanged, in the archive's; the envelope and header name only the
// real recipient.
func TestBCCAlwaysOverSMTP(t *testing.T) {
	h, _ := bccHarness(t, "always archive@example.test\n")
	if err := h.send("bob@example.net", []string{h.user}, testMessage("archived", "keep me\r\n")); err != nil {
		t.Fatal(err)
	}
	got, arch := inboxMessages(t, h, h.user), inboxMessages(t, h, "archive@example.test")
	if len(got) != 1 || len(arch) != 1 {
		t.Fatalf("alice has %d messages, the archive %d; want 1 each", len(got), len(arch))
	}
	a, b := perRecipientFields.ReplaceAll(got[0], nil), perRecipientFields.ReplaceAll(arch[0], nil)
	if !bytes.Equal(a, b) {
		t.Fatalf("the archive copy differs:\n%s\n---\n%s", a, b)
	}
	if !bytes.Contains(a, []byte("for <alice@example.test>")) || bytes.Contains(a, []byte("archive@")) {
		t.Fatalf("the message names the archive or lost its recipient:\n%s", a)
	}
	if !bytes.Contains(arch[0], []byte("Return-Path: <bob@example.net>")) {
		t.Fatalf("the archive copy's envelope sender is not the message's:\n%s", arch[0])
	}
}

// sender and recipient lines; several lines naming one archive give it
// one copy; a remote archive address is queued with NOTIFY=NEVER.
func TestBCCSenderRecipientAndRemote(t *testing.T) {
	h, remote := bccHarness(t, strings.Join([]string{
		"sender @boss.test boss-archive@example.test",
		"sender Big@Boss.Test boss-archive@example.test", // the same archive again
		"recipient BOB@example.test copies@remote.example",
		"recipient .remote.example never@remote.example", // subdomains only: no match
	}, "\n")+"\n")
	if err := h.send("big@boss.test", []string{h.user}, testMessage("from the boss", "x\r\n")); err != nil {
		t.Fatal(err)
	}
	if err := h.send("someone@else.test", []string{"bob@example.test"}, testMessage("to bob", "y\r\n")); err != nil {
		t.Fatal(err)
	}
	boss := inboxMessages(t, h, "boss-archive@example.test")
	if len(boss) != 1 || countWith(boss, "Subject: from the boss") != 1 {
		t.Fatalf("boss archive has %d messages, want the boss's one", len(boss))
	}
	if n := len(inboxMessages(t, h, "bob@example.test")); n != 1 {
		t.Fatalf("bob has %d messages", n)
	}
	waitFor(t, "the remote archive copy", func() bool { return len(remote.messages()) > 0 })
	time.Sleep(300 * time.Millisecond) // a wrong second copy would come now
	msgs := remote.messages()
	if len(msgs) != 1 || strings.Join(msgs[0].rcpts, ",") != "copies@remote.example" || msgs[0].from != "someone@else.test" {
		t.Fatalf("remote got %+v", msgs)
	}
	if n := msgs[0].opts[0].Notify; len(n) != 1 || n[0] != smtp.DSNNotifyNever {
		t.Fatalf("the archive copy was sent with NOTIFY=%v, want NEVER", n)
	}
	if !bytes.Contains(msgs[0].data, []byte("Subject: to bob")) || bytes.Contains(msgs[0].data, []byte("copies@")) {
		t.Fatalf("remote archive copy:\n%s", msgs[0].data)
	}
}

// An archive address that fails (a remote one refused, a local one that
// does not exist) sends nothing back to the sender; the real recipients
// get their mail.
func TestBCCFailingArchiveNoDSN(t *testing.T) {
	h, remote := bccHarness(t, "always nosuch@example.test\nsender @example.test gone@remote.example\n")
	remote.mu.Lock()
	remote.reject["gone@remote.example"] = "no such user here"
	remote.mu.Unlock()
	if err := submit(t, h, h.user, []string{"friend@remote.example"}, testMessage("out", "x\r\n"), nil, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the real recipient's copy", func() bool { return len(remote.messages()) > 0 })
	if got := remote.messages()[0].rcpts; strings.Join(got, ",") != "friend@remote.example" {
		t.Fatalf("remote got %v", got)
	}
	// The queue decides about the refused archive in the same session;
	// give a DSN, were one made, the time to arrive.
	time.Sleep(2 * time.Second)
	if n := countWith(inboxMessages(t, h, h.user), "multipart/report"); n != 0 {
		t.Fatalf("the sender got %d DSNs about archive copies", n)
	}
	// Control: a real recipient refused the same way does bounce.
	if err := submit(t, h, h.user, []string{"gone@remote.example"}, testMessage("real", "x\r\n"), nil, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the DSN for the real recipient", func() bool {
		return countWith(inboxMessages(t, h, h.user), "multipart/report") == 1
	})
}

// A message refused for its one real recipient (a full mailbox) is not
// archived, and the client hears the refusal, not a later bounce.
func TestBCCRefusedMessageNotArchived(t *testing.T) {
	h, _ := bccHarness(t, "always archive@example.test\n")
	if err := h.send("bob@example.net", []string{h.user}, testMessage("first", "x\r\n")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(h.maildir(h.user), "maildirsize"), []byte("1S\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := h.send("bob@example.net", []string{h.user}, testMessage("too big", "xxxxxxxxxxxx\r\n"))
	if se, ok := err.(*smtp.SMTPError); !ok || se.Code != 552 {
		t.Fatalf("to a full mailbox: %v, want 552", err)
	}
	if arch := inboxMessages(t, h, "archive@example.test"); len(arch) != 1 || countWith(arch, "Subject: too big") != 0 {
		t.Fatalf("the archive has %d messages (the refused one among them: %d)", len(arch), countWith(arch, "Subject: too big"))
	}
}

// Local submissions through the Submitter (sendmail, webmail, SMAP) are
// archived too, with their sender lines matched against the envelope sender.
func TestBCCSubmitter(t *testing.T) {
	h, _ := bccHarness(t, "sender alice@example.test archive@example.test\n")
	sub := &gateway.Submitter{Router: h.srv.mta.Router, Local: h.srv.mta.Local, Queue: h.srv.mta.Queue, Me: h.srv.Config().Me, Log: h.srv.log}
	id, ref, err := sub.Submit(context.Background(), gateway.Submission{
		Login: "alice", UID: -1, From: h.user, Rcpts: []string{"bob@example.test"}, Via: "webmail",
		Msg: []byte("Subject: from webmail\r\n\r\nhello\r\n"),
	})
	if err != nil || ref != nil {
		t.Fatalf("submit: %v %v", ref, err)
	}
	if n := countWith(inboxMessages(t, h, "archive@example.test"), "Subject: from webmail"); n != 1 {
		t.Fatalf("archive has %d copies of the submission (id %s)", n, id)
	}
	if n := countWith(inboxMessages(t, h, "bob@example.test"), "Subject: from webmail"); n != 1 {
		t.Fatalf("bob has %d copies", n)
	}
}

// A reload takes a new bcc setting; a bad one is refused with its file
// and line and the last good one stays.
func TestBCCReload(t *testing.T) {
	h, _ := bccHarness(t, "always archive@example.test\n")
	h.writeSetting("bcc", "always boss-archive@example.test\n")
	if err := h.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	if err := h.send("bob@example.net", []string{h.user}, testMessage("after reload", "x\r\n")); err != nil {
		t.Fatal(err)
	}
	if len(inboxMessages(t, h, "archive@example.test")) != 0 || len(inboxMessages(t, h, "boss-archive@example.test")) != 1 {
		t.Fatal("the reloaded bcc setting is not the one in force")
	}
	h.writeSetting("bcc", "always boss-archive@example.test\nsender nowhere\n")
	err := h.srv.Reload()
	if err == nil || !strings.Contains(err.Error(), filepath.Join(h.etc, "bcc")+":2: bcc:") {
		t.Fatalf("reload with a bad bcc line: %v", err)
	}
	if err := h.send("bob@example.net", []string{h.user}, testMessage("after bad reload", "x\r\n")); err != nil {
		t.Fatal(err)
	}
	if n := len(inboxMessages(t, h, "boss-archive@example.test")); n != 2 {
		t.Fatalf("after a refused reload the archive has %d messages, want 2", n)
	}
}

// LMTP is not archived: the MTA in front made the acceptance and archives.
func TestBCCNotOverLMTP(t *testing.T) {
	h := newHarness(t)
	h.writeSetting("listen", "smtp 127.0.0.1:0\nlmtp 127.0.0.1:0\n")
	h.writeSetting("bcc", "always archive@example.test\n")
	h.addUser("archive@example.test", "archive pass")
	h.restart()
	conn, err := net.Dial("tcp", h.addr("lmtp"))
	if err != nil {
		t.Fatal(err)
	}
	c := smtp.NewClientLMTP(conn)
	defer c.Close()
	if err := c.SendMail("sender@example.org", []string{h.user}, bytes.NewReader(testMessage("over lmtp", "x\r\n"))); err != nil {
		t.Fatal(err)
	}
	if err := h.send("bob@example.net", []string{h.user}, testMessage("over smtp", "x\r\n")); err != nil {
		t.Fatal(err)
	}
	if n := len(inboxMessages(t, h, h.user)); n != 2 {
		t.Fatalf("alice has %d messages, want 2", n)
	}
	arch := inboxMessages(t, h, "archive@example.test")
	if len(arch) != 1 || countWith(arch, "Subject: over smtp") != 1 {
		t.Fatalf("the archive has %d messages, want only the SMTP one", len(arch))
	}
}
