package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"postern/mailbox/maildir"
)

// render shows a parsed query's shape.
func render(n *queryNode) string {
	var kids []string
	for _, k := range n.kids {
		kids = append(kids, render(k))
	}
	switch n.kind {
	case qAnd:
		return "and(" + strings.Join(kids, " ") + ")"
	case qOr:
		return "or(" + strings.Join(kids, " ") + ")"
	case qNot:
		return "not(" + kids[0] + ")"
	case qMailbox:
		return "mailbox:" + n.text
	case qFlag:
		return fmt.Sprintf("flag:%c=%v", n.flag, n.want)
	case qHeader:
		return "header:" + n.field + "=" + n.text
	}
	return fmt.Sprintf("kind%d", n.kind)
}

// OR binds tighter than the implicit AND, NOT tighter still, and
// parentheses group; keys are case-insensitive.
func TestSearchQueryShape(t *testing.T) {
	for _, c := range []struct{ query, want string }{
		{"seen", "flag:S=true"},
		{"mailbox INBOX seen OR flagged", "and(mailbox:INBOX or(flag:S=true flag:F=true))"},
		{"NOT seen flagged", "and(not(flag:S=true) flag:F=true)"},
		{"NOT ( seen flagged ) OR deleted", "or(not(and(flag:S=true flag:F=true)) flag:T=true)"},
		{"SEEN or UNSEEN or Deleted", "or(flag:S=true flag:S=false flag:T=true)"},
		{"Subject Hello From ANN", "and(header:Subject=hello header:From=ann)"},
		{"( ( all ) )", "kind0"},
	} {
		n, err := parseSearchQuery(strings.Fields(c.query), time.Now(), folderNames{})
		if err != nil {
			t.Errorf("%q: %v", c.query, err)
			continue
		}
		if got := render(n); got != c.want {
			t.Errorf("%q: %s, want %s", c.query, got, c.want)
		}
	}
	deep := strings.Repeat("NOT ", maxQueryDepth+1) + "seen"
	if _, err := parseSearchQuery(strings.Fields(deep), time.Now(), folderNames{}); err == nil || !strings.Contains(err.Error(), "nested deeper") {
		t.Errorf("a query nested too deep: %v", err)
	}
}

// Intervals count back from now, dates are local midnights, sizes are
// powers of 1024, UID sets are IMAP's.
func TestSearchQueryArguments(t *testing.T) {
	now := time.Date(2026, 3, 10, 15, 0, 0, 0, time.Local)
	for _, c := range []struct {
		in   string
		want time.Time
	}{
		{"30d", now.Add(-30 * 24 * time.Hour)},
		{"2w", now.Add(-14 * 24 * time.Hour)},
		{"12h", now.Add(-12 * time.Hour)},
		{"90mins", now.Add(-90 * time.Minute)},
		{"45s", now.Add(-45 * time.Second)},
		{"3Days", now.Add(-3 * 24 * time.Hour)},
		{"2026-01-31", time.Date(2026, 1, 31, 0, 0, 0, 0, time.Local)},
		{"31-Jan-2026", time.Date(2026, 1, 31, 0, 0, 0, 0, time.Local)},
	} {
		if got, err := parseQueryTime(c.in, now); err != nil || !got.Equal(c.want) {
			t.Errorf("time %q: %v %v, want %v", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "d", "30", "30y", "-3d", "2026-02-30", "99999999999999999999d", "1000000w"} {
		if _, err := parseQueryTime(bad, now); err == nil {
			t.Errorf("time %q accepted", bad)
		}
	}
	for in, want := range map[string]int64{"0": 0, "100": 100, "10k": 10240, "10KB": 10240, "2M": 2 << 20, "1g": 1 << 30, "3b": 3} {
		if got, err := parseQuerySize(in); err != nil || got != want {
			t.Errorf("size %q: %d %v, want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "k", "1.5M", "-1", "10x", "9999999999999999999", "4611686018427387904t"} {
		if _, err := parseQuerySize(bad); err == nil {
			t.Errorf("size %q accepted", bad)
		}
	}
	set, err := parseUIDSet("1,5:3,9:*,*")
	if err != nil || fmt.Sprint(set) != "[{1 1} {5 3} {9 0} {0 0}]" {
		t.Errorf("uid set: %v %v", set, err)
	}
	for _, bad := range []string{"", "0", "1,", ":5", "1:2:3", "+5", "4294967296", "a"} {
		if _, err := parseUIDSet(bad); err == nil {
			t.Errorf("uid set %q accepted", bad)
		}
	}
}

// fakeFacts is a message for evaluating queries without a Maildir.
type fakeFacts struct {
	names       [2]string
	m           maildir.Message
	top         uint32
	saved, sent time.Time
	header      map[string][]string
}

func (f *fakeFacts) folderNames() [2]string    { return f.names }
func (f *fakeFacts) message() *maildir.Message { return &f.m }
func (f *fakeFacts) maxUID() uint32            { return f.top }
func (f *fakeFacts) saveDate() time.Time       { return f.saved }
func (f *fakeFacts) internalDate() time.Time   { return f.m.InternalDate }
func (f *fakeFacts) headerValues(field string) []string {
	return f.header[strings.ToLower(field)]
}

// Evaluation: what each key tests, the UID set's "*", and folderMatch
// agreeing with matches.
func TestSearchQueryMatches(t *testing.T) {
	now := time.Date(2026, 3, 10, 15, 0, 0, 0, time.Local)
	msg := &fakeFacts{
		names: [2]string{"INBOX.Trash", "Trash"},
		m: maildir.Message{UID: 7, Flags: "FS", Keywords: []string{"$Junk"}, Size: 3100,
			InternalDate: now.Add(-40 * 24 * time.Hour)},
		top:    9,
		saved:  now.Add(-2 * 24 * time.Hour),
		header: map[string][]string{"subject": {"café menu"}, "x-tag": {""}},
	}
	for query, want := range map[string]bool{
		"all":                            true,
		"mailbox Trash":                  true,
		"mailbox INBOX.Trash":            true,
		"mailbox inbox.%":                true,
		"mailbox %":                      true,
		"mailbox INBOX":                  false,
		"mailbox T*h":                    true,
		"seen flagged":                   true,
		"unseen OR deleted":              false,
		"NOT answered":                   true,
		"keyword $junk":                  true,
		"unkeyword $Junk":                false,
		"before 30d":                     true,
		"since 30d":                      false,
		"savedbefore 7d":                 false,
		"savedsince 7d":                  true,
		"larger 2k smaller 3k":           false,
		"larger 2k smaller 4k":           true,
		"subject CAFÉ":                   true,
		"header X-Tag ''":                false, // the text '' literally
		"from x":                         false,
		"uid 7":                          true,
		"uid 8:*":                        false,
		"uid *:5":                        true, // 5:9
		"uid 1:3,6,7":                    true,
		"NOT ( mailbox Trash seen )":     false,
		"mailbox Junk OR mailbox Tr%":    true,
		"NOT mailbox Junk savedsince 1d": false,
	} {
		n, err := parseSearchQuery(strings.Fields(query), now, folderNames{})
		if err != nil {
			t.Errorf("%q: %v", query, err)
			continue
		}
		if got := n.matches(msg); got != want {
			t.Errorf("%q matches: %v, want %v", query, got, want)
		}
	}
	n, _ := parseSearchQuery([]string{"header", "X-Tag", ""}, now, folderNames{})
	if !n.matches(msg) {
		t.Error("header X-Tag with empty text should match a present field")
	}
	n, _ = parseSearchQuery(strings.Fields("mailbox Junk OR ( mailbox Archive seen )"), now, folderNames{})
	if n.folderMatch(msg.names) != triNo || n.folderMatch([2]string{"Archive", "Archive"}) != triMaybe {
		t.Error("folderMatch does not rule out a folder the query does not name")
	}
}

// The query parser takes any words an admin or a script may give it:
// never a panic or a hang, errors that say where, and a parsed query
// whose folder test agrees with its message test.
func FuzzSearchQuery(f *testing.F) {
	for _, seed := range []string{
		"mailbox\nTrash\nsavedbefore\n7d",
		"(\nseen\nOR\nflagged\n)\nNOT\ndeleted",
		"header\nX-Spam\nyes\nlarger\n10k\nuid\n1:*,5",
		"subject\n=?UTF-8?Q?x?=\nbefore\n2026-01-31",
		"NOT\nNOT\n(\n)",
		"mailbox\n*%[\nOR",
	} {
		f.Add(seed)
	}
	now := time.Date(2026, 3, 10, 15, 0, 0, 0, time.Local)
	msgs := []*fakeFacts{
		{names: [2]string{"INBOX", "INBOX"}, m: maildir.Message{UID: 1, Flags: "S", Size: 10, InternalDate: now}, top: 3, saved: now,
			header: map[string][]string{"subject": {"hello"}}},
		{names: [2]string{"INBOX.Trash", "Trash"}, m: maildir.Message{UID: 3, Keywords: []string{"$Junk"}, Size: 1 << 20}, top: 3},
	}
	f.Fuzz(func(t *testing.T, s string) {
		words := strings.Split(s, "\n")
		n, err := parseSearchQuery(words, now, folderNames{courier: true})
		if err != nil {
			if !strings.HasPrefix(err.Error(), "search query: ") || !strings.Contains(err.Error(), "at word ") && !strings.Contains(err.Error(), "empty") {
				t.Fatalf("error without a place: %v", err)
			}
			return
		}
		for _, m := range msgs {
			got := n.matches(m)
			switch n.folderMatch(m.names) {
			case triNo:
				if got {
					t.Fatalf("folderMatch says no, matches says yes: %q", words)
				}
			case triYes:
				if !got {
					t.Fatalf("folderMatch says yes, matches says no: %q", words)
				}
			}
		}
	})
}
