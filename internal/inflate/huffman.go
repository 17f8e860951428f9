package inflate

import "math/bits"

// fastBits is the width of the direct lookup table: codes up to this long
// (nearly all in practice) are decoded with one lookup; longer ones walk the
// canonical code a bit at a time.
const (
	fastBits = 9
	fastMask = 1<<fastBits - 1
)

// huffman is one canonical Huffman code (RFC 1951 3.2.2), built from the
// code length of each symbol.
type huffman struct {
	// fast is indexed by the next fastBits input bits; an entry is
	// symbol<<4 | length for codes of at most fastBits bits, 0 otherwise.
	fast [1 << fastBits]uint16
	// count[l] is the number of codes of length l; symbols lists the
	// symbols in code order (by length, then by symbol).
	count   [maxCodeLen + 1]uint16
	symbols [numLitLen]uint16
	maxLen  uint
}

// symbolStatus says whether decode found a symbol.
type symbolStatus uint8

const (
	symbolOK      symbolStatus = iota
	symbolMore                 // the available bits are a prefix of a code
	symbolInvalid              // no code starts with these bits
)

// build makes the code from lengths (0 = symbol unused). It accepts what
// zlib and compress/flate accept: a complete code, no code at all (a
// distance code of a block without matches), or a single code of one bit
// (RFC 1951 3.2.7: "one distance code ... encoded using one bit"). An
// over-subscribed or otherwise incomplete set of lengths is refused.
func (h *huffman) build(lengths []uint8) bool {
	*h = huffman{}
	for _, l := range lengths {
		h.count[l]++
	}
	h.count[0] = 0
	left := 1 // codes still free at the current length
	used := 0
	for l := 1; l <= maxCodeLen; l++ {
		left <<= 1
		left -= int(h.count[l])
		if left < 0 {
			return false
		}
		if h.count[l] > 0 {
			h.maxLen = uint(l)
		}
		used += int(h.count[l])
	}
	if left > 0 && !(used == 0 || used == 1 && h.count[1] == 1) {
		return false
	}
	// offset[l] is where the codes of length l start in symbols; next[l]
	// the next canonical code of length l.
	var offset, next [maxCodeLen + 2]int
	code := 0
	for l := 1; l <= maxCodeLen; l++ {
		offset[l+1] = offset[l] + int(h.count[l])
		code = (code + int(h.count[l-1])) << 1
		next[l] = code
	}
	for sym, l := range lengths {
		if l == 0 {
			continue
		}
		h.symbols[offset[l]] = uint16(sym)
		offset[l]++
		c := next[l]
		next[l]++
		if uint(l) > fastBits {
			continue
		}
		// Codes are sent most significant bit first, and the bit buffer
		// holds the first bit lowest: index by the reversed code.
		rev := int(bits.Reverse16(uint16(c)) >> (16 - l))
		for i := rev; i < len(h.fast); i += 1 << l {
			h.fast[i] = uint16(sym)<<4 | uint16(l)
		}
	}
	return true
}

// decode finds the symbol whose code starts the n available bits of b (the
// first bit lowest). Bits of b beyond n are zero.
func (h *huffman) decode(b uint64, n uint) (int, uint, symbolStatus) {
	if e := h.fast[b&fastMask]; e != 0 {
		if l := uint(e & 15); l <= n {
			return int(e >> 4), l, symbolOK
		}
		return 0, 0, symbolMore
	}
	// Walk the canonical code: codes of length l are the count[l]
	// consecutive values from first, in the order of symbols.
	code, first, index := 0, 0, 0
	for l := uint(1); l <= h.maxLen; l++ {
		if l > n {
			return 0, 0, symbolMore
		}
		code |= int(b>>(l-1)) & 1
		count := int(h.count[l])
		if code-first < count {
			return int(h.symbols[index+code-first]), l, symbolOK
		}
		index += count
		first = (first + count) << 1
		code <<= 1
	}
	return 0, 0, symbolInvalid
}

// The fixed codes of RFC 1951 3.2.6. They are built once and never changed.
var fixedLit, fixedDist = buildFixed()

func buildFixed() (lit, dist huffman) {
	var l [numLitLen]uint8
	for i := range l {
		switch {
		case i < 144:
			l[i] = 8
		case i < 256:
			l[i] = 9
		case i < 280:
			l[i] = 7
		default:
			l[i] = 8
		}
	}
	var d [numDist]uint8
	for i := range d {
		d[i] = 5
	}
	if !lit.build(l[:]) || !dist.build(d[:]) {
		panic("inflate: fixed codes do not build")
	}
	return lit, dist
}
