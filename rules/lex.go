package rules

import (
	"fmt"
	"strconv"
	"strings"
)

// Pos is a place in a filter file: 1-based line and column (in bytes).
type Pos struct {
	Line, Col int
}

// SyntaxError is a lexical or grammatical error in a filter file. Its text
// is "FILE:LINE:COL: message", the form editors and CI jump to.
type SyntaxError struct {
	File      string
	Line, Col int
	Msg       string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.Msg)
}

type tokKind int

const (
	tEOF     tokKind = iota
	tSep             // newline or ';' (maildrop: the end of line is a token)
	tText            // unquoted word or quoted literal: parts to substitute
	tCommand         // `backquoted command`
	tPattern         // /re/:flags,w,f
	tOp              // operators and punctuation: ( ) { } , = == =~ ...
)

// textPart is a piece of a literal: either fixed text or a variable to
// substitute at run time.
type textPart struct {
	lit   string
	vname string // non-empty: substitute this variable
}

type token struct {
	kind   tokKind
	pos    Pos
	op     string     // tOp: the operator; tText: "word" for unquoted text
	parts  []textPart // tText, tCommand, tPattern (the pattern source)
	raw    string     // tText unquoted: the word as written (keywords, names)
	quoted bool       // tText: came from quotes (never a keyword)
	// tPattern
	flags       string
	weighted    bool
	weight, fac float64
}

// Bounds on the lexer so a hostile file cannot make it build giant tokens.
const maxTokenLen = 64 << 10

type lexer struct {
	file string
	src  string
	off  int
	line int
	col  int
	toks []token
	// afterAssign: the previous token was a lone "=", so text starting with
	// "/" is a word, not a pattern (maildropfilter(7), "Unquoted text").
	afterAssign bool
}

func lex(file string, src []byte) ([]token, error) {
	lx := &lexer{file: file, src: string(src), line: 1, col: 1}
	for {
		t, err := lx.next()
		if err != nil {
			return nil, err
		}
		lx.toks = append(lx.toks, t)
		lx.afterAssign = t.kind == tOp && t.op == "="
		if t.kind == tEOF {
			return lx.toks, nil
		}
	}
}

func (lx *lexer) errf(p Pos, format string, args ...any) error {
	return &SyntaxError{File: lx.file, Line: p.Line, Col: p.Col, Msg: fmt.Sprintf(format, args...)}
}

func (lx *lexer) peekc(n int) byte {
	if lx.off+n < len(lx.src) {
		return lx.src[lx.off+n]
	}
	return 0
}

func (lx *lexer) advance() byte {
	c := lx.src[lx.off]
	lx.off++
	if c == '\n' {
		lx.line++
		lx.col = 1
	} else {
		lx.col++
	}
	return c
}

func isWordChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		strings.IndexByte("_-.:/$@", c) >= 0
}

func isNameStart(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
}

func (lx *lexer) next() (token, error) {
	// Skip blanks, comments and backslash-newline continuations.
	for lx.off < len(lx.src) {
		c := lx.src[lx.off]
		switch {
		case c == ' ' || c == '\t' || c == '\r':
			lx.advance()
			continue
		case c == '#':
			for lx.off < len(lx.src) && lx.src[lx.off] != '\n' {
				lx.advance()
			}
			continue
		case c == '\\' && (lx.peekc(1) == '\n' || lx.peekc(1) == '\r' && lx.peekc(2) == '\n'):
			lx.advance()
			if lx.src[lx.off] == '\r' {
				lx.advance()
			}
			lx.advance()
			continue
		}
		break
	}
	p := Pos{lx.line, lx.col}
	if lx.off >= len(lx.src) {
		return token{kind: tEOF, pos: p}, nil
	}
	c := lx.src[lx.off]
	switch {
	case c == '\n' || c == ';':
		lx.advance()
		return token{kind: tSep, pos: p}, nil
	case c == '"' || c == '\'':
		parts, err := lx.quoted(c, p)
		if err != nil {
			return token{}, err
		}
		return token{kind: tText, pos: p, parts: parts, quoted: true}, nil
	case c == '`':
		parts, err := lx.quoted(c, p)
		if err != nil {
			return token{}, err
		}
		return token{kind: tCommand, pos: p, parts: parts}, nil
	case c == '/' && !lx.afterAssign:
		n := lx.peekc(1)
		if n != ' ' && n != '\t' && n != '\n' && n != '\r' && n != 0 {
			return lx.pattern(p)
		}
		lx.advance()
		return token{kind: tOp, pos: p, op: "/"}, nil
	case isWordChar(c) || c == '$' && lx.peekc(1) == '{':
		return lx.word(p)
	}
	// Operators, longest first.
	for _, op := range []string{"=~", "==", "!=", "<=", ">=", "||", "&&", "(", ")", "{", "}", ",", "=", "<", ">", "|", "&", "+", "-", "*", "/", "!", "~"} {
		if strings.HasPrefix(lx.src[lx.off:], op) {
			for range op {
				lx.advance()
			}
			return token{kind: tOp, pos: p, op: op}, nil
		}
	}
	return token{}, lx.errf(p, "unexpected character %q", c)
}

// word lexes unquoted text: letters, digits and _-.:/${}@, where braces
// only appear as ${NAME}. A lone "-" is the minus operator.
func (lx *lexer) word(p Pos) (token, error) {
	start := lx.off
	var b strings.Builder
	var parts []textPart
	flush := func() {
		if b.Len() > 0 {
			parts = append(parts, textPart{lit: b.String()})
			b.Reset()
		}
	}
	for lx.off < len(lx.src) {
		c := lx.src[lx.off]
		if c == '$' {
			name, ok, err := lx.varRef(p)
			if err != nil {
				return token{}, err
			}
			if ok {
				flush()
				parts = append(parts, textPart{vname: name})
				continue
			}
			b.WriteByte(lx.advance())
			continue
		}
		if !isWordChar(c) {
			break
		}
		b.WriteByte(lx.advance())
		if lx.off-start > maxTokenLen {
			return token{}, lx.errf(p, "word longer than %d bytes", maxTokenLen)
		}
	}
	flush()
	raw := lx.src[start:lx.off]
	if raw == "-" {
		return token{kind: tOp, pos: p, op: "-"}, nil
	}
	return token{kind: tText, pos: p, parts: parts, raw: raw}, nil
}

// varRef reads "$NAME" or "${NAME}" at lx.off. ok is false when "$" is not
// followed by a name, in which case the "$" is literal text.
func (lx *lexer) varRef(p Pos) (name string, ok bool, err error) {
	n := lx.peekc(1)
	if n == '{' {
		end := strings.IndexByte(lx.src[lx.off+2:], '}')
		nl := strings.IndexByte(lx.src[lx.off+2:], '\n')
		if end < 0 || nl >= 0 && nl < end {
			return "", false, lx.errf(Pos{lx.line, lx.col}, "unterminated ${")
		}
		name = lx.src[lx.off+2 : lx.off+2+end]
		for range end + 3 {
			lx.advance()
		}
		return name, true, nil
	}
	if !isNameStart(n) {
		return "", false, nil
	}
	lx.advance()
	s := lx.off
	for lx.off < len(lx.src) && isNameStart(lx.src[lx.off]) {
		lx.advance()
	}
	return lx.src[s:lx.off], true, nil
}

// quoted lexes a '...', "..." or `...` literal. Backslash removes itself
// only before a backslash or the closing quote (before "$" in double quotes
// it stays, and the "$" is not substituted); backslash-newline joins lines
// and drops the next line's leading blanks (maildropfilter(7), "Literal
// text").
func (lx *lexer) quoted(q byte, p Pos) ([]textPart, error) {
	// Only double quotes substitute variables. A backquoted command
	// reaches the shell as written (but for \\ and \`), as in maildrop
	// 2.9.3: the shell expands $NAME from the exported variables, so
	// '$NAME' stays literal and a variable's value is never shell syntax.
	subst := q == '"'
	lx.advance()
	var b strings.Builder
	var parts []textPart
	for {
		if lx.off >= len(lx.src) {
			return nil, lx.errf(p, "unterminated %c literal", q)
		}
		if b.Len() > maxTokenLen {
			return nil, lx.errf(p, "literal longer than %d bytes", maxTokenLen)
		}
		c := lx.src[lx.off]
		switch {
		case c == q:
			lx.advance()
			if b.Len() > 0 || len(parts) == 0 {
				parts = append(parts, textPart{lit: b.String()})
			}
			return parts, nil
		case c == '\\':
			n := lx.peekc(1)
			switch {
			case subst && n == '$':
				// "\$" is not substituted and keeps its backslash, as
				// in maildrop 2.9.3; echo and the shell read it as "$".
				b.WriteByte(lx.advance())
				b.WriteByte(lx.advance())
			case n == '\\' || n == q:
				lx.advance()
				b.WriteByte(lx.advance())
			case n == '\n' || n == '\r' && lx.peekc(2) == '\n':
				lx.advance()
				for lx.src[lx.off] != '\n' {
					lx.advance()
				}
				lx.advance()
				for lx.off < len(lx.src) && (lx.src[lx.off] == ' ' || lx.src[lx.off] == '\t') {
					lx.advance()
				}
			default:
				b.WriteByte(lx.advance())
			}
		case c == '$' && subst:
			name, ok, err := lx.varRef(p)
			if err != nil {
				return nil, err
			}
			if !ok {
				b.WriteByte(lx.advance())
				continue
			}
			if b.Len() > 0 {
				parts = append(parts, textPart{lit: b.String()})
				b.Reset()
			}
			parts = append(parts, textPart{vname: name})
		default:
			b.WriteByte(lx.advance())
		}
	}
}

// pattern lexes /re/ with its optional ":flags" and ",weight,factor".
// Variables are substituted in the pattern text at run time ($NAME, ${NAME});
// a "$" not followed by a name is the regex anchor.
func (lx *lexer) pattern(p Pos) (token, error) {
	lx.advance() // opening slash
	var b strings.Builder
	var parts []textPart
	for {
		if lx.off >= len(lx.src) || lx.src[lx.off] == '\n' {
			return token{}, lx.errf(p, "unterminated pattern (missing closing /)")
		}
		if b.Len() > maxTokenLen {
			return token{}, lx.errf(p, "pattern longer than %d bytes", maxTokenLen)
		}
		c := lx.src[lx.off]
		if c == '/' {
			lx.advance()
			break
		}
		if c == '\\' && lx.off+1 < len(lx.src) && lx.src[lx.off+1] != '\n' {
			b.WriteByte(lx.advance())
			b.WriteByte(lx.advance())
			continue
		}
		if c == '$' {
			name, ok, err := lx.varRef(p)
			if err != nil {
				return token{}, err
			}
			if ok {
				if b.Len() > 0 {
					parts = append(parts, textPart{lit: b.String()})
					b.Reset()
				}
				parts = append(parts, textPart{vname: name})
				continue
			}
		}
		b.WriteByte(lx.advance())
	}
	if b.Len() > 0 {
		parts = append(parts, textPart{lit: b.String()})
	}
	t := token{kind: tPattern, pos: p, parts: parts}
	if lx.off < len(lx.src) && lx.src[lx.off] == ':' {
		lx.advance()
		s := lx.off
		for lx.off < len(lx.src) && (lx.src[lx.off] >= 'a' && lx.src[lx.off] <= 'z' || lx.src[lx.off] >= 'A' && lx.src[lx.off] <= 'Z') {
			lx.advance()
		}
		t.flags = patternFlags(lx.src[s:lx.off])
		// The weight follows a comma, or (as maildrop 2.9.3 reads it)
		// the option letters directly: /re/:b2,3 is /re/:b,2,3.
		if lx.off < len(lx.src) && (lx.src[lx.off] == ',' || strings.IndexByte("+-.0123456789", lx.src[lx.off]) >= 0) {
			w, err := lx.number(p)
			if err != nil {
				return token{}, err
			}
			t.weighted, t.weight, t.fac = true, w, 1
			if lx.off < len(lx.src) && lx.src[lx.off] == ',' {
				if t.fac, err = lx.number(p); err != nil {
					return token{}, err
				}
			}
		}
	}
	return t, nil
}

// patternFlags keeps the options maildrop 2.9.3 acts on: h (header), b
// (body), D (case-sensitive), and w, maildrop 1.x's "whole message", which
// 2.9.3 still reads as h and b when neither is given. Any other letter is
// ignored, as 2.9.3 ignores it (/x/:H is a header search).
func patternFlags(given string) string {
	var b strings.Builder
	for _, f := range "hbD" {
		if strings.ContainsRune(given, f) {
			b.WriteRune(f)
		}
	}
	if strings.ContainsRune(given, 'w') && !strings.ContainsAny(given, "hb") {
		return "hb" + b.String()
	}
	return b.String()
}

// number reads ",NUMBER" (or NUMBER) for weighted scoring.
func (lx *lexer) number(p Pos) (float64, error) {
	if lx.src[lx.off] == ',' {
		lx.advance()
	}
	s := lx.off
	for lx.off < len(lx.src) && strings.IndexByte("+-.0123456789eE", lx.src[lx.off]) >= 0 {
		lx.advance()
	}
	f, err := strconv.ParseFloat(lx.src[s:lx.off], 64)
	if err != nil {
		return 0, lx.errf(p, "bad weight %q in weighted pattern", lx.src[s:lx.off])
	}
	return f, nil
}
