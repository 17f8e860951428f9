package outbound

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Resolver is what outbound delivery needs from DNS. The server may plug in
// the project's shared caching resolver; NewDNSResolver is a small default.
//
// Errors must let the caller tell a definite "this name does not exist"
// (wrap ErrNoSuchDomain, or a *net.DNSError with IsNotFound) from a failure
// that may pass (anything else is taken as temporary).
type Resolver interface {
	// LookupMX returns the MX records of domain. A domain that exists but
	// has no MX records gives an empty list and no error (RFC 5321 section
	// 5.1: the implicit MX). Host names may end in '.'; "." is the null MX.
	LookupMX(ctx context.Context, domain string) ([]*net.MX, error)
	// LookupIPAddr returns the A and AAAA addresses of host.
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
}

// DNS failure classes.
var (
	// ErrNoSuchDomain: the name does not exist (NXDOMAIN). Permanent.
	ErrNoSuchDomain = errors.New("no such domain")
	// ErrDNSTemporary: timeout, SERVFAIL, REFUSED, network trouble.
	ErrDNSTemporary = errors.New("temporary DNS failure")
)

// DNSError is a failed lookup: which name and type, its class
// (ErrNoSuchDomain or ErrDNSTemporary) and the underlying cause.
type DNSError struct {
	Name  string
	Type  string
	Class error
	Cause error
}

func (e *DNSError) Error() string {
	if e.Cause != nil {
		return fmt.Sprintf("dns %s %s: %v: %v", e.Type, e.Name, e.Class, e.Cause)
	}
	return fmt.Sprintf("dns %s %s: %v", e.Type, e.Name, e.Class)
}

func (e *DNSError) Unwrap() []error {
	if e.Cause != nil {
		return []error{e.Class, e.Cause}
	}
	return []error{e.Class}
}

// isNoSuchDomain reports whether err says the name does not exist, for our
// resolver and for the standard library's.
func isNoSuchDomain(err error) bool {
	if errors.Is(err, ErrNoSuchDomain) {
		return true
	}
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}

// dnsResolver asks recursive servers over UDP (TCP after truncation).
type dnsResolver struct {
	servers []string
	timeout time.Duration
}

// NewDNSResolver returns a Resolver that asks servers ("host:port", or
// "host" for port 53) in order, each exchange bounded by timeout. With no
// servers it reads the nameserver lines of /etc/resolv.conf, falling back
// to 127.0.0.1:53.
func NewDNSResolver(servers []string, timeout time.Duration) Resolver {
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	var list []string
	for _, s := range servers {
		if _, _, err := net.SplitHostPort(s); err != nil {
			s = net.JoinHostPort(strings.Trim(s, "[]"), "53")
		}
		list = append(list, s)
	}
	if len(list) == 0 {
		if cc, err := dns.ClientConfigFromFile("/etc/resolv.conf"); err == nil {
			for _, s := range cc.Servers {
				list = append(list, net.JoinHostPort(s, cc.Port))
			}
		}
	}
	if len(list) == 0 {
		list = []string{"127.0.0.1:53"}
	}
	return &dnsResolver{servers: list, timeout: timeout}
}

// maxDNSAnswers bounds how many records of an answer are used.
const maxDNSAnswers = 100

// query asks each server in turn until one gives NOERROR or NXDOMAIN.
func (r *dnsResolver) query(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	typ := dns.TypeToString[qtype]
	if _, ok := dns.IsDomainName(name); !ok || len(name) > 253 {
		return nil, &DNSError{Name: name, Type: typ, Class: ErrNoSuchDomain, Cause: errors.New("invalid domain name")}
	}
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), qtype)
	q.RecursionDesired = true
	q.SetEdns0(1232, false) // DNS flag day 2020: no fragmentation
	var last error
	for _, server := range r.servers {
		if err := ctx.Err(); err != nil {
			return nil, &DNSError{Name: name, Type: typ, Class: ErrDNSTemporary, Cause: err}
		}
		in, err := r.exchange(ctx, q, server, "udp")
		if err == nil && in.Truncated {
			in, err = r.exchange(ctx, q, server, "tcp") // RFC 7766 section 5
		}
		if err != nil {
			last = fmt.Errorf("server %s: %w", server, err)
			continue
		}
		switch in.Rcode {
		case dns.RcodeSuccess:
			return in, nil
		case dns.RcodeNameError:
			return nil, &DNSError{Name: name, Type: typ, Class: ErrNoSuchDomain}
		default:
			last = fmt.Errorf("server %s: %s", server, dns.RcodeToString[in.Rcode])
		}
	}
	return nil, &DNSError{Name: name, Type: typ, Class: ErrDNSTemporary, Cause: last}
}

func (r *dnsResolver) exchange(ctx context.Context, q *dns.Msg, server, network string) (*dns.Msg, error) {
	c := &dns.Client{Net: network, Timeout: r.timeout}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	in, _, err := c.ExchangeContext(ctx, q, server)
	if err != nil {
		return nil, err
	}
	if len(in.Question) != 1 || !strings.EqualFold(in.Question[0].Name, q.Question[0].Name) || in.Question[0].Qtype != q.Question[0].Qtype {
		return nil, errors.New("answer does not match the question")
	}
	return in, nil
}

// maxCNAMEChain bounds how many CNAMEs are followed.
const maxCNAMEChain = 8

// lookup returns the answer records of type qtype for name. A recursive
// server normally follows CNAMEs itself (RFC 1034 section 3.6.2); when the
// answer holds only the alias, its target is asked for, up to
// maxCNAMEChain times.
func (r *dnsResolver) lookup(ctx context.Context, name string, qtype uint16) ([]dns.RR, error) {
	for hop := 0; ; hop++ {
		in, err := r.query(ctx, name, qtype)
		if err != nil {
			return nil, err
		}
		var found []dns.RR
		target := ""
		for _, rr := range in.Answer {
			switch {
			case rr.Header().Rrtype == qtype:
				found = append(found, rr)
			case rr.Header().Rrtype == dns.TypeCNAME:
				target = rr.(*dns.CNAME).Target
			}
		}
		if len(found) > 0 || target == "" {
			return found, nil
		}
		if hop >= maxCNAMEChain {
			return nil, &DNSError{Name: name, Type: dns.TypeToString[qtype], Class: ErrDNSTemporary, Cause: errors.New("CNAME chain too long")}
		}
		name = target
	}
}

// LookupMX implements Resolver.
func (r *dnsResolver) LookupMX(ctx context.Context, domain string) ([]*net.MX, error) {
	answer, err := r.lookup(ctx, domain, dns.TypeMX)
	if err != nil {
		return nil, err
	}
	var out []*net.MX
	for _, rr := range answer {
		// Owner names are not compared: an answer that followed a CNAME
		// carries the target's MX records.
		if mx, ok := rr.(*dns.MX); ok && len(out) < maxDNSAnswers {
			out = append(out, &net.MX{Host: mx.Mx, Pref: mx.Preference})
		}
	}
	return out, nil
}

// LookupIPAddr implements Resolver: A then AAAA. Both NXDOMAIN is
// ErrNoSuchDomain; a temporary failure of one is ignored when the other
// gave addresses.
func (r *dnsResolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	var out []net.IPAddr
	var errs []error
	notFound := 0
	for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA} {
		answer, err := r.lookup(ctx, host, qtype)
		if err != nil {
			if isNoSuchDomain(err) {
				notFound++
			}
			errs = append(errs, err)
			continue
		}
		for _, rr := range answer {
			if len(out) >= maxDNSAnswers {
				break
			}
			switch a := rr.(type) {
			case *dns.A:
				out = append(out, net.IPAddr{IP: a.A})
			case *dns.AAAA:
				out = append(out, net.IPAddr{IP: a.AAAA})
			}
		}
	}
	if len(out) > 0 {
		return out, nil
	}
	if notFound > 0 && notFound == len(errs) {
		return nil, errs[0]
	}
	if len(errs) > 0 {
		for _, e := range errs {
			if !isNoSuchDomain(e) {
				return nil, e
			}
		}
	}
	return nil, nil
}
