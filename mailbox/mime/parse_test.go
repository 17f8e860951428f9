package mime

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestParseStructure(t *testing.T) {
	tests := []struct {
		file     string
		crlf, lf string // expected structure() for each line-ending form
	}{
		{"simple.eml",
			"(text/plain CHARSET=US-ASCII 7BIT 55 1)",
			"(text/plain CHARSET=US-ASCII 7BIT 54 1)"},
		{"alternative.eml",
			"((text/plain charset=utf-8 QUOTED-PRINTABLE 34 1)(text/html charset=iso-8859-1 8BIT 16 0) alternative)",
			"((text/plain charset=utf-8 QUOTED-PRINTABLE 33 1)(text/html charset=iso-8859-1 8BIT 16 0) alternative)"},
		{"mixed.eml",
			"((text/plain charset=us-ascii 7BIT 22 1)(application/pdf name=Résumé 2024.pdf BASE64 28) mixed)",
			"((text/plain charset=us-ascii 7BIT 21 1)(application/pdf name=Résumé 2024.pdf BASE64 28) mixed)"},
		{"nested.eml",
			`(((text/plain charset=us-ascii 7BIT 10 0)(text/html charset=us-ascii 7BIT 16 0) alternative)(message/rfc822 7BIT 376 env:"=?iso-8859-1?q?embedded_message_=E9?=" ((text/plain charset=iso-8859-1 QUOTED-PRINTABLE 13 0)(image/png BASE64 12) mixed) 16) mixed)`,
			`(((text/plain charset=us-ascii 7BIT 10 0)(text/html charset=us-ascii 7BIT 16 0) alternative)(message/rfc822 7BIT 360 env:"=?iso-8859-1?q?embedded_message_=E9?=" ((text/plain charset=iso-8859-1 QUOTED-PRINTABLE 13 0)(image/png BASE64 12) mixed) 16) mixed)`},
		// Missing close delimiter; a part header line without a colon.
		{"broken.eml",
			"((text/plain charset=us-ascii 7BIT 10 0)(text/plain charset=us-ascii 7BIT 25 1) mixed)",
			"((text/plain charset=us-ascii 7BIT 10 0)(text/plain charset=us-ascii 7BIT 24 1) mixed)"},
		// multipart/digest: a part without Content-Type is message/rfc822.
		{"digest.eml",
			`((message/rfc822 7BIT 52 env:"digest child" (text/plain charset=us-ascii 7BIT 8 0) 3)(text/plain charset=us-ascii 7BIT 15 0) digest)`,
			`((message/rfc822 7BIT 49 env:"digest child" (text/plain charset=us-ascii 7BIT 8 0) 3)(text/plain charset=us-ascii 7BIT 15 0) digest)`},
	}
	for _, tt := range tests {
		for _, crlf := range []bool{true, false} {
			want := tt.lf
			if crlf {
				want = tt.crlf
			}
			t.Run(fmt.Sprintf("%s/crlf=%v", tt.file, crlf), func(t *testing.T) {
				msg := loadMessage(t, tt.file, crlf)
				p := mustParse(t, msg)
				checkOffsets(t, p, 0, int64(len(msg)))
				if got := structure(p); got != want {
					t.Errorf("structure\n got %s\nwant %s", got, want)
				}
			})
		}
	}
}

// TestRFC3501Example builds a message shaped like the BODYSTRUCTURE example
// of RFC 3501 section 7.4.2 and checks every field of that example:
//
//	(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 1152 23)
//	 ("TEXT" "PLAIN" ("CHARSET" "US-ASCII" "NAME" "cc.diff")
//	  "<960723163407.20117h@cac.washington.edu>" "Compiler diff" "BASE64" 4554 73) "MIXED")
func TestRFC3501Example(t *testing.T) {
	lines := func(n, width, last int) string {
		var b strings.Builder
		for i := 0; i < n; i++ {
			b.WriteString(strings.Repeat("a", width) + "\r\n")
		}
		b.WriteString(strings.Repeat("b", last)) // its CRLF belongs to the boundary
		return b.String()
	}
	body1 := lines(23, 46, 48) // 23*48 + 48 = 1152 octets, 23 LFs
	body2 := lines(73, 60, 28) // 73*62 + 28 = 4554 octets, 73 LFs
	msg := "From: a@example.org\r\nContent-Type: MULTIPART/MIXED; BOUNDARY=\"x\"\r\n\r\n" +
		"--x\r\nContent-Type: text/plain; charset=US-ASCII\r\n\r\n" + body1 + "\r\n" +
		"--x\r\nContent-Type: TEXT/PLAIN; CHARSET=US-ASCII; NAME=cc.diff\r\n" +
		"Content-ID: <960723163407.20117h@cac.washington.edu>\r\n" +
		"Content-Description: Compiler diff\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
		body2 + "\r\n--x--\r\n"
	p := mustParse(t, []byte(msg))
	if p.Type != "multipart" || p.Subtype != "mixed" || len(p.Children) != 2 {
		t.Fatalf("root %s/%s with %d children", p.Type, p.Subtype, len(p.Children))
	}
	c1, c2 := p.Children[0], p.Children[1]
	if c1.Type != "text" || c1.Subtype != "plain" || c1.Encoding != "7BIT" || c1.Size != 1152 || c1.Lines != 23 ||
		c1.ID != "" || c1.Description != "" || len(c1.Params) != 1 || !strings.EqualFold(c1.Params[0].Value, "us-ascii") {
		t.Errorf("part 1: %+v", *c1)
	}
	if c2.Encoding != "BASE64" || c2.Size != 4554 || c2.Lines != 73 ||
		c2.ID != "<960723163407.20117h@cac.washington.edu>" || c2.Description != "Compiler diff" ||
		len(c2.Params) != 2 || c2.Params[1].Name != "NAME" || c2.Params[1].Value != "cc.diff" {
		t.Errorf("part 2: %+v", *c2)
	}
}

func TestContentFields(t *testing.T) {
	msg := loadMessage(t, "mixed.eml", true)
	att := mustParse(t, msg).Children[1]
	checks := []struct{ name, got, want string }{
		{"ID", att.ID, "<att1@example.net>"},
		{"Description", att.Description, "the report"},
		{"MD5", att.MD5, "Q2hlY2sgSW50ZWdyaXR5IQ=="},
		{"Location", att.Location, "http://example.net/r.pdf"},
		{"Disposition", att.Disposition, "attachment"},
		{"Language", strings.Join(att.Language, "|"), "fr|en-GB"},
		{"DispParams", fmt.Sprint(att.DispParams), "[{filename résumé.pdf} {size 16}]"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
}

func TestParseDefaults(t *testing.T) {
	tests := []struct {
		name, msg, want string
	}{
		{"no content-type", "Subject: x\r\n\r\nhi\r\n", "(text/plain charset=us-ascii 7BIT 4 1)"},
		{"unparseable content-type", "Content-Type: garbage\r\n\r\nhi", "(text/plain charset=us-ascii 7BIT 2 0)"},
		{"no blank line after header", "Subject: x\r\nFrom: y@z\r\n", "(text/plain charset=us-ascii 7BIT 0 0)"},
		{"empty message", "", "(text/plain charset=us-ascii 7BIT 0 0)"},
		{"only body", "\r\nbody\r\n", "(text/plain charset=us-ascii 7BIT 6 1)"},
		{"multipart without boundary", "Content-Type: multipart/mixed\r\n\r\n--x\r\n\r\nhi\r\n", "(text/plain charset=us-ascii 7BIT 11 3)"},
		{"boundary never found", "Content-Type: multipart/mixed; boundary=q\r\n\r\nno parts here\r\n", "(text/plain charset=us-ascii 7BIT 15 1)"},
		{"transport padding after boundary", "Content-Type: multipart/mixed; boundary=q\r\n\r\n--q  \t\r\n\r\na\r\n--q-- \r\n", "((text/plain charset=us-ascii 7BIT 1 0) mixed)"},
		{"empty part", "Content-Type: multipart/mixed; boundary=q\r\n\r\n--q\r\n\r\n--q--\r\n", "((text/plain charset=us-ascii 7BIT 0 0) mixed)"},
		{"part header cut by boundary", "Content-Type: multipart/mixed; boundary=q\r\n\r\n--q\r\nContent-Type: text/html\r\n--q--\r\n", "((text/html charset=us-ascii 7BIT 0 0) mixed)"},
		{"base64 message/rfc822 is opaque", "Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\nU3ViamVjdDogeAoK\r\n", "(message/rfc822 BASE64 18)"},
		{"upper-case type and encoding", "Content-Type: Text/HTML\r\nContent-Transfer-Encoding: Quoted-Printable (comment)\r\n\r\nx", "(text/html charset=us-ascii QUOTED-PRINTABLE 1 0)"},
		{"NUL and 8-bit junk", "Subject: \x00\xff\r\nContent-Type: text/plain; charset=\"\xfe\"\r\n\r\n\x00\x80\r\n", "(text/plain charset=\xfe 7BIT 4 1)"},
		{"last line without newline", "\r\na\r\nb", "(text/plain charset=us-ascii 7BIT 4 1)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustParse(t, []byte(tt.msg))
			checkOffsets(t, p, 0, int64(len(tt.msg)))
			if got := structure(p); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func TestParseLimits(t *testing.T) {
	t.Run("nesting", func(t *testing.T) {
		var b strings.Builder
		for i := 0; i < 200; i++ {
			fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n", i, i)
		}
		b.WriteString("\r\ndeep\r\n")
		msg := []byte(b.String())
		p := mustParse(t, msg)
		checkOffsets(t, p, 0, int64(len(msg)))
		depth := 0
		for cur := p; len(cur.Children) > 0; cur = cur.Children[0] {
			depth++
		}
		if depth != MaxDepth {
			t.Errorf("depth %d, want %d", depth, MaxDepth)
		}
	})
	t.Run("nested messages", func(t *testing.T) {
		msg := []byte(strings.Repeat("Content-Type: message/rfc822\r\n\r\n", 500) + "hi\r\n")
		p := mustParse(t, msg)
		checkOffsets(t, p, 0, int64(len(msg)))
		depth := 0
		cur := p
		for ; cur.Message != nil; cur = cur.Message {
			depth++
		}
		if depth != MaxDepth || !cur.Truncated {
			t.Errorf("depth %d (truncated %v), want %d", depth, cur.Truncated, MaxDepth)
		}
	})
	t.Run("parts", func(t *testing.T) {
		var b strings.Builder
		b.WriteString("Content-Type: multipart/mixed; boundary=q\r\n\r\n")
		for i := 0; i < MaxParts+50; i++ {
			b.WriteString("--q\r\n\r\nx\r\n")
		}
		b.WriteString("--q--\r\n")
		msg := []byte(b.String())
		p := mustParse(t, msg)
		checkOffsets(t, p, 0, int64(len(msg)))
		if n := len(p.Children); n != MaxParts {
			t.Errorf("%d children, want %d", n, MaxParts)
		}
		if last := p.Children[len(p.Children)-1]; !last.Truncated || last.End != p.End {
			t.Errorf("last child %+v", *last)
		}
	})
	t.Run("huge line", func(t *testing.T) {
		msg := []byte("Subject: " + strings.Repeat("x", 300<<10) + "\r\nContent-Type: text/html\r\n\r\n" + strings.Repeat("y", 200<<10))
		p := mustParse(t, msg)
		checkOffsets(t, p, 0, int64(len(msg)))
		if p.Subtype != "html" || p.Size != 200<<10 {
			t.Errorf("got %s size %d", structure(p), p.Size)
		}
	})
}

// failingReaderAt serves the first n bytes of msg and then fails, as a
// file on a vanished disk would.
type failingReaderAt struct {
	msg []byte
	n   int64
}

var errDiskGone = errors.New("disk gone")

func (f failingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > f.n {
		return 0, errDiskGone
	}
	return copy(p, f.msg[off:]), nil
}

func TestIOErrors(t *testing.T) {
	msg := loadMessage(t, "nested.eml", true)
	if _, err := Parse(failingReaderAt{msg, 0}, int64(len(msg))); !errors.Is(err, errDiskGone) {
		t.Errorf("Parse: %v", err)
	}
	root := mustParse(t, msg)
	broken := failingReaderAt{msg, 10}
	if _, err := Section(broken, root, SectionSpec{Specifier: "TEXT"}); !errors.Is(err, errDiskGone) {
		t.Errorf("Section: %v", err)
	}
	if _, err := root.Text(broken); !errors.Is(err, errDiskGone) {
		t.Errorf("Text: %v", err)
	}
	if _, err := ParseHeader(broken, root.HeaderStart, root.BodyStart); !errors.Is(err, errDiskGone) {
		t.Errorf("ParseHeader: %v", err)
	}
}
