package sieve

import (
	"fmt"
	"strings"
	"time"
)

// Action is one thing the script asks the delivery agent to do. The
// concrete types are Keep, FileInto, Redirect, Reject, Discard, Vacation
// and Notify; Result.Actions lists them in the order the script ran them.
type Action interface {
	fmt.Stringer
	action()
}

// Keep files the message into the user's main mailbox (INBOX). An implicit
// keep (RFC 5228 2.10.2) is a Keep with Implicit set. Flags are IMAP flags
// and keywords to set (RFC 5232); nil means none.
type Keep struct {
	Flags    []string
	Implicit bool
}

// FileInto files the message into Mailbox, named as the script wrote it
// (UTF-8; "INBOX.Sub" or "Sub/Sub"): the caller maps it onto its folders.
// Copy is :copy (RFC 3894, it did not cancel the implicit keep); Create is
// :create (RFC 5490: create the mailbox when missing).
//
// MailboxID (:mailboxid, RFC 9042) and SpecialUse (:specialuse, RFC 8579)
// name the mailbox another way: the caller files into the mailbox with
// that object id if one exists, else into the mailbox carrying that
// special-use attribute ("\\Junk") if one does, else into Mailbox; with
// Create, a mailbox it makes gets the special-use attribute.
type FileInto struct {
	Mailbox    string
	Flags      []string
	Copy       bool
	Create     bool
	SpecialUse string
	MailboxID  string
}

// Redirect forwards the message unchanged to Address (RFC 5228 4.2). The
// caller must keep the original envelope sender semantics (or SRS).
type Redirect struct {
	Address string
	Copy    bool
}

// Reject refuses the message with Reason (RFC 5429): in an SMTP/LMTP
// session as the 5xx text when Extended (ereject) or when possible, else
// as an MDN/DSN to the envelope sender.
type Reject struct {
	Reason   string
	Extended bool
}

// Discard records that the script discarded the message silently: it only
// cancelled the implicit keep; there is nothing to do.
type Discard struct{}

// Vacation is an auto-reply that RFC 5230's rules allow sending now: the
// decision (no reply to a null sender, lists, bulk or auto-submitted mail,
// mail not addressed to the user, or within the period) is already made.
// Reply builds the message to send to To with a null envelope sender.
type Vacation struct {
	To         string        // the envelope sender of the original message
	From       string        // the reply's From: :from, else the user's address
	Subject    string        // :subject, else "Auto: " and the original subject
	Body       string        // the reason; a whole MIME entity when MIME
	MIME       bool          // :mime
	Handle     string        // :handle, or one derived from the arguments
	Days       time.Duration // the period: no second reply to To before it ends
	InReplyTo  string        // the original Message-ID, for In-Reply-To
	References string        // the original References, for References
}

func (Keep) action()     {}
func (FileInto) action() {}
func (Redirect) action() {}
func (Reject) action()   {}
func (Discard) action()  {}
func (Vacation) action() {}

func flagSuffix(flags []string) string {
	if len(flags) == 0 {
		return ""
	}
	return " flags=" + strings.Join(flags, ",")
}

func (a Keep) String() string {
	s := "keep"
	if a.Implicit {
		s = "implicit keep"
	}
	return s + flagSuffix(a.Flags)
}

func (a FileInto) String() string {
	s := "fileinto " + a.Mailbox
	if a.Copy {
		s += " copy"
	}
	if a.Create {
		s += " create"
	}
	if a.SpecialUse != "" {
		s += " specialuse=" + a.SpecialUse
	}
	if a.MailboxID != "" {
		s += " mailboxid=" + a.MailboxID
	}
	return s + flagSuffix(a.Flags)
}

func (a Redirect) String() string {
	s := "redirect " + a.Address
	if a.Copy {
		s += " copy"
	}
	return s
}

func (a Reject) String() string {
	name := "reject "
	if a.Extended {
		name = "ereject "
	}
	return name + strings.TrimSpace(a.Reason)
}

func (Discard) String() string { return "discard" }

func (a Vacation) String() string {
	return fmt.Sprintf("vacation to=%s subject=%q", a.To, a.Subject)
}
