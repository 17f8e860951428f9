package bayes

import (
	"io"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"postern/mailbox/mime"
)

// Bounds of the tokenizer: what a hostile message can cost.
const (
	// MaxScan is how much of a message is read: the header and the first
	// text of the body carry the signal; a 30 MB attachment does not.
	MaxScan = 256 << 10
	// MaxTokens is the most distinct tokens one message gives. Header
	// tokens come first, so a long body cannot push them out.
	MaxTokens = 1000
	// MinWordLen and MaxWordLen bound a word in runes. Shorter words are
	// noise ("a", "to"); a longer one is kept as a "long:" token of its
	// first runes, as SpamAssassin's "sk:" tokens, so base64 garbage and
	// hashes do not fill the database with one-off tokens.
	MinWordLen = 3
	MaxWordLen = 24
)

// headerFields are the fields whose words are tokens, each with its own
// prefix: "free" in the Subject is a different clue from "free" in the body.
var headerFields = []struct{ name, prefix string }{
	{"Subject", "subject:"},
	{"X-Mailer", "mailer:"},
	{"User-Agent", "mailer:"},
	{"Content-Type", "ctype:"},
}

// urlHost finds the host names of links in text and HTML alike.
var urlHost = regexp.MustCompile(`(?i)\bhttps?://([a-z0-9.-]{1,253})`)

// htmlTag matches a tag or comment; style and script contents are removed
// before it (their text is not what the reader sees).
var (
	htmlTag    = regexp.MustCompile(`(?s)<!--.*?-->|<[^>]{0,1000}>`)
	htmlHidden = regexp.MustCompile(`(?is)<(style|script)\b[^>]{0,1000}>.*?</(style|script)\s*>`)
	htmlEntity = strings.NewReplacer("&nbsp;", " ", "&amp;", "&", "&lt;", "<", "&gt;", ">", "&quot;", `"`, "&#39;", "'")
)

// TokenOptions are the tokenizer's settings.
type TokenOptions struct {
	// Bigrams adds, for each pair of adjacent words in the text parts, a
	// token "bi:WORD1 WORD2" (SpamBayes's and OSBF's word pairs: "click
	// here" says more than "click" and "here"). They count toward
	// MaxTokens like the words.
	Bigrams bool
}

// BigramPrefix starts a bigram token; its two words are joined by one
// space, the only space a token may hold.
const BigramPrefix = "bi:"

// Tokenize returns the distinct tokens of the message of size bytes in r,
// header tokens first: the words of selected header fields (prefixed by
// field), the From display name's words and domain, the host names of
// links, and the lower-cased words of the decoded text parts (HTML reduced
// to its text). It reads at most MaxScan bytes and returns at most
// MaxTokens tokens; broken MIME is never an error (an error means r failed).
func Tokenize(r io.ReaderAt, size int64) ([]string, error) {
	return TokenizeWith(r, size, TokenOptions{})
}

// TokenizeWith is Tokenize with options (bigrams).
func TokenizeWith(r io.ReaderAt, size int64, opt TokenOptions) ([]string, error) {
	size = min(size, MaxScan)
	if size < 0 {
		size = 0
	}
	root, err := mime.ParseStructure(r, size)
	if err != nil {
		return nil, err
	}
	t := tokens{seen: map[string]bool{}, bigrams: opt.Bigrams}
	h := root.Header
	for _, f := range headerFields {
		for _, v := range h.Values(f.name) {
			t.words(f.prefix, mime.DecodeHeaderValue(v))
		}
	}
	for _, a := range mime.ParseAddressList(h.Get("From")) {
		if a.Group {
			continue
		}
		t.words("from:", a.Name)
		if a.Host != "" {
			t.add("fromdom:" + strings.ToLower(a.Host))
		}
	}
	for _, a := range mime.ParseAddressList(h.Get("Reply-To")) {
		if !a.Group && a.Host != "" {
			t.add("replytodom:" + strings.ToLower(a.Host))
		}
	}
	if err := t.body(r, root, 0); err != nil {
		return nil, err
	}
	return t.list, nil
}

type tokens struct {
	seen    map[string]bool
	list    []string
	bigrams bool
}

func (t *tokens) add(tok string) {
	if len(t.list) >= MaxTokens || t.seen[tok] || !validToken(tok) {
		return
	}
	t.seen[tok] = true
	t.list = append(t.list, tok)
}

// validToken: tokens become store keys and control-socket arguments, so
// no spaces or control characters, valid UTF-8, bounded length; a bigram
// ("bi:WORD1 WORD2") holds exactly one space, between two words.
func validToken(tok string) bool {
	if rest, ok := strings.CutPrefix(tok, BigramPrefix); ok {
		w1, w2, ok := strings.Cut(rest, " ")
		return ok && len(tok) <= 200 && plainToken(w1) && plainToken(w2)
	}
	return len(tok) <= 200 && plainToken(tok)
}

func plainToken(tok string) bool {
	return tok != "" && utf8.ValidString(tok) &&
		!strings.ContainsFunc(tok, func(c rune) bool { return unicode.IsSpace(c) || unicode.IsControl(c) })
}

// body adds the tokens of the text leaves under p.
func (t *tokens) body(r io.ReaderAt, p *mime.Part, depth int) error {
	if depth > mime.MaxDepth || len(t.list) >= MaxTokens {
		return nil
	}
	switch {
	case p.Message != nil:
		return t.body(r, p.Message, depth+1)
	case len(p.Children) > 0:
		for _, c := range p.Children {
			if err := t.body(r, c, depth+1); err != nil {
				return err
			}
		}
		return nil
	case p.Type != "text" || p.Truncated:
		if p.Type != "" && p.Type != "text" {
			// An attachment's type is a clue; its bytes are not read.
			t.add("part:" + p.Type + "/" + p.Subtype)
		}
		return nil
	}
	text, err := p.Text(r)
	if err != nil {
		return err
	}
	for _, m := range urlHost.FindAllStringSubmatch(text, 100) {
		t.add("url:" + strings.Trim(strings.ToLower(m[1]), ".-"))
	}
	if p.Subtype == "html" {
		t.add("html")
		text = htmlHidden.ReplaceAllString(text, " ")
		text = htmlTag.ReplaceAllString(text, " ")
		text = htmlEntity.Replace(text)
	}
	t.words("", text)
	return nil
}

// words adds the words of s, each with prefix: runs of letters, digits,
// dollar signs, apostrophes and hyphens (the last two trimmed from the
// ends), lower-cased, of MinWordLen to MaxWordLen runes.
func (t *tokens) words(prefix, s string) {
	// prev is the last word of the text, for bigrams: only body text
	// (no prefix) has them, and a pair never spans two parts.
	prev := ""
	pair := t.bigrams && prefix == ""
	isWord := func(c rune) bool {
		return unicode.IsLetter(c) || unicode.IsDigit(c) || c == '$' || c == '\'' || c == '-'
	}
	for len(s) > 0 && len(t.list) < MaxTokens {
		start := strings.IndexFunc(s, isWord)
		if start < 0 {
			return
		}
		s = s[start:]
		end := strings.IndexFunc(s, func(c rune) bool { return !isWord(c) })
		if end < 0 {
			end = len(s)
		}
		w := strings.ToLower(strings.Trim(s[:end], "'-"))
		s = s[end:]
		n := utf8.RuneCountInString(w)
		switch {
		case n < MinWordLen:
		case n > MaxWordLen:
			t.add(prefix + "long:" + string([]rune(w)[:8]))
			prev = ""
		default:
			t.add(prefix + w)
			if pair && prev != "" {
				t.add(BigramPrefix + prev + " " + w)
			}
			prev = w
		}
	}
}
