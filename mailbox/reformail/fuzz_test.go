package reformail

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"
)

// FuzzHeaderParser feeds arbitrary messages through the header machinery
// with every editing option at once, and through -x and -f1: nothing may
// panic, and the copy keeps the body.
func FuzzHeaderParser(f *testing.F) {
	f.Add([]byte("Subject: a\n b\nX-A: 1\n\nbody\n"))
	f.Add([]byte("From x@y Mon Jan  1 00:00:00 2024\r\nReturn-Path: <>\r\n\r\n>From b\r\n"))
	f.Add([]byte("\n\n:\n \n\t\nno colon\nX-A:\n\n"))
	f.Add([]byte("From: \"a, b\" <a@b>, (c) d@e\nErrors-To: :;\n\nFrom z\n"))
	cfg := Config{Now: func() time.Time { return time.Unix(0, 0).UTC() }, Hostname: "h"}
	argSets := [][]string{
		{"-a", "X-A: new", "-A", "Y: y", "-i", "subject: n", "-I", "to:", "-u", "x-a:", "-U", "received:", "-R", "from:", "Sender:", "-c", "-d1"},
		{"-f1", "-x", "subject:", "-X", "x-a:"},
		{"-f0", "-I", "X-A:"},
		{"-f1"},
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		for _, args := range argSets {
			var out bytes.Buffer
			code := Run(context.Background(), cfg, args, bytes.NewReader(msg), &out, io.Discard)
			if code != 0 && code != 1 {
				t.Fatalf("%q: exit %d", args, code)
			}
		}
		// The plain copy writes the body that follows the first blank line
		// after the header, line by line.
		var out bytes.Buffer
		Run(context.Background(), cfg, nil, bytes.NewReader(msg), &out, io.Discard)
		if i := bytes.Index(msg, []byte("\n\n")); i >= 0 && !bytes.Contains(msg[:i], []byte("\r")) && !bytes.HasPrefix(msg, []byte("\n")) {
			body := strings.TrimSuffix(string(msg[i+2:]), "\n")
			if body != "" && !bytes.Contains(msg[i+2:], []byte("\r")) && !strings.Contains(out.String(), body) {
				t.Fatalf("body %q lost from %q", body, out.String())
			}
		}
	})
}
