package outbound

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
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

// SecureResolver is a Resolver that also tells whether an answer was
// validated with DNSSEC by the (trusted, local) recursive resolver, and
// looks up TLSA records (DANE, RFC 7672) and TXT records (MTA-STS, RFC
// 8461).
//
// "secure" means the recursive resolver set the AD (Authenticated Data)
// bit on every response the answer was built from: the answer itself and
// each link of a CNAME chain followed. Trusting that bit is only sound when
// the path to the resolver cannot be tampered with, i.e. a validating
// resolver on the loopback interface or one reached over a trusted link
// (RFC 7672 section 2.1.3, RFC 4035 section 4.9.3; Postfix's
// smtp_dns_support_level = dnssec makes the same assumption).
type SecureResolver interface {
	Resolver
	// LookupMXSecure is LookupMX that also reports whether the answer
	// (or, with an ErrNoSuchDomain error, the denial) was validated.
	LookupMXSecure(ctx context.Context, domain string) (mxs []*net.MX, secure bool, err error)
	// LookupIPAddrSecure is LookupIPAddr that also reports whether the
	// answers it used were validated, and the name the addresses belong
	// to when host is an alias (the end of its CNAME chain; "" when it is
	// not), which DANE needs (RFC 7672 section 2.2.2).
	LookupIPAddrSecure(ctx context.Context, host string) (addrs []net.IPAddr, canonical string, secure bool, err error)
	// LookupTLSA returns the TLSA RRset of _port._tcp.host. A secure
	// denial (NXDOMAIN or NODATA with AD) returns no records, secure=true,
	// err=nil. An insecure answer, or an insecure denial, returns
	// secure=false. A failed lookup (SERVFAIL, timeout) is an
	// ErrDNSTemporary error: the caller must then not deliver to that host
	// (RFC 7672 section 2.2).
	LookupTLSA(ctx context.Context, port int, host string) (records []*dns.TLSA, secure bool, err error)
	// LookupTXT returns the TXT strings of name, each record's strings
	// joined. NXDOMAIN is an ErrNoSuchDomain error; a name without TXT
	// records gives an empty list and no error.
	LookupTXT(ctx context.Context, name string) ([]string, error)
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

// IsNoSuchDomain reports whether err says the name does not exist, for
// our resolver and for the standard library's.
func IsNoSuchDomain(err error) bool { return isNoSuchDomain(err) }

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

var _ SecureResolver = (*dnsResolver)(nil)

// NewDNSResolver returns a SecureResolver that asks servers ("host:port",
// or "host" for port 53) in order, each exchange bounded by timeout. With
// no servers it reads the nameserver lines of /etc/resolv.conf, falling
// back to 127.0.0.1:53.
//
// Every query asks for DNSSEC (the DO bit, and AD=1 as RFC 6840 section
// 5.7 suggests) so that a validating resolver reports whether it validated
// the answer. The secure results mean something only when these servers are
// validating resolvers that the path to cannot be tampered with, normally
// one on 127.0.0.1 (see SecureResolver).
func NewDNSResolver(servers []string, timeout time.Duration) SecureResolver {
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
// NXDOMAIN is an ErrNoSuchDomain error returned with the response, whose
// AD bit says whether the denial was validated (RFC 7672 section 2.1.1).
func (r *dnsResolver) query(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	typ := dns.TypeToString[qtype]
	if _, ok := dns.IsDomainName(name); !ok || len(name) > 253 {
		return nil, &DNSError{Name: name, Type: typ, Class: ErrNoSuchDomain, Cause: errors.New("invalid domain name")}
	}
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), qtype)
	q.RecursionDesired = true
	// DNS flag day 2020: 1232 bytes, no fragmentation. DO asks for DNSSEC
	// (RFC 3225), and AD=1 in the query asks the resolver to report the
	// validation status in the response's AD bit (RFC 6840 section 5.7).
	q.SetEdns0(1232, true)
	q.AuthenticatedData = true
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
			return in, &DNSError{Name: name, Type: typ, Class: ErrNoSuchDomain}
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
//
// secure is true when every response used had the AD bit: one insecure
// link in a CNAME chain makes the whole answer insecure. With an
// ErrNoSuchDomain error from a server's NXDOMAIN, secure tells whether
// that denial (and the chain leading to it) was validated; with any other
// error it is false.
func (r *dnsResolver) lookup(ctx context.Context, name string, qtype uint16) (records []dns.RR, secure bool, err error) {
	secure = true
	for hop := 0; ; hop++ {
		in, err := r.query(ctx, name, qtype)
		if err != nil {
			return nil, in != nil && secure && in.AuthenticatedData, err
		}
		secure = secure && in.AuthenticatedData
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
			return found, secure, nil
		}
		if hop >= maxCNAMEChain {
			return nil, false, &DNSError{Name: name, Type: dns.TypeToString[qtype], Class: ErrDNSTemporary, Cause: errors.New("CNAME chain too long")}
		}
		name = target
	}
}

// LookupMX implements Resolver.
func (r *dnsResolver) LookupMX(ctx context.Context, domain string) ([]*net.MX, error) {
	mxs, _, err := r.LookupMXSecure(ctx, domain)
	return mxs, err
}

// LookupMXSecure implements SecureResolver.
func (r *dnsResolver) LookupMXSecure(ctx context.Context, domain string) ([]*net.MX, bool, error) {
	answer, secure, err := r.lookup(ctx, domain, dns.TypeMX)
	if err != nil {
		return nil, secure, err
	}
	var out []*net.MX
	for _, rr := range answer {
		// Owner names are not compared: an answer that followed a CNAME
		// carries the target's MX records.
		if mx, ok := rr.(*dns.MX); ok && len(out) < maxDNSAnswers {
			out = append(out, &net.MX{Host: mx.Mx, Pref: mx.Preference})
		}
	}
	return out, secure, nil
}

// LookupIPAddr implements Resolver.
func (r *dnsResolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	addrs, _, _, err := r.LookupIPAddrSecure(ctx, host)
	return addrs, err
}

// LookupIPAddrSecure implements SecureResolver: A then AAAA. Both NXDOMAIN
// is ErrNoSuchDomain; a temporary failure of one is ignored when the other
// gave addresses. secure is true when every query that was answered (with
// records, no records or NXDOMAIN) was validated, and at least one was.
func (r *dnsResolver) LookupIPAddrSecure(ctx context.Context, host string) ([]net.IPAddr, string, bool, error) {
	var out []net.IPAddr
	canonical := ""
	var errs []error
	notFound, answered := 0, 0
	secure := true
	for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA} {
		answer, sec, err := r.lookup(ctx, host, qtype)
		if err != nil {
			if isNoSuchDomain(err) {
				notFound++
				answered++
				secure = secure && sec
			}
			errs = append(errs, err)
			continue
		}
		answered++
		secure = secure && sec
		for _, rr := range answer {
			if len(out) >= maxDNSAnswers {
				break
			}
			if owner := strings.TrimSuffix(rr.Header().Name, "."); canonical == "" && !strings.EqualFold(owner, strings.TrimSuffix(host, ".")) {
				canonical = strings.ToLower(owner) // the answer followed a CNAME
			}
			switch a := rr.(type) {
			case *dns.A:
				out = append(out, net.IPAddr{IP: a.A})
			case *dns.AAAA:
				out = append(out, net.IPAddr{IP: a.AAAA})
			}
		}
	}
	secure = secure && answered > 0
	if len(out) > 0 {
		return out, canonical, secure, nil
	}
	if notFound > 0 && notFound == len(errs) {
		return nil, "", secure, errs[0]
	}
	for _, e := range errs {
		if !isNoSuchDomain(e) {
			return nil, "", false, e
		}
	}
	return nil, "", secure, nil
}

// LookupTLSA implements SecureResolver. The query name is _port._tcp.host
// (RFC 6698 section 3); a CNAME there is followed (RFC 7671 section 7).
func (r *dnsResolver) LookupTLSA(ctx context.Context, port int, host string) ([]*dns.TLSA, bool, error) {
	host = strings.TrimSuffix(host, ".")
	name := "_" + strconv.Itoa(port) + "._tcp." + host
	if port <= 0 || port > 65535 || host == "" {
		return nil, false, &DNSError{Name: name, Type: "TLSA", Class: ErrNoSuchDomain, Cause: errors.New("invalid port or host")}
	}
	if _, ok := dns.IsDomainName(name); !ok || len(name) > 253 {
		return nil, false, &DNSError{Name: name, Type: "TLSA", Class: ErrNoSuchDomain, Cause: errors.New("invalid domain name")}
	}
	answer, secure, err := r.lookup(ctx, name, dns.TypeTLSA)
	if err != nil {
		if errors.Is(err, ErrNoSuchDomain) {
			// The name was checked above, so this is the server's
			// NXDOMAIN: no TLSA records, securely denied or not (RFC
			// 7672 section 2.1.1).
			return nil, secure, nil
		}
		// SERVFAIL, timeout: the TLSA records may exist; the host must
		// not be used now (RFC 7672 section 2.2).
		return nil, false, err
	}
	var out []*dns.TLSA
	for _, rr := range answer {
		if t, ok := rr.(*dns.TLSA); ok && len(out) < maxDNSAnswers {
			out = append(out, t)
		}
	}
	return out, secure, nil
}

// LookupTXT implements SecureResolver. A TXT record is a list of strings
// of at most 255 bytes each; they are concatenated without separator, as
// RFC 7208 section 3.3 does and MTA-STS (RFC 8461 section 3.1) expects.
func (r *dnsResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	answer, _, err := r.lookup(ctx, name, dns.TypeTXT)
	if err != nil {
		return nil, err
	}
	out := []string{}
	for _, rr := range answer {
		if t, ok := rr.(*dns.TXT); ok && len(out) < maxDNSAnswers {
			var b strings.Builder
			for _, s := range t.Txt {
				b.WriteString(unescapeTXT(s))
			}
			out = append(out, b.String())
		}
	}
	return out, nil
}

// unescapeTXT undoes the presentation-format escaping that
// github.com/miekg/dns applies to character-strings it unpacks (\" and
// \\ for quote and backslash, \DDD for other bytes outside printable
// ASCII), giving back the bytes that were sent (RFC 1035 section 5.1).
func unescapeTXT(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 == len(s) {
			b.WriteByte(c)
			continue
		}
		if i+3 < len(s) && isDigit(s[i+1]) && isDigit(s[i+2]) && isDigit(s[i+3]) {
			if v := int(s[i+1]-'0')*100 + int(s[i+2]-'0')*10 + int(s[i+3]-'0'); v <= 255 {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i+1])
		i++
	}
	return b.String()
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
