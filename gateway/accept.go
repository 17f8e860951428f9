package gateway

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"postern/gateway/delivery"
	"postern/gateway/smtpd"
	"postern/mailbox/maildir"
)

// accept makes an accepted message durable for every target before the
// client hears 250:
//
//  1. recipients on other hosts go into the queue (fsync'd there);
//  2. local recipients get the message straight into their Maildir
//     (fsync'd), written once, with no detour through the queue;
//  3. a local delivery that fails temporarily is queued for a retry, so
//     the client is not asked to resend what the other recipients
//     already have.
//
// With later set, local deliveries the delivery journal holds may leave
// writing their Maildir files to later.Run, which the caller runs once the
// client has its reply (see maildir.Deferred).
//
// It returns the queue id (or a local id when nothing was queued). A
// permanent local failure with a single recipient comes back as a Reply (the
// client gets the 5xx, so there is no bounce); with several recipients the
// failure is queued and the queue's DSN tells the sender.
//
// Remote addresses that our aliases forward to (Target.Forwarded) are
// queued on their own with fwd.Sender as envelope sender when it differs
// from env.From (SRS, policy.Config.ForwardSender), and as fwd.Seal
// seals them (ARC) when it is set.
//
// Archive copies (Target.Archive, the "bcc" setting) are stored only once
// the real recipients have the message, so a message refused with a 5xx is
// not archived; their failures are never the client's reply.
func accept(ctx context.Context, local *LocalDelivery, q Queue, env delivery.Envelope, targets []Target, msg []byte, fwd forwarding, later *maildir.Deferred, log *slog.Logger) (string, error) {
	real, archives := splitArchives(targets)
	id, err := acceptTargets(ctx, local, q, env, real, msg, fwd, later, log, len(real) == 1)
	if err != nil || len(archives) == 0 {
		return id, err
	}
	aid, err := acceptTargets(ctx, local, q, env, archives, msg, fwd, later, log, false)
	if err != nil {
		// As for a failed retry queueing below: only when the disk
		// refuses the queue write; the client resends.
		log.Error("could not store the archive copies; the client will resend", "err", err)
		return "", err
	}
	if id == "" {
		return aid, nil
	}
	return id + "," + aid, nil
}

// acceptTargets is accept for one group of targets; refuse says whether a
// permanent local failure is the client's reply (one real recipient).
func acceptTargets(ctx context.Context, local *LocalDelivery, q Queue, env delivery.Envelope, targets []Target, msg []byte, fwd forwarding, later *maildir.Deferred, log *slog.Logger, refuse bool) (string, error) {
	var remote, forwarded []delivery.Recipient
	var localTargets []Target
	for _, t := range targets {
		rc := t.Recipient
		switch {
		case t.Forwarded && (fwd.Sender != env.From || fwd.Seal != nil):
			forwarded = append(forwarded, rc)
		case rc.Local && rc.Pipe == "" && !rc.Notify.Success(env.From):
			localTargets = append(localTargets, t)
		default:
			// Remote recipients, aliases' programs and files (which may
			// take long or ask for a retry), and local ones whose sender
			// asked to hear of their delivery (NOTIFY=SUCCESS: the queue
			// delivers them and sends that DSN) go through the queue.
			remote = append(remote, rc)
		}
	}
	var ids []string
	for _, group := range []struct {
		from  string
		rcpts []delivery.Recipient
		seal  func(context.Context, []byte) []byte
	}{{env.From, remote, nil}, {fwd.Sender, forwarded, fwd.Seal}} {
		if len(group.rcpts) == 0 {
			continue
		}
		e := env
		e.From, e.Rcpts = group.from, group.rcpts
		body := msg
		if group.seal != nil {
			body = group.seal(ctx, msg)
		}
		id, err := q.Enqueue(ctx, e, bytes.NewReader(body))
		if err != nil {
			return "", fmt.Errorf("queue: %w", err)
		}
		ids = append(ids, id)
	}
	if len(localTargets) == 0 {
		return strings.Join(ids, ","), nil
	}
	localID := newLocalID()
	e := env
	e.ID = localID
	results := local.deliverTargets(ctx, &e, localTargets, newBytesMessage(msg), later)
	var retry []delivery.Recipient
	for i, res := range results {
		if res.Err == nil {
			continue
		}
		if res.Permanent && refuse {
			code := 550 // RFC 3463 class 5.1 (address) and others
			if strings.HasPrefix(res.Status, "5.2.") || strings.HasPrefix(res.Status, "5.3.") {
				code = 552 // mailbox or system storage exceeded
			}
			return "", smtpd.NewReply(code, res.Status, "%s", diagnosticText(res))
		}
		rc := localTargets[i].Recipient
		log.Info("local delivery deferred to the queue", "rcpt", rc.Addr, "err", res.Err, "permanent", res.Permanent)
		rc.LastResult = res.Diagnostic
		retry = append(retry, rc)
	}
	if len(retry) > 0 {
		e := env
		e.Rcpts = retry
		id, err := q.Enqueue(ctx, e, bytes.NewReader(msg))
		if err != nil {
			// The other recipients have the message already; a resend by
			// the client would duplicate it for them. Log it loudly: this
			// only happens when the disk refuses the queue write.
			log.Error("could not queue the local deliveries that failed; the client will resend", "err", err)
			return "", fmt.Errorf("queue: %w", err)
		}
		ids = append(ids, id)
	}
	ids = append(ids, localID)
	return strings.Join(ids, ","), nil
}

func diagnosticText(r delivery.Result) string {
	if strings.Contains(r.Diagnostic, "mailbox full") {
		return "Mailbox full"
	}
	if _, text, ok := strings.Cut(r.Diagnostic, "; "); ok {
		return text
	}
	return "Delivery failed"
}

// newLocalID names a message delivered without the queue, for the logs and
// the 250 reply.
func newLocalID() string {
	var b [6]byte
	rand.Read(b[:])
	return fmt.Sprintf("L%x%s", time.Now().Unix(), hex.EncodeToString(b[:]))
}

// addMissingHeaders adds Date and Message-ID to a submitted message that
// lacks them (RFC 6409 8.2, 8.3).
func addMissingHeaders(body *bytes.Buffer, host string, now time.Time) {
	msg := body.Bytes()
	end := bytes.Index(msg, []byte("\r\n\r\n"))
	if end < 0 {
		end = len(msg)
	}
	header := bytes.ToLower(msg[:end])
	var add []byte
	if !bytes.Contains(header, []byte("\ndate:")) {
		add = append(add, "Date: "+now.Format(time.RFC1123Z)+"\r\n"...)
	}
	if !bytes.Contains(header, []byte("\nmessage-id:")) {
		var r [12]byte
		rand.Read(r[:])
		add = append(add, "Message-ID: <"+hex.EncodeToString(r[:])+"@"+host+">\r\n"...)
	}
	if len(add) == 0 {
		return
	}
	// Insert after our Received line(s): at the end of the header block.
	out := make([]byte, 0, len(msg)+len(add))
	out = append(out, msg[:end]...)
	if end < len(msg) {
		out = append(out, "\r\n"...)
		out = append(out, add[:len(add)-2]...)
		out = append(out, msg[end:]...)
	} else {
		out = append(out, "\r\n"...)
		out = append(out, add...)
	}
	body.Reset()
	body.Write(out)
}
