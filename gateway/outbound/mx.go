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
