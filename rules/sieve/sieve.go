package sieve

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Options bound and configure parsing and running. The zero value is
// sane: every field left zero takes the default named in its comment.
type Options struct {
	MaxScriptSize   int // bytes of script source; default 1 MiB (Pigeonhole's sieve_max_script_size)
	MaxNesting      int // nested blocks and tests; default 32
	MaxActions      int // actions one run may take; default 32 (Pigeonhole's sieve_max_actions)
	MaxRedirects    int // redirect actions; default 4 (Pigeonhole's sieve_max_redirects)
	MaxIncludeDepth int // include nesting; default 10
	MaxSteps        int // commands, tests and comparisons one run may do; default 1,000,000
	// MaxNotifications bounds the notify actions of one run (RFC 5435 8
	// wants a limit); default 4.
	MaxNotifications int

	// SubaddressSeparators are the characters that split a local part
	// into :user and :detail (RFC 5233); the first one found splits.
	// Default "+"; Courier-style "alice-lists" wants "-" (or "+-").
	SubaddressSeparators string

	// SpamHeader is the header spamtest reads a score from (its first
	// number), SpamMax the score that means "certainly spam" (RFC 5235).
	// Defaults "X-Spam-Score" and 10.
	SpamHeader string
	SpamMax    float64
	// VirusHeader is the header virustest reads (a digit 0-5, or text
	// with "clean"/"infected"). Default "X-Virus-Status".
	VirusHeader string

	// Extensions, when not nil, lists the only capabilities a script may
	// require; nil allows every supported one.
	Extensions []string
}

// Defaults of Options.
const (
	DefaultMaxScriptSize    = 1 << 20
	DefaultMaxNesting       = 32
	DefaultMaxActions       = 32
	DefaultMaxRedirects     = 4
	DefaultMaxIncludeDepth  = 10
	DefaultMaxSteps         = 1_000_000
	DefaultMaxNotifications = 4
)

// Fixed bounds that need no option.
const (
	maxVariableSize  = 64 << 10 // bytes in one variable (RFC 5229 allows a limit)
	maxVariables     = 1024     // variables one script run may create
	maxStringSize    = 1 << 20  // bytes of one expanded string
	maxIncludes      = 255      // scripts one run may include
	defaultDupPeriod = 14 * 24 * time.Hour
	maxPeriod        = 365 * 24 * time.Hour
)

func (o Options) withDefaults() Options {
	set := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	set(&o.MaxScriptSize, DefaultMaxScriptSize)
	set(&o.MaxNesting, DefaultMaxNesting)
	set(&o.MaxActions, DefaultMaxActions)
	set(&o.MaxRedirects, DefaultMaxRedirects)
	set(&o.MaxIncludeDepth, DefaultMaxIncludeDepth)
	set(&o.MaxSteps, DefaultMaxSteps)
	set(&o.MaxNotifications, DefaultMaxNotifications)
	if o.SubaddressSeparators == "" {
		o.SubaddressSeparators = "+"
	}
	if o.SpamHeader == "" {
		o.SpamHeader = "X-Spam-Score"
	}
	if o.SpamMax <= 0 {
		o.SpamMax = 10
	}
	if o.VirusHeader == "" {
		o.VirusHeader = "X-Virus-Status"
	}
	return o
}

// Script is a parsed and validated script, safe to run many times and
// from many goroutines at once.
type Script struct {
	cmds     []*node
	opt      Options
	required map[string]bool
}

// Requires returns the capabilities the script requires, sorted.
func (s *Script) Requires() []string { return sortedKeys(s.required) }

// Parse parses and validates a script: grammar, requires, the arguments
// of every command and test, constant regular expressions, addresses and
// header names. The error is a *ParseError with line and column.
func Parse(src []byte, opt Options) (*Script, error) {
	opt = opt.withDefaults()
	if len(src) > opt.MaxScriptSize {
		return nil, parseErrorf(Pos{Line: 1, Col: 1}, "script is %d bytes, over the limit of %d", len(src), opt.MaxScriptSize)
	}
	src = normalizeEOL(src)
	ast, err := parseAST(src, opt.MaxNesting)
	if err != nil {
		return nil, err
	}
	v := &validator{required: map[string]bool{}}
	if opt.Extensions != nil {
		v.enabled = map[string]bool{}
		for _, e := range opt.Extensions {
			v.enabled[strings.ToLower(e)] = true
		}
	}
	cmds, err := v.block(ast, true)
	if err != nil {
		return nil, err
	}
	return &Script{cmds: cmds, opt: opt, required: v.required}, nil
}

// Loader fetches the source of an included script (RFC 6609): personal
// scripts (global false) from the user's script directory, global ones
// from the administrator's. A missing script is an error that wraps
// fs.ErrNotExist or ErrNotFound, so that :optional can skip it.
type Loader interface {
	Load(global bool, name string) ([]byte, error)
}

// ErrNotFound may be returned (wrapped) by a Loader for a missing script.
var ErrNotFound = errors.New("sieve: script not found")

// Store is the memory of vacation replies and duplicate checks, kept per
// user by the caller (a file, the state store). Keys are opaque strings
// that already include the user.
type Store interface {
	Seen(key string) (bool, error)              // key recorded and not expired
	Record(key string, ttl time.Duration) error // remember key for ttl
}

// Env is the message a script runs over and everything around it.
type Env struct {
	Message []byte // the whole message; LF or CRLF line ends
	From    string // envelope sender; "" or "<>" is the null sender
	To      string // envelope recipient as addressed (with any +detail)
	OrigTo  string // the original recipient before aliasing, when known
	Auth    string // the authenticated submitter, when known (envelope "auth")

	User      string   // the account, for the Store keys and vacation
	Addresses []string // the user's own addresses, for vacation

	Now          time.Time // the time of delivery; zero means time.Now()
	Host, Domain string    // environment "host" and "domain" (RFC 5183)
	Version      string    // environment "version"; default "1"

	MailboxExists func(name string) bool // mailboxexists; nil: none exists
	// SpecialUseExists answers specialuse_exists (RFC 8579): does the
	// mailbox (any mailbox when mailbox is "") carry the special-use
	// attribute attr ("\Junk")? nil: no mailbox has one.
	SpecialUseExists func(mailbox, attr string) bool
	// MailboxIDExists answers mailboxidexists (RFC 9042): is there a
	// mailbox with this object id (RFC 8474)? nil: none exists.
	MailboxIDExists func(id string) bool
	Store           Store  // nil: nothing is remembered
	Loader          Loader // nil: include fails
}

// Result is what a run decided.
type Result struct {
	// Actions in the order the script took them; the implicit keep, when
	// it stands, is last, a Keep with Implicit set.
	Actions []Action
	// Message is the message after editheader changed it, else nil: the
	// caller delivers this instead of Env.Message (RFC 5293).
	Message []byte
}

// control is how a block ended.
type control int

const (
	ctlNext control = iota
	ctlStop
	ctlReturn
	ctlBreak // break (RFC 5703 3): leave the loop named in run.breakTo
)

// record is a Store write made when the run ends without error.
type record struct {
	key string
	ttl time.Duration
}

// run is the state of one Execute.
type run struct {
	ctx     context.Context
	env     *Env
	opt     Options
	now     time.Time
	msg     *message
	steps   int
	actions []Action
	// implicitKeep is true until an action cancels it (RFC 5228 2.10.2).
	implicitKeep bool
	flags        []string // the imap4flags internal variable (RFC 5232 3)
	globals      map[string]string
	nvars        int
	redirects    int
	rejected     bool
	vacationUsed bool
	included     map[string]bool
	includes     int
	stack        []string
	loaded       map[string]*Script
	pending      []record
	regexes      map[string]*compiledRegex
	notifies     int
	notified     map[string]bool // mailto recipients notified so far, lower case
	parts        []mimePart      // the MIME parts, built on first use (foreverypart, :mime)
	partsGen     int             // msg.gen the parts were built from
	loops        []loop          // the foreverypart loops running, innermost last
	breakTo      string          // the loop a break leaves ("" the innermost)
}

// frame is one script's scope: the main script or an included one.
type frame struct {
	script      *Script
	name        string
	vars        map[string]string
	globalNames map[string]bool
	matchVars   []string
}

// Execute runs the script over env.Message and returns the actions. An
// error is a *RuntimeError (limits wrap ErrLimit) or the context's error;
// RFC 5228 2.10.6 then wants the message kept. Vacation and duplicate
// memory is written to env.Store only when the run succeeds.
func (s *Script) Execute(ctx context.Context, env *Env) (*Result, error) {
	r := &run{
		ctx: ctx, env: env, opt: s.opt, now: env.Now,
		msg:          newMessage(env.Message),
		implicitKeep: true,
		globals:      map[string]string{},
		included:     map[string]bool{},
		loaded:       map[string]*Script{},
	}
	if r.now.IsZero() {
		r.now = time.Now()
	}
	f := &frame{script: s, vars: map[string]string{}}
	if _, err := r.execBlock(s.cmds, f); err != nil {
		return nil, err
	}
	if r.implicitKeep {
		r.actions = append(r.actions, Keep{Flags: cloneFlags(r.flags), Implicit: true})
	}
	if env.Store != nil {
		for _, rec := range r.pending {
			if err := env.Store.Record(rec.key, rec.ttl); err != nil {
				return nil, fmt.Errorf("sieve: store: %w", err)
			}
		}
	}
	res := &Result{Actions: r.actions}
	if r.msg.edited {
		res.Message = r.msg.bytes(env.Message)
	}
	return res, nil
}

// step charges n steps against MaxSteps and notices cancellation.
func (r *run) step(p Pos, n int) error {
	before := r.steps
	r.steps += n + r.msg.work>>4
	r.msg.work &= 15
	if r.steps > r.opt.MaxSteps {
		return limitErrorf(p, "more than %d steps", r.opt.MaxSteps)
	}
	if before>>10 != r.steps>>10 {
		if err := r.ctx.Err(); err != nil {
			return &RuntimeError{Pos: p, Err: err}
		}
	}
	return nil
}

func (r *run) execBlock(cmds []*node, f *frame) (control, error) {
	for _, n := range cmds {
		ctl, err := r.exec(n, f)
		if err != nil {
			if re, ok := err.(*RuntimeError); ok && re.Script == "" && f.name != "" {
				re.Script = f.name
			}
			return ctlStop, err
		}
		if ctl != ctlNext {
			return ctl, nil
		}
	}
	return ctlNext, nil
}

func (r *run) exec(n *node, f *frame) (control, error) {
	if err := r.step(n.pos, 1); err != nil {
		return ctlStop, err
	}
	switch n.name {
	case "if":
		ok, err := r.test(n.tests[0], f)
		if err != nil {
			return ctlStop, err
		}
		if ok {
			return r.execBlock(n.block, f)
		}
		for _, e := range n.elses {
			if e.name == "else" {
				return r.execBlock(e.block, f)
			}
			ok, err := r.test(e.tests[0], f)
			if err != nil {
				return ctlStop, err
			}
			if ok {
				return r.execBlock(e.block, f)
			}
		}
		return ctlNext, nil
	case "stop":
		return ctlStop, nil
	case "return":
		return ctlReturn, nil
	case "include":
		return r.include(n, f)
	case "foreverypart":
		return r.foreverypart(n, f)
	case "break":
		r.breakTo = ""
		if p := n.tags["name"]; p != nil {
			r.breakTo = p.strs[0].s
		}
		return ctlBreak, nil
	}
	return ctlNext, r.command(n, f)
}

// expand returns a string argument with its variables substituted
// (RFC 5229 3), bounded to maxStringSize.
func (r *run) expand(t *text, f *frame) (string, error) {
	if t.parts == nil {
		return t.s, nil
	}
	var b strings.Builder
	for _, p := range t.parts {
		switch {
		case p.name != "":
			b.WriteString(r.variable(p.name, f))
		case p.num >= 0:
			if p.num < len(f.matchVars) {
				b.WriteString(f.matchVars[p.num])
			}
		default:
			b.WriteString(p.lit)
		}
		if b.Len() > maxStringSize {
			return "", limitErrorf(Pos{}, "a string grew over %d bytes", maxStringSize)
		}
	}
	if err := r.step(Pos{}, b.Len()>>10); err != nil {
		return "", err
	}
	return b.String(), nil
}

func (r *run) expandParam(p *param, f *frame) ([]string, error) {
	if p == nil {
		return nil, nil
	}
	out := make([]string, 0, len(p.strs))
	for _, t := range p.strs {
		s, err := r.expand(t, f)
		if err != nil {
			if re, ok := err.(*RuntimeError); ok {
				re.Pos = p.pos
			}
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func (r *run) expandOne(p *param, f *frame) (string, error) {
	if p == nil {
		return "", nil
	}
	list, err := r.expandParam(p, f)
	if err != nil || len(list) == 0 {
		return "", err
	}
	return list[0], nil
}

// variable reads a variable: "global.x" and names declared global live in
// the run, the rest in the script's frame (RFC 5229, RFC 6609 3.5).
func (r *run) variable(name string, f *frame) string {
	if rest, ok := strings.CutPrefix(name, "global."); ok {
		return r.globals[rest]
	}
	if f.globalNames[name] {
		return r.globals[name]
	}
	return f.vars[name]
}

func (r *run) setVariable(p Pos, name, value string, f *frame) error {
	name = strings.ToLower(name)
	if len(value) > maxVariableSize {
		return limitErrorf(p, "variable %q would hold %d bytes, over %d", name, len(value), maxVariableSize)
	}
	target := f.vars
	if rest, ok := strings.CutPrefix(name, "global."); ok {
		target, name = r.globals, rest
	} else if f.globalNames[name] {
		target = r.globals
	}
	if _, exists := target[name]; !exists {
		r.nvars++
		if r.nvars > maxVariables {
			return limitErrorf(p, "more than %d variables", maxVariables)
		}
	}
	target[name] = value
	return nil
}
