package pop3

import (
	"bufio"
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseCommand(t *testing.T) {
	cases := []struct {
		line string
		name string
		rest string
		args []string
		err  error
	}{
		{"STAT\r\n", "STAT", "", nil, nil},
		{"retr 1", "RETR", "1", []string{"1"}, nil},
		{"TOP 1  10\r", "TOP", "1  10", []string{"1", "10"}, nil},
		{"PASS  two words ", "PASS", " two words ", []string{"two", "words"}, nil},
		{"top\t2\t3", "TOP", "2\t3", []string{"2", "3"}, nil},
		{"", "", "", nil, errEmptyCommand},
		{"   \r\n", "", "", nil, errEmptyCommand},
		{"XYZZY", "", "", nil, errBadKeyword},
		{"GO", "", "", nil, errBadKeyword},
		{"RE1R 1", "", "", nil, errBadKeyword},
		{"USER a\x00b", "", "", nil, errControlInInput},
		{"NOOP\rX", "", "", nil, errControlInInput},
	}
	for _, tc := range cases {
		cmd, err := parseCommand(tc.line)
		if !errors.Is(err, tc.err) {
			t.Errorf("parseCommand(%q) error %v, want %v", tc.line, err, tc.err)
			continue
		}
		if err != nil {
			continue
		}
		if cmd.Name != tc.name || cmd.Rest != tc.rest || strings.Join(cmd.Args, ",") != strings.Join(tc.args, ",") {
			t.Errorf("parseCommand(%q) = %+v", tc.line, cmd)
		}
	}
}

func TestParseNumber(t *testing.T) {
	for in, want := range map[string]int{"1": 1, "007": 7, "999999999": 999999999} {
		if n, ok := parseNumber(in); !ok || n != want {
			t.Errorf("parseNumber(%q) = %d, %v", in, n, ok)
		}
	}
	for _, in := range []string{"", "-1", "+1", "1x", "1000000000", " 1", "１"} {
		if _, ok := parseNumber(in); ok {
			t.Errorf("parseNumber(%q) accepted", in)
		}
	}
}

func TestSendMessage(t *testing.T) {
	cases := []struct {
		stored string
		lines  int
		want   string
	}{
		{"", -1, ".\r\n"},
		{"a\nb\n", -1, "a\r\nb\r\n.\r\n"},
		{"a\r\nb", -1, "a\r\nb\r\n.\r\n"},
		{".\n..x\n", -1, "..\r\n...x\r\n.\r\n"},
		{"a\rb\n", -1, "a\rb\r\n.\r\n"},
		{"x\r", -1, "x\r\n.\r\n"},
		{"\n\n", -1, "\r\n\r\n.\r\n"},
		{"H: 1\n\nb1\nb2\n", 1, "H: 1\r\n\r\nb1\r\n.\r\n"},
		{"H: 1\n\nb1\nb2\n", 0, "H: 1\r\n\r\n.\r\n"},
		{"H: 1\r\n\r\n.b1\r\n", 1, "H: 1\r\n\r\n..b1\r\n.\r\n"},
	}
	for _, tc := range cases {
		var out bytes.Buffer
		w := bufio.NewWriter(&out)
		sent, err := sendMessage(w, strings.NewReader(tc.stored), tc.lines)
		if err != nil {
			t.Fatal(err)
		}
		w.Flush()
		if out.String() != tc.want {
			t.Errorf("sendMessage(%q, %d) = %q, want %q", tc.stored, tc.lines, out.String(), tc.want)
		}
		if tc.lines < 0 {
			size, _, err := measureMessage(strings.NewReader(tc.stored))
			if err != nil || size != sent {
				t.Errorf("measureMessage(%q) = %d, sent %d", tc.stored, size, sent)
			}
		}
	}
}

func TestMeasureFindsEightBitHeaders(t *testing.T) {
	if _, eight, _ := measureMessage(strings.NewReader("Subject: Grüße\n\nx\n")); !eight {
		t.Error("8-bit header not seen")
	}
	if _, eight, _ := measureMessage(strings.NewReader("Subject: hi\n\nGrüße\n")); eight {
		t.Error("8-bit body taken for header")
	}
}

func TestParseSizeList(t *testing.T) {
	now := time.Unix(1234, 0)
	in := "/3 10 999\n" +
		"1700000000.M1P2.host,S=12:2,S 40 3:999:0\n" +
		"1700000001.M1P2.host with space 41 4:999:1\n" +
		"broken line\n" +
		"x 1 0:5:0\n" +
		"../evil 1 5:5:0\n" +
		"1700000002.M1P2.host 42 5:999\n"
	l := parseSizeList(strings.NewReader(in), now)
	if l.nextUID != 10 || l.uidValidity != 999 || len(l.byKey) != 3 {
		t.Fatalf("parsed %+v", l)
	}
	e := l.byKey["1700000000.M1P2.host,S=12"]
	if e.size != 40 || e.uid != 3 || e.uidl() != "UID3-999" {
		t.Errorf("entry %+v", e)
	}
	if !l.byKey["1700000001.M1P2.host with space"].utf8Head {
		t.Error("utf8 field lost")
	}
	fresh := parseSizeList(strings.NewReader("/9 1 2\nx 1 1:1:0\n"), now)
	if fresh.nextUID != 1 || fresh.uidValidity != 1234 || len(fresh.byKey) != 0 {
		t.Errorf("unknown version not ignored: %+v", fresh)
	}
	// Round trip.
	var entries []sizeEntry
	for _, e := range l.byKey {
		entries = append(entries, e)
	}
	again := parseSizeList(bytes.NewReader(l.marshal(entries)), now)
	if len(again.byKey) != 3 || again.nextUID != 10 || again.version != 3 {
		t.Errorf("round trip: %+v", again)
	}
}
