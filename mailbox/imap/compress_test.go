package imap

import (
	"bufio"
	"bytes"
	"compress/flate"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"postern/internal/inflate"
)

// zclient is a raw test client with COMPRESS on. Its commands are deflated
// by compress/flate and pushed out with Flush (a sync flush) after each
// send; the server's responses are inflated by compress/flate's reader,
// which serves here because the server sync-flushes too. The server's
// inflater is internal/inflate, so the two sides use different decoders.
type zclient struct {
	t  testing.TB
	c  net.Conn
	zw *flate.Writer
	br *bufio.Reader
}

// compress sends COMPRESS DEFLATE on r and switches it to compression.
func compress(r *rawConn) *zclient {
	r.t.Helper()
	r.send("z1 COMPRESS DEFLATE\r\n")
	r.expect("z1 OK")
	zw, _ := flate.NewWriter(r.c, flate.DefaultCompression)
	// Whatever the server sends from here on is compressed; r.br holds
	// nothing past the OK line, but read through it all the same.
	return &zclient{t: r.t, c: r.c, zw: zw, br: bufio.NewReader(flate.NewReader(r.br))}
}

func (z *zclient) send(s string) {
	z.t.Helper()
	z.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := z.zw.Write([]byte(s)); err != nil {
		z.t.Fatalf("send %q: %v", s, err)
	}
	if err := z.zw.Flush(); err != nil {
		z.t.Fatalf("send %q: %v", s, err)
	}
}

func (z *zclient) readLine() (string, error) {
	z.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := z.br.ReadString('\n')
	return strings.TrimRight(line, "\r\n"), err
}

func (z *zclient) expect(prefix string) string {
	z.t.Helper()
	line, err := z.readLine()
	if err != nil {
		z.t.Fatalf("waiting for %q: %v", prefix, err)
	}
	if !strings.HasPrefix(line, prefix) {
		z.t.Fatalf("got %q, want prefix %q", line, prefix)
	}
	return line
}

func (z *zclient) until(prefix string) []string {
	z.t.Helper()
	var lines []string
	for {
		line, err := z.readLine()
		if err != nil {
			z.t.Fatalf("waiting for %q after %q: %v", prefix, lines, err)
		}
		lines = append(lines, line)
		if strings.HasPrefix(line, prefix) {
			return lines
		}
	}
}

// readN reads exactly n bytes (a literal's data).
func (z *zclient) readN(n int) string {
	z.t.Helper()
	buf := make([]byte, n)
	z.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(z.br, buf); err != nil {
		z.t.Fatalf("reading %d bytes: %v", n, err)
	}
	return string(buf)
}

// A whole session through COMPRESS: the capability is advertised, then
// SELECT, FETCH of bodies (literals from the server), APPEND with a
// synchronizing and a non-synchronizing literal, IDLE hearing of a
// delivery, a refused second COMPRESS and LOGOUT all work compressed.
func TestCompressSession(t *testing.T) {
	env := newTestEnv(t, func(o *Options) { o.testIdlePoll = 100 * time.Millisecond })
	bodies := []string{
		"Subject: one\r\n\r\nfirst body\r\n",
		"Subject: two\r\n\r\n" + strings.Repeat("a long line of text that compresses well ", 500) + "\r\n",
	}
	for _, b := range bodies {
		env.deliver("alice", "INBOX", b)
	}
	r := env.login("alice", "secret")
	r.send("a0 CAPABILITY\r\n")
	if caps := r.expect("* CAPABILITY"); !strings.Contains(caps, " COMPRESS=DEFLATE") {
		t.Fatalf("COMPRESS=DEFLATE not advertised: %q", caps)
	}
	r.expect("a0 OK")
	z := compress(r)

	z.send("a1 SELECT INBOX\r\n")
	if lines := z.until("a1 "); !containsPrefix(lines, "* 2 EXISTS") || !strings.HasPrefix(lines[len(lines)-1], "a1 OK") {
		t.Fatalf("SELECT: %q", lines)
	}
	z.send("a2 FETCH 1:2 BODY.PEEK[]\r\n")
	for i, want := range bodies {
		z.expect(fmt.Sprintf("* %d FETCH (BODY[] {%d}", i+1, len(want)))
		if got := z.readN(len(want)); got != want {
			t.Fatalf("body %d: got %q", i+1, got)
		}
		z.expect(")")
	}
	z.expect("a2 OK")

	msg := "Subject: appended\r\n\r\nthrough COMPRESS\r\n"
	z.send(fmt.Sprintf("a3 APPEND INBOX {%d}\r\n", len(msg)))
	z.expect("+ ")
	z.send(msg + "\r\n")
	lines := z.until("a3 ")
	if !strings.HasPrefix(lines[len(lines)-1], "a3 OK [APPENDUID") {
		t.Fatalf("APPEND: %q", lines)
	}
	z.send(fmt.Sprintf("a4 APPEND INBOX {%d+}\r\n%s\r\n", len(msg), msg))
	more := z.until("a4 ")
	if !strings.HasPrefix(more[len(more)-1], "a4 OK [APPENDUID") {
		t.Fatalf("APPEND with LITERAL+: %q", more)
	}
	z.send("a5 NOOP\r\n")
	lines = append(append(lines, more...), z.until("a5 ")...)
	if !containsPrefix(lines, "* 4 EXISTS") {
		t.Fatalf("the appended messages were not reported: %q", lines)
	}

	z.send("a6 IDLE\r\n")
	z.expect("+ idling")
	env.deliver("alice", "INBOX", "Subject: during idle\r\n\r\nhello\r\n")
	z.expect("* 5 EXISTS")
	z.send("DONE\r\n")
	z.until("a6 OK")

	z.send("a7 COMPRESS DEFLATE\r\n")
	z.expect("a7 NO [COMPRESSIONACTIVE]")
	z.send("a8 FETCH 3 BODY.PEEK[HEADER.FIELDS (SUBJECT)]\r\n")
	z.expect(`* 3 FETCH (BODY[HEADER.FIELDS (SUBJECT)] {21}`)
	if got := z.readN(21); got != "Subject: appended\r\n\r\n" {
		t.Fatalf("header: %q", got)
	}
	z.until("a8 OK")
	z.send("a9 LOGOUT\r\n")
	z.expect("* BYE")
	z.expect("a9 OK")
}

// COMPRESS is refused before login (RFC 4978 makes it a command of the
// authenticated state), with an unknown mechanism and without one; the
// session stays uncompressed and usable.
func TestCompressRefusals(t *testing.T) {
	env := newTestEnv(t, nil)
	r := env.dial()
	if g := r.expect("* OK [CAPABILITY"); !strings.Contains(g, "COMPRESS=DEFLATE") {
		t.Fatalf("greeting lacks COMPRESS=DEFLATE: %q", g)
	}
	r.send("c0 COMPRESS DEFLATE\r\n")
	r.expect("c0 BAD")
	r.send("c1 LOGIN alice secret\r\n")
	r.expect("c1 OK")
	r.send("c2 COMPRESS LZW\r\n")
	r.expect("c2 BAD")
	r.send("c3 COMPRESS\r\n")
	r.expect("c3 BAD")
	r.send("c4 NOOP\r\n")
	r.expect("c4 OK")
	// Lower case is the same mechanism.
	r.send("c5 compress deflate\r\n")
	r.expect("c5 OK")
	z := &zclient{t: t, c: r.c, br: bufio.NewReader(flate.NewReader(r.br))}
	z.zw, _ = flate.NewWriter(r.c, 1)
	z.send("c6 NOOP\r\n")
	z.expect("c6 OK")
}

// A corrupt stream after COMPRESS ends the session: the server closes the
// connection and its goroutines end (newTestEnv checks for leaks).
func TestCompressCorruptInput(t *testing.T) {
	for name, garbage := range map[string][]byte{
		"reserved block type": {0xff, 0xff, 0xff, 0xff},
		"stored length":       {0x00, 0x05, 0x00, 0x05, 0x00},
		"plain text":          []byte("a1 NOOP\r\n"),
	} {
		t.Run(name, func(t *testing.T) {
			env := newTestEnv(t, nil)
			r := env.login("alice", "secret")
			z := compress(r)
			z.send("a0 NOOP\r\n")
			z.expect("a0 OK")
			r.c.Write(garbage)
			// The server closes; the client sees the end of the stream.
			r.c.SetReadDeadline(time.Now().Add(5 * time.Second))
			var err error
			for err == nil {
				_, err = z.br.ReadByte()
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatal("server did not close the connection after corrupt input")
			}
			deadline := time.Now().Add(5 * time.Second)
			for env.srv.Stats().SessionsActive > 0 {
				if time.Now().After(deadline) {
					t.Fatal("session still active after corrupt input")
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

// COMPRESS inside TLS: after STARTTLS and on implicit TLS.
func TestCompressOverTLS(t *testing.T) {
	cfg := selfSignedTLS(t)
	env := newTestEnv(t, func(o *Options) { o.TLSConfig = cfg; o.AllowInsecureAuth = false })
	env.deliver("alice", "INBOX", "Subject: secret\r\n\r\n"+strings.Repeat("tls and deflate ", 200)+"\r\n")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- env.srv.ServeTLS(l) }()
	defer func() {
		env.stop()
		<-done
	}()
	clientTLS := &tls.Config{InsecureSkipVerify: true}

	session := func(t *testing.T, c net.Conn) {
		r := &rawConn{t: t, c: c, br: bufio.NewReader(c)}
		r.send("l LOGIN alice secret\r\n")
		r.expect("l OK")
		z := compress(r)
		z.send("s SELECT INBOX\r\nf FETCH 1 BODY[TEXT]\r\n")
		z.until("s OK")
		z.expect("* 1 FETCH (BODY[TEXT] {3202}")
		if got := z.readN(3202); !strings.HasPrefix(got, "tls and deflate ") {
			t.Fatalf("body: %q", got[:40])
		}
		z.until("f OK")
		z.send("o LOGOUT\r\n")
		z.until("o OK")
	}
	t.Run("STARTTLS", func(t *testing.T) {
		c, err := net.Dial("tcp", env.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		r := &rawConn{t: t, c: c, br: bufio.NewReader(c)}
		r.expect("* OK")
		r.send("t STARTTLS\r\n")
		r.expect("t OK")
		tc := tls.Client(c, clientTLS)
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		session(t, tc)
	})
	t.Run("implicit", func(t *testing.T) {
		tc, err := tls.Dial("tcp", l.Addr().String(), clientTLS)
		if err != nil {
			t.Fatal(err)
		}
		defer tc.Close()
		r := &rawConn{t: t, c: tc, br: bufio.NewReader(tc)}
		r.expect("* OK")
		session(t, tc)
	})
}

// pythonCompressClient speaks IMAP with zlib as mbsync does: raw deflate,
// each command pushed out with Z_PARTIAL_FLUSH, which compress/flate's
// reader could not serve.
const pythonCompressClient = `
import socket, sys, zlib
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
f = s.makefile("rb")
def line():
    return f.readline().decode()
assert line().startswith("* OK")
s.sendall(b"a LOGIN alice secret\r\nb COMPRESS DEFLATE\r\n")
assert line().startswith("a OK"), "login"
assert line().startswith("b OK"), "compress"
comp = zlib.compressobj(6, zlib.DEFLATED, -15)
decomp = zlib.decompressobj(-15)
pending = b""  # f buffered nothing past the OK line: the server waits
def send(cmd):
    s.sendall(comp.compress(cmd) + comp.flush(zlib.Z_PARTIAL_FLUSH))
def until(tag):
    global pending
    out = []
    while True:
        while b"\r\n" not in pending:
            data = s.recv(65536)
            if not data:
                raise SystemExit("connection closed; got %r" % out)
            pending += decomp.decompress(data)
        l, pending = pending.split(b"\r\n", 1)
        out.append(l.decode())
        if l.startswith(tag.encode()):
            return out
for i in range(50):
    send(b"c%d NOOP\r\n" % i)
    out = until("c%d " % i)
    assert out[-1].startswith("c%d OK" % i), out
send(b"d SELECT INBOX\r\n")
out = until("d ")
assert any(l == "* 1 EXISTS" for l in out) and out[-1].startswith("d OK"), out
msg = b"Subject: zlib\r\n\r\n" + b"partial flush " * 300 + b"\r\n"
send(b"e APPEND INBOX {%d}\r\n" % len(msg))
out = until("+")
send(msg + b"\r\n")
out = until("e ")
assert out[-1].startswith("e OK [APPENDUID"), out
send(b"g LOGOUT\r\n")
out = until("g ")
assert out[-1].startswith("g OK"), out
print("zlib client ok")
`

// TestCompressZlibPartialFlush: a client flushing with Z_PARTIAL_FLUSH
// gets an answer to every command (50 NOOPs, SELECT, an APPEND literal).
func TestCompressZlibPartialFlush(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed")
	}
	env := newTestEnv(t, nil)
	env.deliver("alice", "INBOX", "Subject: hi\r\n\r\nhi\r\n")
	host, port, _ := net.SplitHostPort(env.addr)
	out, err := exec.Command(python, "-c", pythonCompressClient, host, port).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "zlib client ok") {
		t.Fatalf("python zlib client: %v\n%s", err, out)
	}
}

// TestDeflateWriterRelease: the compressor goes back to the pool once the
// session has been quiet for the release time after a flush, not while
// something written is unflushed; the stream goes on across compressors.
func TestDeflateWriterRelease(t *testing.T) {
	var wire bytes.Buffer
	d := &deflateWriter{pool: newDeflaterPool(), dst: &wire, release: 20 * time.Millisecond}
	waitReleased := func() {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for d.holding() {
			if time.Now().After(deadline) {
				t.Fatal("compressor not given back after the release time")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	d.Write([]byte("* 1 FETCH (FLAGS (\\Seen))\r\n"))
	if err := d.Flush(); err != nil {
		t.Fatal(err)
	}
	if !d.holding() {
		t.Fatal("compressor given back at the flush")
	}
	waitReleased()
	d.Write([]byte("* 2 FETCH (FLAGS (\\Seen))\r\n"))
	time.Sleep(60 * time.Millisecond)
	if !d.holding() {
		t.Fatal("compressor given back with unflushed data")
	}
	d.Flush()
	waitReleased()
	d.Write([]byte("a1 OK done\r\n"))
	d.Flush()
	want := "* 1 FETCH (FLAGS (\\Seen))\r\n* 2 FETCH (FLAGS (\\Seen))\r\na1 OK done\r\n"
	got := make([]byte, len(want))
	if _, err := io.ReadFull(inflate.NewReader(bytes.NewReader(wire.Bytes())), got); err != nil || string(got) != want {
		t.Fatalf("decoded %q, %v; want %q", got, err, want)
	}
}

// BenchmarkIdleCompressedSessionMemory is BenchmarkIdleSessionMemory with
// COMPRESS on: LOGIN, COMPRESS, SELECT, IDLE. The client's compressed
// commands are the same bytes for every connection and computed once, and
// its decompressor is dropped once "+ idling" is read, so what stays is the
// server's side (and the client's sockets). "bytes/session" is measured
// once the sessions have given their compressors back, "held-bytes/session"
// right after the last one entered IDLE (most still hold theirs).
func BenchmarkIdleCompressedSessionMemory(b *testing.B) {
	const n = 1000
	env := newBenchEnv(b)
	var cmds bytes.Buffer
	zw, _ := flate.NewWriter(&cmds, flate.DefaultCompression)
	zw.Write([]byte("s SELECT INBOX\r\ni IDLE\r\n"))
	zw.Flush()
	compressed := cmds.Bytes()

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
	start := time.Now()
	for i := 0; i < n; i++ {
		c, err := net.Dial("tcp", env.addr)
		if err != nil {
			b.Fatal(err)
		}
		conns = append(conns, c)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		fmt.Fprintf(c, "a LOGIN alice secret\r\nz COMPRESS DEFLATE\r\n")
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				b.Fatal(err)
			}
			if strings.HasPrefix(line, "z ") {
				break
			}
		}
		c.Write(compressed)
		zr := bufio.NewReader(flate.NewReader(br))
		for {
			line, err := zr.ReadString('\n')
			if err != nil {
				b.Fatal(err)
			}
			if strings.HasPrefix(line, "+ idling") {
				break
			}
		}
		c.SetDeadline(time.Time{})
	}
	measure := func() float64 {
		runtime.GC()
		runtime.GC() // the pool keeps what it is given for one more cycle
		runtime.ReadMemStats(&ms)
		return float64(ms.HeapInuse+ms.StackInuse-before) / n
	}
	b.Logf("%d sessions opened in %v", n, time.Since(start))
	b.ReportMetric(measure(), "held-bytes/session")
	time.Sleep(deflateRelease + time.Second)
	b.ReportMetric(measure(), "bytes/session")
	for i := 0; i < b.N; i++ {
	}
}

// countingConn counts the bytes read from the connection.
type countingConn struct {
	net.Conn
	read int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.read += int64(n)
	return n, err
}

// BenchmarkFetchCompressed: UID FETCH 1:* FLAGS on 10,000 messages and
// FETCH 1:1000 BODY.PEEK[], plain and with COMPRESS, reporting the bytes
// the server sent per operation next to the time.
func BenchmarkFetchCompressed(b *testing.B) {
	for _, deflate := range []bool{false, true} {
		for _, fetch := range []string{"UID FETCH 1:* FLAGS", "FETCH 1:1000 BODY.PEEK[]"} {
			name := "plain"
			if deflate {
				name = "deflate"
			}
			b.Run(name+"/"+strings.Fields(fetch)[len(strings.Fields(fetch))-1], func(b *testing.B) {
				env := newBenchEnv(b)
				fillFolder(b, env.maildirPath("alice"), 10000)
				nc, err := net.Dial("tcp", env.addr)
				if err != nil {
					b.Fatal(err)
				}
				defer nc.Close()
				c := &countingConn{Conn: nc}
				raw := bufio.NewReaderSize(c, 64<<10)
				var w io.Writer = c
				br := raw
				flush := func() {}
				readUntil := func(prefix string) {
					for {
						c.SetReadDeadline(time.Now().Add(30 * time.Second))
						line, err := br.ReadString('\n')
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
				br.ReadString('\n') // greeting
				fmt.Fprintf(w, "a LOGIN alice secret\r\n")
				readUntil("a ")
				if deflate {
					fmt.Fprintf(w, "z COMPRESS DEFLATE\r\n")
					readUntil("z ")
					zw, _ := flate.NewWriter(c, flate.BestSpeed)
					w, flush = zw, func() { zw.Flush() }
					br = bufio.NewReaderSize(flate.NewReader(raw), 64<<10)
				}
				fmt.Fprintf(w, "s SELECT INBOX\r\n")
				flush()
				readUntil("s ")
				b.ResetTimer()
				start := c.read
				for i := 0; i < b.N; i++ {
					fmt.Fprintf(w, "f %s\r\n", fetch)
					flush()
					readUntil("f ")
				}
				b.ReportMetric(float64(c.read-start)/float64(b.N), "wire-bytes/op")
			})
		}
	}
}
