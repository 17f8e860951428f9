package dmarc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	"postern/filters"
	"postern/filters/arc"
	"postern/filters/dkim"
	"postern/filters/dns"
	"postern/filters/spf"
)

// Names the admin's rules and other filters use.
const (
	FilterName = "dmarc"
	// VarResult: pass, fail, none, temperror, permerror.
	VarResult = "DMARC"
	// VarPolicy is the policy the author domain asks for ("" without one).
	VarPolicy = "DMARC_POLICY"
	// VarDisposition is what was applied: none, quarantine, reject.
	VarDisposition = "DMARC_DISPOSITION"
	// VarDomain is the author (From) domain.
	VarDomain = "DMARC_DOMAIN"
	// VarOverride names what overrode the policy of failing mail: "arc"
	// (a passing ARC chain first sealed by a trusted domain), "local"
	// (an override line of the dmarc setting), or "".
	VarOverride = "DMARC_OVERRIDE"
)

// SPF result fields read from the "spf" filter's Result.Vars.
const (
	spfFilterName = "spf"
	spfVarResult  = "SPF"        // the MAIL FROM (or HELO for <>) result
	spfVarDomain  = "SPF_DOMAIN" // the domain that result is for (optional)
)

// Scores are added to the transaction's score per result.
type Scores struct {
	Pass, Fail, None, TempError, PermError float64
}

// DefaultScores are used when Options.Scores is nil.
var DefaultScores = Scores{Pass: -1, Fail: 2, PermError: 1}

// Options configure the DMARC filter.
type Options struct {
	// Resolver looks up policies (and SPF/DKIM when no earlier filter did);
	// required.
	Resolver *dns.Resolver
	// Override replaces a published policy by a local one for the
	// disposition, e.g. {PolicyReject: PolicyQuarantine} to file into
	// Junk what the domain asks to reject (RFC 7489 section 6.7 leaves the
	// final decision to the receiver).
	Override map[Policy]Policy
	// TempFail answers 451 when the result is temperror; otherwise the
	// filter has no opinion and the message goes on (never a silent
	// accept-all: the result is recorded and scored).
	TempFail bool
	// RejectBadFrom answers 550 when the message has no single author
	// domain (no From, several From fields, authors in several domains;
	// RFC 7489 section 6.6.1); otherwise that is permerror with a score.
	RejectBadFrom bool
	// CheckAuthenticated evaluates messages from authenticated clients too;
	// by default they are our own users' mail and skipped.
	CheckAuthenticated bool
	// RandIntN samples pct=; nil means math/rand/v2.
	RandIntN func(n int) int
	// Timeout bounds the evaluation's DNS work.
	Timeout time.Duration
	// MaxHeaderBytes bounds the header read for From.
	MaxHeaderBytes int
	// Scores; nil means DefaultScores.
	Scores *Scores
	// Reports keeps what aggregate reports need of each evaluation that
	// found a policy (RFC 7489 section 7.2); nil: nothing is kept.
	Reports Recorder
	// Failures takes the messages that failed DMARC and whose policy asks
	// for failure reports (ruf=, fo=; RFC 7489 section 7.3); nil: none are
	// reported.
	Failures FailureRecorder
}

// Recorder keeps Observations for aggregate reports. RecordDMARC is called
// on the SMTP path, once per evaluated message: it must be cheap and must
// not block on the network.
type Recorder interface {
	RecordDMARC(Observation)
}

// Observation is what an aggregate report needs of one evaluated message
// (RFC 7489 Appendix C: row, identifiers, auth_results).
type Observation struct {
	Time     time.Time
	SourceIP netip.Addr
	// EnvelopeFrom is the MAIL FROM domain ("" for the null sender).
	EnvelopeFrom string
	// SPFDomain, SPFScope ("mfrom" or "helo") and SPFResult are the SPF
	// check DMARC used.
	SPFDomain, SPFScope, SPFResult string
	// DKIM lists every signature checked, passing or not.
	DKIM []dkim.SignatureResult
	// Evaluation is the outcome after local overrides (Override says which).
	Evaluation Evaluation
	// ARCSealer names the trusted sealer when Override is OverrideARC.
	ARCSealer string
}

// Filter evaluates DMARC at the DATA stage.
type Filter struct {
	opts Options
}

// New returns a DMARC filter.
func New(opts Options) (*Filter, error) {
	if opts.Resolver == nil {
		return nil, errors.New("dmarc: filter: no resolver")
	}
	for from, to := range opts.Override {
		if !validPolicy(string(from)) || !validPolicy(string(to)) {
			return nil, fmt.Errorf("dmarc: filter: override %q -> %q: policies are none, quarantine, reject", from, to)
		}
	}
	if opts.Scores == nil {
		s := DefaultScores
		opts.Scores = &s
	}
	return &Filter{opts: opts}, nil
}

// Name implements filters.Filter.
func (f *Filter) Name() string { return FilterName }

// CheckData implements filters.DataChecker.
func (f *Filter) CheckData(ctx context.Context, s *filters.Session, msg filters.Message) filters.Result {
	if s.AuthUser != "" && !f.opts.CheckAuthenticated {
		return filters.Result{Filter: FilterName, Reason: "DMARC not checked: authenticated client " + s.AuthUser,
			Vars: map[string]string{VarResult: "none"}}
	}
	fields, err := ReadFromField(io.NewSectionReader(msg, 0, msg.Size()), f.opts.MaxHeaderBytes)
	if err != nil {
		return f.badFrom(err)
	}
	domain, err := FromDomain(fields)
	if err != nil {
		return f.badFrom(err)
	}
	in := Input{FromDomain: domain}
	in.SPF, in.SPFDomain = f.spfResult(ctx, s)
	in.DKIMDomains, in.DKIMTempError = f.dkimResult(ctx, s, msg)
	ev := Evaluate(ctx, f.opts.Resolver, in, EvalOptions{RandIntN: f.opts.RandIntN, Timeout: f.opts.Timeout})
	ev, sealer := f.override(ev, s.Results)
	if f.opts.Reports != nil && ev.RecordDomain != "" {
		f.opts.Reports.RecordDMARC(f.observation(s, in, ev, sealer))
	}
	// A message a trusted forwarder vouched for is not reported: it is
	// someone's forwarded mail, not abuse of the domain.
	if f.opts.Failures != nil && ev.Status == Fail && ev.Override != OverrideARC && hasMailtoURI(ev.Record.ReportFailure) {
		o := f.observation(s, in, ev, sealer)
		if ParseFailureOptions(ev.Record.FailureOptions).Wants(ev, o.SPFResult, o.DKIM) {
			f.opts.Failures.RecordDMARCFailure(failureOf(s, msg, in, o))
		}
	}
	return f.result(ev)
}

// failureOf gathers a failure report's view of one failing message: the
// header section is copied now, while the message is at hand.
func failureOf(s *filters.Session, msg filters.Message, in Input, o Observation) Failure {
	ev := o.Evaluation
	fl := Failure{Observation: o, MailFrom: s.From}
	fl.Header = ReadHeader(io.NewSectionReader(msg, 0, msg.Size()), MaxFailureHeaderBytes)
	for _, r := range s.Results {
		fl.AuthResults = append(fl.AuthResults, r.AuthResults...)
	}
	fl.AuthResults = append(fl.AuthResults, ev.AuthResult())
	fl.SPFAlignedDomain = Aligned(in.SPFDomain, ev.FromDomain, ev.Record.SPFAlignment)
	for _, sig := range o.DKIM {
		fl.DKIMAlignedDomain = fl.DKIMAlignedDomain || Aligned(sig.Domain, ev.FromDomain, ev.Record.DKIMAlignment)
	}
	return fl
}

// observation gathers the report's view of one evaluation.
func (f *Filter) observation(s *filters.Session, in Input, ev Evaluation, sealer string) Observation {
	o := Observation{Time: time.Now(), SourceIP: s.ClientIP, SPFDomain: in.SPFDomain, SPFResult: in.SPF.String(), Evaluation: ev, ARCSealer: sealer}
	o.SPFScope = "mfrom"
	if at := strings.LastIndexByte(s.From, '@'); at >= 0 {
		o.EnvelopeFrom = strings.ToLower(s.From[at+1:])
	} else {
		o.SPFScope = "helo" // RFC 7208 section 2.4: the null sender's identity is HELO
	}
	if sigs, ok := dkim.DetailsFromResults(s.Results); ok {
		o.DKIM = sigs
	} else {
		for _, d := range in.DKIMDomains {
			o.DKIM = append(o.DKIM, dkim.SignatureResult{Result: "pass", Domain: d})
		}
	}
	return o
}

// spfResult takes the SPF result from the spf filter's answer in the
// session; without one it runs the check itself.
func (f *Filter) spfResult(ctx context.Context, s *filters.Session) (spf.Code, string) {
	domain := ""
	if at := strings.LastIndexByte(s.From, '@'); at >= 0 {
		domain = s.From[at+1:]
	} else {
		domain = s.HELO // section 4.1: the HELO identity for the null sender
	}
	for i := len(s.Results) - 1; i >= 0; i-- {
		r := s.Results[i]
		if (r.Filter != spfFilterName && !strings.HasPrefix(r.Filter, spfFilterName+":")) || r.Vars == nil {
			continue
		}
		code, ok := spf.ParseCode(r.Vars[spfVarResult])
		if !ok {
			continue
		}
		if d := r.Vars[spfVarDomain]; d != "" {
			domain = d
		}
		return code, domain
	}
	if !s.ClientIP.IsValid() {
		return spf.None, domain
	}
	res := spf.CheckAddr(ctx, f.opts.Resolver, s.ClientIP, s.HELO, s.From, spf.IdentityMailFrom, spf.Options{})
	return res.Code, res.Domain
}

// dkimResult takes the passing DKIM domains from the dkim filter's answer
// in the session; without one it verifies the message itself.
func (f *Filter) dkimResult(ctx context.Context, s *filters.Session, msg filters.Message) ([]string, bool) {
	if domains, status, ok := dkim.FromResults(s.Results); ok {
		return domains, status == dkim.TempError
	}
	v, err := dkim.Verify(ctx, f.opts.Resolver, io.NewSectionReader(msg, 0, msg.Size()), dkim.VerifyOptions{})
	if err != nil {
		return nil, true
	}
	temp := false
	for _, sig := range v.Signatures {
		temp = temp || sig.Status == dkim.TempError
	}
	return v.PassingDomains(), temp
}

func (f *Filter) badFrom(err error) filters.Result {
	res := filters.Result{
		Filter:      FilterName,
		Verdict:     filters.NoOpinion,
		Score:       f.opts.Scores.PermError,
		Reason:      "DMARC permerror: " + err.Error(),
		AuthResults: []string{"dmarc=permerror"},
		Vars:        map[string]string{VarResult: PermError.String(), VarDisposition: string(PolicyNone)},
	}
	if f.opts.RejectBadFrom && !errors.Is(err, ErrHeaderTooLarge) {
		res.Verdict, res.Code, res.Enhanced = filters.Reject, 550, "5.7.1"
		res.Message = "Message must have exactly one author domain in From (RFC 7489 section 6.6.1)"
	}
	return res
}

// override applies local policy to a failing message: a trusted ARC
// sealer's word, then the override lines of the setting. It returns the
// trusted sealer when that one applied.
func (f *Filter) override(ev Evaluation, results []filters.Result) (Evaluation, string) {
	trusted := ""
	// RFC 7489 section 7.2 lets the receiver's local policy override the
	// domain's (trusted_forwarder): a forwarder we trust, which vouched
	// for the message with an ARC chain that still verifies, changed it
	// in a way that broke DKIM and SPF. RFC 8617 section 7.2.
	if ev.Status == Fail && ev.Disposition != PolicyNone {
		if st, sealer, ok := arc.FromResults(results); ok && st == arc.Pass && sealer != "" {
			ev.Reason += fmt.Sprintf("; local policy applies none instead of %s: the ARC chain verified and its first sealer %s is trusted", ev.Disposition, sealer)
			ev.Disposition = PolicyNone
			ev.Override = OverrideARC
			trusted = sealer
		}
	}
	if to, ok := f.opts.Override[ev.Disposition]; ok && ev.Status == Fail && ev.Override == "" {
		ev.Reason += fmt.Sprintf("; local policy applies %s instead of %s", to, ev.Disposition)
		ev.Disposition = to
		ev.Override = OverrideLocal
	}
	return ev, trusted
}

func (f *Filter) result(ev Evaluation) filters.Result {
	res := filters.Result{
		Filter:      FilterName,
		Verdict:     filters.NoOpinion,
		Reason:      "DMARC " + ev.Status.String() + " for " + ev.FromDomain + ": " + ev.Reason,
		AuthResults: []string{ev.AuthResult()},
		Vars: map[string]string{
			VarResult:      ev.Status.String(),
			VarPolicy:      string(ev.Policy),
			VarDisposition: string(ev.Disposition),
			VarDomain:      ev.FromDomain,
			VarOverride:    ev.Override,
		},
	}
	sc := f.opts.Scores
	switch ev.Status {
	case Pass:
		res.Score = sc.Pass
	case None:
		res.Score = sc.None
	case PermError:
		res.Score = sc.PermError
	case TempError:
		res.Score = sc.TempError
		if f.opts.TempFail {
			res.Verdict, res.Code, res.Enhanced = filters.Tempfail, 451, "4.7.1"
			res.Message = "DMARC policy for " + ev.FromDomain + " could not be checked; try again later"
		}
	case Fail:
		res.Score = sc.Fail
		switch ev.Disposition {
		case PolicyReject:
			res.Verdict, res.Code, res.Enhanced = filters.Reject, 550, "5.7.1"
			res.Message = "Rejected by DMARC policy for " + ev.FromDomain
		case PolicyQuarantine:
			res.Verdict = filters.Quarantine
		}
	}
	return res
}
