package bayes

import (
	"bytes"
	"os"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"postern/policy"
)

func tokenize(t testing.TB, msg string) []string {
	t.Helper()
	toks, err := Tokenize(strings.NewReader(msg), int64(len(msg)))
	if err != nil {
		t.Fatal(err)
	}
	return toks
}

// Header words are prefixed by field, the From name and domain and link
// hosts are tokens, encoded words and base64 text are decoded, HTML is
// reduced to its visible text, and words are lower-cased and bounded.
func TestTokenize(t *testing.T) {
	msg := "From: =?utf-8?q?Gr=C3=BC=C3=9Fe_Team?= <news@Shop.Example>\r\n" +
		"Subject: FREE Offer\r\n" +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: multipart/alternative; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
		"SGVsbG8gV29ybGQgaHR0cDovL2xpbmsuZXhhbXBsZS9wYXRo\r\n" + // "Hello World http://link.example/path"
		"--b\r\nContent-Type: text/html\r\n\r\n" +
		"<html><style>.hidden{color:white}</style><script>var secretcode=1</script><p>Visible&nbsp;Words</p><!-- commentword --></html>\r\n" +
		"--b\r\nContent-Type: application/pdf\r\n\r\nJVBERi0=\r\n" +
		"--b--\r\n"
	toks := tokenize(t, msg)
	for _, want := range []string{"subject:free", "subject:offer", "from:grüße", "from:team", "fromdom:shop.example",
		"hello", "world", "url:link.example", "html", "visible", "words", "part:application/pdf"} {
		if !slices.Contains(toks, want) {
			t.Errorf("token %q missing from %q", want, toks)
		}
	}
	for _, not := range []string{"secretcode", "hidden", "commentword", "color", "free", "p"} {
		if slices.Contains(toks, not) {
			t.Errorf("token %q should not be there: %q", not, toks)
		}
	}
	if i, j := slices.Index(toks, "subject:free"), slices.Index(toks, "hello"); i > j {
		t.Errorf("header tokens should come first: %q", toks)
	}
	long := tokenize(t, "Subject: x\r\n\r\n"+strings.Repeat("a", 500)+" ok-word- 'quoted'\r\n")
	if !slices.Equal(long, []string{"long:aaaaaaaa", "ok-word", "quoted"}) {
		t.Errorf("long and trimmed words: %q", long)
	}
}

// However big the message, the tokens are bounded.
func TestTokenizeBounds(t *testing.T) {
	var b strings.Builder
	b.WriteString("Subject: many\r\n\r\n")
	for i := 0; b.Len() < 2*MaxScan; i++ {
		b.WriteString("word")
		b.WriteString(strings.Repeat("x", i%20))
		b.WriteString(string(rune('a'+i%26)) + string(rune('a'+i/26%26)) + string(rune('a'+i/676%26)) + " ")
	}
	toks := tokenize(t, b.String())
	if len(toks) != MaxTokens || toks[0] != "subject:many" {
		t.Fatalf("%d tokens, first %q; want %d, subject:many first", len(toks), toks[0], MaxTokens)
	}
}

func FuzzTokenize(f *testing.F) {
	for _, p := range []string{"testdata/corpus/train/spam/000.eml", "testdata/corpus/train/ham/000.eml", "testdata/corpus/test/spam/101.eml"} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: text/html\r\n\r\n<a href=http://a.b>"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		toks, err := Tokenize(bytes.NewReader(msg), int64(len(msg)))
		if err != nil {
			t.Fatal(err)
		}
		if len(toks) > MaxTokens {
			t.Fatalf("%d tokens", len(toks))
		}
		seen := map[string]bool{}
		for _, tok := range toks {
			if tok == "" || seen[tok] || !utf8.ValidString(tok) || len(tok) > 200 || strings.ContainsAny(tok, " \t\r\n") {
				t.Fatalf("bad token %q", tok)
			}
			seen[tok] = true
		}
		if _, err := Digest(bytes.NewReader(msg), int64(len(msg))); err != nil {
			t.Fatal(err)
		}
		// With bigrams: the same bounds, and every token is one that
		// Learn (and the control socket) accepts.
		bi, err := TokenizeWith(bytes.NewReader(msg), int64(len(msg)), TokenOptions{Bigrams: true})
		if err != nil {
			t.Fatal(err)
		}
		if err := validTokens(bi); err != nil {
			t.Fatal(err)
		}
	})
}

func FuzzParseConfig(f *testing.F) {
	f.Add("minlearns 20\nmaxtokens 150\nspam 0.99 4\nham 0.01 -2\n")
	f.Add("spam 1e400 x\nham -0 NaN\n# comment\n")
	f.Add("peruser only\nautolearn 12 -2\nbigrams yes\n")
	f.Add("autolearn NaN 1\nautolearn 1 1\nautolearn no\nperuser YES\n")
	f.Fuzz(func(t *testing.T, text string) {
		var lines []policy.Line
		for i, l := range strings.Split(text, "\n") {
			if strings.TrimSpace(l) != "" && !strings.HasPrefix(strings.TrimSpace(l), "#") {
				lines = append(lines, policy.Line{File: "bayes", Num: i + 1, Text: strings.TrimSpace(l)})
			}
		}
		cfg, err := ParseConfig(lines)
		if err != nil {
			return
		}
		for _, b := range append(cfg.Spam, cfg.Ham...) {
			if !(b.Prob >= 0 && b.Prob <= 1) || b.Score != b.Score {
				t.Fatalf("band %+v accepted", b)
			}
		}
		if cfg.Params.MinLearns < 1 || cfg.Params.MaxTokens < 1 || cfg.Params.MaxTokens > MaxTokens {
			t.Fatalf("params %+v", cfg.Params)
		}
		if a := cfg.Autolearn; a != nil && (!(a.Spam > a.Ham) || !finiteScore(a.Spam) || !finiteScore(a.Ham)) {
			t.Fatalf("autolearn %+v accepted", *a)
		}
		if cfg.PerUser != PerUserNo && cfg.PerUser != PerUserYes && cfg.PerUser != PerUserOnly {
			t.Fatalf("peruser %q accepted", cfg.PerUser)
		}
	})
}
