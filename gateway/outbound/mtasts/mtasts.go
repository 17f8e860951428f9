// Package mtasts is the sending side of SMTP MTA Strict Transport Security
// (RFC 8461): it finds out whether a recipient domain publishes a policy
// and which one.
//
// A domain announces a policy with a TXT record at _mta-sts.DOMAIN
// ("v=STSv1; id=..."), and serves the policy itself over HTTPS at
// https://mta-sts.DOMAIN/.well-known/mta-sts.txt: a mode (enforce, testing
// or none), the MX host patterns mail may go to, and how long the policy may
// be cached (max_age). A sender caches the policy for max_age and only
// fetches it again when the id in the TXT record changes, so that an
// attacker who strips the TXT record or blocks the HTTPS fetch later cannot
// make the sender forget a policy it has already seen (RFC 8461 sections 3.3
// and 10.2).
//
// The package owns policy discovery, the HTTPS fetch and the policy cache
// (in memory, and on disk when Options.Dir is set). Applying a policy to MX
// hosts and their certificates (sections 4 and 5) is left to the outbound
// SMTP client, which asks Client.Policy and then Policy.Match.
//
// A domain's policy is looked up for that domain only, never its parent
// (section 3.4).
package mtasts

import (
	"errors"
	"strings"
	"time"
)

// Mode is a policy's mode (RFC 8461 section 5).
type Mode string

const (
	// ModeEnforce: deliver only to MX hosts matching the policy, over TLS
	// with a certificate valid for the MX host name.
	ModeEnforce Mode = "enforce"
	// ModeTesting: report failures (TLSRPT) but deliver anyway.
	ModeTesting Mode = "testing"
	// ModeNone: the domain has withdrawn its policy (section 8.3).
	ModeNone Mode = "none"
)

// Limits of RFC 8461 section 3.2 and 3.3.
const (
	// maxPolicySize is the largest policy body fetched or parsed: the
	// suggested limit of section 3.3.
	maxPolicySize = 64 << 10
	// maxMaxAge is the largest max_age (section 3.2); larger ones are
	// clamped to it.
	maxMaxAge = 31557600 * time.Second
)

var (
	// ErrNoPolicy: the domain publishes no usable MTA-STS TXT record (none,
	// more than one, or a syntactically invalid one: RFC 8461 section 3.1
	// says to treat all three as no policy).
	ErrNoPolicy = errors.New("no MTA-STS policy")
	// ErrInvalidDomain: the domain given to Client.Policy is not a DNS name
	// a policy can be looked up for (an address literal, a name with '/',
	// an empty label, ...).
	ErrInvalidDomain = errors.New("invalid domain name")
)

// Policy is an MTA-STS policy as fetched from the policy host, with the id
// of the TXT record that announced it and when it was fetched. Policies
// returned by Client.Policy are shared: do not modify them.
type Policy struct {
	Mode   Mode
	MX     []string      // patterns, lower case, no trailing dot: "mx.example.com" or "*.example.com"
	MaxAge time.Duration // how long the policy may be cached, at most 31557600 seconds
	// ID is the id of the _mta-sts TXT record the policy was fetched for
	// (RFC 8461 section 3.1). Parse leaves it empty.
	ID string
	// Fetched is when the policy was fetched. Parse leaves it zero.
	Fetched time.Time
}

// Expires is when the cached policy stops being valid: Fetched + MaxAge.
// At and after that instant the policy is expired.
func (p *Policy) Expires() time.Time {
	return p.Fetched.Add(p.MaxAge)
}

// expired reports whether the policy may no longer be used at now.
func (p *Policy) expired(now time.Time) bool {
	return !now.Before(p.Expires())
}

// Match reports whether host, an MX host name, is allowed by the policy's
// mx patterns (RFC 8461 section 4.1). Names compare case-insensitively and
// a trailing dot is ignored. A pattern "*.example.com" matches a name with
// exactly one more label on the left: "mx.example.com", but neither
// "example.com" nor "a.b.example.com" (the wildcard rule of RFC 6125,
// restricted to the whole leftmost label).
func (p *Policy) Match(host string) bool {
	host = strings.TrimSuffix(host, ".")
	if host == "" {
		return false
	}
	for _, pattern := range p.MX {
		if parent, ok := strings.CutPrefix(pattern, "*."); ok {
			label, rest, found := strings.Cut(host, ".")
			if found && label != "" && equalFoldASCII(rest, parent) {
				return true
			}
			continue
		}
		if equalFoldASCII(host, pattern) {
			return true
		}
	}
	return false
}

// equalFoldASCII compares host names ignoring ASCII case only: Unicode case
// folding (strings.EqualFold) would let the Kelvin sign match 'k'.
func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if lowerASCII(a[i]) != lowerASCII(b[i]) {
			return false
		}
	}
	return true
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
