package bayes

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"postern/filters"
	"postern/filters/state"
	"postern/filters/state/statetest"
	"postern/policy"
)

func parseLines(t testing.TB, lines ...string) Config {
	t.Helper()
	var ls []policy.Line
	for i, l := range lines {
		ls = append(ls, policy.Line{File: "bayes", Num: i + 1, Text: l})
	}
	cfg, err := ParseConfig(ls)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// A user who trained their model the other way round (they call the
// corpus's spam ham: a newsletter reader) gets their model's verdict when
// the message is for them alone; a message for two accounts, for an
// untrained user, or with peruser off, is classified by the global model.
func TestPerUserModel(t *testing.T) {
	statetest.Each(t, func(t *testing.T, s state.Store) {
		learnAll(t, &Model{Store: s}, Spam, corpus(t, "train", "spam"))
		learnAll(t, &Model{Store: s}, Ham, corpus(t, "train", "ham"))
		// The login as IMAP gives it; the RCPT resolution may spell it in
		// another case: one model.
		alice := UserModel(s, "Alice@Example.TEST")
		learnAll(t, alice, Ham, corpus(t, "train", "spam"))
		learnAll(t, alice, Spam, corpus(t, "train", "ham"))
		if UserPrefix("alice@example.test") != alice.Prefix || !strings.HasPrefix(alice.Prefix, "bayes:u:") {
			t.Fatalf("user prefix %q not canonical", alice.Prefix)
		}

		f, _ := New(Options{Config: parseLines(t, "minlearns 20", "peruser yes"), Store: s})
		msg := corpus(t, "test", "spam")[0]
		ctx := context.Background()
		for _, c := range []struct {
			name     string
			accounts []string
			model    string
			result   string
		}{
			{"alice alone", []string{"alice@example.test"}, "user", "ham"},
			{"alice and bob", []string{"alice@example.test", "bob@example.test"}, "global", "spam"},
			{"bob, untrained", []string{"bob@example.test"}, "global", "spam"},
			{"no local account", nil, "global", "spam"},
		} {
			res := f.CheckData(ctx, &filters.Session{ID: c.name, Rcpts: c.accounts, Accounts: c.accounts}, bytes.NewReader(msg))
			if res.Vars[VarModel] != c.model || res.Vars[VarResult] != c.result {
				t.Errorf("%s: model %q result %q (%s); want %s, %s", c.name, res.Vars[VarModel], res.Vars[VarResult], res.Reason, c.model, c.result)
			}
		}
		off, _ := New(Options{Config: parseLines(t, "minlearns 20"), Store: s})
		res := off.CheckData(ctx, &filters.Session{Accounts: []string{"alice@example.test"}}, bytes.NewReader(msg))
		if res.Vars[VarModel] != "global" || res.Vars[VarResult] != "spam" {
			t.Errorf("peruser off: %+v", res.Vars)
		}
		if tot, _ := (&Model{Store: s}).Totals(ctx); tot != (Counts{30, 30}) {
			t.Errorf("global totals %+v: the user's learning leaked into them", tot)
		}
	})
}

// Autolearn learns, into the global model and after the outcome, a
// message whose score without bayes's is past a threshold; not one in
// between, not an authenticated client's, not a deferred transaction's.
func TestAutolearn(t *testing.T) {
	statetest.Each(t, func(t *testing.T, s state.Store) {
		f, _ := New(Options{Config: parseLines(t, "minlearns 20", "autolearn 8 -1"), Store: s})
		ctx := context.Background()
		send := func(i int, auth string, o filters.Outcome) {
			msg := fmt.Appendf(nil, "From: a@shop.example\r\nSubject: offer %d\r\nMessage-ID: <%d@shop.example>\r\n\r\ncheap pills number %d\r\n", i, i, i)
			sess := &filters.Session{ID: fmt.Sprint(i), AuthUser: auth}
			f.CheckData(ctx, sess, bytes.NewReader(msg))
			f.Outcome(ctx, sess, o)
		}
		data := func(v filters.Verdict, score float64) filters.Outcome {
			return filters.Outcome{Stage: filters.StageData, Verdict: v, Score: score}
		}
		send(1, "", data(filters.Reject, 12))                                                        // spam
		send(2, "", data(filters.Accept, 3))                                                         // unsure: nothing
		send(3, "bob", data(filters.Accept, 20))                                                     // authenticated: never
		send(4, "", data(filters.Accept, -2))                                                        // ham
		send(5, "", filters.Outcome{Stage: filters.StageData, Verdict: filters.Tempfail, Score: 30}) // not stored
		send(6, "", data(filters.Quarantine, 8))                                                     // spam, at the threshold
		f.Close()                                                                                    // waits for the queue
		if tot, err := (&Model{Store: s}).Totals(ctx); err != nil || tot != (Counts{2, 1}) {
			t.Fatalf("totals after autolearn %+v, %v; want 2 spam, 1 ham", tot, err)
		}
		if n := len(f.auto.pending); n != 0 {
			t.Errorf("%d messages still remembered", n)
		}
	})
}

// Bigrams add the pairs of adjacent body words, never of header words,
// and Learn accepts them; without the setting there are none.
func TestBigrams(t *testing.T) {
	msg := []byte("Subject: hello there\r\n\r\nClick here to claim your prize\r\n")
	plain, _ := Tokenize(bytes.NewReader(msg), int64(len(msg)))
	bi, _ := TokenizeWith(bytes.NewReader(msg), int64(len(msg)), TokenOptions{Bigrams: true})
	has := func(toks []string, tok string) bool {
		for _, t := range toks {
			if t == tok {
				return true
			}
		}
		return false
	}
	for _, want := range []string{"bi:click here", "bi:here claim", "bi:claim your", "bi:your prize"} {
		if !has(bi, want) {
			t.Errorf("no %q in %q", want, bi)
		}
	}
	for _, tok := range append(plain, bi...) {
		if strings.HasPrefix(tok, "bi:subject") || strings.HasPrefix(tok, "bi:hello") || (has(plain, tok) && strings.HasPrefix(tok, BigramPrefix)) {
			t.Errorf("unexpected bigram %q", tok)
		}
	}
	if len(bi) != len(plain)+4 {
		t.Errorf("%d tokens with bigrams, %d without", len(bi), len(plain))
	}
	m := &Model{Store: statetest.Embedded(t)}
	d, toks, err := ReadMessage(bytes.NewReader(msg), int64(len(msg)), TokenOptions{Bigrams: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Learn(context.Background(), Spam, d, toks); err != nil {
		t.Fatalf("learn with bigrams: %v", err)
	}
	for _, bad := range []string{"bi:a  b", "bi:a", "bi: b", "bi:a b c", "bi:a\tb"} {
		if validToken(bad) {
			t.Errorf("%q valid", bad)
		}
	}
	// The cap counts bigrams too.
	var b strings.Builder
	b.WriteString("Subject: x\r\n\r\n")
	for i := 0; i < 3000; i++ {
		fmt.Fprintf(&b, "w%04d ", i)
	}
	big := b.String()
	if toks, _ := TokenizeWith(strings.NewReader(big), int64(len(big)), TokenOptions{Bigrams: true}); len(toks) != MaxTokens {
		t.Errorf("%d tokens; want the cap %d", len(toks), MaxTokens)
	}
}

// Expire removes, from the global model and the users', the tokens last
// learned long ago that are in few messages; it keeps frequent and recent
// ones, stamps tokens learned before expiry existed, and pages through a
// store larger than one page.
func TestExpire(t *testing.T) {
	statetest.Each(t, func(t *testing.T, s state.Store) {
		ctx := context.Background()
		const day0 = 20000
		at := func(day int64) func() time.Time { return func() time.Time { return time.Unix(day*86400+3600, 0) } }
		g := &Model{Store: s, Now: at(day0)}
		digest := func(i int) string { return fmt.Sprintf("%032x", i) }
		learn := func(m *Model, i int, c Class, toks ...string) {
			t.Helper()
			if _, err := m.Learn(ctx, c, digest(i), toks); err != nil {
				t.Fatal(err)
			}
		}
		learn(g, 1, Spam, "rare", "common")
		learn(g, 2, Ham, "common")
		learn(g, 3, Ham, "common")
		alice := UserModel(s, "alice")
		alice.Now = at(day0)
		learn(alice, 1, Spam, "rare2", "common")
		many := func(from int) []string {
			var out []string
			for i := from; i < from+600; i++ {
				out = append(out, fmt.Sprintf("junk%04d", i))
			}
			return out
		}
		learn(g, 4, Spam, many(0)...)
		learn(g, 5, Spam, many(600)...)
		g.Now = at(day0 + 80)
		learn(g, 6, Ham, "fresh")
		// A token from before expiry: counted, no learn day.
		if err := state.IncrMany(ctx, s, []string{g.tokenKey("legacy")}, 1); err != nil {
			t.Fatal(err)
		}
		var steps int
		st, err := Expire(ctx, s, ExpireOptions{Days: 90, MaxCount: DefaultExpireMaxCount, Today: day0 + 100}, func(ExpireStats) { steps++ })
		if err != nil {
			t.Fatal(err)
		}
		if st.Removed != 3+1200 || st.Stamped != 1 || st.Scanned != 4+1200+1+1 || steps < 2 {
			t.Errorf("expire stats %+v in %d steps; want 1203 removed, 1 stamped, 1206 scanned, several steps", st, steps)
		}
		exists := func(key string) bool {
			_, found, err := s.Get(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			return found
		}
		for key, want := range map[string]bool{
			g.tokenKey("rare"): false, g.prefix() + agePart + "rare": false,
			alice.tokenKey("rare2"): false, g.tokenKey("junk0042"): false, g.tokenKey("junk1100"): false,
			g.tokenKey("common"): true, alice.tokenKey("common"): false, // alice's is in one message g.tokenKey("fresh"): true,
			g.tokenKey("legacy"): true, g.prefix() + agePart + "legacy": true,
		} {
			if got := exists(key); got != want {
				t.Errorf("%s present %v; want %v", key, got, want)
			}
		}
		if tot, _ := g.Totals(ctx); tot != (Counts{3, 3}) {
			t.Errorf("totals changed by expire: %+v", tot)
		}
		if _, err := Expire(ctx, s, ExpireOptions{Days: 0}, nil); err == nil {
			t.Error("days 0 accepted")
		}
	})
}

// Bad lines of the new settings are refused with the file and line.
func TestParseConfigNewSettings(t *testing.T) {
	cfg := parseLines(t, "peruser only", "autolearn 12 -2.5", "bigrams yes")
	if cfg.PerUser != PerUserOnly || cfg.Autolearn == nil || *cfg.Autolearn != (Autolearn{12, -2.5}) || !cfg.Tokens().Bigrams {
		t.Fatalf("config %+v", cfg)
	}
	if d := DefaultConfig(); d.PerUser != PerUserNo || d.Autolearn != nil || d.Bigrams {
		t.Fatalf("defaults %+v", d)
	}
	if cfg := parseLines(t, "autolearn 5 1", "autolearn no"); cfg.Autolearn != nil {
		t.Fatal("autolearn no did not turn it off")
	}
	for _, bad := range []string{"peruser maybe", "peruser", "autolearn 1 5", "autolearn 3 3", "autolearn 5", "autolearn x -1", "autolearn NaN -1", "autolearn 5000 1", "bigrams 1", "bigrams yes please"} {
		_, err := ParseConfig([]policy.Line{{File: "/etc/postern/bayes", Num: 7, Text: bad}})
		if err == nil || !strings.Contains(err.Error(), "/etc/postern/bayes:7") {
			t.Errorf("%q: error %v; want one naming /etc/postern/bayes:7", bad, err)
		}
	}
}
