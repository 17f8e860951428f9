package server

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"postern/filters/bayes"
	"postern/policy"
)

// The bayes check, trained on the corpus of filters/bayes, scores
// messages received over SMTP: a spam gets the spam band's score in
// X-Postern-Score and its probability in the rules variables (here
// written into a header by an smtprules ADDHEADER); a ham gets the ham
// band's; no Authentication-Results part names it.
func TestBayesScoresSMTPMessages(t *testing.T) {
	h := newHarness(t)
	h.stop()
	h.writeSetting("filters", "bayes\n")
	h.writeSetting("bayes", "minlearns 20\nspam 0.95 4.5\nham 0.05 -1.5\n")
	h.writeSetting("smtprules", "SURE=no\nif ($BAYES_PROB >= 0.999)\n{\n\tSURE=yes\n}\n"+
		"ADDHEADER=\"X-Bayes: $BAYES_RESULT $BAYES_PROB sure=$SURE\"\n")
	trainBayes(t, h.etc)
	h.start()

	corpus := filepath.Join("..", "filters", "bayes", "testdata", "corpus", "test")
	for _, c := range []struct{ kind, file, score string }{{"spam", "spam/103.eml", "bayes=4.5"}, {"ham", "ham/103.eml", "bayes=-1.5"}} {
		b, err := os.ReadFile(filepath.Join(corpus, c.file))
		if err != nil {
			t.Fatal(err)
		}
		b = bytes.Replace(b, []byte("Subject: "), []byte("Subject: held-out "+c.kind+" "), 1)
		if err := h.send("someone@elsewhere.example", []string{h.user}, b); err != nil {
			t.Fatalf("%s: %v", c.kind, err)
		}
		msg := waitInbox(t, h, "held-out "+c.kind)
		t.Logf("%s", msg[:strings.Index(msg, "\n\n")])
		score := regexp.MustCompile(`X-Postern-Score: [^\n]*`).FindString(msg)
		if !strings.Contains(score, c.score) {
			t.Errorf("%s: %q; want %s", c.kind, score, c.score)
		}
		m := regexp.MustCompile(`X-Bayes: (\w+) ([0-9.]+)`).FindStringSubmatch(msg)
		if m == nil || m[1] != c.kind || c.kind == "spam" && m[2] < "0.95" || c.kind == "ham" && m[2] > "0.05" {
			t.Errorf("%s: rules variables %q", c.kind, m)
		}
		if sure := strings.Contains(msg, "sure=yes"); sure != (c.kind == "spam") {
			t.Errorf("%s: the numeric rule on BAYES_PROB matched: %v", c.kind, sure)
		}
		if ar := regexp.MustCompile(`(?m)^Authentication-Results:.*(\n[ \t].*)*`).FindString(msg); strings.Contains(ar, "bayes") {
			t.Errorf("%s: bayes in Authentication-Results", c.kind)
		}
	}
}

// trainBayes learns the training corpus into the installation's store
// (the server is stopped, so the store is free).
func trainBayes(t *testing.T, etc string) {
	t.Helper()
	cfg, err := policy.Load(etc)
	if err != nil {
		t.Fatal(err)
	}
	m, _, store, err := OpenBayes(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	learnCorpusInto(t, m, false)
}

// waitInbox returns the message with subject from the user's inbox.
func waitInbox(t *testing.T, h *harness, subject string) string {
	t.Helper()
	h.settle()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		for _, m := range inboxMessages(t, h, h.user) {
			msg := strings.ReplaceAll(string(m), "\r\n", "\n")
			if strings.Contains(msg, "\nSubject: "+subject) {
				return msg
			}
		}
	}
	t.Fatalf("no %q in the inbox", subject)
	return ""
}

// LearnJunk (what the IMAP server and the webmail call when a user files
// a message into or out of Junk) learns into the server's model when the
// bayes check is on, once per message, and does nothing when it is off.
func TestLearnJunk(t *testing.T) {
	msg := []byte("From: a@shop.example\r\nTo: b@example.test\r\nSubject: cheap pills\r\nMessage-ID: <1@shop.example>\r\n\r\nbuy cheap pills now\r\n")
	totals := func(h *harness) bayes.Counts {
		t.Helper()
		c, err := (&bayes.Model{Store: h.srv.store}).Totals(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	h := newHarness(t)
	if err := h.srv.LearnJunk(context.Background(), h.user, msg, true); err != nil {
		t.Fatal(err)
	}
	if c := totals(h); c.Spam != 0 || c.Ham != 0 {
		t.Fatalf("learned without the bayes check: %+v", c)
	}
	h.writeSetting("filters", "bayes\n")
	if err := h.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := h.srv.LearnJunk(context.Background(), h.user, msg, true); err != nil {
			t.Fatal(err)
		}
	}
	if c := totals(h); c.Spam != 1 || c.Ham != 0 {
		t.Fatalf("after filing into Junk twice: %+v, want 1 spam", c)
	}
	if err := h.srv.LearnJunk(context.Background(), h.user, msg, false); err != nil {
		t.Fatal(err)
	}
	if c := totals(h); c.Spam != 0 || c.Ham != 1 {
		t.Fatalf("after filing it out of Junk: %+v, want 1 ham", c)
	}
}
