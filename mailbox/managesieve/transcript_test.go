package managesieve

import (
	"bufio"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestTranscripts plays each testdata/transcripts/*.txt against a real
// server: "C:" lines are sent with CRLF, "S:" lines must be read back
// exactly, in order; "#" lines are comments.
func TestTranscripts(t *testing.T) {
	files, err := filepath.Glob("testdata/transcripts/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no transcripts: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			env := newTestEnv(t, func(o *Options) { o.AllowInsecureAuth = true })
			playTranscript(t, env.addr, file)
		})
	}
}

func playTranscript(t *testing.T, addr, file string) {
	script, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReader(conn)
	for i, line := range strings.Split(strings.TrimSuffix(string(script), "\n"), "\n") {
		where := file + ":" + strconv.Itoa(i+1)
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "C: ") || line == "C:":
			if _, err := conn.Write([]byte(strings.TrimPrefix(strings.TrimPrefix(line, "C:"), " ") + "\r\n")); err != nil {
				t.Fatalf("%s: send: %v", where, err)
			}
		case strings.HasPrefix(line, "S: ") || line == "S:":
			got, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("%s: read: %v (got %q)", where, err, got)
			}
			if want := strings.TrimPrefix(strings.TrimPrefix(line, "S:"), " ") + "\r\n"; got != want {
				t.Fatalf("%s:\n got %q\nwant %q", where, got, want)
			}
		default:
			t.Fatalf("%s: line starts with neither C: nor S:", where)
		}
	}
}
