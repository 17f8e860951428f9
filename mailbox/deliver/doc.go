// Package deliver is Postern's local delivery agent: what happens to a
// message once it is known to belong to a local account. It owns
//
//   - the per-user delivery instructions Courier's local delivery reads
//     before anything else (dot-courier(5): $HOME/.courier, .courier-EXT,
//     .courier-EXT-default, .courier-default, and qmail's .qmail files read
//     the same way for migrations), with Courier's exit-code meaning for
//     programs; "|| dotforward" runs Postern's own dotforward
//     (mailbox/dotforward) when none is installed;
//   - the maildrop delivery mode (maildrop(1)): the system rules file
//     CONFIG/maildroprc, then ~/.mailfilter, run by postern/rules, then
//     $DEFAULT;
//   - the meaning of a destination (ResolveDestination): a Maildir or a
//     Maildir++ folder (with quotas), an mbox file (dot-lock plus flock),
//     "|program", "!address" — confined to the account's home and Maildir;
//   - the "postern maildrop" command (MaildropMain), with maildrop's options
//     and exit codes, so that Postfix and Exim use it as their delivery agent.
//
// The common case — no instruction file, no filter — costs a few stat calls
// and one maildir delivery. When Postern runs as root and the account belongs
// to another uid, anything that runs the user's files (filters, programs) is
// done by a child process that has switched to the account's uid and gid
// first (see Agent.Deliver); plain Maildir deliveries stay in process and
// hand the new files to the account.
package deliver
