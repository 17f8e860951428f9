package maildir

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestLFReader(t *testing.T) {
	cases := map[string]string{
		"a\r\nb\r\n":                            "a\nb\n",
		"bare\rcr\r\n":                          "bare\rcr\n",
		"ends in cr\r":                          "ends in cr\r",
		"lf only\nline\n":                       "lf only\nline\n",
		"\r\n\r\n":                              "\n\n",
		"crcr\r\r\nx":                           "crcr\r\nx",
		strings.Repeat("0123456789\r\n", 20000): strings.Repeat("0123456789\n", 20000),
	}
	for in, want := range cases {
		for _, wrap := range []func(io.Reader) io.Reader{
			func(r io.Reader) io.Reader { return r },
			iotest.OneByteReader, iotest.HalfReader,
		} {
			got, err := io.ReadAll(wrap(LFReader(strings.NewReader(in))))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, []byte(want)) {
				t.Errorf("lfReader(%.30q) = %.40q, want %.40q", in, got, want)
			}
		}
	}
}

func BenchmarkLFReader(b *testing.B) {
	msg := bytes.Repeat([]byte("0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\r\n"), 1000)
	b.SetBytes(int64(len(msg)))
	for i := 0; i < b.N; i++ {
		io.Copy(io.Discard, LFReader(bytes.NewReader(msg)))
	}
}

// FuzzLFReader checks the chunked reader against the obvious definition:
// remove each CR that is directly followed by LF, whatever the read sizes.
func FuzzLFReader(f *testing.F) {
	f.Add([]byte("a\r\nb\r\n"), uint8(1))
	f.Add([]byte("\r\r\n\r"), uint8(3))
	f.Add([]byte("x\ry\r"), uint8(2))
	f.Fuzz(func(t *testing.T, in []byte, chunk uint8) {
		want := bytes.ReplaceAll(in, []byte("\r\n"), []byte("\n"))
		r := LFReader(iotest.HalfReader(bytes.NewReader(in)))
		var got []byte
		buf := make([]byte, int(chunk)%17+1)
		for {
			n, err := r.Read(buf)
			got = append(got, buf[:n]...)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("LFReader(%q) = %q, want %q", in, got, want)
		}
	})
}
