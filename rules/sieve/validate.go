package sieve

import (
	"fmt"
	"sort"
	"strings"
)

// param is a validated argument: a number, or strings (one for a string
// argument) that may hold variable references.
type param struct {
	pos  Pos
	kind argKind
	strs []*text
	num  int64
}

// constant returns the value of a one-string argument that holds no
// variable reference.
func (p *param) constant() (string, bool) {
	if p == nil || len(p.strs) != 1 || p.strs[0].parts != nil {
		return "", false
	}
	return p.strs[0].s, true
}

// node is a validated command or test, ready to run.
type node struct {
	pos   Pos
	name  string
	tags  map[string]*param // the tags given; the value is nil for a tag without argument
	args  []*param          // positional arguments; nil where an optional one was left out
	tests []*node
	block []*node
	elses []*node  // for "if": the elsif and else branches that follow it
	match *matcher // for match tests
	hdrs  []*text  // for address/header/date/exists: header names checked
	extra []string // constant data computed at validation (body :content types)
	ihave bool     // for ihave: the answer, fixed when the script is parsed
}

func (n *node) has(tag string) bool {
	_, ok := n.tags[tag]
	return ok
}

// validator turns the parsed commands into nodes, checking requires and
// arguments (RFC 5228 sections 2.6, 2.10.5, 3.2).
type validator struct {
	required map[string]bool
	enabled  map[string]bool // nil: every supported extension
	started  bool            // a command other than require was seen
	loops    []string        // the names of the foreverypart loops around the command ("" unnamed)
}

func (v *validator) has(ext string) bool { return v.required[ext] }

func (v *validator) block(cmds []*astNode, top bool) ([]*node, error) {
	var out []*node
	var lastIf *node
	for _, a := range cmds {
		if a.name == "require" {
			if !top || v.started {
				return nil, parseErrorf(a.pos, "require must come before any other command (RFC 5228 3.2)")
			}
			if err := v.require(a); err != nil {
				return nil, err
			}
			continue
		}
		v.started = true
		n, err := v.command(a)
		if err != nil {
			return nil, err
		}
		switch a.name {
		case "elsif", "else":
			if lastIf == nil {
				return nil, parseErrorf(a.pos, "%s without a preceding if", a.name)
			}
			lastIf.elses = append(lastIf.elses, n)
			if a.name == "else" {
				lastIf = nil
			}
			continue
		case "if":
			lastIf = n
		default:
			lastIf = nil
		}
		out = append(out, n)
	}
	return out, nil
}

// require records the capabilities a script asks for; an unknown or
// disabled one is an error (RFC 5228 3.2).
func (v *validator) require(a *astNode) error {
	if len(a.tests) > 0 || a.hasBlock {
		return parseErrorf(a.pos, "require takes a string list only")
	}
	if len(a.args) != 1 || a.args[0].kind == argNumber || a.args[0].kind == argTag {
		return parseErrorf(a.pos, "require needs one string list of capability names")
	}
	for _, raw := range a.args[0].strs {
		name := raw
		if v.required["encoded-character"] {
			dec, err := decodeEncodedCharacters(raw, a.args[0].pos)
			if err != nil {
				return err
			}
			name = dec
		}
		name = strings.ToLower(name)
		_, known := capabilities[name]
		if !known && !implicitCapabilities[name] {
			return parseErrorf(a.args[0].pos, "unsupported extension %q", name)
		}
		if known && v.enabled != nil && !v.enabled[name] {
			return parseErrorf(a.args[0].pos, "extension %q is not enabled on this server", name)
		}
		v.addRequired(name)
	}
	return nil
}

func (v *validator) command(a *astNode) (*node, error) {
	spec, ok := specs[a.name]
	if !ok {
		return nil, parseErrorf(a.pos, "unknown command %q", a.name)
	}
	if spec.test {
		return nil, parseErrorf(a.pos, "%q is a test, not a command: use it in an if", a.name)
	}
	n, err := v.build(a, spec)
	if err != nil {
		return nil, err
	}
	if spec.block && !a.hasBlock {
		return nil, parseErrorf(a.pos, "%s needs a block { ... }", a.name)
	}
	if !spec.block && a.hasBlock {
		return nil, parseErrorf(a.pos, "%s takes no block: end it with ';'", a.name)
	}
	if a.hasBlock {
		if n.block, err = v.commandBlock(n, a); err != nil {
			return nil, err
		}
	}
	return n, v.checkCommand(n)
}

// maxLoopNesting bounds foreverypart loops inside each other, includes
// counted (Pigeonhole's limit).
const maxLoopNesting = 4

// commandBlock validates the block of a command. The block of an if or
// elsif whose test is ihave is special (RFC 5463 4): when the test is
// true the extensions it names count as required inside the block; when
// it is false the block is never run, so only its grammar is checked: it
// may use commands, tests and tags this server does not know.
func (v *validator) commandBlock(n *node, a *astNode) ([]*node, error) {
	switch {
	case (n.name == "if" || n.name == "elsif") && n.tests[0].name == "ihave":
		if !n.tests[0].ihave {
			return nil, nil
		}
		saved := v.required
		v.required = make(map[string]bool, len(saved))
		for k := range saved {
			v.required[k] = true
		}
		for _, t := range n.tests[0].args[0].strs {
			v.addRequired(strings.ToLower(t.s))
		}
		block, err := v.block(a.block, false)
		v.required = saved
		return block, err
	case n.name == "foreverypart":
		if len(v.loops) >= maxLoopNesting {
			return nil, parseErrorf(n.pos, "foreverypart: loops nested more than %d deep", maxLoopNesting)
		}
		name := ""
		if p := n.tags["name"]; p != nil {
			var ok bool
			if name, ok = p.constant(); !ok {
				return nil, parseErrorf(p.pos, "foreverypart: the :name must be a constant string")
			}
		}
		v.loops = append(v.loops, name)
		block, err := v.block(a.block, false)
		v.loops = v.loops[:len(v.loops)-1]
		return block, err
	}
	return v.block(a.block, false)
}

// addRequired records a capability and those it implies.
func (v *validator) addRequired(name string) {
	v.required[name] = true
	for _, x := range capabilities[name] {
		v.required[x] = true
	}
}

// ihave answers the ihave test (RFC 5463 4): every name is a capability
// this server supports and allows. The names are taken as written, never
// expanded. "variables" and "encoded-character" change how strings are
// read, which is done before any test runs, so ihave is true for them
// only when the script required them (Pigeonhole does the same).
func (v *validator) ihave(p *param) bool {
	for _, t := range p.strs {
		name := strings.ToLower(t.s)
		if name == "variables" || name == "encoded-character" {
			if !v.required[name] {
				return false
			}
			continue
		}
		_, known := capabilities[name]
		if !known && !implicitCapabilities[name] {
			return false
		}
		if known && v.enabled != nil && !v.enabled[name] {
			return false
		}
	}
	return true
}

func (v *validator) test(a *astNode) (*node, error) {
	spec, ok := specs[a.name]
	if !ok {
		return nil, parseErrorf(a.pos, "unknown test %q", a.name)
	}
	if !spec.test {
		return nil, parseErrorf(a.pos, "%q is a command, not a test", a.name)
	}
	n, err := v.build(a, spec)
	if err != nil {
		return nil, err
	}
	return n, v.checkTest(n)
}

// build checks the extension, tags, positional arguments and tests of a
// command or test.
func (v *validator) build(a *astNode, spec *cmdSpec) (*node, error) {
	if len(spec.ext) > 0 {
		ok := false
		for _, e := range spec.ext {
			ok = ok || v.has(e)
		}
		if !ok {
			return nil, parseErrorf(a.pos, "%s: missing require %q (RFC 5228 2.10.5)", a.name, spec.ext[0])
		}
	}
	n := &node{pos: a.pos, name: a.name, tags: map[string]*param{}}
	if err := v.arguments(n, a, spec); err != nil {
		return nil, err
	}
	switch spec.testArgs {
	case 0:
		if len(a.tests) > 0 {
			return nil, parseErrorf(a.tests[0].pos, "%s takes no test: is a ';' missing before %q?", a.name, a.tests[0].name)
		}
	case 1:
		if len(a.tests) == 0 {
			return nil, parseErrorf(a.pos, "%s needs a test", a.name)
		}
		if a.testList {
			return nil, parseErrorf(a.tests[0].pos, "%s takes one test, not a test list in parentheses", a.name)
		}
	case -1:
		if !a.testList {
			return nil, parseErrorf(a.pos, "%s needs a test list in parentheses", a.name)
		}
	}
	for _, t := range a.tests {
		tn, err := v.test(t)
		if err != nil {
			return nil, err
		}
		n.tests = append(n.tests, tn)
	}
	if spec.match {
		m, err := v.matcher(n)
		if err != nil {
			return nil, err
		}
		n.match = m
	}
	return n, nil
}

func (v *validator) arguments(n *node, a *astNode, spec *cmdSpec) error {
	groups := map[string]string{}
	var positional []astArg
	for i := 0; i < len(a.args); i++ {
		arg := a.args[i]
		if arg.kind != argTag {
			positional = append(positional, arg)
			continue
		}
		if len(positional) > 0 {
			return parseErrorf(arg.pos, "%s: tag :%s after positional arguments: tags come first", a.name, arg.tag)
		}
		ts, ok := spec.tags[arg.tag]
		if !ok {
			return parseErrorf(arg.pos, "%s: unknown tag :%s", a.name, arg.tag)
		}
		if ts.ext != "" && !v.has(ts.ext) {
			return parseErrorf(arg.pos, "%s: tag :%s needs require %q", a.name, arg.tag, ts.ext)
		}
		if _, dup := n.tags[arg.tag]; dup {
			return parseErrorf(arg.pos, "%s: tag :%s given twice", a.name, arg.tag)
		}
		if ts.group != "" {
			if other, clash := groups[ts.group]; clash {
				return parseErrorf(arg.pos, "%s: tags :%s and :%s cannot be used together", a.name, other, arg.tag)
			}
			groups[ts.group] = arg.tag
		}
		var p *param
		if ts.arg != argNone {
			if i+1 >= len(a.args) || !fits(a.args[i+1].kind, ts.arg) {
				return parseErrorf(arg.pos, "%s: tag :%s needs a %s argument", a.name, arg.tag, ts.arg)
			}
			i++
			var err error
			if p, err = v.param(a.args[i], ts.arg); err != nil {
				return err
			}
		}
		n.tags[arg.tag] = p
	}
	most := len(spec.args)
	least := most - spec.optLead - spec.optTail
	if len(positional) < least || len(positional) > most {
		return parseErrorf(a.pos, "%s: %s, found %d", a.name, expectedArgs(spec, least, most), len(positional))
	}
	missing := most - len(positional)
	n.args = make([]*param, most)
	first := 0
	if spec.optLead > 0 {
		first = missing
	}
	for i, arg := range positional {
		want := spec.args[first+i]
		if !fits(arg.kind, want) {
			return parseErrorf(arg.pos, "%s: argument %d must be a %s, found a %s", a.name, first+i+1, want, arg.kind)
		}
		p, err := v.param(arg, want)
		if err != nil {
			return err
		}
		n.args[first+i] = p
	}
	return nil
}

func expectedArgs(spec *cmdSpec, least, most int) string {
	kinds := make([]string, len(spec.args))
	for i, k := range spec.args {
		kinds[i] = k.String()
	}
	if most == 0 {
		return "takes no positional argument"
	}
	if least == most {
		return fmt.Sprintf("needs %d argument(s) (%s)", most, strings.Join(kinds, ", "))
	}
	return fmt.Sprintf("needs %d to %d arguments (%s)", least, most, strings.Join(kinds, ", "))
}

// fits reports whether an argument as written can stand for the wanted
// kind: a single string is a one-element string list (RFC 5228 2.4.2.1).
func fits(have, want argKind) bool {
	return have == want || have == argString && want == argList
}

func (v *validator) param(a astArg, want argKind) (*param, error) {
	p := &param{pos: a.pos, kind: want, num: a.num}
	for _, s := range a.strs {
		if v.has("encoded-character") {
			dec, err := decodeEncodedCharacters(s, a.pos)
			if err != nil {
				return nil, err
			}
			s = dec
		}
		t := &text{s: s}
		if v.has("variables") {
			t.parts = parseTemplate(s)
		}
		p.strs = append(p.strs, t)
	}
	return p, nil
}

// matcher builds the comparator and match type of a match test.
func (v *validator) matcher(n *node) (*matcher, error) {
	m := &matcher{cmp: cmpCasemap, kind: matchIs}
	if p, ok := n.tags["comparator"]; ok {
		name, isConst := p.constant()
		if !isConst {
			return nil, parseErrorf(p.pos, "%s: the comparator name must be a constant string", n.name)
		}
		c, known := comparatorByName(name)
		if !known {
			return nil, parseErrorf(p.pos, "%s: unknown comparator %q", n.name, name)
		}
		if c == cmpNumeric && !v.has("comparator-i;ascii-numeric") {
			return nil, parseErrorf(p.pos, "%s: comparator i;ascii-numeric needs require \"comparator-i;ascii-numeric\"", n.name)
		}
		m.cmp = c
	}
	for tag, kind := range map[string]matchKind{"is": matchIs, "contains": matchContains, "matches": matchMatches,
		"regex": matchRegex, "count": matchCount, "value": matchValue} {
		p, ok := n.tags[tag]
		if !ok {
			continue
		}
		m.kind = kind
		if kind == matchCount || kind == matchValue {
			name, isConst := p.constant()
			op, known := relOpByName(name)
			if !isConst || !known {
				return nil, parseErrorf(p.pos, "%s: :%s needs a relational operator: gt, ge, lt, le, eq or ne", n.name, tag)
			}
			m.rel = op
		}
		if m.cmp == cmpNumeric && (kind == matchContains || kind == matchMatches || kind == matchRegex) {
			return nil, parseErrorf(n.pos, "%s: comparator i;ascii-numeric cannot do :%s (RFC 4790 9.1)", n.name, tag)
		}
	}
	if len(n.args) > 0 {
		m.keys = n.args[len(n.args)-1]
	}
	if m.kind == matchRegex && m.keys != nil {
		m.regexes = make([]*compiledRegex, len(m.keys.strs))
		for i, k := range m.keys.strs {
			if k.parts != nil {
				continue
			}
			re, err := compileRegex(k.s, m.cmp)
			if err != nil {
				return nil, parseErrorf(m.keys.pos, "%s: bad regular expression %q: %v", n.name, k.s, err)
			}
			m.regexes[i] = re
		}
	}
	return m, nil
}

// sortedKeys returns a map's keys in order, for stable error messages.
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
