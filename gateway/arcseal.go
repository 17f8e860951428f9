package gateway

import (
	"context"
	"strings"

	"postern/filters/arc"
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
