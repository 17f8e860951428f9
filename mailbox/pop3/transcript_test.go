package pop3

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTranscripts plays every testdata/transcripts/*.txt against a real
// server. Each starts with a fresh maildir holding the two messages below.
//
// Script lines:
//
//	# comment
//	!insecure-auth      allow USER/PASS and AUTH without TLS (before any C:/S:)
//	C: text             the client sends text + CRLF
//	S: text             the next server line is exactly text
//	S: text*            the next server line starts with text
//	CLOSED              the server has closed the connection
func TestTranscripts(t *testing.T) {
	files, err := filepath.Glob("testdata/transcripts/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no transcripts: %v", err)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txt"), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
			var opts []envOption
			for _, l := range lines {
				if l == "!insecure-auth" {
					opts = append(opts, func(o *Options) { o.AllowInsecureAuth = true })
				}
			}
			env := newTestEnv(t, opts...)
			env.deliver(transcriptMessage1)
			env.deliver(transcriptMessage2)
			playTranscript(t, env, lines)
		})
	}
}

const (
	// 68 octets as POP3 sends it.
	transcriptMessage1 = "From: a@example.test\nSubject: one\n\nHello\n.dot line\n..two dots\n"
	// 35 octets: the missing final newline is added.
	transcriptMessage2 = "Subject: two\n\nno newline at end"
)

func playTranscript(t *testing.T, env *testEnv, lines []string) {
	c := env.dial() // reads and checks the greeting
	for i, l := range lines {
		where := func() string { return fmt.Sprintf("line %d (%s)", i+1, l) }
		switch {
		case l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, "!"):
		case strings.HasPrefix(l, "C: "):
			c.send(strings.TrimPrefix(l, "C: "))
		case strings.HasPrefix(l, "S: "):
			want := strings.TrimPrefix(l, "S: ")
			got := c.line()
			if prefix, ok := strings.CutSuffix(want, "*"); ok {
				if !strings.HasPrefix(got, prefix) {
					t.Fatalf("%s: got %q", where(), got)
				}
			} else if got != want {
				t.Fatalf("%s: got %q", where(), got)
			}
		case l == "CLOSED":
			if !c.closed() {
				t.Fatalf("%s: connection still open", where())
			}
		default:
			t.Fatalf("%s: bad script line", where())
		}
	}
}
