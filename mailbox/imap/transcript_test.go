package imap

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestTranscripts plays every testdata/transcripts/*.txt against a fresh
// server with fresh Maildirs. Script lines:
//
//	# comment                  ignored, as are blank lines
//	!courier                   (first lines only) run with CourierNamespace
//	!deliver FOLDER FILE       deliver testdata/messages/FILE into alice's FOLDER (new/)
//	!eof                       the server must close the connection now
//	C: text                    send text + CRLF
//	S: text                    the next line must be exactly text
//	S~ regexp                  the next line must match regexp (whole line)
//	S^ prefix                  the next line must start with prefix
func TestTranscripts(t *testing.T) {
	files, err := filepath.Glob("testdata/transcripts/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no transcripts: %v", err)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txt"), func(t *testing.T) {
			runTranscript(t, file)
		})
	}
}

func runTranscript(t *testing.T, file string) {
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	courier := false
	for _, l := range lines {
		if strings.TrimSpace(l) == "!courier" {
			courier = true
		}
	}
	env := newTestEnv(t, func(o *Options) { o.CourierNamespace = courier })
	env.maildir("alice")
	var conn *rawConn
	for n, l := range lines {
		l = strings.TrimRight(l, "\r")
		where := file + ":" + itoa(n+1)
		switch {
		case l == "" || strings.HasPrefix(l, "#") || l == "!courier":
		case strings.HasPrefix(l, "!deliver "):
			f := strings.Fields(l)
			msg, err := os.ReadFile(filepath.Join("testdata/messages", f[2]))
			if err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			env.deliver("alice", f[1], string(msg))
		case l == "!eof":
			if conn == nil {
				t.Fatalf("%s: no connection", where)
			}
			if line, err := conn.readLine(); err == nil {
				t.Fatalf("%s: want connection closed, got %q", where, line)
			}
		case strings.HasPrefix(l, "C: "):
			if conn == nil {
				conn = env.dial()
				conn.expect("* OK [CAPABILITY ")
			}
			conn.send(l[3:] + "\r\n")
		case strings.HasPrefix(l, "S: "), strings.HasPrefix(l, "S~ "), strings.HasPrefix(l, "S^ "):
			if conn == nil {
				conn = env.dial()
			}
			got, err := conn.readLine()
			if err != nil {
				t.Fatalf("%s: want %q, read error %v", where, l, err)
			}
			want := l[3:]
			var okLine bool
			switch l[1] {
			case ':':
				okLine = got == want
			case '^':
				okLine = strings.HasPrefix(got, want)
			case '~':
				okLine = regexp.MustCompile("^(?:" + want + ")$").MatchString(got)
			}
			if !okLine {
				if os.Getenv("IMAP_TRANSCRIPT_RECORD") != "" {
					// Authoring aid: show what the server said and go on.
					t.Logf("%s: got %s", where, got)
					continue
				}
				t.Fatalf("%s:\n got: %s\nwant: %s", where, got, l)
			}
		default:
			t.Fatalf("%s: bad script line %q", where, l)
		}
	}
	// Nothing unexpected may be left unread.
	if conn != nil {
		conn.c.Close()
	}
}

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}
