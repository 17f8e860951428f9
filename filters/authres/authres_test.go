package authres_test

import (
	"bytes"
	"strings"
	"testing"

	"postern/filters/authres"
)

func TestStripForgedAuthResults(t *testing.T) {
	in := "Received: from a by b\r\n" +
		"Authentication-Results: mx.example.net; dkim=pass header.d=bank.example\r\n" +
		"Subject: hi\r\n" +
		"authentication-results : (forged) MX.Example.NET.;\r\n\tspf=pass smtp.mailfrom=bank.example\r\n" +
		"Authentication-Results: \"mx.example.net\"; dmarc=pass\r\n" +
		"Authentication-Results: relay.example.com; dkim=fail\r\n" +
		"Authentication-Results: mx.example.net.evil.example; dkim=pass\r\n" +
		"Authentication-Results: (unterminated comment mx.example.net; x=y\r\n" +
		"X-Note: Authentication-Results: mx.example.net; dkim=pass\r\n" +
		"\r\n" +
		"Authentication-Results: mx.example.net; this is body text\r\n"
	want := "Received: from a by b\r\n" +
		"Subject: hi\r\n" +
		"Authentication-Results: relay.example.com; dkim=fail\r\n" +
		"Authentication-Results: mx.example.net.evil.example; dkim=pass\r\n" +
		"Authentication-Results: (unterminated comment mx.example.net; x=y\r\n" +
		"X-Note: Authentication-Results: mx.example.net; dkim=pass\r\n" +
		"\r\n" +
		"Authentication-Results: mx.example.net; this is body text\r\n"
	got := string(authres.StripForgedAuthResults([]byte(in), "mx.example.net"))
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	// LF line endings work the same.
	got = string(authres.StripForgedAuthResults([]byte(strings.ReplaceAll(in, "\r\n", "\n")), "mx.example.net"))
	if got != strings.ReplaceAll(want, "\r\n", "\n") {
		t.Errorf("LF: got\n%s", got)
	}
}

func TestStripKeepsInputWhenNothingMatches(t *testing.T) {
	in := []byte("From: a\r\nAuthentication-Results: other.example; none\r\n\r\nbody")
	out := authres.StripForgedAuthResults(in, "mx.example.net")
	if &out[0] != &in[0] || !bytes.Equal(in, out) {
		t.Error("input not returned as is")
	}
	if out := authres.StripForgedAuthResults(in, ""); !bytes.Equal(in, out) {
		t.Error("empty authserv-id changed the header")
	}
	// A field that is the last line, without line ending, is removed too.
	out = authres.StripForgedAuthResults([]byte("From: a\r\nAuthentication-Results: mx.example.net; x=pass"), "mx.example.net")
	if string(out) != "From: a\r\n" {
		t.Errorf("last field: %q", out)
	}
}

func TestAuthservID(t *testing.T) {
	for in, want := range map[string]string{
		" example.org; spf=pass":           "example.org",
		"(c (nested)) example.org 1; none": "example.org",
		"\r\n\texample.org;":               "example.org",
		` "quoted\"id"; none`:              `quoted"id`,
		"example.org":                      "example.org",
		" ; none":                          "",
		"":                                 "",
		" (never closed":                   "",
		` "never closed`:                   "",
		strings.Repeat("(", 40) + "x" + strings.Repeat(")", 40) + " id": "",
	} {
		got, ok := authres.AuthservID(in)
		if got != want || ok != (want != "") {
			t.Errorf("AuthservID(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}

func TestField(t *testing.T) {
	if got := authres.Field("mx.example.net", nil); got != "Authentication-Results: mx.example.net; none" {
		t.Errorf("none form: %q", got)
	}
	got := authres.Field("mx.example.net", []string{"spf=pass smtp.mailfrom=a.example", "dkim=pass header.d=a.example"})
	want := "Authentication-Results: mx.example.net;\r\n\tspf=pass smtp.mailfrom=a.example;\r\n\tdkim=pass header.d=a.example"
	if got != want {
		t.Errorf("got %q", got)
	}
	// What we add is what we strip from the next hop's view of us.
	stripped := authres.StripForgedAuthResults([]byte(got+"\r\nFrom: a\r\n\r\n"), "mx.example.net")
	if string(stripped) != "From: a\r\n\r\n" {
		t.Errorf("own field not stripped: %q", stripped)
	}
}

func FuzzStripForgedAuthResults(f *testing.F) {
	f.Add([]byte("Authentication-Results: mx.example.net; dkim=pass\r\nFrom: a\r\n\r\nbody"), "mx.example.net")
	f.Add([]byte("Authentication-Results: (((\r\n\t\"x\\\" ; a=b\r\n"), "x")
	f.Add([]byte("\n\n\n"), "a")
	f.Add([]byte("Authentication-Results:\r\n"), "")
	f.Fuzz(func(t *testing.T, header []byte, id string) {
		out := authres.StripForgedAuthResults(header, id)
		if len(out) > len(header) {
			t.Fatalf("output longer than input")
		}
		// Idempotent: a second pass removes nothing more.
		if again := authres.StripForgedAuthResults(out, id); !bytes.Equal(again, out) {
			t.Fatalf("second pass changed the result:\n%q\n%q", out, again)
		}
	})
}

func TestCommentAndValue(t *testing.T) {
	for in, want := range map[string]string{
		"key (2048 bits)":        "key 2048 bits",
		"a\\b\r\nc":              "ab  c",
		strings.Repeat("x", 130): strings.Repeat("x", 120) + "...",
		"":                       "",
	} {
		if got := authres.Comment(in); got != want {
			t.Errorf("Comment(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{
		"example.org":      "example.org",
		"user@example.org": "user@example.org",
		"":                 `""`,
		"two words":        `"two words"`,
		`a"b\c`:            `"a\"b\\c"`,
		"semi;colon":       `"semi;colon"`,
		"line\r\nbreak":    `"line  break"`,
	} {
		if got := authres.Value(in); got != want {
			t.Errorf("Value(%q) = %q, want %q", in, got, want)
		}
	}
}

// Ours finds the gateway's own field (the topmost claiming its id) and
// gives back the parts Field wrote, so that a forwarded copy's ARC set can
// repeat them.
func TestOursRoundTrip(t *testing.T) {
	parts := []string{
		"spf=pass smtp.mailfrom=example.org",
		`dkim=fail (signature did not verify; body changed) header.d=example.org header.s="a;1"`,
		"arc=pass (i=1) header.oldest-pass=0 smtp.remote-ip=192.0.2.1",
		"dmarc=fail (p=reject dis=none policy.override=arc) header.from=example.org",
	}
	msg := "Return-Path: <a@example.org>\r\n" +
		"Authentication-Results: relay.example.com; arc=fail\r\n" +
		authres.Field("MX.example.net.", parts) + "\r\n" +
		"Authentication-Results: mx.example.net; arc=none\r\n" + // older, lower down
		"Subject: hi\r\n\r\nAuthentication-Results: mx.example.net; spf=fail\r\n"
	got, ok := authres.Ours([]byte(msg), "mx.example.net")
	if !ok || strings.Join(got, "\n") != strings.Join(parts, "\n") {
		t.Fatalf("Ours = %q, %v; want %q", got, ok, parts)
	}
	if r, ok := authres.Method(got, "ARC"); !ok || r != "pass" {
		t.Errorf("Method arc = %q, %v", r, ok)
	}
	if r, ok := authres.Method([]string{"arc/1 = (v1) PASS (i=1)"}, "arc"); !ok || r != "pass" {
		t.Errorf("Method with version and comment = %q, %v", r, ok)
	}
	if _, ok := authres.Method(got, "bimi"); ok {
		t.Error("Method found a method that is not there")
	}
	if got, ok := authres.Ours([]byte(authres.Field("mx.example.net", nil)+"\r\n\r\n"), "mx.example.net"); !ok || len(got) != 0 {
		t.Errorf("none field: %q, %v", got, ok)
	}
	// Only in the body, or under another id: not ours.
	if got, ok := authres.Ours([]byte("Subject: x\r\n\r\n"+authres.Field("mx.example.net", parts)), "mx.example.net"); ok {
		t.Errorf("field in the body taken: %q", got)
	}
	if _, ok := authres.Ours([]byte(msg), "mx.example.net.evil.example"); ok {
		t.Error("field under another id taken")
	}
}

func FuzzOurs(f *testing.F) {
	f.Add([]byte("Authentication-Results: mx.example.net; arc=pass (i=1; x) a=\"b;c\"\r\n\tdkim=pass\r\n\r\n"), "mx.example.net", "arc")
	f.Add([]byte("Authentication-Results: x; (((\\;\"\r\n"), "x", "dkim")
	f.Add([]byte("Authentication-Results: x; none\n"), "x", "")
	f.Fuzz(func(t *testing.T, header []byte, id, method string) {
		parts, ok := authres.Ours(header, id)
		if !ok && parts != nil {
			t.Fatal("parts without a field")
		}
		for _, p := range parts {
			if p == "" || strings.ContainsAny(p, "\r\n") {
				t.Fatalf("part %q: empty or not unfolded", p)
			}
		}
		if r, ok := authres.Method(parts, method); ok && (r == "" || r != strings.ToLower(r)) {
			t.Fatalf("Method = %q", r)
		}
	})
}
