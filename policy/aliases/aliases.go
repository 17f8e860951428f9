// Package aliases owns Postern's mail aliases: Courier's makealiases(8)
// source format (the "aliases" setting, a file or a directory of files),
// its checking and recursive expansion, the compiled index the server reads
// (a bbolt file written atomically by Compile and re-read when replaced),
// the "postern makealiases" command, and the address-extension helpers
// ("user-ext") that alias and local delivery share.
//
// An alias maps an address to addresses, programs ("|/bin/prog") or
// mailbox paths ("/var/mail/x"); ":include:FILE" reads addresses from a
// file; "@domain: user" rewrites every address in domain to "user-LOCAL"
// (Courier's virtual domains). Aliases naming other aliases are expanded
// when compiled, so a lookup is one read.
package aliases

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"postern/policy"
)

// SettingName is the configuration setting that holds the alias source.
const SettingName = "aliases"

// Bounds that keep a hostile or mistaken source from exhausting memory or
// time. An admin who needs more splits the list.
const (
	maxExpandDepth   = 32        // nesting of alias → alias
	maxIncludeDepth  = 8         // nesting of :include: files
	maxIncludeSize   = 8 << 20   // bytes in one :include: file
	maxLogicalLine   = 4 << 20   // an alias with its continuation lines
	maxTargets       = 100000    // targets one alias expands to
	maxTotalTargets  = 5000000   // targets of all aliases together
	maxIncludeLine   = 64 * 1024 // one line of an :include: file
	maxAliasesPerSrc = 1000000   // definitions in one source
)

// Kind says what a Target is.
type Kind uint8

const (
	// Address is a mail address: "user@domain", or a bare "user" meaning the
	// local account of that name.
	Address Kind = iota + 1
	// Program is a command line; the delivery agent runs it with the
	// message on standard input.
	Program
	// File is an absolute path to a mailbox file or a Maildir.
	File
)

func (k Kind) String() string {
	switch k {
	case Address:
		return "address"
	case Program:
		return "program"
	case File:
		return "file"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Target is one destination an alias expands to.
type Target struct {
	Kind   Kind
	Value  string // the address, command line (without "|") or path
	Origin string // FILE:LINE where it was written
}

// String renders the target as it would be written in an alias file.
func (t Target) String() string {
	if t.Kind == Program {
		return "|" + t.Value
	}
	return t.Value
}

// Option tunes Load and OpenDB.
type Option func(*options)

type options struct {
	isLocal func(domain string) bool
	log     *slog.Logger
}

// WithLocalDomains tells lookups which domains are local, so that an alias
// written without a domain ("root: postmaster") also answers for
// "root@DOMAIN" in each of them, as Courier treats every local domain's
// accounts alike. Without it, unqualified aliases answer only unqualified
// lookups. isLocal receives the lower-cased domain; pass the gateway's
// accepted-domain check (for instance policy.Config.HasDomain).
func WithLocalDomains(isLocal func(domain string) bool) Option {
	return func(o *options) { o.isLocal = isLocal }
}

// Aliases is a checked, fully expanded alias table held in memory.
type Aliases struct {
	entries map[string][]Target // folded name → final targets
	names   map[string]string   // folded name → name as first written
	opts    options
}

// Len returns the number of aliases (virtual domains included).
func (a *Aliases) Len() int { return len(a.entries) }

// Expand looks address up; see DB.Expand for the rules. It never fails on
// a loaded table other than for a cancelled ctx. A nil *Aliases has no
// aliases.
func (a *Aliases) Expand(ctx context.Context, address string) ([]Target, bool, error) {
	if a == nil {
		return nil, false, nil
	}
	return expand(ctx, address, a.opts.isLocal, func(key string) ([]Target, bool, error) {
		t, ok := a.entries[key]
		return t, ok, nil
	})
}

// Dump writes the expanded table in alias-file form, one alias per line,
// sorted by name, as "makealiases -dump" prints it.
func (a *Aliases) Dump(w io.Writer) error {
	keys := make([]string, 0, len(a.entries))
	for k := range a.entries {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	bw := bufio.NewWriter(w)
	for _, k := range keys {
		vals := make([]string, len(a.entries[k]))
		for i, t := range a.entries[k] {
			vals[i] = t.String()
		}
		fmt.Fprintf(bw, "%s:%s\n", a.names[k], strings.TrimRight(" "+strings.Join(vals, ", "), " "))
	}
	return bw.Flush()
}

// Load reads the aliases setting from configDir, reads its :include:
// files, checks every line and expands aliases that name other aliases. All
// problems are returned together (errors.Join of *policy.Error, each with
// FILE:LINE). A missing setting is an empty table, not an error.
func Load(configDir string, opts ...Option) (*Aliases, error) {
	return loadSetting(configDir, configDir, SettingName, opts...)
}

// LoadFile reads the alias source from the file path instead of the
// setting (the web admin checks an edit this way before it replaces the
// setting's file); :include: paths are relative to configDir, as for Load.
func LoadFile(configDir, path string, opts ...Option) (*Aliases, error) {
	path = filepath.Clean(path)
	return loadSetting(configDir, filepath.Dir(path), filepath.Base(path), opts...)
}

// loadSetting reads setting name from dir; include paths are relative to
// configDir.
func loadSetting(configDir, dir, name string, opts ...Option) (*Aliases, error) {
	lines, err := policy.ReadSetting(dir, name)
	if errors.Is(err, policy.ErrNotSet) {
		lines, err = nil, nil
	}
	if err != nil {
		return nil, err
	}
	src, err := markContinuations(lines)
	if err != nil {
		return nil, err
	}
	p := &parser{configDir: configDir, defs: map[string]*definition{}}
	p.parse(src)
	a := p.compile()
	for _, o := range opts {
		o(&a.opts)
	}
	if len(p.errs) > 0 {
		return nil, errors.Join(p.errs...)
	}
	return a, nil
}

// srcLine is a meaningful source line and whether it was indented, which
// in Courier's format makes it a continuation of the alias above it.
type srcLine struct {
	policy.Line
	cont bool
}

// markContinuations recovers the leading white space that ReadSetting
// trims: it re-reads each file and notes which line numbers were indented.
func markContinuations(lines []policy.Line) ([]srcLine, error) {
	indented := map[string]map[int]bool{}
	out := make([]srcLine, len(lines))
	for i, l := range lines {
		ind, ok := indented[l.File]
		if !ok {
			var err error
			ind, err = indentedLines(l.File)
			if err != nil {
				return nil, err
			}
			indented[l.File] = ind
		}
		out[i] = srcLine{Line: l, cont: ind[l.Num]}
	}
	return out, nil
}

func indentedLines(path string) (map[int]bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &policy.Error{File: path, Reason: err.Error()}
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 4096), 1<<20)
	ind := map[int]bool{}
	for n := 1; sc.Scan(); n++ {
		if b := sc.Bytes(); len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
			ind[n] = true
		}
	}
	if err := sc.Err(); err != nil {
		return nil, &policy.Error{File: path, Reason: err.Error()}
	}
	return ind, nil
}

// item is one parsed right-hand-side element before expansion.
type item struct {
	target Target
	key    string // folded address, for Address items
}

// definition is everything written for one alias name; several lines (in
// one file or several) naming the same alias add to it, as Courier's
// aliascombine merges them.
type definition struct {
	name    string // as first written
	origin  policy.Line
	virtual bool // "@domain: ..."
	items   []item
}

type parser struct {
	configDir string
	defs      map[string]*definition
	order     []string
	errs      []error
}

func (p *parser) fail(err error) { p.errs = append(p.errs, err) }

// parse joins continuation lines to their alias and parses each alias.
func (p *parser) parse(src []srcLine) {
	for i := 0; i < len(src); {
		head := src[i]
		i++
		if head.cont {
			p.fail(head.Errorf("indented line continues no alias (an alias line starts in column 1)"))
			for i < len(src) && src[i].cont && src[i].File == head.File {
				i++
			}
			continue
		}
		text := head.Text
		tooLong := false
		// Joined with "," so "a: b" + "  c" reads as "b, c"; an item never
		// spans lines, and a trailing comma only makes an empty item.
		for i < len(src) && src[i].cont && src[i].File == head.File {
			if len(text)+len(src[i].Text) > maxLogicalLine {
				tooLong = true
			} else {
				text += "," + src[i].Text
			}
			i++
		}
		if tooLong {
			p.fail(head.Errorf("alias with its continuation lines is longer than %d bytes", maxLogicalLine))
			continue
		}
		p.parseAlias(head.Line, text)
	}
}

func (p *parser) parseAlias(at policy.Line, text string) {
	colon := indexUnquoted(text, ':')
	if colon < 0 {
		p.fail(at.Errorf("missing ':' after the alias name (format: name: address, address, ...)"))
		return
	}
	rawName := strings.TrimSpace(text[:colon])
	rhs := text[colon+1:]
	if rawName == "" {
		p.fail(at.Errorf("missing alias name before ':'"))
		return
	}
	def := &definition{origin: at}
	if strings.HasPrefix(rawName, "@") {
		d, err := canonicalDomain(rawName[1:])
		if err != nil || strings.HasPrefix(d, "[") {
			p.fail(at.Errorf("virtual domain %q: not a domain name", rawName))
			return
		}
		def.name, def.virtual = "@"+d, true
	} else {
		name, err := canonicalAddress(rawName)
		if err != nil {
			p.fail(at.Errorf("alias name: %v", err))
			return
		}
		if rawName[0] == '|' || rawName[0] == '/' {
			p.fail(at.Errorf("alias name %q: a name cannot be a program or a path", rawName))
			return
		}
		def.name = name
	}
	key := foldKey(def.name)
	def.items = p.parseItems(at, rhs, def.virtual, 0, nil)
	if old, ok := p.defs[key]; ok {
		if old.virtual != def.virtual {
			p.fail(at.Errorf("alias %q conflicts with %s", def.name, lineRef(old.origin)))
			return
		}
		old.items = append(old.items, def.items...)
		return
	}
	if len(p.defs) >= maxAliasesPerSrc {
		p.fail(at.Errorf("more than %d aliases", maxAliasesPerSrc))
		return
	}
	p.defs[key] = def
	p.order = append(p.order, key)
}

// parseItems parses a comma-separated right-hand side. inInclude is the
// stack of include files being read (for loop detection); programs and
// paths are refused there.
func (p *parser) parseItems(at policy.Line, rhs string, virtual bool, depth int, inInclude []string) []item {
	var items []item
	origin := lineRef(at)
	for _, raw := range splitList(rhs) {
		s := raw
		// sendmail-style quoting of a program or path: "|/prog a, b".
		if len(s) >= 3 && s[0] == '"' && s[len(s)-1] == '"' && (s[1] == '|' || s[1] == '/') {
			s = s[1 : len(s)-1]
		}
		switch {
		case strings.HasPrefix(strings.ToLower(s), ":include:"):
			path := strings.TrimSpace(s[len(":include:"):])
			items = append(items, p.include(at, path, virtual, depth, inInclude)...)
		case strings.HasPrefix(s, "|"):
			cmd := strings.TrimSpace(s[1:])
			switch {
			case inInclude != nil:
				p.fail(at.Errorf("program %q: not allowed in an :include: file (only addresses)", s))
			case virtual:
				p.fail(at.Errorf("program %q: a virtual domain forwards to addresses only", s))
			case cmd == "":
				p.fail(at.Errorf("empty program after '|'"))
			default:
				items = append(items, item{target: Target{Kind: Program, Value: cmd, Origin: origin}})
			}
		case strings.HasPrefix(s, "/") || strings.HasPrefix(s, "./") || strings.HasPrefix(s, "~"):
			switch {
			case inInclude != nil:
				p.fail(at.Errorf("mailbox %q: not allowed in an :include: file (only addresses)", s))
			case virtual:
				p.fail(at.Errorf("mailbox %q: a virtual domain forwards to addresses only", s))
			case !filepath.IsAbs(s):
				p.fail(at.Errorf("mailbox %q: a full path is required", s))
			default:
				items = append(items, item{target: Target{Kind: File, Value: s, Origin: origin}})
			}
		default:
			addr, err := canonicalAddress(s)
			if err != nil {
				p.fail(at.Errorf("%v", err))
				continue
			}
			items = append(items, item{target: Target{Kind: Address, Value: addr, Origin: origin}, key: foldKey(addr)})
		}
	}
	return items
}

// include reads a file of addresses, one per line or comma-separated, with
// '#' comments. Relative paths are relative to the configuration directory.
func (p *parser) include(at policy.Line, path string, virtual bool, depth int, stack []string) []item {
	if path == "" {
		p.fail(at.Errorf(":include: without a file name"))
		return nil
	}
	if !filepath.IsAbs(path) {
		path = filepath.Join(p.configDir, path)
	}
	path = filepath.Clean(path)
	if depth >= maxIncludeDepth {
		p.fail(at.Errorf(":include:%s: includes nested deeper than %d", path, maxIncludeDepth))
		return nil
	}
	for _, s := range stack {
		if s == path {
			p.fail(at.Errorf(":include:%s: include loop (%s)", path, strings.Join(append(stack, path), " → ")))
			return nil
		}
	}
	f, err := os.Open(path)
	if err != nil {
		p.fail(at.Errorf(":include: %v", err))
		return nil
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		p.fail(at.Errorf(":include:%s: not a regular file", path))
		return nil
	} else if st.Size() > maxIncludeSize {
		p.fail(at.Errorf(":include:%s: larger than %d bytes", path, maxIncludeSize))
		return nil
	}
	stack = append(stack[:len(stack):len(stack)], path)
	sc := bufio.NewScanner(io.LimitReader(f, maxIncludeSize))
	sc.Buffer(make([]byte, 4096), maxIncludeLine)
	var items []item
	for n := 1; sc.Scan(); n++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		line := policy.Line{File: path, Num: n, Text: text}
		if i := strings.IndexFunc(text, func(r rune) bool { return (r < 0x20 && r != '\t') || r == 0x7f }); i >= 0 {
			p.fail(line.Errorf("control character %q in line", text[i]))
			continue
		}
		items = append(items, p.parseItems(line, text, virtual, depth+1, stack)...)
	}
	if err := sc.Err(); err != nil {
		p.fail(at.Errorf(":include:%s: %v", path, err))
	}
	return items
}

func lineRef(l policy.Line) string { return fmt.Sprintf("%s:%d", l.File, l.Num) }

// compile expands every alias. An address naming another alias is
// replaced by that alias's targets, recursively; an alias listing its own
// name means the account itself ("larry: larry, moe" keeps a copy for
// larry, as makealiases(8) documents). Virtual domains are not expanded
// further (Courier: virtual-domain rewriting is not recursive), and no
// alias expands through one. Duplicates are removed after expansion,
// keeping the first occurrence.
func (p *parser) compile() *Aliases {
	a := &Aliases{entries: make(map[string][]Target, len(p.defs)), names: make(map[string]string, len(p.defs))}
	const (
		unvisited = iota
		visiting
		done
	)
	state := make(map[string]int, len(p.defs))
	reported := map[string]bool{}
	total := 0
	var stack []string
	var visit func(key string) []Target
	visit = func(key string) []Target {
		def := p.defs[key]
		switch state[key] {
		case done:
			return a.entries[key]
		case visiting:
			// A loop through aliases other than plain self-reference.
			start := 0
			for i, k := range stack {
				if k == key {
					start = i
				}
			}
			cycle := append(append([]string{}, stack[start:]...), key)
			if !reported[key] {
				parts := make([]string, len(cycle))
				for i, k := range cycle {
					reported[k] = true
					parts[i] = fmt.Sprintf("%s (%s)", p.defs[k].name, lineRef(p.defs[k].origin))
				}
				p.fail(def.origin.Errorf("alias loop: %s", strings.Join(parts, " → ")))
			}
			return nil
		}
		if len(stack) >= maxExpandDepth {
			if !reported[key] {
				reported[key] = true
				p.fail(def.origin.Errorf("alias %q: aliases nested deeper than %d", def.name, maxExpandDepth))
			}
			return nil
		}
		state[key] = visiting
		stack = append(stack, key)
		var out []Target
		seen := map[string]bool{}
		add := func(t Target) {
			k := t.Kind.String() + "\x00" + foldKey(t.Value)
			if seen[k] {
				return
			}
			seen[k] = true
			out = append(out, t)
		}
		overflow := false
		for _, it := range def.items {
			if len(out) > maxTargets {
				overflow = true
				break
			}
			sub, isAlias := p.defs[it.key]
			if it.target.Kind != Address || def.virtual || !isAlias || it.key == key || sub.virtual {
				add(it.target)
				continue
			}
			for _, t := range visit(it.key) {
				add(t)
			}
		}
		if overflow {
			p.fail(def.origin.Errorf("alias %q expands to more than %d targets", def.name, maxTargets))
			out = out[:maxTargets]
		}
		stack = stack[:len(stack)-1]
		state[key] = done
		total += len(out)
		if total > maxTotalTargets {
			if !reported["\x00total"] {
				reported["\x00total"] = true
				p.fail(def.origin.Errorf("the aliases expand to more than %d targets in total (first exceeded at alias %q)", maxTotalTargets, def.name))
			}
			out = nil
		}
		a.entries[key] = out
		a.names[key] = def.name
		return out
	}
	for _, key := range p.order {
		visit(key)
	}
	return a
}

// expand implements the lookup rules shared by Aliases and DB.
func expand(ctx context.Context, address string, isLocal func(string) bool, get func(key string) ([]Target, bool, error)) ([]Target, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, fmt.Errorf("aliases: expand %q: %w", address, err)
	}
	addr, err := canonicalAddress(address)
	if err != nil {
		// Not an address anything could have been written for.
		return nil, false, nil
	}
	key := foldKey(addr)
	local, domain, hasDomain := splitAddress(key)
	if t, ok, err := get(key); err != nil || ok {
		return t, ok, err
	}
	if !hasDomain {
		return nil, false, nil
	}
	if isLocal != nil && isLocal(domain) {
		if t, ok, err := get(local); err != nil || ok {
			return t, ok, err
		}
	}
	vt, ok, err := get("@" + domain)
	if err != nil || !ok {
		return nil, false, err
	}
	origLocal, _, _ := splitAddress(addr)
	out := make([]Target, len(vt))
	for i, t := range vt {
		out[i] = Target{Kind: Address, Value: virtualRewrite(t.Value, origLocal), Origin: t.Origin}
	}
	return out, true, nil
}

// virtualRewrite applies "@domain: user" to local: "user-local", keeping
// the target's domain if it has one; a target whose local part ends in "!"
// (a UUCP bang path) gets local appended without the dash (makealiases(8)).
func virtualRewrite(target, local string) string {
	tl, td, hasDomain := splitAddress(target)
	if strings.HasSuffix(tl, "!") {
		tl += local
	} else {
		tl += "-" + local
	}
	if hasDomain {
		return tl + "@" + td
	}
	return tl
}
