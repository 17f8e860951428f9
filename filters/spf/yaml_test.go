package spf

// A reader for the YAML subset the openspf test suites use: documents split
// by "---", block mappings and sequences by indentation, plain, single- and
// double-quoted scalars (with \x escapes), flow sequences, and block scalars
// (| |- > >-). It exists so that the test suites can be read as published
// without adding a YAML module to go.mod for tests alone.

import (
	"fmt"
	"strconv"
	"strings"
)

type yamlLine struct {
	indent int
	text   string // without indentation
	num    int
}

// parseYAMLDocuments returns one value per document: map[string]any,
// []any or string.
func parseYAMLDocuments(src string) ([]any, error) {
	var docs []any
	var cur []yamlLine
	flush := func() error {
		if len(cur) == 0 {
			return nil
		}
		p := &yamlParser{lines: cur}
		v, err := p.block(0)
		if err != nil {
			return err
		}
		if v != nil {
			docs = append(docs, v)
		}
		cur = nil
		return nil
	}
	for i, raw := range strings.Split(src, "\n") {
		raw = strings.TrimRight(raw, "\r")
		if raw == "---" {
			if err := flush(); err != nil {
				return nil, err
			}
			continue
		}
		trimmed := strings.TrimLeft(raw, " ")
		l := yamlLine{indent: len(raw) - len(trimmed), text: trimmed, num: i + 1}
		cur = append(cur, l)
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return docs, nil
}

type yamlParser struct {
	lines []yamlLine
	pos   int
}

func isBlankOrComment(l yamlLine) bool {
	return l.text == "" || strings.HasPrefix(l.text, "#")
}

func (p *yamlParser) skip() {
	for p.pos < len(p.lines) && isBlankOrComment(p.lines[p.pos]) {
		p.pos++
	}
}

// block parses the node starting at the next content line, whose indent must
// be at least minIndent.
func (p *yamlParser) block(minIndent int) (any, error) {
	p.skip()
	if p.pos >= len(p.lines) {
		return nil, nil
	}
	l := p.lines[p.pos]
	if l.indent < minIndent {
		return nil, nil
	}
	if l.text == "-" || strings.HasPrefix(l.text, "- ") {
		return p.sequence(l.indent)
	}
	return p.mapping(l.indent)
}

func (p *yamlParser) sequence(indent int) ([]any, error) {
	var out []any
	for {
		p.skip()
		if p.pos >= len(p.lines) {
			return out, nil
		}
		l := p.lines[p.pos]
		if l.indent != indent || !(l.text == "-" || strings.HasPrefix(l.text, "- ")) {
			return out, nil
		}
		rest := strings.TrimPrefix(strings.TrimPrefix(l.text, "-"), " ")
		itemIndent := l.indent + (len(l.text) - len(rest))
		if rest == "" {
			p.pos++
			v, err := p.block(indent + 1)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
			continue
		}
		if _, _, isMap := splitKey(rest); isMap {
			// "- key: value": a mapping whose first line shares the dash.
			p.lines[p.pos] = yamlLine{indent: itemIndent, text: rest, num: l.num}
			v, err := p.mapping(itemIndent)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
			continue
		}
		p.pos++
		v, err := p.scalarOrFlow(rest, indent)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", l.num, err)
		}
		out = append(out, v)
	}
}

// splitKey splits "key: value" or "key:"; keys may hold ':' not followed
// by a space ("foo:bar/baz.example.com:").
func splitKey(s string) (key, value string, ok bool) {
	if strings.HasPrefix(s, `"`) || strings.HasPrefix(s, `'`) {
		parse := parseDoubleQuoted
		if s[0] == '\'' {
			parse = parseSingleQuoted
		}
		k, rest, err := parse(s)
		if err != nil || !strings.HasPrefix(rest, ":") || (len(rest) > 1 && rest[1] != ' ') {
			return "", "", false
		}
		return k, strings.TrimSpace(rest[1:]), true
	}
	if strings.HasPrefix(s, "[") {
		return "", "", false
	}
	if i := strings.Index(s, ": "); i >= 0 {
		return s[:i], strings.TrimSpace(s[i+2:]), true
	}
	if strings.HasSuffix(s, ":") {
		return s[:len(s)-1], "", true
	}
	return "", "", false
}

func (p *yamlParser) mapping(indent int) (map[string]any, error) {
	out := map[string]any{}
	for {
		p.skip()
		if p.pos >= len(p.lines) {
			return out, nil
		}
		l := p.lines[p.pos]
		if l.indent != indent {
			if l.indent > indent {
				return nil, fmt.Errorf("line %d: unexpected indentation", l.num)
			}
			return out, nil
		}
		key, value, ok := splitKey(l.text)
		if !ok {
			return nil, fmt.Errorf("line %d: expected key: %q", l.num, l.text)
		}
		p.pos++
		var v any
		var err error
		switch {
		case value == "":
			v, err = p.block(indent + 1)
			if v == nil && err == nil {
				// "key:" followed by a sequence at the same indent.
				p.skip()
				if p.pos < len(p.lines) && p.lines[p.pos].indent == indent && strings.HasPrefix(p.lines[p.pos].text, "- ") {
					v, err = p.sequence(indent)
				}
			}
		case value == "|" || value == "|-" || value == ">" || value == ">-":
			v = p.blockScalar(indent, value)
		default:
			v, err = p.scalarOrFlow(value, indent)
		}
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", l.num, err)
		}
		out[key] = v
	}
}

// blockScalar reads the lines indented more than indent.
func (p *yamlParser) blockScalar(indent int, style string) string {
	var lines []string
	for p.pos < len(p.lines) {
		l := p.lines[p.pos]
		if l.text != "" && l.indent <= indent {
			break
		}
		lines = append(lines, l.text)
		p.pos++
	}
	for len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	sep := "\n"
	if strings.HasPrefix(style, ">") {
		sep = " "
	}
	s := strings.Join(lines, sep)
	if !strings.HasSuffix(style, "-") {
		s += "\n"
	}
	return s
}

// scalarOrFlow parses an inline value; a plain scalar may continue on more
// indented lines (folded with spaces).
func (p *yamlParser) scalarOrFlow(s string, indent int) (any, error) {
	switch {
	case strings.HasPrefix(s, "["):
		return parseFlowSequence(s)
	case strings.HasPrefix(s, `"`):
		v, rest, err := parseDoubleQuoted(s)
		if err == nil && strings.TrimSpace(stripComment(rest)) != "" {
			err = fmt.Errorf("text after quoted scalar: %q", rest)
		}
		return v, err
	case strings.HasPrefix(s, `'`):
		v, rest, err := parseSingleQuoted(s)
		if err == nil && strings.TrimSpace(stripComment(rest)) != "" {
			err = fmt.Errorf("text after quoted scalar: %q", rest)
		}
		return v, err
	}
	v := strings.TrimSpace(stripComment(s))
	for p.pos < len(p.lines) {
		l := p.lines[p.pos]
		if l.text == "" || l.indent <= indent || strings.HasPrefix(l.text, "#") {
			break
		}
		v += " " + strings.TrimSpace(stripComment(l.text))
		p.pos++
	}
	return v, nil
}

func stripComment(s string) string {
	if i := strings.Index(s, " #"); i >= 0 {
		return s[:i]
	}
	return s
}

func parseFlowSequence(s string) ([]any, error) {
	s = strings.TrimSpace(stripComment(s))
	if !strings.HasPrefix(s, "[") || !strings.HasSuffix(s, "]") {
		return nil, fmt.Errorf("bad flow sequence %q", s)
	}
	body := strings.TrimSpace(s[1 : len(s)-1])
	out := []any{}
	for body != "" {
		var item string
		var rest string
		var err error
		switch body[0] {
		case '"':
			item, rest, err = parseDoubleQuoted(body)
		case '\'':
			item, rest, err = parseSingleQuoted(body)
		default:
			i := strings.IndexByte(body, ',')
			if i < 0 {
				i = len(body)
			}
			item, rest = strings.TrimSpace(body[:i]), body[i:]
		}
		if err != nil {
			return nil, err
		}
		out = append(out, item)
		rest = strings.TrimSpace(rest)
		if rest != "" && rest[0] != ',' {
			return nil, fmt.Errorf("bad flow sequence %q", s)
		}
		body = strings.TrimSpace(strings.TrimPrefix(rest, ","))
	}
	return out, nil
}

func parseSingleQuoted(s string) (string, string, error) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		if s[i] == '\'' {
			if i+1 < len(s) && s[i+1] == '\'' {
				b.WriteByte('\'')
				i++
				continue
			}
			return b.String(), s[i+1:], nil
		}
		b.WriteByte(s[i])
	}
	return "", "", fmt.Errorf("unterminated single-quoted scalar %q", s)
}

func parseDoubleQuoted(s string) (string, string, error) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch c {
		case '"':
			return b.String(), s[i+1:], nil
		case '\\':
			if i+1 >= len(s) {
				return "", "", fmt.Errorf("bad escape in %q", s)
			}
			i++
			switch e := s[i]; e {
			case 'x':
				if i+2 >= len(s) {
					return "", "", fmt.Errorf("bad \\x escape in %q", s)
				}
				n, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
				if err != nil {
					return "", "", fmt.Errorf("bad \\x escape in %q", s)
				}
				b.WriteRune(rune(n)) // YAML: \xHH is the code point U+00HH
				i += 2
			case 'u':
				if i+4 >= len(s) {
					return "", "", fmt.Errorf("bad \\u escape in %q", s)
				}
				n, err := strconv.ParseUint(s[i+1:i+5], 16, 32)
				if err != nil {
					return "", "", fmt.Errorf("bad \\u escape in %q", s)
				}
				b.WriteRune(rune(n))
				i += 4
			case '0':
				b.WriteByte(0)
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			case 'r':
				b.WriteByte('\r')
			case '"', '\\', '/', ' ':
				b.WriteByte(e)
			default:
				return "", "", fmt.Errorf("unknown escape \\%c in %q", e, s)
			}
		default:
			b.WriteByte(c)
		}
	}
	return "", "", fmt.Errorf("unterminated double-quoted scalar %q", s)
}
