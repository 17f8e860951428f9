package dotforward

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// show renders entries as "kind value" for comparisons.
func show(es []Entry) []string {
	var out []string
	for _, e := range es {
		out = append(out, fmt.Sprintf("%d %s %s", e.Group, e.Kind, e.Value))
	}
	return out
}

func TestParseEveryForm(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		want      []string
	}{
		{"address", "joe@example.org\n", []string{"1 address joe@example.org"}},
		{"local name", "mark\n", []string{"1 address mark"}},
		{"backslash user", "\\alice\n", []string{"1 address alice"}},
		{"comma list", "joe@example.org, \\alice ,mark\n", []string{"1 address joe@example.org", "1 address alice", "1 address mark"}},
		{"lines are groups", "a@x.test\nb@y.test\n", []string{"1 address a@x.test", "2 address b@y.test"}},
		{"comments and blanks", "# my forward\n\n   # indented comment\n\t\njoe@example.org\n", []string{"1 address joe@example.org"}},
		{"CRLF", "joe@example.org\r\n|prog\r\n", []string{"1 address joe@example.org", "2 program prog"}},
		{"no final newline", "joe@example.org", []string{"1 address joe@example.org"}},
		{"quoted program", `"|/usr/bin/vacation joe"` + "\n", []string{"1 program /usr/bin/vacation joe"}},
		{"quoted program with a comma", `"| /bin/prog a, b"` + "\n", []string{"1 program  /bin/prog a, b"}},
		{"program alone unquoted", "| /usr/bin/vacation -a joe joe\n", []string{"1 program  /usr/bin/vacation -a joe joe"}},
		{"program in a list", `\joe, "|/usr/bin/vacation joe"` + "\n", []string{"1 address joe", "1 program /usr/bin/vacation joe"}},
		{"unquoted program in a list", "joe@example.org, |/usr/bin/prog\n", []string{"1 address joe@example.org", "1 program /usr/bin/prog"}},
		{"mailbox absolute", "/home/joe/mbox\n", []string{"1 mailbox /home/joe/mbox"}},
		{"mailbox relative", "./Maildir/.Forwarded/\n", []string{"1 mailbox ./Maildir/.Forwarded/"}},
		{"quoted mailboxes", `"/home/joe/mail box", "./mbox"` + "\n", []string{"1 mailbox /home/joe/mail box", "1 mailbox ./mbox"}},
		{"quoted address", `"joe@example.org"` + "\n", []string{"1 address joe@example.org"}},
		{"quoted backslash user", `"\\alice"` + "\n", []string{"1 address alice"}},
		{"name and angle address", "Joe Bloggs <joe@example.org>, \"Bloggs, Joe\" <jb@example.org>\n", []string{"1 address joe@example.org", "1 address jb@example.org"}},
		{"comment in an address", "joe@example.org (Joe at work)\n", []string{"1 address joe@example.org"}},
		{"angle brackets in a comment", "joe@example.org (<work>), (x) ann@example.org\n", []string{"1 address joe@example.org", "1 address ann@example.org"}},
		{"blanks around @", "joe @ example.org\n", []string{"1 address joe@example.org"}},
		{"quoted local part", `"joe.x"@example.org` + "\n", []string{`1 address "joe.x"@example.org`}},
		{"empty elements", "a@x.test,, b@x.test,\n", []string{"1 address a@x.test", "1 address b@x.test"}},
		{"empty include is skipped", ":include:\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(".forward", []byte(tc.src), nil)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(show(got), tc.want) {
				t.Fatalf("got %q\nwant %q", show(got), tc.want)
			}
		})
	}
}

func TestParseRefusesBadLines(t *testing.T) {
	for _, tc := range []struct {
		src, why string
	}{
		{`"|prog` + "\n", "unterminated quoted string"},
		{"Joe Bloggs\n", "not an address"},
		{"joe <joe@example.org\n", "unbalanced"},
		{"joe@example.org>\n", "unbalanced"},
		{"joe (comment\n", "unbalanced"},
		{"-oQ/tmp\n", "may not start with \"-\""},
		{"&-x@example.org\n", "may not start with '&'"},
		{"joe@example.org, !joe@example.org\n", "may not start with '!'"},
		{`"john smith"@example.org` + "\n", "cannot be forwarded to"},
		{"@example.org\n", "no local part"},
		{strings.Repeat("x", 257) + "\n", "name longer than 256"},
		{"||dotforward\n", "\"||\""},
		{`"||prog"` + "\n", "\"||\""},
		{"|\n", "empty command"},
		{`"|  "` + "\n", "empty command"},
		{"joe\x00@example.org\n", "control character"},
		{"a@b.test\x1b\n", "control character"},
		{":include: other\n", "not allowed"},
		{"joe@example.org\n" + strings.Repeat("x", MaxLineLength+1) + "\n", "line 2: longer than"},
		{strings.Repeat("a@b.test\n", MaxEntries+1), "more than"},
		{strings.Repeat("#\n", MaxFileSize/2+1), "larger than"},
	} {
		_, err := Parse(".forward", []byte(tc.src), nil)
		if err == nil || !errors.Is(err, ErrSyntax) || !strings.Contains(err.Error(), tc.why) {
			t.Errorf("Parse(%.40q) = %v, want an error about %q", tc.src, err, tc.why)
		}
	}
	// The file and the line are named.
	_, err := Parse("/home/joe/.forward", []byte("# ok\njoe@example.org\nJoe Bloggs\n"), nil)
	if err == nil || !strings.Contains(err.Error(), "/home/joe/.forward line 3:") {
		t.Fatalf("error %v does not say where", err)
	}
}

func TestParseInclude(t *testing.T) {
	files := map[string]string{
		"list":   "b@x.test, \"|prog\"\n:include: nested\n",
		"nested": "c@x.test\n",
		"loop":   ":include: loop\n",
	}
	read := func(p string) ([]byte, error) {
		if s, ok := files[p]; ok {
			return []byte(s), nil
		}
		return nil, fmt.Errorf("open %s: no such file", p)
	}
	got, err := Parse(".forward", []byte("a@x.test\n:include: list\nd@x.test\n"), read)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"1 address a@x.test", "3 address b@x.test", "3 program prog", "5 address c@x.test", "6 address d@x.test"}
	if !reflect.DeepEqual(show(got), want) {
		t.Fatalf("got %q, want %q", show(got), want)
	}
	if got[2].File != "list" || got[2].Line != 1 || got[3].File != "nested" {
		t.Fatalf("origins %+v", got)
	}
	for _, src := range []string{":include: loop\n", ":include: missing\n"} {
		_, err := Parse(".forward", []byte(src), read)
		if !errors.Is(err, ErrInclude) || !errors.Is(err, ErrSyntax) {
			t.Fatalf("%q: %v, want an include error", src, err)
		}
	}
	// A syntax error inside an included file is a syntax error, not an
	// include error, and names that file.
	files["bad"] = "Joe Bloggs\n"
	_, err = Parse(".forward", []byte(":include: bad\n"), read)
	if errors.Is(err, ErrInclude) || err == nil || !strings.Contains(err.Error(), "bad line 1") {
		t.Fatalf("bad include: %v", err)
	}
}

func TestMakePlan(t *testing.T) {
	parse := func(src string) []Entry {
		t.Helper()
		es, err := Parse(".forward", []byte(src), nil)
		if err != nil {
			t.Fatal(err)
		}
		return es
	}
	me := Recipient{Address: "alice@example.test"}
	for _, tc := range []struct {
		name    string
		src     string
		r       Recipient
		out     string
		exit    int
		dropped []string
	}{
		{"forward only", "joe@example.org\n", me, "!joe@example.org\n", 99, nil},
		{"a line's addresses together", "a@x.test, b@y.test\nc@z.test\n", me, "!a@x.test, b@y.test\n!c@z.test\n", 99, nil},
		{"local names get our domain", "mark, \\bob\n", me, "!mark@example.test, bob@example.test\n", 99, nil},
		{"own address keeps a copy", "\\alice, joe@example.org\n", me, "!joe@example.org\n", 0, nil},
		{"own address in any case", "Alice@EXAMPLE.test\n", me, "", 0, nil},
		{"programs and mailboxes", "\"|/usr/bin/vacation alice\"\n./mbox\n/home/alice/other\n", me, "|/usr/bin/vacation alice\n./mbox\n/home/alice/other\n", 99, nil},
		{"program before the addresses of its line", "joe@example.org, \"|prog\", ann@example.org\n", me, "|prog\n!joe@example.org, ann@example.org\n", 99, nil},
		{"duplicates once", "joe@example.org\nJOE@example.org, ann@example.org\n", me, "!joe@example.org\n!ann@example.org\n", 99, nil},
		{"loop dropped", "joe@example.org, bob@example.test\n", Recipient{Address: "alice@example.test", DeliveredTo: []string{"alice@example.test", "Bob@Example.Test"}}, "!joe@example.org\n", 99, []string{"bob@example.test"}},
		{"all looped: keep it here", "bob@example.test\n", Recipient{Address: "alice@example.test", DeliveredTo: []string{"bob@example.test"}}, "", 0, []string{"bob@example.test"}},
		{"recipient without a domain", "mark, \\alice\n", Recipient{Address: "alice"}, "!mark\n", 0, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := MakePlan(parse(tc.src), tc.r)
			if p.Output() != tc.out || p.ExitCode() != tc.exit || !reflect.DeepEqual(p.Dropped, tc.dropped) {
				t.Fatalf("got %q exit %d dropped %q\nwant %q exit %d dropped %q", p.Output(), p.ExitCode(), p.Dropped, tc.out, tc.exit, tc.dropped)
			}
		})
	}
}

// A long line of names, each given the recipient's domain, is printed as
// several forwarding lines that the .courier reader takes.
func TestMakePlanSplitsLongLines(t *testing.T) {
	var names []string
	for i := range 150 {
		names = append(names, fmt.Sprintf("user%03d", i))
	}
	src := strings.Join(names, ",") + "\n"
	if len(src) > MaxLineLength {
		t.Fatal("test line too long")
	}
	es, err := Parse(".forward", []byte(src), nil)
	if err != nil {
		t.Fatal(err)
	}
	p := MakePlan(es, Recipient{Address: "alice@a-rather-long-domain-name.example.test"})
	if len(p.Instructions) < 2 {
		t.Fatalf("%d lines", len(p.Instructions))
	}
	n := 0
	for _, in := range p.Instructions {
		if len(in) > maxForwardLine+600 || in[0] != '!' {
			t.Fatalf("line of %d bytes: %.60q", len(in), in)
		}
		n += strings.Count(in, ",") + 1
	}
	if n != 150 {
		t.Fatalf("%d addresses printed, want 150", n)
	}
}

func TestParseDTLINE(t *testing.T) {
	for in, want := range map[string]string{
		"Delivered-To: alice@example.test\n": "alice@example.test",
		"Delivered-To:<alice@example.test>":  "alice@example.test",
		"Delivered-To: \n":                   "",
		"":                                   "",
		"alice@example.test":                 "",
	} {
		if got := ParseDTLINE(in); got != want {
			t.Errorf("ParseDTLINE(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestReadDeliveredTo(t *testing.T) {
	msg := "Delivered-To: alice@example.test\r\nReturn-Path: <bob@example.org>\ndelivered-to:  <Bob@Example.Test> \nSubject: hi\n\nDelivered-To: not@header.test\n"
	got, err := ReadDeliveredTo(strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"alice@example.test", "Bob@Example.Test"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	if got, err := ReadDeliveredTo(strings.NewReader("Delivered-To: a@b.test")); err != nil || len(got) != 1 {
		t.Fatalf("header without an end: %q %v", got, err)
	}
	if _, err := ReadDeliveredTo(strings.NewReader(strings.Repeat("X-Junk: 0123456789012345678901234567890123456789\n", 30000))); !errors.Is(err, ErrHeaderTooLarge) {
		t.Fatalf("huge header: %v", err)
	}
}
