// Package access owns Postern's per-client access rules: the "smtpaccess"
// setting in the format of Courier's smtpaccess files (makesmtpaccess(8),
// couriertcpd(1) "ACCESS FILE"). Each rule names an IP address or network
// and says whether a client from there is refused ("deny") or served
// ("allow"), optionally with variables — RELAYCLIENT lets it relay,
// BLOCK="text" refuses its mail with that text, anything else is kept for
// the rule engine. The most specific rule for the client's address wins,
// and only that rule applies.
//
// Lookups go through one hash map per prefix length present in the rules,
// longest first, so 100,000 rules cost a few map probes per connection.
package access

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"postern/policy"
)

// SettingName is the configuration setting that holds the rules.
const SettingName = "smtpaccess"

// Bounds on one rule's variables; longer values are refused at load.
const (
	maxVars     = 64
	maxValueLen = 1000
	maxRules    = 5000000
)

// Decision is what the rules say about one client address.
type Decision struct {
	// Allow is false for "deny": refuse the connection (Courier's
	// couriertcpd drops it; Postern answers 554 and closes).
	Allow bool
	// Relay is true when the rule sets RELAYCLIENT (with any value): the
	// client may relay without authenticating.
	Relay bool
	// Block is BLOCK's value: when not empty, the connection is accepted
	// but every message is refused with it (see BlockReply). "BLOCK" set
	// to nothing is how Courier exempts an address from DNS block lists;
	// check Vars for it with BlockCleared.
	Block string
	// Vars holds every variable the rule sets, RELAYCLIENT and BLOCK
	// included; a variable written without "=" has the value "". The map
	// is shared by all lookups that hit the rule: read it, never write it.
	Vars map[string]string
	// Origin is FILE:LINE of the rule; empty when no rule matched.
	Origin string
}

// BlockCleared reports whether the rule sets BLOCK to the empty string,
// which Courier uses to exempt an address from DNS block lists.
func (d Decision) BlockCleared() bool {
	v, ok := d.Vars["BLOCK"]
	return ok && v == ""
}

// BlockReply splits Block into an SMTP reply code and text: Courier's
// examples write the code in the value ("550 Shoo! Go away!"); a value
// without a leading 4xx or 5xx code is refused with 550. ok is false when
// Block is empty.
func (d Decision) BlockReply() (code int, text string, ok bool) {
	if d.Block == "" {
		return 0, "", false
	}
	b := d.Block
	if len(b) >= 3 && (b[0] == '4' || b[0] == '5') && isDigit(b[1]) && isDigit(b[2]) &&
		(len(b) == 3 || b[3] == ' ' || b[3] == '-') {
		code, _ = strconv.Atoi(b[:3])
		text = strings.TrimSpace(strings.TrimLeft(b[3:], " -"))
		if text == "" {
			text = "Access denied"
		}
		return code, text, true
	}
	return 550, b, true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// Rules is a loaded, checked set of access rules. It is immutable and safe
// for concurrent use.
type Rules struct {
	decisions []Decision
	v4        table[uint32]
	v6        table[[2]uint64]
	fallback  int // index of the "*" rule, -1 if none
}

// table holds one map per prefix length present, probed longest first.
type table[K comparable] struct {
	lengths []int            // descending
	byLen   [129]map[K]int32 // indexed by prefix length
}

func (t *table[K]) add(bits int, key K, idx int32) (int32, bool) {
	m := t.byLen[bits]
	if m == nil {
		m = map[K]int32{}
		t.byLen[bits] = m
		t.lengths = append(t.lengths, bits)
		sort.Sort(sort.Reverse(sort.IntSlice(t.lengths)))
	}
	if old, dup := m[key]; dup {
		return old, false
	}
	m[key] = idx
	return 0, true
}

// Len returns the number of rules.
func (r *Rules) Len() int { return len(r.decisions) }

// Lookup returns the decision of the most specific rule covering ip, and
// whether any rule (the "*" rule included) matched. When none did, the
// client is allowed with no variables, as couriertcpd does. IPv4-mapped
// IPv6 addresses are looked up as IPv4, so one IPv4 rule covers a client
// however the listener reports it. A nil *Rules has no rules.
func (r *Rules) Lookup(ip netip.Addr) (Decision, bool) {
	if r == nil {
		return Decision{Allow: true}, false
	}
	ip = ip.Unmap().WithZone("")
	switch {
	case ip.Is4():
		a := ip.As4()
		key := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
		for _, bits := range r.v4.lengths {
			if idx, ok := r.v4.byLen[bits][key&mask32(bits)]; ok {
				return r.decisions[idx], true
			}
		}
	case ip.Is6():
		key := split128(ip.As16())
		for _, bits := range r.v6.lengths {
			if idx, ok := r.v6.byLen[bits][mask128(key, bits)]; ok {
				return r.decisions[idx], true
			}
		}
	}
	if r.fallback >= 0 {
		return r.decisions[r.fallback], true
	}
	return Decision{Allow: true}, false
}

func mask32(bits int) uint32 {
	if bits == 0 {
		return 0
	}
	return ^uint32(0) << (32 - bits)
}

func split128(a [16]byte) [2]uint64 {
	var k [2]uint64
	for i := range 8 {
		k[0] = k[0]<<8 | uint64(a[i])
		k[1] = k[1]<<8 | uint64(a[i+8])
	}
	return k
}

func mask128(k [2]uint64, bits int) [2]uint64 {
	switch {
	case bits == 0:
		return [2]uint64{}
	case bits < 64:
		return [2]uint64{k[0] & (^uint64(0) << (64 - bits)), 0}
	case bits == 64:
		return [2]uint64{k[0], 0}
	case bits < 128:
		return [2]uint64{k[0], k[1] & (^uint64(0) << (128 - bits))}
	}
	return k
}

// Load reads the smtpaccess setting from configDir. Every problem is
// returned together (errors.Join of *policy.Error, each with FILE:LINE). A
// missing setting means no rules: every client is allowed.
func Load(configDir string) (*Rules, error) {
	lines, err := policy.ReadSetting(configDir, SettingName)
	if errors.Is(err, policy.ErrNotSet) {
		lines, err = nil, nil
	}
	if err != nil {
		return nil, err
	}
	return Parse(lines)
}

// Parse builds Rules from setting lines (as policy.ReadSetting returns
// them).
func Parse(lines []policy.Line) (*Rules, error) {
	r := &Rules{fallback: -1}
	var errs []error
	for _, l := range lines {
		if len(r.decisions) >= maxRules {
			errs = append(errs, l.Errorf("more than %d rules", maxRules))
			break
		}
		addrText, actionText, ok := cutSpace(l.Text)
		if !ok {
			errs = append(errs, l.Errorf("missing action: write ADDRESS<TAB>allow[,VAR=value...] or ADDRESS<TAB>deny"))
			continue
		}
		d, err := parseAction(actionText)
		if err != nil {
			errs = append(errs, l.Errorf("%v", err))
			continue
		}
		d.Origin = fmt.Sprintf("%s:%d", l.File, l.Num)
		idx := int32(len(r.decisions))
		if addrText == "*" {
			if r.fallback >= 0 {
				errs = append(errs, l.Errorf("second \"*\" rule (the first is at %s)", r.decisions[r.fallback].Origin))
				continue
			}
			r.fallback = int(idx)
			r.decisions = append(r.decisions, d)
			continue
		}
		prefix, err := ParseAddress(addrText)
		if err != nil {
			errs = append(errs, l.Errorf("%v", err))
			continue
		}
		var old int32
		var added bool
		if prefix.Addr().Is4() {
			a := prefix.Addr().As4()
			key := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
			old, added = r.v4.add(prefix.Bits(), key, idx)
		} else {
			old, added = r.v6.add(prefix.Bits(), split128(prefix.Addr().As16()), idx)
		}
		if !added {
			errs = append(errs, l.Errorf("second rule for %s (the first is at %s)", prefix, r.decisions[old].Origin))
			continue
		}
		r.decisions = append(r.decisions, d)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return r, nil
}

// cutSpace splits at the first run of blanks. Courier requires exactly one
// tab; any run of spaces or tabs is accepted here.
func cutSpace(s string) (before, after string, ok bool) {
	i := strings.IndexAny(s, " \t")
	if i < 0 {
		return s, "", false
	}
	after = strings.TrimLeft(s[i:], " \t")
	return s[:i], after, after != ""
}

// ParseAddress reads the address column of a rule, returning it as a
// masked prefix. Accepted forms:
//
//	192.168          IPv4 by octets: 1 to 4 decimal octets (192.168.0.0/16)
//	:2001:0db8       Courier's IPv6 form: ":" then 1 to 8 groups of 4 hex
//	                 digits, the prefix being 16 bits per group
//	10.0.0.0/8       CIDR, IPv4 or IPv6; host bits must be zero
//	2001:db8::1      a single address in the standard notation
//
// IPv4-mapped IPv6 prefixes (::ffff:a.b.c.d/n, n ≥ 96) become IPv4.
func ParseAddress(s string) (netip.Prefix, error) {
	if s == "" {
		return netip.Prefix{}, errors.New("empty address")
	}
	var p netip.Prefix
	switch {
	case strings.Contains(s, "/"):
		var err error
		p, err = netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("address %q: %v", s, err)
		}
		if p.Addr().Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("address %q: zones are not allowed", s)
		}
		if m := p.Masked(); m != p {
			return netip.Prefix{}, fmt.Errorf("address %q: host bits set (did you mean %s?)", s, m)
		}
	case strings.HasPrefix(s, ":") && !strings.HasPrefix(s, "::"):
		var err error
		p, err = parseCourierIPv6(s)
		if err != nil {
			return netip.Prefix{}, err
		}
	case strings.Trim(s, "0123456789.") == "":
		var err error
		p, err = parseOctets(s)
		if err != nil {
			return netip.Prefix{}, err
		}
	default:
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("address %q: not an IP address, network or \"*\"", s)
		}
		if a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("address %q: zones are not allowed", s)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p, nil
}

// parseOctets reads Courier's IPv4 form: "10" is 10.0.0.0/8, "1.2.3.4" one
// host. Five parts is couriertcpd's -accesslocal "IP.PORT" form, which
// Postern does not use.
func parseOctets(s string) (netip.Prefix, error) {
	parts := strings.Split(s, ".")
	if len(parts) > 4 {
		return netip.Prefix{}, fmt.Errorf("address %q: more than 4 octets (the IP.PORT form of couriertcpd -accesslocal is not supported)", s)
	}
	var a [4]byte
	for i, part := range parts {
		n, err := strconv.Atoi(part)
		if part == "" || len(part) > 3 || err != nil || n > 255 {
			return netip.Prefix{}, fmt.Errorf("address %q: octet %q is not 0 to 255", s, part)
		}
		a[i] = byte(n)
	}
	return netip.PrefixFrom(netip.AddrFrom4(a), 8*len(parts)), nil
}

// parseCourierIPv6 reads ":hhhh:hhhh..." (couriertcpd(1) "IPv6
// addresses"): whole 16-bit groups, zero-padded. Courier wants lower case;
// upper case is accepted here.
func parseCourierIPv6(s string) (netip.Prefix, error) {
	groups := strings.Split(s[1:], ":")
	if len(groups) > 8 {
		return netip.Prefix{}, fmt.Errorf("address %q: more than 8 groups", s)
	}
	var a [16]byte
	for i, g := range groups {
		if len(g) != 4 {
			return netip.Prefix{}, fmt.Errorf("address %q: group %q is not 4 hex digits (Courier's form is zero-padded, e.g. :2001:0db8)", s, g)
		}
		n, err := strconv.ParseUint(g, 16, 16)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("address %q: group %q is not hexadecimal", s, g)
		}
		a[2*i], a[2*i+1] = byte(n>>8), byte(n)
	}
	return netip.PrefixFrom(netip.AddrFrom16(a), 16*len(groups)), nil
}

// parseAction reads "deny" or "allow[,NAME[=value]...]". Values may be
// double-quoted to hold commas or spaces; inside quotes \" and \\ stand
// for " and \.
func parseAction(s string) (Decision, error) {
	items, err := splitVars(s)
	if err != nil {
		return Decision{}, err
	}
	switch strings.ToLower(items[0]) {
	case "deny":
		if len(items) > 1 {
			return Decision{}, errors.New("\"deny\" takes no variables (use allow,BLOCK=\"...\" to refuse mail but keep the connection)")
		}
		return Decision{Allow: false}, nil
	case "allow":
	default:
		return Decision{}, fmt.Errorf("action %q: not allow or deny", items[0])
	}
	d := Decision{Allow: true}
	if len(items)-1 > maxVars {
		return Decision{}, fmt.Errorf("more than %d variables", maxVars)
	}
	if len(items) > 1 {
		d.Vars = make(map[string]string, len(items)-1)
	}
	for _, it := range items[1:] {
		name, value, hasValue := strings.Cut(it, "=")
		if !validVarName(name) {
			return Decision{}, fmt.Errorf("variable %q: a name is letters, digits and _ and does not start with a digit", name)
		}
		if hasValue {
			if value, err = unquote(value); err != nil {
				return Decision{}, fmt.Errorf("variable %s: %v", name, err)
			}
		}
		if len(value) > maxValueLen {
			return Decision{}, fmt.Errorf("variable %s: value longer than %d bytes", name, maxValueLen)
		}
		if _, dup := d.Vars[name]; dup {
			return Decision{}, fmt.Errorf("variable %s set twice", name)
		}
		d.Vars[name] = value
	}
	_, d.Relay = d.Vars["RELAYCLIENT"]
	d.Block = d.Vars["BLOCK"]
	return d, nil
}

// splitVars splits at commas outside double quotes.
func splitVars(s string) ([]string, error) {
	var items []string
	inQuote, start := false, 0
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\' && inQuote:
			i++
		case s[i] == '"':
			inQuote = !inQuote
		case s[i] == ',' && !inQuote:
			items = append(items, strings.TrimSpace(s[start:i]))
			start = i + 1
		}
	}
	if inQuote {
		return nil, errors.New("unterminated quote")
	}
	items = append(items, strings.TrimSpace(s[start:]))
	for i, it := range items {
		if it == "" {
			if i == 0 {
				return nil, errors.New("missing action")
			}
			return nil, errors.New("empty variable between commas")
		}
	}
	return items, nil
}

func validVarName(n string) bool {
	if n == "" || isDigit(n[0]) {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !(c == '_' || isDigit(c) || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')) {
			return false
		}
	}
	return true
}

// unquote returns a value as written, or the inside of a double-quoted
// value with \" and \\ undone. A quote anywhere else is refused, as it
// would mean something was mistyped.
func unquote(v string) (string, error) {
	if !strings.HasPrefix(v, "\"") {
		if strings.ContainsRune(v, '"') {
			return "", errors.New("stray double quote in value")
		}
		return v, nil
	}
	if len(v) < 2 || !strings.HasSuffix(v, "\"") {
		return "", errors.New("text after the closing quote")
	}
	var b strings.Builder
	inner := v[1 : len(v)-1]
	for i := 0; i < len(inner); i++ {
		c := inner[i]
		if c == '\\' && i+1 < len(inner) {
			i++
			c = inner[i]
		} else if c == '"' {
			return "", errors.New("text after the closing quote")
		}
		b.WriteByte(c)
	}
	return b.String(), nil
}
