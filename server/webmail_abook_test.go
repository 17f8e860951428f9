package server

import (
	"bytes"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A nickname of the webmail's address book (sqwebmail's file in the
// sender's Maildir, written through the address book's form) is expanded
// when the message is sent: each of its addresses gets the message in its
// Maildir, and the To field names them.
func TestWebmailAddressBookNickname(t *testing.T) {
	h := newHarness(t)
	h.addUser("bob@example.test", "bob pass")
	h.addUser("carol@example.test", "carol pass")
	a := h.webLogin(h.user, h.pass)
	form := url.Values{"csrf": {a.csrf}, "old": {""}, "nick": {"Team"},
		"name": {"Bob", "", ""}, "addr": {"bob@example.test", "carol@example.test", ""}}
	resp, page := a.do("POST", "/mail/abook/save", "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("save entry: %d %s", resp.StatusCode, page)
	}
	book, err := os.ReadFile(filepath.Join(h.maildir(h.user), "sqwebmail-addressbook"))
	if err != nil || string(book) != "team: \"Bob\" <bob@example.test>,\n    <carol@example.test>\n" {
		t.Fatalf("address book file: %q %v", book, err)
	}

	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for k, v := range map[string]string{"csrf": a.csrf, "to": "team", "subject": "To the team", "body": "Hello all.\n"} {
		mw.WriteField(k, v)
	}
	mw.Close()
	resp, page = a.do("POST", "/mail/send", mw.FormDataContentType(), &body)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("send: %d %s", resp.StatusCode, page)
	}
	for _, rcpt := range []string{"bob@example.test", "carol@example.test"} {
		got, _ := filepath.Glob(filepath.Join(h.maildir(rcpt), "new", "*"))
		if len(got) != 1 {
			t.Fatalf("%s's new/: %v", rcpt, got)
		}
		msg, _ := os.ReadFile(got[0])
		if !bytes.Contains(msg, []byte("Subject: To the team")) || !bytes.Contains(msg, []byte(`To: "Bob" <bob@example.test>, <carol@example.test>`)) {
			t.Errorf("%s got:\n%s", rcpt, msg)
		}
	}
}
