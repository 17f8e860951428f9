package webmail

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"postern/mailbox/maildir"
)

// The list shows each message's keywords (set here as an IMAP client
// does, in the Courier keyword store), each a link to the list of the
// messages that have it; kw= keeps only those, compared without regard
// to case, alone or with a search, through pages and sorts; a kw that is
// not an IMAP atom is refused.
func TestListKeywords(t *testing.T) {
	e := newEnv(t)
	for _, s := range []string{"Plan", "Budget", "Party", "Plan B"} {
		e.deliver(alice, maildir.Inbox, simpleMessage("x@example.net", s, "hello"))
	}
	f, err := e.maildir(alice).Folder(maildir.Inbox)
	if err != nil {
		t.Fatal(err)
	}
	kws := map[string][]string{"Plan": {"$Label1", "work"}, "Budget": {"work"}, "Plan B": {"$Label1"}}
	for _, m := range e.messages(alice, maildir.Inbox) {
		if k := kws[readSummary(f, m.Key).Subject]; k != nil {
			if err := f.SetFlags(m.Key, m.Flags, k); err != nil {
				t.Fatal(err)
			}
		}
	}
	b := e.login(alice)

	subjects := func(r response) map[string]string {
		t.Helper()
		if r.status != http.StatusOK {
			t.Fatalf("list: %d %s", r.status, r.body)
		}
		out := map[string]string{}
		for _, row := range rows(t, r) {
			for _, td := range find(row, "td", "subject") {
				a := find(td, "a", "")[0]
				var shown []string
				for _, k := range find(td, "", "keyword") {
					href, _ := attr(k, "href")
					shown = append(shown, text(k)+"="+href)
				}
				out[text(a)] = strings.Join(shown, " ")
			}
		}
		return out
	}

	all := subjects(b.get("/mail/list?f=INBOX"))
	if len(all) != 4 || all["Party"] != "" {
		t.Fatalf("rows: %v", all)
	}
	if want := "$Label1=" + listURL("INBOX", listQuery{KW: "$Label1"}) + " work=" + listURL("INBOX", listQuery{KW: "work"}); all["Plan"] != want {
		t.Fatalf("Plan's keywords: %q, want %q", all["Plan"], want)
	}
	// The filter offers the keywords in use, each once.
	page := b.get("/mail/list?f=INBOX")
	var opts []string
	for _, sel := range find(page.doc(t), "select", "") {
		if n, _ := attr(sel, "name"); n == "kw" {
			for _, o := range find(sel, "option", "") {
				v, _ := attr(o, "value")
				opts = append(opts, v)
			}
		}
	}
	if strings.Join(opts, ",") != ",$Label1,work" {
		t.Fatalf("keyword choices: %q", opts)
	}

	// The filter, any case.
	r := b.get("/mail/list?f=INBOX&kw=WORK")
	got := subjects(r)
	if len(got) != 2 || got["Plan"] == "" || got["Budget"] == "" {
		t.Fatalf("kw=WORK: %v", got)
	}
	if !strings.Contains(text(find(r.doc(t), "p", "note")[0]), "2 of 4 messages have the keyword WORK.") {
		t.Fatalf("note: %q", text(find(r.doc(t), "p", "note")[0]))
	}
	// With a search: both must hold.
	got = subjects(b.get("/mail/list?f=INBOX&kw=%24Label1&q=plan+b"))
	if len(got) != 1 || got["Plan B"] == "" {
		t.Fatalf("kw and q: %v", got)
	}
	// Sort links and the message links' way back keep the filter.
	r = b.get("/mail/list?f=INBOX&kw=work")
	for _, a := range find(r.doc(t), "th", "") {
		for _, l := range find(a, "a", "") {
			if href, _ := attr(l, "href"); !strings.Contains(href, "kw=work") {
				t.Fatalf("sort link loses the filter: %q", href)
			}
		}
	}
	if back := formValue(r.doc(t), "back"); !strings.Contains(back, "kw=work") {
		t.Fatalf("actions' way back loses the filter: %q", back)
	}
	// A keyword nobody has: an empty list, not an error.
	if got := subjects(b.get("/mail/list?f=INBOX&kw=nobody")); len(got) != 0 {
		t.Fatalf("kw=nobody: %v", got)
	}
	// Not an IMAP atom: refused with the reason.
	for _, bad := range []string{"a b", "(x", `\Seen`, "x]", "é", strings.Repeat("k", 201), "a%", "\x01"} {
		r := b.get("/mail/list?" + url.Values{"f": {"INBOX"}, "kw": {bad}}.Encode())
		if r.status != http.StatusBadRequest || !strings.Contains(r.body, "not a keyword name") {
			t.Fatalf("kw=%q: %d", bad, r.status)
		}
	}
}

// readListQuery and values are each other's inverse for what they
// accept: a list's links give back the list they came from.
func TestListQueryRoundTrip(t *testing.T) {
	for _, raw := range []string{"kw=work", "kw=%24Junk&q=x&in=from&sort=size&order=asc&page=3", "q=hi"} {
		v, _ := url.ParseQuery(raw)
		q, err := readListQuery(v)
		if err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		back, err := readListQuery(q.values("INBOX"))
		if err != nil || back != q {
			t.Fatalf("%s: %+v -> %+v (%v)", raw, q, back, err)
		}
	}
	if q, _ := readListQuery(url.Values{"kw": {"  work "}}); q.KW != "work" {
		t.Fatalf("blanks around: %q", q.KW)
	}
	if _, err := readListQuery(url.Values{"kw": {fmt.Sprint("a\x00b")}}); err == nil {
		t.Fatal("NUL accepted")
	}
}
