// Package spf evaluates Sender Policy Framework records (RFC 7208): whether
// a client IP address may send mail for the domain of the MAIL FROM address
// or of the HELO name.
//
// A domain publishes one TXT record starting with "v=spf1" that lists, left
// to right, the mechanisms that match authorized senders (ip4, ip6, a, mx,
// ptr, exists, include, all), each with a qualifier that says what a match
// means (+ pass, - fail, ~ softfail, ? neutral), and may add a redirect= to
// another domain's policy and an exp= explanation for failures. The check
// answers one of seven results: none, neutral, pass, fail, softfail,
// temperror, permerror (section 2.6). DNS work is bounded: at most 10 terms
// that cause lookups, at most 2 lookups that find nothing (section 4.6.4),
// and an overall timeout.
//
// The evaluator is our own, on the shared resolver of postern/filters/dns,
// rather than a wrapper of blitiri.com.ar/go/spf: that library skips about
// thirty cases of the RFC 7208 test suite (character-set and top-label
// checks, errors after a match, the exp= modifier, the %{p} macro) and
// brings its own resolver, while we want one resolver, one cache and one set
// of limits for every check. The whole suite runs in this package's tests.
//
// This package owns SPF evaluation and its rendering into Received-SPF
// (section 9.1) and the spf= part of Authentication-Results (RFC 8601); the
// filter pipeline decides what each result means for the SMTP session.
package spf

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"postern/filters/dns"
)

// Code is an SPF result (RFC 7208 section 2.6).
type Code int

// The results, in the RFC's words.
const (
	None      Code = iota // no policy, or no checkable domain
	Neutral               // the domain makes no assertion (?, or nothing matched)
	Pass                  // the client is authorized
	Fail                  // the client is not authorized
	SoftFail              // probably not authorized (~)
	TempError             // a transient (DNS) error; try again later
	PermError             // the domain's records could not be interpreted
)

var codeNames = [...]string{"none", "neutral", "pass", "fail", "softfail", "temperror", "permerror"}

func (c Code) String() string {
	if c >= 0 && int(c) < len(codeNames) {
		return codeNames[c]
	}
	return fmt.Sprintf("Code(%d)", int(c))
}

// ParseCode returns the Code named s (case-insensitive), as written in
// Received-SPF and in the RFC.
func ParseCode(s string) (Code, bool) {
	for i, n := range codeNames {
		if strings.EqualFold(s, n) {
			return Code(i), true
		}
	}
	return 0, false
}

// Identity names which identity was checked (RFC 7208 section 2.3, 2.4).
const (
	IdentityMailFrom = "mailfrom"
	IdentityHELO     = "helo"
)

// Result is the outcome of one check, with everything needed to explain it.
type Result struct {
	Code     Code
	Identity string     // IdentityMailFrom or IdentityHELO
	Domain   string     // the domain checked first (the sender's or the HELO name)
	Sender   string     // the sender checked (postmaster@HELO for the null sender)
	IP       netip.Addr // the client address
	Helo     string

	// Mechanism is the term that decided ("-all", "ip4:192.0.2.0/24",
	// "include:_spf.example.net"), "default" when nothing matched, empty when
	// no record was evaluated.
	Mechanism string
	// MatchDomain is the domain whose record held Mechanism (differs from
	// Domain after include or redirect).
	MatchDomain string
	// Record is the policy found at Domain.
	Record string
	// Explanation is, for fail, the domain's exp= text or our default
	// (section 6.2): it goes into the SMTP rejection.
	Explanation string
	// Reason says why in one line, for logs and the admin command.
	Reason string
	// Lookups lists the DNS questions asked and what came back, in order.
	Lookups []string
	// DNSTerms and VoidLookups are the counts checked against the limits.
	DNSTerms    int
	VoidLookups int
}

// Options tune a check. The zero value is RFC 7208's recommendation.
type Options struct {
	// MaxDNSTerms bounds the terms that cause DNS lookups (include, a, mx,
	// ptr, exists, redirect); RFC 7208 section 4.6.4 says 10.
	MaxDNSTerms int
	// MaxVoidLookups bounds lookups that return nothing; section 4.6.4
	// recommends 2.
	MaxVoidLookups int
	// Timeout bounds the whole check; section 4.6.4 asks for at least 20 s.
	Timeout time.Duration
	// Receiver is our host name: %{r} in explanations and receiver= in
	// Received-SPF.
	Receiver string
	// DefaultExplanation is a macro-string used for fail when the domain
	// gives no usable exp=.
	DefaultExplanation string
	// Now gives %{t}; nil means time.Now.
	Now func() time.Time
}

// Defaults for Options fields left zero.
const (
	DefaultMaxDNSTerms    = 10
	DefaultMaxVoidLookups = 2
	DefaultTimeout        = 20 * time.Second
	DefaultExplanation    = "%{i} is not one of %{d}'s designated mail servers"
	maxLookupTrace        = 200
	maxPTRNames           = 10 // section 4.6.4: at most 10 PTR names looked at
	maxMXNames            = 10 // section 4.6.4: at most 10 MX names resolved
	maxRecursion          = 20 // include/redirect depth; the term limit stops it first
)

// Check evaluates the MAIL FROM identity (RFC 7208 section 2.4): the domain
// of sender, or "postmaster@helo" when sender is empty (the null reverse
// path), for the client address ip.
func Check(ctx context.Context, r *dns.Resolver, ip net.IP, helo, sender string) Result {
	return CheckWith(ctx, r, ip, helo, sender, Options{})
}

// CheckWith is Check with options.
func CheckWith(ctx context.Context, r *dns.Resolver, ip net.IP, helo, sender string, opts Options) Result {
	addr, _ := netip.AddrFromSlice(ip)
	return CheckAddr(ctx, r, addr, helo, sender, IdentityMailFrom, opts)
}

// CheckHELO evaluates the HELO identity (RFC 7208 section 2.3): the HELO
// name as domain, with "postmaster@helo" as sender.
func CheckHELO(ctx context.Context, r *dns.Resolver, ip net.IP, helo string, opts Options) Result {
	addr, _ := netip.AddrFromSlice(ip)
	return CheckAddr(ctx, r, addr, helo, "", IdentityHELO, opts)
}

// CheckAddr is the general form: identity is IdentityMailFrom (sender's
// domain, or postmaster@helo for an empty sender) or IdentityHELO (helo).
func CheckAddr(ctx context.Context, r *dns.Resolver, ip netip.Addr, helo, sender, identity string, opts Options) Result {
	opts = withDefaults(opts)
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()

	helo = strings.TrimSuffix(helo, ".")
	if identity == IdentityHELO || sender == "" {
		sender = "postmaster@" + helo
	}
	local, domain := splitSender(sender)
	if local == "" {
		// Section 4.3: a sender without local-part is postmaster@domain.
		local = "postmaster"
		sender = local + "@" + domain
	}
	res := Result{Identity: identity, Domain: domain, Sender: sender, IP: ip.Unmap(), Helo: helo}
	if !ip.IsValid() {
		res.Code, res.Reason = PermError, "no valid client IP address"
		return res
	}
	e := &evaluator{
		ctx: ctx, r: r, opts: opts, ip: ip.Unmap(),
		sender: sender, local: local, senderDomain: domain, helo: helo,
	}
	out := e.checkHost(domain, 0)
	res.Code = out.code
	res.Mechanism = out.mech
	res.MatchDomain = out.domain
	res.Reason = out.reason
	res.Record = e.topRecord
	res.Lookups = e.trace
	res.DNSTerms = e.terms
	res.VoidLookups = e.voids
	if out.code == Fail {
		res.Explanation = e.explain(out)
	}
	return res
}

func withDefaults(o Options) Options {
	if o.MaxDNSTerms <= 0 {
		o.MaxDNSTerms = DefaultMaxDNSTerms
	}
	if o.MaxVoidLookups <= 0 {
		o.MaxVoidLookups = DefaultMaxVoidLookups
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.DefaultExplanation == "" {
		o.DefaultExplanation = DefaultExplanation
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// splitSender splits at the last '@'; a sender without one is taken as a
// bare domain.
func splitSender(s string) (local, domain string) {
	i := strings.LastIndexByte(s, '@')
	if i < 0 {
		return "", strings.TrimSuffix(s, ".")
	}
	return s[:i], strings.TrimSuffix(s[i+1:], ".")
}

// outcome is what one check_host() call decided.
type outcome struct {
	code   Code
	mech   string
	domain string
	rec    *record
	reason string
}

// evalError ends evaluation with temperror or permerror.
type evalError struct {
	code   Code
	reason string
}

type evaluator struct {
	ctx          context.Context
	r            *dns.Resolver
	opts         Options
	ip           netip.Addr
	sender       string
	local        string
	senderDomain string
	helo         string

	terms, voids int
	trace        []string
	topRecord    string

	via string // for reports: what matched inside a passing include

	ptrLooked    bool
	ptrValidated []string // validated PTR names, for %{p}
}

// checkHost is the check_host() function of RFC 7208 section 4.
func (e *evaluator) checkHost(domain string, depth int) outcome {
	// Section 4.3: a malformed or single-label domain has no policy.
	if !validCheckDomain(domain) {
		return outcome{code: None, domain: domain, reason: fmt.Sprintf("%q is not a valid domain name", domain)}
	}
	if depth > maxRecursion {
		return outcome{code: PermError, domain: domain, reason: "include/redirect nesting too deep"}
	}
	txts, err := e.lookupTXT(domain)
	if err != nil {
		switch {
		case dns.IsNotFound(err) || errors.Is(err, dns.ErrInvalidName):
			return outcome{code: None, domain: domain, reason: "no SPF record at " + domain}
		case dns.IsTemporary(err):
			// Section 4.4: a failed record lookup is temperror.
			return outcome{code: TempError, domain: domain, reason: "DNS error looking up the SPF record of " + domain + ": " + err.Error()}
		default:
			return outcome{code: PermError, domain: domain, reason: "DNS error looking up the SPF record of " + domain + ": " + err.Error()}
		}
	}
	// Section 4.5: exactly one record must start with "v=spf1".
	var spf []string
	for _, t := range txts {
		if isSPFRecord(t) {
			spf = append(spf, t)
		}
	}
	switch len(spf) {
	case 0:
		return outcome{code: None, domain: domain, reason: "no SPF record at " + domain}
	case 1:
	default:
		return outcome{code: PermError, domain: domain, reason: fmt.Sprintf("%d SPF records at %s (section 4.5 allows one)", len(spf), domain)}
	}
	if depth == 0 {
		e.topRecord = spf[0]
	}
	rec, err := parseRecord(spf[0])
	if err != nil {
		return outcome{code: PermError, domain: domain, reason: fmt.Sprintf("SPF record of %s: %v", domain, err)}
	}
	vals := e.values(domain)
	// Section 4.6.2: mechanisms are evaluated left to right; the first
	// match decides.
	for i := range rec.mechs {
		m := &rec.mechs[i]
		e.via = ""
		matched, ee := e.match(m, domain, vals, depth)
		if ee != nil {
			return outcome{code: ee.code, mech: m.term, domain: domain, rec: rec, reason: ee.reason}
		}
		if matched {
			code := qualifierCode(m.qualifier)
			return outcome{code: code, mech: m.term, domain: domain, rec: rec,
				reason: fmt.Sprintf("%s matched %s in the SPF record of %s%s", e.ip, m.term, domain, e.via)}
		}
	}
	// Section 6.1: redirect applies only when no mechanism matched.
	if rec.hasRedir {
		if ee := e.countTerm(); ee != nil {
			return outcome{code: ee.code, mech: "redirect=" + rec.redirect, domain: domain, rec: rec, reason: ee.reason}
		}
		target := e.expandDomain(rec.redirect, vals)
		out := e.checkHost(target, depth+1)
		if out.code == None {
			return outcome{code: PermError, mech: "redirect=" + rec.redirect, domain: domain, rec: rec,
				reason: fmt.Sprintf("redirect from %s to %q, which has no SPF record (section 6.1)", domain, target)}
		}
		return out
	}
	// Section 4.7: nothing matched and no redirect: neutral.
	return outcome{code: Neutral, mech: "default", domain: domain, rec: rec,
		reason: fmt.Sprintf("no mechanism in the SPF record of %s matched %s", domain, e.ip)}
}

func qualifierCode(q byte) Code {
	switch q {
	case '-':
		return Fail
	case '~':
		return SoftFail
	case '?':
		return Neutral
	}
	return Pass
}

// validCheckDomain applies section 4.3: a multi-label name with labels of 1
// to 63 octets, 253 octets in all, not an address literal.
func validCheckDomain(d string) bool {
	d = strings.TrimSuffix(d, ".")
	if d == "" || len(d) > 253 || strings.HasPrefix(d, "[") {
		return false
	}
	labels := strings.Split(d, ".")
	if len(labels) < 2 {
		return false
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return false
		}
	}
	return true
}

func (e *evaluator) values(domain string) *macroValues {
	return &macroValues{
		sender: e.sender, local: e.local, domainS: e.senderDomain, domain: domain,
		ip: e.ip, helo: e.helo, receiver: e.opts.Receiver, now: e.opts.Now().Unix(),
		ptr: func() string { return e.validatedPTR(domain) },
	}
}

// expandDomain expands a domain-spec that parseRecord already validated and
// applies the 253-octet truncation of section 7.3.
func (e *evaluator) expandDomain(spec string, vals *macroValues) string {
	toks, err := parseMacroString(spec, false)
	if err != nil {
		return ""
	}
	return truncateDomain(expand(toks, vals))
}

// countTerm counts a term that causes DNS lookups (section 4.6.4).
func (e *evaluator) countTerm() *evalError {
	e.terms++
	if e.terms > e.opts.MaxDNSTerms {
		return &evalError{PermError, fmt.Sprintf("more than %d DNS-querying terms (RFC 7208 section 4.6.4)", e.opts.MaxDNSTerms)}
	}
	return nil
}

// countVoid counts a lookup that found nothing (section 4.6.4).
func (e *evaluator) countVoid() *evalError {
	e.voids++
	if e.voids > e.opts.MaxVoidLookups {
		return &evalError{PermError, fmt.Sprintf("more than %d void DNS lookups (RFC 7208 section 4.6.4)", e.opts.MaxVoidLookups)}
	}
	return nil
}

// lookupFailure turns a lookup error into "void" (nothing found: no match)
// or an evaluation error.
func (e *evaluator) lookupFailure(what string, err error) *evalError {
	switch {
	case dns.IsNotFound(err), errors.Is(err, dns.ErrInvalidName):
		return e.countVoid()
	case dns.IsTemporary(err):
		return &evalError{TempError, "DNS error in " + what + ": " + err.Error()}
	default:
		return &evalError{PermError, "DNS error in " + what + ": " + err.Error()}
	}
}

func (e *evaluator) match(m *mechanism, domain string, vals *macroValues, depth int) (bool, *evalError) {
	switch m.name {
	case "all":
		return true, nil
	case "ip4":
		return e.ip.Is4() && m.prefix.Contains(e.ip), nil
	case "ip6":
		return e.ip.Is6() && m.prefix.Contains(e.ip), nil
	}
	if ee := e.countTerm(); ee != nil {
		return false, ee
	}
	target := domain
	if m.domain != "" {
		target = e.expandDomain(m.domain, vals)
	}
	switch m.name {
	case "include":
		// Section 5.2: the included policy's pass is our match; fail,
		// softfail and neutral are no match; errors propagate; none is
		// permerror.
		out := e.checkHost(target, depth+1)
		switch out.code {
		case Pass:
			e.via = fmt.Sprintf(" (via %s in the SPF record of %s%s)", out.mech, out.domain, e.via)
			return true, nil
		case Fail, SoftFail, Neutral:
			return false, nil
		case TempError:
			return false, &evalError{TempError, "include:" + target + ": " + out.reason}
		case None:
			return false, &evalError{PermError, "include:" + target + " has no SPF record (section 5.2)"}
		default:
			return false, &evalError{PermError, "include:" + target + ": " + out.reason}
		}
	case "a":
		addrs, err := e.lookupAddrs(target, e.ip.Is4())
		if err != nil {
			return false, e.lookupFailure(m.term, err)
		}
		return e.anyInCIDR(addrs, m), nil
	case "mx":
		mxs, err := e.lookupMX(target)
		if err != nil {
			return false, e.lookupFailure(m.term, err)
		}
		if len(mxs) > maxMXNames {
			return false, &evalError{PermError, fmt.Sprintf("%s: %d MX records, more than %d (section 4.6.4)", m.term, len(mxs), maxMXNames)}
		}
		for _, mx := range mxs {
			if mx.Host == "" {
				continue // null MX (RFC 7505)
			}
			addrs, err := e.lookupAddrs(mx.Host, e.ip.Is4())
			if err != nil {
				if dns.IsTemporary(err) {
					return false, &evalError{TempError, "DNS error in " + m.term + ": " + err.Error()}
				}
				continue
			}
			if e.anyInCIDR(addrs, m) {
				return true, nil
			}
		}
		return false, nil
	case "ptr":
		// Section 5.5: validated names equal to or under the target match.
		names, err := e.lookupPTR()
		if err != nil {
			if dns.IsNotFound(err) {
				return false, e.countVoid()
			}
			return false, nil // a DNS error on the PTR lookup is no match
		}
		for _, name := range e.validate(names) {
			if strings.EqualFold(name, target) || hasSuffixFold(name, "."+target) {
				return true, nil
			}
		}
		return false, nil
	case "exists":
		// Section 5.7: an A lookup, whatever the client's address family.
		addrs, err := e.lookupAddrs(target, true)
		if err != nil {
			return false, e.lookupFailure(m.term, err)
		}
		return len(addrs) > 0, nil
	}
	return false, &evalError{PermError, "unknown mechanism " + m.term}
}

func hasSuffixFold(s, suffix string) bool {
	return len(s) >= len(suffix) && strings.EqualFold(s[len(s)-len(suffix):], suffix)
}

func (e *evaluator) anyInCIDR(addrs []netip.Addr, m *mechanism) bool {
	bits := m.cidr4
	if e.ip.Is6() {
		bits = m.cidr6
	}
	for _, a := range addrs {
		a = a.Unmap()
		if a.Is4() != e.ip.Is4() {
			continue
		}
		b := bits
		if b < 0 {
			b = a.BitLen()
		}
		p, err := a.Prefix(b)
		if err == nil && p.Contains(e.ip) {
			return true
		}
	}
	return false
}

// validate keeps the PTR names (at most 10) whose A/AAAA records include the
// client address: forward-confirmed names (section 5.5).
func (e *evaluator) validate(names []string) []string {
	var ok []string
	for i, name := range names {
		if i >= maxPTRNames {
			break
		}
		addrs, err := e.lookupAddrs(name, e.ip.Is4())
		if err != nil {
			continue // section 5.5: a DNS error skips the name
		}
		for _, a := range addrs {
			if a.Unmap() == e.ip {
				ok = append(ok, name)
				break
			}
		}
	}
	return ok
}

// validatedPTR is %{p} (section 7.3): a validated name equal to or under
// domain if any, else any validated name, else "unknown".
func (e *evaluator) validatedPTR(domain string) string {
	if !e.ptrLooked {
		e.ptrLooked = true
		if names, err := e.lookupPTR(); err == nil {
			e.ptrValidated = e.validate(names)
		}
	}
	for _, n := range e.ptrValidated {
		if strings.EqualFold(n, domain) || hasSuffixFold(n, "."+domain) {
			return n
		}
	}
	if len(e.ptrValidated) > 0 {
		return e.ptrValidated[0]
	}
	return "unknown"
}

// explain computes the explanation for a fail (section 6.2): the exp= of
// the record that failed, fetched and expanded; on any trouble, the
// default.
func (e *evaluator) explain(out outcome) string {
	vals := e.values(out.domain)
	if out.rec != nil && out.rec.hasExp {
		target := e.expandDomain(out.rec.exp, vals)
		if txts, err := e.lookupTXT(target); err == nil && len(txts) == 1 {
			if toks, err := parseMacroString(txts[0], true); err == nil {
				return expand(toks, vals)
			}
		}
	}
	toks, err := parseMacroString(e.opts.DefaultExplanation, true)
	if err != nil {
		return e.opts.DefaultExplanation
	}
	return expand(toks, vals)
}

// DNS helpers: each records what was asked and what came back.

func (e *evaluator) note(q string, n int, err error) {
	if len(e.trace) >= maxLookupTrace {
		return
	}
	switch {
	case err == nil:
		e.trace = append(e.trace, fmt.Sprintf("%s: %d record(s)", q, n))
	case dns.IsNotFound(err):
		e.trace = append(e.trace, q+": none")
	default:
		e.trace = append(e.trace, q+": "+err.Error())
	}
}

func (e *evaluator) lookupTXT(name string) ([]string, error) {
	txts, err := e.r.LookupTXT(e.ctx, name)
	e.note("TXT "+name, len(txts), err)
	return txts, err
}

func (e *evaluator) lookupAddrs(name string, v4 bool) ([]netip.Addr, error) {
	if v4 {
		a, err := e.r.LookupA(e.ctx, name)
		e.note("A "+name, len(a), err)
		return a, err
	}
	a, err := e.r.LookupAAAA(e.ctx, name)
	e.note("AAAA "+name, len(a), err)
	return a, err
}

func (e *evaluator) lookupMX(name string) ([]dns.MX, error) {
	mx, err := e.r.LookupMX(e.ctx, name)
	e.note("MX "+name, len(mx), err)
	return mx, err
}

func (e *evaluator) lookupPTR() ([]string, error) {
	names, err := e.r.LookupPTR(e.ctx, e.ip)
	e.note("PTR "+strings.TrimSuffix(dns.ReverseName(e.ip), "."), len(names), err)
	return names, err
}
