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
