package rules

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Exit codes maildrop uses (sysexits.h).
const (
	ExitOK       = 0
	ExitTempFail = 75 // EX_TEMPFAIL: syntax errors, runtime errors, limits
)

// ErrLimit is wrapped by every error raised because a Limits bound was hit.
// It cannot be caught by an exception block.
var ErrLimit = errors.New("rules: limit exceeded")

// ErrNotAllowed is wrapped when a statement is refused (embedded mode, or
// commands disabled because Env.Run is nil).
var ErrNotAllowed = errors.New("not allowed")

// Limits bound what one run may do. Zero fields take the defaults below.
type Limits struct {
	MaxSteps        int           // statements executed plus loop iterations (default 1,000,000)
	MaxIncludeDepth int           // nested include statements (default 20)
	MaxRegexSize    int           // bytes of one pattern after substitution (default 8192)
	MaxVarSize      int           // bytes of one variable or text value (default 1 MiB)
	MaxVars         int           // number of variables (default 10,000)
	MaxDeliveries   int           // to/cc deliveries in one run (default 100)
	MaxOutput       int           // bytes kept from a command's output (default 64 MiB)
	Timeout         time.Duration // wall-clock time for the whole run (default 5 minutes, maildrop's watchdog)
}

func (l Limits) withDefaults() Limits {
	set := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	set(&l.MaxSteps, 1_000_000)
	set(&l.MaxIncludeDepth, 20)
	set(&l.MaxRegexSize, 8192)
	set(&l.MaxVarSize, 1<<20)
	set(&l.MaxVars, 10_000)
	set(&l.MaxDeliveries, 100)
	set(&l.MaxOutput, 64<<20)
	if l.Timeout <= 0 {
		l.Timeout = 5 * time.Minute
	}
	return l
}

// Delivery is one to/cc/default delivery the filter asked for. The caller's
// Deliver callback decides what Dest means: a path (maildir or mbox file),
// "|command" or "!addresses".
type Delivery struct {
	Kind     string // "to", "cc" or "default"
	Dest     string
	File     string // filter file and line of the statement ("" for default)
	Line     int
	Flags    string // $FLAGS at delivery time (maildir flags D, F, R, S)
	Keywords string // $KEYWORDS at delivery time (comma-separated)
	Message  *Message
	Vars     map[string]string // all variables at delivery time (SHELL, SENDMAIL, UMASK, FROM...)
}

// Command is a shell command the filter runs: a backtick substitution,
// system, xfilter. Stdin is the message (nil for system).
type Command struct {
	Kind  string // "backtick", "system" or "xfilter"
	Cmd   string
	Shell string // $SHELL
	Dir   string
	Env   []string // the filter's variables, exported (maildropfilter(7), "Environment")
	Stdin []byte
	// MaxOutput bounds the bytes of stdout the runner keeps.
	MaxOutput int
}

// CommandResult is what a command produced.
type CommandResult struct {
	Stdout []byte
	Code   int
}

// Step is one traced step of a run, for "rules test" and verbose logs.
type Step struct {
	File string
	Line int
	What string // "if", "elsif", "while", "foreach", "assign", "to", "cc", "default", "match", "exit", ...
	Text string // a human-readable account, e.g. `condition is true ("1")`
}

// Env is everything a run needs from its caller.
type Env struct {
	// Vars are the initial variables. The caller applies maildrop's fixed
	// defaults (HOME, DEFAULT, SHELL, PATH, LOGNAME, SENDMAIL, LOCK*, ...).
	Vars map[string]string
	// Environ is the original environment, read by "import".
	Environ map[string]string
	// Args become $1, $2, ...
	Args []string
	// Dir is where relative names (include, lookup, logfile, gdbm, locks)
	// are resolved; maildrop's current directory.
	Dir string
	// Embedded restricts the filter as maildrop -m does: no to, cc, xfilter,
	// system, backticks, log, logfile, dotlock, flock; gdbm read-only; no
	// default delivery.
	Embedded bool
	// TrustedIncludeDir lifts the embedded restrictions inside files included
	// from it (maildrop's /etc/maildroprcs/).
	TrustedIncludeDir string
	// Deliver performs to/cc/default deliveries. It returns the exit code
	// of a delivery program (0 for mailboxes). Nil refuses deliveries.
	Deliver func(ctx context.Context, d Delivery) (code int, err error)
	// Run runs shell commands; nil refuses them (ErrNotAllowed).
	// ExecCommand is the standard implementation.
	Run func(ctx context.Context, c Command) (CommandResult, error)
	// ReadFile reads include and lookup files; nil means os.ReadFile with a
	// size bound.
	ReadFile func(name string) ([]byte, error)
	// Stdout receives echo output; nil discards it.
	Stdout io.Writer
	// Stderr receives warnings that do not stop the run (a pattern that
	// is not a regular expression); nil discards them.
	Stderr io.Writer
	// Trace, when set, is told about every step.
	Trace func(Step)
	// Now is the clock for time and log records; nil means time.Now.
	Now    func() time.Time
	Limits Limits
}

// Result is the outcome of a run.
type Result struct {
	ExitCode   int
	Disposed   bool // a "to" delivered the message or "exit" ran: no default delivery
	Deliveries []Delivery
	Vars       map[string]string
}

// RuntimeError is an error while running a filter, with where it happened.
type RuntimeError struct {
	File string
	Line int
	Err  error
}

func (e *RuntimeError) Error() string {
	return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err)
}

func (e *RuntimeError) Unwrap() error { return e.Err }

// errStop unwinds the interpreter after "to" or "exit".
var errStop = errors.New("stop")

// Session is one message going through one or more filter files that share
// variables (maildrop runs /etc/maildroprc, then ~/.mailfilter).
type Session struct {
	env      Env
	lim      Limits
	msg      *Message
	vars     map[string]string
	steps    int
	disposed bool
	exitSet  bool
	exitCode int
	results  []Delivery
	logfile  string
	patterns patternCache
	gdbms    []*gdbmHandle // every handle opened, closed by Finish
	depth    int
	trusted  int // >0 while inside a TrustedIncludeDir file
	ctx      context.Context
	cancel   context.CancelFunc
}

// frame is per-file interpreter state.
type frame struct {
	file string
	gdbm *gdbmHandle
}

// NewSession prepares a run of msg. SIZE and LINES are set from the message;
// $1.. from env.Args.
func NewSession(msg *Message, env Env) *Session {
	s := &Session{env: env, lim: env.Limits.withDefaults(), msg: msg, vars: make(map[string]string)}
	for k, v := range env.Vars {
		s.vars[k] = v
	}
	for i, a := range env.Args {
		s.vars[strconv.Itoa(i+1)] = a
	}
	s.setSize()
	return s
}

func (s *Session) setSize() {
	s.vars["SIZE"] = strconv.Itoa(s.msg.Size())
	s.vars["LINES"] = strconv.Itoa(s.msg.Lines())
}

// Run runs one filter program on the session's message: to the end, to a
// successful "to", or to "exit". A returned error is a *RuntimeError (or
// a limit); the exit code is then 75.
func (p *Program) Run(ctx context.Context, msg *Message, env Env) (Result, error) {
	s := NewSession(msg, env)
	err := s.Run(ctx, p)
	res, ferr := s.Finish(ctx, err == nil)
	if err == nil {
		err = ferr
	}
	if err != nil {
		res.ExitCode = ExitTempFail
	}
	return res, err
}

// Done reports whether the message has been disposed of (to or exit).
func (s *Session) Done() bool { return s.disposed }

// Message is the message as the session has it now: xfilter replaces it.
func (s *Session) Message() *Message { return s.msg }

// Run runs p in this session. After Done it does nothing.
func (s *Session) Run(ctx context.Context, p *Program) error {
	if s.disposed {
		return nil
	}
	if s.ctx == nil {
		s.ctx, s.cancel = context.WithTimeout(ctx, s.lim.Timeout)
	}
	if err := s.refuseEmbedded(p); err != nil {
		return err
	}
	fr := &frame{file: p.File}
	err := s.block(fr, p.body)
	s.closeFrame(fr)
	if errors.Is(err, errStop) {
		return nil
	}
	return err
}

// Finish completes the session: unless the message was disposed of, the
// run is embedded, or deliverDefault is false, it delivers to $DEFAULT.
// It closes any databases and returns the result.
func (s *Session) Finish(ctx context.Context, deliverDefault bool) (Result, error) {
	if s.ctx == nil {
		s.ctx, s.cancel = context.WithTimeout(ctx, s.lim.Timeout)
	}
	defer s.cancel()
	var err error
	if deliverDefault && !s.disposed && !s.env.Embedded {
		d := s.vars["DEFAULT"]
		if d == "" {
			err = &RuntimeError{File: "", Line: 0, Err: errors.New("no DEFAULT mailbox to deliver to")}
		} else {
			s.trace(Step{What: "default", Text: "deliver to $DEFAULT " + strconv.Quote(d)})
			err = s.deliver(&frame{}, Pos{}, "default", d)
			if err == nil {
				s.disposed = true
			}
		}
	}
	for _, h := range s.gdbms {
		h.close()
	}
	s.gdbms = nil
	res := Result{Disposed: s.disposed, Deliveries: s.results, Vars: make(map[string]string, len(s.vars))}
	for k, v := range s.vars {
		res.Vars[k] = v
	}
	if err != nil {
		res.ExitCode = ExitTempFail
		return res, err
	}
	res.ExitCode = s.exitCodeNow()
	return res, nil
}

func (s *Session) exitCodeNow() int {
	n, err := strconv.Atoi(strings.TrimSpace(s.vars["EXITCODE"]))
	if err != nil {
		return int(toNum(s.vars["EXITCODE"]))
	}
	return n
}

func (s *Session) trace(st Step) {
	if s.env.Trace != nil {
		s.env.Trace(st)
	}
}

func (s *Session) rtErr(fr *frame, pos Pos, err error) error {
	var re *RuntimeError
	if errors.As(err, &re) || errors.Is(err, errStop) {
		return err
	}
	return &RuntimeError{File: fr.file, Line: pos.Line, Err: err}
}

func (s *Session) step(fr *frame, pos Pos) error {
	s.steps++
	if s.steps > s.lim.MaxSteps {
		return s.rtErr(fr, pos, fmt.Errorf("%w: more than %d steps (endless loop?)", ErrLimit, s.lim.MaxSteps))
	}
	if s.steps&63 == 0 {
		if err := s.ctx.Err(); err != nil {
			return s.rtErr(fr, pos, fmt.Errorf("%w: run time over %v: %w", ErrLimit, s.lim.Timeout, err))
		}
	}
	return nil
}

func (s *Session) block(fr *frame, body []stmt) error {
	for _, st := range body {
		if err := s.step(fr, st.position()); err != nil {
			return err
		}
		if err := s.exec(fr, st); err != nil {
			return err
		}
	}
	return nil
}

func truth(v string) bool { return v != "" && v != "0" }

func (s *Session) setVar(fr *frame, pos Pos, name, value string) error {
	if len(value) > s.lim.MaxVarSize {
		return s.rtErr(fr, pos, fmt.Errorf("%w: variable %s would be %d bytes, limit is %d", ErrLimit, name, len(value), s.lim.MaxVarSize))
	}
	if _, ok := s.vars[name]; !ok && len(s.vars) >= s.lim.MaxVars {
		return s.rtErr(fr, pos, fmt.Errorf("%w: more than %d variables", ErrLimit, s.lim.MaxVars))
	}
	s.vars[name] = value
	return nil
}

// refuseEmbedded refuses, in embedded mode, a whole file that holds a
// statement the mode does not allow, before any of it runs, as maildrop -m
// does; files included from the trusted directory are exempt.
func (s *Session) refuseEmbedded(p *Program) error {
	if !s.env.Embedded || s.trusted > 0 {
		return nil
	}
	return p.EmbeddedRefusal()
}

// EmbeddedRefusal says why embedded mode (maildrop -m, Postern's SMTP-time
// rules) refuses the file: the first to, cc, xfilter, system, log,
// logfile, dotlock, flock or backtick command in it, reached or not, as
// maildrop -m refuses it; nil when the file can run embedded. Callers that
// load a file for embedded use check this once, at load.
func (p *Program) EmbeddedRefusal() error {
	if p.usage.refused == "" {
		return nil
	}
	return &RuntimeError{File: p.File, Line: p.usage.refusedPos.Line, Err: fmt.Errorf("%s is %w in embedded mode", p.usage.refused, ErrNotAllowed)}
}

func (s *Session) restricted(fr *frame, pos Pos, what string) error {
	if s.env.Embedded && s.trusted == 0 {
		return s.rtErr(fr, pos, fmt.Errorf("%s is %w in embedded mode", what, ErrNotAllowed))
	}
	return nil
}

func (s *Session) exec(fr *frame, st stmt) error {
	switch st := st.(type) {
	case *assignStmt:
		name, err := s.text(fr, st.name.pos, st.name.parts)
		if err != nil {
			return err
		}
		v, err := s.eval(fr, st.value)
		if err != nil {
			return err
		}
		s.trace(Step{File: fr.file, Line: st.pos.Line, What: "assign", Text: fmt.Sprintf("%s=%s", name, strconv.Quote(clip(v)))})
		return s.setVar(fr, st.pos, name, v)
	case *ifStmt:
		v, err := s.eval(fr, st.cond)
		if err != nil {
			return err
		}
		s.trace(Step{File: fr.file, Line: st.pos.Line, What: "if", Text: fmt.Sprintf("condition is %v (%s)", truth(v), strconv.Quote(clip(v)))})
		if truth(v) {
			return s.block(fr, st.then)
		}
		return s.block(fr, st.els)
	case *whileStmt:
		for {
			v, err := s.eval(fr, st.cond)
			if err != nil {
				return err
			}
			s.trace(Step{File: fr.file, Line: st.pos.Line, What: "while", Text: fmt.Sprintf("condition is %v (%s)", truth(v), strconv.Quote(clip(v)))})
			if !truth(v) {
				return nil
			}
			if err := s.step(fr, st.pos); err != nil {
				return err
			}
			if err := s.block(fr, st.body); err != nil {
				return err
			}
		}
	case *foreachStmt:
		return s.foreach(fr, st)
	case *cmdStmt:
		return s.command(fr, st)
	case *exitStmt:
		s.trace(Step{File: fr.file, Line: st.pos.Line, What: "exit", Text: "exit with EXITCODE " + s.vars["EXITCODE"]})
		s.disposed = true
		return errStop
	case *importStmt:
		v := s.env.Environ[st.name]
		s.trace(Step{File: fr.file, Line: st.pos.Line, What: "import", Text: fmt.Sprintf("%s=%s", st.name, strconv.Quote(clip(v)))})
		return s.setVar(fr, st.pos, st.name, v)
	case *exceptionStmt:
		err := s.block(fr, st.body)
		var re *RuntimeError
		if err != nil && !errors.Is(err, errStop) && !errors.Is(err, ErrLimit) && errors.As(err, &re) {
			s.trace(Step{File: fr.file, Line: st.pos.Line, What: "exception", Text: "caught: " + err.Error()})
			return nil
		}
		return err
	case *lockStmt:
		if err := s.restricted(fr, st.pos, st.verb); err != nil {
			return err
		}
		name, err := s.eval(fr, st.file)
		if err != nil {
			return err
		}
		unlock, err := s.lock(st.verb, s.path(name))
		if err != nil {
			return s.rtErr(fr, st.pos, err)
		}
		s.trace(Step{File: fr.file, Line: st.pos.Line, What: st.verb, Text: "locked " + strconv.Quote(name)})
		err = s.block(fr, st.body)
		unlock()
		return err
	case *exprStmt:
		_, err := s.eval(fr, st.x)
		return err
	}
	return fmt.Errorf("rules: unknown statement %T", st)
}

// clip shortens long values in traces.
func clip(v string) string {
	if len(v) > 200 {
		return v[:200] + "..."
	}
	return v
}

func (s *Session) path(name string) string {
	if name == "" || filepath.IsAbs(name) || s.env.Dir == "" {
		return name
	}
	return filepath.Join(s.env.Dir, name)
}

func (s *Session) command(fr *frame, st *cmdStmt) error {
	switch st.verb {
	case "to", "cc", "xfilter", "system", "log", "logfile":
		if err := s.restricted(fr, st.pos, st.verb); err != nil {
			return err
		}
	}
	arg, err := s.eval(fr, st.arg)
	if err != nil {
		return err
	}
	switch st.verb {
	case "echo":
		if s.env.Stdout != nil {
			io.WriteString(s.env.Stdout, echoText(arg))
		}
		s.trace(Step{File: fr.file, Line: st.pos.Line, What: "echo", Text: strconv.Quote(clip(arg))})
		return nil
	case "log":
		return s.writeLog(fr, st.pos, echoText(arg))
	case "logfile":
		s.logfile = arg
		s.trace(Step{File: fr.file, Line: st.pos.Line, What: "logfile", Text: strconv.Quote(arg)})
		return nil
	case "to", "cc":
		s.trace(Step{File: fr.file, Line: st.pos.Line, What: st.verb, Text: "deliver to " + strconv.Quote(arg)})
		if err := s.deliver(fr, st.pos, st.verb, arg); err != nil {
			return err
		}
		if st.verb == "to" {
			s.disposed = true
			return errStop
		}
		return nil
	case "xfilter":
		res, err := s.runCommand(fr, st.pos, "xfilter", arg, s.msg.Output())
		if err != nil {
			return err
		}
		if res.Code != 0 {
			return s.rtErr(fr, st.pos, fmt.Errorf("xfilter %q exited with %d", arg, res.Code))
		}
		s.msg = NewMessage(res.Stdout)
		s.setSize()
		s.trace(Step{File: fr.file, Line: st.pos.Line, What: "xfilter", Text: fmt.Sprintf("message replaced by the output of %q (%d bytes)", arg, len(res.Stdout))})
		return nil
	case "system":
		res, err := s.runCommand(fr, st.pos, "system", arg, nil)
		if err != nil {
			return err
		}
		if s.env.Stdout != nil {
			s.env.Stdout.Write(res.Stdout)
		}
		return nil
	case "include":
		return s.include(fr, st.pos, arg)
	}
	return nil
}

// echoText applies echo's escapes: a trailing \c suppresses the newline,
// \n and \t are a newline and a tab, and a backslash before any other
// character yields that character (as Courier's maildrop prints).
func echoText(s string) string {
	nl := "\n"
	if strings.HasSuffix(s, `\c`) {
		s, nl = strings.TrimSuffix(s, `\c`), ""
	}
	if !strings.Contains(s, `\`) {
		return s + nl
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
			switch s[i] {
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			default:
				b.WriteByte(s[i])
			}
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String() + nl
}

func (s *Session) writeLog(fr *frame, pos Pos, text string) error {
	if s.logfile == "" {
		return nil
	}
	f, err := os.OpenFile(s.path(s.logfile), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return s.rtErr(fr, pos, fmt.Errorf("logfile: %w", err))
	}
	_, werr := io.WriteString(f, text)
	cerr := f.Close()
	if werr != nil || cerr != nil {
		return s.rtErr(fr, pos, fmt.Errorf("logfile %s: write: %w", s.logfile, errors.Join(werr, cerr)))
	}
	return nil
}

func (s *Session) now() time.Time {
	if s.env.Now != nil {
		return s.env.Now()
	}
	return time.Now()
}

func (s *Session) deliver(fr *frame, pos Pos, kind, dest string) error {
	if len(s.results) >= s.lim.MaxDeliveries {
		return s.rtErr(fr, pos, fmt.Errorf("%w: more than %d deliveries", ErrLimit, s.lim.MaxDeliveries))
	}
	if s.env.Deliver == nil {
		return s.rtErr(fr, pos, fmt.Errorf("delivery to %q is %w here", dest, ErrNotAllowed))
	}
	d := Delivery{Kind: kind, Dest: dest, File: fr.file, Line: pos.Line, Flags: s.vars["FLAGS"], Keywords: s.vars["KEYWORDS"], Message: s.msg, Vars: make(map[string]string, len(s.vars))}
	for k, v := range s.vars {
		d.Vars[k] = v
	}
	code, err := s.env.Deliver(s.ctx, d)
	if err != nil {
		return s.rtErr(fr, pos, fmt.Errorf("deliver to %s: %w", dest, err))
	}
	if t := strings.TrimSpace(dest); strings.HasPrefix(t, "|") || strings.HasPrefix(t, "!") {
		// maildropfilter(7) EXITCODE: a delivery program's exit code
		// becomes maildrop's; maildrop 2.9.3 treats $SENDMAIL, for a
		// forward, the same way.
		s.vars["EXITCODE"] = strconv.Itoa(code)
	}
	s.results = append(s.results, d)
	size := s.msg.Size()
	if t := strings.TrimSpace(dest); t != "" && t[0] != '|' && t[0] != '!' {
		if st, err := os.Stat(s.path(t)); err == nil && !st.IsDir() {
			// An mbox file: maildrop logs the bytes it wrote, lines
			// starting "From " quoted as ">From ".
			size += mboxQuotedLines(s.msg.Bytes())
		}
	}
	return s.writeLog(fr, pos, s.logRecord(dest, size))
}

// mboxQuotedLines counts the lines an mbox delivery quotes with ">".
func mboxQuotedLines(raw []byte) int {
	n := 0
	for line := range bytes.Lines(raw) {
		if bytes.HasPrefix(line, []byte("From ")) {
			n++
		}
	}
	return n
}

// logRecord is maildrop's logfile entry for a delivery of size bytes.
func (s *Session) logRecord(dest string, size int) string {
	// The size is right-aligned so that the File: line is 78 columns.
	file, sizeText := "File: "+dest, fmt.Sprintf("(%d)", size)
	pad := max(78-len(file)-len(sizeText), 1)
	return fmt.Sprintf("Date: %s\n%s\n%s\n%s%s%s\n\n",
		s.now().Format("Mon Jan _2 15:04:05 2006"), logHeader(s.msg.Bytes(), "From"), logHeader(s.msg.Bytes(), "Subj"),
		file, strings.Repeat(" ", pad), sizeText)
}

// logHeader is the From: or Subj: line of a log record as maildrop 2.9.3
// writes it: the first physical line of every such header field (From,
// Subject), run together, the whole line cut at 78 bytes.
func logHeader(raw []byte, label string) string {
	name := "From"
	if label == "Subj" {
		name = "Subject"
	}
	var b strings.Builder
	b.WriteString(label + ": ")
	for line := range bytes.Lines(raw) {
		line = bytes.TrimRight(line, "\n")
		if len(line) == 0 {
			break
		}
		if n, v, ok := bytes.Cut(line, []byte(":")); ok && strings.EqualFold(string(n), name) {
			b.Write(bytes.TrimLeft(v, " \t"))
		}
		if b.Len() > 78 {
			break
		}
	}
	out := b.String()
	if len(out) > 78 {
		out = out[:78]
	}
	return out
}

func (s *Session) include(fr *frame, pos Pos, name string) error {
	if s.depth >= s.lim.MaxIncludeDepth {
		return s.rtErr(fr, pos, fmt.Errorf("%w: include nested deeper than %d (include loop?)", ErrLimit, s.lim.MaxIncludeDepth))
	}
	src, err := s.readFile(name)
	if err != nil {
		return s.rtErr(fr, pos, fmt.Errorf("include: %w", err))
	}
	p, err := Parse(name, src)
	if err != nil {
		return s.rtErr(fr, pos, fmt.Errorf("include: %w", err))
	}
	s.trace(Step{File: fr.file, Line: pos.Line, What: "include", Text: strconv.Quote(name)})
	trusted := s.env.TrustedIncludeDir != "" && strings.HasPrefix(name, s.env.TrustedIncludeDir) && !strings.Contains(name[len(s.env.TrustedIncludeDir):], ".")
	if trusted {
		s.trusted++
		defer func() { s.trusted-- }()
	}
	if err := s.refuseEmbedded(p); err != nil {
		return err
	}
	s.depth++
	defer func() { s.depth-- }()
	sub := &frame{file: name}
	err = s.block(sub, p.body)
	s.closeFrame(sub)
	return err
}

func (s *Session) closeFrame(fr *frame) {
	if fr.gdbm != nil {
		fr.gdbm.close()
		fr.gdbm = nil
	}
}

const maxIncludeFile = 4 << 20

func (s *Session) readFile(name string) ([]byte, error) {
	if s.env.ReadFile != nil {
		return s.env.ReadFile(s.path(name))
	}
	f, err := os.Open(s.path(name))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxIncludeFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxIncludeFile {
		return nil, fmt.Errorf("%s: %w: larger than %d bytes", name, ErrLimit, maxIncludeFile)
	}
	return b, nil
}

func (s *Session) environ() []string {
	keys := make([]string, 0, len(s.vars))
	for k := range s.vars {
		if k != "" && !strings.ContainsAny(k, "=\x00") {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	env := make([]string, 0, len(keys))
	for _, k := range keys {
		if !strings.Contains(s.vars[k], "\x00") {
			env = append(env, k+"="+s.vars[k])
		}
	}
	return env
}

func (s *Session) runCommand(fr *frame, pos Pos, kind, cmd string, stdin []byte) (CommandResult, error) {
	if err := s.restricted(fr, pos, kind); err != nil {
		return CommandResult{}, err
	}
	if s.env.Run == nil {
		return CommandResult{}, s.rtErr(fr, pos, fmt.Errorf("running commands (%s) is %w here", kind, ErrNotAllowed))
	}
	shell := s.vars["SHELL"]
	if shell == "" {
		shell = "/bin/sh"
	}
	res, err := s.env.Run(s.ctx, Command{Kind: kind, Cmd: cmd, Shell: shell, Dir: s.env.Dir, Env: s.environ(), Stdin: stdin, MaxOutput: s.lim.MaxOutput})
	if err != nil {
		return res, s.rtErr(fr, pos, fmt.Errorf("%s %q: %w", kind, cmd, err))
	}
	s.vars["RETURNCODE"] = strconv.Itoa(res.Code)
	s.trace(Step{File: fr.file, Line: pos.Line, What: kind, Text: fmt.Sprintf("ran %q: exit %d", cmd, res.Code)})
	return res, nil
}

// text substitutes variables into literal parts.
func (s *Session) text(fr *frame, pos Pos, parts []textPart) (string, error) {
	if len(parts) == 1 && parts[0].vname == "" {
		return parts[0].lit, nil
	}
	var b strings.Builder
	for _, p := range parts {
		if p.vname != "" {
			b.WriteString(s.vars[p.vname])
		} else {
			b.WriteString(p.lit)
		}
		if b.Len() > s.lim.MaxVarSize {
			return "", s.rtErr(fr, pos, fmt.Errorf("%w: text longer than %d bytes", ErrLimit, s.lim.MaxVarSize))
		}
	}
	return b.String(), nil
}

// toNum reads a number the way strtod does: the longest numeric prefix
// (decimal, exponent, or 0x hex), 0 if there is none.
func toNum(v string) float64 {
	v = strings.TrimLeft(v, " \t\n")
	i := 0
	if i < len(v) && (v[i] == '+' || v[i] == '-') {
		i++
	}
	if i+1 < len(v) && v[i] == '0' && (v[i+1] == 'x' || v[i+1] == 'X') {
		j := i + 2
		for j < len(v) && strings.IndexByte("0123456789abcdefABCDEF", v[j]) >= 0 {
			j++
		}
		if j > i+2 {
			n, err := strconv.ParseUint(v[i+2:j], 16, 64)
			if err == nil {
				f := float64(n)
				if v[0] == '-' {
					f = -f
				}
				return f
			}
		}
		return 0
	}
	j := i
	for j < len(v) && v[j] >= '0' && v[j] <= '9' {
		j++
	}
	if j < len(v) && v[j] == '.' {
		j++
		for j < len(v) && v[j] >= '0' && v[j] <= '9' {
			j++
		}
	}
	if j == i || j == i+1 && v[i] == '.' {
		return 0
	}
	if j < len(v) && (v[j] == 'e' || v[j] == 'E') {
		k := j + 1
		if k < len(v) && (v[k] == '+' || v[k] == '-') {
			k++
		}
		if k < len(v) && v[k] >= '0' && v[k] <= '9' {
			for k < len(v) && v[k] >= '0' && v[k] <= '9' {
				k++
			}
			j = k
		}
	}
	f, err := strconv.ParseFloat(v[:j], 64)
	if err != nil {
		// Out of range: ParseFloat returns ±Inf with the error, as strtod.
		return f
	}
	return f
}

// fmtNum prints a number as maildrop does (printf "%.22g"-like).
func fmtNum(f float64) string {
	switch {
	case math.IsNaN(f):
		return "nan"
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	case f == 0:
		return "0"
	}
	return strconv.FormatFloat(f, 'g', 22, 64)
}

func boolStr(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

func (s *Session) eval(fr *frame, e expr) (string, error) {
	switch e := e.(type) {
	case *textExpr:
		return s.text(fr, e.pos, e.parts)
	case *commandExpr:
		cmd, err := s.text(fr, e.pos, e.parts)
		if err != nil {
			return "", err
		}
		res, err := s.runCommand(fr, e.pos, "backtick", cmd, s.msg.Output())
		if err != nil {
			return "", err
		}
		if res.Code != 0 {
			// Courier's maildrop discards the output of a failing command.
			return "", nil
		}
		out := strings.ReplaceAll(string(res.Stdout), "\n", " ")
		out = strings.Trim(out, " ")
		if len(out) > s.lim.MaxVarSize {
			return "", s.rtErr(fr, e.pos, fmt.Errorf("%w: command output longer than %d bytes", ErrLimit, s.lim.MaxVarSize))
		}
		return out, nil
	case *patternExpr:
		return s.matchMessage(fr, e)
	case *matchExpr:
		l, err := s.eval(fr, e.lhs)
		if err != nil {
			return "", err
		}
		return s.matchString(fr, e.pat, l)
	case *unaryExpr:
		x, err := s.eval(fr, e.x)
		if err != nil {
			return "", err
		}
		switch e.op {
		case "!":
			return boolStr(!truth(x)), nil
		case "~":
			return strconv.Itoa(int(^int32(int64(toNum(x))))), nil
		case "-":
			return fmtNum(-toNum(x)), nil
		}
	case *binaryExpr:
		return s.binary(fr, e)
	case *callExpr:
		return s.call(fr, e)
	}
	return "", fmt.Errorf("rules: unknown expression %T", e)
}

func (s *Session) binary(fr *frame, e *binaryExpr) (string, error) {
	l, err := s.eval(fr, e.l)
	if err != nil {
		return "", err
	}
	// || and && return the deciding operand and evaluate lazily.
	switch e.op {
	case "||":
		if truth(l) {
			return l, nil
		}
		return s.eval(fr, e.r)
	case "&&":
		if !truth(l) {
			return l, nil
		}
		return s.eval(fr, e.r)
	}
	r, err := s.eval(fr, e.r)
	if err != nil {
		return "", err
	}
	a, b := toNum(l), toNum(r)
	switch e.op {
	case "<":
		return boolStr(a < b), nil
	case "<=":
		return boolStr(a <= b), nil
	case ">":
		return boolStr(a > b), nil
	case ">=":
		return boolStr(a >= b), nil
	case "==":
		return boolStr(a == b), nil
	case "!=":
		return boolStr(a != b), nil
	case "lt":
		return boolStr(l < r), nil
	case "le":
		return boolStr(l <= r), nil
	case "gt":
		return boolStr(l > r), nil
	case "ge":
		return boolStr(l >= r), nil
	case "eq":
		return boolStr(l == r), nil
	case "ne":
		return boolStr(l != r), nil
	case "|":
		return strconv.Itoa(int(int32(int64(a)) | int32(int64(b)))), nil
	case "&":
		return strconv.Itoa(int(int32(int64(a)) & int32(int64(b)))), nil
	case "+":
		return fmtNum(a + b), nil
	case "-":
		return fmtNum(a - b), nil
	case "*":
		return fmtNum(a * b), nil
	case "/":
		return fmtNum(a / b), nil
	}
	return "", fmt.Errorf("rules: unknown operator %q", e.op)
}

// compiled returns the pattern's regexp, substituting variables first.
// A pattern that is not a regular expression is reported on Stderr and
// does not match, as in maildrop 2.9.3 ("Syntax error in /pattern/"); the
// filter goes on.
func (s *Session) compiled(fr *frame, pe *patternExpr) (*regexp.Regexp, error) {
	if pe.re != nil {
		return pe.re, nil
	}
	err := pe.bad
	if err == nil {
		var src string
		if src, err = s.text(fr, pe.pos, pe.parts); err != nil {
			return nil, err
		}
		var re *regexp.Regexp
		if re, err = s.patterns.get(src, strings.Contains(pe.flags, "D"), s.lim.MaxRegexSize); err == nil {
			return re, nil
		}
	}
	if !errors.Is(err, errRegexSyntax) {
		return nil, s.rtErr(fr, pe.pos, err)
	}
	if s.env.Stderr != nil {
		fmt.Fprintf(s.env.Stderr, "%s:%d: %v; the pattern does not match\n", fr.file, pe.pos.Line, err)
	}
	s.trace(Step{File: fr.file, Line: pe.pos.Line, What: "match", Text: fmt.Sprintf("%v; the pattern does not match", err)})
	return neverMatches, nil
}

// lines returns the message lines a pattern's h/b options select.
func (s *Session) lines(flags string) [][]string {
	v := s.msg.v()
	h, b := strings.Contains(flags, "h"), strings.Contains(flags, "b")
	switch {
	case h && b:
		return [][]string{v.header, v.body}
	case b:
		return [][]string{v.body}
	default:
		return [][]string{v.header}
	}
}

func (s *Session) setMatch(fr *frame, pos Pos, line string, loc []int) error {
	if err := s.setVar(fr, pos, "MATCH", line[loc[0]:loc[1]]); err != nil {
		return err
	}
	for g := 1; 2*g+1 < len(loc); g++ {
		v := ""
		if loc[2*g] >= 0 {
			v = line[loc[2*g]:loc[2*g+1]]
		}
		if err := s.setVar(fr, pos, "MATCH"+strconv.Itoa(g), v); err != nil {
			return err
		}
	}
	return nil
}

// matchMessage evaluates /re/:flags against the message, line by line
// (maildropfilter(7), "Patterns" and "Weighted scoring").
func (s *Session) matchMessage(fr *frame, pe *patternExpr) (string, error) {
	re, err := s.compiled(fr, pe)
	if err != nil {
		return "", err
	}
	score, next := 0.0, pe.weight
	found := false
	for _, group := range s.lines(pe.flags) {
		for _, line := range group {
			loc := re.FindStringSubmatchIndex(line)
			if loc == nil {
				continue
			}
			if !found {
				if err := s.setMatch(fr, pe.pos, line, loc); err != nil {
					return "", err
				}
			}
			found = true
			if !pe.weighted {
				s.trace(Step{File: fr.file, Line: pe.pos.Line, What: "match", Text: fmt.Sprintf("/%s/ matched %q", literalText(pe.parts), clip(line))})
				// Courier's maildrop 2.9 yields 2, not 1, for a plain
				// pattern found in the message; any true value works.
				return "2", nil
			}
			score += next
			next *= pe.fac
		}
	}
	if !pe.weighted {
		s.trace(Step{File: fr.file, Line: pe.pos.Line, What: "match", Text: fmt.Sprintf("/%s/ did not match", literalText(pe.parts))})
		return "0", nil
	}
	s.trace(Step{File: fr.file, Line: pe.pos.Line, What: "match", Text: fmt.Sprintf("/%s/ weighted score %s", literalText(pe.parts), fmtNum(score))})
	return fmtNum(score), nil
}

// matchString evaluates expr =~ /re/: the whole text, every occurrence
// counting for weighted scoring.
func (s *Session) matchString(fr *frame, pe *patternExpr, subject string) (string, error) {
	re, err := s.compiled(fr, pe)
	if err != nil {
		return "", err
	}
	if !pe.weighted {
		loc := re.FindStringSubmatchIndex(subject)
		if loc == nil {
			return "0", nil
		}
		if err := s.setMatch(fr, pe.pos, subject, loc); err != nil {
			return "", err
		}
		return "1", nil
	}
	all := re.FindAllStringSubmatchIndex(subject, -1)
	score, next := 0.0, pe.weight
	for i, loc := range all {
		if i == 0 {
			if err := s.setMatch(fr, pe.pos, subject, loc); err != nil {
				return "", err
			}
		}
		score += next
		next *= pe.fac
	}
	return fmtNum(score), nil
}

type occurrence struct {
	line string
	loc  []int
}

func (s *Session) foreach(fr *frame, st *foreachStmt) error {
	re, err := s.compiled(fr, st.pat)
	if err != nil {
		return err
	}
	var occ []occurrence
	if st.subject != nil {
		subj, err := s.eval(fr, st.subject)
		if err != nil {
			return err
		}
		for _, loc := range re.FindAllStringSubmatchIndex(subj, -1) {
			occ = append(occ, occurrence{subj, loc})
		}
	} else {
		for _, group := range s.lines(st.pat.flags) {
			for _, line := range group {
				if loc := re.FindStringSubmatchIndex(line); loc != nil {
					occ = append(occ, occurrence{line, loc})
				}
			}
		}
	}
	s.trace(Step{File: fr.file, Line: st.pos.Line, What: "foreach", Text: fmt.Sprintf("/%s/ found %d time(s)", literalText(st.pat.parts), len(occ))})
	// Courier's maildrop finds every occurrence first, leaving MATCH1...
	// from the last one; each iteration then sets only MATCH.
	if len(occ) > 0 {
		last := occ[len(occ)-1]
		if err := s.setMatch(fr, st.pos, last.line, last.loc); err != nil {
			return err
		}
	}
	for _, o := range occ {
		if err := s.step(fr, st.pos); err != nil {
			return err
		}
		if err := s.setMatch(fr, st.pos, o.line, o.loc[:2]); err != nil {
			return err
		}
		if err := s.block(fr, st.body); err != nil {
			return err
		}
	}
	return nil
}

// hasAddr reports whether addr is in To, Cc, Resent-To or Resent-Cc.
func (s *Session) hasAddr(addr string) bool {
	for _, f := range s.msg.v().top {
		switch strings.ToLower(f.name) {
		case "to", "cc", "resent-to", "resent-cc":
			for _, a := range addresses(f.value) {
				if strings.EqualFold(a, addr) {
					return true
				}
			}
		}
	}
	return false
}

var escapeChars = "|!$()[]\\+*?.&;`'-~<>^{}\""

func escapeText(v string) string {
	var b bytes.Buffer
	for i := 0; i < len(v); i++ {
		if strings.IndexByte(escapeChars, v[i]) >= 0 {
			b.WriteByte('\\')
		}
		b.WriteByte(v[i])
	}
	return b.String()
}
