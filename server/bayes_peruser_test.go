package server

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"postern/filters/bayes"
	"postern/filters/state"
	"postern/policy"
)

// learnCorpusInto learns the training corpus into m, spam as spam and ham
// as ham, or the other way round when inverted.
func learnCorpusInto(t *testing.T, m *bayes.Model, inverted bool) {
	t.Helper()
	for _, kind := range []bayes.Class{bayes.Spam, bayes.Ham} {
		as := kind
		if inverted {
			as = map[bayes.Class]bayes.Class{bayes.Spam: bayes.Ham, bayes.Ham: bayes.Spam}[kind]
		}
		files, _ := filepath.Glob(filepath.Join("..", "filters", "bayes", "testdata", "corpus", "train", string(kind), "*.eml"))
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			d, toks := readBayes(t, b)
			if _, err := m.Learn(context.Background(), as, d, toks); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func openBayesStore(t *testing.T, etc string) state.Store {
	t.Helper()
	cfg, err := policy.Load(etc)
	if err != nil {
		t.Fatal(err)
	}
	_, _, store, err := OpenBayes(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return store
}

// Over SMTP, with peruser yes: a message for alice alone is classified by
// alice's model (trained the other way round, so a spam to everyone is
// ham to her: BAYES_MODEL=user); the same message for alice and bob by the
// global one.
func TestBayesPerUserOverSMTP(t *testing.T) {
	h := newHarness(t)
	h.stop()
	h.addUser("bob@example.test", "bob pass")
	h.writeSetting("filters", "bayes\n")
	h.writeSetting("bayes", "minlearns 20\nperuser yes\n")
	h.writeSetting("smtprules", "ADDHEADER=\"X-Bayes: $BAYES_MODEL $BAYES_RESULT\"\n")
	store := openBayesStore(t, h.etc)
	learnCorpusInto(t, &bayes.Model{Store: store}, false)
	// The IMAP login's spelling; the RCPT resolves to alice@example.test.
	learnCorpusInto(t, bayes.UserModel(store, "ALICE@example.test"), true)
	store.Close()
	h.start()

	b, err := os.ReadFile(filepath.Join("..", "filters", "bayes", "testdata", "corpus", "test", "spam", "102.eml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		subject string
		to      []string
		want    string
	}{
		{"for alice", []string{h.user}, "X-Bayes: user ham"},
		{"for two", []string{h.user, "bob@example.test"}, "X-Bayes: global spam"},
	} {
		msg := bytes.Replace(b, []byte("Subject: "), []byte("Subject: "+c.subject+" "), 1)
		if err := h.send("someone@elsewhere.example", c.to, msg); err != nil {
			t.Fatalf("%s: %v", c.subject, err)
		}
		got := regexp.MustCompile(`X-Bayes: \w+ \w+`).FindString(waitInbox(t, h, c.subject))
		if got != c.want {
			t.Errorf("%s: %q; want %q", c.subject, got, c.want)
		}
	}
}

// A user's filing teaches their model and the global one (peruser yes),
// or their model alone (peruser only).
func TestLearnJunkPerUser(t *testing.T) {
	msg := []byte("From: a@shop.example\r\nSubject: cheap pills\r\nMessage-ID: <2@shop.example>\r\n\r\nbuy cheap pills now\r\n")
	h := newHarness(t)
	h.writeSetting("filters", "bayes\n")
	ctx := context.Background()
	for _, c := range []struct {
		setting      string
		user, global bayes.Counts
	}{
		{"peruser yes\n", bayes.Counts{Spam: 1}, bayes.Counts{Spam: 1}},
		{"peruser only\n", bayes.Counts{Spam: 1}, bayes.Counts{}},
	} {
		h.writeSetting("bayes", c.setting)
		if err := h.srv.Reload(); err != nil {
			t.Fatal(err)
		}
		if err := h.srv.LearnJunk(ctx, h.user, msg, true); err != nil {
			t.Fatal(err)
		}
		user, _ := bayes.UserModel(h.srv.store, h.user).Totals(ctx)
		global, _ := (&bayes.Model{Store: h.srv.store}).Totals(ctx)
		if user != c.user || global != c.global {
			t.Errorf("%s: user %+v global %+v; want %+v, %+v", c.setting, user, global, c.user, c.global)
		}
		// Start the next case from nothing.
		d, toks := readBayes(t, msg)
		bayes.UserModel(h.srv.store, h.user).Forget(ctx, d, toks)
		(&bayes.Model{Store: h.srv.store}).Forget(ctx, d, toks)
	}
}

// readBayes is the digest and the tokens of msg, as learned.
func readBayes(t *testing.T, msg []byte) (string, []string) {
	t.Helper()
	d, toks, err := bayes.ReadMessage(bytes.NewReader(msg), int64(len(msg)), bayes.TokenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return d, toks
}

// Autolearn over SMTP: a message from outside that the rules score past
// the spam threshold is learned as spam, after its 250; the same message
// submitted by an authenticated user teaches nothing.
func TestBayesAutolearnOverSMTP(t *testing.T) {
	h := newHarness(t)
	h.stop()
	h.writeSetting("filters", "bayes\n")
	h.writeSetting("bayes", "autolearn 6 -100\n")
	h.writeSetting("smtprules", "if (/^Subject:.*miracle/:h)\n{\n\tSCORE_ADD=7\n}\n")
	h.start()
	ctx := context.Background()
	totals := func() bayes.Counts {
		c, err := (&bayes.Model{Store: h.srv.store}).Totals(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	sub := []byte("From: alice@example.test\r\nSubject: miracle cure sent by alice\r\nMessage-ID: <sub@example.test>\r\n\r\nmiracle pills for you\r\n")
	if err := submit(t, h, h.user, []string{h.user}, sub, nil, nil); err != nil {
		t.Fatal(err)
	}
	waitInbox(t, h, "miracle cure sent by alice")
	out := []byte("From: x@shop.example\r\nSubject: miracle cure\r\nMessage-ID: <out@shop.example>\r\n\r\nmiracle pills cheap\r\n")
	if err := h.send("x@shop.example", []string{h.user}, out); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); totals().Spam == 0 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
	}
	h.settle()
	if c := totals(); c != (bayes.Counts{Spam: 1}) {
		t.Fatalf("totals %+v; want the outside message alone learned as spam", c)
	}
	d, _ := readBayes(t, out)
	if v, _, _ := h.srv.store.Get(ctx, "bayes:d:"+d); string(v) != "spam" {
		t.Fatalf("the outside message's digest is %q", v)
	}
}
