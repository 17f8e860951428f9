package inflate

import (
	"bufio"
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// chunkSource is a source that holds only the bytes the peer has sent so
// far. Reading past them is a test failure, not a wait: the decoder must
// never need a byte the peer has not sent to return what was sent.
type chunkSource struct {
	data []byte
	read int
	// hideBuffered makes Buffered unavailable (see plainSource).
	t testing.TB
}

var errPastFlush = errors.New("read past the bytes sent so far")

func (s *chunkSource) ReadByte() (byte, error) {
	if s.read >= len(s.data) {
		return 0, errPastFlush
	}
	b := s.data[s.read]
	s.read++
	return b, nil
}

func (s *chunkSource) Buffered() int { return len(s.data) - s.read }

func (s *chunkSource) send(b []byte) { s.data = append(s.data, b...) }

// plainSource hides Buffered, so the Reader must stop whenever it has
// output and needs input.
type plainSource struct{ s *chunkSource }

func (p plainSource) ReadByte() (byte, error) { return p.s.ReadByte() }

// message kinds for the round trips: IMAP-like text, random bytes, runs.
func makeMessage(rng *rand.Rand, size int) []byte {
	b := make([]byte, 0, size)
	switch rng.IntN(3) {
	case 0:
		words := []string{"A001", "UID", "FETCH", "1:*", "(FLAGS", "BODY.PEEK[HEADER])", "\\Seen", "INBOX", "OK", "Completed", "\r\n", "Subject:", "From:", "hello"}
		for len(b) < size {
			b = append(b, words[rng.IntN(len(words))]...)
			b = append(b, ' ')
		}
		b = b[:size]
	case 1:
		for len(b) < size {
			b = append(b, byte(rng.Uint32()))
		}
	default:
		for len(b) < size {
			c := byte(rng.IntN(4) + 'a')
			for n := rng.IntN(300); n > 0 && len(b) < size; n-- {
				b = append(b, c)
			}
		}
	}
	return b
}

// readMessage reads exactly len(want) bytes from r and compares them.
func readMessage(t *testing.T, r io.Reader, want []byte, what string) {
	t.Helper()
	got := make([]byte, len(want))
	if _, err := io.ReadFull(r, got); err != nil {
		t.Fatalf("%s: reading %d bytes: %v", what, len(want), err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: decoded bytes differ from what was compressed", what)
	}
}

// TestGoWriterFlushDelivers compresses messages with compress/flate's
// writer at several levels, Flush after each (a sync flush), and checks
// that each message is decoded from exactly the bytes sent up to its flush,
// with and without a Buffered method on the source; then the final block
// ends the stream with io.EOF.
func TestGoWriterFlushDelivers(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, level := range []int{flate.HuffmanOnly, flate.NoCompression, flate.BestSpeed, 5, flate.BestCompression} {
		for _, plain := range []bool{false, true} {
			t.Run(fmt.Sprintf("level%d/plain=%v", level, plain), func(t *testing.T) {
				var wire bytes.Buffer
				fw, _ := flate.NewWriter(&wire, level)
				src := &chunkSource{t: t}
				var z *Reader
				if plain {
					z = NewReader(plainSource{src})
				} else {
					z = NewReader(src)
				}
				for i := range 40 {
					size := 1 + rng.IntN(1<<uint(rng.IntN(17)))
					msg := makeMessage(rng, size)
					fw.Write(msg)
					fw.Flush()
					src.send(wire.Bytes())
					wire.Reset()
					readMessage(t, z, msg, fmt.Sprintf("message %d (%d bytes)", i, size))
				}
				fw.Close()
				src.send(wire.Bytes())
				if n, err := z.Read(make([]byte, 10)); n != 0 || err != io.EOF {
					t.Fatalf("after the final block: %d, %v; want 0, EOF", n, err)
				}
				if src.Buffered() != 0 {
					t.Fatalf("%d bytes of the stream left unread", src.Buffered())
				}
			})
		}
	}
}

// pythonZlib compresses records with python3's zlib (raw deflate,
// wbits=-15), flushing each with its mode, and returns the compressed bytes
// of each record.
const pythonZlib = `
import sys, zlib, struct
level, strategy = int(sys.argv[1]), int(sys.argv[2])
c = zlib.compressobj(level, zlib.DEFLATED, -15, 8, strategy)
inp, out = sys.stdin.buffer, sys.stdout.buffer
while True:
    head = inp.read(5)
    if len(head) < 5:
        break
    mode, size = head[0], struct.unpack(">I", head[1:])[0]
    data = inp.read(size)
    chunk = c.compress(data) + c.flush(mode)
    out.write(struct.pack(">I", len(chunk)) + chunk)
`

// Flush modes of zlib.
const (
	zPartialFlush = 1
	zSyncFlush    = 2
	zFullFlush    = 3
	zFinish       = 4
)

type zlibRecord struct {
	mode int
	data []byte
}

func zlibCompress(t *testing.T, level, strategy int, records []zlibRecord) [][]byte {
	t.Helper()
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed")
	}
	var in bytes.Buffer
	for _, r := range records {
		in.WriteByte(byte(r.mode))
		binary.Write(&in, binary.BigEndian, uint32(len(r.data)))
		in.Write(r.data)
	}
	cmd := exec.Command(python, "-c", pythonZlib, fmt.Sprint(level), fmt.Sprint(strategy))
	cmd.Stdin = &in
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3 zlib: %v", err)
	}
	var chunks [][]byte
	for len(out) >= 4 {
		n := binary.BigEndian.Uint32(out)
		chunks = append(chunks, out[4:4+n])
		out = out[4+n:]
	}
	if len(chunks) != len(records) {
		t.Fatalf("python3 returned %d chunks for %d records", len(chunks), len(records))
	}
	return chunks
}

// TestZlibFlushModes is the case compress/flate's reader cannot serve:
// zlib (as mbsync uses it) with Z_PARTIAL_FLUSH, and also Z_SYNC_FLUSH and
// Z_FULL_FLUSH, at several levels and strategies (Z_FIXED gives fixed
// Huffman blocks, Z_HUFFMAN_ONLY and Z_RLE other shapes). Each message must
// be decoded from the bytes sent up to its flush, no more.
func TestZlibFlushModes(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	strategies := map[string]int{"default": 0, "filtered": 1, "huffman": 2, "rle": 3, "fixed": 4}
	for name, strategy := range strategies {
		for _, level := range []int{0, 1, 6, 9} {
			if level == 0 && strategy != 0 {
				continue
			}
			t.Run(fmt.Sprintf("%s/level%d", name, level), func(t *testing.T) {
				var records []zlibRecord
				modes := []int{zPartialFlush, zSyncFlush, zFullFlush}
				for range 60 {
					size := 1 + rng.IntN(1<<uint(rng.IntN(17)))
					records = append(records, zlibRecord{modes[rng.IntN(len(modes))], makeMessage(rng, size)})
				}
				// A run of flushes with nothing new, as a client that
				// flushes twice does.
				records = append(records, zlibRecord{zPartialFlush, nil}, zlibRecord{zPartialFlush, []byte("x")}, zlibRecord{zSyncFlush, nil})
				records = append(records, zlibRecord{zFinish, []byte("last\r\n")})
				chunks := zlibCompress(t, level, strategy, records)
				for _, plain := range []bool{false, true} {
					src := &chunkSource{t: t}
					var z *Reader
					if plain {
						z = NewReader(plainSource{src})
					} else {
						z = NewReader(src)
					}
					for i, r := range records {
						src.send(chunks[i])
						if len(r.data) > 0 {
							readMessage(t, z, r.data, fmt.Sprintf("record %d (mode %d, %d bytes, plain=%v)", i, r.mode, len(r.data), plain))
						}
					}
					if n, err := z.Read(make([]byte, 1)); n != 0 || err != io.EOF {
						t.Fatalf("after Z_FINISH: %d, %v; want 0, EOF", n, err)
					}
				}
			})
		}
	}
}

// TestPartialFlushOverPipe is the IMAP case end to end: a command
// compressed with Z_PARTIAL_FLUSH is written to a pipe that stays open (the
// client waits for the answer), and the command must come out.
func TestPartialFlushOverPipe(t *testing.T) {
	cmd := []byte("a1 SELECT INBOX\r\n")
	chunks := zlibCompress(t, 6, 0, []zlibRecord{{zPartialFlush, cmd}})
	pr, pw := io.Pipe()
	defer pw.Close()
	go pw.Write(chunks[0])
	z := NewReader(bufio.NewReader(pr))
	got := make(chan string, 1)
	go func() {
		line, err := bufio.NewReader(z).ReadString('\n')
		if err != nil {
			line = err.Error()
		}
		got <- line
	}()
	select {
	case line := <-got:
		if line != string(cmd) {
			t.Fatalf("got %q, want %q", line, cmd)
		}
	case <-time.After(5 * time.Second):
		pw.CloseWithError(errors.New("test timed out"))
		<-got
		t.Fatal("command compressed with Z_PARTIAL_FLUSH not delivered while the peer waits")
	}
}

// TestRandomRoundTrips: whole streams of random content and size at every
// compress/flate level, read with small and large buffers.
func TestRandomRoundTrips(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for i := range 60 {
		level := rng.IntN(12) - 2 // HuffmanOnly .. 9
		size := rng.IntN(1 << uint(rng.IntN(21)))
		var data []byte
		for len(data) < size {
			data = append(data, makeMessage(rng, min(size-len(data), 1+rng.IntN(5000)))...)
		}
		var wire bytes.Buffer
		fw, _ := flate.NewWriter(&wire, level)
		fw.Write(data)
		fw.Close()
		bufSize := 1 + rng.IntN(70000)
		got, err := readAllWith(NewReader(bytes.NewReader(wire.Bytes())), bufSize)
		if err != nil {
			t.Fatalf("stream %d (level %d, %d bytes, buffer %d): %v", i, level, size, bufSize, err)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("stream %d (level %d, %d bytes, buffer %d): output differs", i, level, size, bufSize)
		}
	}
}

func readAllWith(r io.Reader, bufSize int) ([]byte, error) {
	var out []byte
	buf := make([]byte, bufSize)
	for {
		n, err := r.Read(buf)
		out = append(out, buf[:n]...)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
	}
}

// TestStopsAtStreamEnd: bytes after the final block are left in the source.
func TestStopsAtStreamEnd(t *testing.T) {
	var wire bytes.Buffer
	fw, _ := flate.NewWriter(&wire, 6)
	fw.Write([]byte(strings.Repeat("hello, world\r\n", 100)))
	fw.Close()
	wire.WriteString("TRAILER")
	src := bytes.NewReader(wire.Bytes())
	got, err := io.ReadAll(NewReader(src))
	if err != nil || len(got) != 1400 {
		t.Fatalf("got %d bytes, %v", len(got), err)
	}
	rest, _ := io.ReadAll(src)
	if string(rest) != "TRAILER" {
		t.Fatalf("left in the source: %q, want %q", rest, "TRAILER")
	}
}

// TestCorruptInput: malformed streams give a CorruptInputError (or
// io.ErrUnexpectedEOF when cut short), never a panic.
func TestCorruptInput(t *testing.T) {
	cases := map[string][]byte{
		"reserved block type":     {0x07},                         // BFINAL=1, BTYPE=11
		"stored length mismatch":  {0x01, 0x05, 0x00, 0x00, 0x00}, // LEN 5, NLEN 0
		"distance before start":   fixedMatchBeforeStart(),
		"too many length codes":   {0x05 | 0x1f<<3, 0xff, 0xff}, // HLIT 31+257
		"oversubscribed clen":     oversubscribedCodeLenCode(),
		"repeat with no previous": dynamicRepeatFirst(),
	}
	for name, data := range cases {
		_, err := io.ReadAll(NewReader(bytes.NewReader(data)))
		var ce *CorruptInputError
		if !errors.As(err, &ce) {
			t.Errorf("%s: got %v, want a CorruptInputError", name, err)
		}
		// The error is sticky.
		z := NewReader(bytes.NewReader(data))
		io.ReadAll(z)
		if _, err2 := z.Read(make([]byte, 1)); !errors.As(err2, &ce) {
			t.Errorf("%s: next Read gave %v, want the same error", name, err2)
		}
	}
	// Cut short: every proper prefix of a valid stream.
	var wire bytes.Buffer
	fw, _ := flate.NewWriter(&wire, 6)
	fw.Write([]byte(strings.Repeat("abcdefgh", 50)))
	fw.Close()
	for i := 0; i < wire.Len(); i++ {
		_, err := io.ReadAll(NewReader(bytes.NewReader(wire.Bytes()[:i])))
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("prefix of %d bytes: got %v, want io.ErrUnexpectedEOF", i, err)
		}
	}
}

// bitWriter packs fields LSB first, as RFC 1951 3.1.1 puts them.
type bitWriter struct {
	out   []byte
	acc   uint64
	nbits uint
}

func (w *bitWriter) bits(v uint64, n uint) {
	w.acc |= v << w.nbits
	w.nbits += n
	for w.nbits >= 8 {
		w.out = append(w.out, byte(w.acc))
		w.acc >>= 8
		w.nbits -= 8
	}
}

// code writes a Huffman code of n bits, most significant bit first.
func (w *bitWriter) code(c uint64, n uint) {
	for i := int(n) - 1; i >= 0; i-- {
		w.bits(c>>uint(i)&1, 1)
	}
}

func (w *bitWriter) bytes() []byte {
	if w.nbits > 0 {
		return append(w.out, byte(w.acc))
	}
	return w.out
}

// fixedMatchBeforeStart: a fixed block whose first symbol is a match.
func fixedMatchBeforeStart() []byte {
	var w bitWriter
	w.bits(1, 1)    // BFINAL
	w.bits(1, 2)    // fixed
	w.code(0x01, 7) // length code 257 (length 3): 7-bit codes 0000000+ (256 is 0)
	w.code(0x00, 5) // distance code 0: distance 1
	w.code(0x00, 7) // end of block
	return w.bytes()
}

// oversubscribedCodeLenCode: all 19 code length codes one bit long.
func oversubscribedCodeLenCode() []byte {
	var w bitWriter
	w.bits(1, 1)
	w.bits(2, 2)
	w.bits(0, 5)
	w.bits(0, 5)
	w.bits(15, 4) // HCLEN 19
	for range 19 {
		w.bits(1, 3)
	}
	return w.bytes()
}

// dynamicRepeatFirst: a dynamic header whose first code length is "repeat
// the previous".
func dynamicRepeatFirst() []byte {
	var w bitWriter
	w.bits(1, 1) // BFINAL
	w.bits(2, 2) // dynamic
	w.bits(0, 5) // HLIT 257
	w.bits(0, 5) // HDIST 1
	w.bits(0, 4) // HCLEN 4: lengths of 16, 17, 18, 0
	w.bits(1, 3) // 16: length 1
	w.bits(0, 3) // 17: unused
	w.bits(0, 3) // 18: unused
	w.bits(1, 3) // 0: length 1
	// code length code: symbol 0 -> "0", symbol 16 -> "1"
	w.code(1, 1) // 16 first
	w.bits(0, 2)
	return w.bytes()
}

// TestHandBuiltBlocks decodes streams built bit by bit: a fixed block with
// a literal and an overlapping match, a dynamic block with a single one-bit
// distance code, and an empty stored block between them.
func TestHandBuiltBlocks(t *testing.T) {
	var w bitWriter
	// Fixed block: 'a' then length 5 distance 1 → "aaaaaa".
	w.bits(0, 1)
	w.bits(1, 2)
	w.code(0x30+'a', 8) // literals 0-143: 8 bits from 00110000
	w.code(0x03, 7)     // code 259: length 5
	w.code(0x00, 5)     // distance 1
	w.code(0x00, 7)     // end of block
	// Empty stored block.
	w.bits(0, 1)
	w.bits(0, 2)
	if w.nbits > 0 {
		w.bits(0, 8-w.nbits)
	}
	w.bits(0x0000, 16)
	w.bits(0xffff, 16)
	// Dynamic block: literals 'b' (len 2), 'c' (2), 256 (2), 257 (2);
	// one distance code of one bit: code 0 (distance 1).
	w.bits(1, 1)
	w.bits(2, 2)
	w.bits(1, 5)  // HLIT 258
	w.bits(0, 5)  // HDIST 1
	w.bits(14, 4) // HCLEN 18: up to code length 1 ... order ends 2, 14, 1, 15
	// Code length code: give symbols 0, 1, 2 and 18 lengths (0:2, 1:2, 2:2, 18:2).
	clen := map[int]uint64{0: 2, 1: 2, 2: 2, 18: 2}
	for _, sym := range codeLenOrder[:18] {
		w.bits(clen[int(sym)], 3)
	}
	// Canonical codes for lengths all 2 in symbol order 0, 1, 2, 18:
	// 0 -> 00, 1 -> 01, 2 -> 10, 18 -> 11.
	lit := func(l int) {
		switch l {
		case 0:
			w.code(0, 2)
		case 1:
			w.code(1, 2)
		case 2:
			w.code(2, 2)
		}
	}
	zeros := func(n int) {
		for n > 0 {
			k := min(n, 138)
			if k < 11 {
				for range k {
					lit(0)
				}
			} else {
				w.code(3, 2)
				w.bits(uint64(k-11), 7)
			}
			n -= k
		}
	}
	zeros('b')
	lit(2)           // 'b'
	lit(2)           // 'c'
	zeros(256 - 'd') // up to 256
	lit(2)           // 256
	lit(2)           // 257
	lit(1)           // distance code 0: one bit
	// Codes of length 2 in symbol order: 'b' 00, 'c' 01, 256 10, 257 11.
	w.code(0, 2) // b
	w.code(1, 2) // c
	w.code(3, 2) // 257: length 3
	w.code(0, 1) // distance 1
	w.code(2, 2) // end of block
	got, err := io.ReadAll(NewReader(bytes.NewReader(w.bytes())))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "aaaaaabcccc" {
		t.Fatalf("got %q, want %q", got, "aaaaaabcccc")
	}
	// compress/flate agrees.
	std, err := io.ReadAll(flate.NewReader(bytes.NewReader(w.bytes())))
	if err != nil || !bytes.Equal(std, got) {
		t.Fatalf("compress/flate reads %q, %v", std, err)
	}
}

// TestSourceErrorAfterOutput: bytes decoded before the source fails are
// returned first, the error with the next call.
func TestSourceErrorAfterOutput(t *testing.T) {
	var wire bytes.Buffer
	fw, _ := flate.NewWriter(&wire, 6)
	fw.Write([]byte("a2 NOOP\r\n"))
	fw.Flush()
	src := &chunkSource{t: t, data: wire.Bytes()}
	z := NewReader(plainSource{src})
	buf := make([]byte, 100)
	var got []byte
	var err error
	for err == nil {
		var n int
		n, err = z.Read(buf)
		got = append(got, buf[:n]...)
	}
	if string(got) != "a2 NOOP\r\n" || err != errPastFlush {
		t.Fatalf("got %q, %v; want the command, then the source's error", got, err)
	}
	// Not sticky: the source may recover (a read deadline extended).
	src.send([]byte{0x03, 0x00}) // final empty fixed block
	if n, err := z.Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("after the source recovered: %d, %v; want 0, EOF", n, err)
	}
}

// BenchmarkInflate decodes 4 MiB of IMAP-like text compressed at level 6,
// with this Reader and with compress/flate's, through a bufio.Reader as the
// IMAP server uses it.
func BenchmarkInflate(b *testing.B) {
	rng := rand.New(rand.NewPCG(7, 8))
	var data []byte
	for len(data) < 4<<20 {
		m := makeMessage(rng, 1+rng.IntN(8000))
		if m[0] < 0x20 || m[0] > 0x7e { // fewer random-byte messages
			continue
		}
		data = append(data, m...)
	}
	var wire bytes.Buffer
	fw, _ := flate.NewWriter(&wire, 6)
	fw.Write(data)
	fw.Close()
	buf := make([]byte, 32<<10)
	for _, impl := range []string{"inflate", "compress-flate"} {
		b.Run(impl, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for range b.N {
				src := bufio.NewReader(bytes.NewReader(wire.Bytes()))
				var r io.Reader
				if impl == "inflate" {
					r = NewReader(src)
				} else {
					r = flate.NewReader(src)
				}
				n := 0
				for {
					k, err := r.Read(buf)
					n += k
					if err == io.EOF {
						break
					}
					if err != nil {
						b.Fatal(err)
					}
				}
				if n != len(data) {
					b.Fatalf("%d bytes, want %d", n, len(data))
				}
			}
		})
	}
}

// TestStdlibReaderWaitsAfterPartialFlush records why this package exists:
// compress/flate's reader does not return a command that zlib flushed with
// Z_PARTIAL_FLUSH while the peer waits, and does after Z_SYNC_FLUSH. If a
// Go release changes that, this test fails and the reason is gone.
func TestStdlibReaderWaitsAfterPartialFlush(t *testing.T) {
	cmd := []byte("a1 SELECT INBOX\r\n")
	for _, mode := range []int{zPartialFlush, zSyncFlush} {
		chunks := zlibCompress(t, 6, 0, []zlibRecord{{mode, cmd}})
		pr, pw := io.Pipe()
		go pw.Write(chunks[0])
		r := flate.NewReader(pr)
		got := make(chan int, 1)
		go func() {
			n, _ := io.ReadFull(r, make([]byte, len(cmd)))
			got <- n
		}()
		delivered := false
		select {
		case <-got:
			delivered = true
		case <-time.After(time.Second):
			pw.CloseWithError(errors.New("end of test"))
			<-got
		}
		pw.Close()
		if want := mode == zSyncFlush; delivered != want {
			t.Errorf("flush mode %d: compress/flate delivered the command: %v, expected %v", mode, delivered, want)
		}
	}
}
