package outbound

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/emersion/go-smtp"

	"postern/gateway/delivery"
)

// Verdict is what a recipient probe found out.
type Verdict int

const (
	// VerifyUnknown: no host gave an answer about the address (none
	// reachable, a temporary reply, the null sender refused).
	VerifyUnknown Verdict = iota
	// VerifyDeliverable: the next hop answered RCPT TO with 2xx.
	VerifyDeliverable
	// VerifyUndeliverable: the next hop answered RCPT TO with 5xx.
	VerifyUndeliverable
)

func (v Verdict) String() string {
	switch v {
	case VerifyDeliverable:
		return "deliverable"
	case VerifyUndeliverable:
		return "undeliverable"
	}
	return "unknown"
}

// VerifyResult is a probe's outcome: the verdict, and the host's reply or
// why there was none.
type VerifyResult struct {
	Verdict Verdict
	Text    string
}

// Verify asks the server that mail for addr would go to (its route, or its
// MX hosts, with the same TLS policy as a delivery) whether it takes addr,
// without sending a message: MAIL FROM:<>, RCPT TO:<addr>, then RSET and
// QUIT. It is Postfix's address verification (reject_unverified_recipient)
// for the domains this server relays for, so that mail for their unknown
// users is refused during the session instead of bounced later. Hosts are
// tried in order until one answers the RCPT.
func (c *Client) Verify(ctx context.Context, addr string) VerifyResult {
	domain, err := recipientDomain(addr)
	if err != nil {
		return VerifyResult{VerifyUndeliverable, "bad address: " + err.Error()}
	}
	route, _ := c.opts.Routes.Lookup(domain)
	hosts, f := c.resolve(ctx, domain, route)
	if f == nil {
		hosts, f = c.applyMTASTS(ctx, domain, route, hosts, c.log)
	}
	if f != nil {
		if !f.temporary {
			return VerifyResult{VerifyUndeliverable, oneLine(f.err.Error())}
		}
		return VerifyResult{VerifyUnknown, oneLine(f.err.Error())}
	}
	env := &delivery.Envelope{}
	last := "no host to ask"
	tried := 0
	for _, h := range hosts {
		for n, a := range h.addrs {
			if n >= c.opts.MaxAddressesPerHost || tried >= c.opts.MaxAddresses {
				break
			}
			tried++
			res, done := c.probe(ctx, env, route, h, a, addr)
			if done {
				return res
			}
			last = res.Text
		}
	}
	return VerifyResult{VerifyUnknown, last}
}

// probe asks one address of h. done is false when another host may answer.
func (c *Client) probe(ctx context.Context, env *delivery.Envelope, route Route, h host, addr netip.Addr, rcpt string) (VerifyResult, bool) {
	sec := c.hostSecurity(route, env, h)
	s, f := c.connect(ctx, c.sessionKey(route, h, addr, sec, false), route, h, env)
	if f != nil {
		return VerifyResult{VerifyUnknown, fmt.Sprintf("%s: %s", h.name, oneLine(f.err.Error()))}, !f.nextHost
	}
	defer s.quit()
	to, needUTF8 := downgradeAddress(rcpt)
	if needUTF8 {
		if ok, _ := s.sc.Extension("SMTPUTF8"); !ok {
			return VerifyResult{VerifyUnknown, h.name + " does not offer SMTPUTF8"}, false
		}
		to = rcpt
	}
	if err := s.sc.Mail("", &smtp.MailOptions{UTF8: needUTF8}); err != nil {
		// A host that refuses the null sender cannot be asked; every
		// host of the destination would likely say the same.
		return VerifyResult{VerifyUnknown, fmt.Sprintf("%s refused MAIL FROM:<>: %s", h.name, oneLine(err.Error()))}, true
	}
	err := s.sc.Rcpt(to, nil)
	s.sc.Reset()
	var se *smtp.SMTPError
	switch {
	case err == nil:
		return VerifyResult{VerifyDeliverable, h.name + " accepted the address"}, true
	case errors.As(err, &se) && se.Code >= 500:
		return VerifyResult{VerifyUndeliverable, fmt.Sprintf("%s said: %d %s", h.name, se.Code, oneLine(se.Message))}, true
	case errors.As(err, &se):
		return VerifyResult{VerifyUnknown, fmt.Sprintf("%s said: %d %s", h.name, se.Code, oneLine(se.Message))}, true
	}
	return VerifyResult{VerifyUnknown, fmt.Sprintf("%s: %s", h.name, oneLine(err.Error()))}, false
}
