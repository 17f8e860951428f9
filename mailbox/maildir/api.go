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
	"io"
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
	InternalDate time.Time // the file's modification time (set by Deliver from DeliverOptions.InternalDate)
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
}

// Snapshot is a folder's state after Sync: messages in ascending UID order.
type Snapshot struct {
	UIDValidity uint32
	UIDNext     uint32
	Messages    []Message
}

// Maildir is one user's mailbox tree: INBOX at the root and Maildir++ folders
// as ".Name" subdirectories. Safe for use by several goroutines and by
// several processes at once (other deliveries, a Courier server side by side).
//
// Methods are implemented in maildir.go, folder.go, quota.go, uiddb.go.
var _ = (*Maildir)(nil)

// Folder is one folder (INBOX or a Maildir++ subfolder) of a Maildir.
var _ = (*Folder)(nil)

// The rest of the API (implemented in the files beside this one):
//
//	func Make(root string) error                         // maildirmake ROOT: tmp/ new/ cur/ (0700)
//	func Open(root string) (*Maildir, error)             // ErrNotMaildir if it is not one
//	func ValidFolderName(name string) error              // ErrBadFolderName for "..", "/", NUL, control chars, empty parts, leading/trailing "."
//	func ParseQuota(s string) (Quota, error)             // "10000000S,1000C"
//	func (q Quota) String() string                       // back to "10000000S,1000C"
//
//	func (m *Maildir) Root() string
//	func (m *Maildir) Folders() ([]string, error)        // "INBOX" first, then Maildir++ names ("Sent", "A.B") sorted
//	func (m *Maildir) Folder(name string) (*Folder, error) // "INBOX" (any case) is the root; ErrNoFolder if absent
//	func (m *Maildir) CreateFolder(name string) error    // maildirmake -f: .NAME/{tmp,new,cur} + maildirfolder; ErrFolderExists
//	func (m *Maildir) DeleteFolder(name string) error    // removes the folder directory (not its children)
//	func (m *Maildir) RenameFolder(from, to string) error // renames children ("from.x") too
//	func (m *Maildir) Deliver(folder string, r io.Reader, opt DeliverOptions) (key string, err error)
//	func (m *Maildir) SetQuota(q Quota) error            // maildirmake -q: rewrites maildirsize's first line
//	func (m *Maildir) Quota() (limit Quota, used Quota, err error) // from maildirsize, recalculated per Courier's rules
//	func (m *Maildir) Subscriptions() ([]string, error)  // IMAP LSUB list, kept in courierimapsubscribed (one name per line), Courier-compatible
//	func (m *Maildir) Subscribe(name string, on bool) error // atomic rewrite of courierimapsubscribed
//
//	func (f *Folder) Name() string                       // "INBOX" or the Maildir++ name
//	func (f *Folder) Path() string                       // directory on disk
//	func (f *Folder) Deliver(r io.Reader, opt DeliverOptions) (key string, err error) // tmp/, fsync, link, fsync dir; quota checked unless IgnoreQuota
//	func (f *Folder) Sync(moveNew bool) (*Snapshot, error) // scan new/ and cur/, optionally move new/ to cur/ (IMAP, POP3 do), assign UIDs to unseen keys under an flock, persist courierimapuiddb atomically
//	func (f *Folder) Open(key string) (*os.File, error) // finds the file even if another process renamed it; ErrNoMessage if gone
//	func (f *Folder) SetFlags(key, flags string, keywords []string) error // rename within cur/ to the new ":2," info; keywords persisted
//	func (f *Folder) Remove(key string) error            // delete the file; maildirsize gets a negative line
//	func (f *Folder) CopyTo(dst *Folder, key string) (newKey string, err error) // hard link when possible, else copy; quota honoured
var _ io.Reader
