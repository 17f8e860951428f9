// Package maildir implements Maildir and Courier's Maildir++ on disk: safe
// delivery (tmp/, fsync, link into new/, fsync the directory), scanning,
// flags in the ":2," info, folders as ".A.B" directories with a maildirfolder
// file, quotas in maildirsize with Courier's semantics, keywords, and
// persistent IMAP UIDs per folder kept in Courier's courierimapuiddb format.
//
// CONTRACT FILE: this is the exported API other packages (IMAP, POP3, SMTP,
// the delivery agent) code against. The implementation lives beside it.
// Signatures here may only grow; changing one means telling every user.
package maildir

import (
	"errors"
	"slices"
	"time"
)

// Errors callers test with errors.Is.
var (
	ErrOverQuota      = errors.New("maildir: over quota")          // delivery refused (deliverquota exit 77)
	ErrBadFolderName  = errors.New("maildir: invalid folder name") // "..", "/", NUL, control chars, empty parts
	ErrNoFolder       = errors.New("maildir: no such folder")
	ErrFolderExists   = errors.New("maildir: folder already exists")
	ErrNoMessage      = errors.New("maildir: no such message") // the file is gone (expunged by another process)
	ErrNotMaildir     = errors.New("maildir: not a maildir")   // tmp/new/cur missing
	ErrInboxProtected = errors.New("maildir: INBOX cannot be deleted or renamed")
)

// Inbox is the name of the root folder.
const Inbox = "INBOX"

// Flag letters of the ":2," info, as Maildir defines them. Flags strings are
// always kept sorted in ASCII order and without duplicates.
const (
	FlagDraft   = 'D'
	FlagFlagged = 'F'
	FlagPassed  = 'P'
	FlagReplied = 'R'
	FlagSeen    = 'S'
	FlagTrashed = 'T' // IMAP \Deleted
)

// Quota is a Maildir++ quota: a byte and a message-count limit. Zero means
// "no limit" for that dimension.
type Quota struct {
	Bytes    int64
	Messages int64
}

// Message is one message as the latest Sync saw it.
type Message struct {
	UID          uint32    // persistent IMAP UID
	Key          string    // the unique base name, without the ":2," info; stable for the message's life
	Name         string    // file name relative to the folder, e.g. "cur/KEY:2,FS" or "new/KEY"
	Flags        string    // sorted flag letters, e.g. "FS"
	Keywords     []string  // IMAP keywords (e.g. "$Junk", "work"), sorted
	Size         int64     // from ",S=" in the name, else from stat
	VirtualSize  int64     // from Dovecot's ",W=" (size with CRLF line ends) when present, else 0
	InternalDate time.Time // the file's modification time (set by Deliver from DeliverOptions.InternalDate); zero when a Sync did not stat the file (Folder.InternalDate reads it)
	// Whether the message was in new/ when the Sync looked is not a field
	// here but Snapshot.FromNew: a later Sync that only adds messages then
	// extends the array in place instead of copying it to clear a flag.
}

// DeliverOptions tunes one delivery.
type DeliverOptions struct {
	// Flags and Keywords, when set, put the message straight into cur/ with
	// that info (IMAP APPEND); otherwise it goes into new/.
	Flags    string
	Keywords []string
	// InternalDate sets the file's mtime; zero means now.
	InternalDate time.Time
	// IgnoreQuota delivers even when over quota (bounces, postmaster).
	IgnoreQuota bool
	// Journal, when set, makes the delivery durable through the delivery
	// journal (one log write) instead of flushing the file and its
	// directory entry; see Journal.
	Journal *Journal
	// Defer, with Journal, returns from Deliver once the journal record
	// is durable, and leaves writing and linking the file to Defer.Run,
	// which the caller must call soon (see Deferred). Messages the
	// journal does not take are delivered in full before Deliver
	// returns, as without Defer.
	Defer *Deferred
}

// Snapshot is a folder's state after Sync: messages in ascending UID order.
// Sync returns the same *Snapshot again while the folder has not changed
// (callers may compare pointers to skip work), so a Snapshot is read-only:
// callers must not modify it or its Messages.
//
// Successive snapshots of a folder may share Messages' backing array: a
// Sync that only adds messages writes them past the end of the last
// snapshot's slice, which no earlier snapshot can see.
type Snapshot struct {
	UIDValidity uint32
	UIDNext     uint32
	Messages    []Message
	// NewUIDs are the UIDs, ascending, of the messages that were in new/
	// when this Sync looked (and were moved to cur/ if the Sync was asked
	// to): no reader has claimed them yet, which is what IMAP's \Recent
	// means. Usually empty or a few.
	NewUIDs []uint32
}

// FromNew reports whether the message with this UID was in new/ when the
// Sync that returned s looked (see NewUIDs).
func (s *Snapshot) FromNew(uid uint32) bool {
	_, found := slices.BinarySearch(s.NewUIDs, uid)
	return found
}

// Additional errors (beyond the original contract list).
var (
	ErrBadFlags        = errors.New("maildir: invalid flags")        // flags must be ASCII upper-case letters
	ErrBadKeyword      = errors.New("maildir: invalid keyword")      // empty, system flag, or non-atom characters
	ErrTooManyKeywords = errors.New("maildir: too many keywords")    // more than 26 per folder (letters a-z)
	ErrBadQuota        = errors.New("maildir: invalid quota")        // ParseQuota refused the text
	ErrBadSubscription = errors.New("maildir: invalid subscription") // empty name or line breaks
)

// The implementation: Make, Open, Maildir and Folder in maildir.go;
// ValidFolderName and folder management in folder.go; scanning and UIDs
// in sync.go and uiddb.go; keywords in keywords.go; quota in quota.go;
// subscriptions in subscribe.go; the maildirmake and deliverquota commands
// in cmd.go.
