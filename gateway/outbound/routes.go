package outbound

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"golang.org/x/net/idna"

	"postern/policy"
)

// Setting names in the configuration directory.
const (
	RoutesSetting        = "routes"
	SmarthostAuthSetting = "smarthostauth"
)

// Security is a route's TLS policy.
type Security uint8

const (
	// SecurityOpportunistic is the default: STARTTLS when the peer offers
	// it, certificate not verified (RFC 3207 section 4.1: a public MX
	// cannot be expected to hold a certificate for its MX name), plain
	// text when it does not.
	SecurityOpportunistic Security = iota
	// SecurityNone never starts TLS, even when offered.
	SecurityNone
	// SecurityStartTLS requires STARTTLS and a TLS session; the message is
	// never sent in clear, but the certificate is not verified.
	SecurityStartTLS
	// SecurityRequired requires STARTTLS and a certificate that verifies
	// against the trusted roots for the relay (or MX) host name.
	SecurityRequired
	// SecuritySMTPS speaks TLS from the first byte (RFC 8314 implicit
	// TLS) and verifies the certificate as SecurityRequired does.
	SecuritySMTPS
	// SecurityDANE is not written in routes: an MX host whose DNSSEC-signed
	// TLSA records authenticate it (RFC 7672) gets STARTTLS, required, and
	// a certificate that those records match.
	SecurityDANE
)

var securityNames = map[Security]string{
	SecurityOpportunistic: "OPPORTUNISTIC",
	SecurityNone:          "NONE",
	SecurityStartTLS:      "STARTTLS",
	SecurityRequired:      "REQUIRED",
	SecuritySMTPS:         "SMTPS",
	SecurityDANE:          "DANE",
}

func (s Security) String() string {
	if n, ok := securityNames[s]; ok {
		return n
	}
	return "Security(" + strconv.Itoa(int(s)) + ")"
}

// Route says how mail for a domain leaves this host.
type Route struct {
	// Pattern is the rule's domain as written, normalised: "example.org"
	// (that domain only), ".example.org" (its subdomains) or "" (default).
	Pattern string
	// Relay is the host to hand the mail to: a host name (its A/AAAA
	// records are used, never its MX: Courier's esmtproutes semantics), or
	// an IP address when RelayAddr is valid. Empty: look up the
	// destination domain's MX records.
	Relay     string
	RelayAddr netip.Addr
	Port      int // 0: the client's default port (465 for SMTPS)
	Security  Security
	IPv4Only  bool
	IPv6Only  bool
	AuthName  string // the smarthostauth entry to use; "" uses the relay's name
	// LMTP hands the mail over with LMTP (RFC 2033) instead of SMTP, to a
	// mailbox server such as Dovecot's; default port 24.
	LMTP   bool
	Origin policy.Line
}

// UsesMX reports whether the route delivers by MX lookup.
func (r Route) UsesMX() bool { return r.Relay == "" && !r.RelayAddr.IsValid() }

// Routes is a parsed routes file. The zero value and nil route everything
// by MX with opportunistic TLS.
type Routes struct {
	exact    map[string]Route // "example.org"
	suffix   map[string]Route // ".example.org": subdomains of example.org
	fallback *Route           // "" or "*"
}

// maxRouteRules bounds the routes file.
const maxRouteRules = 100000

// ParseRoutes parses the routes setting, one rule a line:
//
//	DOMAIN: [RELAY[,PORT]] [/SECURITY=NONE|STARTTLS|REQUIRED|SMTPS] [/IPV4ONLY|/IPV6ONLY] [/AUTH=NAME] [/LMTP]
//
// DOMAIN is "example.org" (that domain), ".example.org" or "*.example.org"
// (its subdomains), or empty or "*" (every other domain: the smarthost).
// RELAY is a host name or an address in brackets ("[192.0.2.1]",
// "[2001:db8::1]"); an empty RELAY means "look up MX", so that a more
// specific rule can send some domains direct while a smarthost takes the
// rest. Errors name the file and line.
func ParseRoutes(lines []policy.Line) (*Routes, error) {
	rt := &Routes{exact: map[string]Route{}, suffix: map[string]Route{}}
	if len(lines) > maxRouteRules {
		return nil, lines[maxRouteRules].Errorf("more than %d route rules", maxRouteRules)
	}
	var errs []error
	seen := map[string]policy.Line{}
	for _, ln := range lines {
		r, err := parseRoute(ln)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if prev, dup := seen[r.Pattern]; dup {
			errs = append(errs, ln.Errorf("route for %q already given at %s:%d", displayPattern(r.Pattern), prev.File, prev.Num))
			continue
		}
		seen[r.Pattern] = ln
		switch {
		case r.Pattern == "":
			rr := r
			rt.fallback = &rr
		case strings.HasPrefix(r.Pattern, "."):
			rt.suffix[r.Pattern[1:]] = r
		default:
			rt.exact[r.Pattern] = r
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return rt, nil
}

func displayPattern(p string) string {
	if p == "" {
		return "*"
	}
	return p
}

func parseRoute(ln policy.Line) (Route, error) {
	r := Route{Origin: ln}
	colon := strings.IndexByte(ln.Text, ':')
	if colon < 0 {
		return r, ln.Errorf("want DOMAIN: RELAY[,PORT] [/OPTION...], no ':' found")
	}
	pattern, err := normalizePattern(strings.TrimSpace(ln.Text[:colon]))
	if err != nil {
		return r, ln.Errorf("%v", err)
	}
	r.Pattern = pattern
	return parseRouteAction(r, ln, ln.Text[colon+1:])
}

// parseRouteAction parses what follows a rule's ':' into r: the relay and
// the options, the same for routes and senderroutes.
func parseRouteAction(r Route, ln policy.Line, action string) (Route, error) {
	fields := strings.Fields(action)
	if len(fields) > 0 && !strings.HasPrefix(fields[0], "/") {
		if err := parseRelay(&r, fields[0]); err != nil {
			return r, ln.Errorf("%v", err)
		}
		fields = fields[1:]
	}
	for _, f := range fields {
		if !strings.HasPrefix(f, "/") {
			return r, ln.Errorf("unexpected %q: options start with '/'", f)
		}
		name, value, hasValue := strings.Cut(f[1:], "=")
		switch strings.ToLower(name) {
		case "security":
			if !hasValue {
				return r, ln.Errorf("/SECURITY needs a value: NONE, STARTTLS, REQUIRED or SMTPS")
			}
			switch strings.ToUpper(value) {
			case "NONE":
				r.Security = SecurityNone
			case "STARTTLS":
				r.Security = SecurityStartTLS
			case "REQUIRED":
				r.Security = SecurityRequired
			case "SMTPS":
				r.Security = SecuritySMTPS
			default:
				return r, ln.Errorf("/SECURITY=%s: want NONE, STARTTLS, REQUIRED or SMTPS", value)
			}
		case "ipv4only":
			if hasValue {
				return r, ln.Errorf("/ipv4only takes no value")
			}
			r.IPv4Only = true
		case "ipv6only":
			if hasValue {
				return r, ln.Errorf("/ipv6only takes no value")
			}
			r.IPv6Only = true
		case "auth":
			if !hasValue || value == "" {
				return r, ln.Errorf("/auth needs a name from smarthostauth")
			}
			if len(value) > 255 {
				return r, ln.Errorf("/auth name longer than 255 bytes")
			}
			r.AuthName = value
		case "lmtp":
			if hasValue {
				return r, ln.Errorf("/lmtp takes no value")
			}
			r.LMTP = true
		default:
			return r, ln.Errorf("unknown option %q (want /SECURITY=, /ipv4only, /ipv6only, /auth= or /lmtp)", f)
		}
	}
	if r.IPv4Only && r.IPv6Only {
		return r, ln.Errorf("/ipv4only and /ipv6only exclude each other")
	}
	if r.RelayAddr.IsValid() && (r.IPv4Only && !r.RelayAddr.Is4() || r.IPv6Only && r.RelayAddr.Is4()) {
		return r, ln.Errorf("relay address %s contradicts its address family option", r.RelayAddr)
	}
	if r.LMTP && r.UsesMX() {
		return r, ln.Errorf("/lmtp needs a relay (the mailbox server's address)")
	}
	if r.Security == SecuritySMTPS && r.UsesMX() {
		// Implicit TLS has no well-known port on MX hosts (RFC 8314 is for
		// submission); refuse rather than guess.
		return r, ln.Errorf("/SECURITY=SMTPS needs a relay")
	}
	return r, nil
}

// normalizePattern turns a rule's domain into its stored form.
func normalizePattern(p string) (string, error) {
	if p == "" || p == "*" {
		return "", nil
	}
	sub := false
	switch {
	case strings.HasPrefix(p, "*."):
		sub, p = true, p[2:]
	case strings.HasPrefix(p, "."):
		sub, p = true, p[1:]
	}
	d, err := normalizeDomain(p)
	if err != nil {
		return "", err
	}
	if sub {
		return "." + d, nil
	}
	return d, nil
}

// normalizeDomain lower-cases a domain, drops a trailing dot and converts
// U-labels to A-labels (RFC 5890), checking RFC 1035 lengths on the way.
func normalizeDomain(d string) (string, error) {
	d = strings.TrimSuffix(d, ".")
	if d == "" {
		return "", fmt.Errorf("empty domain")
	}
	if !isASCII(d) {
		a, err := idna.Lookup.ToASCII(d)
		if err != nil {
			return "", fmt.Errorf("domain %q: %v", d, err)
		}
		d = a
	}
	d = strings.ToLower(d)
	if len(d) > 253 {
		return "", fmt.Errorf("domain %q longer than 253 bytes", d)
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 {
			return "", fmt.Errorf("domain %q: empty label or label longer than 63 bytes", d)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return "", fmt.Errorf("domain %q: character %q not allowed", d, c)
			}
		}
	}
	return d, nil
}

func parseRelay(r *Route, s string) error {
	host, port := s, ""
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return fmt.Errorf("relay %q: missing ']'", s)
		}
		host, port = s[:end+1], s[end+1:]
		if port != "" {
			if !strings.HasPrefix(port, ",") {
				return fmt.Errorf("relay %q: want [ADDRESS],PORT", s)
			}
			port = port[1:]
		}
		addr, err := netip.ParseAddr(host[1 : len(host)-1])
		if err != nil || addr.Zone() != "" {
			return fmt.Errorf("relay %q: not an IP address", host)
		}
		r.RelayAddr = addr.Unmap()
	} else {
		if h, p, ok := strings.Cut(s, ","); ok {
			host, port = h, p
		}
		if _, err := netip.ParseAddr(host); err == nil {
			return fmt.Errorf("relay %q: write an address in brackets, [%s]", host, host)
		}
		d, err := normalizeDomain(host)
		if err != nil {
			return fmt.Errorf("relay: %v", err)
		}
		r.Relay = d
	}
	if port != "" || strings.HasSuffix(s, ",") {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("relay %q: port %q is not 1-65535", s, port)
		}
		r.Port = n
	}
	return nil
}

// Lookup returns the route for mail to domain: the exact rule, else the
// rule for the longest parent domain, else the default rule. matched is
// false when no rule applies (deliver by MX, opportunistic TLS).
func (rt *Routes) Lookup(domain string) (route Route, matched bool) {
	r, specific := rt.lookupSpecific(domain)
	if specific {
		return r, true
	}
	if rt != nil && rt.fallback != nil {
		return *rt.fallback, true
	}
	return Route{}, false
}

// lookupSpecific returns the rule that names domain or one of its parents,
// leaving out the default rule: a sender rule overrides the default but
// not these (see Client.route).
func (rt *Routes) lookupSpecific(domain string) (route Route, matched bool) {
	if rt == nil {
		return Route{}, false
	}
	d, err := normalizeDomain(domain)
	if err != nil {
		d = strings.ToLower(strings.TrimSuffix(domain, "."))
	}
	return lookupDomain(rt.exact, rt.suffix, d)
}

// lookupDomain finds the rule for the normalized domain d: its exact
// rule, else the rule for its nearest parent (the first hit walking up is
// the longest suffix). Shared by routes and senderroutes.
func lookupDomain(exact, suffix map[string]Route, d string) (Route, bool) {
	if r, ok := exact[d]; ok {
		return r, true
	}
	for rest := d; ; {
		dot := strings.IndexByte(rest, '.')
		if dot < 0 {
			break
		}
		rest = rest[dot+1:]
		if r, ok := suffix[rest]; ok {
			return r, true
		}
	}
	return Route{}, false
}

// Len reports how many rules were parsed.
func (rt *Routes) Len() int {
	if rt == nil {
		return 0
	}
	n := len(rt.exact) + len(rt.suffix)
	if rt.fallback != nil {
		n++
	}
	return n
}

// Credentials are a smarthost login.
type Credentials struct {
	User     string
	Password string
}

// ParseAuth parses the smarthostauth setting: lines "NAME USER PASSWORD",
// where NAME is either a route's /auth= name or a relay host name. The
// password is the rest of the line, so it may hold spaces. Files that are
// readable by group or others are reported through log (the file holds
// passwords and should be 0600), not refused, as Courier's esmtpauthclient
// does not refuse either.
func ParseAuth(lines []policy.Line, log *slog.Logger) (map[string]Credentials, error) {
	out := map[string]Credentials{}
	var errs []error
	warned := map[string]bool{}
	for _, ln := range lines {
		if !warned[ln.File] {
			warned[ln.File] = true
			if st, err := os.Stat(ln.File); err == nil && st.Mode().Perm()&0o077 != 0 && log != nil {
				log.Warn("smarthost credentials file is readable by others; chmod 600 it",
					"file", ln.File, "mode", fmt.Sprintf("%#o", st.Mode().Perm()))
			}
		}
		name, rest := cutField(ln.Text)
		user, password := cutField(rest)
		if name == "" || user == "" || password == "" {
			errs = append(errs, ln.Errorf("want NAME USER PASSWORD"))
			continue
		}
		key := strings.ToLower(strings.TrimSuffix(name, "."))
		if key == "" {
			errs = append(errs, ln.Errorf("credentials name %q is empty", name))
			continue
		}
		if _, dup := out[key]; dup {
			errs = append(errs, ln.Errorf("credentials for %q already given", name))
			continue
		}
		out[key] = Credentials{User: user, Password: password}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// LoadRoutes reads and parses the routes setting from the configuration
// directory dir; a missing setting is an empty table.
func LoadRoutes(dir string) (*Routes, error) {
	lines, err := policy.ReadSetting(dir, RoutesSetting)
	if errors.Is(err, policy.ErrNotSet) {
		return &Routes{}, nil
	}
	if err != nil {
		return nil, err
	}
	return ParseRoutes(lines)
}

// LoadAuth reads and parses the smarthostauth setting from dir; a missing
// setting is an empty table.
func LoadAuth(dir string, log *slog.Logger) (map[string]Credentials, error) {
	lines, err := policy.ReadSetting(dir, SmarthostAuthSetting)
	if errors.Is(err, policy.ErrNotSet) {
		return map[string]Credentials{}, nil
	}
	if err != nil {
		return nil, err
	}
	return ParseAuth(lines, log)
}

// cutField splits s at its first run of blanks.
func cutField(s string) (field, rest string) {
	s = strings.TrimLeft(s, " \t")
	i := strings.IndexAny(s, " \t")
	if i < 0 {
		return s, ""
	}
	return s[:i], strings.TrimLeft(s[i:], " \t")
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
