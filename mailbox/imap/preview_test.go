package imap

import (
	"bytes"
	"net"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"postern/mailbox/mime"
)

const (
	previewPlainQP = "From: a@example.org\r\nSubject: qp\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" +
		"Caf=E9   au\r\n\r\n\tlait =\r\nsoft break\r\n"
	previewAlternative = "From: a@example.org\r\nSubject: alt\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=outer\r\n\r\n" +
		"--outer\r\nContent-Type: text/plain; name=notes.txt\r\nContent-Disposition: attachment\r\n\r\nattached text\r\n" +
		"--outer\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
		"PGh0bWw+PGhlYWQ+PHN0eWxlPnAge2NvbG9yOnJlZH08L3N0eWxlPjwvaGVhZD48Ym9keT48cD5I\r\n" +
		"ZWxsbyAmYW1wOyA8Yj53b3JsZDwvYj48L3A+PC9ib2R5PjwvaHRtbD4=\r\n" +
		"--outer--\r\n"
	previewNoText = "From: a@example.org\r\nSubject: image\r\nMIME-Version: 1.0\r\nContent-Type: image/png\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n"
)

// TestPreviewTranscript checks FETCH PREVIEW (RFC 8970) over a real
// connection: decoded and whitespace-collapsed text, the first text part
// that is not an attachment, HTML without its markup, an empty string
// for a message without text, LAZY, and the 256-character bound.
func TestPreviewTranscript(t *testing.T) {
	env := newTestEnv(t, nil)
	env.deliver("alice", "INBOX", previewPlainQP)
	env.deliver("alice", "INBOX", previewAlternative)
	env.deliver("alice", "INBOX", previewNoText)
	env.deliver("alice", "INBOX", "Subject: long\r\n\r\n"+strings.Repeat("é ", 400)+"\r\n")
	r := env.login("alice", "secret")
	r.send("c CAPABILITY\r\n")
	if caps := r.until("c OK"); !strings.Contains(caps[0], " PREVIEW") {
		t.Fatalf("PREVIEW not advertised: %q", caps[0])
	}
	r.send("s EXAMINE INBOX\r\n")
	r.until("s OK")
	r.send("f1 FETCH 1:3 (PREVIEW)\r\n")
	lines := r.until("f1 OK")
	// The ISO-8859-1 "é" is UTF-8 now, so the preview goes as a literal.
	want := []string{
		"* 1 FETCH (PREVIEW {" + strconv.Itoa(len("Café au lait soft break")) + "}",
		"Café au lait soft break)",
		`* 2 FETCH (PREVIEW "Hello & world")`,
		`* 3 FETCH (PREVIEW "")`,
	}
	if strings.Join(lines[:4], "\n") != strings.Join(want, "\n") {
		t.Errorf("PREVIEW:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	r.send("f2 UID FETCH 2 (PREVIEW (LAZY) FLAGS)\r\n")
	if l := r.until("f2 OK")[0]; l != `* 2 FETCH (UID 2 PREVIEW "Hello & world" FLAGS (\Recent))` {
		t.Errorf("PREVIEW (LAZY): %q", l)
	}
	r.send("f3 FETCH 4 PREVIEW (lazy)\r\n")
	header := r.expect("* 4 FETCH (PREVIEW {")
	body, _ := r.readLine()
	// Cut at 256 characters; a space that would end it is left out.
	if n := utf8.RuneCountInString(strings.TrimSuffix(body, ")")); !strings.HasSuffix(header, "}") || n < previewMaxChars-1 || n > previewMaxChars {
		t.Errorf("long preview: %q %q (%d chars)", header, body, utf8.RuneCountInString(body)-1)
	}
	r.expect("f3 OK")
	r.send("f4 FETCH 1 PREVIEW (EAGER)\r\n")
	r.expect("f4 BAD")
	r.send("f5 FETCH 1 (PREVIEW (LAZY EAGER))\r\n")
	r.expect("f5 BAD")
}

// runImaplib runs body as Python with M, an imaplib connection logged in
// as alice; skipped without python3.
func runImaplib(t *testing.T, env *testEnv, body string) {
	t.Helper()
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed")
	}
	host, port, _ := net.SplitHostPort(env.addr)
	script := "import imaplib, sys\nM = imaplib.IMAP4(sys.argv[1], int(sys.argv[2]))\nM.login('alice', 'secret')\n" +
		body + "\nM.logout()\nprint('imaplib ok')\n"
	out, err := exec.Command(python, "-c", script, host, port).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "imaplib ok") {
		t.Fatalf("imaplib: %v\n%s", err, out)
	}
}

// TestPreviewWithImaplib fetches a preview with Python's imaplib, as a
// client that knows nothing of the extension sends it.
func TestPreviewWithImaplib(t *testing.T) {
	env := newTestEnv(t, nil)
	env.deliver("alice", "INBOX", previewAlternative)
	runImaplib(t, env, `
typ, data = M.select("INBOX")
typ, data = M.fetch("1", "(PREVIEW EMAILID SAVEDATE)")
assert typ == "OK", data
line = data[0] if isinstance(data[0], bytes) else data[0][0]
assert b'PREVIEW "Hello & world"' in line, data
assert b"EMAILID (M" in line and b'SAVEDATE "' in line, data
typ, data = M.status("INBOX", "(MAILBOXID MESSAGES)")
assert typ == "OK" and b"MAILBOXID (F" in data[0], data
`)
}

// FuzzPreview runs the preview of arbitrary messages: valid UTF-8, no
// control characters, within the bound, never a panic.
func FuzzPreview(f *testing.F) {
	for _, s := range []string{previewPlainQP, previewAlternative, previewNoText, "<style>", "Content-Type: text/html\r\n\r\n<head><style>x", "Content-Type: text/html\r\n\r\n&amp;&#0;<b>a</b>\x00\x01"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		data := mime.CRLF(raw)
		root, err := mime.Parse(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		p, err := previewOf(data, root)
		if err != nil {
			return
		}
		if !utf8.ValidString(p) || utf8.RuneCountInString(p) > previewMaxChars {
			t.Fatalf("preview %q", p)
		}
		for _, r := range p {
			if r < 0x20 || r == 0x7f {
				t.Fatalf("control character in %q", p)
			}
		}
		if strings.HasPrefix(p, " ") || strings.HasSuffix(p, " ") || strings.Contains(p, "  ") {
			t.Fatalf("whitespace not collapsed: %q", p)
		}
	})
}

// TestPreviewOfHugePart: a big text part is decoded only as far as the
// preview needs, and the preview is still its start.
func TestPreviewOfHugePart(t *testing.T) {
	msg := "Subject: big\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nStart here. " +
		strings.Repeat("=41", 4<<20) + "\r\n"
	data := []byte(msg)
	root, err := mime.Parse(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	p, err := previewOf(data, root)
	if err != nil || !strings.HasPrefix(p, "Start here. AAAA") || utf8.RuneCountInString(p) != previewMaxChars {
		t.Fatalf("preview %q, %v", p, err)
	}
	var ms1, ms2 runtime.MemStats
	runtime.ReadMemStats(&ms1)
	previewOf(data, root)
	runtime.ReadMemStats(&ms2)
	if grew := ms2.TotalAlloc - ms1.TotalAlloc; grew > 16*previewMaxInput {
		t.Errorf("preview of a 12 MiB part allocated %d bytes", grew)
	}
}
