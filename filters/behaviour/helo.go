package behaviour

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"postern/filters"
	"postern/filters/dns"
)

// HeloKind classifies a HELO/EHLO argument.
type HeloKind int

const (
	HeloInvalid        HeloKind = iota // neither a domain nor an address literal
	HeloDomain                         // a domain of two or more labels
	HeloSingleLabel                    // a syntactically valid one-label name
	HeloAddressLiteral                 // "[192.0.2.1]", "[IPv6:2001:db8::1]" or a general literal
	HeloBareIP                         // an IP address without the brackets
)

// maxHeloLen bounds what is parsed; RFC 5321 section 4.5.3.1.2 limits a
// domain to 255 octets.
const maxHeloLen = 255

// ParseHelo classifies a HELO/EHLO argument by the grammar of RFC 5321
// section 4.1.2 (Domain, address-literal) and 4.1.3 (IPv4/IPv6 literals).
// For address literals and bare IPs the address is returned (invalid for a
// General-address-literal). A trailing dot on a domain is tolerated.
func ParseHelo(arg string) (HeloKind, netip.Addr) {
	if arg == "" || len(arg) > maxHeloLen+2 {
		return HeloInvalid, netip.Addr{}
	}
	if strings.HasPrefix(arg, "[") {
		if !strings.HasSuffix(arg, "]") || len(arg) < 3 {
			return HeloInvalid, netip.Addr{}
		}
		inner := arg[1 : len(arg)-1]
		if a, err := netip.ParseAddr(inner); err == nil && a.Is6() {
			// An IPv6 address needs the "IPv6:" tag (RFC 5321 section 4.1.3).
			return HeloInvalid, netip.Addr{}
		}
		if tag, rest, ok := strings.Cut(inner, ":"); ok {
			if strings.EqualFold(tag, "IPv6") {
				a, err := netip.ParseAddr(rest)
				if err != nil || !a.Is6() || a.Zone() != "" {
					return HeloInvalid, netip.Addr{}
				}
				return HeloAddressLiteral, a
			}
			// General-address-literal: Standardized-tag ":" 1*dcontent.
			if !isLdhStr(tag) || rest == "" || strings.ContainsFunc(rest, func(r rune) bool { return r < 33 || r > 126 || r == '[' || r == ']' || r == '\\' }) {
				return HeloInvalid, netip.Addr{}
			}
			return HeloAddressLiteral, netip.Addr{}
		}
		a, err := netip.ParseAddr(inner)
		if err != nil || !a.Is4() {
			return HeloInvalid, netip.Addr{}
		}
		return HeloAddressLiteral, a
	}
	if a, err := netip.ParseAddr(arg); err == nil {
		return HeloBareIP, a
	}
	name := strings.TrimSuffix(arg, ".")
	if name == "" || len(name) > maxHeloLen {
		return HeloInvalid, netip.Addr{}
	}
	labels := strings.Split(name, ".")
	for _, l := range labels {
		if !isSubDomain(l) {
			return HeloInvalid, netip.Addr{}
		}
	}
	if len(labels) == 1 {
		return HeloSingleLabel, netip.Addr{}
	}
	// An all-numeric top label is no real domain (RFC 3696 section 2):
	// "192.0.2" or "1.2.3.4.5" pose as addresses.
	if isAllDigits(labels[len(labels)-1]) {
		return HeloInvalid, netip.Addr{}
	}
	return HeloDomain, netip.Addr{}
}

// isSubDomain: Let-dig [Ldh-str], at most 63 octets.
func isSubDomain(l string) bool {
	if l == "" || len(l) > 63 || !isLetDig(l[0]) || !isLetDig(l[len(l)-1]) {
		return false
	}
	return isLdhStr(l)
}

func isLdhStr(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isLetDig(s[i]) && s[i] != '-' {
			return false
		}
	}
	return true
}

func isLetDig(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func isAllDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// helo adds the HELO findings.
func (f *Filter) helo(ctx context.Context, b *builder, s *filters.Session) {
	h := strings.TrimSpace(s.HELO)
	client := s.ClientIP.Unmap()
	// The server talking to itself (local submission, monitoring) may well
	// use our name.
	local := client.IsLoopback() || f.ourIP(client)
	kind, lit := ParseHelo(h)
	check, match, resolves := "ok", "unknown", "unchecked"
	switch kind {
	case HeloInvalid:
		check = "invalid"
		b.add(f.opt.Scores.HeloInvalid, fmt.Sprintf("HELO %q is neither a domain nor an address literal (RFC 5321 section 4.1.1.1)", clip(h)))
	case HeloSingleLabel:
		check = "nofqdn"
		b.add(f.opt.Scores.HeloNotFQDN, fmt.Sprintf("HELO %q is not a fully qualified domain name", h))
	case HeloBareIP:
		check = "bareip"
		b.add(f.opt.Scores.HeloBareIP, fmt.Sprintf("HELO %q is an IP address without brackets", h))
		if lit.Unmap() == client {
			match = "yes"
		} else {
			match = "no"
		}
	case HeloAddressLiteral:
		switch {
		case !lit.IsValid():
			// A general address literal: nothing to compare.
		case lit.Unmap() == client:
			match = "yes"
		case f.ourIP(lit) && !local:
			check = "ours"
			b.add(f.opt.Scores.HeloOurs, fmt.Sprintf("HELO %s is our own address", h))
		default:
			check, match = "literal-mismatch", "no"
			b.add(f.opt.Scores.HeloLiteral, fmt.Sprintf("HELO %s is not the client's address %s", h, client))
		}
	case HeloDomain:
		if f.isOurs(h) && !local {
			check = "ours"
			b.add(f.opt.Scores.HeloOurs, fmt.Sprintf("HELO %s is our own name", h))
			break
		}
		if verified := verifiedName(s); verified != "" && canonicalName(verified) == canonicalName(h) {
			match = "yes"
		}
		if f.opt.HeloResolve && f.opt.Resolver != nil {
			resolves, match = f.resolveHelo(ctx, b, h, client, match)
		}
	}
	b.res.Vars[VarHeloCheck] = check
	b.res.Vars[VarHeloResolves] = resolves
	b.res.Vars[VarHeloMatch] = match
}

func (f *Filter) resolveHelo(ctx context.Context, b *builder, h string, client netip.Addr, match string) (resolves, newMatch string) {
	addrs, err := f.opt.Resolver.LookupIP(ctx, h)
	switch {
	case dns.IsTemporary(err):
		b.add(0, fmt.Sprintf("HELO %s could not be resolved: %v", h, err))
		return "temperror", match
	case err != nil:
		b.add(f.opt.Scores.HeloNoDNS, fmt.Sprintf("HELO %s does not resolve", h))
		return "no", match
	}
	if slices.ContainsFunc(addrs, func(a netip.Addr) bool { return a.Unmap() == client }) {
		return "yes", "yes"
	}
	if match == "yes" {
		return "yes", match // it is the client's verified reverse name
	}
	b.add(f.opt.Scores.HeloMismatch, fmt.Sprintf("HELO %s does not point at the client %s", h, client))
	return "yes", "no"
}

// verifiedName is the client's forward-confirmed name, from the gateway or
// from this filter's connect-stage result.
func verifiedName(s *filters.Session) string {
	if s.ClientName != "" {
		return s.ClientName
	}
	for _, r := range s.Results {
		if n := r.Vars[VarFCrDNSName]; n != "" {
			return n
		}
	}
	return ""
}

// clip bounds hostile text before it goes into a log line.
func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
