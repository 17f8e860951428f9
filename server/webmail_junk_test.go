package server

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"postern/filters/bayes"
	"postern/mailbox/maildir"
)

// The webmail's Junk button teaches the server's bayes model: with the
// bayes check in the filters setting, pressing Junk on a message files it
// in Junk and the model's totals show one spam; Not junk there brings it
// back to INBOX and the model counts it as ham instead.
func TestWebmailJunkTeachesBayes(t *testing.T) {
	h := newHarness(t)
	h.writeSetting("filters", "bayes\n")
	if err := h.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	md, err := maildir.Open(h.maildir(h.user))
	if err != nil {
		t.Fatal(err)
	}
	msg := "From: a@shop.example\r\nTo: alice@example.test\r\nSubject: cheap pills\r\nMessage-ID: <1@shop.example>\r\n\r\nbuy cheap pills now\r\n"
	if _, err := md.Deliver(maildir.Inbox, strings.NewReader(msg), maildir.DeliverOptions{}); err != nil {
		t.Fatal(err)
	}
	uidIn := func(folder string) uint32 {
		t.Helper()
		f, err := md.Folder(folder)
		if err != nil {
			t.Fatal(err)
		}
		snap, err := f.Sync(false)
		if err != nil || len(snap.Messages) != 1 {
			t.Fatalf("%s: %v %+v", folder, err, snap)
		}
		return snap.Messages[0].UID
	}
	totals := func() bayes.Counts {
		t.Helper()
		c, err := (&bayes.Model{Store: h.srv.store}).Totals(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	press := func(w *webClient, folder, op string, uid uint32) {
		t.Helper()
		form := url.Values{"csrf": {w.csrf}, "f": {folder}, "uid": {fmt.Sprint(uid)}, "op": {op}}
		resp, body := w.do("POST", "/mail/act", "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("%s: %d %s", op, resp.StatusCode, body)
		}
	}

	w := h.webLogin(h.user, h.pass)
	press(w, "INBOX", "junk", uidIn(maildir.Inbox))
	uid := uidIn("Junk")
	if c := totals(); c.Spam != 1 || c.Ham != 0 {
		t.Fatalf("after Junk: %+v, want 1 spam", c)
	}
	press(w, "Junk", "notjunk", uid)
	uidIn(maildir.Inbox)
	if c := totals(); c.Spam != 0 || c.Ham != 1 {
		t.Fatalf("after Not junk: %+v, want 1 ham", c)
	}
}
