package textindex

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/bits"
	"os"
	"slices"
	"sync"
	"sync/atomic"
)

// A segment file (docs/imap-index.md, FORMAT of postern-imaptext):
//
//	header   64 bytes, little-endian (see the offsets below)
//	docs     ndocs × 9 bytes: uid u32, key hash u32, flags u8
//	postings the posting lists, in term order
//	terms    nterms × 24 bytes: key u32, count u32, offset u64 (from the
//	         start of postings), length u32, crc32c of the list u32
//
// The header, docs and terms are checked when the segment is opened; each
// posting list is checked by its CRC when a query reads it.
const (
	segMagic   = "PTXTSEG1"
	headerSize = 64
	docSize    = 9
	termSize   = 24
	// sparseEvery: one term key in this many is kept in memory; a lookup
	// reads one block of terms from the file.
	sparseEvery = 64
)

// Header fields.
const (
	hValidity = 8  // u32
	hDocs     = 12 // u32
	hTerms    = 16 // u32
	hPostings = 24 // u64 offset of postings
	hTermsOff = 32 // u64 offset of terms
	hSize     = 40 // u64 file size
	hDocsCRC  = 48 // u32
	hTermsCRC = 52 // u32
	hCRC      = 60 // u32, of bytes 0..59
)

// Doc flags.
const flagTruncated = 1

// Posting list encodings (the first byte of a list).
const (
	listDeltas = 0 // count uvarints: the first UID, then the differences
	listBitmap = 1 // uvarint base UID, then a bitmap: bit i of byte j is base+8j+i
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func checksum(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// ErrCorrupt is returned for a segment that fails its magic, size or a CRC.
var ErrCorrupt = errors.New("textindex: corrupt segment")

func corrupt(what string) error { return fmt.Errorf("%s: %w", what, ErrCorrupt) }

// segment is one open, immutable segment file.
type segment struct {
	gen      uint64
	path     string
	r        io.ReaderAt
	closer   io.Closer
	validity uint32
	uids     []uint32 // ascending
	keys     []uint32 // key hash per doc
	flags    []byte   // per doc
	postings int64    // offset of the posting lists
	termsOff int64
	nterms   int
	sparse   []uint32 // the key of terms 0, sparseEvery, 2*sparseEvery, …
	postLen  int64    // bytes of posting lists

	// bad is set when a posting list failed its check: the segment is then
	// treated as covering nothing and dropped by the next update.
	bad atomic.Bool

	refMu   sync.Mutex
	refs    int  // users besides the index's list
	retired bool // no longer in the list: close at the last release
}

// termEntry is one row of the term table.
type termEntry struct {
	key    uint32
	count  uint32
	off    uint64
	length uint32
	crc    uint32
}

func decodeTerm(b []byte) termEntry {
	return termEntry{
		key:    binary.LittleEndian.Uint32(b[0:]),
		count:  binary.LittleEndian.Uint32(b[4:]),
		off:    binary.LittleEndian.Uint64(b[8:]),
		length: binary.LittleEndian.Uint32(b[16:]),
		crc:    binary.LittleEndian.Uint32(b[20:]),
	}
}

func appendTerm(b []byte, t termEntry) []byte {
	b = binary.LittleEndian.AppendUint32(b, t.key)
	b = binary.LittleEndian.AppendUint32(b, t.count)
	b = binary.LittleEndian.AppendUint64(b, t.off)
	b = binary.LittleEndian.AppendUint32(b, t.length)
	return binary.LittleEndian.AppendUint32(b, t.crc)
}

// maxSegmentDocs bounds the doc table read into memory (UIDs are 32-bit).
const maxSegmentDocs = 1 << 26

// openSegmentFile opens and checks the segment at path.
func openSegmentFile(path string, gen uint64) (*segment, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	s, err := readSegment(f, st.Size())
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("textindex %s: %w", path, err)
	}
	s.gen, s.path, s.closer = gen, path, f
	return s, nil
}

// readSegment checks a segment of size bytes read through r and loads its
// doc table and sparse term keys. Nothing it reads is trusted before its
// CRC is checked, and no allocation exceeds what size allows.
func readSegment(r io.ReaderAt, size int64) (*segment, error) {
	if size < headerSize {
		return nil, corrupt("short file")
	}
	var h [headerSize]byte
	if _, err := r.ReadAt(h[:], 0); err != nil {
		return nil, err
	}
	if string(h[:8]) != segMagic {
		return nil, corrupt("magic")
	}
	if checksum(h[:hCRC]) != binary.LittleEndian.Uint32(h[hCRC:]) {
		return nil, corrupt("header checksum")
	}
	le := binary.LittleEndian
	ndocs := int64(le.Uint32(h[hDocs:]))
	nterms := int64(le.Uint32(h[hTerms:]))
	postings := int64(le.Uint64(h[hPostings:]))
	termsOff := int64(le.Uint64(h[hTermsOff:]))
	fileSize := int64(le.Uint64(h[hSize:]))
	if fileSize != size {
		return nil, corrupt("size")
	}
	if ndocs > maxSegmentDocs || postings != headerSize+ndocs*docSize ||
		termsOff < postings || termsOff > size || nterms > (size-termsOff)/termSize ||
		termsOff+nterms*termSize != size {
		return nil, corrupt("layout")
	}
	s := &segment{r: r, validity: le.Uint32(h[hValidity:]), postings: postings, termsOff: termsOff,
		nterms: int(nterms), postLen: termsOff - postings}

	docs := make([]byte, ndocs*docSize)
	if _, err := r.ReadAt(docs, headerSize); err != nil {
		return nil, err
	}
	if checksum(docs) != le.Uint32(h[hDocsCRC:]) {
		return nil, corrupt("doc table checksum")
	}
	s.uids = make([]uint32, ndocs)
	s.keys = make([]uint32, ndocs)
	s.flags = make([]byte, ndocs)
	for i := range s.uids {
		d := docs[i*docSize:]
		s.uids[i], s.keys[i], s.flags[i] = le.Uint32(d), le.Uint32(d[4:]), d[8]
		if s.uids[i] == 0 || i > 0 && s.uids[i] <= s.uids[i-1] {
			return nil, corrupt("doc order")
		}
	}

	// The term table is read in pieces to check its CRC and order and to
	// keep every sparseEvery-th key.
	crc := uint32(0)
	buf := make([]byte, sparseEvery*termSize*16)
	var prev termEntry
	var next uint64 // each list starts where the one before ended
	for done := int64(0); done < nterms; {
		n := min(nterms-done, int64(len(buf)/termSize))
		b := buf[:n*termSize]
		if _, err := r.ReadAt(b, termsOff+done*termSize); err != nil {
			return nil, err
		}
		crc = crc32.Update(crc, castagnoli, b)
		for i := int64(0); i < n; i++ {
			t := decodeTerm(b[i*termSize:])
			if (done+i > 0 && t.key <= prev.key) || t.off != next || t.count == 0 || t.length == 0 {
				return nil, corrupt("term table")
			}
			next = t.off + uint64(t.length)
			if (done+i)%sparseEvery == 0 {
				s.sparse = append(s.sparse, t.key)
			}
			prev = t
		}
		done += n
	}
	if crc != le.Uint32(h[hTermsCRC:]) {
		return nil, corrupt("term table checksum")
	}
	if next != uint64(s.postLen) {
		return nil, corrupt("posting size")
	}
	return s, nil
}

// lookup finds the term entry of key.
func (s *segment) lookup(key uint32) (termEntry, bool, error) {
	// The last block whose first key is <= key.
	blk, found := slices.BinarySearch(s.sparse, key)
	if !found {
		if blk == 0 {
			return termEntry{}, false, nil
		}
		blk--
	}
	first := blk * sparseEvery
	n := min(sparseEvery, s.nterms-first)
	buf := make([]byte, n*termSize)
	if _, err := s.r.ReadAt(buf, s.termsOff+int64(first)*termSize); err != nil {
		return termEntry{}, false, err
	}
	lo, hi := 0, n
	for lo < hi {
		m := (lo + hi) / 2
		k := binary.LittleEndian.Uint32(buf[m*termSize:])
		switch {
		case k == key:
			return decodeTerm(buf[m*termSize:]), true, nil
		case k < key:
			lo = m + 1
		default:
			hi = m
		}
	}
	return termEntry{}, false, nil
}

// postingList reads and checks the posting list of t.
func (s *segment) postingList(t termEntry) ([]uint32, error) {
	if t.off+uint64(t.length) > uint64(s.postLen) {
		return nil, corrupt("posting offset")
	}
	buf := make([]byte, t.length)
	if _, err := s.r.ReadAt(buf, s.postings+int64(t.off)); err != nil {
		return nil, err
	}
	if checksum(buf) != t.crc {
		return nil, corrupt("posting checksum")
	}
	return decodeList(buf, t.count)
}

// decodeList decodes one posting list of count UIDs, ascending.
func decodeList(b []byte, count uint32) ([]uint32, error) {
	if len(b) == 0 {
		return nil, corrupt("empty posting list")
	}
	kind, b := b[0], b[1:]
	switch kind {
	case listDeltas:
		if uint64(count) > uint64(len(b)) { // every UID takes at least a byte
			return nil, corrupt("posting count")
		}
		out := make([]uint32, 0, count)
		var uid uint64
		for i := uint32(0); i < count; i++ {
			d, n := binary.Uvarint(b)
			if n <= 0 || (i > 0 && d == 0) {
				return nil, corrupt("posting delta")
			}
			b = b[n:]
			uid += d
			if uid > 0xFFFFFFFF || uid == 0 {
				return nil, corrupt("posting uid")
			}
			out = append(out, uint32(uid))
		}
		if len(b) != 0 {
			return nil, corrupt("posting trailer")
		}
		return out, nil
	case listBitmap:
		base, n := binary.Uvarint(b)
		if n <= 0 || base == 0 || base > 0xFFFFFFFF || uint64(len(b)-n)*8 > 1<<32 {
			return nil, corrupt("bitmap base")
		}
		b = b[n:]
		if base+uint64(len(b))*8 > 1<<32 {
			return nil, corrupt("bitmap range")
		}
		total := 0
		for _, c := range b {
			total += bits.OnesCount8(c)
		}
		if total != int(count) {
			return nil, corrupt("bitmap count")
		}
		out := make([]uint32, 0, count)
		for j, c := range b {
			for c != 0 {
				i := bits.TrailingZeros8(c)
				c &= c - 1
				out = append(out, uint32(base)+uint32(j*8+i))
			}
		}
		return out, nil
	}
	return nil, corrupt("posting kind")
}

// encodeList appends the smaller encoding of uids (ascending, not empty).
func encodeList(dst []byte, uids []uint32) []byte {
	first, last := uids[0], uids[len(uids)-1]
	bitmapLen := 1 + uvarintLen(uint64(first)) + int((last-first)/8+1)
	deltaLen := 1
	prev := uint32(0)
	for _, u := range uids {
		deltaLen += uvarintLen(uint64(u - prev))
		prev = u
		if deltaLen > bitmapLen {
			break
		}
	}
	if deltaLen <= bitmapLen {
		dst = append(dst, listDeltas)
		prev = 0
		for _, u := range uids {
			dst = binary.AppendUvarint(dst, uint64(u-prev))
			prev = u
		}
		return dst
	}
	dst = append(dst, listBitmap)
	dst = binary.AppendUvarint(dst, uint64(first))
	start := len(dst)
	dst = append(dst, make([]byte, (last-first)/8+1)...)
	for _, u := range uids {
		d := u - first
		dst[start+int(d/8)] |= 1 << (d % 8)
	}
	return dst
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// acquire takes a reference for a reader; it fails once the segment was
// retired and closed.
func (s *segment) acquire() {
	s.refMu.Lock()
	s.refs++
	s.refMu.Unlock()
}

// release drops a reader's reference and closes a retired segment at the
// last one.
func (s *segment) release() {
	s.refMu.Lock()
	s.refs--
	closeNow := s.retired && s.refs == 0
	s.refMu.Unlock()
	if closeNow && s.closer != nil {
		s.closer.Close()
	}
}

// retire takes the segment out of use: its file is closed when the last
// reader is done.
func (s *segment) retire() {
	s.refMu.Lock()
	s.retired = true
	closeNow := s.refs == 0
	s.refMu.Unlock()
	if closeNow && s.closer != nil {
		s.closer.Close()
	}
}

// termReader walks a segment's terms and posting lists in order (for a
// merge), reading both sections sequentially.
type termReader struct {
	s     *segment
	next  int
	tbuf  []byte // terms read ahead
	tpos  int
	cur   termEntry
	posts *bufio.Reader
	pbuf  []byte
}

func (s *segment) terms() *termReader {
	return &termReader{s: s, posts: bufio.NewReaderSize(io.NewSectionReader(s.r, s.postings, s.postLen), 256<<10)}
}

// list reads and checks the current term's posting list; lists must be
// read in order, each once.
func (tr *termReader) list() ([]uint32, error) {
	t := tr.cur
	if cap(tr.pbuf) < int(t.length) {
		tr.pbuf = make([]byte, t.length)
	}
	b := tr.pbuf[:t.length]
	if _, err := io.ReadFull(tr.posts, b); err != nil {
		return nil, err
	}
	if checksum(b) != t.crc {
		return nil, corrupt("posting checksum")
	}
	return decodeList(b, t.count)
}

// advance moves to the next term; false at the end.
func (tr *termReader) advance() (bool, error) {
	if tr.next >= tr.s.nterms {
		return false, nil
	}
	if tr.tpos >= len(tr.tbuf) {
		n := min(tr.s.nterms-tr.next, 4096)
		if cap(tr.tbuf) < n*termSize {
			tr.tbuf = make([]byte, n*termSize)
		}
		tr.tbuf = tr.tbuf[:n*termSize]
		if _, err := tr.s.r.ReadAt(tr.tbuf, tr.s.termsOff+int64(tr.next)*termSize); err != nil {
			return false, err
		}
		tr.tpos = 0
	}
	tr.cur = decodeTerm(tr.tbuf[tr.tpos:])
	tr.tpos += termSize
	tr.next++
	return true, nil
}
