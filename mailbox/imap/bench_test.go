package imap

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fillFolder writes n small messages straight into a Maildir's cur/ (as a
// migrated mailbox would look), faster than n fsync'd deliveries.
func fillFolder(tb testing.TB, dir string, n int) {
	tb.Helper()
	for i := 0; i < n; i++ {
		body := fmt.Sprintf("Subject: message %d\r\nFrom: a@example.org\r\n\r\nbody %d\r\n", i, i)
		flags := ""
		if i%3 == 0 {
			flags = "S"
		}
		name := fmt.Sprintf("%d.M%dP1.bench,S=%d:2,%s", 1700000000+i, i, len(body), flags)
		if err := os.WriteFile(filepath.Join(dir, "cur", name), []byte(body), 0o600); err != nil {
			tb.Fatal(err)
		}
	}
}

// BenchmarkFetchFlags: UID FETCH 1:* FLAGS on a 10,000-message INBOX over a
// real connection, the baseline for later work on big mailboxes.
func BenchmarkFetchFlags(b *testing.B) {
	env := newBenchEnv(b)
	fillFolder(b, env.maildirPath("alice"), 10000)
	c, err := net.Dial("tcp", env.addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReaderSize(c, 64<<10)
	readUntil := func(prefix string) int {
		n := 0
		for {
			c.SetReadDeadline(time.Now().Add(30 * time.Second))
			line, err := br.ReadString('\n')
			if err != nil {
				b.Fatal(err)
			}
			n++
			if strings.HasPrefix(line, prefix) {
				if !strings.HasPrefix(line, prefix+"OK") {
					b.Fatalf("%q", line)
				}
				return n
			}
		}
	}
	if _, err := br.ReadString('\n'); err != nil { // greeting
		b.Fatal(err)
	}
	fmt.Fprintf(c, "a LOGIN alice secret\r\n")
	readUntil("a ")
	fmt.Fprintf(c, "s SELECT INBOX\r\n")
	readUntil("s ")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		fmt.Fprintf(c, "f UID FETCH 1:* FLAGS\r\n")
		if n := readUntil("f "); n != 10001 {
			b.Fatalf("%d lines", n)
		}
	}
}

// newBenchEnv is newTestEnv for benchmarks (no goroutine accounting).
func newBenchEnv(b *testing.B) *testEnv {
	root := b.TempDir()
	mod := &mapModule{root: root, users: map[string]string{"alice": "secret"}, disabled: map[string]bool{}}
	env := &testEnv{root: root, module: mod, opt: Options{Hostname: "bench", Auth: newAuth(mod), AllowInsecureAuth: true}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	env.srv = NewServer(env.opt)
	env.addr = l.Addr().String()
	env.done = make(chan error, 1)
	go func() { env.done <- env.srv.Serve(l) }()
	b.Cleanup(func() {
		env.srv.Shutdown(b.Context())
		<-env.done
	})
	path := env.maildirPath("alice")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		b.Fatal(err)
	}
	if err := makeMaildir(path); err != nil {
		b.Fatal(err)
	}
	return env
}
