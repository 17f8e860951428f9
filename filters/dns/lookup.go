package dns

import (
	"context"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	mdns "github.com/miekg/dns"
)

// LookupTXT returns the TXT records at name, each record's character-strings
// joined without separators (RFC 7208 section 3.3, RFC 6376 section 3.6.2.2).
func (r *Resolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	ans, err := r.Query(ctx, name, mdns.TypeTXT)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(ans.Records))
	for _, rr := range ans.Records {
		var b strings.Builder
		for _, s := range rr.(*mdns.TXT).Txt {
			b.WriteString(unescapeString(s))
		}
		out = append(out, b.String())
	}
	return out, nil
}

// unescapeString turns miekg/dns's presentation form of a character-string
// (\DDD for non-printable octets, \X for a quoted X) back into the octets on
// the wire, so that checks see exactly what the zone published.
func unescapeString(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 == len(s) {
			b = append(b, c)
			continue
		}
		if i+3 < len(s) && isDigit(s[i+1]) && isDigit(s[i+2]) && isDigit(s[i+3]) {
			b = append(b, (s[i+1]-'0')*100+(s[i+2]-'0')*10+(s[i+3]-'0'))
			i += 3
			continue
		}
		b = append(b, s[i+1])
		i++
	}
	return string(b)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// EscapeString is the inverse of what LookupTXT undoes: it turns raw octets
// into miekg/dns's presentation form, for building TXT records (tests, tools).
func EscapeString(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' || c == '"':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < ' ' || c > '~':
			b.WriteByte('\\')
			b.WriteString(strconv.Itoa(int(c)/100) + strconv.Itoa(int(c)/10%10) + strconv.Itoa(int(c)%10))
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// LookupA returns the IPv4 addresses of name.
func (r *Resolver) LookupA(ctx context.Context, name string) ([]netip.Addr, error) {
	ans, err := r.Query(ctx, name, mdns.TypeA)
	if err != nil {
		return nil, err
	}
	out := make([]netip.Addr, 0, len(ans.Records))
	for _, rr := range ans.Records {
		if a, ok := netip.AddrFromSlice(rr.(*mdns.A).A.To4()); ok {
			out = append(out, a)
		}
	}
	return out, nil
}

// LookupAAAA returns the IPv6 addresses of name.
func (r *Resolver) LookupAAAA(ctx context.Context, name string) ([]netip.Addr, error) {
	ans, err := r.Query(ctx, name, mdns.TypeAAAA)
	if err != nil {
		return nil, err
	}
	out := make([]netip.Addr, 0, len(ans.Records))
	for _, rr := range ans.Records {
		if a, ok := netip.AddrFromSlice(rr.(*mdns.AAAA).AAAA.To16()); ok {
			out = append(out, a)
		}
	}
	return out, nil
}

// LookupIP returns the IPv4 and IPv6 addresses of name. It succeeds when
// either family has addresses; when neither has, the error is temporary if
// either lookup failed temporarily, else not-found (or permanent).
func (r *Resolver) LookupIP(ctx context.Context, name string) ([]netip.Addr, error) {
	v4, err4 := r.LookupA(ctx, name)
	v6, err6 := r.LookupAAAA(ctx, name)
	if len(v4)+len(v6) > 0 {
		return append(v4, v6...), nil
	}
	switch {
	case IsTemporary(err4):
		return nil, err4
	case IsTemporary(err6):
		return nil, err6
	case err4 != nil && !IsNotFound(err4):
		return nil, err4
	case err6 != nil:
		return nil, err6
	}
	return nil, err4
}

// MX is one mail exchanger. Host has no trailing dot; a null MX (RFC 7505)
// has Host "".
type MX struct {
	Host string
	Pref uint16
}

// LookupMX returns the mail exchangers of name, lowest preference first.
func (r *Resolver) LookupMX(ctx context.Context, name string) ([]MX, error) {
	ans, err := r.Query(ctx, name, mdns.TypeMX)
	if err != nil {
		return nil, err
	}
	out := make([]MX, 0, len(ans.Records))
	for _, rr := range ans.Records {
		mx := rr.(*mdns.MX)
		out = append(out, MX{Host: strings.TrimSuffix(mx.Mx, "."), Pref: mx.Preference})
	}
	slices.SortStableFunc(out, func(a, b MX) int { return int(a.Pref) - int(b.Pref) })
	return out, nil
}

// LookupPTR returns the names that ip's reverse zone entry points at, without
// trailing dots. The names are not validated: for forward-confirmed reverse
// DNS the caller looks each one up again.
func (r *Resolver) LookupPTR(ctx context.Context, ip netip.Addr) ([]string, error) {
	ans, err := r.Query(ctx, ReverseName(ip), mdns.TypePTR)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(ans.Records))
	for _, rr := range ans.Records {
		out = append(out, strings.TrimSuffix(rr.(*mdns.PTR).Ptr, "."))
	}
	return out, nil
}

// ReverseName returns the in-addr.arpa (RFC 1035 section 3.5) or ip6.arpa
// (RFC 3596 section 2.5) name for ip, with the trailing dot. An IPv4-mapped
// IPv6 address is treated as IPv4.
func ReverseName(ip netip.Addr) string {
	ip = ip.Unmap()
	var b strings.Builder
	if ip.Is4() {
		a := ip.As4()
		for i := 3; i >= 0; i-- {
			b.WriteString(strconv.Itoa(int(a[i])))
			b.WriteByte('.')
		}
		b.WriteString("in-addr.arpa.")
		return b.String()
	}
	const hexDigits = "0123456789abcdef"
	a := ip.As16()
	for i := 15; i >= 0; i-- {
		b.WriteByte(hexDigits[a[i]&0xf])
		b.WriteByte('.')
		b.WriteByte(hexDigits[a[i]>>4])
		b.WriteByte('.')
	}
	b.WriteString("ip6.arpa.")
	return b.String()
}
