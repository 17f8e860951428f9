package outbound

import (
	"context"
	"net/netip"

	"postern/gateway/delivery"
)

// PlanHost is one host the client would try, in order.
type PlanHost struct {
	Name     string       // the MX host or relay (an address for a literal relay)
	Addrs    []netip.Addr // its addresses, in the order they would be tried
	Port     int
	Security Security // what the connection would require
	DANE     string   // the TLSA records' requirement: "opportunistic", "encrypt-only" or "authenticate"
	TLSA     int      // usable TLSA records
	TLSABase string   // the name whose TLSA records count (RFC 7672 2.2.2), when DANE applies
	STS      string   // the domain's MTA-STS policy mode this host was kept under ("" none)
	LMTP     bool
}

// Plan is how mail for a domain would leave now, found with the lookups a
// delivery makes and without connecting anywhere (postern check route,
// Courier's testmxlookup).
type Plan struct {
	Domain  string
	Route   Route // the routes or senderroutes rule that applies (Matched), or the default: MX
	Matched bool
	// Source says which table chose Route; Sender is the envelope sender
	// asked about when HasSender ("" is the null sender).
	Source    RouteSource
	Sender    string
	HasSender bool
	Hosts     []PlanHost
	// Err: mail for the domain cannot leave now; Permanent says it would
	// bounce (no such domain, null MX, a loop) rather than wait; Status is
	// the enhanced status code a delivery would report.
	Err       error
	Permanent bool
	Status    string
}

// Plan resolves domain as a delivery to it would: the routes rule, the MX
// or relay hosts and their addresses, DANE and MTA-STS.
// Sender rules are not consulted: see PlanFrom.
func (c *Client) Plan(ctx context.Context, domain string) Plan {
	route, matched := c.opts.Routes.Lookup(domain)
	source := SourceMX
	if matched {
		source = SourceRecipient
		if route.Pattern == "" {
			source = SourceRecipientDefault
		}
	}
	return c.plan(ctx, Plan{Domain: domain, Route: route, Matched: matched, Source: source})
}

// PlanFrom is Plan for mail from the envelope sender ("" the null
// sender): the senderroutes rules take part as in a delivery.
func (c *Client) PlanFrom(ctx context.Context, sender, domain string) Plan {
	route, source := c.route(sender, domain)
	return c.plan(ctx, Plan{Domain: domain, Route: route, Matched: source != SourceMX, Source: source, Sender: sender, HasSender: true})
}

func (c *Client) plan(ctx context.Context, p Plan) Plan {
	domain, route := p.Domain, p.Route
	hosts, f := c.resolve(ctx, domain, route)
	if f == nil {
		hosts, f = c.applyMTASTS(ctx, domain, route, hosts, c.log)
	}
	if f != nil {
		p.Err, p.Permanent, p.Status = f.err, !f.temporary, f.status
		return p
	}
	env := &delivery.Envelope{}
	for _, h := range hosts {
		sec := c.hostSecurity(route, env, h)
		ph := PlanHost{Name: h.name, Addrs: h.addrs, Port: c.port(route, sec), Security: sec,
			DANE: h.dane.String(), TLSA: len(h.tlsa), LMTP: route.LMTP}
		if len(h.tlsa) > 0 || h.tlsaBase != "" {
			ph.TLSABase = h.tlsaBase
		}
		if h.stsPolicy != nil {
			ph.STS = string(h.stsPolicy.Mode)
		}
		p.Hosts = append(p.Hosts, ph)
	}
	return p
}
