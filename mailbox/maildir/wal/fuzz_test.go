package wal

import (
	"bytes"
	"hash/crc32"
	"testing"
)

// FuzzScan: replay reads whatever a crash left in the log. Any content must
// give records that are whole (their CRC holds) and in sequence, never a
// panic or a read past the file.
func FuzzScan(f *testing.F) {
	f.Add(recordArea([][]byte{[]byte("one"), []byte("two")}), uint32(1), uint64(0))
	f.Add(recordArea([][]byte{bytes.Repeat([]byte("x"), 5000)}), uint32(1), uint64(0))
	f.Add([]byte{}, uint32(0), uint64(0))
	f.Fuzz(func(t *testing.T, area []byte, epoch uint32, after uint64) {
		// The input is the record area; the image around it is the
		// header blocks and zeroes up to a whole block.
		size := (dataStart + int64(len(area)) + 2*blockSize - 1) / blockSize * blockSize
		data := make([]byte, size)
		copy(data[dataStart:], area)
		recs, end, err := Scan(bytes.NewReader(data), size, epoch, after, dataStart)
		if err != nil {
			return
		}
		if end < dataStart || end > size {
			t.Fatalf("end %d outside the log", end)
		}
		for i, r := range recs {
			if r.Seq != after+1+uint64(i) {
				t.Fatalf("record %d has sequence %d", i, r.Seq)
			}
			if int64(len(r.Payload)) > maxRecord(size) {
				t.Fatal("payload larger than the log allows")
			}
		}
	})
}

// recordArea builds the records as Append writes them (epoch 1, from
// sequence 1), without the padding after the last one.
func recordArea(payloads [][]byte) []byte {
	var b []byte
	for i, p := range payloads {
		rec := make([]byte, span(int64(len(p))))
		encodeHeader(rec, 0, 1, uint32(len(p)), uint64(i+1), crc32.Checksum(p, castagnoli))
		copy(rec[headerSize:], p)
		if i == len(payloads)-1 {
			rec = rec[:headerSize+len(p)]
		}
		b = append(b, rec...)
	}
	return b
}
