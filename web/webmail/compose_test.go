package webmail

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/mail"
	"strings"
	"testing"
	"time"

	"postern/mailbox/maildir"
	pmime "postern/mailbox/mime"
)

// sendForm posts the compose form as a browser does (multipart, with
// files).
func (b *browser) sendForm(fields map[string]string, files map[string][]byte) response {
	b.e.t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	if _, ok := fields["csrf"]; !ok {
		mw.WriteField("csrf", b.csrf)
	}
	for k, v := range fields {
		mw.WriteField(k, v)
	}
	for name, data := range files {
		w, _ := mw.CreateFormFile("attach", name)
		w.Write(data)
	}
	mw.Close()
	req, _ := http.NewRequest("POST", b.e.srv.URL+"/mail/send", &body)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Origin", b.e.srv.URL)
	return b.do(req)
}

func (e *testEnv) lastSent() Outgoing {
	e.t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.sent) == 0 {
		e.t.Fatal("nothing sent")
	}
	return e.sent[len(e.sent)-1]
}

func TestSendWithAttachment(t *testing.T) {
	e := newEnv(t)
	b := e.login(alice)
	if r := b.get("/mail/compose"); r.status != 200 || formValue(r.doc(t), "csrf") != b.csrf {
		t.Fatalf("compose page: %d", r.status)
	}
	r := b.sendForm(map[string]string{
		"to": "Bob <bob@example.test>, carol@example.org", "cc": "dave@example.org", "bcc": "hidden@example.org",
		"subject": "Grüße aus Köln", "body": "Hallo Bob,\nhier ist die Datei. 😀\n",
	}, map[string][]byte{"../../etc/report.pdf": []byte("%PDF-1.4 fake\x00\xff")})
	if got := flash(t, b.follow(r)); got != "Message sent." {
		t.Fatalf("send: %d %s", r.status, got)
	}
	out := e.lastSent()
	if out.Login != alice.name || out.From != alice.name {
		t.Fatalf("sender: %+v", out)
	}
	if strings.Join(out.Rcpts, ",") != "bob@example.test,carol@example.org,dave@example.org,hidden@example.org" {
		t.Fatalf("recipients: %v", out.Rcpts)
	}
	if bytes.Contains(bytes.ReplaceAll(out.Msg, []byte("\r\n"), nil), []byte("\n")) {
		t.Fatal("bare LF in the message")
	}
	msg, err := mail.ReadMessage(bytes.NewReader(out.Msg))
	if err != nil {
		t.Fatal(err)
	}
	if msg.Header.Get("Bcc") != "" || bytes.Contains(out.Msg, []byte("hidden@")) {
		t.Fatal("Bcc in the message")
	}
	dec := new(mime.WordDecoder)
	if s, _ := dec.DecodeHeader(msg.Header.Get("Subject")); s != "Grüße aus Köln" {
		t.Fatalf("subject: %q", s)
	}
	if msg.Header.Get("From") != "<alice@example.test>" && msg.Header.Get("From") != "alice@example.test" {
		t.Fatalf("From: %q", msg.Header.Get("From"))
	}
	if msg.Header.Get("Message-Id") == "" || msg.Header.Get("Date") == "" {
		t.Fatal("no Message-ID or Date")
	}
	mt, params, _ := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if mt != "multipart/mixed" {
		t.Fatalf("type %q", mt)
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	text, err := mr.NextPart() // quoted-printable undone by the reader
	if err != nil {
		t.Fatal(err)
	}
	tb, _ := io.ReadAll(text)
	if string(tb) != "Hallo Bob,\r\nhier ist die Datei. 😀\r\n" {
		t.Fatalf("text: %q", tb)
	}
	att, err := mr.NextPart()
	if err != nil {
		t.Fatal(err)
	}
	if att.FileName() != "report.pdf" {
		t.Fatalf("attachment name %q", att.FileName())
	}
	// The copy in Sent, read.
	sent := e.messages(alice, folderSent)
	if len(sent) != 1 || sent[0].Flags != "S" {
		t.Fatalf("Sent: %+v", sent)
	}
	// The Sent copy parses and holds the attachment with its bytes.
	f, _ := e.maildir(alice).Folder(folderSent)
	file, _ := f.Open(sent[0].Key)
	defer file.Close()
	st, _ := file.Stat()
	root, _ := pmime.Parse(file, st.Size())
	data, err := pmime.Decoded(file, root, []int{2})
	if err != nil || string(data) != "%PDF-1.4 fake\x00\xff" {
		t.Fatalf("attachment bytes: %q %v", data, err)
	}
}

func TestReplyAndForward(t *testing.T) {
	e := newEnv(t)
	e.deliver(alice, maildir.Inbox, "From: Bob <bob@example.test>\nTo: alice@example.test, team@example.org\nCc: carol@example.org\n"+
		"Subject: Plans\nDate: Mon, 2 Mar 2026 10:00:00 +0000\nMessage-ID: <plans@example.test>\n\nShall we meet?\n> earlier\n")
	b := e.login(alice)
	m := e.messages(alice, maildir.Inbox)[0]
	doc := b.get(fmt.Sprintf("/mail/compose?mode=reply&f=INBOX&uid=%d", m.UID)).doc(t)
	if v := formValue(doc, "to"); v != `"Bob" <bob@example.test>` {
		t.Fatalf("reply To: %q", v)
	}
	if v := formValue(doc, "subject"); v != "Re: Plans" {
		t.Fatalf("reply Subject: %q", v)
	}
	if v := formValue(doc, "in_reply_to"); v != "<plans@example.test>" {
		t.Fatalf("In-Reply-To: %q", v)
	}
	body := text(find(doc, "textarea", "")[0])
	if !strings.Contains(body, "> Shall we meet?\n>> earlier") {
		t.Fatalf("quoted body: %q", body)
	}
	doc = b.get(fmt.Sprintf("/mail/compose?mode=replyall&f=INBOX&uid=%d", m.UID)).doc(t)
	if v := formValue(doc, "to"); v != `"Bob" <bob@example.test>, <team@example.org>` {
		t.Fatalf("reply-all To (without Alice herself): %q", v)
	}
	if v := formValue(doc, "cc"); v != "<carol@example.org>" {
		t.Fatalf("reply-all Cc: %q", v)
	}
	// Send the reply: it carries the references, and the original is
	// marked answered.
	r := b.sendForm(map[string]string{"to": "bob@example.test", "subject": "Re: Plans", "body": "Yes.", "in_reply_to": "<plans@example.test>", "references": "<plans@example.test>"}, nil)
	b.follow(r)
	out := e.lastSent()
	msg, _ := mail.ReadMessage(bytes.NewReader(out.Msg))
	if msg.Header.Get("In-Reply-To") != "<plans@example.test>" || msg.Header.Get("References") != "<plans@example.test>" {
		t.Fatalf("reply headers: %v", msg.Header)
	}
	if m := e.messages(alice, maildir.Inbox)[0]; !strings.ContainsRune(m.Flags, maildir.FlagReplied) {
		t.Fatalf("original not answered: %q", m.Flags)
	}

	doc = b.get(fmt.Sprintf("/mail/compose?mode=forward&f=INBOX&uid=%d", m.UID)).doc(t)
	if v := formValue(doc, "subject"); v != "Fwd: Plans" {
		t.Fatalf("forward Subject: %q", v)
	}
	fields := map[string]string{"to": "dave@example.org", "subject": "Fwd: Plans", "body": "FYI",
		"fwd_f": formValue(doc, "fwd_f"), "fwd_uid": formValue(doc, "fwd_uid"), "fwd_name": formValue(doc, "fwd_name")}
	b.follow(b.sendForm(fields, nil))
	out = e.lastSent()
	if !bytes.Contains(out.Msg, []byte("Content-Type: message/rfc822")) || !bytes.Contains(out.Msg, []byte("Shall we meet?\r\n")) {
		t.Fatalf("forwarded message not attached:\n%s", out.Msg)
	}
}

func TestSendRefusals(t *testing.T) {
	e := newEnvWith(t, func(o *Options) { o.MaxMessageSize = func() int64 { return 10 << 10 } })
	b := e.login(alice)
	r := b.sendForm(map[string]string{"to": "bob@example.test", "subject": "big", "body": "x"}, map[string][]byte{"big.bin": bytes.Repeat([]byte("x"), 9<<10)})
	if r.status != http.StatusRequestEntityTooLarge || !strings.Contains(r.body, "too big") {
		t.Fatalf("too big after base64: %d", r.status)
	}
	r = b.sendForm(map[string]string{"to": "bob@example.test", "subject": "huge", "body": "x"}, map[string][]byte{"huge.bin": bytes.Repeat([]byte("x"), 2<<20)})
	if r.status != http.StatusRequestEntityTooLarge {
		t.Fatalf("upload past the limit: %d", r.status)
	}
	for _, to := range []string{"", "not an address", "bob@", "a@b\r\nBcc: x@y", "<script>@x"} {
		r := b.sendForm(map[string]string{"to": to, "subject": "s", "body": "x"}, nil)
		if r.status != http.StatusBadRequest {
			t.Errorf("To %q: %d", to, r.status)
		}
	}
	// A subject with a line break cannot add a header.
	b.follow(b.sendForm(map[string]string{"to": "bob@example.test", "subject": "hi\r\nBcc: evil@example.net", "body": "x"}, nil))
	msg, _ := mail.ReadMessage(bytes.NewReader(e.lastSent().Msg))
	if msg.Header.Get("Bcc") != "" || msg.Header.Get("Subject") != "hi Bcc: evil@example.net" {
		t.Fatalf("header injection: %v", msg.Header)
	}
	e.mu.Lock()
	e.sendErr = &Refused{Reason: "550 5.1.1 nobody@example.test: no such user"}
	e.mu.Unlock()
	r = b.sendForm(map[string]string{"to": "nobody@example.test", "subject": "s", "body": "x"}, nil)
	if r.status != http.StatusUnprocessableEntity || !strings.Contains(r.body, "no such user") || formValue(r.doc(t), "to") != "nobody@example.test" {
		t.Fatalf("refusal: %d %s", r.status, r.body)
	}
	e.mu.Lock()
	e.sendErr = errors.New("queue: disk full")
	e.mu.Unlock()
	r = b.sendForm(map[string]string{"to": "bob@example.test", "subject": "s", "body": "x"}, nil)
	if r.status != http.StatusServiceUnavailable || !strings.Contains(r.body, "Try again later") || strings.Contains(r.body, "disk full") {
		t.Fatalf("temporary failure: %d %s", r.status, r.body)
	}
	if len(e.messages(alice, folderSent)) != 1 {
		t.Fatalf("failed sends kept in Sent")
	}
}

func TestBuildEncodings(t *testing.T) {
	d := &draft{from: &mail.Address{Address: "a@example.test"}, to: []*mail.Address{{Address: "b@example.test"}}, subject: "plain", body: "short ascii\n"}
	msg := string(d.build(timeZero))
	if !strings.Contains(msg, "Content-Transfer-Encoding: 7bit\r\n") {
		t.Fatalf("ascii body not 7bit:\n%s", msg)
	}
	d.body = strings.Repeat("long ", 300) + "\n"
	if msg := string(d.build(timeZero)); !strings.Contains(msg, "quoted-printable") {
		t.Fatalf("long line not quoted-printable")
	}
	d.subject = strings.Repeat("Ünïcödé subject words ", 10)
	for _, line := range strings.Split(string(d.build(timeZero)), "\r\n") {
		if len(line) > 998 {
			t.Fatalf("line of %d", len(line))
		}
	}
}

var timeZero = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

var mailAddr = mail.Address{Address: "a@example.test"}

func TestDrafts(t *testing.T) {
	e := newEnv(t)
	b := e.login(alice)
	// Saved without recipients, with an attachment and a Bcc.
	r := b.sendForm(map[string]string{"save": "draft", "bcc": "secret@example.org", "subject": "Half done", "body": "first words\n"},
		map[string][]byte{"plan.txt": []byte("the plan\n")})
	if got := flash(t, b.follow(r)); got != "Draft saved." {
		t.Fatalf("save: %d %q", r.status, got)
	}
	drafts := e.messages(alice, folderDrafts)
	if len(drafts) != 1 || drafts[0].Flags != "DS" {
		t.Fatalf("Drafts: %+v", drafts)
	}
	e.mu.Lock()
	n := len(e.sent)
	e.mu.Unlock()
	if n != 0 {
		t.Fatal("a draft was sent")
	}
	// Its page offers editing; the form comes back filled in.
	page := b.get(fmt.Sprintf("/mail/msg?f=Drafts&uid=%d", drafts[0].UID))
	if !strings.Contains(page.body, "Edit draft") {
		t.Fatal("no edit link on a draft")
	}
	doc := b.get(fmt.Sprintf("/mail/compose?mode=draft&f=Drafts&uid=%d", drafts[0].UID)).doc(t)
	if formValue(doc, "subject") != "Half done" || formValue(doc, "bcc") != "<secret@example.org>" || formValue(doc, "draft_uid") != fmt.Sprint(drafts[0].UID) {
		t.Fatalf("draft form: subject %q bcc %q uid %q", formValue(doc, "subject"), formValue(doc, "bcc"), formValue(doc, "draft_uid"))
	}
	if body := text(find(doc, "textarea", "")[0]); body != "first words\n" {
		t.Fatalf("draft text: %q", body)
	}
	if !strings.Contains(text(doc), "Attached from the draft: plan.txt.") {
		t.Fatal("draft attachment not listed")
	}
	// Only a message in Drafts can be edited.
	e.deliver(alice, maildir.Inbox, simpleMessage("x@example.net", "Not a draft", "hi"))
	if r := b.get(fmt.Sprintf("/mail/compose?mode=draft&f=INBOX&uid=%d", e.messages(alice, maildir.Inbox)[0].UID)); r.status != http.StatusBadRequest {
		t.Fatalf("editing an INBOX message as a draft: %d", r.status)
	}
	// Sent from the draft: the attachment goes along, the Bcc does not
	// go in the message, and the draft is gone.
	r = b.sendForm(map[string]string{"to": "bob@example.test", "bcc": "secret@example.org", "subject": "Done", "body": "all words\n",
		"draft_uid": formValue(doc, "draft_uid")}, nil)
	if got := flash(t, b.follow(r)); got != "Message sent." {
		t.Fatalf("send from draft: %q", got)
	}
	out := e.lastSent()
	if !bytes.Contains(out.Msg, []byte("filename=plan.txt")) || bytes.Contains(out.Msg, []byte("secret@")) {
		t.Fatalf("sent from draft:\n%s", out.Msg)
	}
	if strings.Join(out.Rcpts, ",") != "bob@example.test,secret@example.org" {
		t.Fatalf("recipients: %v", out.Rcpts)
	}
	if n := len(e.messages(alice, folderDrafts)); n != 0 {
		t.Fatalf("draft still there after sending: %d", n)
	}
}
