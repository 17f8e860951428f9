package webmail

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/net/html"

	"postern/mailbox/maildir"
)

// hostile is a message that tries everything in every place a page shows.
const hostile = `From: "<script>alert('from')</script>" <evil@example.net>
To: "<img src=x onerror=alert(1)>" <alice@example.test>
Subject: <script>alert('subject')</script><img src=x onerror=alert(2)>
Date: Mon, 2 Mar 2026 10:00:00 +0000
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary=XX

--XX
Content-Type: text/plain; charset=utf-8

Text <script>alert('text')</script> <a href="javascript:alert(3)">click</a>
--XX
Content-Type: text/html; charset=utf-8

<html><head><style>body{display:none}</style><script>alert('html')</script>
<base href="https://evil.example/"><meta http-equiv="refresh" content="0;url=https://evil.example/"></head>
<body onload="alert(4)"><p onclick="alert(5)">Hello <b>world</b></p>
<img src="https://tracker.example/pixel.gif" onerror="alert(6)">
<img src="x" onerror="alert(7)">
<img src="data:image/png;base64,iVBORw0KGgo=" alt="inline">
<a href="javascript:alert(8)">js link</a>
<a href="JaVaScRiPt:alert(9)">js link 2</a>
<a href="/mail/logout">relative link</a>
<a href="https://example.org/page">real link</a>
<a href="mailto:someone@example.org">mail link</a>
<iframe src="https://evil.example/"></iframe>
<form action="https://evil.example/"><input name="password"></form>
<object data="x.swf"></object><embed src="x.swf">
<svg><script>alert(10)</script></svg>
<div style="background:url(https://tracker.example/bg.gif)">styled</div>
<link rel="stylesheet" href="https://evil.example/x.css">
</body></html>
--XX
Content-Type: text/html; name="page.html"
Content-Disposition: attachment; filename="../../evil.html"

<script>alert('attachment')</script>
--XX
Content-Type: image/svg+xml; name="pic.svg"
Content-Disposition: attachment; filename="pic.svg"

<svg xmlns="http://www.w3.org/2000/svg"><script>alert(11)</script></svg>
--XX
Content-Type: image/png; name="ok.png"
Content-Transfer-Encoding: base64
Content-Disposition: attachment; filename="ok.png"

iVBORw0KGgo=
--XX--
`

// TestHostileMessageIsInert shows a message with script, event handlers
// and javascript: links in its Subject, From, text and HTML parts, and
// checks that nothing in the page could run or fetch.
func TestHostileMessageIsInert(t *testing.T) {
	e := newEnv(t)
	e.deliver(alice, maildir.Inbox, hostile)
	b := e.login(alice)
	m := e.messages(alice, maildir.Inbox)[0]

	for _, path := range []string{"/mail/list?f=INBOX", fmt.Sprintf("/mail/msg?f=INBOX&uid=%d", m.UID), fmt.Sprintf("/mail/msg?f=INBOX&uid=%d&view=text", m.UID),
		fmt.Sprintf("/mail/compose?mode=reply&f=INBOX&uid=%d", m.UID), fmt.Sprintf("/mail/compose?mode=forward&f=INBOX&uid=%d", m.UID)} {
		r := b.get(path)
		if r.status != 200 {
			t.Fatalf("%s: %d", path, r.status)
		}
		assertInert(t, path, r.doc(t))
	}

	r := b.get(fmt.Sprintf("/mail/msg?f=INBOX&uid=%d", m.UID))
	doc := r.doc(t)
	// The text is there, as text.
	if h := find(doc, "h1", "subject"); len(h) != 1 || !strings.Contains(text(h[0]), "<script>alert('subject')</script>") {
		t.Fatalf("subject not shown as text: %s", r.body)
	}
	if !strings.Contains(text(doc), "Text <script>alert('text')</script>") && !strings.Contains(b.get(fmt.Sprintf("/mail/msg?f=INBOX&uid=%d&view=text", m.UID)).body, "&lt;script&gt;alert(&#39;text&#39;)") {
		t.Fatalf("text part not shown escaped")
	}
	body := find(doc, "div", "html")
	if len(body) != 1 {
		t.Fatalf("HTML part not shown: %s", r.body)
	}
	if !strings.Contains(text(body[0]), "Hello world") {
		t.Fatalf("HTML text lost: %q", text(body[0]))
	}
	links := map[string]*html.Node{}
	for _, a := range find(body[0], "a", "") {
		href, _ := attr(a, "href")
		links[href] = a
	}
	real := links["https://example.org/page"]
	if real == nil {
		t.Fatalf("the real link is gone: %v", links)
	}
	rel, _ := attr(real, "rel")
	target, _ := attr(real, "target")
	if !strings.Contains(rel, "noopener") || !strings.Contains(rel, "noreferrer") || target != "_blank" {
		t.Fatalf("real link: rel=%q target=%q", rel, target)
	}
	if links["mailto:someone@example.org"] == nil {
		t.Errorf("mailto link lost")
	}
	for href := range links {
		if strings.HasPrefix(href, "/") {
			t.Errorf("relative link kept: %q", href)
		}
	}
	var dataImage bool
	for _, img := range find(body[0], "img", "") {
		src, _ := attr(img, "src")
		if strings.HasPrefix(src, "data:image/png") {
			dataImage = true
		}
	}
	if !dataImage {
		t.Errorf("inline data: image lost")
	}

	// Attachments: listed, downloadable, never as HTML.
	var parts []string
	for _, ul := range find(doc, "ul", "attachments") {
		for _, a := range find(ul, "a", "") {
			href, _ := attr(a, "href")
			parts = append(parts, href)
		}
	}
	if len(parts) != 3 {
		t.Fatalf("attachments: %v", parts)
	}
	wantType := []string{"application/octet-stream", "application/octet-stream", "image/png"}
	for i, p := range parts {
		r := b.get(p)
		if r.status != 200 {
			t.Fatalf("%s: %d", p, r.status)
		}
		if ct := r.header.Get("Content-Type"); ct != wantType[i] {
			t.Errorf("%s: Content-Type %q, want %q", p, ct, wantType[i])
		}
		cd := r.header.Get("Content-Disposition")
		if !strings.HasPrefix(cd, "attachment") || strings.Contains(cd, "/") || strings.Contains(cd, "..") && !strings.Contains(cd, "_") {
			t.Errorf("%s: Content-Disposition %q", p, cd)
		}
		if !strings.Contains(r.header.Get("Content-Security-Policy"), "sandbox") || r.header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: headers %v", p, r.header)
		}
	}
	if r := b.get(parts[0]); !strings.Contains(r.header.Get("Content-Disposition"), `filename=".._.._evil.html"`) && !strings.Contains(r.header.Get("Content-Disposition"), "evil.html") {
		t.Errorf("attachment name: %q", r.header.Get("Content-Disposition"))
	}
}

// assertInert fails when the page has anything that runs or fetches
// beyond the webmail's own style sheet and editor script: script elements, event handler
// attributes, javascript: URLs, frames, objects, forms going elsewhere,
// style elements or attributes, remote images.
func assertInert(t *testing.T, where string, doc *html.Node) {
	t.Helper()
	walk(doc, func(n *html.Node) {
		if n.Type != html.ElementNode {
			return
		}
		switch n.Data {
		case "script":
			// The webmail's own editor script, a static file with
			// nothing inline, is the one script a page may have.
			if src, _ := attr(n, "src"); src != "/mail/static/compose.js" || n.FirstChild != nil {
				t.Errorf("%s: <script src=%q> in the page", where, src)
			}
		case "iframe", "frame", "object", "embed", "style", "base", "meta", "svg":
			if n.Data == "meta" {
				if _, ok := attr(n, "http-equiv"); !ok {
					return
				}
			}
			t.Errorf("%s: <%s> in the page", where, n.Data)
		case "link":
			if href, _ := attr(n, "href"); href != "/mail/static/style.css" {
				t.Errorf("%s: <link href=%q>", where, href)
			}
		case "form":
			if action, _ := attr(n, "action"); !strings.HasPrefix(action, "/mail/") {
				t.Errorf("%s: form to %q", where, action)
			}
		}
		for _, a := range n.Attr {
			k, v := strings.ToLower(a.Key), strings.ToLower(strings.TrimSpace(a.Val))
			if strings.HasPrefix(k, "on") || k == "style" || k == "srcdoc" || k == "formaction" {
				t.Errorf("%s: attribute %s=%q on <%s>", where, a.Key, a.Val, n.Data)
			}
			if (k == "href" || k == "src" || k == "action") && (strings.HasPrefix(v, "javascript:") || strings.HasPrefix(v, "vbscript:")) {
				t.Errorf("%s: %s=%q on <%s>", where, a.Key, a.Val, n.Data)
			}
			if k == "src" && (strings.HasPrefix(v, "http") || strings.HasPrefix(v, "//")) {
				t.Errorf("%s: remote %s=%q on <%s>", where, a.Key, a.Val, n.Data)
			}
		}
	})
}

func TestPostWithoutTokenRefused(t *testing.T) {
	e := newEnv(t)
	e.deliver(alice, maildir.Inbox, simpleMessage("x@example.net", "Keep me", "hi"))
	b := e.login(alice)
	m := e.messages(alice, maildir.Inbox)[0]
	form := url.Values{"f": {"INBOX"}, "uid": {fmt.Sprint(m.UID)}, "op": {"delete"}}
	for _, c := range []struct {
		name string
		form url.Values
		hdr  map[string]string
	}{
		{"no token", form, map[string]string{"Origin": e.srv.URL}},
		{"wrong token", withValue(form, "csrf", "AAAA"), map[string]string{"Origin": e.srv.URL}},
		{"right token from another site", withValue(form, "csrf", b.csrf), map[string]string{"Origin": "https://evil.example"}},
		{"right token, cross-site fetch", withValue(form, "csrf", b.csrf), map[string]string{"Sec-Fetch-Site": "cross-site"}},
	} {
		for _, path := range []string{"/mail/act", "/mail/folders", "/mail/password", "/mail/send"} {
			r := b.postWith(path, c.form, c.hdr)
			if r.status != http.StatusForbidden {
				t.Errorf("%s to %s: %d", c.name, path, r.status)
			}
		}
	}
	if ms := e.messages(alice, maildir.Inbox); len(ms) != 1 {
		t.Fatalf("message gone after refused posts: %d", len(ms))
	}
	if _, err := e.maildir(alice).Folder(folderTrash); err == nil {
		t.Fatalf("Trash made by a refused post")
	}
	// With the token it goes through.
	if r := b.act(form); r.status != http.StatusSeeOther {
		t.Fatalf("with token: %d %s", r.status, r.body)
	}
	if ms := e.messages(alice, maildir.Inbox); len(ms) != 0 {
		t.Fatalf("message still there: %d", len(ms))
	}
}

func withValue(v url.Values, k, val string) url.Values {
	out := url.Values{}
	for key, vs := range v {
		out[key] = append([]string(nil), vs...)
	}
	out.Set(k, val)
	return out
}

func TestFolderParameterTraversalRefused(t *testing.T) {
	e := newEnv(t)
	e.deliver(bob, maildir.Inbox, simpleMessage("x@example.net", "Bob's secret", "secret"))
	e.deliver(alice, maildir.Inbox, simpleMessage("x@example.net", "Alice's", "hi"))
	b := e.login(alice)
	bobMaildir := e.dir + "/mail/" + bob.name + "/Maildir"
	for _, f := range []string{"../x", "..", ".", "../../" + bob.name + "/Maildir", "a/b", "/etc", bobMaildir, "Work..x", ".hidden", "x\x00y", "x\ny", "\xff"} {
		for _, page := range []string{"list", "msg", "raw", "part"} {
			r := b.get("/mail/" + page + "?" + url.Values{"f": {f}, "uid": {"1"}, "part": {"1"}}.Encode())
			if r.status != http.StatusBadRequest && r.status != http.StatusNotFound {
				t.Errorf("%s?f=%q: %d", page, f, r.status)
			}
			if strings.Contains(r.body, "secret") {
				t.Errorf("%s?f=%q shows Bob's mail", page, f)
			}
		}
		r := b.act(url.Values{"f": {"INBOX"}, "uid": {"1"}, "op": {"move"}, "to": {f}})
		if r.status == http.StatusSeeOther {
			r = b.follow(r)
		}
		if len(e.messages(alice, maildir.Inbox)) != 1 {
			t.Fatalf("move to %q moved the message", f)
		}
	}
	for _, bad := range []string{"0", "-1", "abc", "1.5", "99999999999", "1/../2", ""} {
		if r := b.get("/mail/msg?f=INBOX&uid=" + url.QueryEscape(bad)); r.status != http.StatusBadRequest {
			t.Errorf("uid %q: %d", bad, r.status)
		}
	}
	m := e.messages(alice, maildir.Inbox)[0]
	for _, bad := range []string{"../1", "0", "1.0", "a", "1..2", "99"} {
		if r := b.get(fmt.Sprintf("/mail/part?f=INBOX&uid=%d&part=%s", m.UID, url.QueryEscape(bad))); r.status != http.StatusBadRequest && r.status != http.StatusNotFound {
			t.Errorf("part %q: %d", bad, r.status)
		}
	}
}

// TestOtherUsersMessageUnreachable: Alice names, by its folder and UID,
// a message that only Bob has.
func TestOtherUsersMessageUnreachable(t *testing.T) {
	e := newEnv(t)
	e.deliver(alice, maildir.Inbox, simpleMessage("x@example.net", "Alice's own", "mine"))
	for i := 0; i < 3; i++ {
		e.deliver(bob, maildir.Inbox, simpleMessage("x@example.net", fmt.Sprintf("Bob secret %d", i), "secret"))
	}
	e.deliver(bob, "Private", simpleMessage("x@example.net", "Bob private", "secret"))
	bobMsgs := e.messages(bob, maildir.Inbox)
	last := bobMsgs[len(bobMsgs)-1]
	if last.UID == e.messages(alice, maildir.Inbox)[0].UID {
		t.Fatal("test needs a UID Alice does not have")
	}
	a := e.login(alice)
	for _, path := range []string{
		fmt.Sprintf("/mail/msg?f=INBOX&uid=%d", last.UID),
		fmt.Sprintf("/mail/raw?f=INBOX&uid=%d", last.UID),
		fmt.Sprintf("/mail/part?f=INBOX&uid=%d&part=1", last.UID),
		"/mail/list?f=Private",
		"/mail/msg?f=Private&uid=1",
	} {
		r := a.get(path)
		if r.status != http.StatusNotFound {
			t.Errorf("%s: %d", path, r.status)
		}
		if strings.Contains(r.body, "secret") || strings.Contains(r.body, "Bob") {
			t.Errorf("%s shows Bob's mail", path)
		}
	}
	r := a.act(url.Values{"f": {"INBOX"}, "uid": {fmt.Sprint(last.UID)}, "op": {"delete"}})
	if r.status != http.StatusSeeOther {
		t.Fatalf("delete of a UID Alice lacks: %d", r.status)
	}
	if len(e.messages(bob, maildir.Inbox)) != 3 {
		t.Fatalf("Bob's message deleted through Alice's session")
	}
	// Bob's own session sees it.
	if r := e.login(bob).get(fmt.Sprintf("/mail/msg?f=INBOX&uid=%d", last.UID)); r.status != 200 || !strings.Contains(r.body, "Bob secret 2") {
		t.Fatalf("Bob's own message: %d", r.status)
	}
}

func TestNoOpenRedirect(t *testing.T) {
	e := newEnv(t)
	e.deliver(alice, maildir.Inbox, simpleMessage("x@example.net", "One", "hi"))
	b := e.login(alice)
	m := e.messages(alice, maildir.Inbox)[0]
	for _, back := range []string{"https://evil.example/", "//evil.example/", "/mail/list?x\r\nLocation: https://evil.example/", "/\\evil.example", "javascript:alert(1)"} {
		r := b.act(url.Values{"f": {"INBOX"}, "uid": {fmt.Sprint(m.UID)}, "op": {"flag"}, "back": {back}})
		loc := r.header.Get("Location")
		if r.status != http.StatusSeeOther || !strings.HasPrefix(loc, "/mail/list?") || strings.Contains(loc, "evil") {
			t.Errorf("back=%q: %d %q", back, r.status, loc)
		}
	}
	// The message page's back link only takes our own list.
	r := b.get(fmt.Sprintf("/mail/msg?f=INBOX&uid=%d&back=%s", m.UID, url.QueryEscape("https://evil.example/")))
	if strings.Contains(r.body, "evil.example") {
		t.Errorf("message page links off-site")
	}
}

// TestHostileRequests sends oversized and malformed requests: each gets a
// clear refusal, and the webmail goes on serving.
func TestHostileRequests(t *testing.T) {
	e := newEnv(t)
	e.deliver(alice, maildir.Inbox, "Subject: "+strings.Repeat("long ", 200000)+"\nFrom: "+strings.Repeat("a", 100000)+"@x\n\n"+strings.Repeat("\xff\xfe", 1000)+"\n")
	b := e.login(alice)

	big := url.Values{"user": {strings.Repeat("u", 3<<20)}, "password": {"x"}}
	if r := e.browser().post("/mail/login", big); r.status != http.StatusUnauthorized {
		t.Errorf("3 MiB login form: %d", r.status)
	}
	if r := e.browser().post("/mail/login", url.Values{"user": {alice.name + "\r\nX: y"}, "password": {alice.pass}}); r.status != http.StatusUnauthorized {
		t.Errorf("login name with a line break: %d", r.status)
	}
	for _, q := range []string{strings.Repeat("q", 100000), "\xff\xfe", "%00", "<script>"} {
		r := b.get("/mail/list?" + url.Values{"f": {"INBOX"}, "q": {q}, "in": {"body"}}.Encode())
		if r.status != 200 {
			t.Errorf("search %.20q: %d", q, r.status)
		}
	}
	if r := b.get("/mail/list?f=" + strings.Repeat("x", 5000)); r.status != http.StatusBadRequest {
		t.Errorf("huge folder name: %d", r.status)
	}
	many := url.Values{"f": {"INBOX"}, "op": {"read"}}
	for i := 0; i < maxActionMessages+1; i++ {
		many.Add("uid", "1")
	}
	if r := b.act(many); r.status != http.StatusBadRequest {
		t.Errorf("too many messages in one action: %d", r.status)
	}
	// The message with the huge header and bad bytes shows.
	m := e.messages(alice, maildir.Inbox)[0]
	r := b.get(fmt.Sprintf("/mail/msg?f=INBOX&uid=%d", m.UID))
	if r.status != 200 || !strings.Contains(r.body, "long long") {
		t.Fatalf("hostile message: %d", r.status)
	}
	if rs := rows(t, b.get("/mail/list?f=INBOX")); len(rs) != 1 {
		t.Fatalf("list after hostile requests: %d rows", len(rs))
	}
}
