package webmail

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"postern/mailbox/maildir"
)

func TestKeywords(t *testing.T) {
	e := newEnv(t)
	e.deliver(alice, maildir.Inbox, mailFrom("carol@example.net", "labels"))
	b := e.login(alice)
	m := e.messages(alice, maildir.Inbox)[0]
	page := fmt.Sprintf("/mail/msg?f=INBOX&uid=%d", m.UID)
	set := func(kv ...string) string {
		t.Helper()
		v := url.Values{"csrf": {b.csrf}, "f": {"INBOX"}, "uid": {fmt.Sprint(m.UID)}}
		for i := 0; i+1 < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return flash(t, b.follow(b.post("/mail/keywords", v)))
	}
	keywords := func() []string {
		t.Helper()
		ms := e.messages(alice, maildir.Inbox) // a fresh look, as an IMAP server's
		kws := slices.Clone(ms[0].Keywords)
		slices.Sort(kws)
		return kws
	}
	courier := func() []string {
		t.Helper()
		f, _ := e.maildir(alice).Folder(maildir.Inbox)
		ck, err := maildir.ReadCourierKeywords(f.Path(), true, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return ck.Sets[m.Key]
	}

	// The form offers the usual labels.
	forms := find(b.get(page).doc(t), "form", "keywords")
	if len(forms) != 1 || !strings.Contains(text(forms[0]), "Important ($Label1)") || !strings.Contains(text(forms[0]), "Junk ($Junk)") {
		t.Fatalf("no keyword form with presets")
	}
	if got := set("preset", "$Label1", "op", "add"); got != "Keyword $Label1 set." {
		t.Fatalf("notice %q", got)
	}
	set("add", "project-x", "op", "add")
	if got := keywords(); !slices.Equal(got, []string{"$Label1", "project-x"}) {
		t.Fatalf("keywords %v", got)
	}
	// Courier's store has them too: Courier IMAP and maildirkw see them.
	if got := courier(); !slices.Equal(got, []string{"$label1", "project-x"}) && !slices.Equal(got, []string{"$Label1", "project-x"}) {
		t.Fatalf("courierimapkeywords %v", got)
	}
	// The page lists them, each with a remove button.
	var removable []string
	for _, btn := range find(b.get(page).doc(t), "button", "") {
		if n, _ := attr(btn, "name"); n == "remove" {
			v, _ := attr(btn, "value")
			removable = append(removable, v)
		}
	}
	if !slices.Equal(removable, []string{"$Label1", "project-x"}) {
		t.Fatalf("remove buttons %v", removable)
	}
	// Junk and not-junk exclude each other; setting again in another case
	// is the same keyword (the folder keeps its first spelling).
	set("preset", "$Junk", "op", "add")
	set("preset", "$NotJunk", "op", "add")
	set("add", "PROJECT-X", "op", "add")
	if got := keywords(); !slices.Equal(got, []string{"$Label1", "$NotJunk", "project-x"}) {
		t.Fatalf("keywords %v", got)
	}
	if got := set("remove", "$label1"); got != "Keyword $label1 removed." {
		t.Fatalf("notice %q", got)
	}
	if got := keywords(); !slices.Equal(got, []string{"$NotJunk", "project-x"}) {
		t.Fatalf("keywords after removal %v", got)
	}
	// Names that are not IMAP atoms, and system flags, are refused.
	for _, bad := range []string{`\Seen`, "two words", "a(b", `q"x`, "x]", "%", "*", "a{1}", "tab\there", strings.Repeat("k", 201), "ctl\x01"} {
		if got := set("add", bad, "op", "add"); !strings.Contains(got, "not a keyword name") {
			t.Errorf("%q: notice %q", bad, got)
		}
	}
	if got := keywords(); !slices.Equal(got, []string{"$NotJunk", "project-x"}) {
		t.Fatalf("keywords after refusals %v", got)
	}
	// Flags stay as they were.
	if ms := e.messages(alice, maildir.Inbox); !strings.Contains(ms[0].Flags, "S") {
		t.Errorf("flags %q lost \\Seen", ms[0].Flags)
	}
	// No token, no change.
	if r := b.post("/mail/keywords", url.Values{"f": {"INBOX"}, "uid": {fmt.Sprint(m.UID)}, "add": {"x"}}); r.status != 403 {
		t.Errorf("without token: %d", r.status)
	}
	// A folder holds at most 26 names: the 27th is refused with a reason.
	for i := len(keywords()); i < 26; i++ {
		set("add", fmt.Sprintf("k%d", i), "op", "add")
	}
	if got := set("add", "onetoomany", "op", "add"); !strings.Contains(got, "26") {
		t.Errorf("27th keyword: %q", got)
	}
}

func TestWithKeyword(t *testing.T) {
	for _, c := range []struct {
		in   []string
		name string
		on   bool
		want []string
	}{
		{nil, "$Junk", true, []string{"$Junk"}},
		{[]string{"$notjunk", "a"}, "$Junk", true, []string{"a", "$Junk"}},
		{[]string{"$Junk", "a"}, "$NotJunk", true, []string{"a", "$NotJunk"}},
		{[]string{"$Junk", "a"}, "$junk", false, []string{"a"}},
		{[]string{"A"}, "a", true, []string{"a"}},
		{[]string{"$NotJunk"}, "$Junk", false, []string{"$NotJunk"}},
	} {
		if got := withKeyword(c.in, c.name, c.on); !slices.Equal(got, c.want) {
			t.Errorf("withKeyword(%v, %q, %v) = %v, want %v", c.in, c.name, c.on, got, c.want)
		}
	}
}
