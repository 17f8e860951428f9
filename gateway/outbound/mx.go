package outbound

import (
	"math/rand/v2"
	"net"
	"sort"
	"strings"
)

// orderMX sorts MX records for trying (RFC 5321 section 5.1): lowest
// preference first, in random order among equal preferences so that load
// spreads. It reports a null MX (RFC 7505: a single record whose host is
// "."); a "." among other records is a misconfiguration and is skipped.
// Names come back without their trailing dot, duplicates removed.
func orderMX(mxs []*net.MX) (names []string, nullMX bool) {
	var real []*net.MX
	nulls := 0
	for _, mx := range mxs {
		if mx == nil {
			continue
		}
		h := strings.ToLower(strings.TrimSuffix(mx.Host, "."))
		if h == "" {
			nulls++
			continue
		}
		real = append(real, &net.MX{Host: h, Pref: mx.Pref})
	}
	if len(real) == 0 {
		return nil, nulls > 0
	}
	rand.Shuffle(len(real), func(i, j int) { real[i], real[j] = real[j], real[i] })
	sort.SliceStable(real, func(i, j int) bool { return real[i].Pref < real[j].Pref })
	seen := map[string]bool{}
	for _, mx := range real {
		if !seen[mx.Host] {
			seen[mx.Host] = true
			names = append(names, mx.Host)
		}
	}
	return names, false
}

// dropSelfMX applies RFC 5321 5.1: when this host (self, its name in
// "me") is one of the MX hosts, that record and every one of equal or
// lower preference are discarded, so that a backup MX hands mail only to
// better ones and never to itself. listed reports that self was found;
// with nothing kept, the mail would loop.
func dropSelfMX(mxs []*net.MX, self string) (kept []*net.MX, listed bool) {
	self = strings.ToLower(strings.TrimSuffix(self, "."))
	best := uint16(0)
	for _, mx := range mxs {
		if mx != nil && self != "" && strings.ToLower(strings.TrimSuffix(mx.Host, ".")) == self {
			if !listed || mx.Pref < best {
				best = mx.Pref
			}
			listed = true
		}
	}
	if !listed {
		return mxs, false
	}
	for _, mx := range mxs {
		if mx != nil && mx.Pref < best {
			kept = append(kept, mx)
		}
	}
	return kept, true
}
