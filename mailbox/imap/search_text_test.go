package imap

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	imap "github.com/emersion/go-imap/v2"

	"postern/mailbox/imap/textindex"
)

// Tests of SEARCH BODY/TEXT served through the text index (search_text.go).

var textWords = strings.Fields("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima " +
	"straße café naïve Ærø ελληνικά кириллица 日本語 zebracrossing Quux FROBnicate")

// textMessage is a generated message and the plain text of its body
// before any transfer encoding.
type textMessage struct {
	raw   string
	plain string // the text BODY should find (text parts only)
	// header holds the raw header lines (for TEXT queries, folds included).
	header string
}

func randomWords(rng *rand.Rand, n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteString([]string{" ", " ", "\r\n", ", "}[rng.IntN(4)])
		}
		b.WriteString(textWords[rng.IntN(len(textWords))])
		if rng.IntN(5) == 0 {
			fmt.Fprint(&b, rng.IntN(100))
		}
	}
	return b.String()
}

// quotedPrintable encodes s with soft line breaks every few characters, so
// that words are cut by them (RFC 2045 6.7).
func quotedPrintable(s string, rng *rand.Rand) string {
	var b strings.Builder
	col := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\r' && i+1 < len(s) && s[i+1] == '\n':
			b.WriteString("\r\n")
			i++
			col = 0
			continue
		case c == '=' || c >= 0x80 || c < 0x20:
			fmt.Fprintf(&b, "=%02X", c)
		default:
			b.WriteByte(c)
		}
		col++
		if col > 5+rng.IntN(20) {
			b.WriteString("=\r\n")
			col = 0
		}
	}
	return b.String()
}

func base64Lines(s string) string {
	enc := base64.StdEncoding.EncodeToString([]byte(s))
	var b strings.Builder
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	return b.String() + enc + "\r\n"
}

func latin1(s string) (string, bool) {
	var b []byte
	for _, r := range s {
		if r > 0xFF {
			return "", false
		}
		b = append(b, byte(r))
	}
	return string(b), true
}

func randomTextMessage(rng *rand.Rand, i int) textMessage {
	subject := randomWords(rng, 3)
	subject = strings.NewReplacer("\r\n", " ").Replace(subject)
	var hdr strings.Builder
	fmt.Fprintf(&hdr, "From: User %d <u%d@example.org>\r\nTo: bob@example.org\r\n", i%7, i%7)
	switch rng.IntN(3) {
	case 0: // folded: a query across the fold must still be found by TEXT
		fmt.Fprintf(&hdr, "Subject: %s\r\n  %s\r\n", subject, randomWords(rng, 2))
	case 1: // encoded word (RFC 2047)
		fmt.Fprintf(&hdr, "Subject: =?UTF-8?B?%s?=\r\n", base64.StdEncoding.EncodeToString([]byte(subject)))
	default:
		fmt.Fprintf(&hdr, "Subject: %s\r\n", subject)
	}
	fmt.Fprintf(&hdr, "Message-ID: <%d.%d@example.org>\r\nMIME-Version: 1.0\r\n", i, rng.IntN(1e6))
	text := randomWords(rng, 5+rng.IntN(40))
	var body string
	plain := text
	switch rng.IntN(7) {
	case 0:
		body = "Content-Type: text/plain; charset=utf-8\r\n\r\n" + text + "\r\n"
	case 1:
		body = "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" +
			quotedPrintable(text, rng) + "\r\n"
	case 2:
		body = "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n" + base64Lines(text)
	case 3:
		if l, ok := latin1(text); ok {
			body = "Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" +
				quotedPrintable(l, rng) + "\r\n"
		} else {
			body = "Content-Type: text/plain; charset=utf-8\r\n\r\n" + text + "\r\n"
		}
	case 4:
		html := randomWords(rng, 5)
		plain += "\n" + html
		body = "Content-Type: multipart/alternative; boundary=\"b1\"\r\n\r\npreamble\r\n--b1\r\n" +
			"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" + quotedPrintable(text, rng) +
			"\r\n--b1\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n" + base64Lines(html) +
			"--b1--\r\n"
	case 5:
		// A binary attachment holding words: BODY does not search it.
		body = "Content-Type: multipart/mixed; boundary=\"m\"\r\n\r\n--m\r\nContent-Type: text/plain\r\n\r\n" + text +
			"\r\n--m\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
			base64Lines("attachment "+randomWords(rng, 4)) + "--m--\r\n"
	default:
		inner := randomWords(rng, 6)
		plain += "\n" + inner
		body = "Content-Type: multipart/mixed; boundary=\"x\"\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\n" + text +
			"\r\n--x\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\n" + inner + "\r\n--x--\r\n"
	}
	return textMessage{raw: hdr.String() + body, plain: plain, header: hdr.String()}
}

// searchQueries picks strings to search for: pieces of the messages' text
// at any byte offset (so also half a UTF-8 sequence, across a soft line
// break, across a header fold), mixed case, and strings found nowhere.
func searchQueries(rng *rand.Rand, msgs []textMessage, n int) []string {
	qs := []string{"zebracrossing", "ZEBRA", "日本", "straße", "STRASSE", "nowhere-at-all", "ab", "é", "attachment", "example.org"}
	for len(qs) < n {
		m := msgs[rng.IntN(len(msgs))]
		src := m.plain
		if rng.IntN(3) == 0 {
			src = m.header
		}
		if len(src) < 4 {
			continue
		}
		a := rng.IntN(len(src) - 3)
		b := min(len(src), a+3+rng.IntN(14))
		q := src[a:b]
		if rng.IntN(2) == 0 {
			q = strings.ToUpper(q)
		}
		qs = append(qs, q)
	}
	return qs
}

// uidSearch sends one UID SEARCH with the string as a literal and returns
// the UIDs of the answer.
func (r *rawConn) uidSearch(tag, op, q string) string {
	r.t.Helper()
	r.send(fmt.Sprintf("%s UID SEARCH CHARSET UTF-8 %s {%d+}\r\n%s\r\n", tag, op, len(q), q))
	lines := r.until(tag + " ")
	if !strings.HasPrefix(lines[len(lines)-1], tag+" OK") {
		r.t.Fatalf("%s %q: %v", op, q, lines)
	}
	for _, l := range lines {
		if strings.HasPrefix(l, "* SEARCH") {
			return strings.TrimSpace(strings.TrimPrefix(l, "* SEARCH"))
		}
	}
	r.t.Fatalf("%s %q: no SEARCH response in %v", op, q, lines)
	return ""
}

// secondServer starts another server over the same Maildirs, like a
// second process: it cannot take the folder or text index locks the first
// one holds, so its searches read every message.
func (e *testEnv) secondServer() string {
	e.t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	srv := NewServer(e.opt)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-done
	})
	return l.Addr().String()
}

func (e *testEnv) loginAt(addr, user, pass string) *rawConn {
	saved := e.addr
	e.addr = addr
	defer func() { e.addr = saved }()
	return e.login(user, pass)
}

func textIndexDir(e *testEnv) string {
	return filepath.Join(e.maildirPath("alice"), textindex.DirName)
}

func segmentFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// deliverRandomTexts delivers n random messages (seeded) to alice's INBOX;
// it returns them and the generator, for queries that follow.
func deliverRandomTexts(env *testEnv, seed1, seed2 uint64, n int) ([]textMessage, *rand.Rand) {
	rng := rand.New(rand.NewPCG(seed1, seed2))
	var msgs []textMessage
	for i := 0; i < n; i++ {
		m := randomTextMessage(rng, i)
		msgs = append(msgs, m)
		env.deliver("alice", "INBOX", m.raw)
	}
	return msgs, rng
}

func TestBodySearchThroughTheIndexEqualsTheUnindexedSearch(t *testing.T) {
	env := newTestEnv(t, nil)
	msgs, rng := deliverRandomTexts(env, 42, 7, 200)
	indexed := env.login("alice", "secret")
	indexed.send("s1 SELECT INBOX\r\n")
	indexed.until("s1 OK")
	// The first BODY search builds the index (and takes its lock).
	if got := indexed.uidSearch("b0", "BODY", "zebracrossing"); got == "" {
		t.Fatal("no message with zebracrossing: the corpus is too small")
	}
	if len(segmentFiles(t, textIndexDir(env))) == 0 {
		t.Fatal("no index segment written")
	}
	plain := env.loginAt(env.secondServer(), "alice", "secret")
	plain.send("s1 SELECT INBOX\r\n")
	plain.until("s1 OK")

	queries := searchQueries(rng, msgs, 120)
	hits := 0
	for i, q := range queries {
		for _, op := range []string{"BODY", "TEXT", "NOT BODY"} {
			want := plain.uidSearch(fmt.Sprintf("p%d", i), op, q)
			got := indexed.uidSearch(fmt.Sprintf("q%d", i), op, q)
			if got != want {
				t.Fatalf("%s %q: indexed %q, unindexed %q", op, q, got, want)
			}
			if op != "NOT BODY" && got != "" {
				hits++
			}
		}
	}
	if hits < len(queries)/2 {
		t.Fatalf("only %d of %d searches found something: the test checks little", hits, 2*len(queries))
	}
	// The second server could not have used an index of its own.
	if files := segmentFiles(t, textIndexDir(env)); len(files) == 0 {
		t.Fatal("segments vanished")
	}
}

func TestBodySearchReadsOnlyCandidates(t *testing.T) {
	env := newTestEnv(t, nil)
	keys := []string{
		env.deliver("alice", "INBOX", "Subject: one\r\n\r\nnothing to see\r\n"),
		env.deliver("alice", "INBOX", "Subject: two\r\n\r\nthe zebracrossing is here\r\n"),
	}
	r := env.login("alice", "secret")
	r.send("s1 SELECT INBOX\r\n")
	r.until("s1 OK")
	if got := r.uidSearch("a1", "BODY", "zebracrossing"); got != "2" {
		t.Fatalf("BODY zebracrossing = %q, want 2", got)
	}
	// Change message 1 behind the server's back (a test device: Maildir
	// messages never change). The index says it cannot hold the word, so
	// it is not read, and the search still answers 2 alone; without the
	// index it would answer 1 2.
	path := findMessageFile(t, env.maildirPath("alice"), keys[0])
	if err := os.WriteFile(path, []byte("Subject: one\r\n\r\nzebracrossing\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := r.uidSearch("a2", "BODY", "zebracrossing"); got != "2" {
		t.Fatalf("BODY zebracrossing after the change = %q: the non-candidate was read", got)
	}
	// A query under three bytes is not filtered and reads both.
	if got := r.uidSearch("a3", "BODY", "ze"); got != "1 2" {
		t.Fatalf("BODY ze = %q, want 1 2", got)
	}
}

func findMessageFile(t *testing.T, dir, key string) string {
	t.Helper()
	for _, sub := range []string{"new", "cur"} {
		m, _ := filepath.Glob(filepath.Join(dir, sub, key+"*"))
		if len(m) == 1 {
			return m[0]
		}
	}
	t.Fatalf("message %s not found", key)
	return ""
}

func TestBodySearchFindsNewAndDropsExpungedMessages(t *testing.T) {
	env := newTestEnv(t, nil)
	for i := 0; i < 20; i++ {
		env.deliver("alice", "INBOX", fmt.Sprintf("Subject: m%d\r\n\r\nfiller text %d\r\n", i, i))
	}
	env.deliver("alice", "INBOX", "Subject: x\r\n\r\nthe needle in message 21\r\n")
	r := env.login("alice", "secret")
	r.send("s1 SELECT INBOX\r\n")
	r.until("s1 OK")
	if got := r.uidSearch("a1", "BODY", "needle"); got != "21" {
		t.Fatalf("BODY needle = %q, want 21", got)
	}
	// Delivered after the index was built: found by the next search.
	env.deliver("alice", "INBOX", "Subject: y\r\n\r\nanother needle, in base64 this time\r\n")
	env.deliver("alice", "INBOX", "Subject: z\r\nContent-Transfer-Encoding: base64\r\n\r\n"+
		base64Lines("a third nEEdle"))
	r.send("n1 NOOP\r\n")
	r.until("n1 OK")
	if got := r.uidSearch("a2", "BODY", "needle"); got != "21 22 23" {
		t.Fatalf("BODY needle after delivery = %q, want 21 22 23", got)
	}
	r.send("e1 UID STORE 21:22 +FLAGS.SILENT (\\Deleted)\r\n")
	r.until("e1 OK")
	r.send("e2 EXPUNGE\r\n")
	r.until("e2 OK")
	if got := r.uidSearch("a3", "BODY", "needle"); got != "23" {
		t.Fatalf("BODY needle after expunge = %q, want 23", got)
	}
	if got := r.uidSearch("a4", "TEXT", "subject: z"); got != "23" {
		t.Fatalf("TEXT subject: z = %q, want 23", got)
	}
}

func TestDamagedTextIndexIsIgnoredAndRebuilt(t *testing.T) {
	for _, damage := range []string{"truncate", "flip", "garbage", "empty"} {
		t.Run(damage, func(t *testing.T) {
			env := newTestEnv(t, nil)
			rng := rand.New(rand.NewPCG(1, uint64(len(damage))))
			var msgs []textMessage
			for i := 0; i < 60; i++ {
				m := randomTextMessage(rng, i)
				msgs = append(msgs, m)
				env.deliver("alice", "INBOX", m.raw)
			}
			queries := searchQueries(rng, msgs, 30)
			r := env.login("alice", "secret")
			r.send("s1 SELECT INBOX\r\n")
			r.until("s1 OK")
			var want []string
			for i, q := range queries {
				want = append(want, r.uidSearch(fmt.Sprintf("a%d", i), "TEXT", q))
			}
			r.send("z LOGOUT\r\n")
			r.until("z OK")
			env.stop()
			files := segmentFiles(t, textIndexDir(env))
			if len(files) == 0 {
				t.Fatal("no segment to damage")
			}
			for _, f := range files {
				data, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				switch damage {
				case "truncate": // a torn write
					data = data[:len(data)/2]
				case "flip": // a bad block in the posting lists
					for i := len(data) / 3; i < len(data)/2; i++ {
						data[i] ^= 0xA5
					}
				case "garbage":
					data = []byte(strings.Repeat("not a segment\n", 20))
				case "empty":
					data = nil
				}
				if err := os.WriteFile(f, data, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			env.start()
			r = env.login("alice", "secret")
			r.send("s1 SELECT INBOX\r\n")
			r.until("s1 OK")
			for i, q := range queries {
				if got := r.uidSearch(fmt.Sprintf("b%d", i), "TEXT", q); got != want[i] {
					t.Fatalf("TEXT %q with a damaged index: %q, want %q", q, got, want[i])
				}
			}
			// Rebuilt: segments that open cleanly are back.
			ix, err := textindex.Open(textIndexDir(env), textindex.Options{})
			if !errors.Is(err, textindex.ErrLocked) {
				if err == nil {
					ix.Close()
				}
				t.Fatalf("the server does not hold the text index: %v", err)
			}
			if len(segmentFiles(t, textIndexDir(env))) == 0 {
				t.Fatal("index not rebuilt")
			}
		})
	}
}

func TestBodySearchWithoutTheIndexLock(t *testing.T) {
	env := newTestEnv(t, nil)
	env.deliver("alice", "INBOX", "Subject: a\r\n\r\nzebracrossing\r\n")
	env.maildir("alice")
	// Another process owns the text index.
	other, err := textindex.Open(textIndexDir(env), textindex.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	r := env.login("alice", "secret")
	r.send("s1 SELECT INBOX\r\n")
	r.until("s1 OK")
	if got := r.uidSearch("a1", "BODY", "zebracrossing"); got != "1" {
		t.Fatalf("BODY without the index = %q, want 1", got)
	}
	if files := segmentFiles(t, textIndexDir(env)); len(files) != 0 {
		t.Fatalf("a server without the lock wrote segments: %v", files)
	}
}

func TestBodySearchWithGoIMAPClient(t *testing.T) {
	env := newTestEnv(t, nil)
	c := env.dialClient("alice", "secret", nil)
	for _, body := range []string{
		"Subject: plain\r\n\r\nA note about the Zebracrossing.\r\n",
		"Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nsch=C3=B6ne Gr=\r\n=C3=BC=C3=9Fe\r\n",
		"Subject: other\r\n\r\nnothing\r\n",
	} {
		appendMessage(t, c, "INBOX", []byte(body), nil)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	search := func(crit *imap.SearchCriteria) []imap.UID {
		t.Helper()
		data, err := c.UIDSearch(crit, &imap.SearchOptions{}).Wait()
		if err != nil {
			t.Fatal(err)
		}
		return data.AllUIDs()
	}
	for _, tc := range []struct {
		crit *imap.SearchCriteria
		want []imap.UID
	}{
		{&imap.SearchCriteria{Body: []string{"zebracrossing"}}, []imap.UID{1}},
		{&imap.SearchCriteria{Body: []string{"GRÜSSE"}}, nil},             // no case folding beyond lowercase
		{&imap.SearchCriteria{Body: []string{"ne grüße"}}, []imap.UID{2}}, // across a soft line break
		{&imap.SearchCriteria{Text: []string{"grüße"}}, []imap.UID{2}},
		{&imap.SearchCriteria{Text: []string{"subject: other"}}, []imap.UID{3}},
		{&imap.SearchCriteria{Body: []string{"subject"}}, nil},
		{&imap.SearchCriteria{Body: []string{"note", "zebra"}}, []imap.UID{1}},
		{&imap.SearchCriteria{Not: []imap.SearchCriteria{{Body: []string{"nothing"}}}}, []imap.UID{1, 2}},
	} {
		if got := search(tc.crit); !slices.Equal(got, tc.want) {
			t.Errorf("%+v: got %v, want %v", tc.crit, got, tc.want)
		}
	}
	if len(segmentFiles(t, textIndexDir(env))) == 0 {
		t.Fatal("no index was built")
	}
}

func TestTextSearchAcrossAHeaderFold(t *testing.T) {
	env := newTestEnv(t, nil)
	env.deliver("alice", "INBOX", "Subject: the first part\r\n  and the folded rest\r\n\r\nbody\r\n")
	env.deliver("alice", "INBOX", "Subject: =?UTF-8?Q?caf=C3=A9_cr=C3=A8me?=\r\n\r\nbody\r\n")
	env.deliver("alice", "INBOX", "Subject: other\r\n\r\nbody\r\n")
	r := env.login("alice", "secret")
	r.send("s1 SELECT INBOX\r\n")
	r.until("s1 OK")
	for _, tc := range []struct{ op, q, want string }{
		{"TEXT", "PART\r\n  AND", "1"}, // the fold as it stands in the message
		{"TEXT", "café crème", "2"},    // the encoded word decoded
		{"TEXT", "=?utf-8?q?caf", "2"}, // and as it stands
		{"BODY", "first part", ""},     // BODY does not look at the header
		{"TEXT", "body", "1 2 3"},
	} {
		if got := r.uidSearch("t", tc.op, tc.q); got != tc.want {
			t.Errorf("%s %q = %q, want %q", tc.op, tc.q, got, tc.want)
		}
	}
}

// Messages delivered while the first search builds the index, and a
// second session searching at the same time: every answer afterwards, in
// both sessions, is the unindexed server's.
func TestBodySearchWhileTheIndexIsBuilt(t *testing.T) {
	env := newTestEnv(t, nil)
	msgs, rng := deliverRandomTexts(env, 9, 9, 600)
	a := env.login("alice", "secret")
	b := env.login("alice", "secret")
	for _, r := range []*rawConn{a, b} {
		r.send("s1 SELECT INBOX\r\n")
		r.until("s1 OK")
	}
	// Both searches are in flight while messages arrive.
	a.send("a0 UID SEARCH BODY zebracrossing\r\n")
	b.send("b0 UID SEARCH TEXT example\r\n")
	for i := 600; i < 640; i++ {
		m := randomTextMessage(rng, i)
		msgs = append(msgs, m)
		env.deliver("alice", "INBOX", m.raw)
	}
	a.until("a0 OK")
	b.until("b0 OK")
	plain := env.loginAt(env.secondServer(), "alice", "secret")
	for _, r := range []*rawConn{a, b, plain} {
		r.send("n1 NOOP\r\n")
		r.until("n1 OK")
		r.send("s2 SELECT INBOX\r\n") // the plain server's first view
		r.until("s2 OK")
	}
	for i, q := range searchQueries(rng, msgs, 60) {
		for _, op := range []string{"BODY", "TEXT"} {
			want := plain.uidSearch(fmt.Sprintf("p%d", i), op, q)
			for _, r := range []*rawConn{a, b} {
				if got := r.uidSearch(fmt.Sprintf("q%d", i), op, q); got != want {
					t.Fatalf("%s %q: indexed %q, unindexed %q", op, q, got, want)
				}
			}
		}
	}
	if len(segmentFiles(t, textIndexDir(env))) == 0 {
		t.Fatal("no index segment written")
	}
}
