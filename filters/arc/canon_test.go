package arc

import (
	"bytes"
	"testing"
)

func canonBody(body string, relaxed bool, chunk int) string {
	var out bytes.Buffer
	c := &bodyCanon{out: &out, relaxed: relaxed}
	for len(body) > 0 {
		n := min(chunk, len(body))
		c.Write([]byte(body[:n]))
		body = body[n:]
	}
	c.Close()
	return out.String()
}

// The examples of RFC 6376 section 3.4.5, and the empty-body rules.
func TestCanonicalization(t *testing.T) {
	if got := canonHeaderRelaxed("A: X\r\n"); got != "a:X\r\n" {
		t.Errorf("relaxed A: %q", got)
	}
	if got := canonHeaderRelaxed("B : Y\t\r\n\tZ  \r\n"); got != "b:Y Z\r\n" {
		t.Errorf("relaxed B: %q", got)
	}
	body := " C \r\nD \t E\r\n\r\n\r\n"
	if got := canonBody(body, true, 1<<20); got != " C\r\nD E\r\n" {
		t.Errorf("relaxed body: %q", got)
	}
	if got := canonBody(body, false, 1<<20); got != " C \r\nD \t E\r\n" {
		t.Errorf("simple body: %q", got)
	}
	for _, c := range []struct {
		body    string
		relaxed bool
		want    string
	}{
		{"", true, ""}, {"", false, "\r\n"}, {"\r\n\r\n", true, ""}, {"\r\n\r\n", false, "\r\n"},
		{"no end", true, "no end\r\n"}, {"a\rb\r", false, "a\rb\r\r\n"}, {"x\n\ny\n", false, "x\r\n\r\ny\r\n"},
	} {
		if got := canonBody(c.body, c.relaxed, 1<<20); got != c.want {
			t.Errorf("body %q relaxed=%v: %q, want %q", c.body, c.relaxed, got, c.want)
		}
	}
}

func TestStripBValue(t *testing.T) {
	for in, want := range map[string]string{
		"ARC-Seal: i=1; b=abc\r\n\t def; d=x\r\n": "ARC-Seal: i=1; b=; d=x\r\n",
		"ARC-Seal: i=1; bh=keep; b=abc\r\n":       "ARC-Seal: i=1; bh=keep; b=\r\n",
		"ARC-Seal: i=1; d=x\r\n":                  "ARC-Seal: i=1; d=x\r\n",
	} {
		if got := stripBValue(in); got != want {
			t.Errorf("stripBValue(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzBodyCanon: the streaming body canonicalization gives the same bytes
// however the body is cut into writes, and relaxed output is a fixed point.
func FuzzBodyCanon(f *testing.F) {
	for _, s := range []string{"", " C \r\nD \t E\r\n\r\n\r\n", "a\rb\r", "\r", "\n\n", "x \t\r\n \r\n", "line\r\n\r\n\r\nend"} {
		f.Add(s, 1)
	}
	f.Fuzz(func(t *testing.T, body string, chunk int) {
		chunk = 1 + (chunk&0xff)%64
		for _, relaxed := range []bool{false, true} {
			whole := canonBody(body, relaxed, 1<<20)
			if cut := canonBody(body, relaxed, chunk); cut != whole {
				t.Fatalf("relaxed=%v: chunks of %d give %q, whole %q", relaxed, chunk, cut, whole)
			}
			if relaxed {
				if again := canonBody(whole, true, 1<<20); again != whole {
					t.Fatalf("relaxed not a fixed point: %q -> %q", whole, again)
				}
			}
		}
	})
}
