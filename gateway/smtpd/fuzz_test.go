package smtpd

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzParseCommand runs a command line through everything that parses
// client input before a session sees it: the verb split, MAIL/RCPT paths and
// parameters, and BDAT arguments.
func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{
		"EHLO client.example.org",
		"MAIL FROM:<a@example.org> SIZE=100 BODY=8BITMIME",
		"MAIL FROM:<> RET=HDRS ENVID=QQ+2B1",
		"MAIL FROM: <@a,@b:user@d.example> SMTPUTF8",
		`RCPT TO:<"user@other"@example.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a+40b`,
		"RCPT TO:<postmaster>",
		"RCPT TO:<x@[IPv6:2001:db8::1]>",
		"BDAT 100 LAST",
		"XCLIENT ADDR=192.0.2.1 NAME=[UNAVAILABLE]",
		"MAIL FROM:<jörg@bücher.example> SMTPUTF8",
		"MAIL FROM:<a\"b@c>",
		"RCPT TO:<\"\\",
	} {
		f.Add(s)
	}
	o := DefaultOptions().withDefaults()
	f.Fuzz(func(t *testing.T, line string) {
		verb, arg, ok := parseCommand(line)
		if !ok {
			return
		}
		if verb != strings.ToUpper(verb) || len(verb) > maxVerb {
			t.Fatalf("verb %q", verb)
		}
		c := &conn{opt: &o}
		switch verb {
		case "MAIL", "RCPT":
			kw := "FROM"
			if verb == "RCPT" {
				kw = "TO"
			}
			inner, rest, err := splitPathArg(arg, kw)
			if err != nil {
				return
			}
			ps, err := parseParams(rest)
			if err == nil {
				if verb == "MAIL" {
					c.parseMailParams(ps)
				} else {
					c.parseRcptParams(ps)
				}
			}
			for _, utf8OK := range []bool{false, true} {
				addr, err := parsePath(inner, utf8OK, verb == "RCPT")
				if err != nil {
					continue
				}
				if len(addr) > maxPath || !utf8.ValidString(addr) {
					t.Fatalf("accepted %q", addr)
				}
				if !utf8OK && !isASCII(addr) {
					t.Fatalf("non-ASCII %q accepted without SMTPUTF8", addr)
				}
			}
		case "BDAT":
			if n, _, err := parseBDATArg(arg); err == nil && n < 0 {
				t.Fatalf("negative chunk %d", n)
			}
		case "XCLIENT":
			for _, f := range strings.Fields(arg) {
				_, v, _ := strings.Cut(f, "=")
				decodeXtext(v)
			}
		}
	})
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// FuzzParsePath checks the path parser's promises: no panic, limits held,
// and the source route is gone from what it returns.
func FuzzParsePath(f *testing.F) {
	for _, s := range []string{"a@b.example", "@r1,@r2:u@d.example", `"q\"p"@x.example`, "x@[1.2.3.4]", "x@[tag:abc]", "postmaster", "a@b.", "ü@ö.example"} {
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, inner string, utf8OK bool) {
		addr, err := parsePath(inner, utf8OK, true)
		if err != nil {
			var pe *pathError
			if !errors.As(err, &pe) {
				t.Fatalf("error of type %T", err)
			}
			return
		}
		if len(inner)+2 > maxPath || strings.HasPrefix(addr, "@") {
			t.Fatalf("accepted %q from %q", addr, inner)
		}
	})
}

// FuzzDataReader feeds raw DATA input to the dot reader. It must never
// panic or deliver more than the bound, and when it ends cleanly it ended
// at the first real CRLF.CRLF and its output, stuffed again, is the input.
func FuzzDataReader(f *testing.F) {
	for _, s := range []string{
		"a\r\n.\r\n",
		".\r\n",
		"..x\r\n.\r\n",
		"a\n.\nb\r\n.\r\n",
		"a\r.\rb\r\n.\r\n",
		"a\n.\r\nb\r\n.\r\n",
		"x\r\n.\r\r\n.\r\n",
		strings.Repeat("y", 300) + "\r\n.\r\n",
		"no end",
	} {
		f.Add([]byte(s), false, int64(100), 200)
	}
	f.Fuzz(func(t *testing.T, in []byte, normalize bool, maxSize int64, maxLine int) {
		if maxSize < 0 || maxSize > 1<<20 || maxLine < 0 || maxLine > 1<<16 {
			return
		}
		o := Options{MaxMessageSize: maxSize, MaxDataLineLength: maxLine}
		if normalize {
			o.BareLineEndings = BareLFNormalize
		}
		o = o.withDefaults()
		var bare bool
		// A tiny bufio buffer exercises lines longer than the buffer.
		dr := newDotReader(bufio.NewReaderSize(bytes.NewReader(in), 16), &o, &bare)
		out, err := io.ReadAll(dr)
		if int64(len(out)) > o.MaxMessageSize {
			t.Fatalf("delivered %d bytes over the bound %d", len(out), o.MaxMessageSize)
		}
		left, derr := dr.drain()
		if left < 0 {
			t.Fatalf("negative leftover")
		}
		if err != nil || derr != nil {
			return
		}
		consumed := in[:dr.raw]
		framed := append([]byte("\r\n"), consumed...)
		if end := bytes.Index(framed, []byte("\r\n.\r\n")); end != len(framed)-5 {
			t.Fatalf("ended at %d of %q; first CRLF.CRLF at %d", len(consumed), consumed, end)
		}
		if normalize {
			if bytes.Contains(bytes.ReplaceAll(out, []byte("\r\n"), nil), []byte("\n")) ||
				bytes.Contains(bytes.ReplaceAll(out, []byte("\r\n"), nil), []byte("\r")) {
				t.Fatalf("bare line ending in normalised output %q", out)
			}
			return
		}
		// RFC 5321 4.5.2: a line's leading period is removed, whatever
		// follows it (a client that did not double it loses it, as with
		// every MTA); nothing else changes.
		var want []byte
		for _, l := range bytes.SplitAfter(consumed[:len(consumed)-3], []byte("\n")) {
			if len(l) > 0 && l[0] == '.' {
				l = l[1:]
			}
			want = append(want, l...)
		}
		if !bytes.Equal(out, want) {
			t.Fatalf("output %q, want %q (input %q)", out, want, consumed)
		}
	})
}

// FuzzBDATReader: chunked content with line-ending checks; never more than
// the bound, never a bare line ending in normalised output.
func FuzzBDATReader(f *testing.F) {
	f.Add([]byte("a\r\nb\r\n"), false, true)
	f.Add([]byte("a\rb\nc\r"), true, true)
	f.Add([]byte("\x00\r\n\r"), false, false)
	f.Fuzz(func(t *testing.T, in []byte, normalize, lineChecks bool) {
		var bare bool
		r := &bdatReader{
			remaining: int64(len(in)),
			chunk:     int64(len(in)),
			last:      true,
			binary:    !lineChecks,
			normalize: normalize,
			maxSize:   64,
			bare:      &bare,
		}
		r.c = &conn{br: bufio.NewReaderSize(bytes.NewReader(in), 16)}
		out, err := io.ReadAll(r)
		if len(out) > 64 {
			t.Fatalf("delivered %d bytes", len(out))
		}
		if err != nil || !lineChecks {
			return
		}
		rest := bytes.ReplaceAll(out, []byte("\r\n"), nil)
		if bytes.ContainsAny(rest, "\r\n") {
			t.Fatalf("bare line ending in checked output %q", out)
		}
		if !normalize && bare {
			t.Fatalf("bare ending accepted in reject mode")
		}
	})
}

// FuzzXtext: decoding never panics and round-trips through encoding.
func FuzzXtext(f *testing.F) {
	f.Add("abc+2B+3Ddef")
	f.Add("+")
	f.Add("+zz")
	f.Fuzz(func(t *testing.T, s string) {
		d, err := decodeXtext(s)
		if err != nil {
			return
		}
		var enc strings.Builder
		for i := 0; i < len(d); i++ {
			c := d[i]
			if c < 33 || c > 126 || c == '+' || c == '=' {
				enc.WriteString("+" + strings.ToUpper(hex2(c)))
			} else {
				enc.WriteByte(c)
			}
		}
		if again, err := decodeXtext(enc.String()); err != nil || again != d {
			t.Fatalf("round trip %q -> %q -> %q (%v)", s, d, again, err)
		}
	})
}

func hex2(c byte) string {
	const digits = "0123456789abcdef"
	return string([]byte{digits[c>>4], digits[c&15]})
}
