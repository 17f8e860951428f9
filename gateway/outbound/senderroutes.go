package outbound

import (
	"errors"
	"fmt"
	"strings"

	"postern/policy"
)

// SenderRoutesSetting is the setting that chooses a relay by the envelope
// sender (Postfix's sender_dependent_relayhost_maps).
const SenderRoutesSetting = "senderroutes"

// NullSenderPattern is the senderroutes key of the null reverse path
// (bounces and other DSNs, RFC 5321 section 4.5.5).
const NullSenderPattern = "<>"

// SenderRoutes is a parsed senderroutes file. The zero value and nil choose
// no relay for any sender.
type SenderRoutes struct {
	address map[string]Route // "user@example.org", local part lower-cased
	exact   map[string]Route // "example.org" (written "@example.org" or "example.org")
	suffix  map[string]Route // ".example.org": subdomains of example.org
	null    *Route           // "<>"
}

// ParseSenderRoutes parses the senderroutes setting, one rule a line:
//
//	SENDER: [RELAY[,PORT]] [/SECURITY=...] [/IPV4ONLY|/IPV6ONLY] [/AUTH=NAME] [/LMTP]
//
// The part after the ':' is read exactly as in routes (ParseRoutes).
// SENDER is "user@example.org" (that address), "@example.org" or
// "example.org" (every sender of that domain), ".example.org" or
// "*.example.org" (senders of its subdomains), or "<>" (the null sender).
// There is no default rule: the routes default (the smarthost) is that.
// Errors name the file and line.
func ParseSenderRoutes(lines []policy.Line) (*SenderRoutes, error) {
	sr := &SenderRoutes{address: map[string]Route{}, exact: map[string]Route{}, suffix: map[string]Route{}}
	if len(lines) > maxRouteRules {
		return nil, lines[maxRouteRules].Errorf("more than %d sender route rules", maxRouteRules)
	}
	var errs []error
	seen := map[string]policy.Line{}
	for _, ln := range lines {
		r, err := parseSenderRoute(ln)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if prev, dup := seen[r.Pattern]; dup {
			errs = append(errs, ln.Errorf("sender route for %q already given at %s:%d", r.Pattern, prev.File, prev.Num))
			continue
		}
		seen[r.Pattern] = ln
		switch {
		case r.Pattern == NullSenderPattern:
			rr := r
			sr.null = &rr
		case strings.Contains(r.Pattern, "@"):
			// Before the '.' test: a local part may start with a dot.
			sr.address[r.Pattern] = r
		case strings.HasPrefix(r.Pattern, "."):
			sr.suffix[r.Pattern[1:]] = r
		default:
			sr.exact[r.Pattern] = r
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return sr, nil
}

func parseSenderRoute(ln policy.Line) (Route, error) {
	r := Route{Origin: ln}
	colon := strings.IndexByte(ln.Text, ':')
	if colon < 0 {
		return r, ln.Errorf("want SENDER: RELAY[,PORT] [/OPTION...], no ':' found")
	}
	pattern, err := normalizeSenderPattern(strings.TrimSpace(ln.Text[:colon]))
	if err != nil {
		return r, ln.Errorf("%v", err)
	}
	r.Pattern = pattern
	return parseRouteAction(r, ln, ln.Text[colon+1:])
}

// normalizeSenderPattern turns a rule's sender into its stored form:
// "<>", "local@domain", "domain" or ".domain".
func normalizeSenderPattern(p string) (string, error) {
	switch p {
	case "":
		return "", errors.New("empty sender: write <> for the null sender; the default relay is the routes file's '*' rule")
	case NullSenderPattern:
		return p, nil
	case "*":
		return "", errors.New("no '*' sender: the default relay is the routes file's '*' rule")
	}
	at := strings.LastIndexByte(p, '@')
	if at < 0 {
		return normalizePattern(p) // "example.org", ".example.org", "*.example.org"
	}
	local, domain := p[:at], p[at+1:]
	if strings.HasPrefix(domain, ".") || strings.HasPrefix(domain, "*") {
		return "", fmt.Errorf("sender %q: subdomains are written .%s, without '@'", p, strings.TrimLeft(domain, "*."))
	}
	d, err := normalizeDomain(domain)
	if err != nil {
		return "", fmt.Errorf("sender %q: %v", p, err)
	}
	if local == "" {
		return d, nil // "@example.org" is the domain, as in Postfix's tables
	}
	l, err := normalizeLocalPart(local)
	if err != nil {
		return "", fmt.Errorf("sender %q: %v", p, err)
	}
	return l + "@" + d, nil
}

// normalizeLocalPart lower-cases a local part for lookup. Postfix looks
// sender addresses up case-insensitively, so we do too (RFC 5321 2.4 lets
// the receiving host, which we are for our customers' mail, decide).
func normalizeLocalPart(l string) (string, error) {
	if len(l) > 64 { // RFC 5321 4.5.3.1.1
		return "", errors.New("local part longer than 64 bytes")
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if c <= ' ' || c == 0x7f || c == '<' || c == '>' || c == '@' || c == ',' {
			return "", fmt.Errorf("local part: character %q not allowed", c)
		}
	}
	return strings.ToLower(l), nil
}

// Lookup returns the rule for mail from the envelope sender from ("" is
// the null sender), in Postfix's order: the full address, then its
// domain, then its parent domains; the first match wins.
func (sr *SenderRoutes) Lookup(from string) (route Route, matched bool) {
	if sr == nil {
		return Route{}, false
	}
	if from == "" || from == NullSenderPattern {
		if sr.null != nil {
			return *sr.null, true
		}
		return Route{}, false
	}
	at := strings.LastIndexByte(from, '@')
	if at < 0 || at == len(from)-1 {
		return Route{}, false // not an address we route by
	}
	d, err := normalizeDomain(from[at+1:])
	if err != nil {
		return Route{}, false
	}
	if at > 0 {
		if r, ok := sr.address[strings.ToLower(from[:at])+"@"+d]; ok {
			return r, true
		}
	}
	return lookupDomain(sr.exact, sr.suffix, d)
}

// Len reports how many rules were parsed.
func (sr *SenderRoutes) Len() int {
	if sr == nil {
		return 0
	}
	n := len(sr.address) + len(sr.exact) + len(sr.suffix)
	if sr.null != nil {
		n++
	}
	return n
}

// LoadSenderRoutes reads and parses the senderroutes setting from the
// configuration directory dir; a missing setting is an empty table.
func LoadSenderRoutes(dir string) (*SenderRoutes, error) {
	lines, err := policy.ReadSetting(dir, SenderRoutesSetting)
	if errors.Is(err, policy.ErrNotSet) {
		return &SenderRoutes{}, nil
	}
	if err != nil {
		return nil, err
	}
	return ParseSenderRoutes(lines)
}

// RouteSource says which table chose a route.
type RouteSource uint8

const (
	SourceMX               RouteSource = iota // no rule: by MX
	SourceRecipient                           // a routes rule naming the recipient's domain or a parent
	SourceSender                              // a senderroutes rule
	SourceRecipientDefault                    // the routes '*' rule (the smarthost)
)

func (s RouteSource) String() string {
	switch s {
	case SourceRecipient:
		return "routes"
	case SourceSender:
		return "senderroutes"
	case SourceRecipientDefault:
		return "routes default"
	}
	return "MX"
}

// route chooses how mail from sender to domain leaves. The precedence is
// Postfix's: a transport(5) entry for the recipient's domain beats
// sender_dependent_relayhost_maps, which beats relayhost. So a routes rule
// that names the domain (or a parent) wins, then a senderroutes rule, then
// the routes '*' smarthost, then MX.
func (c *Client) route(sender, domain string) (Route, RouteSource) {
	if r, ok := c.opts.Routes.lookupSpecific(domain); ok {
		return r, SourceRecipient
	}
	if r, ok := c.opts.SenderRoutes.Lookup(sender); ok {
		return r, SourceSender
	}
	if r, ok := c.opts.Routes.Lookup(domain); ok {
		return r, SourceRecipientDefault
	}
	return Route{}, SourceMX
}
