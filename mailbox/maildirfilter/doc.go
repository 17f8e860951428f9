// Package maildirfilter keeps a user's mail filters and autoresponses in
// the files Courier's sqwebmail keeps them in, so that a user moving from
// sqwebmail keeps both and the delivery agent (mailbox/deliver) runs them
// at the next delivery with no admin action.
//
// It owns three formats:
//
//   - the filter file, $HOME/.mailfilter: a maildrop recipe whose first
//     line is "#MFMAILDROP=2" (the mark that sqwebmail wrote it and may
//     rewrite it) and in which each rule is kept twice, as "##Op:",
//     "##Header:", ... comment lines that are read back (Parse) and as the
//     maildrop statements that act on it (Generate). A .mailfilter without
//     the mark was written by hand and is never replaced (ErrForeign);
//   - the autoresponses: one file a reply in the Maildir's autoresponses/
//     directory, a MIME part that mailbot -m sends, bounded by the
//     Maildir's autoresponsesquota;
//   - the rule's fields and actions as sqwebmail checks them (Rule.Check),
//     plus one check sqwebmail cannot make: the generated recipe must parse
//     in Postern's own maildrop language (postern/rules).
//
// Files are written atomically (temporary file, fsync, rename, fsync of
// the directory) and, when the writer is root, handed to the account.
package maildirfilter
