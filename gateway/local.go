package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"postern/gateway/delivery"
	"postern/mailbox/deliver"
	"postern/mailbox/maildir"
)

// LocalDelivery delivers to local accounts' Maildirs. It implements
// delivery.Deliverer for the queue, and the SMTP session calls it directly
// so that mail for local users is written once, straight into the Maildir
// (fsync'd before the 250), without a detour through the queue.
type LocalDelivery struct {
	Router *Router
	// Agent, when set, is the maildrop-compatible delivery agent: .courier
	// instructions, the system maildroprc and ~/.mailfilter. Without it,
	// mail goes straight into the INBOX.
	Agent *deliver.Agent
	// Self is the command (argv) that runs this binary's subcommands, for
	// aliases to files ("postern deliverfile"); default os.Executable().
	Self []string
	// Journal, when set, makes Maildir deliveries durable with one write
	// to the delivery journal (the Agent has its own reference).
	Journal *maildir.Journal
}

// Deliver implements delivery.Deliverer: each recipient's account is
// looked up at delivery.
func (l *LocalDelivery) Deliver(ctx context.Context, env *delivery.Envelope, rcpts []delivery.Recipient, msg delivery.Message) []delivery.Result {
	targets := make([]Target, len(rcpts))
	for i, rc := range rcpts {
		targets[i].Recipient = rc
	}
	return l.deliverTargets(ctx, env, targets, msg, nil)
}

// deliverTargets delivers to recipients the SMTP session resolved at RCPT:
// their accounts are not looked up a second time. later, when set, may
// take the journaled deliveries' file writes (see accept).
func (l *LocalDelivery) deliverTargets(ctx context.Context, env *delivery.Envelope, targets []Target, msg delivery.Message, later *maildir.Deferred) []delivery.Result {
	out := make([]delivery.Result, len(targets))
	for i, t := range targets {
		out[i] = l.deliverOne(ctx, env, t, msg, later)
	}
	return out
}

// deliverOne delivers to one recipient; t.Account, when set, is its
// account (else it is looked up).
func (l *LocalDelivery) deliverOne(ctx context.Context, env *delivery.Envelope, t Target, msg delivery.Message, later *maildir.Deferred) delivery.Result {
	rc := t.Recipient
	if rc.Pipe != "" {
		return l.deliverPipe(ctx, env, rc, msg)
	}
	addr, folder := rc.Addr, rc.Folder
	acct, ext := t.Account, t.Extension
	if acct == nil {
		local, domain, err := splitAddress(addr)
		if err != nil {
			return delivery.Result{Err: err, Permanent: true, Status: "5.1.3", Diagnostic: "x-postern; bad address"}
		}
		var ref *Refusal
		acct, ext, ref = l.Router.lookupAccountExt(ctx, local, l.Router.Config().CanonicalDomain(strings.ToLower(domain)))
		if ref != nil {
			return delivery.Result{Err: ref, Status: "4.3.0", Diagnostic: "x-postern; account lookup failed, will retry"}
		}
		if acct == nil {
			return delivery.Result{Err: errors.New("no such user"), Permanent: true, Status: "5.1.1", Diagnostic: "x-postern; no such user here"}
		}
	}
	if folder == "" {
		folder = maildir.Inbox
	}
	marker := deliveredMarker(acct.MaildirPath(), rc.DeliveryKey)
	if marker != "" {
		if _, err := os.Stat(marker); err == nil {
			// A previous attempt delivered this copy and the queue did
			// not get to record it (a crash in between): do not deliver
			// it twice.
			return delivery.Result{Status: "2.0.0", Diagnostic: "x-postern; already delivered"}
		}
	}
	if l.Agent != nil && folder == maildir.Inbox {
		// The agent opens (or creates) the Maildir, applies the quota and
		// adds Return-Path and Delivered-To itself.
		out := l.Agent.Deliver(ctx, deliver.Request{
			Account: acct, Extension: ext, Sender: env.From, Recipient: addr, AddTrace: true, Defer: later,
			Message: io.NewSectionReader(msg, 0, msg.Size()), // the agent drops the CRs itself
		})
		res := agentResult(out)
		if res.Err == nil {
			markDelivered(marker)
		}
		return res
	}
	md, err := openAccountMaildir(acct)
	if err != nil {
		return delivery.Result{Err: err, Status: "4.3.0", Diagnostic: "x-postern; mailbox unavailable, will retry"}
	}
	if folder != maildir.Inbox {
		if err := ensureFolder(md, folder); err != nil {
			return delivery.Result{Err: err, Status: "4.3.0", Diagnostic: "x-postern; cannot create folder " + folder}
		}
	}
	r := io.MultiReader(bytes.NewReader(traceForLocal(env.From, addr)), maildir.LFReader(io.NewSectionReader(msg, 0, msg.Size())))
	if _, err := md.Deliver(folder, r, maildir.DeliverOptions{Journal: l.Journal, Defer: later}); err != nil {
		if errors.Is(err, maildir.ErrOverQuota) {
			// Courier's deliverquota makes this permanent (exit 77).
			return delivery.Result{Err: err, Permanent: true, Status: "5.2.2", Diagnostic: "x-postern; mailbox full"}
		}
		return delivery.Result{Err: fmt.Errorf("deliver to %s: %w", acct.Name, err), Status: "4.3.0", Diagnostic: "x-postern; local delivery failed, will retry"}
	}
	markDelivered(marker)
	return delivery.Result{Status: "2.0.0"}
}

// markDelivered records a queued delivery as done. Best effort: without the
// marker a crash right now could repeat the delivery, which is what
// happened before markers existed.
func markDelivered(marker string) {
	if marker == "" {
		return
	}
	if f, err := os.OpenFile(marker, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o600); err == nil {
		f.Sync()
		f.Close()
	}
}

// agentResult maps the delivery agent's outcome (Courier's exit codes) to
// the queue's result.
func agentResult(o deliver.Outcome) delivery.Result {
	switch o.Status {
	case deliver.StatusOK:
		return delivery.Result{Status: "2.0.0"}
	case deliver.StatusPermanent:
		status := "5.2.0"
		if o.Enhanced != "" {
			status = o.Enhanced
		} else if o.ExitCode == 77 {
			status = "5.2.2" // over quota (deliverquota's 77)
		} else if o.ExitCode == 67 {
			status = "5.1.1"
		}
		return delivery.Result{Err: errors.New(o.Reason), Permanent: true, Status: status, Diagnostic: "x-postern; " + diagText(o)}
	}
	return delivery.Result{Err: errors.New(o.Reason), Status: "4.2.0", Diagnostic: "x-postern; " + diagText(o)}
}

func diagText(o deliver.Outcome) string {
	if o.ExitCode == 77 && o.Enhanced == "" {
		return "mailbox full"
	}
	if o.Reason != "" {
		return o.Reason
	}
	return fmt.Sprintf("delivery agent exit %d", o.ExitCode)
}

// deliveredMarker names the file that records a queued delivery as done:
// in the Maildir's tmp/, which readers ignore and which is cleaned of old
// files (Courier removes tmp/ files after 36 hours; Postern's POP3 login
// after 48), long after any queue retry could happen. Deliveries made
// directly during the SMTP session have no key and need no marker.
func deliveredMarker(maildirRoot, key string) string {
	if key == "" || strings.ContainsAny(key, "/\x00") {
		return ""
	}
	return filepath.Join(maildirRoot, "tmp", ".postern-delivered-"+key)
}

// traceForLocal returns the header lines final delivery adds: Return-Path
// (RFC 5321 4.4) and Delivered-To, which lets loops be detected.
func traceForLocal(from, rcpt string) []byte {
	return []byte("Return-Path: <" + from + ">\nDelivered-To: " + rcpt + "\n")
}

// bytesMessage is a delivery.Message over a byte slice.
type bytesMessage struct{ *bytes.Reader }

func (b bytesMessage) Size() int64 { return b.Reader.Size() }

func newBytesMessage(p []byte) bytesMessage { return bytesMessage{bytes.NewReader(p)} }

// ensureFolder creates a Maildir++ folder (e.g. Junk for quarantine) the
// first time mail is filed into it.
func ensureFolder(md *maildir.Maildir, name string) error {
	if _, err := md.Folder(name); err == nil {
		return nil
	}
	if err := md.CreateFolder(name); err != nil && !errors.Is(err, maildir.ErrFolderExists) {
		return err
	}
	return nil
}
