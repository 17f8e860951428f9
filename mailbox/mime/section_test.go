package mime

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestSection(t *testing.T) {
	msg := loadMessage(t, "nested.eml", true)
	root := mustParse(t, msg)
	crlf := func(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }
	embedded := crlf("From: Frank <frank@example.com>\nSubject: =?iso-8859-1?q?embedded_message_=E9?=\nDate: Wed, 12 Jun 2024 12:00:00 +0100\nContent-Type: multipart/mixed; boundary=\"emb\"\n\n")
	tests := []struct {
		name string
		spec SectionSpec
		want string
	}{
		{"whole message", SectionSpec{}, string(msg)},
		{"HEADER", SectionSpec{Specifier: "HEADER"}, crlf("From: Eve <eve@example.org>\nTo: Group One: a@example.com, \"B, Jr.\" <b@example.com>; , c@example.com\nSubject: nested\nContent-Type: multipart/mixed; boundary=outer\n\n")},
		{"HEADER.FIELDS", SectionSpec{Specifier: "HEADER.FIELDS", Fields: []string{"subject", "FROM", "X-Absent"}}, crlf("From: Eve <eve@example.org>\nSubject: nested\n\n")},
		{"HEADER.FIELDS.NOT", SectionSpec{Specifier: "HEADER.FIELDS.NOT", Fields: []string{"To", "Content-Type", "from"}}, crlf("Subject: nested\n\n")},
		{"TEXT", SectionSpec{Specifier: "TEXT"}, string(msg[root.BodyStart:])},
		{"1.1", SectionSpec{Path: []int{1, 1}}, "plain part"},
		{"1.2.MIME", SectionSpec{Path: []int{1, 2}, Specifier: "MIME"}, crlf("Content-Type: text/html\n\n")},
		{"2 is the embedded message", SectionSpec{Path: []int{2}}, embedded + crlf("--emb\nContent-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable\n\ncaf=E9 inside\n--emb\nContent-Type: image/png\nContent-Transfer-Encoding: base64\n\niVBORw0KGgo=\n--emb--\n")},
		{"2.HEADER", SectionSpec{Path: []int{2}, Specifier: "HEADER"}, embedded},
		{"2.HEADER.FIELDS", SectionSpec{Path: []int{2}, Specifier: "HEADER.FIELDS", Fields: []string{"Date"}}, crlf("Date: Wed, 12 Jun 2024 12:00:00 +0100\n\n")},
		{"2.TEXT", SectionSpec{Path: []int{2}, Specifier: "TEXT"}, crlf("--emb\nContent-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable\n\ncaf=E9 inside\n--emb\nContent-Type: image/png\nContent-Transfer-Encoding: base64\n\niVBORw0KGgo=\n--emb--\n")},
		{"2.MIME", SectionSpec{Path: []int{2}, Specifier: "MIME"}, crlf("Content-Type: message/rfc822\nContent-Disposition: attachment\n\n")},
		{"2.1 inside the embedded message", SectionSpec{Path: []int{2, 1}}, "caf=E9 inside"},
		{"2.2.MIME", SectionSpec{Path: []int{2, 2}, Specifier: "MIME"}, crlf("Content-Type: image/png\nContent-Transfer-Encoding: base64\n\n")},
		{"missing part", SectionSpec{Path: []int{9}}, ""},
		{"missing deep part", SectionSpec{Path: []int{1, 1, 1, 1}}, ""},
		{"part zero", SectionSpec{Path: []int{0}}, ""},
		{"HEADER of a non-message part", SectionSpec{Path: []int{1, 1}, Specifier: "HEADER"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Section(bytes.NewReader(msg), root, tt.spec)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("got\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}

func TestSectionSinglePart(t *testing.T) {
	msg := loadMessage(t, "simple.eml", true)
	root := mustParse(t, msg)
	body := "Hello Joe, do you think we can meet at 3:30 tomorrow?\r\n"
	for _, spec := range []SectionSpec{{Specifier: "TEXT"}, {Path: []int{1}}} {
		got, err := Section(bytes.NewReader(msg), root, spec)
		if err != nil || string(got) != body {
			t.Errorf("%+v: %q, %v", spec, got, err)
		}
	}
	if got, _ := Section(bytes.NewReader(msg), root, SectionSpec{Path: []int{2}}); len(got) != 0 {
		t.Errorf("part 2 of a single-part message: %q", got)
	}
	_, err := Section(bytes.NewReader(msg), root, SectionSpec{Specifier: "BOGUS"})
	if !errors.Is(err, ErrBadSpecifier) {
		t.Errorf("bogus specifier: %v", err)
	}
}

func TestHeaderFieldsContinuationAndLF(t *testing.T) {
	msg := []byte("Subject: one\n two\nX-A: 1\nsubject: again\nno colon line\n\nbody\n")
	root := mustParse(t, msg)
	got, err := Section(bytes.NewReader(msg), root, SectionSpec{Specifier: "HEADER.FIELDS", Fields: []string{"SUBJECT"}})
	if err != nil {
		t.Fatal(err)
	}
	if want := "Subject: one\n two\nsubject: again\n\n"; string(got) != want {
		t.Errorf("got %q, want %q", got, want)
	}
	h := root.Header
	if h.Get("subject") != "one two" || strings.Join(h.Values("Subject"), "|") != "one two|again" || len(h.Fields()) != 3 {
		t.Errorf("header %+v", h.Fields())
	}
	h2, err := ParseHeader(bytes.NewReader(msg), root.HeaderStart, root.BodyStart)
	if err != nil || h2.Get("X-A") != "1" || h2.Fields()[0].Raw != "Subject: one\n two\n" {
		t.Errorf("ParseHeader: %+v, %v", h2.Fields(), err)
	}
}
