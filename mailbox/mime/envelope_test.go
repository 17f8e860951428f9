package mime

import (
	"fmt"
	"testing"
)

func addrs(list []Address) string {
	s := ""
	for _, a := range list {
		if a.Group {
			s += fmt.Sprintf("[group %q]", a.Mailbox)
			continue
		}
		s += fmt.Sprintf("[%q %q %q %q]", a.Name, a.ADL, a.Mailbox, a.Host)
	}
	return s
}

func TestEnvelope(t *testing.T) {
	msg := loadMessage(t, "alternative.eml", true)
	env := mustParse(t, msg).Envelope
	checks := []struct{ name, got, want string }{
		{"Date", env.Date, "Tue, 1 Jul 2003 10:52:37 +0200"},
		{"Subject", env.Subject, "=?UTF-8?Q?Caf=C3=A9?= =?UTF-8?B?IG1lbnU=?="}, // raw, not decoded (RFC 3501)
		{"From", addrs(env.From), `["Bob Example" "" "bob" "example.com"]`},
		{"Sender defaults to From", addrs(env.Sender), addrs(env.From)},
		{"ReplyTo defaults to From", addrs(env.ReplyTo), addrs(env.From)},
		{"To", addrs(env.To), `["Alice" "" "alice" "example.org"]["" "" "carol" "example.net"]`},
		{"Cc empty group", addrs(env.Cc), `[group "undisclosed-recipients"][group ""]`},
		{"Bcc absent", fmt.Sprint(env.Bcc == nil), "true"},
		{"InReplyTo", env.InReplyTo, "<parent@example.org>"},
		{"MessageID", env.MessageID, "<alt-1@example.com>"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %s, want %s", c.name, c.got, c.want)
		}
	}
	// The embedded message of nested.eml has its own envelope.
	nested := mustParse(t, loadMessage(t, "nested.eml", false))
	emb := nested.Children[1].Message.Envelope
	if emb.Date != "Wed, 12 Jun 2024 12:00:00 +0100" || addrs(emb.From) != `["Frank" "" "frank" "example.com"]` {
		t.Errorf("embedded envelope %+v", *emb)
	}
	if got := DecodeHeaderValue(emb.Subject); got != "embedded message é" {
		t.Errorf("decoded embedded subject %q", got)
	}
}

func TestParseAddressList(t *testing.T) {
	tests := []struct{ in, want string }{
		{`alice@example.org`, `["" "" "alice" "example.org"]`},
		{`Alice <alice@example.org>`, `["Alice" "" "alice" "example.org"]`},
		{`"Smith, John" <js@example.com>, x@y.example`, `["Smith, John" "" "js" "example.com"]["" "" "x" "y.example"]`},
		{`John Q. Public <jqp@example.com>`, `["John Q. Public" "" "jqp" "example.com"]`},
		{`jqp@example.com (John Public)`, `["John Public" "" "jqp" "example.com"]`},
		{`=?ISO-8859-1?Q?Andr=E9?= Pirard <PIRARD@vm1.ulg.ac.be>`, `["André Pirard" "" "PIRARD" "vm1.ulg.ac.be"]`},
		{`"=?utf-8?b?w6lsw6hvbg==?=" <e@example.com>`, `["élèon" "" "e" "example.com"]`},
		{`<@route1.example,@route2.example:user@host.example>`, `["" "@route1.example,@route2.example" "user" "host.example"]`},
		{`A Group:ed@example.com,"Two" <two@example.com>;`, `[group "A Group"]["" "" "ed" "example.com"]["Two" "" "two" "example.com"][group ""]`},
		{`Undisclosed recipients:;`, `[group "Undisclosed recipients"][group ""]`},
		{`Unclosed group: a@example.com`, `[group "Unclosed group"]["" "" "a" "example.com"][group ""]`},
		{`root`, `["" "" "root" "MISSING_DOMAIN"]`},
		{`<>`, `["" "" "MISSING_MAILBOX" "MISSING_DOMAIN"]`},
		{`Broken <broken@example.com`, `["Broken" "" "broken" "example.com"]`},
		{`"quoted local"@example.com`, `["" "" "quoted local" "example.com"]`}, // RFC 3501: quoting removed
		{`user@[192.0.2.1]`, `["" "" "user" "[192.0.2.1]"]`},
		{``, ``},
		{`, ,`, ``},
	}
	for _, tt := range tests {
		if got := addrs(ParseAddressList(tt.in)); got != tt.want {
			t.Errorf("ParseAddressList(%q)\n got %s\nwant %s", tt.in, got, tt.want)
		}
	}
}

func TestDecodeHeaderValue(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain text", "plain text"},
		{"=?UTF-8?Q?Caf=C3=A9?= =?UTF-8?B?IG1lbnU=?=", "Café menu"}, // RFC 2047 6.2: space between words dropped
		{"=?ISO-8859-1?Q?a?= b =?ISO-8859-1?Q?c?=", "a b c"},        // RFC 2047 8 examples
		{"(=?ISO-8859-1?Q?a?=  =?ISO-8859-2?Q?_b?=)", "(a b)"},      // RFC 2047 8
		{"=?US-ASCII*EN?Q?Keith_Moore?=", "Keith Moore"},            // RFC 2231 5 language
		{"=?koi8-r?B?8NLJ18XU?=", "Привет"},                         // non-Latin charset
		{"=?x-unknown?Q?abc?=", "=?x-unknown?Q?abc?="},              // unknown charset left as written
		{"=?UTF-8?B?w6k?=", "é"},                                    // missing padding
		{"=?UTF-8?Q?bad=ZZ?=", "bad=ZZ"},                            // bad escape kept
		{"pre=?UTF-8?Q?glued?=post", "pregluedpost"},                // lenient: glued to text
		{"=?UTF-8?Q?unterminated", "=?UTF-8?Q?unterminated"},
		{"raw \xe9 8-bit", "raw \xe9 8-bit"},
	}
	for _, tt := range tests {
		if got := DecodeHeaderValue(tt.in); got != tt.want {
			t.Errorf("DecodeHeaderValue(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestParseParams(t *testing.T) {
	tests := []struct{ in, want string }{
		{`; charset="us-ascii"`, `[{charset us-ascii}]`},
		{`;name="a \"b\".txt"; x=y`, `[{name a "b".txt} {x y}]`},
		// RFC 2231 examples (sections 3, 4, 4.1)
		{`; URL*0="ftp://";URL*1="cs.utk.edu/pub/moore/bulk-mailer/bulk-mailer.tar"`, `[{URL ftp://cs.utk.edu/pub/moore/bulk-mailer/bulk-mailer.tar}]`},
		{`; title*=us-ascii'en-us'This%20is%20%2A%2A%2Afun%2A%2A%2A`, `[{title This is ***fun***}]`},
		{`; title*0*=us-ascii'en'This%20is%20even%20more%20;title*1*=%2A%2A%2Afun%2A%2A%2A%20;title*2="isn't it!"`, `[{title This is even more ***fun*** isn't it!}]`},
		{`; filename="plain.txt"; filename*=UTF-8''%E2%82%AC.txt`, `[{filename €.txt}]`},
		{`; a*1=second; a*0=first`, `[{a firstsecond}]`},
		{`;;junk; =novalue; b="unterminated`, `[{b unterminated}]`},
		{`; bad%=%zz`, `[{bad% %zz}]`},
	}
	for _, tt := range tests {
		if got := fmt.Sprint(parseParams(tt.in)); got != tt.want {
			t.Errorf("parseParams(%q)\n got %s\nwant %s", tt.in, got, tt.want)
		}
	}
}
