// Package inflate decodes raw DEFLATE streams (RFC 1951) for protocols that
// compress a conversation rather than a file, such as IMAP COMPRESS
// (RFC 4978): the peer flushes its compressor after each command and then
// waits for the answer, so every byte that can be decoded must reach the
// reader at once.
//
// Go's compress/flate reader hands out data only at a stored block or at the
// final block. A peer that flushes with zlib's Z_SYNC_FLUSH ends each burst
// with an empty stored block and is served, but one that uses
// Z_PARTIAL_FLUSH (mbsync does) ends it with an empty fixed-Huffman block,
// and that reader would wait forever for more input.
//
// This Reader differs in two ways: Read returns as soon as it holds decoded
// bytes and the next step would have to wait for input, whatever the block
// type; and it takes input one byte at a time through an io.ByteReader,
// only when the symbol being decoded needs it, so it never waits for a byte
// that the data already sent does not need. Given a *bufio.Reader (anything
// with a Buffered method), it decodes on through the bytes already buffered
// before returning.
//
// Memory is fixed: the 32 KiB window and the decoding tables of one block,
// about 40 KiB in all. Malformed input gives a CorruptInputError; it never
// panics, and every step either consumes input or produces output, so no
// input makes it loop forever.
package inflate

import (
	"errors"
	"io"
	"strconv"
)

// CorruptInputError reports malformed DEFLATE data at an input offset (in
// bytes from the start of the stream, counting the byte being decoded).
type CorruptInputError struct {
	Offset int64
	Reason string
}

func (e *CorruptInputError) Error() string {
	return "inflate: corrupt input at byte " + strconv.FormatInt(e.Offset, 10) + ": " + e.Reason
}

const (
	windowSize = 1 << 15 // RFC 1951 3.2.5: distances reach back 32768 bytes
	windowMask = windowSize - 1

	maxCodeLen = 15  // RFC 1951 3.2.2: no code is longer than 15 bits
	numLitLen  = 288 // literal/length alphabet including the two unused codes
	numDist    = 32  // distance alphabet including the two unused codes
	numCodeLen = 19  // code length alphabet (RFC 1951 3.2.7)
	endOfBlock = 256
)

// stage is where the decoder is between steps. Every step is restartable:
// it looks at the bit buffer, fetches more input if the bits are not there
// yet, and consumes the bits only when the whole step can be done.
type stage uint8

const (
	stageHeader     stage = iota // BFINAL and BTYPE of the next block
	stageStoredLen               // LEN and NLEN of a stored block
	stageStored                  // copying a stored block's bytes
	stageDynCounts               // HLIT, HDIST, HCLEN
	stageDynCodeLen              // the HCLEN 3-bit code lengths of the code length code
	stageDynLens                 // the HLIT+HDIST code lengths
	stageHuffman                 // literals and matches of a Huffman block
	stageDone                    // the final block has ended
)

// errWait is internal: the step needs input, decoded bytes are waiting to
// be returned, and the source has nothing buffered.
var errWait = errors.New("inflate: wait")

// Reader decompresses a raw DEFLATE stream. It is not safe for concurrent
// use.
type Reader struct {
	src      io.ByteReader
	buffered func() int // the source's Buffered method, or nil
	avail    int        // bytes src held at the last look, less those taken since
	inOffset int64      // input bytes taken from src

	bits  uint64 // input bits not yet consumed, the next one lowest
	nbits uint

	stage stage
	final bool // the current block is the last one

	storedLeft int // bytes of the current stored block still to copy

	// A dynamic block's header, read piece by piece.
	numLit, numDist, numCodeLens int
	lensRead                     int
	lens                         [numLitLen + numDist]uint8
	codeLenCode                  huffman
	dynLit, dynDist              huffman
	lit, dist                    *huffman // the current block's codes

	// A match longer than what the last Read could take.
	copyLeft, copyDist int

	window  [windowSize]byte
	wpos    int // where the next decoded byte goes in window
	history int // bytes of window that hold output, up to windowSize

	srcErr error // an error of src met after decoded bytes were ready
	err    error // sticky: corrupt input, or the end of the stream
}

// NewReader returns a Reader that decodes the DEFLATE stream read from src.
// If src has a Buffered() int method (*bufio.Reader has), Read goes on
// decoding while src holds unread bytes; otherwise it returns as soon as it
// has something and the next step needs input. The Reader must be the only
// reader of src.
func NewReader(src io.ByteReader) *Reader {
	z := &Reader{src: src}
	if b, ok := src.(interface{ Buffered() int }); ok {
		z.buffered = b.Buffered
	}
	return z
}

// Read decodes into p. It blocks on the source only while it has decoded
// nothing for this call; once it has, it returns rather than wait for more
// input. It returns io.EOF after the final block, and io.ErrUnexpectedEOF if
// the source ends before it.
func (z *Reader) Read(p []byte) (int, error) {
	if z.err != nil {
		return 0, z.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	limit := min(len(p), windowSize)
	n := 0
	err := z.decode(&n, limit)
	z.copyOut(p, n)
	switch {
	case err == nil || err == errWait:
		return n, nil
	case n > 0 && !z.isCorrupt(err):
		// Hand over the bytes now; the source's error comes with the next
		// call that needs input.
		z.srcErr = err
		return n, nil
	}
	if z.isCorrupt(err) || err == io.EOF {
		z.err = err
	}
	return n, err
}

func (z *Reader) isCorrupt(err error) bool {
	var ce *CorruptInputError
	return errors.As(err, &ce)
}

// copyOut copies the n bytes decoded last into p.
func (z *Reader) copyOut(p []byte, n int) {
	if n == 0 {
		return
	}
	start := (z.wpos - n) & windowMask
	if start+n <= windowSize {
		copy(p, z.window[start:start+n])
		return
	}
	k := copy(p, z.window[start:])
	copy(p[k:], z.window[:n-k])
}

func (z *Reader) corrupt(reason string) error {
	return &CorruptInputError{Offset: z.inOffset, Reason: reason}
}

// more takes one input byte into the bit buffer. With have > 0 decoded
// bytes waiting, it takes only a byte the source already holds.
func (z *Reader) more(have int) error {
	if z.srcErr != nil {
		err := z.srcErr
		z.srcErr = nil
		return err
	}
	if have > 0 && z.avail == 0 {
		if z.buffered != nil {
			z.avail = z.buffered()
		}
		if z.avail == 0 {
			return errWait
		}
	}
	b, err := z.src.ReadByte()
	if err != nil {
		z.avail = 0
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	if z.avail > 0 {
		z.avail--
	}
	z.inOffset++
	z.bits |= uint64(b) << z.nbits
	z.nbits += 8
	return nil
}

// need makes sure the bit buffer holds at least n bits (n <= 56).
func (z *Reader) need(n uint, have int) error {
	for z.nbits < n {
		if err := z.more(have); err != nil {
			return err
		}
	}
	return nil
}

func (z *Reader) consume(n uint) {
	z.bits >>= n
	z.nbits -= n
}

// decode runs steps until limit bytes are decoded, the stream ends, or a
// step cannot go on. *n counts the bytes decoded by this call.
func (z *Reader) decode(n *int, limit int) error {
	for *n < limit {
		var err error
		switch z.stage {
		case stageHeader:
			err = z.readHeader(*n)
		case stageStoredLen:
			err = z.readStoredLen(*n)
		case stageStored:
			err = z.copyStored(n, limit)
		case stageDynCounts:
			err = z.readDynCounts(*n)
		case stageDynCodeLen:
			err = z.readCodeLenCode(*n)
		case stageDynLens:
			err = z.readLens(*n)
		case stageHuffman:
			err = z.decodeHuffman(n, limit)
		case stageDone:
			if *n > 0 {
				return nil
			}
			return io.EOF
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// endBlock moves on after a block's last byte.
func (z *Reader) endBlock() {
	if z.final {
		z.stage = stageDone
		return
	}
	z.stage = stageHeader
}

// readHeader reads BFINAL and BTYPE (RFC 1951 3.2.3).
func (z *Reader) readHeader(have int) error {
	if err := z.need(3, have); err != nil {
		return err
	}
	z.final = z.bits&1 == 1
	btype := (z.bits >> 1) & 3
	z.consume(3)
	switch btype {
	case 0:
		z.stage = stageStoredLen
	case 1:
		z.lit, z.dist = &fixedLit, &fixedDist
		z.stage = stageHuffman
	case 2:
		z.stage = stageDynCounts
	default:
		return z.corrupt("reserved block type 3")
	}
	return nil
}

// readStoredLen skips to the byte boundary and reads LEN and NLEN
// (RFC 1951 3.2.4).
func (z *Reader) readStoredLen(have int) error {
	// The bits left of a partly read byte are padding; whole bytes fetched
	// already are the start of LEN.
	z.consume(z.nbits & 7)
	if err := z.need(32, have); err != nil {
		return err
	}
	length := int(z.bits & 0xffff)
	nlength := int((z.bits >> 16) & 0xffff)
	if length != ^nlength&0xffff {
		return z.corrupt("stored block length does not match its complement")
	}
	z.consume(32)
	z.storedLeft = length
	z.stage = stageStored
	if length == 0 {
		z.endBlock()
	}
	return nil
}

func (z *Reader) copyStored(n *int, limit int) error {
	for z.storedLeft > 0 && *n < limit {
		if err := z.need(8, *n); err != nil {
			return err
		}
		z.put(byte(z.bits), n)
		z.consume(8)
		z.storedLeft--
	}
	if z.storedLeft == 0 {
		z.endBlock()
	}
	return nil
}

// put appends one decoded byte to the window.
func (z *Reader) put(b byte, n *int) {
	z.window[z.wpos] = b
	z.wpos = (z.wpos + 1) & windowMask
	if z.history < windowSize {
		z.history++
	}
	*n++
}

// readDynCounts reads HLIT, HDIST and HCLEN (RFC 1951 3.2.7).
func (z *Reader) readDynCounts(have int) error {
	if err := z.need(14, have); err != nil {
		return err
	}
	nlit := int(z.bits&0x1f) + 257
	ndist := int((z.bits>>5)&0x1f) + 1
	nclen := int((z.bits>>10)&0xf) + 4
	// Codes 286, 287 and distance codes 30, 31 never occur in the data
	// (RFC 1951 3.2.5); zlib and compress/flate refuse headers that give
	// them lengths, and so do we.
	if nlit > 286 {
		return z.corrupt("more than 286 literal/length codes")
	}
	if ndist > 30 {
		return z.corrupt("more than 30 distance codes")
	}
	z.consume(14)
	z.numLit, z.numDist, z.numCodeLens = nlit, ndist, nclen
	z.lensRead = 0
	clear(z.lens[:numCodeLen])
	z.stage = stageDynCodeLen
	return nil
}

// codeLenOrder is the order in which the code length code's lengths are
// sent (RFC 1951 3.2.7).
var codeLenOrder = [numCodeLen]uint8{16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15}

func (z *Reader) readCodeLenCode(have int) error {
	for z.lensRead < z.numCodeLens {
		if err := z.need(3, have); err != nil {
			return err
		}
		z.lens[codeLenOrder[z.lensRead]] = uint8(z.bits & 7)
		z.consume(3)
		z.lensRead++
	}
	if !z.codeLenCode.build(z.lens[:numCodeLen]) {
		return z.corrupt("invalid code length code")
	}
	z.lensRead = 0
	z.stage = stageDynLens
	return nil
}

// readLens reads the literal/length and distance code lengths, coded with
// the code length code: 0-15 literally, 16 repeats the previous length 3-6
// times, 17 and 18 give 3-10 and 11-138 zeros.
func (z *Reader) readLens(have int) error {
	total := z.numLit + z.numDist
	for z.lensRead < total {
		sym, used, err := z.decodeSymbol(&z.codeLenCode, 0, have)
		if err != nil {
			return err
		}
		if sym < 16 {
			z.consume(used)
			z.lens[z.lensRead] = uint8(sym)
			z.lensRead++
			continue
		}
		var extra uint
		var base int
		var value uint8
		switch sym {
		case 16:
			if z.lensRead == 0 {
				return z.corrupt("repeat of a code length with none before it")
			}
			extra, base, value = 2, 3, z.lens[z.lensRead-1]
		case 17:
			extra, base = 3, 3
		default:
			extra, base = 7, 11
		}
		if err := z.need(used+extra, have); err != nil {
			return err
		}
		count := base + int((z.bits>>used)&(1<<extra-1))
		if z.lensRead+count > total {
			return z.corrupt("code lengths run past the end of the table")
		}
		z.consume(used + extra)
		for range count {
			z.lens[z.lensRead] = value
			z.lensRead++
		}
	}
	if z.lens[endOfBlock] == 0 {
		return z.corrupt("no code for the end of the block")
	}
	if !z.dynLit.build(z.lens[:z.numLit]) {
		return z.corrupt("invalid literal/length code")
	}
	if !z.dynDist.build(z.lens[z.numLit:total]) {
		return z.corrupt("invalid distance code")
	}
	z.lit, z.dist = &z.dynLit, &z.dynDist
	z.stage = stageHuffman
	return nil
}

// decodeSymbol decodes the symbol of h that starts skip bits into the bit
// buffer, fetching input as needed. It returns the symbol and skip plus its
// length; nothing is consumed.
func (z *Reader) decodeSymbol(h *huffman, skip uint, have int) (int, uint, error) {
	for {
		sym, length, st := h.decode(z.bits>>skip, z.nbits-skip)
		switch st {
		case symbolOK:
			return sym, skip + length, nil
		case symbolInvalid:
			return 0, 0, z.corrupt("invalid Huffman code")
		}
		if err := z.more(have); err != nil {
			return 0, 0, err
		}
	}
}

// Lengths and distances of RFC 1951 3.2.5: base values and extra bits.
var (
	lengthBase  = [29]uint16{3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258}
	lengthExtra = [29]uint8{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0}
	distBase    = [30]uint16{1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577}
	distExtra   = [30]uint8{0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13}
)

// decodeHuffman decodes literals and matches of a compressed block
// (RFC 1951 3.2.5). A literal or a whole length/distance pair is one step:
// its bits (at most 15+5+15+13) are consumed together once all are there.
func (z *Reader) decodeHuffman(n *int, limit int) error {
	for *n < limit {
		if z.copyLeft > 0 {
			z.copyMatch(n, limit)
			continue
		}
		sym, used, err := z.decodeSymbol(z.lit, 0, *n)
		if err != nil {
			return err
		}
		switch {
		case sym < endOfBlock:
			z.consume(used)
			z.put(byte(sym), n)
			continue
		case sym == endOfBlock:
			z.consume(used)
			z.endBlock()
			return nil
		case sym > 285:
			return z.corrupt("invalid literal/length symbol " + strconv.Itoa(sym))
		}
		li := sym - 257
		if err := z.need(used+uint(lengthExtra[li]), *n); err != nil {
			return err
		}
		length := int(lengthBase[li]) + int((z.bits>>used)&(1<<lengthExtra[li]-1))
		used += uint(lengthExtra[li])
		dsym, dused, err := z.decodeSymbol(z.dist, used, *n)
		if err != nil {
			return err
		}
		if dsym > 29 {
			return z.corrupt("invalid distance symbol " + strconv.Itoa(dsym))
		}
		if err := z.need(dused+uint(distExtra[dsym]), *n); err != nil {
			return err
		}
		dist := int(distBase[dsym]) + int((z.bits>>dused)&(1<<distExtra[dsym]-1))
		if dist > z.history {
			return z.corrupt("distance " + strconv.Itoa(dist) + " reaches before the start of the stream")
		}
		z.consume(dused + uint(distExtra[dsym]))
		z.copyLeft, z.copyDist = length, dist
		z.copyMatch(n, limit)
	}
	return nil
}

// copyMatch copies as much of the pending match as this Read can take.
func (z *Reader) copyMatch(n *int, limit int) {
	k := min(z.copyLeft, limit-*n)
	z.history = min(z.history+k, windowSize)
	z.copyLeft -= k
	*n += k
	for k > 0 {
		// Copy in pieces that neither wrap around the window nor overlap
		// (a distance shorter than the length repeats what is being
		// written, so pieces are at most the distance long).
		from := (z.wpos - z.copyDist) & windowMask
		piece := min(k, windowSize-z.wpos, windowSize-from, z.copyDist)
		copy(z.window[z.wpos:z.wpos+piece], z.window[from:from+piece])
		z.wpos = (z.wpos + piece) & windowMask
		k -= piece
	}
}
