package imap

import (
	"errors"

	"postern/mailbox/maildir"
)

// storageResult turns a mailbox error into a tagged NO with the RFC 5530
// response code a client can act on. Unknown errors are logged and become
// [UNAVAILABLE]: temporary trouble, try again, never a silent success.
func (s *session) storageResult(err error, what string) result {
	switch {
	case errors.Is(err, maildir.ErrOverQuota):
		return no("OVERQUOTA", "Mailbox is over quota")
	case errors.Is(err, maildir.ErrNoFolder):
		return no("NONEXISTENT", "No such mailbox")
	case errors.Is(err, maildir.ErrFolderExists):
		return no("ALREADYEXISTS", "Mailbox already exists")
	case errors.Is(err, maildir.ErrBadFolderName):
		return nameResult(err)
	case errors.Is(err, maildir.ErrInboxProtected):
		return no("CANNOT", "INBOX cannot be deleted or renamed")
	case errors.Is(err, maildir.ErrTooManyKeywords):
		return no("LIMIT", "Too many distinct keywords in this mailbox (at most 26)")
	case errors.Is(err, maildir.ErrBadKeyword), errors.Is(err, maildir.ErrBadFlags):
		return bad("Invalid flag or keyword")
	case errors.Is(err, maildir.ErrNoMessage):
		return no("EXPUNGEISSUED", "Some messages were expunged meanwhile")
	}
	s.log.Error("imap: "+what, "err", err)
	return no("UNAVAILABLE", what+" failed; temporary server problem, try again")
}

// syncResult handles an error from bringing the view up to date. A changed
// UIDVALIDITY cannot be shown to a client with the mailbox selected: it is
// told BYE (fatal result). Other errors become NO [UNAVAILABLE].
func (s *session) syncResult(err error) (result, bool) {
	if err == nil {
		return result{}, false
	}
	if errors.Is(err, errUIDValidityChanged) || errors.Is(err, maildir.ErrNoFolder) {
		s.bye("mailbox changed under this session (UIDVALIDITY or deleted); please reconnect")
		return fatal(), true
	}
	return s.storageResult(err, "mailbox sync"), true
}
