package imap

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	imap "github.com/emersion/go-imap/v2"
)

// binaryMessage has a base64 text part with bare LFs, a quoted-printable
// part, a base64 attachment holding NULs, and a part in an encoding no one
// can undo.
var binaryAttachment = []byte("\x00\x01\x02PDF\x00\r\n\xff")

func binaryMessage() []byte {
	return []byte("From: a@example.org\r\nSubject: binary\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
		base64.StdEncoding.EncodeToString([]byte("line one\nline two\n")) + "\r\n" +
		"--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" +
		"caf=C3=A9 =3D ok\r\n" +
		"--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
		base64.StdEncoding.EncodeToString(binaryAttachment) + "\r\n" +
		"--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\n" +
		"begin 644 x\r\n`\r\nend\r\n" +
		"--b--\r\n")
}

func TestBinaryWithGoIMAPClient(t *testing.T) {
	env := newTestEnv(t, nil)
	c := env.dialClient("alice", "secret", nil)
	if !c.Caps().Has(imap.CapBinary) {
		t.Fatalf("BINARY not advertised: %v", c.Caps())
	}
	msg := binaryMessage()
	appendMessage(t, c, "INBOX", msg, nil)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	sections := []*imap.FetchItemBinarySection{
		{Part: []int{1}, Peek: true},
		{Part: []int{2}, Peek: true},
		{Part: []int{3}, Peek: true},
		{Peek: true},
	}
	msgs, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{
		Flags:             true,
		BinarySection:     sections,
		BinarySectionSize: []*imap.FetchItemBinarySectionSize{{Part: []int{1}}, {Part: []int{3}}},
	}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 {
		t.Fatalf("%d messages", len(msgs))
	}
	m := msgs[0]
	// (Partial ranges are tested raw: go-imap cannot read the "<origin>"
	// RFC 3516 4.2 puts after BINARY[part] in the response.)
	want := []string{"line one\r\nline two\r\n", "café = ok", string(binaryAttachment), string(msg)}
	for i, s := range sections {
		if got := m.FindBinarySection(s); string(got) != want[i] {
			t.Errorf("BINARY[%v] (partial %v) = %q, want %q", s.Part, s.Partial, got, want[i])
		}
	}
	if n, ok := m.FindBinarySectionSize([]int{1}); !ok || n != uint32(len(want[0])) {
		t.Errorf("BINARY.SIZE[1] = %d %v, want %d", n, ok, len(want[0]))
	}
	if n, ok := m.FindBinarySectionSize([]int{3}); !ok || n != uint32(len(binaryAttachment)) {
		t.Errorf("BINARY.SIZE[3] = %d %v, want %d", n, ok, len(binaryAttachment))
	}
	if hasFlag(m.Flags, imap.FlagSeen) {
		t.Errorf("BINARY.PEEK set \\Seen: %v", m.Flags)
	}
	// Without PEEK, \Seen is set.
	msgs, err = c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{
		BinarySection: []*imap.FetchItemBinarySection{{Part: []int{2}}},
	}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	msgs, err = c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{Flags: true}).Collect()
	if err != nil || len(msgs) != 1 || !hasFlag(msgs[0].Flags, imap.FlagSeen) {
		t.Errorf("after BINARY[2]: %+v %v, want \\Seen", msgs, err)
	}
	// The part in an unknown encoding fails the FETCH.
	_, err = c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{
		BinarySection: []*imap.FetchItemBinarySection{{Part: []int{4}, Peek: true}},
	}).Collect()
	if err == nil || !strings.Contains(err.Error(), "UNKNOWN-CTE") {
		t.Errorf("BINARY[4] in x-uuencode: err = %v, want NO [UNKNOWN-CTE]", err)
	}
}

// TestBinaryLiteral8 appends with a literal8 and fetches the NULs back as
// a literal8, over a raw connection: go-imap cannot send literal8.
func TestBinaryLiteral8(t *testing.T) {
	env := newTestEnv(t, nil)
	r := env.login("alice", "secret")
	body := "Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n\x00\x01\x00end"
	r.send(fmt.Sprintf("a1 APPEND INBOX ~{%d}\r\n", len(body)))
	r.expect("+ ")
	r.send(body + "\r\n")
	r.expect("a1 OK [APPENDUID")
	r.send(fmt.Sprintf("a2 APPEND INBOX (\\Seen) \"01-Jan-2024 10:00:00 +0000\" ~{%d+}\r\n%s\r\n", len(body), body))
	r.expect("a2 OK [APPENDUID")
	r.send("a3 SELECT INBOX\r\n")
	r.until("a3 OK")
	r.send("a4 FETCH 1:2 (BINARY.PEEK[1] BINARY.SIZE[1] BINARY.PEEK[]<0.7>)\r\n")
	for seq := 1; seq <= 2; seq++ {
		line := r.expect(fmt.Sprintf("* %d FETCH (BINARY[1] ~{6}", seq))
		_ = line
		data := make([]byte, 6)
		if _, err := readFull(r, data); err != nil || string(data) != "\x00\x01\x00end" {
			t.Fatalf("BINARY[1] data %q %v", data, err)
		}
		rest := r.expect(" BINARY.SIZE[1] 6 BINARY[]<0> {7}")
		_ = rest
		r.expect("Content)")
	}
	r.expect("a4 OK")
	// Errors: section-binary has part numbers only; BINARY.SIZE takes no
	// partial range; literal8 only for APPEND's message.
	for _, tc := range []struct{ cmd, want string }{
		{"b1 FETCH 1 BINARY[HEADER]\r\n", "b1 BAD expected ']'"},
		{"b2 FETCH 1 BINARY.SIZE[1]<0.5>\r\n", "b2 BAD"},
		{"b3 FETCH 1 BINARY\r\n", "b3 BAD expected '[' after BINARY"},
		{"b4 FETCH 1 BINARY[0]\r\n", "b4 BAD invalid section part number"},
		{"b5 CREATE ~{3+}\r\nabc\r\n", "b5 BAD"},
		{"b6 FETCH 1 BINARY[1.]\r\n", "b6 BAD invalid section part number"},
	} {
		r.send(tc.cmd)
		r.expect(tc.want)
	}
	// NUL-free decoded data goes as an ordinary literal.
	r.send("c1 FETCH 1 BINARY.PEEK[1]<3.3>\r\n")
	r.expect("* 1 FETCH (BINARY[1]<3> {3}")
	r.expect("end)")
	r.expect("c1 OK")
	if !bytes.Contains([]byte(body), []byte("end")) {
		t.Fatal("test message changed")
	}
}

// readFull reads exactly len(p) bytes of literal data from a raw connection.
func readFull(r *rawConn, p []byte) (int, error) {
	n := 0
	for n < len(p) {
		m, err := r.br.Read(p[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
