// Package dmarc evaluates Domain-based Message Authentication, Reporting and
// Conformance (RFC 7489): whether a message's author domain (the domain of
// its From header field, the one a reader sees) is vouched for by SPF or
// DKIM, and what the domain asks receivers to do when it is not.
//
// A domain publishes a TXT record at _dmarc.DOMAIN ("v=DMARC1; p=reject;
// ..."). A message passes DMARC when SPF passed for a MAIL FROM domain, or a
// DKIM signature passed for a d= domain, that is aligned with the From
// domain: identical in strict mode, sharing the organizational domain (the
// registered domain under a public suffix) in relaxed mode, the default.
// When the From domain has no record, the record of its organizational
// domain applies, with its sp= for subdomains. A failing message gets the
// domain's policy (none, quarantine, reject), applied to pct percent of
// failing mail and the next milder policy to the rest.
//
// The package owns record parsing (lenient where section 6.3 asks for it,
// which is why it does not use go-msgauth's stricter parser), the lookup
// with the organizational-domain fallback (golang.org/x/net/publicsuffix,
// DNS through postern/filters/dns), alignment, sampling, the author-domain
// extraction of section 6.6.1, and the DATA-stage filter that turns a
// failing reject policy into "550 5.7.1 Rejected by DMARC policy for
// DOMAIN". SPF and DKIM results come from their own filters' results in the
// session (postern/filters/spf, postern/filters/dkim).
package dmarc

import (
	"context"
	"fmt"
	"strings"
	"time"

	"golang.org/x/net/publicsuffix"

	"postern/filters/dns"
	"postern/filters/spf"
)

// Status is the DMARC result (RFC 7489 section 11.2, RFC 8601).
type Status int

const (
	None      Status = iota // the author domain publishes no DMARC policy
	Pass                    // an aligned identifier passed SPF or DKIM
	Fail                    // no aligned identifier passed
	TempError               // the policy could not be fetched now, or a check it depends on failed temporarily
	PermError               // no single author domain (From missing, several, unparsable), or an unusable record
)

var statusNames = [...]string{"none", "pass", "fail", "temperror", "permerror"}

func (s Status) String() string {
	if s >= 0 && int(s) < len(statusNames) {
		return statusNames[s]
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

// Input is what DMARC evaluates: the author domain and the results of the
// underlying checks.
type Input struct {
	// FromDomain is the RFC5322.From domain (see FromDomain).
	FromDomain string
	// SPF is the SPF result for SPFDomain: the MAIL FROM domain, or the
	// HELO name when the reverse path was null (section 3.1.2, 4.1).
	SPF       spf.Code
	SPFDomain string
	// DKIMDomains are the d= domains of the DKIM signatures that passed.
	DKIMDomains []string
	// DKIMTempError is set when a DKIM signature could not be checked for
	// a temporary reason.
	DKIMTempError bool
}

// EvalOptions tune Evaluate.
type EvalOptions struct {
	// RandIntN returns a number in [0, n); it samples pct=. nil means
	// math/rand/v2's IntN. Tests inject a fixed source.
	RandIntN func(n int) int
	// Timeout bounds the DNS work of one evaluation.
	Timeout time.Duration
}

// DefaultTimeout bounds the record lookups of one evaluation.
const DefaultTimeout = 10 * time.Second

// Evaluation is the outcome with everything needed to explain it.
type Evaluation struct {
	Status     Status
	FromDomain string
	OrgDomain  string // organizational domain of FromDomain
	// RecordDomain is where the policy was found (_dmarc. of FromDomain or
	// of OrgDomain); Record is valid when it is not empty.
	RecordDomain string
	Record       Record
	// Policy is what the record asks for this message: sp= when the record
	// came from the organizational domain for a subdomain and has one, else
	// p=. Disposition is what is to be done after pct= sampling: Policy, or
	// the next milder one; none for passing mail.
	Policy      Policy
	Disposition Policy
	// SampledOut is set when pct= spared this failing message the full
	// policy.
	SampledOut bool
	// SPFAligned and DKIMAligned say which identifier aligned and passed;
	// AlignedDKIMDomain names the signature's domain.
	SPFAligned        bool
	DKIMAligned       bool
	AlignedDKIMDomain string
	Reason            string
	// Override is set when a local policy changed the disposition of
	// failing mail: OverrideARC or OverrideLocal.
	Override string
	// Lookups lists the DNS questions asked and what came back.
	Lookups []string
}

// OrganizationalDomain returns the registered domain of domain (section 3.2:
// one label below the longest public suffix), or domain itself when it is
// a public suffix or not a valid name.
func OrganizationalDomain(domain string) string {
	domain = normalizeDomain(domain)
	org, err := publicsuffix.EffectiveTLDPlusOne(domain)
	if err != nil {
		return domain
	}
	return org
}

// Aligned reports whether identifier domain id is aligned with the author
// domain from under mode (section 3.1).
func Aligned(id, from string, mode Alignment) bool {
	id, from = normalizeDomain(id), normalizeDomain(from)
	if id == "" || from == "" {
		return false
	}
	if mode == Strict {
		return id == from
	}
	return OrganizationalDomain(id) == OrganizationalDomain(from)
}

func normalizeDomain(d string) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(d), "."))
}

// Evaluate applies DMARC to in, looking the policy up through r.
func Evaluate(ctx context.Context, r *dns.Resolver, in Input, opts EvalOptions) Evaluation {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()

	ev := Evaluation{FromDomain: normalizeDomain(in.FromDomain), Disposition: PolicyNone}
	if ev.FromDomain == "" {
		ev.Status, ev.Reason = PermError, "no author domain"
		return ev
	}
	ev.OrgDomain = OrganizationalDomain(ev.FromDomain)

	// Section 6.6.3: the From domain's record, else the organizational
	// domain's.
	rec, found, status, why := lookupRecord(ctx, r, ev.FromDomain, &ev.Lookups)
	if !found && status == None && ev.OrgDomain != ev.FromDomain {
		rec, found, status, why = lookupRecord(ctx, r, ev.OrgDomain, &ev.Lookups)
		if found {
			ev.RecordDomain = ev.OrgDomain
		}
	} else if found {
		ev.RecordDomain = ev.FromDomain
	}
	if !found {
		ev.Status, ev.Reason = status, why
		return ev
	}
	ev.Record = rec
	ev.Policy = rec.Policy
	if ev.RecordDomain != ev.FromDomain && rec.SubdomainPolicy != "" {
		ev.Policy = rec.SubdomainPolicy
	}

	// Section 3.1: alignment of the passing identifiers.
	if in.SPF == spf.Pass && Aligned(in.SPFDomain, ev.FromDomain, rec.SPFAlignment) {
		ev.SPFAligned = true
	}
	for _, d := range in.DKIMDomains {
		if Aligned(d, ev.FromDomain, rec.DKIMAlignment) {
			ev.DKIMAligned, ev.AlignedDKIMDomain = true, normalizeDomain(d)
			break
		}
	}
	switch {
	case ev.DKIMAligned:
		ev.Status = Pass
		ev.Reason = fmt.Sprintf("DKIM signature of %s passed and is aligned (%s) with From %s", ev.AlignedDKIMDomain, rec.DKIMAlignment, ev.FromDomain)
		return ev
	case ev.SPFAligned:
		ev.Status = Pass
		ev.Reason = fmt.Sprintf("SPF passed for %s, aligned (%s) with From %s", normalizeDomain(in.SPFDomain), rec.SPFAlignment, ev.FromDomain)
		return ev
	}

	// Nothing aligned passed. When a check that might have passed could
	// not be done, the failure is not established: say temperror rather
	// than reject mail over a DNS hiccup.
	if in.SPF == spf.TempError || in.DKIMTempError {
		ev.Status = TempError
		ev.Reason = "no aligned identifier passed, and SPF or DKIM had a temporary error"
		return ev
	}
	ev.Status = Fail
	ev.Reason = failReason(in, ev.FromDomain, rec)
	ev.Disposition = ev.Policy
	// Section 6.6.4: pct= of failing mail gets the policy, the rest the
	// next milder one.
	if rec.Percent < 100 && ev.Policy != PolicyNone {
		intN := opts.RandIntN
		if intN == nil {
			intN = randIntN
		}
		if intN(100) >= rec.Percent {
			ev.SampledOut = true
			ev.Disposition = ev.Policy.weaker()
		}
	}
	return ev
}

func failReason(in Input, from string, rec Record) string {
	var why []string
	switch {
	case in.SPF != spf.Pass:
		why = append(why, fmt.Sprintf("SPF %s for %s", in.SPF, orNone(in.SPFDomain)))
	default:
		why = append(why, fmt.Sprintf("SPF passed for %s, not aligned (%s) with %s", in.SPFDomain, rec.SPFAlignment, from))
	}
	if len(in.DKIMDomains) == 0 {
		why = append(why, "no passing DKIM signature")
	} else {
		why = append(why, fmt.Sprintf("DKIM passed for %s, not aligned (%s) with %s", strings.Join(in.DKIMDomains, ", "), rec.DKIMAlignment, from))
	}
	return "no aligned identifier passed: " + strings.Join(why, "; ")
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// lookupRecord fetches and selects the DMARC record of domain (section
// 6.6.3 steps 1-3): records not starting with v=DMARC1 are discarded; more
// than one remaining means no policy.
func lookupRecord(ctx context.Context, r *dns.Resolver, domain string, log *[]string) (rec Record, found bool, status Status, why string) {
	name := "_dmarc." + domain
	txts, err := r.LookupTXT(ctx, name)
	switch {
	case err != nil && dns.IsNotFound(err):
		*log = append(*log, fmt.Sprintf("TXT %s: none", name))
		return Record{}, false, None, "no DMARC record at " + name
	case err != nil && dns.IsPermanent(err):
		// An invalid name or an unusable answer: there is no policy to
		// find; asking again will not help.
		*log = append(*log, fmt.Sprintf("TXT %s: %v", name, err))
		return Record{}, false, None, fmt.Sprintf("no usable DMARC record at %s: %v", name, err)
	case err != nil:
		*log = append(*log, fmt.Sprintf("TXT %s: %v", name, err))
		return Record{}, false, TempError, fmt.Sprintf("DMARC record of %s could not be fetched: %v", domain, err)
	}
	var candidates []string
	for _, t := range txts {
		if _, perr := ParseRecord(t); perr != ErrNotDMARC {
			candidates = append(candidates, t)
		}
	}
	*log = append(*log, fmt.Sprintf("TXT %s: %d record(s), %d DMARC", name, len(txts), len(candidates)))
	switch len(candidates) {
	case 0:
		return Record{}, false, None, "no DMARC record at " + name
	case 1:
	default:
		// Section 6.6.3 step 4: policy discovery ends without a policy
		// (and without the organizational-domain fallback).
		return Record{}, false, PermError, fmt.Sprintf("%d DMARC records at %s: none applies (RFC 7489 section 6.6.3)", len(candidates), name)
	}
	rec, err = ParseRecord(candidates[0])
	if err != nil {
		// Section 6.6.3: an unusable record means no DMARC processing;
		// we report permerror so that the admin sees why.
		return Record{}, false, PermError, fmt.Sprintf("DMARC record at %s is unusable: %v", name, err)
	}
	return rec, true, None, ""
}

// What overrode a failing message's policy (Evaluation.Override).
const (
	OverrideARC   = "arc"   // a passing ARC chain first sealed by a trusted domain
	OverrideLocal = "local" // an override line of the dmarc setting
)

// AuthResult returns the RFC 8601 resinfo for ev:
// "dmarc=fail (p=reject dis=reject) header.from=example.org", with
// "policy.override=arc" in the comment when a trusted ARC chain overrode
// the policy.
func (ev Evaluation) AuthResult() string {
	var b strings.Builder
	b.WriteString("dmarc=")
	b.WriteString(ev.Status.String())
	if ev.Policy != "" {
		fmt.Fprintf(&b, " (p=%s dis=%s", ev.Policy, ev.Disposition)
		if ev.Override == OverrideARC {
			b.WriteString(" policy.override=arc")
		}
		b.WriteString(")")
	}
	if ev.FromDomain != "" && isPlainDomain(ev.FromDomain) {
		b.WriteString(" header.from=")
		b.WriteString(ev.FromDomain)
	}
	return b.String()
}

func isPlainDomain(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
			return false
		}
	}
	return true
}
