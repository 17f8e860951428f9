package proxyproto

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
)

// FuzzProxyHeader: the PROXY v1/v2 reader never panics and never returns
// an invalid address for a PROXY command.
func FuzzProxyHeader(f *testing.F) {
	f.Add([]byte("PROXY TCP4 192.0.2.1 198.51.100.1 1234 25\r\n"))
	f.Add([]byte("PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n"))
	f.Add([]byte("PROXY UNKNOWN\r\n"))
	f.Add([]byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c\xc0\x00\x02\x09\xc6\x33\x64\x02\x04\xd2\x00\x19"))
	f.Add([]byte("\r\n\r\n\x00\r\nQUIT\n\x21\x21\x00\x24" + strings.Repeat("\x20", 36)))
	f.Add([]byte("\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, in []byte) {
		h, err := ReadHeader(bufio.NewReader(bytes.NewReader(in)))
		if err != nil || h.Local {
			return
		}
		if !h.Src.Addr().IsValid() || !h.Dst.Addr().IsValid() {
			t.Fatalf("invalid addresses %v %v from %q", h.Src, h.Dst, in)
		}
	})
}
