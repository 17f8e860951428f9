package sieve

import (
	"errors"
	"fmt"
)

// Pos is a place in a script: 1-based line and column (the column counts
// bytes, as editors that show byte columns do).
type Pos struct {
	Line, Col int
}

func (p Pos) String() string { return fmt.Sprintf("%d:%d", p.Line, p.Col) }

// ParseError is a lexical, grammatical or validation error in a script
// (unknown command, wrong argument, missing require, unsupported
// extension). Its text is "LINE:COL: message".
type ParseError struct {
	Pos
	Msg string
}

func (e *ParseError) Error() string { return fmt.Sprintf("%d:%d: %s", e.Line, e.Col, e.Msg) }

func parseErrorf(p Pos, format string, args ...any) *ParseError {
	return &ParseError{Pos: p, Msg: fmt.Sprintf(format, args...)}
}

// ErrLimit is wrapped by every runtime error raised because a bound of
// Options was hit (actions, redirects, include depth, steps, variable size).
var ErrLimit = errors.New("sieve: limit exceeded")

// ErrScript is wrapped by the runtime error of the error command
// (RFC 5463 5): the script itself declared that it cannot go on.
var ErrScript = errors.New("sieve: error command")

// RuntimeError is an error while a script runs: a limit, conflicting
// actions (RFC 5429 reject with keep), a missing included script, an
// invalid address computed at run time. Its text is
// "LINE:COL: runtime error: message"; RFC 5228 section 2.10.6 wants the
// message kept when a script fails, which is the caller's decision.
type RuntimeError struct {
	Pos
	Script string // the included script's name; "" for the main script
	Err    error
}

func (e *RuntimeError) Error() string {
	where := fmt.Sprintf("%d:%d", e.Line, e.Col)
	if e.Script != "" {
		where = fmt.Sprintf("include %q: %s", e.Script, where)
	}
	return fmt.Sprintf("%s: runtime error: %v", where, e.Err)
}

func (e *RuntimeError) Unwrap() error { return e.Err }

func runtimeErrorf(p Pos, format string, args ...any) *RuntimeError {
	return &RuntimeError{Pos: p, Err: fmt.Errorf(format, args...)}
}

func limitErrorf(p Pos, format string, args ...any) *RuntimeError {
	return &RuntimeError{Pos: p, Err: fmt.Errorf("%w: "+format, append([]any{ErrLimit}, args...)...)}
}
