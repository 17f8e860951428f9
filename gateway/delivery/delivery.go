// Package delivery holds the few types that the queue, local delivery and
// outbound (remote) delivery share, so that the queue never needs to know
// which kind of delivery it is driving (the shape of chasquid's "courier"):
// one interface, one method, a result per recipient.
//
// CONTRACT FILE: gateway/queue, gateway/outbound, the local delivery agent and
// the SMTP sessions code against these types. Add fields; do not change or
// remove them without telling every user.
package delivery

import (
	"context"
	"io"
	"time"
)

// Notify is an RFC 3461 NOTIFY value set.
type Notify uint8

// Success reports whether a sender from asked to be told of delivery
// (NOTIFY=SUCCESS) and can be (not the null sender, whose mail is never
// reported on).
func (n Notify) Success(from string) bool {
	return from != "" && n&NotifyNever == 0 && n&NotifySuccess != 0
}

const (
	NotifyDefault Notify = 0 // no NOTIFY given: FAILURE (and DELAY at the MTA's discretion)
	NotifyNever   Notify = 1 << iota
	NotifySuccess
	NotifyFailure
	NotifyDelay
)

// Recipient is one envelope recipient and what we know of its delivery.
type Recipient struct {
	Addr   string // the RCPT TO address as given (after alias expansion: the final address)
	ORcpt  string // RFC 3461 ORCPT, "rfc822;addr" form, or "" (the original address before aliasing goes here too)
	Notify Notify
	Local  bool   // true: delivered by the local agent; false: remote (outbound)
	Folder string // for local delivery: the Maildir++ folder ("" = INBOX; "Junk" for quarantined mail)
	// Pipe, for a local recipient, is an alias's program ("|command") or
	// file ("/path", "/path/" for a Maildir) that Addr expanded to.
	Pipe string `json:",omitempty"`

	// Queue state (kept in the spool).
	Status        Status
	Attempts      int
	LastAttempt   time.Time
	NextAttempt   time.Time
	LastResult    string // the last diagnostic, e.g. "smtp; 451 4.2.0 try later" or "x-local; mailbox full"
	RemoteMTA     string // "dns; mx.example.org" for DSNs
	DelayNotified bool   // a delay DSN was sent for this recipient

	// DeliveryKey is set by the queue on the recipients it passes to a
	// Deliverer: env.ID + "." + the recipient's index in env.Rcpts. It is
	// stable across retries and restarts, so a Deliverer can make a
	// re-delivery after a crash idempotent (e.g. skip a key it already
	// delivered). Not kept in the spool.
	DeliveryKey string `json:"-"`
}

// Status of one recipient.
type Status uint8

const (
	StatusPending   Status = iota // not yet delivered; retry at NextAttempt
	StatusDelivered               // done
	StatusFailed                  // permanent failure (bounced, or nothing to bounce to)
)

// Envelope is a message's SMTP envelope and trace facts.
type Envelope struct {
	ID         string // queue id, unique, safe as a file name
	From       string // reverse path; "" is the null sender (bounces: never bounced)
	Rcpts      []Recipient
	Received   time.Time // when we accepted it
	EnvID      string    // RFC 3461 ENVID ("" if none)
	Ret        string    // RFC 3461 RET: "FULL", "HDRS" or ""
	SMTPUTF8   bool      // RFC 6531: the message or addresses need SMTPUTF8
	Body8Bit   bool      // BODY=8BITMIME
	RequireTLS bool      // RFC 8689 REQUIRETLS
	AuthUser   string    // the authenticated submitter, if any
	ClientIP   string    // the SMTP client's address
	ClientHELO string
	// Quarantine is why a filter quarantined the message and asked for it
	// to be held (a milter's quarantine): the queue keeps it on hold, as
	// Postfix's HOLD does, until an administrator releases it (postern
	// queue release) or deletes it. "" for every other message.
	Quarantine string `json:",omitempty"`
}

// Message is the stored message: the exact bytes as accepted (CRLF line
// endings, the Received line we added on top), readable at any offset.
type Message interface {
	io.ReaderAt
	Size() int64
}

// Result is the outcome for one recipient.
type Result struct {
	Err        error  // nil: delivered
	Permanent  bool   // with Err: do not retry; bounce
	Diagnostic string // for DSNs: "smtp; 550 5.1.1 no such user" or "x-local; ..." (RFC 3464 Diagnostic-Code)
	Status     string // RFC 3463 enhanced status, e.g. "5.1.1", "4.4.1"
	RemoteMTA  string // "dns; mx1.example.org" when a remote server answered
	// Relayed, on success: the next hop took the message without offering
	// DSN, so no notice of final delivery will come from it; a sender who
	// asked for one (NOTIFY=SUCCESS) is told "relayed" (RFC 3461 6.2.2).
	Relayed bool
}

// Deliverer delivers one message to some recipients. For remote delivery
// the queue passes recipients of one destination domain together, so one
// SMTP transaction carries them. It returns one Result per recipient, in
// order. It must honour ctx (deadline, shutdown) and never panic on a bad
// address.
type Deliverer interface {
	Deliver(ctx context.Context, env *Envelope, rcpts []Recipient, msg Message) []Result
}

// DelivererFunc adapts a function to Deliverer.
type DelivererFunc func(ctx context.Context, env *Envelope, rcpts []Recipient, msg Message) []Result

// Deliver implements Deliverer.
func (f DelivererFunc) Deliver(ctx context.Context, env *Envelope, rcpts []Recipient, msg Message) []Result {
	return f(ctx, env, rcpts, msg)
}
