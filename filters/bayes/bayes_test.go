package bayes

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"postern/filters"
	"postern/filters/state"
	"postern/filters/state/statetest"
	"postern/policy"
)

// corpus reads the messages of testdata/corpus/SPLIT/KIND.
func corpus(t testing.TB, split, kind string) [][]byte {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "corpus", split, kind, "*.eml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no corpus in %s/%s: %v", split, kind, err)
	}
	var out [][]byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func learnAll(t testing.TB, m *Model, c Class, msgs [][]byte) {
	t.Helper()
	ctx := context.Background()
	for _, b := range msgs {
		d, toks, err := ReadMessage(bytes.NewReader(b), int64(len(b)), TokenOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.Learn(ctx, c, d, toks); err != nil {
			t.Fatal(err)
		}
	}
}

func testParams() Parameters {
	p := DefaultParameters()
	p.MinLearns = 20
	return p
}

// Trained on 30 spam and 30 ham, the classifier puts every held-out
// message on its side, with a probability past the default score bands,
// on both store implementations.
func TestClassifiesHeldOutCorpus(t *testing.T) {
	statetest.Each(t, func(t *testing.T, s state.Store) {
		m := &Model{Store: s}
		learnAll(t, m, Spam, corpus(t, "train", "spam"))
		learnAll(t, m, Ham, corpus(t, "train", "ham"))
		ctx := context.Background()
		if tot, err := m.Totals(ctx); err != nil || tot != (Counts{30, 30}) {
			t.Fatalf("totals = %+v, %v; want 30 spam, 30 ham", tot, err)
		}
		for _, kind := range []string{"spam", "ham"} {
			for i, b := range corpus(t, "test", kind) {
				toks, _ := Tokenize(bytes.NewReader(b), int64(len(b)))
				cl, err := m.Classify(ctx, testParams(), toks)
				if err != nil {
					t.Fatal(err)
				}
				if !cl.Trained {
					t.Fatal("not trained after 30 and 30 with minlearns 20")
				}
				if kind == "spam" && cl.Prob < 0.99 || kind == "ham" && cl.Prob > 0.01 {
					t.Errorf("held-out %s #%d: probability %.4f (%d tokens)", kind, i, cl.Prob, len(cl.Used))
				}
			}
		}
	})
}

// Below minlearns the classifier says nothing, whatever the tokens.
func TestUntrainedSaysNothing(t *testing.T) {
	m := &Model{Store: statetest.Embedded(t)}
	learnAll(t, m, Spam, corpus(t, "train", "spam"))
	learnAll(t, m, Ham, corpus(t, "train", "ham")[:5])
	b := corpus(t, "test", "spam")[0]
	toks, _ := Tokenize(bytes.NewReader(b), int64(len(b)))
	cl, err := m.Classify(context.Background(), testParams(), toks)
	if err != nil || cl.Trained || cl.Prob != 0.5 || cl.Totals != (Counts{30, 5}) {
		t.Fatalf("classification with 5 ham learned = %+v, %v; want untrained, 0.5", cl, err)
	}
}

// Learning a message twice counts it once; learning it as the other
// class moves it; forget takes it out; forget of an unknown message does
// nothing.
func TestLearnOnceRelearnForget(t *testing.T) {
	statetest.Each(t, func(t *testing.T, s state.Store) {
		ctx := context.Background()
		m := &Model{Store: s}
		b := corpus(t, "train", "spam")[0]
		d, toks, err := ReadMessage(bytes.NewReader(b), int64(len(b)), TokenOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// The same message with another Received field and CRLF/LF
		// difference is the same message.
		copy2 := append([]byte("Received: from x by y; Mon, 2 Nov 2026 10:00:00 +0000\r\n"), bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))...)
		d2, _, _ := ReadMessage(bytes.NewReader(copy2), int64(len(copy2)), TokenOptions{})
		if d2 != d {
			t.Fatalf("digest of a copy %s != %s", d2, d)
		}
		steps := []struct {
			c    Class
			want LearnResult
			tot  Counts
		}{{Spam, Learned, Counts{1, 0}}, {Spam, AlreadyLearned, Counts{1, 0}}, {Ham, Relearned, Counts{0, 1}}}
		for _, st := range steps {
			r, err := m.Learn(ctx, st.c, d, toks)
			tot, _ := m.Totals(ctx)
			if err != nil || r != st.want || tot != st.tot {
				t.Fatalf("learn %s: %v, %v, totals %+v; want %v, %+v", st.c, r, err, tot, st.want, st.tot)
			}
		}
		vals, _ := state.GetMany(ctx, s, []string{m.tokenKey(toks[0])})
		if c := decodeCounts(vals[0]); c != (Counts{0, 1}) {
			t.Fatalf("token %q after relearn: %+v; want 0 spam 1 ham", toks[0], c)
		}
		if ok, err := m.Forget(ctx, d, toks); !ok || err != nil {
			t.Fatalf("forget = %v, %v", ok, err)
		}
		if tot, _ := m.Totals(ctx); tot != (Counts{}) {
			t.Fatalf("totals after forget %+v", tot)
		}
		vals, _ = state.GetMany(ctx, s, []string{m.tokenKey(toks[0])})
		if c := decodeCounts(vals[0]); c != (Counts{}) {
			t.Fatalf("token after forget: %+v", c)
		}
		if ok, err := m.Forget(ctx, d, toks); ok || err != nil {
			t.Fatalf("second forget = %v, %v; want false", ok, err)
		}
		if _, err := m.Learn(ctx, Spam, "../../etc", toks); err == nil {
			t.Fatal("a bad digest was accepted")
		}
		for _, bad := range [][]string{{""}, {"two words"}, {strings.Repeat("x", 201)}, {"bad\xff"}, make([]string, MaxTokens+1)} {
			if _, err := m.Learn(ctx, Spam, d, bad); err == nil {
				t.Fatalf("tokens %.40q accepted", bad)
			}
		}
		if tot, _ := m.Totals(ctx); tot != (Counts{}) {
			t.Fatalf("refused learns counted: %+v", tot)
		}
	})
}

// A store that cannot answer: learn fails with the store's error, and
// the check gives no opinion and no score (never a rejection).
func TestStoreDown(t *testing.T) {
	s := statetest.Unavailable(t)
	m := &Model{Store: s}
	b := corpus(t, "test", "spam")[0]
	d, toks, _ := ReadMessage(bytes.NewReader(b), int64(len(b)), TokenOptions{})
	if _, err := m.Learn(context.Background(), Spam, d, toks); !errors.Is(err, state.ErrUnavailable) {
		t.Fatalf("learn on a down store: %v; want ErrUnavailable", err)
	}
	f, _ := New(Options{Config: DefaultConfig(), Store: s})
	res := f.CheckData(context.Background(), &filters.Session{ID: "t"}, bytes.NewReader(b))
	if res.Verdict != filters.NoOpinion || res.Score != 0 || res.Vars[VarResult] != "error" {
		t.Fatalf("result on a down store: %+v", res)
	}
}

// The check scores a trained spam by the config's bands and sets the
// rules variables; no Authentication-Results.
func TestFilterResult(t *testing.T) {
	s := statetest.Embedded(t)
	m := &Model{Store: s}
	learnAll(t, m, Spam, corpus(t, "train", "spam"))
	learnAll(t, m, Ham, corpus(t, "train", "ham"))
	cfg, err := ParseConfig([]policy.Line{{File: "bayes", Num: 1, Text: "minlearns 20"}, {File: "bayes", Num: 2, Text: "spam 0.95 3.5"}, {File: "bayes", Num: 3, Text: "ham 0.05 -1.5"}})
	if err != nil {
		t.Fatal(err)
	}
	f, _ := New(Options{Config: cfg, Store: s})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for kind, want := range map[string]float64{"spam": 3.5, "ham": -1.5} {
		b := corpus(t, "test", kind)[1]
		res := f.CheckData(ctx, &filters.Session{}, bytes.NewReader(b))
		if res.Score != want || res.Vars[VarResult] != kind || res.Vars[VarProb] == "" || len(res.AuthResults) != 0 || res.Verdict != filters.NoOpinion {
			t.Errorf("%s: %+v", kind, res)
		}
	}
}

func TestParseConfig(t *testing.T) {
	line := func(s string) []policy.Line { return []policy.Line{{File: "bayes", Num: 4, Text: s}} }
	cfg, err := ParseConfig(append(line("spam 0.9 1"), line("spam 0.999 6")...))
	if err != nil || len(cfg.Spam) != 2 || cfg.Spam[0].Prob != 0.999 || cfg.Score(0.95) != 1 || cfg.Score(0.9995) != 6 || cfg.Score(0.005) != -2 {
		t.Fatalf("spam bands: %+v, %v", cfg, err)
	}
	for _, bad := range []string{"spam 1.5 3", "ham 0.1", "minlearns 0", "minlearns lots", "maxtokens 5000", "spam 0.9 NaN", "frobnicate 1"} {
		if _, err := ParseConfig(line(bad)); err == nil || !strings.Contains(err.Error(), "bayes:4") {
			t.Errorf("%q: error %v; want one naming bayes:4", bad, err)
		}
	}
}

// Counts taken below zero read as zero and do not borrow from each other.
func TestDecodeCounts(t *testing.T) {
	for _, c := range []struct {
		n    int64
		want Counts
	}{
		{3<<32 + 5, Counts{3, 5}},
		{3<<32 - 1, Counts{3, 0}}, // ham 0 forgotten once
		{-1 << 32, Counts{0, 0}},  // spam 0 forgotten once
		{-1<<32 + 7, Counts{0, 7}},
		{0, Counts{}},
	} {
		if got := decodeCounts([]byte(strconv.FormatInt(c.n, 10))); got != c.want {
			t.Errorf("decodeCounts(%d) = %+v; want %+v", c.n, got, c.want)
		}
	}
	if got := decodeCounts([]byte("junk")); got != (Counts{}) {
		t.Errorf("junk: %+v", got)
	}
}
