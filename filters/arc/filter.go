package arc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"postern/filters"
	"postern/filters/authres"
	"postern/filters/dns"
)

// Names other filters and the admin's rules use to read this filter's
// answer from Session.Results.
const (
	FilterName = "arc"
	// VarResult is the chain validation status: pass, fail, none,
	// temperror.
	VarResult = "ARC"
	// VarInstances is the number of ARC sets of a valid chain ("0"
	// otherwise).
	VarInstances = "ARC_INSTANCES"
	// VarOldestPass is Verification.OldestPass: the oldest instance whose
	// AMS verifies, 0 when all do ("" unless the chain passed).
	VarOldestPass = "ARC_OLDEST_PASS"
	// VarSealers lists the d= of the seals of a valid chain, oldest first,
	// space-separated.
	VarSealers = "ARC_SEALERS"
	// VarTrustedSealer is the oldest sealer of a passing chain when it is
	// one of Options.Trusted, "" otherwise: DMARC overrides its policy
	// for such mail.
	VarTrustedSealer = "ARC_TRUSTED_SEALER"
)

// Scores are what each result adds to the transaction's score. Anyone
// can seal a chain, so a pass is worth nothing by itself; one whose first
// sealer the admin trusts is worth something.
type Scores struct {
	Pass, Trusted, Fail, None, TempError float64
}

// DefaultScores are used when Options.Scores is nil.
var DefaultScores = Scores{Trusted: -1, Fail: 0.5}

// Options configure the verification filter.
type Options struct {
	// Resolver fetches keys; required.
	Resolver *dns.Resolver
	// Verify bounds the work per message.
	Verify VerifyOptions
	// Trusted are the sealer domains (the d= of the ARC-Seal with i=1)
	// whose chains the admin trusts, lower case, compared exactly.
	Trusted []string
	// Scores; nil means DefaultScores.
	Scores *Scores
}

// Filter verifies the ARC chain at the DATA stage. It never rejects: it
// reports, scores, and tells DMARC whether a trusted handler vouched for
// the message.
type Filter struct {
	opts Options
}

// New returns a verification filter.
func New(opts Options) (*Filter, error) {
	if opts.Resolver == nil {
		return nil, errors.New("arc: filter: no resolver")
	}
	if opts.Scores == nil {
		s := DefaultScores
		opts.Scores = &s
	}
	for i, d := range opts.Trusted {
		opts.Trusted[i] = normalizeDomain(d)
	}
	return &Filter{opts: opts}, nil
}

// Name implements filters.Filter.
func (f *Filter) Name() string { return FilterName }

// CheckData implements filters.DataChecker. Our own users' mail
// (authenticated clients) is not checked: ARC is about mail that reaches
// us through others.
func (f *Filter) CheckData(ctx context.Context, s *filters.Session, msg filters.Message) filters.Result {
	if s.AuthUser != "" {
		return filters.Result{Filter: FilterName, Reason: "ARC not checked: authenticated client " + s.AuthUser,
			Vars: map[string]string{VarResult: None.String()}}
	}
	v, err := Verify(ctx, f.opts.Resolver, io.NewSectionReader(msg, 0, msg.Size()), f.opts.Verify)
	if err != nil {
		v = Verification{Status: TempError, Reason: "verification did not complete: " + err.Error()}
	}
	return f.result(v, s)
}

func (f *Filter) result(v Verification, s *filters.Session) filters.Result {
	trusted := ""
	if sealer := v.OldestSealer(); sealer != "" && containsFold(f.opts.Trusted, sealer) {
		trusted = sealer
	}
	sc := f.opts.Scores
	score := sc.None
	switch v.Status {
	case Pass:
		score = sc.Pass
		if trusted != "" {
			score = sc.Trusted
		}
	case Fail:
		score = sc.Fail
	case TempError:
		score = sc.TempError
	}
	vars := map[string]string{
		VarResult:        v.Status.String(),
		VarInstances:     strconv.Itoa(v.Instances()),
		VarOldestPass:    "",
		VarSealers:       strings.Join(sealers(v.Sets), " "),
		VarTrustedSealer: trusted,
	}
	if v.Status == Pass {
		vars[VarOldestPass] = strconv.Itoa(v.OldestPass)
	}
	reason := "ARC " + v.Status.String() + ": " + v.Reason
	if trusted != "" {
		reason += " (first sealer " + trusted + " is trusted)"
	}
	return filters.Result{
		Filter:      FilterName,
		Verdict:     filters.NoOpinion,
		Score:       score,
		Reason:      reason,
		AuthResults: []string{v.AuthResult(s.ClientIP.String())},
		Vars:        vars,
	}
}

// AuthResult returns the RFC 8601 resinfo for v (RFC 8617 sections 6 and
// 10.1): "arc=pass (i=2) header.oldest-pass=0 smtp.remote-ip=192.0.2.1".
// The ARC method has no temperror result (section 5.2.1: every error is a
// fail): a temporary failure is written as fail with a comment saying so
// (Vars keep temperror). remoteIP may be "" or "invalid IP" to leave
// smtp.remote-ip out.
func (v Verification) AuthResult(remoteIP string) string {
	var b strings.Builder
	switch v.Status {
	case Pass:
		fmt.Fprintf(&b, "arc=pass (i=%d) header.oldest-pass=%d", v.Instances(), v.OldestPass)
	case Fail:
		b.WriteString("arc=fail (" + authres.Comment(v.Reason) + ")")
	case TempError:
		b.WriteString("arc=fail (temporary error: " + authres.Comment(v.Reason) + ")")
	default:
		b.WriteString("arc=none")
	}
	if remoteIP != "" && remoteIP != "invalid IP" {
		b.WriteString(" smtp.remote-ip=" + remoteIP)
	}
	return b.String()
}

// StatusFromAuthResults reads back what AuthResult wrote: the status in
// resinfo parts of our own Authentication-Results field (authres.Ours),
// TempError for a fail marked as a temporary error, and whether an arc
// result was there at all. The delivery agent, which has the stored
// message and not the session's results, decides from it whether to seal.
func StatusFromAuthResults(resinfo []string) (status Status, found bool) {
	for _, p := range resinfo {
		r, ok := authres.Method([]string{p}, "arc")
		if !ok {
			continue
		}
		st, ok := ParseStatus(r)
		if !ok {
			return None, false
		}
		if st == Fail && strings.Contains(p, "(temporary error:") {
			return TempError, true
		}
		return st, true
	}
	return None, false
}

// FromResults returns the ARC status recorded by this filter in results,
// the trusted first sealer of a passing chain (or ""), and whether an ARC
// result was there at all.
func FromResults(results []filters.Result) (status Status, trustedSealer string, found bool) {
	for i := len(results) - 1; i >= 0; i-- {
		r := results[i]
		if r.Filter != FilterName || r.Vars == nil {
			continue
		}
		st, ok := ParseStatus(r.Vars[VarResult])
		if !ok {
			continue
		}
		if st != Pass {
			return st, "", true
		}
		return st, r.Vars[VarTrustedSealer], true
	}
	return None, "", false
}

func normalizeDomain(d string) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(d), "."))
}
