package textindex

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// FuzzSegment feeds arbitrary bytes to the segment reader as a segment
// file: opening, looking terms up, reading posting lists and walking the
// terms as a merge does must give an error or data, never a panic or an
// allocation beyond what the input's size allows. Each input is also tried
// with its checksums made right, so that mutations of the structure get
// past the CRCs.
func FuzzSegment(f *testing.F) {
	f.Add([]byte(segMagic))
	f.Fuzz(func(t *testing.T, data []byte) {
		readAll(data)
		fixed := bytes.Clone(data)
		fixChecksums(fixed)
		readAll(fixed)
	})
}

func readAll(data []byte) {
	s, err := readSegment(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return
	}
	for _, q := range []string{"abc", "zebra", "\x00\x00\x00", "ÿÿÿÿ"} {
		for _, f := range []Field{0, 1, 255} {
			s.fieldCandidates(q, f)
		}
	}
	tr := s.terms()
	for {
		ok, err := tr.advance()
		if err != nil || !ok {
			break
		}
		if _, err := tr.list(); err != nil {
			break
		}
	}
}

// fixChecksums recomputes whatever checksums of a segment it can locate.
func fixChecksums(b []byte) {
	if len(b) < headerSize {
		return
	}
	le := binary.LittleEndian
	ndocs := uint64(le.Uint32(b[hDocs:]))
	nterms := uint64(le.Uint32(b[hTerms:]))
	postings := le.Uint64(b[hPostings:])
	termsOff := le.Uint64(b[hTermsOff:])
	size := uint64(len(b))
	if docsEnd := headerSize + ndocs*docSize; docsEnd <= size {
		le.PutUint32(b[hDocsCRC:], checksum(b[headerSize:docsEnd]))
	}
	if termsOff <= size && nterms <= (size-termsOff)/termSize {
		terms := b[termsOff : termsOff+nterms*termSize]
		for i := uint64(0); i < nterms; i++ {
			row := terms[i*termSize:]
			off, n := le.Uint64(row[8:]), uint64(le.Uint32(row[16:]))
			if postings <= size && off <= size-postings && n <= size-postings-off {
				le.PutUint32(row[20:], checksum(b[postings+off:postings+off+n]))
			}
		}
		le.PutUint32(b[hTermsCRC:], checksum(terms))
	}
	le.PutUint32(b[hCRC:], checksum(b[:hCRC]))
}

// FuzzPostingList decodes arbitrary posting lists: an error or ascending
// UIDs, as many as claimed.
func FuzzPostingList(f *testing.F) {
	f.Add(encodeList(nil, []uint32{1, 2, 3, 900}), uint32(4))
	f.Add(encodeList(nil, []uint32{5, 6, 7, 8, 9, 10, 11, 12, 20}), uint32(9))
	f.Add([]byte{listBitmap, 0xff, 0xff, 0xff, 0xff, 0x0f, 0xff}, uint32(8))
	f.Fuzz(func(t *testing.T, data []byte, count uint32) {
		uids, err := decodeList(data, count)
		if err != nil {
			return
		}
		if len(uids) != int(count) {
			t.Fatalf("%d UIDs, claimed %d", len(uids), count)
		}
		for i := range uids {
			if uids[i] == 0 || i > 0 && uids[i] <= uids[i-1] {
				t.Fatalf("not ascending: %v", uids)
			}
		}
	})
}
