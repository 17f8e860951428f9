package sieve

import (
	"bytes"
	"math"
	"strings"
)

// tokenKind is the lexical class of a token (RFC 5228 section 8.1).
type tokenKind int

const (
	tokEOF tokenKind = iota
	tokIdent
	tokTag
	tokNumber
	tokString
	tokLBracket
	tokRBracket
	tokComma
	tokLParen
	tokRParen
	tokLBrace
	tokRBrace
	tokSemicolon
)

var tokenNames = [...]string{
	tokEOF: "end of script", tokIdent: "identifier", tokTag: "tag", tokNumber: "number",
	tokString: "string", tokLBracket: "'['", tokRBracket: "']'", tokComma: "','",
	tokLParen: "'('", tokRParen: "')'", tokLBrace: "'{'", tokRBrace: "'}'", tokSemicolon: "';'",
}

func (k tokenKind) String() string { return tokenNames[k] }

type token struct {
	kind tokenKind
	pos  Pos
	text string // identifier, tag (without ':'), or the string's value
	num  int64
}

// describe names a token for an error message.
func (t token) describe() string {
	switch t.kind {
	case tokIdent:
		return "identifier " + t.text
	case tokTag:
		return "tag :" + t.text
	case tokNumber:
		return "number"
	}
	return t.kind.String()
}

// lexer splits a script into tokens. The source has CRLF already turned
// into LF (normalizeEOL), so strings hold LF line ends.
type lexer struct {
	src       []byte
	off       int
	line      int
	lineStart int
}

// lex returns all tokens of src, ending with tokEOF, or the first lexical
// error.
func lex(src []byte) ([]token, error) {
	l := &lexer{src: src, line: 1}
	toks := make([]token, 0, len(src)/6+1)
	for {
		t, err := l.next()
		if err != nil {
			return nil, err
		}
		toks = append(toks, t)
		if t.kind == tokEOF {
			return toks, nil
		}
	}
}

// normalizeEOL turns CRLF into LF: scripts uploaded over ManageSieve use
// CRLF, files edited on Unix LF; both mean the same script.
func normalizeEOL(src []byte) []byte {
	if !bytes.Contains(src, []byte("\r\n")) {
		return src
	}
	return bytes.ReplaceAll(src, []byte("\r\n"), []byte("\n"))
}

func (l *lexer) pos() Pos { return Pos{Line: l.line, Col: l.off - l.lineStart + 1} }

func (l *lexer) newline() {
	l.line++
	l.lineStart = l.off
}

// skipSpace skips white space and both kinds of comment (RFC 5228 2.3).
func (l *lexer) skipSpace() error {
	for l.off < len(l.src) {
		c := l.src[l.off]
		switch {
		case c == '\n':
			l.off++
			l.newline()
		case c == ' ' || c == '\t' || c == '\r':
			l.off++
		case c == '#':
			for l.off < len(l.src) && l.src[l.off] != '\n' {
				l.off++
			}
		case c == '/' && l.off+1 < len(l.src) && l.src[l.off+1] == '*':
			start := l.pos()
			l.off += 2
			for {
				if l.off+1 >= len(l.src) {
					return parseErrorf(start, "unterminated comment: /* without */")
				}
				if l.src[l.off] == '*' && l.src[l.off+1] == '/' {
					l.off += 2
					break
				}
				if l.src[l.off] == '\n' {
					l.off++
					l.newline()
					continue
				}
				l.off++
			}
		default:
			return nil
		}
	}
	return nil
}

func isAlpha(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func (l *lexer) next() (token, error) {
	if err := l.skipSpace(); err != nil {
		return token{}, err
	}
	p := l.pos()
	if l.off >= len(l.src) {
		return token{kind: tokEOF, pos: p}, nil
	}
	c := l.src[l.off]
	if k, ok := punctuation(c); ok {
		l.off++
		return token{kind: k, pos: p}, nil
	}
	switch {
	case c == '"':
		s, err := l.quoted(p)
		return token{kind: tokString, pos: p, text: s}, err
	case c == ':':
		l.off++
		if l.off >= len(l.src) || !(isAlpha(l.src[l.off]) || l.src[l.off] == '_') {
			return token{}, parseErrorf(p, "a tag needs a name after ':'")
		}
		return token{kind: tokTag, pos: p, text: strings.ToLower(l.identifier())}, nil
	case isDigit(c):
		n, err := l.number(p)
		return token{kind: tokNumber, pos: p, num: n}, err
	case isAlpha(c) || c == '_':
		id := l.identifier()
		if strings.EqualFold(id, "text") && l.off < len(l.src) && l.src[l.off] == ':' {
			l.off++
			s, err := l.multiline(p)
			return token{kind: tokString, pos: p, text: s}, err
		}
		return token{kind: tokIdent, pos: p, text: strings.ToLower(id)}, nil
	}
	return token{}, parseErrorf(p, "unexpected character %q", rune(c))
}

func punctuation(c byte) (tokenKind, bool) {
	switch c {
	case '[':
		return tokLBracket, true
	case ']':
		return tokRBracket, true
	case ',':
		return tokComma, true
	case '(':
		return tokLParen, true
	case ')':
		return tokRParen, true
	case '{':
		return tokLBrace, true
	case '}':
		return tokRBrace, true
	case ';':
		return tokSemicolon, true
	}
	return 0, false
}

func (l *lexer) identifier() string {
	start := l.off
	for l.off < len(l.src) {
		c := l.src[l.off]
		if !isAlpha(c) && !isDigit(c) && c != '_' {
			break
		}
		l.off++
	}
	return string(l.src[start:l.off])
}

// number reads 1*DIGIT [QUANTIFIER] (RFC 5228 2.4.1): K, M and G multiply
// by 2^10, 2^20 and 2^30.
func (l *lexer) number(p Pos) (int64, error) {
	var n int64
	for l.off < len(l.src) && isDigit(l.src[l.off]) {
		d := int64(l.src[l.off] - '0')
		if n > (math.MaxInt64-d)/10 {
			return 0, parseErrorf(p, "number too large")
		}
		n = n*10 + d
		l.off++
	}
	if l.off < len(l.src) {
		shift := 0
		switch l.src[l.off] {
		case 'K', 'k':
			shift = 10
		case 'M', 'm':
			shift = 20
		case 'G', 'g':
			shift = 30
		}
		if shift > 0 {
			l.off++
			if n > math.MaxInt64>>shift {
				return 0, parseErrorf(p, "number too large")
			}
			n <<= shift
		}
	}
	if l.off < len(l.src) && (isAlpha(l.src[l.off]) || l.src[l.off] == '_') {
		return 0, parseErrorf(p, "bad number: unexpected %q after the digits (quantifiers are K, M, G)", rune(l.src[l.off]))
	}
	return n, nil
}

// quoted reads a quoted string. RFC 5228 2.4.2: \" and \\ are the escapes;
// any other backslash is dropped ("\a" is "a").
func (l *lexer) quoted(p Pos) (string, error) {
	l.off++ // opening quote
	var b strings.Builder
	for {
		if l.off >= len(l.src) {
			return "", parseErrorf(p, "unterminated string: no closing '\"'")
		}
		c := l.src[l.off]
		switch c {
		case '"':
			l.off++
			return b.String(), nil
		case '\\':
			l.off++
			if l.off >= len(l.src) {
				return "", parseErrorf(p, "unterminated string: no closing '\"'")
			}
			c = l.src[l.off]
		}
		if c == '\n' {
			l.off++
			l.newline()
			b.WriteByte(c)
			continue
		}
		b.WriteByte(c)
		l.off++
	}
}

// multiline reads the rest of a "text:" string (RFC 5228 2.4.2): spaces and
// an optional hash comment up to the line end, then lines up to one that is
// a lone ".", with a leading ".." standing for ".".
func (l *lexer) multiline(p Pos) (string, error) {
	for l.off < len(l.src) && (l.src[l.off] == ' ' || l.src[l.off] == '\t' || l.src[l.off] == '\r') {
		l.off++
	}
	if l.off < len(l.src) && l.src[l.off] == '#' {
		for l.off < len(l.src) && l.src[l.off] != '\n' {
			l.off++
		}
	}
	if l.off >= len(l.src) || l.src[l.off] != '\n' {
		return "", parseErrorf(l.pos(), "text: must be followed by the end of the line")
	}
	l.off++
	l.newline()
	var b strings.Builder
	for {
		if l.off >= len(l.src) {
			return "", parseErrorf(p, "unterminated multi-line string: no line with a lone '.'")
		}
		end := bytes.IndexByte(l.src[l.off:], '\n')
		var line []byte
		if end < 0 {
			line = l.src[l.off:]
			l.off = len(l.src)
		} else {
			line = l.src[l.off : l.off+end]
			l.off += end + 1
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		if end >= 0 {
			l.newline()
		}
		if len(line) == 1 && line[0] == '.' {
			return b.String(), nil
		}
		if len(line) >= 2 && line[0] == '.' && line[1] == '.' {
			line = line[1:]
		}
		if end < 0 {
			return "", parseErrorf(p, "unterminated multi-line string: no line with a lone '.'")
		}
		b.Write(line)
		b.WriteByte('\n')
	}
}
