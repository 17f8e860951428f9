// Package mailbot is Postern's mailbot(1): the autoresponder that Courier's
// maildrop ships. It reads a message, decides whether it may be answered,
// builds the reply (reply, replyall, replydsn, replydraft, forward,
// forwardatt) and pipes it into a mail program, by default
// "sendmail -f ”" so that the reply has a null envelope sender and cannot
// cause a bounce loop.
//
// It never answers what an autoresponder must not answer (RFC 3834 section
// 2): messages without a sender, delivery reports (multipart/report),
// Precedence: junk/bulk/list, Auto-Submitted other than "no", mailing list
// mail (List-Id and, beyond Courier, any List-* field of RFC 2369), a null
// envelope sender ($SENDER set and empty) and senders such as MAILER-DAEMON,
// owner-* and *-request. With -r it answers only mail addressed to one of
// the given addresses; with -d it answers each sender once per -D days,
// remembered in an embedded bbolt database.
//
// MailbotMain takes the arguments after the program name and the standard
// streams and returns the exit status; Run takes the environment as well.
package mailbot
