// Package sieve is Postern's Sieve interpreter: the mail filtering language
// of RFC 5228 and the extensions Dovecot's Pigeonhole users rely on
// (fileinto, reject/ereject, envelope, encoded-character, imap4flags, copy,
// body, variables, vacation and vacation-seconds, relational, subaddress,
// date and index, mailbox, environment, duplicate, regex, include,
// editheader, spamtest/spamtestplus/virustest, ihave, mime/foreverypart/
// extracttext, enotify with the mailto method, special-use, mailboxid).
//
// It owns the language only — lexer, parser, validator and interpreter —
// and does no I/O of its own. Parse turns a script into a *Script, checking
// the grammar, every "require", every command's arguments and constant
// patterns, and reports the first problem as a *ParseError with line and
// column. Execute runs a script over one message described by an Env and
// returns the list of actions (keep, fileinto, redirect, reject, discard,
// vacation, notify) in order, with the implicit keep of RFC 5228 section
// 2.10.2 made explicit. Everything outside the message — whether a mailbox
// exists (by name, special-use attribute or object id), the memory of
// vacation replies and duplicates (Store), the text of included scripts
// (Loader) — comes from the caller through Env, so the
// delivery agent, ManageSieve's CHECKSCRIPT and tests each decide what it
// means.
//
// A hostile script cannot hang or exhaust delivery: the script size, block
// and test nesting, actions, redirects, include depth, variable size and a
// step budget are bounded (Options). Exceeding a bound, like any other
// failure while running, is a *RuntimeError (wrapping ErrLimit for the
// bounds); RFC 5228 section 2.10.6 then wants the message kept, which is
// the caller's decision. docs/sieve.md is the reference.
package sieve
