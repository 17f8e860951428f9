package sieve

import (
	"regexp"
	"regexp/syntax"
	"strconv"
	"strings"
	"unicode/utf8"
)

// comparator is one of the RFC 4790 comparators Sieve scripts name.
type comparator int

const (
	cmpCasemap comparator = iota // i;ascii-casemap, the default (RFC 5228 2.7.3)
	cmpOctet                     // i;octet
	cmpNumeric                   // i;ascii-numeric (RFC 4790 9.1), needs "comparator-i;ascii-numeric"
)

func comparatorByName(name string) (comparator, bool) {
	switch strings.ToLower(name) {
	case "i;ascii-casemap":
		return cmpCasemap, true
	case "i;octet":
		return cmpOctet, true
	case "i;ascii-numeric":
		return cmpNumeric, true
	}
	return 0, false
}

// matchKind is the match type of a test (RFC 5228 2.7.1, RFC 5231, regex).
type matchKind int

const (
	matchIs matchKind = iota
	matchContains
	matchMatches
	matchRegex
	matchCount
	matchValue
)

// relOp is a relational operator of RFC 5231 section 4.
type relOp int

const (
	relGT relOp = iota
	relGE
	relLT
	relLE
	relEQ
	relNE
)

func relOpByName(name string) (relOp, bool) {
	switch strings.ToLower(name) {
	case "gt":
		return relGT, true
	case "ge":
		return relGE, true
	case "lt":
		return relLT, true
	case "le":
		return relLE, true
	case "eq":
		return relEQ, true
	case "ne":
		return relNE, true
	}
	return 0, false
}

func (op relOp) holds(c int) bool {
	switch op {
	case relGT:
		return c > 0
	case relGE:
		return c >= 0
	case relLT:
		return c < 0
	case relLE:
		return c <= 0
	case relEQ:
		return c == 0
	}
	return c != 0
}

// matcher is the comparator and match type of one test, with the key list.
type matcher struct {
	cmp  comparator
	kind matchKind
	rel  relOp
	keys *param
	// regexes holds the compiled constant :regex keys, parallel to keys.
	regexes []*compiledRegex
}

// compiledRegex is a :regex key with its cost: the instructions of its
// program, which bound the work per byte matched.
type compiledRegex struct {
	re   *regexp.Regexp
	cost int
}

// asciiFold maps a-z to A-Z, the i;ascii-casemap mapping.
func asciiFold(c byte) byte {
	if c >= 'a' && c <= 'z' {
		return c - 'a' + 'A'
	}
	return c
}

func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if asciiFold(a[i]) != asciiFold(b[i]) {
			return false
		}
	}
	return true
}

func asciiContainsFold(s, sub string) bool {
	if sub == "" {
		return true
	}
	if len(s)*len(sub) > 1<<16 {
		// Long texts (bodies): fold once and let strings.Index do it in
		// linear time instead of the quadratic worst case below.
		return strings.Contains(asciiUpper(s), asciiUpper(sub))
	}
	first := asciiFold(sub[0])
	for i := 0; i+len(sub) <= len(s); i++ {
		if asciiFold(s[i]) == first && asciiEqualFold(s[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}

func asciiUpper(s string) string {
	b := []byte(s)
	for i, c := range b {
		b[i] = asciiFold(c)
	}
	return string(b)
}

// equal is the comparator's equality.
func (c comparator) equal(a, b string) bool {
	switch c {
	case cmpOctet:
		return a == b
	case cmpNumeric:
		return c.order(a, b) == 0
	}
	return asciiEqualFold(a, b)
}

func (c comparator) contains(s, sub string) bool {
	if c == cmpOctet {
		return strings.Contains(s, sub)
	}
	return asciiContainsFold(s, sub)
}

// order is the comparator's ordering: <0, 0, >0.
func (c comparator) order(a, b string) int {
	switch c {
	case cmpOctet:
		return strings.Compare(a, b)
	case cmpNumeric:
		return numericOrder(a, b)
	}
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		x, y := asciiFold(a[i]), asciiFold(b[i])
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	return len(a) - len(b)
}

// numericOrder is i;ascii-numeric (RFC 4790 9.1): the value of a string is
// its leading digits; a string without one is positive infinity, equal to
// every other such string. Digits are compared without converting, so any
// length works.
func numericOrder(a, b string) int {
	na, okA := leadingDigits(a)
	nb, okB := leadingDigits(b)
	switch {
	case !okA && !okB:
		return 0
	case !okA:
		return 1
	case !okB:
		return -1
	}
	if len(na) != len(nb) {
		return len(na) - len(nb)
	}
	return strings.Compare(na, nb)
}

func leadingDigits(s string) (string, bool) {
	i := 0
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	if i == 0 {
		return "", false
	}
	d := strings.TrimLeft(s[:i], "0")
	return d, true
}

// globToken is a piece of a :matches pattern.
type globToken struct {
	kind byte // 'l' literal byte, '*', '?'
	b    byte
	w    int // index of the wildcard, for match variables
}

func compileGlob(pat string) ([]globToken, int) {
	toks := make([]globToken, 0, len(pat))
	wild := 0
	for i := 0; i < len(pat); i++ {
		c := pat[i]
		switch c {
		case '\\':
			if i+1 < len(pat) {
				i++
				toks = append(toks, globToken{kind: 'l', b: pat[i]})
			}
			continue
		case '*', '?':
			// Consecutive stars match the same as one, but each still
			// gets its (empty) match variable.
			toks = append(toks, globToken{kind: c, w: wild})
			wild++
			continue
		}
		toks = append(toks, globToken{kind: 'l', b: c})
	}
	return toks, wild
}

// globMatch matches s against a :matches pattern (RFC 5228 2.7.1: "*" any
// sequence, "?" one character, "\" escapes) and returns the text each
// wildcard matched (RFC 5229 3.2). Each "*" takes as little as it can, so
// "[*] *" on "[a] [b] c" gives "a" and "[b] c", as RFC 5229's example
// says. It runs in O(len(s)*len(pattern)): only the latest star is ever
// widened.
//
// budget bounds the loop's iterations: past it globMatch gives up. work is
// the number of iterations it took (more than budget when it gave up).
func globMatch(pat, s string, cmp comparator, wantCaps bool, budget int) (bool, []string, int) {
	toks, nwild := compileGlob(pat)
	work := 0
	fold := cmp != cmpOctet
	var caps [][2]int
	if wantCaps {
		caps = make([][2]int, nwild)
	}
	pi, si := 0, 0
	starPi, starStart, starEnd := -1, 0, 0
	for si < len(s) || pi < len(toks) {
		work++
		if work > budget {
			return false, nil, work
		}
		if pi < len(toks) {
			t := toks[pi]
			switch t.kind {
			case '*':
				starPi, starStart, starEnd = pi, si, si
				if caps != nil {
					caps[t.w] = [2]int{si, si}
				}
				pi++
				continue
			case '?':
				if si < len(s) {
					n := charLen(s[si:], fold)
					if caps != nil {
						caps[t.w] = [2]int{si, si + n}
					}
					si += n
					pi++
					continue
				}
			default:
				if si < len(s) && (s[si] == t.b || fold && asciiFold(s[si]) == asciiFold(t.b)) {
					si++
					pi++
					continue
				}
			}
		}
		if starPi < 0 || starEnd >= len(s) {
			return false, nil, work
		}
		starEnd += charLen(s[starEnd:], fold)
		if caps != nil {
			caps[toks[starPi].w] = [2]int{starStart, starEnd}
		}
		pi, si = starPi+1, starEnd
	}
	if !wantCaps {
		return true, nil, work
	}
	out := make([]string, 0, nwild+1)
	out = append(out, s)
	for _, c := range caps {
		out = append(out, s[c[0]:c[1]])
	}
	return true, out, work
}

// charLen is the length of the character at the start of s: one octet for
// i;octet, one UTF-8 sequence otherwise.
func charLen(s string, utf bool) int {
	if !utf {
		return 1
	}
	_, n := utf8.DecodeRuneInString(s)
	return n
}

// matchOne compares one value with one key under the match type; for
// :matches and :regex it also returns the match variables. budget bounds
// the work of :matches (see globMatch); work is what it took.
func (m *matcher) matchOne(value, key string, re *regexp.Regexp, wantCaps bool, budget int) (ok bool, caps []string, work int) {
	if m.kind == matchMatches {
		return globMatch(key, value, m.cmp, wantCaps, budget)
	}
	ok, caps = m.matchSimple(value, key, re, wantCaps)
	return ok, caps, 0
}

func (m *matcher) matchSimple(value, key string, re *regexp.Regexp, wantCaps bool) (bool, []string) {
	switch m.kind {
	case matchIs:
		return m.cmp.equal(value, key), nil
	case matchContains:
		return m.cmp.contains(value, key), nil
	case matchRegex:
		if re == nil {
			return false, nil
		}
		if !wantCaps {
			return re.MatchString(value), nil
		}
		idx := re.FindStringSubmatchIndex(value)
		if idx == nil {
			return false, nil
		}
		caps := make([]string, len(idx)/2)
		for i := range caps {
			if idx[2*i] >= 0 {
				caps[i] = value[idx[2*i]:idx[2*i+1]]
			}
		}
		return true, caps
	case matchValue:
		return m.rel.holds(m.cmp.order(value, key)), nil
	}
	return false, nil
}

// compileRegex compiles a :regex key: POSIX extended syntax as Go's RE2
// reads it, case-insensitive under i;ascii-casemap.
func compileRegex(key string, cmp comparator) (*compiledRegex, error) {
	if cmp == cmpCasemap {
		key = "(?i)" + key
	}
	re, err := regexp.Compile(key)
	if err != nil {
		return nil, err
	}
	cost := 1
	if parsed, err := syntax.Parse(key, syntax.Perl); err == nil {
		if prog, err := syntax.Compile(parsed.Simplify()); err == nil {
			cost = len(prog.Inst)
		}
	}
	return &compiledRegex{re: re, cost: cost}, nil
}

func countString(n int) string { return strconv.Itoa(n) }
