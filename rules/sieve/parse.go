package sieve

// argKind is the type of an argument (RFC 5228 section 2.6).
type argKind int

const (
	argNone argKind = iota
	argString
	argList // a string list; a single string is accepted where a list is expected
	argNumber
	argTag
)

func (k argKind) String() string {
	switch k {
	case argString:
		return "string"
	case argList:
		return "string list"
	case argNumber:
		return "number"
	case argTag:
		return "tag"
	}
	return "nothing"
}

// astArg is one argument as written.
type astArg struct {
	pos   Pos
	kind  argKind // argString, argList (bracketed), argNumber, argTag
	strs  []string
	num   int64
	tag   string
	quote bool // the string was a quoted or text: string (not a list)
}

// astNode is a command or a test as written: its identifier, arguments,
// the test or test list after them, and for commands a block.
type astNode struct {
	pos      Pos
	name     string
	args     []astArg
	tests    []*astNode
	testList bool // the tests were in parentheses
	block    []*astNode
	hasBlock bool
}

// parser is a recursive-descent parser over the token list, bounded in
// depth so that a script of 10,000 nested blocks is an error, not a stack
// overflow.
type parser struct {
	toks     []token
	i        int
	depth    int
	maxDepth int
}

func (p *parser) peek() token { return p.toks[p.i] }

func (p *parser) advance() token {
	t := p.toks[p.i]
	if t.kind != tokEOF {
		p.i++
	}
	return t
}

func (p *parser) enter(pos Pos) error {
	p.depth++
	if p.depth > p.maxDepth {
		return parseErrorf(pos, "nesting too deep: more than %d levels of blocks and tests", p.maxDepth)
	}
	return nil
}

// parseScript reads commands up to the end of the script.
func (p *parser) parseScript() ([]*astNode, error) {
	cmds, err := p.commands()
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != tokEOF {
		return nil, parseErrorf(t.pos, "unexpected %s: no block to close", t.describe())
	}
	return cmds, nil
}

func (p *parser) commands() ([]*astNode, error) {
	var cmds []*astNode
	for p.peek().kind == tokIdent {
		c, err := p.command()
		if err != nil {
			return nil, err
		}
		cmds = append(cmds, c)
	}
	if t := p.peek(); t.kind != tokEOF && t.kind != tokRBrace {
		return nil, parseErrorf(t.pos, "expected a command, found %s", t.describe())
	}
	return cmds, nil
}

// command = identifier arguments (";" / block)
func (p *parser) command() (*astNode, error) {
	id := p.advance()
	n := &astNode{pos: id.pos, name: id.text}
	if err := p.arguments(n); err != nil {
		return nil, err
	}
	t := p.advance()
	switch t.kind {
	case tokSemicolon:
		return n, nil
	case tokLBrace:
		if err := p.enter(t.pos); err != nil {
			return nil, err
		}
		block, err := p.commands()
		if err != nil {
			return nil, err
		}
		if end := p.advance(); end.kind != tokRBrace {
			return nil, parseErrorf(end.pos, "expected '}' to close the block opened at %s, found %s", t.pos, end.describe())
		}
		p.depth--
		n.block, n.hasBlock = block, true
		return n, nil
	}
	return nil, parseErrorf(t.pos, "expected ';' or a block after %s, found %s", id.text, t.describe())
}

// arguments = *argument [ test / test-list ]
func (p *parser) arguments(n *astNode) error {
	for {
		t := p.peek()
		switch t.kind {
		case tokString:
			p.advance()
			n.args = append(n.args, astArg{pos: t.pos, kind: argString, strs: []string{t.text}, quote: true})
			continue
		case tokNumber:
			p.advance()
			n.args = append(n.args, astArg{pos: t.pos, kind: argNumber, num: t.num})
			continue
		case tokTag:
			p.advance()
			n.args = append(n.args, astArg{pos: t.pos, kind: argTag, tag: t.text})
			continue
		case tokLBracket:
			a, err := p.stringList()
			if err != nil {
				return err
			}
			n.args = append(n.args, a)
			continue
		case tokIdent:
			test, err := p.test()
			if err != nil {
				return err
			}
			n.tests = []*astNode{test}
		case tokLParen:
			tests, err := p.testList()
			if err != nil {
				return err
			}
			n.tests, n.testList = tests, true
		}
		return nil
	}
}

// string-list = "[" string *("," string) "]" / string
func (p *parser) stringList() (astArg, error) {
	open := p.advance()
	a := astArg{pos: open.pos, kind: argList}
	for {
		t := p.advance()
		if t.kind != tokString {
			if t.kind == tokRBracket && len(a.strs) == 0 {
				return a, parseErrorf(open.pos, "empty string list: a list needs at least one string")
			}
			return a, parseErrorf(t.pos, "expected a string in the list, found %s", t.describe())
		}
		a.strs = append(a.strs, t.text)
		sep := p.advance()
		switch sep.kind {
		case tokComma:
			continue
		case tokRBracket:
			return a, nil
		}
		return a, parseErrorf(sep.pos, "expected ',' or ']' in the string list, found %s", sep.describe())
	}
}

// test = identifier arguments
func (p *parser) test() (*astNode, error) {
	id := p.advance()
	if err := p.enter(id.pos); err != nil {
		return nil, err
	}
	n := &astNode{pos: id.pos, name: id.text}
	if err := p.arguments(n); err != nil {
		return nil, err
	}
	p.depth--
	return n, nil
}

// test-list = "(" test *("," test) ")"
func (p *parser) testList() ([]*astNode, error) {
	open := p.advance()
	if err := p.enter(open.pos); err != nil {
		return nil, err
	}
	var tests []*astNode
	for {
		t := p.peek()
		if t.kind != tokIdent {
			return nil, parseErrorf(t.pos, "expected a test, found %s", t.describe())
		}
		test, err := p.test()
		if err != nil {
			return nil, err
		}
		tests = append(tests, test)
		sep := p.advance()
		switch sep.kind {
		case tokComma:
			continue
		case tokRParen:
			p.depth--
			return tests, nil
		}
		return nil, parseErrorf(sep.pos, "expected ',' or ')' in the test list, found %s", sep.describe())
	}
}

// parseAST lexes and parses src into commands.
func parseAST(src []byte, maxDepth int) ([]*astNode, error) {
	toks, err := lex(src)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks, maxDepth: maxDepth}
	cmds, err := p.parseScript()
	if err != nil {
		return nil, err
	}
	return cmds, nil
}
