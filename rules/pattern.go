package rules

import (
	"errors"
	"fmt"
	"regexp"
	"regexp/syntax"
	"strings"
	"sync"
)

// ErrPattern is wrapped by every pattern compilation error.
var ErrPattern = errors.New("invalid pattern")

// errRegexSyntax marks a pattern that is not a regular expression at all
// (as opposed to a PCRE feature RE2 lacks, or a limit). maildrop 2.9.3
// reports such a pattern and goes on with the pattern not matching; so
// does Postern.
var errRegexSyntax = errors.New("regular expression syntax error")

// neverMatches stands in for a pattern that is not a regular expression.
var neverMatches = regexp.MustCompile(`[^\x00-\x{10FFFF}]`)

// pcreOnly lists PCRE constructs RE2 cannot run. They are refused by name
// instead of being reported as an obscure parse error, or worse, matched
// as something else.
var pcreOnly = []struct{ seq, what string }{
	{"(?=", "lookahead (?=...)"},
	{"(?!", "negative lookahead (?!...)"},
	{"(?<=", "lookbehind (?<=...)"},
	{"(?<!", "negative lookbehind (?<!...)"},
	{"(?>", "atomic group (?>...)"},
	{"(?R", "recursion (?R)"},
	{"(?(", "conditional (?(...)...)"},
	{"(?|", "branch reset (?|...)"},
	{"(?#", "comment group (?#...)"},
	{`\K`, `\K`},
	{`\G`, `\G`},
	{`\Z`, `\Z (use $)`},
	{`\h`, `\h (use [ \t])`},
	{`\R`, `\R`},
	{"++", "possessive quantifier ++"},
	{"*+", "possessive quantifier *+"},
	{"?+", "possessive quantifier ?+"},
	{"}+", "possessive quantifier {n}+"},
}

// checkPCRE reports PCRE-only syntax outside character classes.
func checkPCRE(src string) error {
	inClass := false
	for i := 0; i < len(src); i++ {
		c := src[i]
		if c == '\\' && i+1 < len(src) {
			n := src[i+1]
			if !inClass {
				if n >= '1' && n <= '9' {
					return fmt.Errorf("%w: backreference \\%c is a PCRE feature Postern does not support (Go RE2 engine)", ErrPattern, n)
				}
				for _, p := range pcreOnly {
					if p.seq[0] == '\\' && p.seq[1] == n {
						return fmt.Errorf("%w: %s is a PCRE feature Postern does not support (Go RE2 engine)", ErrPattern, p.what)
					}
				}
			}
			i++
			continue
		}
		if inClass {
			if c == ']' {
				inClass = false
			}
			continue
		}
		if c == '[' {
			inClass = true
			// "[]...]" and "[^]...]" start with a literal "]".
			if strings.HasPrefix(src[i+1:], "]") {
				i++
			} else if strings.HasPrefix(src[i+1:], "^]") {
				i += 2
			}
			continue
		}
		for _, p := range pcreOnly {
			if p.seq[0] != '\\' && strings.HasPrefix(src[i:], p.seq) {
				return fmt.Errorf("%w: %s is a PCRE feature Postern does not support (Go RE2 engine)", ErrPattern, p.what)
			}
		}
	}
	return nil
}

// compilePattern compiles a maildrop pattern with its options; patterns are
// case-insensitive unless the D option is given.
func compilePattern(src string, caseSensitive bool, maxSize int) (*regexp.Regexp, error) {
	if maxSize > 0 && len(src) > maxSize {
		return nil, fmt.Errorf("%w: pattern is %d bytes, limit is %d: %w", ErrPattern, len(src), maxSize, ErrLimit)
	}
	if err := checkPCRE(src); err != nil {
		return nil, err
	}
	prefix := "(?i)"
	if caseSensitive {
		prefix = ""
	}
	re, err := regexp.Compile(prefix + src)
	if err != nil {
		var rerr *syntax.Error
		if errors.As(err, &rerr) {
			return nil, fmt.Errorf("%w /%s/: %s: %s%w", ErrPattern, src, rerr.Code, rerr.Expr, noText{errRegexSyntax})
		}
		return nil, fmt.Errorf("%w /%s/: %v%w", ErrPattern, src, err, noText{errRegexSyntax})
	}
	return re, nil
}

// noText wraps an error for errors.Is without adding to the message.
type noText struct{ err error }

func (noText) Error() string   { return "" }
func (n noText) Unwrap() error { return n.err }

// patternCache keeps compiled patterns per run: loops and foreach bodies
// reuse them, and a pattern built from variables is compiled once per
// distinct text. Bounded so a hostile loop cannot grow it without end.
type patternCache struct {
	mu  sync.Mutex
	m   map[patternKey]*regexp.Regexp
	max int
}

type patternKey struct {
	src string
	cs  bool
}

const patternCacheSize = 512

func (c *patternCache) get(src string, caseSensitive bool, maxSize int) (*regexp.Regexp, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := patternKey{src, caseSensitive}
	if re, ok := c.m[k]; ok {
		return re, nil
	}
	re, err := compilePattern(src, caseSensitive, maxSize)
	if err != nil {
		return nil, err
	}
	if c.m == nil || len(c.m) >= patternCacheSize {
		c.m = make(map[patternKey]*regexp.Regexp)
	}
	c.m[k] = re
	return re, nil
}
