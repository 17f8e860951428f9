package behaviour

import (
	"context"
	"net/netip"
	"slices"

	"postern/filters/dns"
)

// FCrDNS outcomes (Vars["FCRDNS"]).
const (
	FCrDNSPass      = "pass"      // a PTR name resolves back to the address
	FCrDNSFail      = "fail"      // PTR names exist, none resolves back
	FCrDNSNone      = "none"      // no PTR record (or an unusable one)
	FCrDNSTempError = "temperror" // DNS failed; the answer may differ later
)

// FCrDNSResult is the outcome of CheckFCrDNS.
type FCrDNSResult struct {
	Status string
	Name   string   // on pass: the confirmed name (what Session.ClientName should hold)
	Names  []string // the PTR names found (at most the bound asked for)
	Err    error    // the DNS error behind none or temperror, if any
}

// CheckFCrDNS looks up ip's PTR names and then each name's addresses of
// ip's family (A for IPv4, AAAA for IPv6): the first name whose addresses
// include ip confirms it. At most maxNames names are tried, so that a
// hostile reverse zone with hundreds of PTR records cannot make us do
// hundreds of lookups. A temporary failure only counts when no name
// confirms.
func CheckFCrDNS(ctx context.Context, r *dns.Resolver, ip netip.Addr, maxNames int) FCrDNSResult {
	ip = ip.Unmap()
	if !ip.IsValid() {
		return FCrDNSResult{Status: FCrDNSNone}
	}
	names, err := r.LookupPTR(ctx, ip)
	switch {
	case dns.IsTemporary(err):
		return FCrDNSResult{Status: FCrDNSTempError, Err: err}
	case err != nil:
		return FCrDNSResult{Status: FCrDNSNone, Err: err}
	case len(names) == 0:
		return FCrDNSResult{Status: FCrDNSNone}
	}
	if maxNames > 0 && len(names) > maxNames {
		names = names[:maxNames]
	}
	res := FCrDNSResult{Status: FCrDNSFail, Names: names}
	var tempErr error
	for _, name := range names {
		var addrs []netip.Addr
		if ip.Is4() {
			addrs, err = r.LookupA(ctx, name)
		} else {
			addrs, err = r.LookupAAAA(ctx, name)
		}
		if err != nil {
			if dns.IsTemporary(err) {
				tempErr = err
			}
			continue
		}
		if slices.ContainsFunc(addrs, func(a netip.Addr) bool { return a.Unmap() == ip }) {
			res.Status, res.Name = FCrDNSPass, name
			return res
		}
	}
	if tempErr != nil {
		res.Status, res.Err = FCrDNSTempError, tempErr
	}
	return res
}
