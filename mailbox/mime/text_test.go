package mime

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestText(t *testing.T) {
	tests := []struct {
		file string
		want string
	}{
		{"alternative.eml", "Café menu: soup and bread.\n<p>Café menu</p>"},
		{"nested.eml", "plain part\n<b>html part</b>\ncafé inside"},
		{"mixed.eml", "See attached.\nRegards"},
	}
	for _, tt := range tests {
		msg := loadMessage(t, tt.file, true)
		got, err := mustParse(t, msg).Text(bytes.NewReader(msg))
		if err != nil {
			t.Fatal(err)
		}
		got = strings.ReplaceAll(got, "\r\n", "\n")
		if got != tt.want {
			t.Errorf("%s: Text = %q, want %q", tt.file, got, tt.want)
		}
	}
}

func TestTextEncodings(t *testing.T) {
	tests := []struct{ name, msg, want string }{
		{"base64 utf-8", "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\nw6l0w6k=\r\n", "été"},
		{"base64 with junk", "Content-Transfer-Encoding: base64\r\n\r\naGVs\r\n!!bG8=\r\n", "hello"},
		{"qp bad escape", "Content-Transfer-Encoding: quoted-printable\r\n\r\na=ZZb=3D=\r\nc", "a=ZZb=c"},
		{"windows-1252", "Content-Type: text/plain; charset=windows-1252\r\n\r\n\x93quoted\x94", "\u201cquoted\u201d"},
		{"unknown charset passes through", "Content-Type: text/plain; charset=x-martian\r\n\r\nabc\xff", "abc\xff"},
		{"non-text skipped", "Content-Type: image/gif\r\n\r\nGIF89a", ""},
	}
	for _, tt := range tests {
		got, err := mustParse(t, []byte(tt.msg)).Text(strings.NewReader(tt.msg))
		if err != nil || got != tt.want {
			t.Errorf("%s: %q, %v; want %q", tt.name, got, err, tt.want)
		}
	}
}

func TestTextBounded(t *testing.T) {
	msg := []byte("\r\n" + strings.Repeat("0123456789abcdef", (MaxText/16)+100))
	got, err := mustParse(t, msg).Text(bytes.NewReader(msg))
	if err != nil || len(got) != MaxText {
		t.Fatalf("len %d, %v", len(got), err)
	}
}

func TestParseDate(t *testing.T) {
	utc := time.UTC
	tests := []struct {
		in   string
		want time.Time
		ok   bool
	}{
		{"Mon, 7 Feb 1994 21:52:25 -0800 (PST)", time.Date(1994, 2, 8, 5, 52, 25, 0, utc), true},
		{"7 Feb 1994 21:52 -0800", time.Date(1994, 2, 8, 5, 52, 0, 0, utc), true},
		{"Tue, 1 Jul 03 10:52:37 +0200", time.Date(2003, 7, 1, 8, 52, 37, 0, utc), true},
		{"1 Jul 99 10:52:37 GMT", time.Date(1999, 7, 1, 10, 52, 37, 0, utc), true},
		{"1 Jul 103 10:52:37 EDT", time.Date(2003, 7, 1, 14, 52, 37, 0, utc), true},
		{"Thu, 13 Feb 2020 10:00:00 Z", time.Date(2020, 2, 13, 10, 0, 0, 0, utc), true},
		{"Wed Jun 12 12:00:00 2024", time.Date(2024, 6, 12, 12, 0, 0, 0, utc), true}, // asctime
		{"12 June 2024 12.30.00 +0000", time.Date(2024, 6, 12, 12, 30, 0, 0, utc), true},
		{"13 Feb 2020", time.Date(2020, 2, 13, 0, 0, 0, 0, utc), true},
		{"31 Feb 2020 10:00 +0000", time.Time{}, false},
		{"yesterday", time.Time{}, false},
		{"", time.Time{}, false},
		{"99 99 99:99", time.Time{}, false},
	}
	for _, tt := range tests {
		got, ok := ParseDate(tt.in)
		if ok != tt.ok || (ok && !got.Equal(tt.want)) {
			t.Errorf("ParseDate(%q) = %v, %v; want %v, %v", tt.in, got.UTC(), ok, tt.want, tt.ok)
		}
	}
}
