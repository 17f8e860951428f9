package outbound

import (
	"net"
	"strings"
	"testing"
)

// FuzzReadReply feeds arbitrary bytes to the STARTTLS reply reader: it must
// return (never hang or panic) and never report a code outside 200-599.
func FuzzReadReply(f *testing.F) {
	for _, s := range []string{
		"220 2.0.0 ready\r\n",
		"454-4.7.0 TLS\r\n454 4.7.0 not available\r\n",
		"220-a\r\n221 b\r\n",
		"22",
		"999 x\r\n",
		strings.Repeat("220-x\r\n", 30),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		client, server := net.Pipe()
		go func() {
			server.Write(data)
			server.Close()
		}()
		code, _, err := readReplyUnbuffered(client)
		client.Close()
		if err == nil && (code < 200 || code > 599) {
			t.Fatalf("code %d accepted", code)
		}
	})
}

// FuzzRecipientDomain checks that any address either is refused or yields
// a domain fit for a DNS query, and that downgrading never panics.
func FuzzRecipientDomain(f *testing.F) {
	for _, s := range []string{"bob@example.org", "jörg@bücher.test", "a@[127.0.0.1]", "\"a b\"@x.test", "x@EXAMPLE.org.", "@x", "x@"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, addr string) {
		downgradeAddress(addr)
		d, err := recipientDomain(addr)
		if err != nil {
			return
		}
		if d == "" || len(d) > 253 || strings.ContainsAny(d, " @[]\r\n") || d != strings.ToLower(d) || !isASCII(d) {
			t.Fatalf("domain %q from %q", d, addr)
		}
	})
}

// FuzzSevenBit: the 8BITMIME downgrade never panics, leaves a message
// without 8-bit bytes as it is, and has nothing left to do on its own
// output (what it could not convert the first time it cannot the second).
func FuzzSevenBit(f *testing.F) {
	for _, s := range []string{
		"Subject: x\r\n\r\nGrüße\r\n",
		"MIME-Version: 1.0\r\nContent-Transfer-Encoding: 8bit\r\n\r\nä\r\n",
		"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\nContent-Transfer-Encoding: 8bit\r\n\r\npre\r\n--b\r\n\r\nä\r\n--b\r\nContent-Type: message/rfc822\r\n\r\nSubject: ö\r\n\r\nü\r\n--b--\r\n",
		"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: multipart/alternative; boundary=c\r\n\r\n--c\r\n\r\nä\r\n--c--\r\n--b--\r\n",
		"MIME-Version: 1.0\nContent-Type: text/plain\nContent-Transfer-Encoding: base64\n\n\xff\xfe\n",
		"\xff",
		"MIME-Version: 1.0\r\nContent-Transfer-Encoding:\r\n 8bit\r\n\r\n\xe9",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		peer8bit := len(data) > 0 && data[0]&1 == 1
		out, changed, err := sevenBit(message(string(data)), peer8bit)
		if err != nil {
			t.Fatal(err)
		}
		if !has8bit(data) && !containsFold(data, "binary") && changed {
			t.Fatal("a 7-bit message was changed")
		}
		if peer8bit && !containsFold(data, "binary") && changed {
			t.Fatal("a message without binary parts was changed for an 8BITMIME peer")
		}
		if !changed {
			return
		}
		b := make([]byte, out.Size())
		out.ReadAt(b, 0)
		if _, again, err := sevenBit(message(string(b)), peer8bit); err != nil || again {
			t.Fatalf("a second pass changed the output again (err %v):\n%q\n%q", err, data, b)
		}
	})
}
