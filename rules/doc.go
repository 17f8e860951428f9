// Package rules owns the maildrop filter language as Postern runs it: the
// lexer, the parser and the interpreter for Courier maildrop's filter files
// (maildropfilter(7)), plus the two admin tools built on them, "rules check"
// (syntax errors as FILE:LINE:COL) and "rules test" (a dry run that traces
// every step and records where the message would go).
//
// The engine never delivers, runs commands or touches mailboxes by itself:
// every side effect goes through a callback in Env (Deliver, Run), so the
// delivery agent, the SMTP gateway and the test tool each decide what a
// destination such as "./Maildir/.Spam/", "|program" or "!address" means.
// Everything a hostile filter file can grow — steps, include depth, regex
// size, variable size, output size, run time — is bounded by Limits; hitting
// a limit ends the run with ErrLimit and exit code 75 (EX_TEMPFAIL) so the
// MTA keeps the message and retries.
//
// Patterns are PCRE in maildrop 2.x; Postern compiles them with Go's RE2
// (linear time, so no catastrophic backtracking). PCRE-only features
// (backreferences, lookaround, atomic groups, possessive quantifiers,
// recursion) are refused at parse time with a clear error rather than
// matching something else. docs/rules.md is the language reference and lists
// every difference from Courier.
package rules
