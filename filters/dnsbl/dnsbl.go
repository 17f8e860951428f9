// Package dnsbl checks the client of an SMTP session against DNS lists
// (RFC 5782): DNS blocklists (DNSBL) and allowlists (DNSWL) keyed by the
// client's IP address, domain lists (RHSBL) keyed by the HELO name, the
// MAIL FROM domain and the From header domain, and URI lists (SURBL, URIBL,
// Spamhaus DBL) keyed by the registered domains of the links in the
// message body (uri.go extracts them).
//
// A list is a DNS zone. To ask whether IPv4 address a.b.c.d is listed in
// zone Z, one looks up the A record of d.c.b.a.Z; for IPv6 the 32 nibbles of
// the address, least significant first, separated by dots (RFC 5782 section
// 2.1, 2.4). For a domain D the name is D.Z (section 2.2). An A record in
// 127.0.0.0/8 means "listed", and the address may encode why (127.0.0.2 is
// the generic code; lists publish their own codes and bitmasks); NXDOMAIN
// means "not listed". A TXT record at the same name, if published, says why
// in words (section 2.1). Every list must list the test point 127.0.0.2 and
// must not list 127.0.0.1 (section 5), which is how an admin checks that a
// zone answers at all.
//
// A list that answers outside 127.0.0.0/8 is broken or gone (an expired list
// domain parked with a wildcard A record "lists the world"); such an answer
// is an error, never a listing, so a dead list cannot reject everyone. The
// answers 127.255.255.0/24 are the error codes Spamhaus and others use to
// refuse a query (public resolver, rate limit): also errors, not listings.
//
// This package owns the list lookups, the configuration file "dnsbl" (its own
// syntax and Courier's couriertcpd -block/-allow syntax), the filter that
// turns hits into scores and SMTP replies, and `postern check dnsbl`.
package dnsbl

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"postern/filters/dns"
)

// ListType says what a hit means.
type ListType int

const (
	Block ListType = iota // a DNSBL/RHSBL: a hit is bad
	Allow                 // a DNSWL: a hit is good
)

func (t ListType) String() string {
	if t == Allow {
		return "allow"
	}
	return "block"
}

// Subject is what a zone is asked about.
type Subject string

const (
	SubjectIP     Subject = "ip"     // the client IP address (DNSBL/DNSWL)
	SubjectHELO   Subject = "helo"   // the HELO/EHLO name (RHSBL)
	SubjectSender Subject = "sender" // the MAIL FROM domain (RHSBL)
	SubjectFrom   Subject = "from"   // the From header domain(s), at DATA (RHSBL)
	// SubjectBody: the registered domains and IP literals of the links in
	// the message body, at DATA (URI lists: SURBL, URIBL, Spamhaus DBL).
	SubjectBody Subject = "body"
)

// Action says what a hit does beyond adding the zone's weight to the score.
type Action int

const (
	// ActionScore only adds the weight (and sets the variables).
	ActionScore Action = iota
	// ActionReject refuses the client (block zones).
	ActionReject
	// ActionAccept trusts the client: the verdict is Accept and no DNSBL
	// rejection applies (allow zones).
	ActionAccept
)

func (a Action) String() string {
	return [...]string{"score", "reject", "accept"}[a]
}

// Errors of a lookup besides the resolver's own (which are classified by
// postern/filters/dns: not found, temporary, permanent).
var (
	// ErrOutsideLoopback: the zone answered with an address outside
	// 127.0.0.0/8 (RFC 5782 section 2.1 requires 127/8). The zone is
	// misconfigured, expired or parked; it must not list anyone.
	ErrOutsideLoopback = errors.New("answer outside 127.0.0.0/8: zone broken or parked, ignored")
	// ErrRefused: the zone answered with an error code (127.255.255.0/24),
	// the way Spamhaus refuses queries through public resolvers or over
	// its rate limit.
	ErrRefused = errors.New("the list refused the query (error code 127.255.255.x)")
	// ErrBadSubject: the address or domain cannot be looked up (not an
	// IP address, an invalid or too long name).
	ErrBadSubject = errors.New("subject cannot be looked up")
)

// maxTXT bounds the TXT text kept from a list, so a hostile zone cannot
// stuff the SMTP reply or the logs.
const maxTXT = 300

// Lookup is the answer of one zone about one subject.
type Lookup struct {
	Zone    *Zone
	Subject Subject
	Value   string       // the IP address or domain asked about
	Query   string       // the DNS name asked, without the trailing dot
	Listed  bool         // a matching answer (or TXT, for TXT lists)
	Code    netip.Addr   // the first matching answer; invalid when not listed or TXT list
	Answers []netip.Addr // every A record answered
	TXT     string       // the reason the list gives, if fetched; sanitised
	Err     error        // why the zone could not answer; nil for listed and not listed
	// Repeat marks a further body domain listed by a zone that already
	// listed one in this message: reported, but its weight is not added
	// again (one spam run links many domains of one list).
	Repeat bool
}

// QueryName returns the DNS name to ask zone about value (an IP address for
// SubjectIP, a domain otherwise), without the trailing dot.
func QueryName(zone string, subject Subject, value string) (string, error) {
	if subject == SubjectBody {
		// A link to an IP address is asked as a client address would be
		// (reversed), which is how URI lists that list IPs key them.
		if ip, err := netip.ParseAddr(strings.Trim(value, "[]")); err == nil {
			return ReversedIP(ip) + "." + zone, nil
		}
	}
	if subject == SubjectIP {
		ip, err := netip.ParseAddr(strings.Trim(value, "[]"))
		if err != nil {
			return "", fmt.Errorf("dnsbl: %q: %w", value, ErrBadSubject)
		}
		return ReversedIP(ip) + "." + zone, nil
	}
	d := NormalizeDomain(value)
	if d == "" {
		return "", fmt.Errorf("dnsbl: domain %q: %w", value, ErrBadSubject)
	}
	name := d + "." + zone
	if len(name) > 253 {
		return "", fmt.Errorf("dnsbl: %s too long: %w", name, ErrBadSubject)
	}
	return name, nil
}

// ReversedIP is the label sequence for ip in a list (RFC 5782 section 2.1
// and 2.4): the octets of an IPv4 address reversed, the nibbles of an IPv6
// address reversed. An IPv4-mapped IPv6 address is looked up as IPv4.
func ReversedIP(ip netip.Addr) string {
	// dns.ReverseName gives "...in-addr.arpa." / "...ip6.arpa.": the same
	// label order lists use, under another suffix.
	r := dns.ReverseName(ip)
	r = strings.TrimSuffix(r, "in-addr.arpa.")
	r = strings.TrimSuffix(r, "ip6.arpa.")
	return strings.TrimSuffix(r, ".")
}

// NormalizeDomain returns domain in lower case without a trailing dot, or ""
// when it is not a name a list can be asked about: empty, an address literal
// ("[192.0.2.1]"), a bare IP address, or not a syntactically valid host name.
func NormalizeDomain(domain string) string {
	d := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(domain), "."))
	if d == "" || len(d) > 253 || strings.HasPrefix(d, "[") {
		return ""
	}
	if _, err := netip.ParseAddr(d); err == nil {
		return ""
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 {
			return ""
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c >= 0x80
			if !ok {
				return ""
			}
		}
	}
	return d
}

// Ask looks value up in zone z. A temporary DNS failure, a refusal or a
// broken zone comes back in Lookup.Err; "not listed" is not an error.
func Ask(ctx context.Context, r *dns.Resolver, z *Zone, subject Subject, value string) Lookup {
	l := Lookup{Zone: z, Subject: subject, Value: value}
	q, err := QueryName(z.Name, subject, value)
	if err != nil {
		l.Err = err
		return l
	}
	l.Query = q
	if z.TXTList {
		// Courier's "-block=zone,VAR,*": the list publishes TXT records
		// only, and any TXT record is a listing.
		txts, err := r.LookupTXT(ctx, q)
		switch {
		case dns.IsNotFound(err):
			return l
		case err != nil:
			l.Err = err
			return l
		}
		l.Listed = len(txts) > 0
		l.TXT = sanitizeTXT(strings.Join(txts, " "))
		return l
	}
	addrs, err := r.LookupA(ctx, q)
	switch {
	case dns.IsNotFound(err):
		return l
	case err != nil:
		l.Err = err
		return l
	}
	l.Answers = addrs
	for _, a := range addrs {
		if !loopback.Contains(a) {
			l.Err = fmt.Errorf("dnsbl %s: %s: %w", z.Name, a, ErrOutsideLoopback)
			return l
		}
	}
	_, ipErr := netip.ParseAddr(strings.Trim(value, "[]"))
	ipLink := subject == SubjectBody && ipErr == nil
	for _, a := range addrs {
		// Spamhaus DBL answers 127.0.1.255 ("IP queries prohibited") when
		// a domain list is asked about a link to an IP address: a
		// refusal, whatever the zone's codes say.
		if errorCodes.Contains(a) || ipLink && a == ipQueryRefused {
			l.Err = fmt.Errorf("dnsbl %s: %s: %w", z.Name, a, ErrRefused)
			return l
		}
	}
	for _, a := range addrs {
		if z.Codes.Match(a) {
			l.Listed, l.Code = true, a
			break
		}
	}
	if l.Listed && z.FetchTXT {
		// The reason is a nicety: a failure here does not undo the hit.
		if txts, err := r.LookupTXT(ctx, q); err == nil {
			l.TXT = sanitizeTXT(strings.Join(txts, " "))
		}
	}
	return l
}

var (
	loopback   = netip.MustParsePrefix("127.0.0.0/8")
	errorCodes = netip.MustParsePrefix("127.255.255.0/24")
	testPoint1 = netip.MustParseAddr("127.0.0.1")
	// ipQueryRefused is Spamhaus DBL's answer to a question about an IP
	// address.
	ipQueryRefused = netip.MustParseAddr("127.0.1.255")
)

// sanitizeTXT keeps printable ASCII (SMTP replies are ASCII, RFC 5321
// section 4.2) and bounds the length.
func sanitizeTXT(s string) string {
	var b strings.Builder
	space := false
	for i := 0; i < len(s) && b.Len() < maxTXT; i++ {
		c := s[i]
		if c < ' ' || c > '~' || c == ' ' {
			space = b.Len() > 0
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		b.WriteByte(c)
	}
	return b.String()
}
