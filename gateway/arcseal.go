package gateway

import (
	"context"
	"strings"

	"postern/filters/arc"
	"postern/filters/authres"
	"postern/gateway/smtpd"
)

// forwarding is how the copies our aliases send on to other hosts
// (Target.Forwarded) leave: with which envelope sender, and sealed or not.
type forwarding struct {
	// Sender is their envelope sender (policy.Config.ForwardSender: SRS).
	Sender string
	// Seal, when set, returns the message with an ARC set on top (RFC 8617
	// section 5.1), or the message as it was when it cannot seal.
	Seal func(ctx context.Context, msg []byte) []byte
}

// arcSealer returns the sealing of the forwarded copies of the message
// being accepted, or nil when they are not to be sealed: sealing is off,
// the client's mail was not checked (our own users' and relay clients'
// mail is DKIM-signed instead), the arc check did not run or could not
// finish (what cv= to write is then unknown), nothing is forwarded, or
// there is no DKIM key for the domain of the address that forwards.
//
// The set vouches for the message as we received it: the AAR copies our
// Authentication-Results, the AMS signs it with our Received and
// Authentication-Results on top, and the seal says whether the chain it
// came with verified.
func (s *session) arcSealer(c *smtpd.ConnInfo, targets []Target) func(context.Context, []byte) []byte {
	if s.fl == nil || !s.fl.SealForwards || s.fl.Signer == nil || s.fs == nil || !s.checked(c) {
		return nil
	}
	status, _, found := arc.FromResults(s.fs.Results)
	if !found || status == arc.TempError {
		return nil
	}
	domain := ""
	for _, t := range targets {
		if t.Forwarded {
			if at := strings.LastIndexByte(t.Rcpt, '@'); at >= 0 {
				domain = t.Rcpt[at+1:]
			}
			break
		}
	}
	if domain == "" {
		return nil
	}
	key, ok := s.fl.Signer.KeyFor(domain)
	if !ok {
		s.log.Debug("arc: forwarded copy not sealed: no DKIM key", "domain", domain)
		return nil
	}
	var parts []string
	for _, r := range s.fs.Results {
		parts = append(parts, r.AuthResults...)
	}
	authservID := s.fl.AuthservID
	log := s.log
	return func(ctx context.Context, msg []byte) []byte {
		sealed, err := arc.SealMessage(ctx, msg, arc.SealOptions{
			Key: key, AuthservID: authservID, AuthResults: parts, Chain: arc.Verification{Status: status},
		})
		if err != nil {
			log.Info("arc: forwarded copy not sealed", "domain", key.Domain, "err", err)
			return msg
		}
		return sealed
	}
}

// SealForward returns msg with an ARC set on top for a copy the delivery
// agent sends on: a .courier or .forward line, maildrop's to "!address", a
// Sieve redirect, by forwarder, the local address whose instructions
// forward it. The copy is sealed as an alias's would be (arcSealer), from
// what the stored message says of our checks: our own
// Authentication-Results field (the gateway strips forged ones), its arc
// result for cv= and its parts for the AAR; the key is forwarder's
// domain's DKIM key. When it does not seal, msg comes back with the
// reason: sealing is off, the gateway did not check the message (our own
// users' mail, mail injected with sendmail), the arc check did not run or
// could not finish, or there is no key.
func (fl *Filters) SealForward(ctx context.Context, msg []byte, forwarder string) ([]byte, string) {
	if fl == nil || !fl.SealForwards {
		return msg, "sealing is off"
	}
	if fl.Signer == nil {
		return msg, "no DKIM keys"
	}
	parts, ok := authres.Ours(msg, fl.AuthservID)
	if !ok {
		return msg, "not checked on arrival (no Authentication-Results of ours)"
	}
	status, found := arc.StatusFromAuthResults(parts)
	switch {
	case !found:
		return msg, "the arc check did not run"
	case status == arc.TempError:
		return msg, "the arc check could not finish"
	}
	domain := forwarder[strings.LastIndexByte(forwarder, '@')+1:]
	key, ok := fl.Signer.KeyFor(domain)
	if !ok {
		return msg, "no DKIM key for " + domain
	}
	sealed, err := arc.SealMessage(ctx, msg, arc.SealOptions{
		Key: key, AuthservID: fl.AuthservID, AuthResults: parts, Chain: arc.Verification{Status: status},
	})
	if err != nil {
		return msg, err.Error()
	}
	return sealed, ""
}
