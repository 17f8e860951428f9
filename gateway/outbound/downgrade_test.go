package outbound

import (
	"bytes"
	"encoding/base64"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"strings"
	"testing"
)

// converted runs sevenBit on s and returns the result as a string.
func converted(t *testing.T, s string) (string, bool) {
	t.Helper()
	out, changed, err := sevenBit(message(s), false)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, out.Size())
	out.ReadAt(b, 0)
	return string(b), changed
}

// decodePart reads a part's body the way a receiving client would, with
// the standard library (not the parser sevenBit uses).
func decodePart(t *testing.T, cte string, body io.Reader) string {
	t.Helper()
	switch strings.ToLower(strings.TrimSpace(cte)) {
	case "quoted-printable":
		body = quotedprintable.NewReader(body)
	case "base64":
		body = base64.NewDecoder(base64.StdEncoding, body)
	}
	b, err := io.ReadAll(body)
	if err != nil {
		t.Fatalf("decoding %s: %v", cte, err)
	}
	return string(b)
}

func no8bit(t *testing.T, s string) {
	t.Helper()
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			t.Fatalf("8-bit byte left at %d: %q", i, s[max(0, i-30):min(len(s), i+30)])
		}
	}
}

func TestSevenBitLeavesSevenBitMessages(t *testing.T) {
	msg := message("Subject: plain\r\nMIME-Version: 1.0\r\nContent-Transfer-Encoding: 8bit\r\n\r\nascii only\r\n")
	out, changed, err := sevenBit(msg, false)
	if err != nil || changed || out != msg {
		t.Fatalf("7-bit message: changed %v, err %v", changed, err)
	}
}

func TestSevenBitSinglePart(t *testing.T) {
	body := "Grüße aus Köln,\r\nça va ?   \r\n=3D and a line of 100 é: " + strings.Repeat("é", 100) + "\r\n"
	got, changed := converted(t, "Subject: hi\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\nX-After: kept\r\n\r\n"+body)
	if !changed {
		t.Fatal("not converted")
	}
	no8bit(t, got)
	m, err := mail.ReadMessage(strings.NewReader(got))
	if err != nil {
		t.Fatal(err)
	}
	if cte := m.Header["Content-Transfer-Encoding"]; len(cte) != 1 || cte[0] != "quoted-printable" {
		t.Fatalf("Content-Transfer-Encoding: %q", cte)
	}
	if m.Header.Get("X-After") != "kept" || m.Header.Get("Subject") != "hi" {
		t.Fatalf("other fields lost:\n%s", got)
	}
	if dec := decodePart(t, "quoted-printable", m.Body); dec != body {
		t.Fatalf("decoded body %q, want %q", dec, body)
	}
	for _, line := range strings.Split(got, "\r\n") {
		if len(line) > 76 {
			t.Fatalf("line of %d characters: %q", len(line), line)
		}
	}
}

func TestSevenBitMultipartTouchesOnlyEightBitParts(t *testing.T) {
	b64 := "SGVsbG8gYmluYXJ5IHdvcmxk\r\n"
	html := "<p>plain ascii html</p>\r\n"
	text := "Straße\r\n"
	inner := "Hällo inner\r\n"
	msg := "From: a@x.test\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" +
		"preamble\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + text +
		"--b1\r\nContent-Type: text/html\r\n\r\n" + html +
		"--b1\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64 +
		"--b1\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" +
		"Subject: inner\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + inner +
		"--b1--\r\nepilogue\r\n"
	got, changed := converted(t, msg)
	if !changed {
		t.Fatal("not converted")
	}
	no8bit(t, got)
	// The parts without 8-bit bytes keep theirs.
	for _, kept := range []string{"\r\n\r\n" + html, "Content-Transfer-Encoding: base64\r\n\r\n" + b64, "preamble\r\n--b1\r\n", "--b1--\r\nepilogue\r\n"} {
		if !strings.Contains(got, kept) {
			t.Errorf("bytes not kept: %q", kept)
		}
	}
	m, err := mail.ReadMessage(strings.NewReader(got))
	if err != nil {
		t.Fatal(err)
	}
	if cte := m.Header.Get("Content-Transfer-Encoding"); cte != "7bit" {
		t.Errorf("top level now %q, want 7bit", cte)
	}
	_, params, _ := mime.ParseMediaType(m.Header.Get("Content-Type"))
	mr := multipart.NewReader(m.Body, params["boundary"])
	// A part's body ends before the line break that precedes a boundary.
	want := []string{strings.TrimSuffix(text, "\r\n"), strings.TrimSuffix(html, "\r\n"), "Hello binary world", ""}
	for i := 0; ; i++ {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			if i != len(want) {
				t.Fatalf("%d parts, want %d", i, len(want))
			}
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		cte := p.Header.Get("Content-Transfer-Encoding")
		if i == 3 { // the embedded message: declared 7bit now, its body converted
			if cte != "7bit" {
				t.Errorf("message/rfc822 part: %q", cte)
			}
			im, err := mail.ReadMessage(p)
			if err != nil {
				t.Fatal(err)
			}
			if dec := decodePart(t, im.Header.Get("Content-Transfer-Encoding"), im.Body); dec != strings.TrimSuffix(inner, "\r\n") {
				t.Errorf("embedded message: %q", dec)
			}
			continue
		}
		if got := decodePart(t, cte, p); got != want[i] {
			t.Errorf("part %d (%s): %q, want %q", i+1, cte, got, want[i])
		}
	}
}

// Binary parts (BODY=BINARYMIME) go as base64 to every peer, since the
// client sends with DATA; for an 8BITMIME peer the 8-bit text stays and
// the container is declared 8bit, for one without it all is 7-bit.
func TestSevenBitBinaryParts(t *testing.T) {
	blob := "\x00\x01bare\rCR\nLF\xff\xfe" + strings.Repeat("x", 1200) + "\r\n.\r\nend"
	text := "Grüße"
	msg := "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=zz\r\nContent-Transfer-Encoding: binary\r\n\r\n" +
		"--zz\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + text + "\r\n" +
		"--zz\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n" + blob + "\r\n--zz--\r\n"
	for _, peer8bit := range []bool{true, false} {
		out, changed, err := sevenBit(message(msg), peer8bit)
		if err != nil || !changed {
			t.Fatalf("peer8bit %v: changed %v, %v", peer8bit, changed, err)
		}
		b := make([]byte, out.Size())
		out.ReadAt(b, 0)
		got := string(b)
		m, err := mail.ReadMessage(strings.NewReader(got))
		if err != nil {
			t.Fatal(err)
		}
		wantTop, wantText := "8bit", "8bit"
		if !peer8bit {
			wantTop, wantText = "7bit", "quoted-printable"
			no8bit(t, got)
		}
		if cte := m.Header.Get("Content-Transfer-Encoding"); cte != wantTop {
			t.Errorf("peer8bit %v: top level %q, want %q", peer8bit, cte, wantTop)
		}
		for _, line := range strings.Split(got, "\r\n") {
			if len(line) > 998 || strings.ContainsAny(line, "\r\n\x00") {
				t.Fatalf("peer8bit %v: not a line: %q", peer8bit, line)
			}
		}
		_, params, _ := mime.ParseMediaType(m.Header.Get("Content-Type"))
		mr := multipart.NewReader(m.Body, params["boundary"])
		p, err := mr.NextRawPart()
		if err != nil {
			t.Fatal(err)
		}
		if cte := p.Header.Get("Content-Transfer-Encoding"); cte != wantText || decodePart(t, cte, p) != text {
			t.Errorf("peer8bit %v: text part %q", peer8bit, cte)
		}
		if p, err = mr.NextRawPart(); err != nil {
			t.Fatal(err)
		}
		if cte := p.Header.Get("Content-Transfer-Encoding"); cte != "base64" || decodePart(t, cte, p) != blob {
			t.Errorf("peer8bit %v: binary part %q", peer8bit, cte)
		}
	}
	// Without binary parts an 8BITMIME peer gets the message as it is.
	eight := "MIME-Version: 1.0\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGrüße\r\n"
	if _, changed, _ := sevenBit(message(eight), true); changed {
		t.Error("an 8-bit message was changed for an 8BITMIME peer")
	}
}

// A message without MIME-Version gets MIME's three fields; its charset is
// utf-8 when the body is UTF-8, else unknown-8bit.
func TestSevenBitUnlabelledText(t *testing.T) {
	for _, tc := range []struct{ body, charset string }{
		{"Grüße\n", "utf-8"},
		{"Gr\xfc\xdfe\n", "unknown-8bit"},
	} {
		got, changed := converted(t, "Subject: cron\nFrom: root@x.test\n\n"+tc.body)
		if !changed {
			t.Fatal("not converted")
		}
		no8bit(t, got)
		m, err := mail.ReadMessage(strings.NewReader(got))
		if err != nil {
			t.Fatal(err)
		}
		mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
		if m.Header.Get("MIME-Version") != "1.0" || err != nil || mt != "text/plain" || params["charset"] != tc.charset {
			t.Fatalf("header:\n%s", got)
		}
		if dec := decodePart(t, m.Header.Get("Content-Transfer-Encoding"), m.Body); strings.ReplaceAll(dec, "\r\n", "\n") != tc.body {
			t.Fatalf("decoded %q, want %q", dec, tc.body)
		}
	}
}

// What cannot be converted is left alone: 8-bit header fields, damaged
// base64, an embedded message declared 8bit whose header is 8-bit.
func TestSevenBitLeavesWhatItCannotFix(t *testing.T) {
	got, changed := converted(t, "Subject: Grüße\r\nMIME-Version: 1.0\r\n\r\nGrüße\r\n")
	if !changed || !strings.HasPrefix(got, "Subject: Grüße\r\n") || !strings.Contains(got, "Gr=C3=BC=C3=9Fe") {
		t.Fatalf("8-bit header: %q", got)
	}
	msg := "MIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAA\xff\r\n"
	if got, changed := converted(t, msg); changed || got != msg {
		t.Fatalf("damaged base64 changed: %q", got)
	}
	msg = "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\nContent-Transfer-Encoding: 8bit\r\n\r\n--b\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: 8bit\r\n\r\nSubject: Ä\r\n\r\nbody Ä\r\n--b--\r\n"
	got, _ = converted(t, msg)
	if strings.Count(got, "Content-Transfer-Encoding: 8bit") != 2 || !strings.Contains(got, "body =C3=84") {
		t.Fatalf("8-bit embedded header: the containers must stay 8bit, the body converted:\n%s", got)
	}
}

// End to end: a peer without 8BITMIME gets quoted-printable, one with it
// gets the message as it is.
func TestEightBitMIMEPeer(t *testing.T) {
	checkGoroutines(t)
	body := "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nnaïve café\r\n"
	for _, offer := range []bool{false, true} {
		var rec recorder
		ext := "PIPELINING"
		if offer {
			ext = "8BITMIME"
		}
		srv := startScripted(t, "127.0.0.2", 0, recordingPeer(&rec, "250 "+ext))
		c := newTestClient(t, "127.0.0.1:1", srv.port(), func(o *Options) { o.Routes = mustRoutes(t, "*: [127.0.0.2]") })
		e := env("a@sender.test")
		e.Body8Bit = true
		wantDelivered(t, deliver(t, c, e, rcpts("b@x.test"), body)[0])
		mailCmd, got := rec.last()
		if offer {
			if got != body || !strings.Contains(mailCmd, "BODY=8BITMIME") {
				t.Errorf("8BITMIME peer got %q after %q", got, mailCmd)
			}
			// A message taken with BODY=BINARYMIME: its binary part
			// goes as base64 even to an 8BITMIME peer.
			bin := "MIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n\x00\xffbare\rcr"
			wantDelivered(t, deliver(t, c, e, rcpts("b@x.test"), bin)[0])
			if _, got = rec.last(); !strings.Contains(got, "Content-Transfer-Encoding: base64\r\n\r\nAP9iYXJlDWNy\r\n") {
				t.Errorf("binary message reached the 8BITMIME peer as %q", got)
			}
		} else {
			if !strings.Contains(got, "Content-Transfer-Encoding: quoted-printable\r\n") || !strings.Contains(got, "na=C3=AFve caf=C3=A9") || bytes.ContainsFunc([]byte(got), func(r rune) bool { return r >= 0x80 }) || strings.Contains(mailCmd, "BODY=") {
				t.Errorf("7-bit peer got %q after %q", got, mailCmd)
			}
		}
	}
}
