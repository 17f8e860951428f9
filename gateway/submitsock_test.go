package gateway

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
)

func TestParseSubmitRequest(t *testing.T) {
	req, err := parseSubmitRequest([]byte(`{"from":"<>","rcpts":["a@b"],"notify":"never","size":12}`), 100)
	if err != nil || req.From != "<>" || len(req.Rcpts) != 1 || req.Size != 12 || req.Notify != "never" {
		t.Fatalf("%+v %v", req, err)
	}
	for _, bad := range []string{``, `{`, `{"rcpts":[],"size":1}`, `{"rcpts":["a"],"size":-1}`, `{"rcpts":["a"],"size":101}`, `[1]`, `{"rcpts":["a\r\nX: y"],"size":1}`, `{"from":"a\u0000b","rcpts":["a"],"size":1}`} {
		if _, err := parseSubmitRequest([]byte(bad), 100); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestReadLimitedLine(t *testing.T) {
	br := bufio.NewReaderSize(strings.NewReader(strings.Repeat("x", 100)+"\nrest"), 16)
	line, err := readLimitedLine(br, 200)
	if err != nil || len(line) != 100 {
		t.Fatalf("%d %v", len(line), err)
	}
	br = bufio.NewReaderSize(strings.NewReader(strings.Repeat("x", 300)+"\n"), 16)
	if _, err := readLimitedLine(br, 200); err == nil {
		t.Error("over-long line accepted")
	}
	br = bufio.NewReaderSize(strings.NewReader("no newline"), 16)
	if _, err := readLimitedLine(br, 200); err == nil {
		t.Error("line without LF accepted")
	}
}

// FuzzSubmitRequest: any request line is accepted with sane fields or
// refused with an error, never a panic.
func FuzzSubmitRequest(f *testing.F) {
	f.Add([]byte(`{"from":"a@b","rcpts":["c@d"],"size":10}`))
	f.Add([]byte(`{"rcpts":["c@d","e@f"],"size":0,"envid":"x","ret":"hdrs"}`))
	f.Add([]byte(`{"rcpts":null,"size":1e99}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		req, err := parseSubmitRequest(line, 1<<20)
		if err != nil {
			return
		}
		if len(req.Rcpts) == 0 || len(req.Rcpts) > maxSubmitRcpts || req.Size < 0 || req.Size > 1<<20 {
			t.Fatalf("accepted %+v", req)
		}
		for _, f := range append([]string{req.From, req.FullName, req.EnvID}, req.Rcpts...) {
			if strings.ContainsAny(f, "\x00\r\n") {
				t.Fatalf("accepted a control character: %q", f)
			}
		}
		br := bufio.NewReader(bytes.NewReader(append(line, '\n')))
		if _, err := readLimitedLine(br, maxSubmitHeader); err != nil && len(line) < maxSubmitHeader && !bytes.Contains(line, []byte("\n")) {
			t.Fatalf("line of %d bytes not read: %v", len(line), err)
		}
	})
}
