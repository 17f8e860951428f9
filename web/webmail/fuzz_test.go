package webmail

import (
	"bytes"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"golang.org/x/net/html"

	"postern/mailbox/maildir"
	pmime "postern/mailbox/mime"
)

func FuzzReflow(f *testing.F) {
	f.Add("a \nb\n", false)
	f.Add("> q \n>> qq\n-- \nsig\n", true)
	f.Add(" stuffed\n\n", false)
	f.Fuzz(func(t *testing.T, in string, delSp bool) {
		out := reflow(in, delSp)
		if utf8.ValidString(in) && !utf8.ValidString(out) {
			t.Fatalf("valid input, invalid output: %q", out)
		}
		if len(out) > 2*len(in)+2 {
			t.Fatalf("output grew: %d from %d", len(out), len(in))
		}
	})
}

func FuzzFolderNames(f *testing.F) {
	for _, s := range []string{"INBOX", "Work", "Projekt &AMQ-", "../x", "a..b", "&-", "&AGEAYgBj-", "&2D3eAA-", "Sent.2024",
		"shared/team/Lists", "shared/team/../x", "shared/../x/Lists", "shared/team/Lists/x", "shared//x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if name, err := folderParam(s); err == nil {
			if strings.ContainsAny(name, "/\x00") || strings.Contains(name, "..") || strings.HasPrefix(name, ".") {
				t.Fatalf("accepted %q as %q", s, name)
			}
		}
		// A shared folder's name: one Maildir++ folder, and a NICK with
		// no "/" (maildir then finds it among shared-maildirs' names).
		if nick, folder, _, err := parseSharedParam(s); err == nil && nick != "" {
			if strings.Contains(nick, "/") || maildir.ValidFolderName(folder) != nil || strings.Contains(folder, "..") {
				t.Fatalf("shared %q accepted as %q %q", s, nick, folder)
			}
			if back, _, _, _ := parseSharedParam(sharedParam(nick, folder)); back != nick {
				t.Fatalf("shared %q does not round trip", s)
			}
		}
		if name, err := newFolderName(s); err == nil {
			if maildir.ValidFolderName(name) != nil {
				t.Fatalf("typed %q became invalid %q", s, name)
			}
			if back, err := decodeMUTF7(name); err != nil || back != strings.TrimSpace(s) {
				t.Fatalf("round trip %q -> %q -> %q (%v)", s, name, back, err)
			}
		}
		if d, err := decodeMUTF7(s); err == nil && !utf8.ValidString(d) {
			t.Fatalf("decoded to invalid UTF-8: %q", d)
		}
	})
}

// FuzzRenderMessage shows arbitrary bytes as a message: never a panic,
// and the sanitized HTML never holds a script or an event handler.
func FuzzRenderMessage(f *testing.F) {
	f.Add([]byte(hostile))
	f.Add([]byte("Subject: x\n\nbody\n"))
	f.Add([]byte("Content-Type: text/html\n\n<a href=javascript:x onclick=y>z</a><img src=http://t/p>"))
	f.Add([]byte(relatedMail))
	f.Add([]byte("Content-Type: multipart/alternative; boundary=b\n\n--b\nContent-Type: text/plain; format=flowed; delsp=yes\n\na \nb\n--b\nContent-Type: text/html\n\n<p>x</p>\n--b--\n"))
	dir := f.TempDir()
	if err := maildir.Make(dir); err != nil {
		f.Fatal(err)
	}
	h := &Handler{html: newHTMLPolicy(), log: quietLog()}
	h.strip = newHTMLPolicy()
	f.Fuzz(func(t *testing.T, msg []byte) {
		if len(msg) > 1<<16 {
			return
		}
		file, err := os.CreateTemp(dir, "m")
		if err != nil {
			t.Fatal(err)
		}
		defer os.Remove(file.Name())
		defer file.Close()
		file.Write(msg)
		root, err := pmime.Parse(bytes.NewReader(msg), int64(len(msg)))
		if err != nil {
			return
		}
		om := &openedMessage{folder: "INBOX", file: file, size: int64(len(msg)), root: root}
		for _, asText := range []bool{false, true} {
			mp := h.renderMessage(om, asText)
			for _, b := range mp.Bodies {
				doc, err := html.Parse(strings.NewReader(string(b.HTML)))
				if err != nil {
					t.Fatal(err)
				}
				walk(doc, func(n *html.Node) {
					if n.Type != html.ElementNode {
						return
					}
					switch n.Data {
					case "script", "style", "iframe", "object", "embed", "form", "svg", "math", "base", "link", "meta":
						t.Fatalf("<%s> kept: %q", n.Data, b.HTML)
					}
					for _, a := range n.Attr {
						k, v := strings.ToLower(a.Key), strings.ToLower(strings.TrimSpace(a.Val))
						if strings.HasPrefix(k, "on") || k == "style" {
							t.Fatalf("attribute %s kept: %q", a.Key, b.HTML)
						}
						if (k == "href" || k == "src") && !(strings.HasPrefix(v, "http:") || strings.HasPrefix(v, "https:") || strings.HasPrefix(v, "mailto:") || strings.HasPrefix(v, "data:image/") || v == "about:blank" || k == "src" && strings.HasPrefix(v, "/mail/inline?")) {
							t.Fatalf("%s=%q kept: %q", a.Key, a.Val, b.HTML)
						}
						if k == "src" && (strings.HasPrefix(v, "http") || strings.HasPrefix(v, "//")) {
							t.Fatalf("remote src kept: %q", b.HTML)
						}
					}
				})
			}
			for _, a := range mp.Attachments {
				if strings.ContainsAny(a.Name, "/\\\x00\r\n") || a.Name == "" || strings.HasPrefix(a.Name, ".") {
					t.Fatalf("attachment name %q", a.Name)
				}
			}
		}
	})
}

// FuzzRewriteCIDs sanitizes and then rewrites arbitrary HTML as a
// message page does: every cid: reference ends as an address the
// resolver gave, about:blank, or gone; nothing else changes, and no
// other remote or relative source appears.
func FuzzRewriteCIDs(f *testing.F) {
	for _, s := range []string{
		`<img src="cid:logo@x">`, `<img src="CID:a%40b">`, `<img src=cid:>`, `<a href="cid:x">l</a>`,
		`<img src="cid:%zz"><img src="cid:known" alt="k">`, `<p>cid: in text</p><img src="cid:known"/>`,
		`<img src="cid:known" onerror="x()"><img src="https://t/p"><img src="/mail/inline?part=1">`,
		"<img src=\"cid:k\u0000nown\">", `<img src="cid:known"><img src="cid:known">`,
	} {
		f.Add(s)
	}
	p := newHTMLPolicy()
	f.Fuzz(func(t *testing.T, in string) {
		if len(in) > 1<<16 {
			return
		}
		clean := p.Sanitize(in)
		out := rewriteCIDs(clean, func(cid string) (string, bool) {
			if cid == "known" {
				return "/mail/inline?f=INBOX&uid=1&part=2", true
			}
			return "", false
		})
		if !strings.Contains(strings.ToLower(clean), "cid:") && out != clean {
			t.Fatalf("changed without cid: %q -> %q", clean, out)
		}
		doc, err := html.Parse(strings.NewReader(out))
		if err != nil {
			t.Fatal(err)
		}
		walk(doc, func(n *html.Node) {
			if n.Type != html.ElementNode {
				return
			}
			for _, a := range n.Attr {
				k, v := strings.ToLower(a.Key), strings.ToLower(strings.TrimSpace(a.Val))
				if strings.HasPrefix(k, "on") || k == "style" {
					t.Fatalf("attribute %s in %q", a.Key, out)
				}
				if strings.HasPrefix(v, "cid:") && (k == "src" || k == "href" || k == "cite") {
					t.Fatalf("cid: kept in %s: %q", k, out)
				}
				if k == "src" && !(v == "about:blank" || strings.HasPrefix(v, "data:image/") || v == "/mail/inline?f=inbox&uid=1&part=2") {
					t.Fatalf("src %q in %q", a.Val, out)
				}
			}
		})
	})
}

func FuzzParseAddresses(f *testing.F) {
	for _, s := range []string{"a@b", "Bob <bob@example.org>, c@d", `"x, y" <x@y>`, "a@b\r\nBcc: c@d", "=?utf-8?q?x?= <a@b>"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		list, err := parseAddresses("To", s)
		if err != nil {
			return
		}
		d := &draft{from: &mailAddr, to: list, body: "x"}
		msg := d.build(timeZero)
		hdr := msg[:bytes.Index(msg, []byte("\r\n\r\n"))]
		for _, line := range bytes.Split(hdr, []byte("\r\n")) {
			if len(line) > 0 && line[0] != ' ' && line[0] != '\t' && !bytes.Contains(line, []byte(":")) {
				t.Fatalf("header line without a name: %q in\n%s", line, hdr)
			}
			if bytes.HasPrefix(bytes.ToLower(line), []byte("bcc:")) {
				t.Fatalf("Bcc injected from %q", s)
			}
		}
	})
}

// FuzzAddressBook reads arbitrary bytes as an address book file: never a
// panic; what it writes back has no blank line, reads back with the same
// entries, and is written the same again; every nickname expands.
func FuzzAddressBook(f *testing.F) {
	f.Add([]byte(sqwebmailFile))
	f.Add([]byte("a: \"x\\\"y\" <a@b>,\n    <c@d>\nb: a, b, <e@f>\nc: c\n"))
	f.Add([]byte("\xff: x\n :\n\n(\n  x: <y@z>\nd: (nested (comment)) <d@e>\n"))
	f.Add([]byte("e: =?utf-8?q?J=C3=BCrgen?= <j@example.org>\r\nf: x@y (Name), \"q\"\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 1<<16 {
			return
		}
		b := parseAddressBook(data)
		out := b.format()
		if bytes.Contains(out, []byte("\n\n")) || bytes.HasPrefix(out, []byte("\n")) || len(out) > 0 && (out[0] == ' ' || out[0] == '\t') {
			t.Fatalf("blank or leading continuation line written: %q", out)
		}
		again := parseAddressBook(out)
		for _, e := range b.entries() {
			if hasEncodedWord(e) {
				continue // a decoded name may itself look encoded
			}
			g := again.find(e.Nick)
			if g == nil || !slices.Equal(g.Addrs, e.Addrs) {
				t.Fatalf("entry %q: %+v, read back %+v from %q", e.Nick, e.Addrs, g, out)
			}
		}
		if again.count() != b.count() {
			t.Fatalf("%d entries, %d read back from %q", b.count(), again.count(), out)
		}
		if out2 := again.format(); !bytes.Equal(out, out2) && !slices.ContainsFunc(b.entries(), hasEncodedWord) {
			t.Fatalf("written differently the second time:\n%q\n%q", out, out2)
		}
		for i, e := range b.entries() {
			if i == 50 {
				break // each expansion may walk the whole book: enough of them
			}
			list, err := parseRecipients("To", e.Nick, b)
			if err == nil && len(list) > maxRecipients {
				t.Fatalf("%d recipients", len(list))
			}
		}
	})
}

func hasEncodedWord(e *bookEntry) bool {
	return slices.ContainsFunc(e.Addrs, func(a bookAddress) bool { return strings.Contains(a.Name, "=?") })
}

// FuzzVCard reads arbitrary bytes as a vCard file: never a panic; every
// entry it yields is one the address book accepts; and written out again
// and read back, each entry is the same.
func FuzzVCard(f *testing.F) {
	f.Add([]byte(vcardsFromPhones))
	f.Add(formatVCards(parseAddressBook([]byte(richBook)).entries()))
	f.Add([]byte("BEGIN:VCARD\nBEGIN:VCARD\nEMAIL:a@b\nEND:VCARD\nEND:VCARD\n"))
	f.Add([]byte("BEGIN:VCARD\nKIND:group\nMEMBER;X-POSTERN-NAME=\"^'x^'^n\":mailto:a%3Fb@c?subject=x\nEND:VCARD\n"))
	f.Add([]byte("BEGIN:VCARD\nN;ENCODING=QUOTED-PRINTABLE;CHARSET=koi8-r:=C1=C2;=\n=C3\nEMAIL;INTERNET:a@b\nEND:VCARD"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > maxVCardFile {
			return
		}
		cards, _ := parseVCards(data)
		for _, c := range cards {
			ve, err := vcardToEntry(c)
			if err != nil {
				continue
			}
			if err := checkEntry(ve.entry); err != nil {
				t.Fatalf("entry %+v not valid: %v", ve.entry, err)
			}
			out := formatVCards([]*bookEntry{ve.entry})
			again, problems := parseVCards(out)
			if len(again) != 1 || len(problems) != 0 {
				t.Fatalf("written %q, read %d cards, %v", out, len(again), problems)
			}
			ve2, err := vcardToEntry(again[0])
			if err != nil {
				t.Fatalf("written %q, read back: %v", out, err)
			}
			if ve2.entry.Nick != ve.entry.Nick || !slices.Equal(ve2.entry.Addrs, ve.entry.Addrs) {
				t.Fatalf("round trip: %+v became %+v (%q)", ve.entry, ve2.entry, out)
			}
			// And through the sqwebmail file, as the import writes it.
			b := &addressBook{byNick: map[string]*bookEntry{}}
			if err := b.put("", ve.entry); err != nil {
				t.Fatal(err)
			}
			if got := parseAddressBook(b.format()).entries(); len(got) != 1 || got[0].Nick != ve.entry.Nick || !slices.Equal(got[0].Addrs, ve.entry.Addrs) {
				t.Fatalf("address book file: %+v became %+v (%q)", ve.entry, got, b.format())
			}
		}
	})
}

// FuzzReadReceipt reads arbitrary bytes as a message that may ask for a
// receipt: never a panic, and the receipt built for it is one message
// whose header holds only the fields buildMDN writes (nothing from the
// original message becomes a field of its own), a multipart/report of
// three parts.
func FuzzReadReceipt(f *testing.F) {
	f.Add([]byte(receiptMail("<carol@example.net>", "Carol <carol@example.net>", "<m1@example.net>")))
	f.Add([]byte("Return-Path: <>\nSubject: x\r\nBcc: y@z\nOriginal-Recipient: rfc822;a@b\r\n\tBcc: q@r\nMessage-ID: <a@b>\nDisposition-Notification-To: =?utf-8?q?A=0D=0ABcc:?= <a@b>, c@d\n\nbody"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, msg []byte) {
		if len(msg) > 1<<16 {
			return
		}
		file, err := os.CreateTemp(dir, "m")
		if err != nil {
			t.Fatal(err)
		}
		defer os.Remove(file.Name())
		defer file.Close()
		file.Write(msg)
		root, err := pmime.Parse(bytes.NewReader(msg), int64(len(msg)))
		if err != nil {
			return
		}
		om := &openedMessage{folder: "INBOX", file: file, size: int64(len(msg)), root: root}
		rq, ok := mdnRequested(om)
		if !ok {
			return
		}
		orig, err := mdnOf(om)
		if err != nil {
			t.Fatal(err)
		}
		out := buildMDN(time.Unix(0, 0), &mail.Address{Address: "alice@example.test"}, rq.to, orig, "example.test")
		m, err := mail.ReadMessage(bytes.NewReader(out))
		if err != nil {
			t.Fatalf("receipt does not parse: %v\n%s", err, out)
		}
		for k := range m.Header {
			switch k {
			case "From", "To", "Subject", "Date", "Message-Id", "In-Reply-To", "References", "Mime-Version", "User-Agent", "Content-Type":
			default:
				t.Fatalf("field %s in the receipt:\n%s", k, out)
			}
		}
		_, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
		if err != nil || params["report-type"] != "disposition-notification" {
			t.Fatalf("Content-Type %q", m.Header.Get("Content-Type"))
		}
		mr := multipart.NewReader(m.Body, params["boundary"])
		n := 0
		for {
			_, err := mr.NextRawPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("part %d: %v\n%s", n, err, out)
			}
			n++
		}
		if n != 3 {
			t.Fatalf("%d parts:\n%s", n, out)
		}
	})
}

// FuzzListQuery reads arbitrary list parameters: never a panic; a
// keyword filter it keeps is an IMAP atom; and what it reads comes back
// the same from the list's own links.
func FuzzListQuery(f *testing.F) {
	for _, s := range []string{"kw=work", "kw=%24Label1&q=plan", "kw=a+b", "kw=(x", "kw=%5CSeen", "kw=&q=&in=body&sort=from&order=desc&page=2",
		"kw=%00", "kw=%C3%A9", "q=%FF&in=x", "page=99999999&sort=zz",
		"q=" + strings.Repeat("a", maxSearch-1) + "%C3%A9", // a search cut inside a character
		"q=" + strings.Repeat("a", maxSearch-1) + "+bb"} {  // and before a blank
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		q, err := readListQuery(v)
		if err != nil {
			return
		}
		if q.KW != "" && maildir.ValidKeyword(q.KW) != nil {
			t.Fatalf("kept keyword %q", q.KW)
		}
		back, err := readListQuery(q.values("INBOX"))
		if err != nil || back != q {
			t.Fatalf("%q: %+v -> %+v (%v)", raw, q, back, err)
		}
	})
}

// FuzzHTMLToText: any HTML, broken or hostile, becomes text without a
// crash or a hang, in valid UTF-8, one line end at the end, no carriage
// returns, no script's text, and no more than a bounded multiple of the
// input (quote and list prefixes are capped).
func FuzzHTMLToText(f *testing.F) {
	f.Add(hostileHTML)
	f.Add("<div>a</div><div><br></div><ul><li>x<ol><li>y</li></ol></li></ul>")
	f.Add(`<a href="https://e.org/">t</a><a href="mailto:x@y">x@y</a><a href="javascript:1">j</a>`)
	f.Add(strings.Repeat("<blockquote><ul><li>", 200) + "deep<br>er")
	f.Add("<pre>\r\n a\r b</pre><script>secret</script>")
	policy := newComposePolicy()
	f.Fuzz(func(t *testing.T, in string) {
		// What is sent: the sanitized HTML has no element or attribute
		// that runs or fetches, and links only to http, https, mailto.
		clean := policy.Sanitize(in)
		z := html.NewTokenizer(strings.NewReader(clean))
		for tt := z.Next(); tt != html.ErrorToken; tt = z.Next() {
			if tt != html.StartTagToken && tt != html.SelfClosingTagToken {
				continue
			}
			tok := z.Token()
			switch tok.Data {
			case "script", "style", "img", "iframe", "object", "embed", "svg", "math", "form", "input", "link", "meta", "base":
				t.Fatalf("<%s> kept: %q", tok.Data, clean)
			}
			for _, a := range tok.Attr {
				k := strings.ToLower(a.Key)
				if strings.HasPrefix(k, "on") || k == "style" || k == "src" || k == "srcset" || k == "background" {
					t.Fatalf("attribute %s kept: %q", a.Key, clean)
				}
				if k == "href" {
					u, err := url.Parse(a.Val)
					if err != nil || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "mailto") {
						t.Fatalf("href %q kept", a.Val)
					}
				}
			}
		}
		out := htmlToText(in)
		if !utf8.ValidString(out) || !strings.HasSuffix(out, "\n") || strings.Contains(out, "\r") {
			t.Fatalf("output %q", out)
		}
		if len(out) > 12*len(in)+64 {
			t.Fatalf("output grew: %d from %d", len(out), len(in))
		}
		// Closed after text with no markup, a script says nothing.
		if !strings.Contains(in, "<") {
			if out2 := htmlToText(in + "<script>SCRIPTTEXT</script>"); strings.Contains(out2, "SCRIPTTEXT") && !strings.Contains(in, "SCRIPTTEXT") {
				t.Fatalf("script text in the output: %q", out2)
			}
		}
	})
}
