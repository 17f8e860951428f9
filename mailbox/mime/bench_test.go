package mime

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"
)

// typicalMessage is a 50 KiB multipart/mixed message shaped like everyday
// mail: a header with the usual fields, a multipart/alternative text and
// HTML body, and a base64 PDF attachment.
func typicalMessage() []byte {
	var b strings.Builder
	b.WriteString("Return-Path: <alice@example.org>\r\nReceived: from mx.example.org (mx.example.org [192.0.2.1])\r\n\tby mail.example.com with ESMTPS id 4Xyz; Tue, 1 Jul 2024 10:52:37 +0200\r\n")
	b.WriteString("From: =?UTF-8?Q?Alice_M=C3=BCller?= <alice@example.org>\r\nTo: Bob <bob@example.com>, carol@example.net\r\nCc: team: dave@example.com, eve@example.com;\r\n")
	b.WriteString("Subject: =?UTF-8?B?UXVhcnRlcmx5IHJlcG9ydCDigJMgZmluYWw=?=\r\nDate: Tue, 1 Jul 2024 10:52:37 +0200\r\nMessage-ID: <report-1@example.org>\r\nMIME-Version: 1.0\r\n")
	b.WriteString("Content-Type: multipart/mixed; boundary=\"----=_Part_1\"\r\n\r\n")
	b.WriteString("------=_Part_1\r\nContent-Type: multipart/alternative; boundary=\"----=_Part_2\"\r\n\r\n")
	b.WriteString("------=_Part_2\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n")
	for i := 0; i < 40; i++ {
		b.WriteString("Here is the quarterly report, line " + fmt.Sprint(i) + ", with caf=C3=A9 and more text.\r\n")
	}
	b.WriteString("------=_Part_2\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n")
	for i := 0; i < 40; i++ {
		b.WriteString("<p>Here is the quarterly report, line " + fmt.Sprint(i) + ", with caf=C3=A9.</p>\r\n")
	}
	b.WriteString("------=_Part_2--\r\n\r\n------=_Part_1\r\nContent-Type: application/pdf; name=\"report.pdf\"\r\nContent-Disposition: attachment; filename=\"report.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	raw := bytes.Repeat([]byte("%PDF-1.4 binary-ish content \x00\x01\x02"), 1100)
	enc := base64.StdEncoding.EncodeToString(raw)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n------=_Part_1--\r\n")
	return []byte(b.String())
}

func BenchmarkParse(b *testing.B) {
	msg := typicalMessage()
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(bytes.NewReader(msg), int64(len(msg))); err != nil {
			b.Fatal(err)
		}
	}
}

func TestTypicalMessage(t *testing.T) {
	msg := typicalMessage()
	if n := len(msg); n < 45<<10 || n > 55<<10 {
		t.Fatalf("typical message is %d bytes, want about 50 KiB", n)
	}
	p := mustParse(t, msg)
	checkOffsets(t, p, 0, int64(len(msg)))
	want := "(((text/plain charset=utf-8 QUOTED-PRINTABLE 2788 39)(text/html charset=utf-8 QUOTED-PRINTABLE 2508 39) alternative)(application/pdf name=report.pdf BASE64 46664) mixed)"
	if got := structure(p); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if got := addrs(p.Envelope.Cc); got != `[group "team"]["" "" "dave" "example.com"]["" "" "eve" "example.com"][group ""]` {
		t.Errorf("Cc %s", got)
	}
	if got := DecodeHeaderValue(p.Envelope.Subject); got != "Quarterly report – final" {
		t.Errorf("subject %q", got)
	}
	if got := addrs(p.Envelope.From); got != `["Alice Müller" "" "alice" "example.org"]` {
		t.Errorf("From %s", got)
	}
}

// TestPathologicalHeaders checks that headers built to trigger quadratic
// behaviour are handled in linear time.
func TestPathologicalHeaders(t *testing.T) {
	for _, value := range []string{
		strings.Repeat("=?", 200000),
		strings.Repeat("=?utf-8?q?", 50000),
		strings.Repeat("@:", 200000),
		strings.Repeat(" ", 400000) + "=?utf-8?q?x?=",
		strings.Repeat("(", 200000),
		strings.Repeat("<", 200000),
		strings.Repeat("a;", 200000),
	} {
		msg := []byte("From: " + value + "\r\nTo: " + value + "\r\nSubject: " + value + "\r\nContent-Type: text/plain; " + value + "\r\n\r\nbody")
		start := time.Now()
		p := mustParse(t, msg)
		_ = DecodeHeaderValue(p.Envelope.Subject)
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("header %.10q...: %v", value, d)
		}
	}
}
