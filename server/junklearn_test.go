package server

import (
	"context"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"postern/filters/bayes"
)

// A user who MOVEs a message into Junk with an IMAP client teaches the
// bayes check's model that it is spam; moving it back out into INBOX
// teaches ham instead (the model forgets the spam learning of the same
// message). The learning is asynchronous, so the totals are polled.
func TestIMAPFilingTeachesBayes(t *testing.T) {
	h := newHarness(t)
	h.writeSetting("filters", "bayes\n")
	if err := h.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	msg := []byte("From: offers@shop.example\r\nTo: " + h.user + "\r\nSubject: cheap pills\r\nMessage-ID: <imap-junk-1@shop.example>\r\n\r\nbuy cheap pills now, limited offer\r\n")
	if err := h.send("offers@shop.example", []string{h.user}, msg); err != nil {
		t.Fatal(err)
	}
	waitInbox(t, h, "cheap pills")

	waitTotals := func(want bayes.Counts) {
		t.Helper()
		var c bayes.Counts
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			var err error
			c, err = (&bayes.Model{Store: h.srv.store}).Totals(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if c == want {
				return
			}
		}
		t.Fatalf("model totals %+v, want %+v", c, want)
	}

	c := h.imapLogin(nil)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Move(imap.SeqSetNum(1), "Junk").Wait(); err != nil {
		t.Fatalf("MOVE into Junk: %v", err)
	}
	waitTotals(bayes.Counts{Spam: 1})

	if _, err := c.Select("Junk", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Move(imap.SeqSetNum(1), "INBOX").Wait(); err != nil {
		t.Fatalf("MOVE out of Junk: %v", err)
	}
	waitTotals(bayes.Counts{Ham: 1})
}
