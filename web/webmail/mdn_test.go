package webmail

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"net/url"
	"slices"
	"strings"
	"testing"

	"golang.org/x/net/html"

	"postern/mailbox/maildir"
)

func receiptMail(returnPath, dnt, id string) string {
	rp := ""
	if returnPath != "" {
		rp = "Return-Path: " + returnPath + "\n"
	}
	return rp + `From: Carol <carol@example.net>
To: alice@example.test
Subject: =?utf-8?q?Caf=C3=A9?= plans
Date: Mon, 2 Mar 2026 10:00:00 +0000
Message-ID: ` + id + `
Original-Recipient: rfc822;alice@example.test
Disposition-Notification-To: ` + dnt + `

Did you read this?
`
}

// mdnForm is the receipt form of a message's page, nil when none.
func mdnForm(t *testing.T, r response) *html.Node {
	t.Helper()
	forms := find(r.doc(t), "form", "mdn")
	if len(forms) == 0 {
		return nil
	}
	return forms[0]
}

func (e *testEnv) messageByID(u testUser, id string) maildir.Message {
	e.t.Helper()
	md := e.maildir(u)
	f, _ := md.Folder(maildir.Inbox)
	for _, m := range e.messages(u, maildir.Inbox) {
		buf, err := f.ReadMessage(m.Key, nil, 1<<16)
		if err == nil && strings.Contains(string(buf), "Message-ID: "+id+"\n") {
			return m
		}
	}
	e.t.Fatalf("no message %s", id)
	return maildir.Message{}
}

func TestReadReceipt(t *testing.T) {
	e := newEnv(t)
	e.deliver(alice, maildir.Inbox, receiptMail("<carol@example.net>", "Carol <carol@EXAMPLE.net>", "<m1@example.net>"))
	b := e.login(alice)
	m := e.messageByID(alice, "<m1@example.net>")
	page := fmt.Sprintf("/mail/msg?f=INBOX&uid=%d", m.UID)
	r := b.get(page)
	form := mdnForm(t, r)
	if form == nil {
		t.Fatalf("no receipt offered: %s", r.body)
	}
	if len(find(form, "p", "warning")) != 0 {
		t.Errorf("a warning for a request that matches its return path: %s", text(form))
	}
	if len(e.sent) != 0 {
		t.Fatal("a receipt was sent just by opening the message")
	}
	send := func(uid uint32, op string, extra ...string) response {
		v := url.Values{"csrf": {b.csrf}, "f": {"INBOX"}, "uid": {fmt.Sprint(uid)}, "op": {op}}
		for i := 0; i+1 < len(extra); i += 2 {
			v.Set(extra[i], extra[i+1])
		}
		return b.post("/mail/mdn", v)
	}
	// Without the token: refused.
	if r := b.post("/mail/mdn", url.Values{"f": {"INBOX"}, "uid": {fmt.Sprint(m.UID)}, "op": {"send"}}); r.status != 403 || len(e.sent) != 0 {
		t.Fatalf("receipt without a token: %d, %d sent", r.status, len(e.sent))
	}
	r = send(m.UID, "send")
	if got := flash(t, b.follow(r)); !strings.Contains(got, "Read receipt sent to carol@EXAMPLE.net") {
		t.Fatalf("notice %q", got)
	}
	if len(e.sent) != 1 {
		t.Fatalf("%d messages sent", len(e.sent))
	}
	out := e.lastSent()
	if out.From != "<>" || !slices.Equal(out.Rcpts, []string{"carol@EXAMPLE.net"}) || out.Login != alice.name {
		t.Fatalf("envelope: from %q to %v login %q", out.From, out.Rcpts, out.Login)
	}
	checkMDN(t, out.Msg)

	// Marked, for IMAP clients too, and not offered again.
	m = e.messageByID(alice, "<m1@example.net>")
	if !slices.Contains(m.Keywords, "$MDNSent") {
		t.Fatalf("keywords %v: no $MDNSent", m.Keywords)
	}
	if mdnForm(t, b.get(page)) != nil {
		t.Fatal("receipt offered again after it was sent")
	}
	send(m.UID, "send")
	if len(e.sent) != 1 {
		t.Fatal("a second receipt was sent")
	}

	// Declining marks it too, and sends nothing.
	e.deliver(alice, maildir.Inbox, receiptMail("<carol@example.net>", "carol@example.net", "<m2@example.net>"))
	m2 := e.messageByID(alice, "<m2@example.net>")
	send(m2.UID, "ignore")
	if len(e.sent) != 1 {
		t.Fatal("declining sent a receipt")
	}
	if m2 = e.messageByID(alice, "<m2@example.net>"); !slices.Contains(m2.Keywords, "$MDNSent") {
		t.Fatalf("declined: keywords %v", m2.Keywords)
	}
}

// TestReadReceiptReturnPathMismatch: RFC 8098 2.1 — a receipt asked for
// another address than the Return-Path is sent only when the user says so.
func TestReadReceiptReturnPathMismatch(t *testing.T) {
	e := newEnv(t)
	cases := []struct{ rp, dnt, id string }{
		{"<bounces@lists.example>", "carol@example.net", "<x1@example.net>"},
		{"", "carol@example.net", "<x2@example.net>"},                                      // no Return-Path
		{"<Carol@example.net>", "carol@example.net", "<x3@example.net>"},                   // the local part differs in case
		{"<>", "carol@example.net", "<x4@example.net>"},                                    // the null path
		{"<carol@example.net>", "carol@example.net, eve@evil.example", "<x5@example.net>"}, // one of two elsewhere
	}
	for _, c := range cases {
		e.deliver(alice, maildir.Inbox, receiptMail(c.rp, c.dnt, c.id))
	}
	b := e.login(alice)
	for _, c := range cases {
		m := e.messageByID(alice, c.id)
		r := b.get(fmt.Sprintf("/mail/msg?f=INBOX&uid=%d", m.UID))
		form := mdnForm(t, r)
		if form == nil || len(find(form, "p", "warning")) != 1 || formValue(form, "confirm") != "yes" {
			t.Fatalf("%s: no warning and confirmation box: %s", c.id, r.body)
		}
		v := url.Values{"csrf": {b.csrf}, "f": {"INBOX"}, "uid": {fmt.Sprint(m.UID)}, "op": {"send"}}
		if got := flash(t, b.follow(b.post("/mail/mdn", v))); !strings.Contains(got, "No receipt was sent") || len(e.sent) != 0 {
			t.Fatalf("%s: sent without confirmation (%q)", c.id, got)
		}
		if m = e.messageByID(alice, c.id); slices.Contains(m.Keywords, "$MDNSent") {
			t.Fatalf("%s: marked though not sent", c.id)
		}
	}
	m := e.messageByID(alice, "<x1@example.net>")
	v := url.Values{"csrf": {b.csrf}, "f": {"INBOX"}, "uid": {fmt.Sprint(m.UID)}, "op": {"send"}, "confirm": {"yes"}}
	b.post("/mail/mdn", v)
	if len(e.sent) != 1 || e.lastSent().Rcpts[0] != "carol@example.net" {
		t.Fatalf("confirmed receipt not sent: %v", e.sent)
	}
}

// TestReadReceiptNotOffered: no receipt for a receipt, for a field given
// twice, for one that cannot be read, or when sending is off.
func TestReadReceiptNotOffered(t *testing.T) {
	e := newEnv(t)
	mdnMail := `Return-Path: <>
From: bob@example.test
To: alice@example.test
Subject: Read: x
Message-ID: <n1@example.test>
Disposition-Notification-To: bob@example.test
MIME-Version: 1.0
Content-Type: multipart/report; report-type=disposition-notification; boundary=B

--B
Content-Type: text/plain

displayed
--B--
`
	twice := strings.Replace(receiptMail("<carol@example.net>", "carol@example.net", "<n2@example.net>"),
		"Disposition-Notification-To:", "Disposition-Notification-To: carol@example.net\nDisposition-Notification-To:", 1)
	broken := receiptMail("<carol@example.net>", "carol@@", "<n3@example.net>")
	for _, msg := range []string{mdnMail, twice, broken} {
		e.deliver(alice, maildir.Inbox, msg)
	}
	b := e.login(alice)
	for _, id := range []string{"<n1@example.test>", "<n2@example.net>", "<n3@example.net>"} {
		m := e.messageByID(alice, id)
		if mdnForm(t, b.get(fmt.Sprintf("/mail/msg?f=INBOX&uid=%d", m.UID))) != nil {
			t.Errorf("%s: receipt offered", id)
		}
		b.post("/mail/mdn", url.Values{"csrf": {b.csrf}, "f": {"INBOX"}, "uid": {fmt.Sprint(m.UID)}, "op": {"send"}, "confirm": {"yes"}})
		if len(e.sent) != 0 {
			t.Fatalf("%s: receipt sent", id)
		}
	}
}

// checkMDN reads a receipt as a receiving client would (RFC 8098 3).
func checkMDN(t *testing.T, raw []byte) {
	t.Helper()
	msg, err := mail.ReadMessage(strings.NewReader(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	if msg.Header.Get("Disposition-Notification-To") != "" {
		t.Error("the receipt asks for a receipt")
	}
	if got := msg.Header.Get("To"); got != "Carol <carol@EXAMPLE.net>" && got != "\"Carol\" <carol@EXAMPLE.net>" {
		t.Errorf("To %q", got)
	}
	if subj, _ := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject")); subj != "Read: Café plans" {
		t.Errorf("Subject %q", subj)
	}
	if msg.Header.Get("In-Reply-To") != "<m1@example.net>" {
		t.Errorf("In-Reply-To %q", msg.Header.Get("In-Reply-To"))
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["report-type"] != "disposition-notification" {
		t.Fatalf("Content-Type %q", msg.Header.Get("Content-Type"))
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	var types []string
	var parts []string
	for {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(p)
		types = append(types, strings.Split(p.Header.Get("Content-Type"), ";")[0])
		parts = append(parts, string(body))
	}
	if !slices.Equal(types, []string{"text/plain", "message/disposition-notification", "text/rfc822-headers"}) {
		t.Fatalf("parts %v", types)
	}
	if !strings.Contains(parts[0], "has been displayed") {
		t.Errorf("human part %q", parts[0])
	}
	fields, err := mail.ReadMessage(strings.NewReader(parts[1] + "\r\n"))
	if err != nil {
		t.Fatalf("disposition fields: %v: %q", err, parts[1])
	}
	for k, want := range map[string]string{
		"Reporting-UA":        "example.test; Postern webmail",
		"Original-Recipient":  "rfc822;alice@example.test",
		"Final-Recipient":     "rfc822;alice@example.test",
		"Original-Message-ID": "<m1@example.net>",
		"Disposition":         "manual-action/MDN-sent-manually; displayed",
	} {
		if got := fields.Header.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	if !strings.Contains(parts[2], "Message-ID: <m1@example.net>\r\n") || strings.Contains(parts[2], "Did you read this") {
		t.Errorf("original header part %q", parts[2])
	}
}

func TestMDNMismatch(t *testing.T) {
	to := func(s string) []*mail.Address { a, _ := mail.ParseAddressList(s); return a }
	for _, c := range []struct {
		rp    []string
		to    string
		match bool
	}{
		{[]string{"<a@b.example>"}, "a@b.example", true},
		{[]string{"<a@B.EXAMPLE>"}, "X <a@b.example>", true},
		{[]string{`<"a"@b.example>`}, "a@b.example", true},
		{[]string{"<A@b.example>"}, "a@b.example", false},
		{[]string{"<a@b.example>", "<a@b.example>"}, "a@b.example", false},
		{nil, "a@b.example", false},
		{[]string{"<>"}, "a@b.example", false},
		{[]string{"<a@b.example>"}, "a@b.example, c@d.example", false},
	} {
		if got := mdnMismatch(c.rp, to(c.to)) == ""; got != c.match {
			t.Errorf("Return-Path %v, DNT %q: match %v, want %v", c.rp, c.to, got, c.match)
		}
	}
}

// TestReadReceiptRefused: a receipt the server refuses, or cannot take
// now, is not marked sent and is offered again.
func TestReadReceiptRefused(t *testing.T) {
	e := newEnv(t)
	e.deliver(alice, maildir.Inbox, receiptMail("<carol@example.net>", "carol@example.net", "<r1@example.net>"))
	b := e.login(alice)
	m := e.messageByID(alice, "<r1@example.net>")
	for _, c := range []struct {
		err  error
		want string
	}{
		{&Refused{Reason: "5.1.1 carol@example.net: no such user"}, "The receipt was not sent: 5.1.1 carol@example.net: no such user"},
		{errors.New("queue down"), "The receipt could not be sent now. Try again later."},
	} {
		e.mu.Lock()
		e.sendErr = c.err
		e.mu.Unlock()
		v := url.Values{"csrf": {b.csrf}, "f": {"INBOX"}, "uid": {fmt.Sprint(m.UID)}, "op": {"send"}}
		if got := flash(t, b.follow(b.post("/mail/mdn", v))); got != c.want {
			t.Errorf("notice %q, want %q", got, c.want)
		}
		if m := e.messageByID(alice, "<r1@example.net>"); slices.Contains(m.Keywords, "$MDNSent") {
			t.Fatal("marked sent though it was not")
		}
		if mdnForm(t, b.get(fmt.Sprintf("/mail/msg?f=INBOX&uid=%d", m.UID))) == nil {
			t.Fatal("not offered again")
		}
	}
}
