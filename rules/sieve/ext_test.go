package sieve

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	gomessage "github.com/emersion/go-message"
)

func readMsg(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "msg", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// notifyActions runs a script and returns its Notify actions.
func notifyActions(t *testing.T, src string, env *Env) []Notify {
	t.Helper()
	var out []Notify
	for _, a := range mustRun(t, mustParse(t, src), env).Actions {
		if n, ok := a.(Notify); ok {
			out = append(out, n)
		}
	}
	return out
}

// TestNotifyMailRFC5436: the example of RFC 5436 section 3, the
// knitting list message and its notification.
func TestNotifyMailRFC5436(t *testing.T) {
	src := `require ["enotify", "variables"];

if header :contains "list-id" "knitting.example.com" {
  if header :matches "Subject" "[*] *" {
    notify :message "From ${1} list: ${2}"
        :importance "3"
        "mailto:0123456789@sms.example.net?to=backup@example.com";
  }
}`
	env := &Env{Message: readMsg(t, "knitting.eml"), From: "knitting-bounces@example.com", To: "recipient@example.org"}
	ns := notifyActions(t, src, env)
	if len(ns) != 1 {
		t.Fatalf("notify actions %v", ns)
	}
	n := ns[0]
	if n.Sender != "recipient@example.org" || n.Importance != "3" || n.Message != "From Knitting list: A new sweater" {
		t.Fatalf("notify %+v", n)
	}
	now := time.Date(2005, 12, 7, 5, 8, 55, 0, time.FixedZone("", -5*3600))
	rcpts, msg, err := n.Mail(now, "recipient@example.org")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rcpts, []string{"0123456789@sms.example.net", "backup@example.com"}) {
		t.Fatalf("recipients %v", rcpts)
	}
	if !bytes.HasPrefix(msg, []byte("Auto-Submitted: auto-notified; owner-email=\"recipient@example.org\"\r\n")) {
		t.Fatalf("Auto-Submitted is not the first field:\n%s", msg)
	}
	e, err := gomessage.Read(bytes.NewReader(msg))
	if err != nil {
		t.Fatalf("notification does not parse: %v\n%s", err, msg)
	}
	for k, want := range map[string]string{
		"From":       "recipient@example.org",
		"To":         "0123456789@sms.example.net, backup@example.com",
		"Subject":    "From Knitting list: A new sweater",
		"Date":       "Wed, 07 Dec 2005 05:08:55 -0500",
		"References": "<1234567.89ABCDEF@example.com>",
		"Importance": "low",
	} {
		if got := e.Header.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	if id := e.Header.Get("Message-ID"); !strings.HasSuffix(id, "@example.org>") || strings.Contains(id, "1234567.89ABCDEF") {
		t.Errorf("Message-ID %q is not new", id)
	}
	body, _ := io.ReadAll(e.Body)
	if !strings.Contains(string(body), "From: \"Jeff Smith\" <jeff@hobbies.example.com>") || !strings.Contains(string(body), "Subject: [Knitting] A new sweater") {
		t.Errorf("default body %q", body)
	}
	if bytes.Contains(bytes.ReplaceAll(msg, []byte("\r\n"), nil), []byte("\n")) {
		t.Errorf("line ends are not all CRLF:\n%q", msg)
	}
}

// TestNotifyMailURIFields: the URI's subject and body are used, unsafe
// fields are dropped (RFC 5436 2.7), others are copied; a triggering
// message with the null sender gets a notification with the null sender.
func TestNotifyMailURIFields(t *testing.T) {
	src := `require "enotify";
notify :from "Alerts <alerts@example.net>" :importance "1"
  "mailto:pager@example.com?subject=New%20mail&body=Gr%C3%BC%C3%9Fe%0Aline%202&from=evil@example.org&auto-submitted=no&received=x&keywords=sieve&bcc=hidden@example.org&message-id=%3Cx@y%3E";`
	env := &Env{Message: []byte("From: a@example.org\nSubject: orig\n\nbody\n"), From: "<>", To: "bob@example.net"}
	ns := notifyActions(t, src, env)
	if len(ns) != 1 || ns[0].Sender != "" {
		t.Fatalf("notify %+v: want the null sender", ns)
	}
	rcpts, msg, err := ns[0].Mail(time.Now(), "bob")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rcpts, []string{"pager@example.com"}) {
		t.Fatalf("recipients %v (bcc must not be one)", rcpts)
	}
	e, err := gomessage.Read(bytes.NewReader(msg))
	if err != nil {
		t.Fatalf("%v\n%s", err, msg)
	}
	h := e.Header
	if got := h.Get("From"); got != "Alerts <alerts@example.net>" {
		t.Errorf("From %q", got)
	}
	if got := h.Get("Subject"); got != "New mail" {
		t.Errorf("Subject %q", got)
	}
	if got := h.Values("Auto-Submitted"); len(got) != 1 || !strings.HasPrefix(got[0], "auto-notified; owner-token=") {
		t.Errorf("Auto-Submitted %q", got)
	}
	if h.Get("Keywords") != "sieve" || h.Get("Bcc") != "" || h.Get("Received") != "" || h.Get("X-Priority") != "1 (Highest)" {
		t.Errorf("fields:\n%s", msg)
	}
	if strings.Contains(h.Get("Message-ID"), "x@y") {
		t.Errorf("Message-ID taken from the URI")
	}
	body, _ := io.ReadAll(e.Body)
	if string(body) != "Grüße\r\nline 2" {
		t.Errorf("body %q", body)
	}
}

// TestNotifyMailUnsupported: Mail refuses a method other than mailto.
func TestNotifyMailUnsupported(t *testing.T) {
	for _, m := range []string{"tel:+14085551212", "xmpp:a@example.com", "mailto:", "nonsense"} {
		if _, _, err := (Notify{Method: m}).Mail(time.Now(), "bob"); !errors.Is(err, ErrNotifyMethod) {
			t.Errorf("%s: got %v", m, err)
		}
	}
}

// TestMailtoURIs: what the mailto parser accepts and refuses.
func TestMailtoURIs(t *testing.T) {
	cases := []struct {
		uri     string
		to, cc  string
		subject string
		bad     string
	}{
		{uri: "mailto:a@example.com", to: "a@example.com"},
		{uri: "MAILTO:a@example.com,b@example.com", to: "a@example.com,b@example.com"},
		{uri: "mailto:?to=a@example.com&cc=b@example.com,c@example.com", to: "a@example.com", cc: "b@example.com,c@example.com"},
		{uri: "mailto:a%40example.com?subject=%E2%82%AC%20price", to: "a@example.com", subject: "€ price"},
		{uri: "mailto:a@example.com?to=A@example.com", to: "a@example.com"},
		{uri: "mailto:", to: ""},
		{uri: "mailto:a@example.com?subject", bad: "has no '='"},
		{uri: "mailto:a@example.com?sub%20ject=x", bad: "not a header field name"},
		{uri: "mailto:Bob%20<a@example.com>", bad: "is not a mail address"},
		{uri: "mailto:a@example.com?subject=%FF", bad: "not UTF-8"},
		{uri: "mailto:a@example.com?subject=%0A", bad: "line break"},
		{uri: "mailto:a@example.com?body=%0A", to: "a@example.com"},
		{uri: "mailto:a@example.com%", bad: "bad percent-encoding"},
		{uri: "http://example.com/", bad: "unsupported notification method \"http\""},
	}
	for _, c := range cases {
		u, err := parseNotifyMethod(c.uri)
		if c.bad != "" {
			if err == nil || !strings.Contains(err.Error(), c.bad) {
				t.Errorf("%s: got %v, want error with %q", c.uri, err, c.bad)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.uri, err)
			continue
		}
		if strings.Join(u.to, ",") != c.to || strings.Join(u.cc, ",") != c.cc || u.subject != c.subject {
			t.Errorf("%s: to %v cc %v subject %q", c.uri, u.to, u.cc, u.subject)
		}
	}
	many := "mailto:?" + strings.Repeat("x-a=b&", maxNotifyHeaders) + "x-b=c"
	if _, err := parseNotifyMethod(many); err == nil || !strings.Contains(err.Error(), "header fields") {
		t.Errorf("%d header fields: %v", maxNotifyHeaders+1, err)
	}
}

// TestNotifyLimit: more notify actions than MaxNotifications is a limit
// error (RFC 5435 8 wants the number limited).
func TestNotifyLimit(t *testing.T) {
	var b strings.Builder
	b.WriteString("require \"enotify\";\n")
	for i := 0; i <= DefaultMaxNotifications; i++ {
		fmt.Fprintf(&b, "notify \"mailto:n%d@example.com\";\n", i)
	}
	_, err := mustParse(t, b.String()).Execute(context.Background(), &Env{Message: []byte("From: a@example.org\n\nx")})
	if !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), "notifications") {
		t.Fatalf("got %v", err)
	}
}

// TestErrorCommand: the error command's failure is recognisable.
func TestErrorCommand(t *testing.T) {
	_, err := mustParse(t, "require \"ihave\";\nerror \"cannot go on\";").Execute(context.Background(), &Env{Message: []byte("\n")})
	var re *RuntimeError
	if !errors.Is(err, ErrScript) || !errors.As(err, &re) || re.Line != 2 || !strings.HasSuffix(err.Error(), "cannot go on") {
		t.Fatalf("got %v", err)
	}
}

// TestIhaveDisabled: an extension the server disabled is not there for
// ihave either; an enabled one is.
func TestIhaveDisabled(t *testing.T) {
	opt := Options{Extensions: []string{"ihave", "fileinto"}}
	s, err := Parse([]byte("require \"ihave\";\nif ihave \"vacation\" { vacation \"away\"; }\nif ihave \"fileinto\" { fileinto \"a\"; }"), opt)
	if err != nil {
		t.Fatal(err)
	}
	res := mustRun(t, s, &Env{Message: []byte("From: a@example.org\n\nx")})
	if got := actionStrings(res.Actions); !slices.Equal(got, []string{"fileinto a"}) {
		t.Fatalf("actions %v", got)
	}
}

// manyParts is a multipart message of n text parts.
func manyParts(n int) []byte {
	var b bytes.Buffer
	b.WriteString("From: a@example.org\nContent-Type: multipart/mixed; boundary=b\n\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "--b\nContent-Type: text/plain\nX-N: %d\n\npart %d\n", i, i)
	}
	b.WriteString("--b--\n")
	return b.Bytes()
}

// TestForeverypartBounds: a loop over many parts stops at maxBodyParts,
// and the walk is charged against the step budget.
func TestForeverypartBounds(t *testing.T) {
	src := "require [\"foreverypart\", \"variables\", \"fileinto\"];\nset \"n\" \"\";\nforeverypart { set \"n\" \"${n}x\"; }\nset :length \"len\" \"${n}\";\nfileinto \"${len}\";"
	res := mustRun(t, mustParse(t, src), &Env{Message: manyParts(3)})
	if got := res.Actions[0].String(); got != "fileinto 4" {
		t.Fatalf("3 parts: %s, want 4 (the message and its parts)", got)
	}
	res = mustRun(t, mustParse(t, src), &Env{Message: manyParts(2 * maxBodyParts)})
	if got := res.Actions[0].String(); got != fmt.Sprintf("fileinto %d", maxBodyParts) {
		t.Fatalf("%d parts: %s, want %d", 2*maxBodyParts, got, maxBodyParts)
	}
	s, err := Parse([]byte(src), Options{MaxSteps: 300})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Execute(context.Background(), &Env{Message: manyParts(400)}); !errors.Is(err, ErrLimit) {
		t.Fatalf("400 parts with 300 steps: %v, want a limit error", err)
	}
}

// TestLoopNestingThroughInclude: loops nested through include are
// bounded at run time like those of one script at parse time.
func TestLoopNestingThroughInclude(t *testing.T) {
	loader := writeScripts(t, map[string]string{
		"inner": "require \"foreverypart\";\nforeverypart { foreverypart { keep; } }",
	})
	src := "require [\"foreverypart\", \"include\"];\nforeverypart { foreverypart { foreverypart { include \"inner\"; } } }"
	// Six multiparts, each inside the one before: deep enough for five
	// loops each to find a part inside the one around it.
	var msg strings.Builder
	msg.WriteString("From: a@example.org\n")
	for i := 0; i < 6; i++ {
		fmt.Fprintf(&msg, "Content-Type: multipart/mixed; boundary=b%d\n\n--b%d\n", i, i)
	}
	msg.WriteString("Content-Type: text/plain\n\ndeep\n")
	for i := 5; i >= 0; i-- {
		fmt.Fprintf(&msg, "--b%d--\n", i)
	}
	env := &Env{Message: []byte(msg.String()), Loader: loader}
	if res := mustRun(t, mustParse(t, "require \"foreverypart\";\nforeverypart { foreverypart { foreverypart { foreverypart { keep; } } } }"), env); len(res.Actions) != 1 {
		t.Fatalf("four loops: %v", res.Actions)
	}
	_, err := mustParse(t, src).Execute(context.Background(), env)
	var re *RuntimeError
	if !errors.Is(err, ErrLimit) || !errors.As(err, &re) || re.Script != "inner" {
		t.Fatalf("got %v", err)
	}
}

// TestSplitMultipart: boundaries, the line end before a delimiter,
// transport padding, a missing close delimiter, no delimiter at all.
func TestSplitMultipart(t *testing.T) {
	cases := []struct {
		body, boundary string
		want           []string
	}{
		{"pre\r\n--b\r\n\r\none\r\n--b\r\nX: y\r\n\r\ntwo\r\n--b--\r\nepi", "b", []string{"\r\none", "X: y\r\n\r\ntwo"}},
		{"--b  \nA\n--b--", "b", []string{"A"}},
		{"--b\nA\n--bb\nB\n--b\nC", "b", []string{"A\n--bb\nB", "C"}},
		{"--b\n", "b", []string{""}},
		{"no delimiter\n", "b", nil},
		{"--b\nA\n", "", nil},
	}
	for _, c := range cases {
		var got []string
		for _, p := range splitMultipart([]byte(c.body), c.boundary) {
			got = append(got, string(p))
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%q / %q: got %q, want %q", c.body, c.boundary, got, c.want)
		}
	}
}

// TestFileIntoMerge: the same mailbox by another special-use or id is
// another delivery; the same one twice is one.
func TestFileIntoMerge(t *testing.T) {
	src := `require ["fileinto", "special-use", "mailboxid"];
fileinto :specialuse "\\Junk" "Spam";
fileinto :specialuse "\\Junk" "Spam";
fileinto "Spam";
fileinto :mailboxid "F1" "Spam";`
	got := actionStrings(mustRun(t, mustParse(t, src), &Env{Message: []byte("\n")}).Actions)
	want := []string{"fileinto Spam specialuse=\\Junk", "fileinto Spam", "fileinto Spam mailboxid=F1"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// TestRuntimeSpecialUse: attributes and ids computed at run time are
// checked then.
func TestRuntimeSpecialUse(t *testing.T) {
	for src, want := range map[string]string{
		"require [\"fileinto\", \"special-use\", \"variables\"];\nset \"a\" \"Junk\";\nfileinto :specialuse \"${a}\" \"x\";": "3:22: runtime error: fileinto: :specialuse \"Junk\"",
		"require [\"fileinto\", \"mailboxid\", \"variables\"];\nset \"a\" \"a b\";\nfileinto :mailboxid \"${a}\" \"x\";":     "3:21: runtime error: fileinto: :mailboxid \"a b\"",
		"require [\"special-use\", \"variables\"];\nset \"a\" \"x\";\nif specialuse_exists \"${a}\" { keep; }":               "3:22: runtime error: specialuse_exists: \"x\"",
	} {
		_, err := mustParse(t, src).Execute(context.Background(), &Env{Message: []byte("\n")})
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%s:\n got %v\nwant %s", src, err, want)
		}
	}
}
