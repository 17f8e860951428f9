package rules

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// Program is a parsed filter file, ready to run any number of times (it is
// immutable and safe for concurrent use).
type Program struct {
	File  string
	body  []stmt
	usage usage // statements present, for embedded-mode checks and tooling
	// Warnings are problems that do not stop the file from running, as
	// "LINE:COL: message": patterns that are not regular expressions
	// (maildrop reports them when evaluated and goes on; so does Postern).
	Warnings []string
}

type usage struct {
	commands bool // backticks, system, xfilter, pipes
	// refused is the first statement embedded mode does not allow (to,
	// cc, xfilter, system, log, logfile, dotlock, flock, backticks), at
	// refusedPos: maildrop -m refuses such a file before running any of
	// it.
	refused    string
	refusedPos Pos
}

func (p *parser) noteRefused(pos Pos, what string) {
	if p.usage.refused == "" {
		p.usage.refused, p.usage.refusedPos = what, pos
	}
}

// maxNesting bounds blocks and parentheses so the recursive-descent parser
// cannot exhaust the stack on "((((((...".
const maxNesting = 200

// maxSourceSize bounds one filter file.
const maxSourceSize = 4 << 20

type stmt interface{ position() Pos }

type (
	assignStmt struct {
		pos   Pos
		name  *textExpr
		value expr
	}
	ifStmt struct {
		pos  Pos
		cond expr
		then []stmt
		els  []stmt
	}
	whileStmt struct {
		pos  Pos
		cond expr
		body []stmt
	}
	foreachStmt struct {
		pos     Pos
		subject expr // nil: the message
		pat     *patternExpr
		body    []stmt
	}
	// cmdStmt is a keyword taking one expression: to, cc, xfilter, system,
	// echo, log, logfile, include.
	cmdStmt struct {
		pos  Pos
		verb string
		arg  expr
	}
	exitStmt   struct{ pos Pos }
	importStmt struct {
		pos  Pos
		name string
	}
	exceptionStmt struct {
		pos  Pos
		body []stmt
	}
	lockStmt struct {
		pos  Pos
		verb string // dotlock or flock
		file expr
		body []stmt
	}
	exprStmt struct {
		pos Pos
		x   expr
	}
)

func (s *assignStmt) position() Pos    { return s.pos }
func (s *ifStmt) position() Pos        { return s.pos }
func (s *whileStmt) position() Pos     { return s.pos }
func (s *foreachStmt) position() Pos   { return s.pos }
func (s *cmdStmt) position() Pos       { return s.pos }
func (s *exitStmt) position() Pos      { return s.pos }
func (s *importStmt) position() Pos    { return s.pos }
func (s *exceptionStmt) position() Pos { return s.pos }
func (s *lockStmt) position() Pos      { return s.pos }
func (s *exprStmt) position() Pos      { return s.pos }

type expr interface{ position() Pos }

type (
	textExpr struct {
		pos   Pos
		parts []textPart
	}
	commandExpr struct {
		pos   Pos
		parts []textPart
	}
	patternExpr struct {
		pos      Pos
		parts    []textPart
		flags    string
		weighted bool
		weight   float64
		fac      float64
		re       *regexp.Regexp // compiled at parse time when parts has no variables
		bad      error          // not a regular expression (reported at run time)
	}
	matchExpr struct {
		pos Pos
		lhs expr
		pat *patternExpr
	}
	binaryExpr struct {
		pos  Pos
		op   string
		l, r expr
	}
	unaryExpr struct {
		pos Pos
		op  string
		x   expr
	}
	callExpr struct {
		pos  Pos
		name string
		args []expr
	}
)

func (e *textExpr) position() Pos    { return e.pos }
func (e *commandExpr) position() Pos { return e.pos }
func (e *patternExpr) position() Pos { return e.pos }
func (e *matchExpr) position() Pos   { return e.pos }
func (e *binaryExpr) position() Pos  { return e.pos }
func (e *unaryExpr) position() Pos   { return e.pos }
func (e *callExpr) position() Pos    { return e.pos }

// functions maps each built-in to its argument count range.
var functions = map[string][2]int{
	"escape": {1, 1}, "getaddr": {1, 1}, "hasaddr": {1, 1}, "length": {1, 1},
	"lookup": {2, 3}, "substr": {2, 3}, "time": {0, 0}, "tolower": {1, 1}, "toupper": {1, 1},
	"gdbmopen": {1, 2}, "gdbmclose": {0, 0}, "gdbmfetch": {1, 3}, "gdbmstore": {2, 2},
}

var cmdVerbs = map[string]bool{
	"to": true, "cc": true, "xfilter": true, "system": true, "echo": true,
	"log": true, "logfile": true, "include": true,
}

var textCompare = map[string]bool{"lt": true, "le": true, "gt": true, "ge": true, "eq": true, "ne": true}

type parser struct {
	file  string
	toks  []token
	i     int
	depth int
	usage usage
	// warnings become Program.Warnings.
	warnings []string
}

// Parse parses a maildrop filter file. Errors are *SyntaxError with the
// file, line and column of the offending token.
func Parse(filename string, src []byte) (*Program, error) {
	if len(src) > maxSourceSize {
		return nil, &SyntaxError{File: filename, Line: 1, Col: 1, Msg: fmt.Sprintf("filter file larger than %d bytes", maxSourceSize)}
	}
	toks, err := lex(filename, src)
	if err != nil {
		return nil, err
	}
	p := &parser{file: filename, toks: toks}
	body, err := p.stmts(false)
	if err != nil {
		return nil, err
	}
	return &Program{File: filename, body: body, usage: p.usage, Warnings: p.warnings}, nil
}

func (p *parser) peek() token { return p.toks[p.i] }
func (p *parser) take() token {
	t := p.toks[p.i]
	if t.kind != tEOF {
		p.i++
	}
	return t
}

func (p *parser) errAt(t token, format string, args ...any) error {
	return &SyntaxError{File: p.file, Line: t.pos.Line, Col: t.pos.Col, Msg: fmt.Sprintf(format, args...)}
}

func describe(t token) string {
	switch t.kind {
	case tEOF:
		return "end of file"
	case tSep:
		return "end of line"
	case tOp:
		return fmt.Sprintf("%q", t.op)
	case tPattern:
		return "pattern"
	case tCommand:
		return "`command`"
	}
	if t.quoted {
		return "quoted text"
	}
	return fmt.Sprintf("%q", t.raw)
}

func (p *parser) isOp(op string) bool {
	t := p.peek()
	return t.kind == tOp && t.op == op
}

func (p *parser) isWord(w string) bool {
	t := p.peek()
	return t.kind == tText && !t.quoted && t.raw == w
}

func (p *parser) expectOp(op string) (token, error) {
	t := p.take()
	if t.kind != tOp || t.op != op {
		return t, p.errAt(t, "expected %q, found %s", op, describe(t))
	}
	return t, nil
}

func (p *parser) skipSeps() {
	for p.peek().kind == tSep {
		p.take()
	}
}

func (p *parser) enter(t token) error {
	p.depth++
	if p.depth > maxNesting {
		return p.errAt(t, "nesting deeper than %d", maxNesting)
	}
	return nil
}

// stmts parses statements up to EOF, or up to "}" when inBlock.
func (p *parser) stmts(inBlock bool) ([]stmt, error) {
	var out []stmt
	for {
		p.skipSeps()
		t := p.peek()
		if t.kind == tEOF {
			if inBlock {
				return nil, p.errAt(t, "missing \"}\"")
			}
			return out, nil
		}
		if t.kind == tOp && t.op == "}" {
			if !inBlock {
				return nil, p.errAt(t, "unexpected \"}\"")
			}
			return out, nil
		}
		s, err := p.stmt()
		if err != nil {
			return nil, err
		}
		out = append(out, s)
		// A statement ends at a line end, ";", "}" or the end of the file.
		n := p.peek()
		if n.kind != tSep && n.kind != tEOF && !(n.kind == tOp && n.op == "}") {
			return nil, p.errAt(n, "unexpected %s after statement", describe(n))
		}
	}
}

func (p *parser) block() ([]stmt, error) {
	p.skipSeps()
	t, err := p.expectOp("{")
	if err != nil {
		return nil, err
	}
	if err := p.enter(t); err != nil {
		return nil, err
	}
	body, err := p.stmts(true)
	if err != nil {
		return nil, err
	}
	p.take() // "}"
	p.depth--
	return body, nil
}

// blockOrStmt parses the body of if/else: a braced block or, as maildrop
// allows, a single statement (possibly on the next line).
func (p *parser) blockOrStmt() ([]stmt, error) {
	p.skipSeps()
	if p.isOp("{") {
		return p.block()
	}
	t := p.peek()
	if err := p.enter(t); err != nil {
		return nil, err
	}
	defer func() { p.depth-- }()
	s, err := p.stmt()
	if err != nil {
		return nil, err
	}
	return []stmt{s}, nil
}

func (p *parser) parenCond() (expr, error) {
	if _, err := p.expectOp("("); err != nil {
		return nil, err
	}
	e, err := p.expr()
	if err != nil {
		return nil, err
	}
	if _, err := p.expectOp(")"); err != nil {
		return nil, err
	}
	return e, nil
}

func (p *parser) stmt() (stmt, error) {
	t := p.peek()
	// Assignment: NAME = expr, where NAME may be quoted.
	if t.kind == tText && p.toks[p.i+1].kind == tOp && p.toks[p.i+1].op == "=" {
		p.take()
		p.take()
		name := &textExpr{pos: t.pos, parts: t.parts}
		if p.peek().kind == tSep || p.peek().kind == tEOF {
			return &assignStmt{pos: t.pos, name: name, value: &textExpr{pos: t.pos}}, nil
		}
		v, err := p.expr()
		if err != nil {
			return nil, err
		}
		return &assignStmt{pos: t.pos, name: name, value: v}, nil
	}
	if t.kind == tText && !t.quoted {
		switch t.raw {
		case "if":
			return p.ifStmt()
		case "elsif", "else":
			return nil, p.errAt(t, "%q without a matching if", t.raw)
		case "while":
			p.take()
			cond, err := p.parenCond()
			if err != nil {
				return nil, err
			}
			body, err := p.block()
			if err != nil {
				return nil, err
			}
			return &whileStmt{pos: t.pos, cond: cond, body: body}, nil
		case "foreach":
			return p.foreachStmt()
		case "exit":
			p.take()
			return &exitStmt{pos: t.pos}, nil
		case "import":
			p.take()
			n := p.take()
			if n.kind != tText {
				return nil, p.errAt(n, "import needs a variable name, found %s", describe(n))
			}
			name := n.raw
			if n.quoted {
				name = literalText(n.parts)
			}
			return &importStmt{pos: t.pos, name: name}, nil
		case "exception":
			p.take()
			body, err := p.block()
			if err != nil {
				return nil, err
			}
			return &exceptionStmt{pos: t.pos, body: body}, nil
		case "dotlock", "flock":
			p.take()
			f, err := p.expr()
			if err != nil {
				return nil, err
			}
			body, err := p.block()
			if err != nil {
				return nil, err
			}
			p.noteRefused(t.pos, t.raw)
			return &lockStmt{pos: t.pos, verb: t.raw, file: f, body: body}, nil
		}
		if cmdVerbs[t.raw] {
			p.take()
			if t.raw == "xfilter" || t.raw == "system" {
				p.usage.commands = true
			}
			switch t.raw {
			case "to", "cc", "xfilter", "system", "log", "logfile":
				p.noteRefused(t.pos, t.raw)
			}
			arg, err := p.expr()
			if err != nil {
				return nil, err
			}
			return &cmdStmt{pos: t.pos, verb: t.raw, arg: arg}, nil
		}
	}
	e, err := p.expr()
	if err != nil {
		return nil, err
	}
	return &exprStmt{pos: t.pos, x: e}, nil
}

func literalText(parts []textPart) string {
	var b strings.Builder
	for _, pt := range parts {
		if pt.vname != "" {
			b.WriteString("$" + pt.vname)
		} else {
			b.WriteString(pt.lit)
		}
	}
	return b.String()
}

func (p *parser) ifStmt() (stmt, error) {
	t := p.take() // if / elsif
	cond, err := p.parenCond()
	if err != nil {
		return nil, err
	}
	then, err := p.blockOrStmt()
	if err != nil {
		return nil, err
	}
	s := &ifStmt{pos: t.pos, cond: cond, then: then}
	// Look past line ends for else/elsif; if neither follows, the line ends
	// we skipped are only separators.
	save := p.i
	p.skipSeps()
	switch {
	case p.isWord("elsif"):
		if err := p.enter(p.peek()); err != nil {
			return nil, err
		}
		e, err := p.ifStmt()
		p.depth--
		if err != nil {
			return nil, err
		}
		s.els = []stmt{e}
	case p.isWord("else"):
		p.take()
		if s.els, err = p.blockOrStmt(); err != nil {
			return nil, err
		}
	default:
		p.i = save
	}
	return s, nil
}

func (p *parser) foreachStmt() (stmt, error) {
	t := p.take()
	s := &foreachStmt{pos: t.pos}
	if p.peek().kind == tPattern {
		pe, err := p.patternTok(p.take())
		if err != nil {
			return nil, err
		}
		s.pat = pe
	} else {
		if _, err := p.expectOp("("); err != nil {
			return nil, err
		}
		subj, err := p.expr()
		if err != nil {
			return nil, err
		}
		if _, err := p.expectOp(")"); err != nil {
			return nil, err
		}
		if _, err := p.expectOp("=~"); err != nil {
			return nil, err
		}
		pt := p.take()
		if pt.kind != tPattern {
			return nil, p.errAt(pt, "foreach: expected a /pattern/ after =~, found %s", describe(pt))
		}
		pe, err := p.patternTok(pt)
		if err != nil {
			return nil, err
		}
		s.subject, s.pat = subj, pe
	}
	if s.pat.weighted {
		return nil, p.errAt(t, "foreach: weighted scoring (,weight,factor) is meaningless here")
	}
	body, err := p.block()
	if err != nil {
		return nil, err
	}
	s.body = body
	return s, nil
}

func (p *parser) patternTok(t token) (*patternExpr, error) {
	pe := &patternExpr{pos: t.pos, parts: t.parts, flags: t.flags, weighted: t.weighted, weight: t.weight, fac: t.fac}
	static := true
	for _, pt := range t.parts {
		if pt.vname != "" {
			static = false
		}
	}
	if static {
		re, err := compilePattern(literalText(t.parts), strings.Contains(t.flags, "D"), 0)
		switch {
		case errors.Is(err, errRegexSyntax):
			// Reported when evaluated, as maildrop does; the file runs.
			pe.bad = err
			p.warnings = append(p.warnings, fmt.Sprintf("%d:%d: %v", t.pos.Line, t.pos.Col, err))
		case err != nil:
			return nil, p.errAt(t, "%v", err)
		}
		pe.re = re
	}
	return pe, nil
}

// Expressions, lowest precedence first (maildropfilter(7), "Operators"):
// || ; && ; comparisons (not associative) ; | ; & ; + - ; * / ; =~ ; unary.
func (p *parser) expr() (expr, error) {
	t := p.peek()
	if err := p.enter(t); err != nil {
		return nil, err
	}
	defer func() { p.depth-- }()
	return p.orExpr()
}

func (p *parser) orExpr() (expr, error) {
	l, err := p.andExpr()
	for err == nil && p.isOp("||") {
		t := p.take()
		var r expr
		if r, err = p.andExpr(); err == nil {
			l = &binaryExpr{pos: t.pos, op: "||", l: l, r: r}
		}
	}
	return l, err
}

func (p *parser) andExpr() (expr, error) {
	l, err := p.cmpExpr()
	for err == nil && p.isOp("&&") {
		t := p.take()
		var r expr
		if r, err = p.cmpExpr(); err == nil {
			l = &binaryExpr{pos: t.pos, op: "&&", l: l, r: r}
		}
	}
	return l, err
}

func (p *parser) cmpOp() (token, bool) {
	t := p.peek()
	if t.kind == tOp {
		switch t.op {
		case "<", "<=", ">", ">=", "==", "!=":
			return t, true
		}
	}
	if t.kind == tText && !t.quoted && textCompare[t.raw] {
		t.op = t.raw
		return t, true
	}
	return t, false
}

func (p *parser) cmpExpr() (expr, error) {
	l, err := p.bitOrExpr()
	if err != nil {
		return nil, err
	}
	t, ok := p.cmpOp()
	if !ok {
		return l, nil
	}
	p.take()
	r, err := p.bitOrExpr()
	if err != nil {
		return nil, err
	}
	if n, again := p.cmpOp(); again {
		return nil, p.errAt(n, "comparisons are not associative: use parentheses")
	}
	return &binaryExpr{pos: t.pos, op: t.op, l: l, r: r}, nil
}

func (p *parser) bitOrExpr() (expr, error) {
	l, err := p.bitAndExpr()
	for err == nil && p.isOp("|") {
		t := p.take()
		var r expr
		if r, err = p.bitAndExpr(); err == nil {
			l = &binaryExpr{pos: t.pos, op: "|", l: l, r: r}
		}
	}
	return l, err
}

func (p *parser) bitAndExpr() (expr, error) {
	l, err := p.addExpr()
	for err == nil && p.isOp("&") {
		t := p.take()
		var r expr
		if r, err = p.addExpr(); err == nil {
			l = &binaryExpr{pos: t.pos, op: "&", l: l, r: r}
		}
	}
	return l, err
}

func (p *parser) addExpr() (expr, error) {
	l, err := p.mulExpr()
	for err == nil && (p.isOp("+") || p.isOp("-")) {
		t := p.take()
		var r expr
		if r, err = p.mulExpr(); err == nil {
			l = &binaryExpr{pos: t.pos, op: t.op, l: l, r: r}
		}
	}
	return l, err
}

func (p *parser) mulExpr() (expr, error) {
	l, err := p.matchExpr()
	for err == nil && (p.isOp("*") || p.isOp("/")) {
		t := p.take()
		var r expr
		if r, err = p.matchExpr(); err == nil {
			l = &binaryExpr{pos: t.pos, op: t.op, l: l, r: r}
		}
	}
	return l, err
}

func (p *parser) matchExpr() (expr, error) {
	l, err := p.unary()
	for err == nil && p.isOp("=~") {
		t := p.take()
		pt := p.take()
		if pt.kind != tPattern {
			return nil, p.errAt(pt, "expected a /pattern/ after =~, found %s", describe(pt))
		}
		pe, perr := p.patternTok(pt)
		if perr != nil {
			return nil, perr
		}
		l = &matchExpr{pos: t.pos, lhs: l, pat: pe}
	}
	return l, err
}

func (p *parser) unary() (expr, error) {
	t := p.peek()
	if t.kind == tOp && (t.op == "!" || t.op == "~" || t.op == "-") {
		p.take()
		if err := p.enter(t); err != nil {
			return nil, err
		}
		x, err := p.unary()
		p.depth--
		if err != nil {
			return nil, err
		}
		return &unaryExpr{pos: t.pos, op: t.op, x: x}, nil
	}
	return p.primary()
}

func (p *parser) primary() (expr, error) {
	t := p.take()
	switch t.kind {
	case tPattern:
		return p.patternTok(t)
	case tCommand:
		p.usage.commands = true
		p.noteRefused(t.pos, "`command`")
		return &commandExpr{pos: t.pos, parts: t.parts}, nil
	case tOp:
		if t.op == "(" {
			e, err := p.expr()
			if err != nil {
				return nil, err
			}
			if _, err := p.expectOp(")"); err != nil {
				return nil, err
			}
			return e, nil
		}
	case tText:
		if !t.quoted {
			if _, ok := functions[t.raw]; ok {
				return p.call(t)
			}
			if textCompare[t.raw] {
				return nil, p.errAt(t, "operator %q needs a left-hand side", t.raw)
			}
		}
		// Adjacent literals concatenate: "Foo"'bar' is "Foobar".
		parts := append([]textPart(nil), t.parts...)
		for {
			n := p.peek()
			if n.kind != tText || !n.quoted && (textCompare[n.raw] || functions[n.raw] != [2]int{}) {
				break
			}
			if !t.quoted && !n.quoted {
				break // two bare words are two expressions, as in maildrop
			}
			parts = append(parts, p.take().parts...)
		}
		return &textExpr{pos: t.pos, parts: parts}, nil
	}
	return nil, p.errAt(t, "expected an expression, found %s", describe(t))
}

func (p *parser) call(t token) (expr, error) {
	arity := functions[t.raw]
	c := &callExpr{pos: t.pos, name: t.raw}
	if !p.isOp("(") {
		// time and gdbmclose take no arguments; one-argument functions may
		// be written without parentheses ("getaddr $MATCH").
		if arity[1] == 0 {
			return c, nil
		}
		if arity[0] == 1 && arity[1] == 1 {
			x, err := p.unary()
			if err != nil {
				return nil, err
			}
			c.args = []expr{x}
			return c, nil
		}
		return nil, p.errAt(t, "%s needs arguments in parentheses", t.raw)
	}
	p.take()
	if !p.isOp(")") {
		for {
			a, err := p.expr()
			if err != nil {
				return nil, err
			}
			c.args = append(c.args, a)
			if !p.isOp(",") {
				break
			}
			p.take()
		}
	}
	if _, err := p.expectOp(")"); err != nil {
		return nil, err
	}
	if len(c.args) < arity[0] || len(c.args) > arity[1] {
		if arity[0] == arity[1] {
			return nil, p.errAt(t, "%s takes %d argument(s), got %d", t.raw, arity[0], len(c.args))
		}
		return nil, p.errAt(t, "%s takes %d to %d arguments, got %d", t.raw, arity[0], arity[1], len(c.args))
	}
	return c, nil
}
