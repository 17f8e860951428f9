package pop3

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
	"time"
)

func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"USER alice", "PASS a b c\r\n", "TOP 1 10", "retr\t1", "", "\x00", "AUTH PLAIN =", "XXXXXXXX"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		cmd, err := parseCommand(line)
		if err != nil {
			return
		}
		if len(cmd.Name) < 3 || len(cmd.Name) > 4 || strings.ToUpper(cmd.Name) != cmd.Name {
			t.Fatalf("bad keyword %q from %q", cmd.Name, line)
		}
		for _, a := range cmd.Args {
			if a == "" || strings.ContainsAny(a, " \t\r\n\x00") {
				t.Fatalf("bad argument %q from %q", a, line)
			}
		}
		if strings.ContainsAny(cmd.Rest, "\r\n\x00") {
			t.Fatalf("control characters in %q from %q", cmd.Rest, line)
		}
	})
}

// FuzzSendMessage checks the properties RETR and TOP must have for any
// stored bytes: every line ends in CRLF, no line is a lone "." before the
// terminator, the announced size is the unstuffed octet count, and TOP is a
// prefix of RETR.
func FuzzSendMessage(f *testing.F) {
	for _, s := range []string{"", "a\nb", ".\n.\r\n..", "H: 1\r\n\r\nbody\n", "\r", "\r\r\n\n", "x\n\n.y"} {
		f.Add([]byte(s), 1)
	}
	f.Fuzz(func(t *testing.T, stored []byte, lines int) {
		size, _, err := measureMessage(bytes.NewReader(stored))
		if err != nil {
			t.Fatal(err)
		}
		retr := send(t, stored, -1, size)
		if lines < 0 {
			lines = -lines
		}
		top := send(t, stored, lines%50, -1)
		body := strings.TrimSuffix(retr, ".\r\n")
		topBody := strings.TrimSuffix(top, ".\r\n")
		if !strings.HasPrefix(body, topBody) {
			t.Fatalf("TOP %q is not a prefix of RETR %q", topBody, body)
		}
	})
}

func send(t *testing.T, stored []byte, lines int, wantSize int64) string {
	var out bytes.Buffer
	w := bufio.NewWriter(&out)
	sent, err := sendMessage(w, bytes.NewReader(stored), lines)
	if err != nil {
		t.Fatal(err)
	}
	w.Flush()
	if wantSize >= 0 && sent != wantSize {
		t.Fatalf("sent %d, measured %d", sent, wantSize)
	}
	s := out.String()
	if !strings.HasSuffix(s, ".\r\n") {
		t.Fatalf("no terminator: %q", s)
	}
	body := strings.TrimSuffix(s, ".\r\n")
	if body != "" && !strings.HasSuffix(body, "\r\n") {
		t.Fatalf("body does not end in CRLF: %q", body)
	}
	var unstuffed int64
	for _, l := range strings.SplitAfter(body, "\r\n") {
		if l == "" {
			continue
		}
		if strings.Contains(strings.TrimSuffix(l, "\r\n"), "\n") || !strings.HasSuffix(l, "\r\n") {
			t.Fatalf("bare LF or unterminated line %q", l)
		}
		if l == ".\r\n" {
			t.Fatalf("unstuffed dot line in %q", s)
		}
		if strings.HasPrefix(l, ".") {
			l = l[1:]
		}
		unstuffed += int64(len(l))
	}
	if unstuffed != sent {
		t.Fatalf("unstuffed %d octets, reported %d", unstuffed, sent)
	}
	return s
}

func FuzzParseSizeList(f *testing.F) {
	for _, s := range []string{"/3 5 100\nname 10 1:100:0\n", "/2 1 1\nn 1 1:1\n", "garbage", "/3 x y\n", "/3 2 2\n" + strings.Repeat("z", 5000) + " 1 1:1:1\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data string) {
		l := parseSizeList(strings.NewReader(data), time.Unix(1, 0))
		if l.nextUID == 0 {
			t.Fatal("nextUID 0")
		}
		for key, e := range l.byKey {
			if strings.ContainsAny(key, ":/\n") || e.uid == 0 {
				t.Fatalf("bad entry %q %+v", key, e)
			}
			id := e.uidl()
			if len(id) > 70 || strings.ContainsFunc(id, func(r rune) bool { return r < 0x21 || r > 0x7e }) {
				t.Fatalf("bad uidl %q", id)
			}
		}
	})
}
