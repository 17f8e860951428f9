package webmail

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/net/html"

	"postern/mailbox/maildir"
)

// hostileHTML is what a pasted page or a crafted form may send as the
// editor's HTML.
const hostileHTML = `<p>Hello <b>world</b> and <i>you</i></p>` +
	`<script>alert("x")</script>` +
	`<p onclick="steal()">Click <a href="javascript:alert(1)">here</a></p>` +
	`<img src="http://tracker.example/pixel.gif" onerror="alert(2)">` +
	`<img src="data:image/png;base64,iVBORw0KGgo=">` +
	`<p style="background:url(http://tracker.example/bg.png)">styled</p>` +
	`<ul><li>one</li><li>two</li></ul>` +
	`<p>See <a href="https://example.org/">the site</a>.</p>` +
	`<blockquote type="cite"><p>quoted line</p></blockquote>`

// mimeEntity is a decoded part of a message, its children when it is a
// multipart.
type mimeEntity struct {
	ctype    string
	body     string
	children []mimeEntity
}

func parseEntity(t *testing.T, header map[string][]string, body io.Reader) mimeEntity {
	t.Helper()
	get := func(k string) string {
		if v := header[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	mt, params, err := mime.ParseMediaType(get("Content-Type"))
	if err != nil {
		mt = "text/plain"
	}
	ent := mimeEntity{ctype: mt}
	if strings.HasPrefix(mt, "multipart/") {
		mr := multipart.NewReader(body, params["boundary"])
		for {
			p, err := mr.NextRawPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", mt, err)
			}
			ent.children = append(ent.children, parseEntity(t, p.Header, p))
		}
		return ent
	}
	var r io.Reader = body
	switch strings.ToLower(get("Content-Transfer-Encoding")) {
	case "quoted-printable":
		r = quotedprintable.NewReader(body)
	case "base64":
		r = base64.NewDecoder(base64.StdEncoding, body)
	}
	data, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	ent.body = string(data)
	return ent
}

func parseSent(t *testing.T, msg []byte) mimeEntity {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	return parseEntity(t, m.Header, m.Body)
}

// alternative finds the multipart/alternative and returns its text and
// HTML parts.
func alternative(t *testing.T, ent mimeEntity) (text, htm string) {
	t.Helper()
	if ent.ctype == "multipart/mixed" && len(ent.children) > 0 {
		ent = ent.children[0]
	}
	if ent.ctype != "multipart/alternative" || len(ent.children) != 2 ||
		ent.children[0].ctype != "text/plain" || ent.children[1].ctype != "text/html" {
		t.Fatalf("not text/plain + text/html in multipart/alternative: %+v", ent)
	}
	return ent.children[0].body, ent.children[1].body
}

func TestSendHTMLSanitizedWithTextPart(t *testing.T) {
	e := newEnv(t)
	b := e.login(alice)
	r := b.sendForm(map[string]string{
		"to": "bob@example.test", "subject": "Rich", "format": "html", "html": hostileHTML,
		"body": "what the browser says the text is (ignored)",
	}, map[string][]byte{"notes.txt": []byte("attached")})
	if got := flash(t, b.follow(r)); got != "Message sent." {
		t.Fatalf("send: %d %s", r.status, got)
	}
	out := e.lastSent()
	ent := parseSent(t, out.Msg)
	if ent.ctype != "multipart/mixed" || len(ent.children) != 2 || ent.children[1].body != "attached" {
		t.Fatalf("not the alternative and the attachment in multipart/mixed: %+v", ent)
	}
	text, htm := alternative(t, ent)
	for _, bad := range []string{"<script", "alert", "onclick", "onerror", "javascript:", "<img", "tracker.example", "style=", "url("} {
		if strings.Contains(strings.ToLower(htm), bad) {
			t.Errorf("HTML part keeps %q:\n%s", bad, htm)
		}
	}
	for _, good := range []string{"<b>world</b>", "<i>you</i>", "<li>one</li>", `href="https://example.org/"`, `<blockquote type="cite">`} {
		if !strings.Contains(htm, good) {
			t.Errorf("HTML part lost %q:\n%s", good, htm)
		}
	}
	wantText := "Hello world and you\n\nClick here\n\nstyled\n\n- one\n- two\n\nSee the site <https://example.org/>.\n\n> quoted line\n"
	if text != strings.ReplaceAll(wantText, "\n", "\r\n") {
		t.Errorf("text part:\n%q\nwant\n%q", text, wantText)
	}
	if strings.Contains(text, "ignored") {
		t.Error("the text part is the browser's, not made from the HTML")
	}
	// The copy in Sent is the same message.
	sent := e.messages(alice, folderSent)
	if len(sent) != 1 {
		t.Fatalf("Sent: %d messages", len(sent))
	}
	f, _ := e.maildir(alice).Folder(folderSent)
	data, err := f.ReadMessage(sent[0].Key, nil, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	// (The Maildir keeps LF line ends.)
	if _, h2 := alternative(t, parseSent(t, data)); h2 != strings.ReplaceAll(htm, "\r\n", "\n") {
		t.Errorf("Sent keeps other HTML:\n%s", h2)
	}
}

func TestSendHTMLWithoutAttachment(t *testing.T) {
	e := newEnv(t)
	b := e.login(alice)
	r := b.sendForm(map[string]string{"to": "bob@example.test", "subject": "Rich", "format": "html", "html": "<p>Grüße <strong>Köln</strong></p>"}, nil)
	if got := flash(t, b.follow(r)); got != "Message sent." {
		t.Fatalf("send: %d %s", r.status, got)
	}
	text, htm := alternative(t, parseSent(t, e.lastSent().Msg))
	if text != "Grüße Köln\r\n" || !strings.Contains(htm, "<strong>Köln</strong>") {
		t.Fatalf("text %q html %q", text, htm)
	}
}

// composeFields are a compose page's format field (its chosen option and
// whether it is disabled), its hidden html field and its textarea.
func composeFields(t *testing.T, doc *html.Node) (format string, formatDisabled bool, htmlValue, body string) {
	t.Helper()
	htmlValue = formValue(doc, "html")
	for _, sel := range find(doc, "select", "") {
		if n, _ := attr(sel, "name"); n != "format" {
			continue
		}
		_, formatDisabled = attr(sel, "disabled")
		for _, o := range find(sel, "option", "") {
			if _, ok := attr(o, "selected"); ok {
				format, _ = attr(o, "value")
			}
		}
	}
	for _, ta := range find(doc, "textarea", "") {
		if n, _ := attr(ta, "name"); n == "body" {
			body = text(ta)
		}
	}
	return
}

const htmlMessage = "From: Bob <bob@example.test>\r\nTo: alice@example.test\r\nSubject: Plans\r\n" +
	"Message-ID: <plans@example.test>\r\nDate: Mon, 2 Mar 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n" +
	"Content-Type: multipart/alternative; boundary=b\r\n\r\n" +
	"--b\r\nContent-Type: text/plain\r\n\r\nThe plan is ready.\r\n" +
	"--b\r\nContent-Type: text/html\r\n\r\n<html><body><p>The <b>plan</b> is ready.</p>" +
	"<script>alert(1)</script><img src=\"http://tracker.example/p.gif\"><p style=\"color:red\" onmouseover=\"x()\">Bye</p></body></html>\r\n" +
	"--b--\r\n"

func TestReplyAndForwardQuoteHTML(t *testing.T) {
	e := newEnv(t)
	e.deliver(alice, maildir.Inbox, htmlMessage)
	uid := e.messages(alice, maildir.Inbox)[0].UID
	b := e.login(alice)
	for _, mode := range []string{"reply", "forward"} {
		doc := b.get(fmt.Sprintf("/mail/compose?mode=%s&f=INBOX&uid=%d&format=html", mode, uid)).doc(t)
		format, disabled, hv, body := composeFields(t, doc)
		if format != "html" || !disabled {
			t.Errorf("%s: format %q disabled %v", mode, format, disabled)
		}
		if !strings.Contains(hv, `<blockquote type="cite">`) || !strings.Contains(hv, "<b>plan</b> is ready.") || !strings.Contains(hv, "Bye") {
			t.Errorf("%s: the HTML is not quoted:\n%s", mode, hv)
		}
		for _, bad := range []string{"script", "alert", "tracker", "style", "onmouseover", "<img"} {
			if strings.Contains(hv, bad) {
				t.Errorf("%s: quoted HTML keeps %q:\n%s", mode, bad, hv)
			}
		}
		// Without script the same reply reads as text.
		if !strings.Contains(body, "> The plan is ready.") {
			t.Errorf("%s: text version %q", mode, body)
		}
	}
	if hv := formValue(b.get(fmt.Sprintf("/mail/compose?mode=reply&f=INBOX&uid=%d&format=html", uid)).doc(t), "html"); !strings.Contains(hv, "Bob &lt;bob@example.test&gt; wrote:") {
		t.Errorf("reply's attribution line: %s", hv)
	}
	// In plain mode, as before: quoted text, no HTML.
	_, _, hv, body := composeFields(t, b.get(fmt.Sprintf("/mail/compose?mode=reply&f=INBOX&uid=%d&format=plain", uid)).doc(t))
	if hv != "" || !strings.Contains(body, "> The plan is ready.") || !strings.Contains(body, "wrote:") {
		t.Errorf("plain reply: html %q body %q", hv, body)
	}
	// A text message replied to in HTML mode: its lines, escaped.
	e.deliver(alice, maildir.Inbox, simpleMessage("Carol <carol@example.test>", "Text", "a < b\nsecond line"))
	var textUID uint32
	for _, m := range e.messages(alice, maildir.Inbox) {
		if m.UID != uid {
			textUID = m.UID
		}
	}
	hv = formValue(b.get(fmt.Sprintf("/mail/compose?mode=reply&f=INBOX&uid=%d&format=html", textUID)).doc(t), "html")
	if !strings.Contains(hv, `<blockquote type="cite"><div>a &lt; b<br>`) {
		t.Errorf("text message quoted as HTML: %s", hv)
	}
}

func TestHTMLDraftRoundTrip(t *testing.T) {
	e := newEnv(t)
	b := e.login(alice)
	r := b.sendForm(map[string]string{"to": "bob@example.test", "subject": "Draft", "format": "html",
		"html": `<p>Keep <b>this</b></p><ul><li>item</li></ul><script>x()</script>`, "save": "draft"}, nil)
	if got := flash(t, b.follow(r)); got != "Draft saved." {
		t.Fatalf("save: %d %s", r.status, got)
	}
	drafts := e.messages(alice, folderDrafts)
	if len(drafts) != 1 {
		t.Fatalf("Drafts: %d", len(drafts))
	}
	doc := b.get(fmt.Sprintf("/mail/compose?mode=draft&f=Drafts&uid=%d", drafts[0].UID)).doc(t)
	format, _, hv, body := composeFields(t, doc)
	if format != "html" || !strings.Contains(hv, "<b>this</b>") || !strings.Contains(hv, "<li>item</li>") || strings.Contains(hv, "script") {
		t.Fatalf("draft reopened: format %q html %q", format, hv)
	}
	if body != "Keep this\n\n- item\n" {
		t.Errorf("draft's text version %q", body)
	}
	// Sent from the draft: HTML still, and the draft is gone.
	r = b.sendForm(map[string]string{"to": "bob@example.test", "subject": "Draft", "format": "html", "html": hv,
		"draft_uid": utoa(drafts[0].UID)}, nil)
	if got := flash(t, b.follow(r)); got != "Message sent." {
		t.Fatalf("send draft: %d %s", r.status, got)
	}
	if _, h := alternative(t, parseSent(t, e.lastSent().Msg)); !strings.Contains(h, "<b>this</b>") {
		t.Errorf("sent from the draft: %s", h)
	}
	if n := len(e.messages(alice, folderDrafts)); n != 0 {
		t.Errorf("%d drafts left", n)
	}
}

// TestComposeWithoutScript is the page as a browser without JavaScript
// uses it: the format field is disabled (so not sent), the text is in
// the textarea, and what it sends is plain text even when the user's
// default is HTML.
func TestComposeWithoutScript(t *testing.T) {
	e := newEnv(t)
	b := e.login(alice)
	if r := b.post("/mail/prefs", map[string][]string{"csrf": {b.csrf}, "compose": {"html"}}); r.status != 303 {
		t.Fatalf("prefs: %d %s", r.status, r.body)
	}
	page := b.get("/mail/compose")
	doc := page.doc(t)
	format, disabled, _, _ := composeFields(t, doc)
	if format != "html" || !disabled {
		t.Fatalf("format %q disabled %v", format, disabled)
	}
	if !strings.Contains(page.body, `<textarea name="body"`) {
		t.Fatal("no textarea on the compose page")
	}
	// A form without script posts the hidden html field but no format.
	r := b.sendForm(map[string]string{"to": "bob@example.test", "subject": "No script", "body": "Just <b>text</b>.", "html": "<p>stale</p>"}, nil)
	if got := flash(t, b.follow(r)); got != "Message sent." {
		t.Fatalf("send: %d %s", r.status, got)
	}
	ent := parseSent(t, e.lastSent().Msg)
	if ent.ctype != "text/plain" || ent.body != "Just <b>text</b>.\r\n" {
		t.Fatalf("sent without script: %+v", ent)
	}
	// An empty editor in HTML mode is a plain message too.
	b.sendForm(map[string]string{"to": "bob@example.test", "subject": "Empty", "format": "html", "html": "  ", "body": "typed"}, nil)
	if ent := parseSent(t, e.lastSent().Msg); ent.ctype != "text/plain" || ent.body != "typed\r\n" {
		t.Fatalf("empty HTML: %+v", ent)
	}
}

func TestComposePreference(t *testing.T) {
	e := newEnv(t)
	b := e.login(alice)
	if f, _, _, _ := composeFields(t, b.get("/mail/compose").doc(t)); f != "plain" {
		t.Fatalf("default format %q", f)
	}
	r := b.post("/mail/prefs", map[string][]string{"csrf": {b.csrf}, "compose": {"html"}})
	if got := flash(t, b.follow(r)); got != "Preferences saved." {
		t.Fatalf("prefs: %d %q", r.status, got)
	}
	data, err := os.ReadFile(filepath.Join(e.maildir(alice).Root(), prefsFile))
	if err != nil || string(data) != "compose=html\n" {
		t.Fatalf("prefs file %q %v", data, err)
	}
	if f, _, _, _ := composeFields(t, b.get("/mail/compose").doc(t)); f != "html" {
		t.Fatalf("format after the preference %q", f)
	}
	// One message may differ from the default.
	if f, _, _, _ := composeFields(t, b.get("/mail/compose?format=plain").doc(t)); f != "plain" {
		t.Fatalf("format=plain gives %q", f)
	}
	if r := b.get("/mail/compose?format=rtf"); r.status != 400 {
		t.Fatalf("unknown format: %d", r.status)
	}
	if r := b.post("/mail/prefs", map[string][]string{"csrf": {b.csrf}, "compose": {"word"}}); r.status != 400 {
		t.Fatalf("bad preference: %d", r.status)
	}
	// Without the session's token nothing changes.
	if r := b.post("/mail/prefs", map[string][]string{"compose": {"plain"}}); r.status != 403 {
		t.Fatalf("no token: %d", r.status)
	}
	// Unknown lines survive a change.
	os.WriteFile(filepath.Join(e.maildir(alice).Root(), prefsFile), []byte("future=1\ncompose=html\n"), 0o600)
	b.post("/mail/prefs", map[string][]string{"csrf": {b.csrf}, "compose": {"plain"}})
	if data, _ := os.ReadFile(filepath.Join(e.maildir(alice).Root(), prefsFile)); string(data) != "compose=plain\nfuture=1\n" {
		t.Fatalf("prefs file after change %q", data)
	}
}

// TestComposeScriptAndCSP: the editor is a static file from the binary,
// and the page's policy allows no inline script.
func TestComposeScriptAndCSP(t *testing.T) {
	e := newEnv(t)
	b := e.login(alice)
	page := b.get("/mail/compose")
	csp := page.header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
		t.Fatalf("Content-Security-Policy %q", csp)
	}
	scripts := find(page.doc(t), "script", "")
	if len(scripts) != 1 || scripts[0].FirstChild != nil {
		t.Fatalf("scripts on the compose page: %d", len(scripts))
	}
	if src, _ := attr(scripts[0], "src"); src != "/mail/static/compose.js" {
		t.Fatalf("script src %q", src)
	}
	js := b.get("/mail/static/compose.js")
	if js.status != 200 || !strings.Contains(js.header.Get("Content-Type"), "javascript") || !strings.Contains(js.body, "execCommand") {
		t.Fatalf("compose.js: %d %q", js.status, js.header.Get("Content-Type"))
	}
	if strings.Contains(js.body, "http://") || strings.Contains(js.body, "https://cdn") {
		t.Error("compose.js loads from elsewhere")
	}
}

func TestHTMLToText(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", "\n"},
		{"plain &amp; simple", "plain & simple\n"},
		{"<p>one</p><p>two</p>", "one\n\ntwo\n"},
		{"<div>line1</div><div><br></div><div>line2</div>", "line1\n\nline2\n"},
		{"a<br>b<br><br>c", "a\nb\n\nc\n"},
		{"<ul><li>x</li><li>y<ul><li>z</li></ul></li></ul>", "- x\n- y\n  - z\n"},
		{"<ol><li>first</li></ol>", "- first\n"},
		{`<a href="https://e.org/">site</a>`, "site <https://e.org/>\n"},
		{`<a href="https://e.org/">https://e.org/</a>`, "https://e.org/\n"},
		{`<a href="mailto:a@b.c">a@b.c</a>`, "a@b.c\n"},
		{`<a href="mailto:a@b.c">Ann</a>`, "Ann <a@b.c>\n"},
		{`<a href="javascript:x()">bad</a>`, "bad\n"},
		{`<a href="https://e.org/"></a>`, "https://e.org/\n"},
		{"<p>me</p><blockquote><p>you</p><blockquote>them</blockquote></blockquote><p>me</p>", "me\n\n> you\n>\n> > them\n\nme\n"},
		{"<pre>  keep\n    this</pre>", "  keep\n    this\n"},
		{"<script>alert(1)</script><style>p{}</style>ok", "ok\n"},
		{"<head><title>T</title></head><body>b</body>", "b\n"},
		{"<h1>Title</h1>text", "Title\n\ntext\n"},
		{"<table><tr><td>a</td><td>b</td></tr><tr><td>c</td></tr></table>", "a b\nc\n"},
		{"x<hr>y", "x\n\n----\n\ny\n"},
		{strings.Repeat("<blockquote>", 50) + "deep", strings.Repeat("> ", maxTextQuoteDepth) + "deep\n"},
	} {
		if got := htmlToText(c.in); got != c.want {
			t.Errorf("htmlToText(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
