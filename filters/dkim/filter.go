package dkim

import (
	"context"
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
	FilterName = "dkim"
	// VarResult is the overall result (Verification.Overall): pass, fail,
	// neutral, policy, temperror, permerror, none.
	VarResult = "DKIM"
	// VarDomains lists the d= domains of passing signatures, space-separated,
	// lower case: what DMARC aligns with the From domain.
	VarDomains = "DKIM_DOMAINS"
	// VarSignatures is the number of signatures found (checked or skipped).
	VarSignatures = "DKIM_SIGNATURES"
	// VarDetails lists each checked signature as RESULT/DOMAIN/SELECTOR,
	// space-separated ("-" for a domain or selector too broken to say):
	// what DMARC aggregate reports list (RFC 7489 Appendix C, auth_results).
	VarDetails = "DKIM_DETAILS"
)

// Scores are what each overall result adds to the transaction's score. A
// pass is worth little on its own (anyone can sign with their own domain);
// DMARC is what turns a missing or broken signature into a decision.
type Scores struct {
	Pass, Fail, Neutral, Policy, TempError, PermError, None float64
}

// DefaultScores are used when Options.Scores is nil.
var DefaultScores = Scores{Pass: -0.5, Fail: 1.5, Neutral: 0.5, Policy: 0.5, PermError: 0.5}

func (s Scores) of(st Status) float64 {
	switch st {
	case Pass:
		return s.Pass
	case Fail:
		return s.Fail
	case Neutral:
		return s.Neutral
	case Policy:
		return s.Policy
	case TempError:
		return s.TempError
	case PermError:
		return s.PermError
	}
	return s.None
}

// Options configure the verification filter.
type Options struct {
	// Resolver fetches public keys; required.
	Resolver *dns.Resolver
	// Verify bounds the work per message.
	Verify VerifyOptions
	// Scores; nil means DefaultScores.
	Scores *Scores
}

// Filter verifies DKIM signatures at the DATA stage. It never rejects by
// itself: it reports, scores, and hands its findings to DMARC and the rules.
type Filter struct {
	opts Options
}

// New returns a verification filter.
func New(opts Options) (*Filter, error) {
	if opts.Resolver == nil {
		return nil, fmt.Errorf("dkim: filter: no resolver")
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
	v, err := Verify(ctx, f.opts.Resolver, io.NewSectionReader(msg, 0, msg.Size()), f.opts.Verify)
	if err != nil {
		// The message could not be read to the end (or time ran out): no
		// signature can be judged; say so rather than guess.
		return filters.Result{
			Filter:      FilterName,
			Verdict:     filters.NoOpinion,
			Score:       f.opts.Scores.TempError,
			Reason:      "DKIM verification did not complete: " + err.Error(),
			AuthResults: []string{"dkim=temperror (" + authres.Comment("verification did not complete") + ")"},
			Vars:        map[string]string{VarResult: TempError.String(), VarDomains: "", VarSignatures: "0"},
		}
	}
	return f.result(v)
}

func (f *Filter) result(v Verification) filters.Result {
	overall := v.Overall()
	return filters.Result{
		Filter:      FilterName,
		Verdict:     filters.NoOpinion,
		Score:       f.opts.Scores.of(overall),
		Reason:      v.Summary(),
		AuthResults: v.AuthResults(),
		Vars: map[string]string{
			VarResult:     overall.String(),
			VarDomains:    strings.Join(v.PassingDomains(), " "),
			VarSignatures: strconv.Itoa(len(v.Signatures) + v.Skipped),
			VarDetails:    v.details(),
		},
	}
}

// details is the VarDetails value of v.
func (v Verification) details() string {
	parts := make([]string, 0, len(v.Signatures))
	for _, s := range v.Signatures {
		parts = append(parts, s.Status.String()+"/"+detailWord(s.Domain)+"/"+detailWord(s.Selector))
	}
	return strings.Join(parts, " ")
}

// detailWord keeps a d= or s= value that cannot break the VarDetails list.
func detailWord(s string) string {
	if s == "" || len(s) > 253 || strings.ContainsAny(s, "/ \t\r\n") {
		return "-"
	}
	return strings.ToLower(s)
}

// SignatureResult is one signature's entry of VarDetails.
type SignatureResult struct {
	Result, Domain, Selector string
}

// DetailsFromResults returns the signatures the dkim filter recorded in
// results (VarDetails), in header order.
func DetailsFromResults(results []filters.Result) (sigs []SignatureResult, found bool) {
	for i := len(results) - 1; i >= 0; i-- {
		r := results[i]
		if r.Filter != FilterName || r.Vars == nil {
			continue
		}
		d, ok := r.Vars[VarDetails]
		if !ok {
			continue
		}
		for _, f := range strings.Fields(d) {
			parts := strings.SplitN(f, "/", 3)
			if len(parts) != 3 {
				continue
			}
			sigs = append(sigs, SignatureResult{Result: parts[0], Domain: parts[1], Selector: parts[2]})
		}
		return sigs, true
	}
	return nil, false
}

// Summary says in one line what was found, for logs.
func (v Verification) Summary() string {
	if len(v.Signatures) == 0 {
		return "DKIM: message not signed"
	}
	parts := make([]string, 0, len(v.Signatures))
	for _, s := range v.Signatures {
		p := fmt.Sprintf("%s d=%s s=%s", s.Status, orDash(s.Domain), orDash(s.Selector))
		if s.Status != Pass && s.Reason != "" {
			p += " (" + s.Reason + ")"
		}
		parts = append(parts, p)
	}
	out := "DKIM: " + strings.Join(parts, "; ")
	if v.Skipped > 0 {
		out += fmt.Sprintf("; %d more signature(s) not checked", v.Skipped)
	}
	return out
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// FromResults returns the passing DKIM domains recorded by this filter in
// results, and whether a DKIM result was there at all.
func FromResults(results []filters.Result) (domains []string, status Status, found bool) {
	for i := len(results) - 1; i >= 0; i-- {
		r := results[i]
		if r.Filter != FilterName || r.Vars == nil {
			continue
		}
		st, ok := ParseStatus(r.Vars[VarResult])
		if !ok {
			continue
		}
		return strings.Fields(r.Vars[VarDomains]), st, true
	}
	return nil, None, false
}
