package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/mail"
	"os"
	"strings"
	"time"

	"postern/filters/dkim"
	"postern/gateway/delivery"
	"postern/gateway/smtpd"
)

// Submission is a message handed in by a local user without SMTP: the
// sendmail command, directly or through the server's submission socket.
// Login is who submits, as the system knows them (never taken from the
// message); From is sendmail's -f: "" for the default (Login at this
// host), "<>" for the null sender.
type Submission struct {
	Login    string
	UID      int // -1 when not known
	From     string
	FullName string // sendmail -F, for a From header added when missing
	Rcpts    []string
	Notify   string // DSN NOTIFY list (sendmail -N), "" for the default
	Ret      string // DSN RET (sendmail -R)
	EnvID    string // DSN ENVID (sendmail -V)
	Msg      []byte // the message, CRLF line ends
	// Via names the way the message came in, for its Received field:
	// "sendmail" (the default, ""), "webmail", "smap", ...
	Via string
}

// Submitter accepts Submissions with the same policy as the SMTP sessions:
// recipients go through the Router (a local user may send anywhere), local
// ones to the delivery agent and the rest to the queue.
type Submitter struct {
	Router *Router
	Local  *LocalDelivery
	Queue  Queue
	Me     string // this host, for the Received line and default addresses
	Log    *slog.Logger
	// Signer signs the message with its author's domain's DKIM key (the
	// domain ours, or with a key), as mail from authenticated users is;
	// nil: not signed.
	Signer *dkim.Signer
}

// Submit accepts s, or refuses it with the SMTP-style Refusal of the first
// recipient the Router refuses (the whole message is refused then, as
// sendmail's exit status can only say one thing), or fails with err when
// it could not be stored.
func (sb *Submitter) Submit(ctx context.Context, s Submission) (id string, ref *Refusal, err error) {
	if len(s.Rcpts) == 0 {
		return "", &Refusal{Code: 554, Enhanced: "5.5.1", Text: "no recipients", Reason: "no_rcpt"}, nil
	}
	if ref := loopRefusal(s.Msg, sb.Router.Config().HopLimit); ref != nil {
		return "", ref, nil
	}
	notify := ParseNotify(strings.Split(s.Notify, ","))
	var targets []Target
	var seen recipientSet
	cfg := sb.Router.Config()
	for _, r := range s.Rcpts {
		// cron mails "root": sendmail's bare names are local users of the
		// default domain, as every MTA's sendmail takes them.
		r = qualify(strings.TrimSpace(r), cfg)
		ts, ref := sb.Router.Resolve(ctx, r, true)
		if ref != nil {
			ref.Text = r + ": " + ref.Text
			return "", ref, nil
		}
		for i := range ts {
			ts[i].Recipient.Notify = notify
			ts[i].Rcpt = r // for the bcc setting's recipient lines
		}
		targets = seen.add(targets, ts)
	}
	from := s.From
	switch from {
	case "":
		from = s.Login + "@" + DefaultDomain(cfg)
	case "<>":
		from = ""
	default:
		from = qualify(from, cfg)
	}
	msg := AddSubmissionHeaders(s.Msg, from, s.FullName, sb.Me, s.Login)
	env := delivery.Envelope{From: from, Received: time.Now(), EnvID: s.EnvID, Ret: s.Ret, AuthUser: s.Login, ClientIP: "127.0.0.1", ClientHELO: "localhost"}
	who := s.Login
	if s.UID >= 0 {
		who = fmt.Sprintf("%s uid %d", s.Login, s.UID)
	}
	via := s.Via
	if via == "" {
		via = "sendmail"
	}
	received := fmt.Sprintf("Received: (from %s via postern %s)\r\n\tby %s (Postern);\r\n\t%s\r\n", who, via, sb.Me, time.Now().Format(time.RFC1123Z))
	full := append([]byte(received), SignOutgoing(ctx, cfg, sb.Signer, msg, sb.Log)...)
	if cfg.BCC != nil {
		archives, ref := archiveTargets(ctx, sb.Router, cfg.BCC, from, rcptAddresses(targets), sb.Log)
		if ref != nil {
			return "", nil, fmt.Errorf("bcc: archive address: %w", ref)
		}
		targets = seen.add(targets, archives)
	}
	id, err = Accept(ctx, sb.Local, sb.Queue, env, targets, append(full, msg...), cfg.ForwardSender(env.From), sb.Log)
	var rep *smtpd.Reply
	if errors.As(err, &rep) {
		// A permanent local failure of the one recipient (a full
		// mailbox): refused, as over SMTP, rather than "try again".
		return "", &Refusal{Code: rep.Code, Enhanced: rep.Enhanced, Text: rep.Text, Reason: "delivery_refused"}, nil
	}
	return id, nil, err
}

// AddSubmissionHeaders adds From, Date and Message-ID when a script left
// them out, as sendmail does.
func AddSubmissionHeaders(msg []byte, from, fullName, host, login string) []byte {
	end := bytes.Index(msg, []byte("\r\n\r\n"))
	if end < 0 {
		end = len(msg)
	}
	lower := "\r\n" + strings.ToLower(string(msg[:end]))
	var add strings.Builder
	if !strings.Contains(lower, "\r\nfrom:") {
		addr := from
		if addr == "" {
			addr = login + "@" + host
		}
		if fullName != "" {
			fmt.Fprintf(&add, "From: %s\r\n", (&mail.Address{Name: fullName, Address: addr}).String())
		} else {
			fmt.Fprintf(&add, "From: %s\r\n", addr)
		}
	}
	if !strings.Contains(lower, "\r\ndate:") {
		fmt.Fprintf(&add, "Date: %s\r\n", time.Now().Format(time.RFC1123Z))
	}
	if !strings.Contains(lower, "\r\nmessage-id:") {
		fmt.Fprintf(&add, "Message-ID: <%d.%d@%s>\r\n", time.Now().UnixNano(), os.Getpid(), host)
	}
	if add.Len() == 0 {
		return msg
	}
	return append([]byte(add.String()), msg...)
}
