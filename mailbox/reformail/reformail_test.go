package reformail

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func runReformail(t *testing.T, cfg Config, input string, args ...string) (string, string, int) {
	t.Helper()
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return time.Date(2024, 3, 5, 7, 8, 9, 0, time.UTC) }
	}
	var out, errOut bytes.Buffer
	code := Run(context.Background(), cfg, args, strings.NewReader(input), &out, &errOut)
	return out.String(), errOut.String(), code
}

func TestFromLineAddUsesClockAndQuotesBody(t *testing.T) {
	out, _, code := runReformail(t, Config{}, "From: a@b.example\n\nFrom here\n>From there\n", "-f1")
	want := "From a@b.example Tue Mar  5 07:08:09 2024\nFrom: a@b.example\n\n>From here\n>>From there\n"
	if code != 0 || out != want {
		t.Fatalf("got %d %q, want %q", code, out, want)
	}
}

// Courier drops the first body line when the From_ line is followed by the
// blank line (an empty header); we keep it.
func TestFromLineRemoveEmptyHeaderKeepsBody(t *testing.T) {
	out, _, _ := runReformail(t, Config{}, "From x@y Mon Jan  1 00:00:00 2024\n\nbody1\n>From b\n", "-f0")
	want := "Return-Path: <x@y>\n\nbody1\nFrom b\n"
	if out != want {
		t.Fatalf("got %q, want %q", out, want)
	}
}

func TestMessageIDGenerated(t *testing.T) {
	out, _, _ := runReformail(t, Config{Hostname: "mx.example", PID: 7}, "Subject: s\n\n", "-a", "Message-ID:")
	if !maskMessageID.MatchString(out) || !strings.Contains(out, "reformail@mx.example>") {
		t.Fatalf("no generated Message-ID in %q", out)
	}
	a, _, _ := runReformail(t, Config{Hostname: "h"}, "S: s\n\n", "-A", "Message-ID:")
	b, _, _ := runReformail(t, Config{Hostname: "h"}, "S: s\n\n", "-A", "Message-ID:")
	if a == b {
		t.Fatalf("two runs in one second made the same Message-ID: %q", a)
	}
}

// A body line far longer than the read buffer is copied whole, and a CRLF
// whose CR is the last byte of a read chunk still becomes one line ending.
func TestLongBodyLineStreamed(t *testing.T) {
	long := strings.Repeat("x", readChunk-1) + "\r\n" + strings.Repeat("y", 3*readChunk+17) + "\r\nend\r\n"
	out, _, code := runReformail(t, Config{}, "Subject: s\r\n\r\n"+long)
	want := "Subject: s\n\n" + strings.ReplaceAll(long, "\r\n", "\n")
	if code != 0 || out != want {
		t.Fatalf("exit %d, output differs (len %d want %d)", code, len(out), len(want))
	}
	out, _, _ = runReformail(t, Config{}, "Subject: s\n\n"+strings.ReplaceAll(long, "\r\n", "\n"), "-d1")
	if out != "Subject: s\r\n\r\n"+long {
		t.Fatalf("-d1 did not restore CRLF endings")
	}
}

func TestHeaderTooLongRefused(t *testing.T) {
	_, stderr, code := runReformail(t, Config{}, "Subject: "+strings.Repeat("a", maxHeaderLine+10)+"\n\nb\n")
	if code != 1 || !strings.Contains(stderr, "header too long") {
		t.Fatalf("exit %d stderr %q", code, stderr)
	}
	p := newPipeline(&options{}, newLineReader(strings.NewReader("S: x\n"+strings.Repeat(" y\n", maxHeaderLine/3+1))), env{now: time.Now})
	if err := p.run(&copySink{o: &options{}, w: nil}); !errors.Is(err, ErrHeaderTooLong) {
		t.Fatalf("folded field over the bound: %v", err)
	}
}

// A large message goes through without its body being held: the output is
// written as the input is read (the pipe would block otherwise).
func TestStreamsThroughPipe(t *testing.T) {
	pr, pw := io.Pipe()
	or, ow := io.Pipe()
	done := make(chan int, 1)
	go func() {
		done <- Run(context.Background(), Config{}, []string{"-a", "X: 1"}, pr, ow, io.Discard)
		ow.Close()
	}()
	go func() {
		pw.Write([]byte("Subject: s\n\n"))
		line := []byte(strings.Repeat("z", 999) + "\n")
		for i := 0; i < 20000; i++ { // 20 MB
			if _, err := pw.Write(line); err != nil {
				return
			}
		}
		pw.Close()
	}()
	n, err := io.Copy(io.Discard, or)
	if err != nil || n != int64(len("Subject: s\nX: 1\n\n"))+20000*1000 {
		t.Fatalf("copied %d: %v", n, err)
	}
	if code := <-done; code != 0 {
		t.Fatalf("exit %d", code)
	}
}

func TestDuplicateCacheRotation(t *testing.T) {
	dir := t.TempDir()
	cache := filepath.Join(dir, "dup")
	send := func(id string) int {
		_, stderr, code := runReformail(t, Config{}, "Message-ID: "+id+"\n\nb\n", "-D", "20", cache)
		if stderr != "" {
			t.Fatalf("stderr %q", stderr)
		}
		return code
	}
	steps := []struct {
		id   string
		exit int
		file string
	}{
		{"<a@x>", 1, "<a@x>\x00\x00"},
		{"<b@x>", 1, "<a@x>\x00<b@x>\x00\x00"},
		{"<a@x>", 0, "<b@x>\x00<a@x>\x00\x00"}, // seen: moved to the newest end
		{"<c@x>", 1, "<b@x>\x00<a@x>\x00<c@x>\x00\x00"},
		{"<dddddddddd@x>", 1, "<dddddddddd@x>\x00\x00"}, // 20 bytes or more: oldest go
		{"<b@x>", 1, "<b@x>\x00\x00"},                   // 21 bytes: the oldest goes
	}
	for i, s := range steps {
		if got := send(s.id); got != s.exit {
			t.Fatalf("step %d %s: exit %d, want %d", i, s.id, got, s.exit)
		}
		b, _ := os.ReadFile(cache)
		if string(b) != s.file {
			t.Fatalf("step %d: cache %q, want %q", i, b, s.file)
		}
	}
	// Courier's file, with stale bytes after the end marker, reads the same.
	os.WriteFile(cache, []byte("<q@x>\x00\x00stale\x00"), 0o600)
	if send("<stale>") != 1 {
		t.Fatal("stale bytes after the end marker were read as an entry")
	}
}

func TestDuplicateCacheUnusable(t *testing.T) {
	_, stderr, code := runReformail(t, Config{}, "Message-ID: <a@b>\n\n", "-D", "100", filepath.Join(t.TempDir(), "no", "such", "dir"))
	if code != 75 || !strings.Contains(stderr, "cache") {
		t.Fatalf("exit %d stderr %q, want 75", code, stderr)
	}
}

func TestSplitFilenoWidths(t *testing.T) {
	in := "From a\n\n1\nFrom b\n\n2\n"
	cases := []struct {
		env  []string
		want string
	}{
		{nil, "000 001 "},
		{[]string{"FILENO=08"}, "08 09 "},
		{[]string{"FILENO=99"}, "99 100 "},
		{[]string{"FILENO=abc"}, "abc abc "},
	}
	for _, c := range cases {
		env := append([]string{"PATH=/usr/bin:/bin"}, c.env...)
		out, stderr, code := runReformail(t, Config{Env: env}, in, "-s", "sh", "-c", `cat >/dev/null; printf "%s " "$FILENO"`)
		if code != 0 || out != c.want {
			t.Errorf("env %v: exit %d out %q stderr %q, want %q", c.env, code, out, stderr, c.want)
		}
	}
}

func TestSplitCommandMissing(t *testing.T) {
	_, stderr, code := runReformail(t, Config{Env: []string{"PATH=/nonexistent"}}, "From a\n\nb\n", "-s", "no-such-command-here")
	if code != 1 || !strings.Contains(stderr, "exec") {
		t.Fatalf("exit %d stderr %q", code, stderr)
	}
}

func TestParseArgsUsage(t *testing.T) {
	for _, args := range [][]string{{"-z"}, {"-a"}, {"-R", "a:"}, {"-D", "1"}, {"-s"}, {"-x", "a:", "-s", "cat"}, {"-D", "1", "f", "-a", "X: y"}} {
		if _, err := parseArgs(args, func() string { return "<id>" }); !errors.Is(err, errUsage) {
			t.Errorf("%q: %v, want usage error", args, err)
		}
	}
}
