package imap

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
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

// BenchmarkSelect10k: SELECT INBOX on 10,000 messages, warm (the folder's
// UID database and metadata are cached by an earlier session).
func BenchmarkSelect10k(b *testing.B) { benchSelect(b, 10000) }

// BenchmarkSelect100k: the same on 100,000 messages.
func BenchmarkSelect100k(b *testing.B) { benchSelect(b, 100000) }

func benchSelect(b *testing.B, n int) {
	env := newBenchEnv(b)
	fillFolder(b, env.maildirPath("alice"), n)
	c, err := net.Dial("tcp", env.addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReaderSize(c, 64<<10)
	readUntil := func(prefix string) {
		for {
			c.SetReadDeadline(time.Now().Add(30 * time.Second))
			line, err := br.ReadString('\n')
			if err != nil {
				b.Fatal(err)
			}
			if strings.HasPrefix(line, prefix) {
				return
			}
		}
	}
	br.ReadString('\n')
	fmt.Fprintf(c, "a LOGIN alice secret\r\n")
	readUntil("a ")
	fmt.Fprintf(c, "s SELECT INBOX\r\n") // cold: assigns UIDs, stats files
	readUntil("s ")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		fmt.Fprintf(c, "s SELECT INBOX\r\n")
		readUntil("s OK")
	}
}

// BenchmarkIdleSessionMemory measures the server-side memory of logged-in
// sessions sitting in IDLE (reported as bytes/session; the client ends of
// the connections are in the same process and counted too).
func BenchmarkIdleSessionMemory(b *testing.B) {
	const n = 1000
	env := newBenchEnv(b)
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	before := ms.HeapInuse + ms.StackInuse
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	buf := make([]byte, 4096)
	expect := func(c net.Conn, want string) {
		var got []byte
		for !strings.Contains(string(got), want) {
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			k, err := c.Read(buf)
			if err != nil {
				b.Fatalf("want %q: %v (got %q)", want, err, got)
			}
			got = append(got, buf[:k]...)
		}
	}
	for i := 0; i < n; i++ {
		c, err := net.Dial("tcp", env.addr)
		if err != nil {
			b.Fatal(err)
		}
		conns = append(conns, c)
		expect(c, "ready\r\n")
		fmt.Fprintf(c, "a LOGIN alice secret\r\ns SELECT INBOX\r\ni IDLE\r\n")
		expect(c, "+ idling\r\n")
	}
	runtime.GC()
	runtime.ReadMemStats(&ms)
	after := ms.HeapInuse + ms.StackInuse
	b.ReportMetric(float64(after-before)/n, "bytes/session")
	for i := 0; i < b.N; i++ {
	}
}

// BenchmarkAppendSelect100k: one session APPENDs a message, another then
// SELECTs the 100,000-message INBOX (bench/imapbench's "SELECT after one
// new message", plus the APPEND that causes it).
func BenchmarkAppendSelect100k(b *testing.B) { benchAppendSelect(b, 100000, "SELECT INBOX") }

// BenchmarkAppendSelect10k: the same on 10,000 messages.
func BenchmarkAppendSelect10k(b *testing.B) { benchAppendSelect(b, 10000, "SELECT INBOX") }

// BenchmarkAppendNoop10k: the other session has INBOX selected and learns
// of the APPEND by a NOOP (as an IDLE session would).
func BenchmarkAppendNoop10k(b *testing.B) { benchAppendSelect(b, 10000, "NOOP") }

func benchAppendSelect(b *testing.B, n int, then string) {
	env := newBenchEnv(b)
	fillFolder(b, env.maildirPath("alice"), n)
	type client struct {
		c  net.Conn
		br *bufio.Reader
	}
	dial := func() *client {
		c, err := net.Dial("tcp", env.addr)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		cl := &client{c, bufio.NewReaderSize(c, 64<<10)}
		cl.br.ReadString('\n')
		return cl
	}
	until := func(cl *client, prefix string) {
		for {
			cl.c.SetReadDeadline(time.Now().Add(60 * time.Second))
			line, err := cl.br.ReadString('\n')
			if err != nil {
				b.Fatal(err)
			}
			if strings.HasPrefix(line, prefix) {
				if !strings.HasPrefix(line, prefix+"OK") {
					b.Fatalf("%q", line)
				}
				return
			}
		}
	}
	sel, app := dial(), dial()
	for _, cl := range []*client{sel, app} {
		fmt.Fprintf(cl.c, "a LOGIN alice secret\r\n")
		until(cl, "a ")
	}
	fmt.Fprintf(sel.c, "s SELECT INBOX\r\n") // cold: assigns UIDs, stats files
	until(sel, "s ")
	msg := "From: a@example.org\r\nSubject: one more\r\n\r\nnew\r\n"
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		fmt.Fprintf(app.c, "p APPEND INBOX {%d+}\r\n%s\r\n", len(msg), msg)
		until(app, "p ")
		fmt.Fprintf(sel.c, "s %s\r\n", then)
		until(sel, "s ")
	}
}
