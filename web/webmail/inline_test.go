package webmail

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"postern/mailbox/maildir"
)

// relatedMail is HTML mail as mail clients send it with pictures: the
// HTML and its images under multipart/related, a plain text version
// beside it, and a real attachment after.
const relatedMail = `From: Carol <carol@example.net>
To: alice@example.test
Subject: pictures
Date: Mon, 2 Mar 2026 10:00:00 +0000
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary=MIX

--MIX
Content-Type: multipart/alternative; boundary=ALT

--ALT
Content-Type: text/plain

Our logo is attached.
--ALT
Content-Type: multipart/related; boundary=REL; type="text/html"

--REL
Content-Type: text/html; charset=utf-8

<p>Logo: <img src="cid:logo%40example.net" alt="logo"></p>
<p>Vector: <img src="cid:vec@example.net" alt="vec"></p>
<p>Missing: <img src="cid:nothere@example.net" alt="missing"></p>
<p>Remote: <img src="https://tracker.example/p.gif" alt="remote"></p>
<p><a href="cid:logo@example.net">link</a></p>
--REL
Content-Type: image/png; name="logo.png"
Content-Transfer-Encoding: base64
Content-ID: <logo@example.net>
Content-Disposition: inline; filename="logo.png"

iVBORw0KGgoAAAANSUhEUgAAAAE=
--REL
Content-Type: image/svg+xml; name="vec.svg"
Content-ID: <vec@example.net>

<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>
--REL--
--ALT--
--MIX
Content-Type: application/pdf; name="report.pdf"
Content-Transfer-Encoding: base64
Content-Disposition: attachment; filename="report.pdf"

JVBERi0xLjQK
--MIX--
`

func TestInlineImages(t *testing.T) {
	e := newEnv(t)
	e.deliver(alice, maildir.Inbox, relatedMail)
	b := e.login(alice)
	m := e.messages(alice, maildir.Inbox)[0]
	r := b.get(fmt.Sprintf("/mail/msg?f=INBOX&uid=%d", m.UID))
	if r.status != 200 {
		t.Fatalf("message page: %d %s", r.status, r.body)
	}
	doc := r.doc(t)
	srcs := map[string]string{}
	for _, img := range find(doc, "img", "") {
		alt, _ := attr(img, "alt")
		src, _ := attr(img, "src")
		srcs[alt] = src
	}
	logo := fmt.Sprintf("/mail/inline?f=INBOX&part=1.2.2&uid=%d", m.UID)
	want := map[string]string{"logo": logo, "vec": "about:blank", "missing": "about:blank", "remote": "about:blank"}
	for alt, w := range want {
		if srcs[alt] != w {
			t.Errorf("img %s: src %q, want %q (all: %v)", alt, srcs[alt], w, srcs)
		}
	}
	for _, a := range find(doc, "a", "") {
		if a.FirstChild != nil && a.FirstChild.Data == "link" {
			if href, ok := attr(a, "href"); ok {
				t.Errorf("cid: link kept its href %q", href)
			}
		}
	}
	var atts []string
	for _, ul := range find(doc, "ul", "attachments") {
		for _, a := range find(ul, "a", "") {
			atts = append(atts, text(a))
		}
	}
	if strings.Join(atts, ",") != "vec.svg,report.pdf" {
		t.Errorf("attachments %v: want the SVG (not shown) and the PDF, not the logo shown inline", atts)
	}

	// The image itself: its own type, sandboxed, never sniffed.
	img := b.get(logo)
	if img.status != 200 {
		t.Fatalf("inline image: %d %s", img.status, img.body)
	}
	wantBytes, _ := base64.StdEncoding.DecodeString("iVBORw0KGgoAAAANSUhEUgAAAAE=")
	if img.body != string(wantBytes) {
		t.Errorf("inline image bytes %q", img.body)
	}
	for k, v := range map[string]string{"Content-Type": "image/png", "X-Content-Type-Options": "nosniff"} {
		if got := img.header.Get(k); got != v {
			t.Errorf("%s: %q, want %q", k, got, v)
		}
	}
	if csp := img.header.Get("Content-Security-Policy"); !strings.Contains(csp, "sandbox") {
		t.Errorf("Content-Security-Policy %q has no sandbox", csp)
	}
	if d := img.header.Get("Content-Disposition"); !strings.HasPrefix(d, "inline") {
		t.Errorf("Content-Disposition %q", d)
	}

	// Only images of the allowed types, and only parts with a Content-ID.
	for _, part := range []string{"1.2.3", "2", "1.2.1", "1.1", "1", "9", "x", "1.2.2.1"} {
		r := b.get(fmt.Sprintf("/mail/inline?f=INBOX&part=%s&uid=%d", part, m.UID))
		if r.status != http.StatusNotFound {
			t.Errorf("inline part %s: %d, want 404", part, r.status)
		}
		if strings.Contains(r.body, "<svg") || strings.Contains(r.body, "%PDF") {
			t.Errorf("inline part %s served its content", part)
		}
	}
	// Another user, and nobody, cannot fetch it.
	if r := e.login(bob).get(logo); r.status != http.StatusNotFound {
		t.Errorf("bob fetching alice's image: %d", r.status)
	}
	if r := e.browser().get(logo); r.status != http.StatusSeeOther {
		t.Errorf("no session: %d", r.status)
	}
	// The plain text version shows no images and lists no attachment of
	// the HTML version.
	r = b.get(fmt.Sprintf("/mail/msg?f=INBOX&uid=%d&view=text", m.UID))
	if imgs := find(r.doc(t), "img", ""); len(imgs) != 0 {
		t.Errorf("text view has images")
	}
}

func TestRewriteCIDs(t *testing.T) {
	resolve := func(cid string) (string, bool) { return "/mail/inline?part=" + cid, cid == "a@b" }
	for in, want := range map[string]string{
		`<p>no images</p>`:                         `<p>no images</p>`,
		`<img src="cid:a@b" alt="x">`:              `<img src="/mail/inline?part=a@b" alt="x">`,
		`<img src="CID:a%40b">`:                    `<img src="/mail/inline?part=a@b">`,
		`<img src="cid:c@d">`:                      `<img src="about:blank">`,
		`<img src="cid:%zz">`:                      `<img src="about:blank">`,
		`<a href="cid:a@b" rel="nofollow">x</a>`:   `<a rel="nofollow">x</a>`,
		`<p>cid:a@b</p><img src="data:image/png">`: `<p>cid:a@b</p><img src="data:image/png">`,
	} {
		if got := rewriteCIDs(in, resolve); got != want {
			t.Errorf("rewriteCIDs(%q) = %q, want %q", in, got, want)
		}
	}
}
