package imap

import (
	"strconv"
	"strings"
)

// seqRange is one element of a sequence set; 0 stands for "*" (the largest
// number in use), as RFC 3501 section 9 (seq-number) allows.
type seqRange struct{ lo, hi uint32 }

// seqSet is a parsed sequence-set, in the order the client wrote it.
type seqSet []seqRange

// maxSeqRanges bounds how many ranges one set may hold; the line limit
// bounds it already, this keeps resolution cheap.
const maxSeqRanges = 10000

// parseSeqSet parses an RFC 3501 sequence-set: "1", "2:4", "*", "5:*",
// "1,3:5,7:*". Zero is not a valid number.
func parseSeqSet(s string) (seqSet, error) {
	if s == "" {
		return nil, syntaxErr("empty sequence set")
	}
	set := make(seqSet, 0, strings.Count(s, ",")+1)
	for len(s) > 0 {
		var item string
		if i := strings.IndexByte(s, ','); i >= 0 {
			item, s = s[:i], s[i+1:]
			if s == "" {
				return nil, syntaxErr("trailing comma in sequence set")
			}
		} else {
			item, s = s, ""
		}
		if len(set) >= maxSeqRanges {
			return nil, syntaxErr("sequence set too long")
		}
		lo, hi, found := strings.Cut(item, ":")
		a, err := parseSeqNumber(lo)
		if err != nil {
			return nil, err
		}
		b := a
		if found {
			if b, err = parseSeqNumber(hi); err != nil {
				return nil, err
			}
		}
		set = append(set, seqRange{a, b})
	}
	return set, nil
}

func parseSeqNumber(s string) (uint32, error) {
	if s == "*" {
		return 0, nil
	}
	if s == "" || len(s) > 10 {
		return 0, syntaxErr("bad sequence number %q", s)
	}
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return 0, syntaxErr("bad sequence number %q", s)
		}
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n == 0 {
		return 0, syntaxErr("bad sequence number %q", s)
	}
	return uint32(n), nil
}

// bounds returns the range in ascending order with "*" replaced by star.
func (r seqRange) bounds(star uint32) (lo, hi uint32) {
	lo, hi = r.lo, r.hi
	if lo == 0 {
		lo = star
	}
	if hi == 0 {
		hi = star
	}
	if lo > hi {
		lo, hi = hi, lo
	}
	return lo, hi
}

// contains reports whether n is in the set, "*" being star.
func (s seqSet) contains(n, star uint32) bool {
	for _, r := range s {
		lo, hi := r.bounds(star)
		if n >= lo && n <= hi {
			return true
		}
	}
	return false
}

// String renders the set back in IMAP syntax.
func (s seqSet) String() string {
	var b []byte
	for i, r := range s {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendSeqNumber(b, r.lo)
		if r.hi != r.lo {
			b = append(b, ':')
			b = appendSeqNumber(b, r.hi)
		}
	}
	return string(b)
}

func appendSeqNumber(b []byte, n uint32) []byte {
	if n == 0 {
		return append(b, '*')
	}
	return strconv.AppendUint(b, uint64(n), 10)
}

// compactUIDs renders ascending UIDs as a compact uid-set ("1:3,7") for
// APPENDUID and COPYUID (RFC 4315 section 3). The order is kept, since
// COPYUID pairs the two sets element by element.
func compactUIDs(uids []uint32) string {
	var b []byte
	for i := 0; i < len(uids); {
		j := i
		for j+1 < len(uids) && uids[j+1] == uids[j]+1 {
			j++
		}
		if len(b) > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendUint(b, uint64(uids[i]), 10)
		if j > i {
			b = append(b, ':')
			b = strconv.AppendUint(b, uint64(uids[j]), 10)
		}
		i = j + 1
	}
	return string(b)
}
