package gateway

import (
	"context"
	"log/slog"

	"postern/gateway/delivery"
	"postern/policy"
)

// archiveTargets resolves the archive addresses the "bcc" setting names
// for a message from from to rcpts (policy.BCC) into extra destinations,
// marked Archive and with NOTIFY=NEVER (RFC 3461 4.1), as Postfix adds
// its always_bcc and *_bcc_maps addresses since 2.3: the sender never
// hears of an archive copy, delivered or not.
//
// An archive address the router refuses for good (an unknown local user,
// a bad address) is logged and left out: the message is not refused for
// the archive's sake, as Postfix's undeliverable BCC is only logged. A
// temporary refusal (the account database is unreachable) is returned, so
// the caller asks the client to try again rather than accept a message
// without its archive copy.
func archiveTargets(ctx context.Context, router *Router, bcc *policy.BCC, from string, rcpts []string, log *slog.Logger) ([]Target, *Refusal) {
	var out []Target
	for _, a := range bcc.Archives(from, rcpts) {
		ts, ref := router.Resolve(ctx, a, true)
		if ref != nil {
			if ref.Code < 500 {
				log.Warn("bcc: the archive address cannot be routed now; message deferred", "archive", a, "reason", ref.Reason, "text", ref.Text)
				return nil, ref
			}
			log.Error("bcc: the archive address cannot be routed; no archive copy of this message", "archive", a, "reason", ref.Reason, "text", ref.Text)
			continue
		}
		for i := range ts {
			ts[i].Rcpt = a
			ts[i].Archive = true
			ts[i].Recipient.Notify = delivery.NotifyNever
		}
		out = append(out, ts...)
	}
	return out, nil
}

// rcptAddresses lists the RCPT TO addresses targets came from, each once.
func rcptAddresses(targets []Target) []string {
	var out []string
	for _, t := range targets {
		if len(out) == 0 || out[len(out)-1] != t.Rcpt {
			out = append(out, t.Rcpt)
		}
	}
	return out
}

// splitArchives separates the archive copies (Target.Archive) from the
// real recipients; targets is returned as it is when it holds none.
func splitArchives(targets []Target) (real, archives []Target) {
	n := 0
	for _, t := range targets {
		if t.Archive {
			n++
		}
	}
	if n == 0 {
		return targets, nil
	}
	real = make([]Target, 0, len(targets)-n)
	archives = make([]Target, 0, n)
	for _, t := range targets {
		if t.Archive {
			archives = append(archives, t)
		} else {
			real = append(real, t)
		}
	}
	return real, archives
}
