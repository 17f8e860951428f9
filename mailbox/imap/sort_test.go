package imap

import (
	"fmt"
	"strings"
	"testing"

	imap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

func TestBaseSubject(t *testing.T) {
	cases := []struct {
		in    string
		base  string
		reply bool
	}{
		{"Hello", "Hello", false},
		{"Re: Hello", "Hello", true},
		{"RE: re: Fwd: Hello", "Hello", true},
		{"Re[2]: Hello", "Hello", true},
		{"[list] Re: Hello", "Hello", true},
		{"Hello (fwd)", "Hello", true},
		{"[Fwd: Hello]", "Hello", true},
		{"  Hello \t  world  ", "Hello world", false},
		{"[list]", "[list]", false},
		{"=?UTF-8?Q?Re=3A_caf=C3=A9?=", "café", true},
		{"Re:", "", true},
		{"", "", false},
	}
	for _, c := range cases {
		base, reply := baseSubject(c.in)
		if base != c.base || reply != c.reply {
			t.Errorf("baseSubject(%q) = %q, %v; want %q, %v", c.in, base, reply, c.base, c.reply)
		}
	}
}

func FuzzBaseSubject(f *testing.F) {
	for _, s := range []string{"Re: [x] Fwd: y (fwd)", "[Fwd: [Fwd: a]]", "re[", "=?utf-8?b?UmU6IGE=?="} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		base, _ := baseSubject(s)
		again, _ := baseSubject(base)
		if len(again) > len(base) {
			t.Fatalf("base subject grew: %q -> %q -> %q", s, base, again)
		}
	})
}

// threadMessage builds a message with the headers THREAD looks at.
func threadMessage(subject, id, refs, date, from string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "From: %s\r\nSubject: %s\r\nDate: %s\r\n", from, subject, date)
	if id != "" {
		fmt.Fprintf(&b, "Message-ID: <%s>\r\n", id)
	}
	if refs != "" {
		fmt.Fprintf(&b, "References: %s\r\n", refs)
	}
	b.WriteString("\r\nbody\r\n")
	return b.String()
}

func TestSortAndThreadWithGoIMAPClient(t *testing.T) {
	env := newTestEnv(t, nil)
	msgs := []string{
		threadMessage("Meeting", "a@x", "", "Mon, 1 Jan 2024 10:00:00 +0000", "zed@example.org"),
		threadMessage("Lunch", "b@x", "", "Mon, 1 Jan 2024 09:00:00 +0000", "amy@example.org"),
		threadMessage("Re: Meeting", "c@x", "<a@x>", "Mon, 1 Jan 2024 11:00:00 +0000", "bob@example.org"),
		threadMessage("Re: Re: Meeting", "d@x", "<a@x> <c@x>", "Mon, 1 Jan 2024 12:00:00 +0000", "amy@example.org"),
		threadMessage("Re: Meeting", "e@x", "<a@x>", "Mon, 1 Jan 2024 11:30:00 +0000", "cat@example.org"),
		threadMessage("Re: Lunch", "", "", "Mon, 1 Jan 2024 09:30:00 +0000", "dan@example.org"),
	}
	for _, m := range msgs {
		env.deliver("alice", "INBOX", m)
	}
	c := env.dialClient("alice", "secret", nil)
	caps, _ := c.Capability().Wait()
	for _, cp := range []imap.Cap{imap.CapSort, "THREAD=REFERENCES", "THREAD=ORDEREDSUBJECT"} {
		if !caps.Has(cp) {
			t.Errorf("capability %s missing", cp)
		}
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	sortBy := func(crit ...imapclient.SortCriterion) []uint32 {
		t.Helper()
		got, err := c.Sort(&imapclient.SortOptions{SearchCriteria: &imap.SearchCriteria{}, SortCriteria: crit}).Wait()
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	check := func(name string, got []uint32, want ...uint32) {
		t.Helper()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: %v, want %v", name, got, want)
		}
	}
	check("SORT DATE", sortBy(imapclient.SortCriterion{Key: imapclient.SortKeyDate}), 2, 6, 1, 3, 5, 4)
	check("SORT REVERSE DATE", sortBy(imapclient.SortCriterion{Key: imapclient.SortKeyDate, Reverse: true}), 4, 5, 3, 1, 6, 2)
	check("SORT FROM", sortBy(imapclient.SortCriterion{Key: imapclient.SortKeyFrom}), 2, 4, 3, 5, 6, 1)
	check("SORT SUBJECT DATE", sortBy(imapclient.SortCriterion{Key: imapclient.SortKeySubject}, imapclient.SortCriterion{Key: imapclient.SortKeyDate}), 2, 6, 1, 3, 5, 4)
	check("SORT ARRIVAL", sortBy(imapclient.SortCriterion{Key: imapclient.SortKeyArrival}), 1, 2, 3, 4, 5, 6)

	r := env.login("alice", "secret")
	r.send("s SELECT INBOX\r\n")
	r.until("s OK")
	r.send("t1 THREAD REFERENCES UTF-8 ALL\r\n")
	if l := r.expect("* THREAD"); l != "* THREAD (2 6)(1 (3 4)(5))" {
		t.Errorf("THREAD REFERENCES: %q", l)
	}
	r.expect("t1 OK")
	r.send("t2 THREAD ORDEREDSUBJECT UTF-8 ALL\r\n")
	if l := r.expect("* THREAD"); l != "* THREAD (2 6)(1 (3)(5)(4))" {
		t.Errorf("THREAD ORDEREDSUBJECT: %q", l)
	}
	r.expect("t2 OK")
	r.send("t3 UID SORT (SIZE) US-ASCII SUBJECT lunch\r\n")
	r.expect("* SORT ")
	r.expect("t3 OK")
	r.send("t4 SORT (BOGUS) UTF-8 ALL\r\nt5 THREAD NOPE UTF-8 ALL\r\nt6 SORT (DATE) KOI8-R ALL\r\n")
	r.expect("t4 BAD")
	r.expect("t5 BAD")
	r.expect("t6 NO [BADCHARSET")
}
