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
