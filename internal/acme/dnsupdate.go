package acme

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// DNSUpdater publishes and withdraws the TXT records of the dns-01
// challenge (RFC 8555 section 8.4): the CA looks up
// _acme-challenge.HOST and expects the value given.
type DNSUpdater interface {
	// Present adds the TXT record name (a fully qualified name) with
	// value and returns once the name's primary server answers with it.
	Present(ctx context.Context, name, value string) error
	// CleanUp removes that record again (other TXT records of the name,
	// another order's, stay).
	CleanUp(ctx context.Context, name, value string) error
}

// TSIG algorithms RFC2136 accepts, by the names BIND's tsig-keygen and
// Knot's keymgr write.
var tsigAlgorithms = map[string]string{
	"hmac-sha1":   dns.HmacSHA1,
	"hmac-sha224": dns.HmacSHA224,
	"hmac-sha256": dns.HmacSHA256,
	"hmac-sha384": dns.HmacSHA384,
	"hmac-sha512": dns.HmacSHA512,
}

// TSIGAlgorithm returns the algorithm's DNS name for a name such as
// "hmac-sha256" (case-insensitive, trailing dot optional), or false.
func TSIGAlgorithm(name string) (string, bool) {
	a, ok := tsigAlgorithms[strings.TrimSuffix(strings.ToLower(name), ".")]
	return a, ok
}

// RFC2136 is a DNSUpdater that sends DNS UPDATE messages (RFC 2136),
// signed with TSIG (RFC 8945), to the primary server of the zone: what
// BIND, Knot, PowerDNS and NSD-with-a-helper take, and what certbot's
// dns-rfc2136 plugin sends.
type RFC2136 struct {
	// Server is the primary's address, host:port (":53" when no port).
	Server string
	// Zone is the zone the records go into; "" finds it by asking Server
	// for the SOA of the record's name and its parents.
	Zone string
	// KeyName, Algorithm (a TSIGAlgorithm name) and Secret (base64) sign
	// the updates; an empty KeyName sends them unsigned (a server that
	// allows updates by address).
	KeyName, Algorithm, Secret string
	// TTL of the records; 0 means 60 seconds.
	TTL uint32
	// Timeout of each exchange with Server; 0 means 10 seconds.
	Timeout time.Duration
	// Propagation is how long Present waits for the record to show on
	// Server before it gives up; 0 means 60 seconds.
	Propagation time.Duration
}

// Present implements DNSUpdater.
func (u *RFC2136) Present(ctx context.Context, name, value string) error {
	rr, zone, err := u.record(ctx, name, value)
	if err != nil {
		return err
	}
	m := new(dns.Msg)
	m.SetUpdate(zone)
	m.Insert([]dns.RR{rr})
	if err := u.send(ctx, m); err != nil {
		return fmt.Errorf("dns update adding %s TXT at %s: %w", name, u.Server, err)
	}
	return u.await(ctx, name, value)
}

// CleanUp implements DNSUpdater.
func (u *RFC2136) CleanUp(ctx context.Context, name, value string) error {
	rr, zone, err := u.record(ctx, name, value)
	if err != nil {
		return err
	}
	m := new(dns.Msg)
	m.SetUpdate(zone)
	m.Remove([]dns.RR{rr}) // this one record (class NONE), RFC 2136 2.5.4
	if err := u.send(ctx, m); err != nil {
		return fmt.Errorf("dns update removing %s TXT at %s: %w", name, u.Server, err)
	}
	return nil
}

func (u *RFC2136) record(ctx context.Context, name, value string) (*dns.TXT, string, error) {
	name = dns.Fqdn(strings.ToLower(name))
	zone := u.Zone
	if zone == "" {
		var err error
		if zone, err = u.findZone(ctx, name); err != nil {
			return nil, "", err
		}
	}
	zone = dns.Fqdn(strings.ToLower(zone))
	if !dns.IsSubDomain(zone, name) {
		return nil, "", fmt.Errorf("%s is not in the zone %s (acmednsupdate's zone)", name, zone)
	}
	ttl := u.TTL
	if ttl == 0 {
		ttl = 60
	}
	return &dns.TXT{
		Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: ttl},
		Txt: []string{value},
	}, zone, nil
}

// findZone asks the server for the SOA of name and then of each parent:
// the first that has one is the zone's apex.
func (u *RFC2136) findZone(ctx context.Context, name string) (string, error) {
	labels := dns.SplitDomainName(name)
	for i := range labels {
		candidate := dns.Fqdn(strings.Join(labels[i:], "."))
		q := new(dns.Msg)
		q.SetQuestion(candidate, dns.TypeSOA)
		r, err := u.exchange(ctx, q)
		if err != nil {
			return "", fmt.Errorf("finding the zone of %s at %s: %w", name, u.Server, err)
		}
		for _, rr := range r.Answer {
			if soa, ok := rr.(*dns.SOA); ok && strings.EqualFold(soa.Hdr.Name, candidate) {
				return candidate, nil
			}
		}
	}
	return "", fmt.Errorf("%s answers no SOA for %s or a parent; name the zone in acmednsupdate", u.Server, name)
}

// await polls the server until name has a TXT record holding value.
func (u *RFC2136) await(ctx context.Context, name, value string) error {
	limit := u.Propagation
	if limit <= 0 {
		limit = time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	wait := 100 * time.Millisecond
	for {
		q := new(dns.Msg)
		q.SetQuestion(dns.Fqdn(name), dns.TypeTXT)
		r, err := u.exchange(ctx, q)
		if err == nil {
			for _, rr := range r.Answer {
				if t, ok := rr.(*dns.TXT); ok && slices.Equal(t.Txt, []string{value}) {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s took the update but does not answer the TXT record of %s within %s", u.Server, name, limit)
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// send sends an update, signed when a key is set, and checks the answer.
func (u *RFC2136) send(ctx context.Context, m *dns.Msg) error {
	if u.KeyName != "" {
		alg, ok := TSIGAlgorithm(u.Algorithm)
		if !ok {
			return fmt.Errorf("unknown TSIG algorithm %q", u.Algorithm)
		}
		m.SetTsig(dns.Fqdn(u.KeyName), alg, 300, time.Now().Unix())
	}
	r, err := u.exchange(ctx, m)
	if err != nil {
		return err
	}
	switch r.Rcode {
	case dns.RcodeSuccess:
		return nil
	case dns.RcodeNotAuth:
		return fmt.Errorf("refused: NOTAUTH (does the server have the key %q with this secret, and may the key update the zone?)", u.KeyName)
	case dns.RcodeRefused, dns.RcodeNotZone:
		return fmt.Errorf("refused: %s (is the server the zone's primary, and the zone right?)", dns.RcodeToString[r.Rcode])
	}
	return fmt.Errorf("refused: %s", dns.RcodeToString[r.Rcode])
}

// exchange talks to the server over TCP: updates and their answers may
// be long, and a signed answer is checked either way.
func (u *RFC2136) exchange(ctx context.Context, m *dns.Msg) (*dns.Msg, error) {
	timeout := u.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	c := &dns.Client{Net: "tcp", Timeout: timeout}
	if u.KeyName != "" {
		c.TsigSecret = map[string]string{dns.Fqdn(u.KeyName): u.Secret}
	}
	addr := u.Server
	if _, _, err := net.SplitHostPort(addr); err != nil {
		addr = net.JoinHostPort(addr, "53")
	}
	r, _, err := c.ExchangeContext(ctx, m, addr)
	switch {
	case err == nil:
	case errors.Is(err, dns.ErrAuth):
		// The server's answer is a TSIG error (BADKEY, BADSIG, BADTIME).
		return nil, fmt.Errorf("the server refused the signature (does it have the key %q with this secret, and is the clock right?): %w", u.KeyName, err)
	case errors.Is(err, dns.ErrSig) || errors.Is(err, dns.ErrSecret) || errors.Is(err, dns.ErrTime):
		return nil, fmt.Errorf("the answer's TSIG does not check with the key %q: %w", u.KeyName, err)
	}
	return r, err
}
