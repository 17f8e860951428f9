package gateway

import (
	"strings"
	"testing"
)

// countHops counts the Received fields of the header only: folded ones
// once, any case, not Received-SPF nor a Received line in the body.
func TestCountHops(t *testing.T) {
	cases := []struct {
		msg  string
		want int
	}{
		{"Subject: x\r\n\r\nReceived: in the body\r\n", 0},
		{"Received: from a\r\n\tby b; date\r\nreceived: from c by d\r\nRECEIVED:x\r\nReceived-SPF: pass\r\nX-Received: y\r\nSubject: s\r\n\r\nReceived: body\r\n", 3},
		{"Received: a\nReceived: b\n\nReceived: c\n", 2},
		{"Received: no body, no end", 1},
		{"", 0},
	}
	for _, c := range cases {
		if got := countHops([]byte(c.msg)); got != c.want {
			t.Errorf("countHops(%q) = %d, want %d", c.msg, got, c.want)
		}
	}
	over := strings.Repeat("Received: from x by y; date\r\n", 101) + "\r\nbody\r\n"
	if ref := loopRefusal([]byte(over), 100); ref == nil || ref.Code != 554 || ref.Enhanced != "5.4.6" {
		t.Errorf("101 hops over a limit of 100: %v", ref)
	}
	if ref := loopRefusal([]byte(over), 101); ref != nil {
		t.Errorf("101 hops within a limit of 101: %v", ref)
	}
}
