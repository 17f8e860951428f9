package inflate

import (
	"bytes"
	"compress/flate"
	"errors"
	"io"
	"testing"
)

// maxFuzzOutput bounds what one fuzz input may expand to (a few bytes of
// matches make megabytes).
const maxFuzzOutput = 1 << 20

// FuzzInflate decodes arbitrary bytes as a complete stream with this Reader
// and with compress/flate's and requires the same verdict: both accept with
// the same output, or both refuse. It also reads through a source without
// Buffered and with a one-byte buffer, which must give the same result, and
// never panics or loops (the fuzzer's timeout catches the latter).
func FuzzInflate(f *testing.F) {
	f.Add([]byte{0x03, 0x00})                   // final empty fixed block
	f.Add([]byte{0x01, 0x00, 0x00, 0xff, 0xff}) // final empty stored block
	f.Add(fixedMatchBeforeStart())
	f.Add(dynamicRepeatFirst())
	f.Fuzz(func(t *testing.T, data []byte) {
		ours, ourErr := io.ReadAll(io.LimitReader(NewReader(bytes.NewReader(data)), maxFuzzOutput))
		std, stdErr := io.ReadAll(io.LimitReader(flate.NewReader(bytes.NewReader(data)), maxFuzzOutput))
		if len(ours) == maxFuzzOutput || len(std) == maxFuzzOutput {
			// Cut by the limit: compare what both produced.
			n := min(len(ours), len(std))
			if !bytes.Equal(ours[:n], std[:n]) {
				t.Fatalf("outputs differ within the first %d bytes", n)
			}
			return
		}
		if (ourErr == nil) != (stdErr == nil) {
			t.Fatalf("verdicts differ: ours %v, compress/flate %v", ourErr, stdErr)
		}
		if ourErr == nil && !bytes.Equal(ours, std) {
			t.Fatalf("outputs differ: %d bytes against compress/flate's %d", len(ours), len(std))
		}
		if ourErr != nil {
			var ce *CorruptInputError
			if !errors.As(ourErr, &ce) && !errors.Is(ourErr, io.ErrUnexpectedEOF) {
				t.Fatalf("error of unexpected kind: %v", ourErr)
			}
			// What was decoded before the error is a prefix of what
			// compress/flate decodes (it may stop earlier).
			n := min(len(ours), len(std))
			if !bytes.Equal(ours[:n], std[:n]) {
				t.Fatalf("output before the error differs")
			}
		}
		// Byte-at-a-time delivery through a source without Buffered.
		src := &chunkSource{t: t, data: data}
		slow, slowErr := readAllWith(io.LimitReader(NewReader(plainSource{src}), maxFuzzOutput), 1)
		if slowErr == errPastFlush {
			slowErr = io.ErrUnexpectedEOF
		}
		if !bytes.Equal(slow, ours) || (slowErr == nil) != (ourErr == nil) {
			t.Fatalf("one byte at a time: %d bytes, %v; at once: %d bytes, %v", len(slow), slowErr, len(ours), ourErr)
		}
	})
}
