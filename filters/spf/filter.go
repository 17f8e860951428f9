package spf

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"postern/filters"
	"postern/filters/dns"
	"postern/policy"
)

// Action is what the filter does with one SPF result.
type Action struct {
	Verdict filters.Verdict // NoOpinion, Reject, Tempfail or Quarantine
	Score   float64
}

// DefaultActions: a hard fail is refused (RFC 7208 8.4 allows it and most
// operators want it), softfail and permerror add to the score, temperror
// has no opinion (a DNS hiccup must not refuse mail), pass lowers the
// score a little.
func DefaultActions() map[Code]Action {
	return map[Code]Action{
		Pass:      {Score: -0.5},
		Fail:      {Verdict: filters.Reject, Score: 5},
		SoftFail:  {Score: 2},
		Neutral:   {},
		None:      {Score: 0.5},
		TempError: {},
		PermError: {Score: 1},
	}
}

// FilterOptions configures the pipeline filter.
type FilterOptions struct {
	Resolver *dns.Resolver
	Actions  map[Code]Action // nil: DefaultActions
	Receiver string          // our host name, for Received-SPF
	Check    Options
}

// Filter checks SPF for MAIL FROM (RFC 7208 2.4), or for the HELO identity
// when the sender is null (2.3), at the MAIL stage.
type Filter struct{ opt FilterOptions }

// NewFilter returns the "spf" filter.
func NewFilter(opt FilterOptions) (*Filter, error) {
	if opt.Resolver == nil {
		return nil, errors.New("spf filter: no resolver")
	}
	if opt.Actions == nil {
		opt.Actions = DefaultActions()
	}
	if opt.Check.Receiver == "" {
		opt.Check.Receiver = opt.Receiver
	}
	return &Filter{opt: opt}, nil
}

// Name implements filters.Filter.
func (f *Filter) Name() string { return "spf" }

// CheckMail implements filters.MailChecker.
func (f *Filter) CheckMail(ctx context.Context, s *filters.Session) filters.Result {
	identity, sender := IdentityMailFrom, s.From
	if s.From == "" {
		identity = IdentityHELO
	}
	res := CheckAddr(ctx, f.opt.Resolver, s.ClientIP, s.HELO, sender, identity, f.opt.Check)
	act := f.opt.Actions[res.Code]
	out := filters.Result{
		Filter:       "spf",
		Verdict:      act.Verdict,
		Score:        act.Score,
		Reason:       fmt.Sprintf("spf=%s for %s: %s", res.Code, res.Domain, res.Reason),
		HeaderFields: []string{ReceivedSPF(res, f.opt.Receiver)},
		AuthResults:  []string{AuthenticationResults(res)},
		Vars:         map[string]string{"SPF": res.Code.String(), "SPF_DOMAIN": res.Domain},
	}
	switch act.Verdict {
	case filters.Reject:
		// RFC 7372 3.2: 5.7.23 for an SPF failure.
		out.Code, out.Enhanced = 550, "5.7.23"
		expl := res.Explanation
		if expl == "" {
			expl = "SPF check failed for " + res.Domain
		}
		out.Message = sanitizeReply(expl)
	case filters.Tempfail:
		out.Code, out.Enhanced = 451, "4.7.24"
		out.Message = "Temporary SPF failure for " + res.Domain + ", try again later"
	}
	return out
}

// sanitizeReply keeps a domain's exp= text from breaking the SMTP reply.
func sanitizeReply(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			r = ' '
		}
		b.WriteRune(r)
	}
	if b.Len() > 400 {
		return b.String()[:400]
	}
	return b.String()
}

// ParseActions reads the "spf" setting: lines "RESULT ACTION [SCORE]",
// RESULT one of pass fail softfail neutral none temperror permerror,
// ACTION one of reject tempfail quarantine none. Results not named keep
// their defaults.
func ParseActions(lines []policy.Line) (map[Code]Action, error) {
	acts := DefaultActions()
	var errs []error
	for _, ln := range lines {
		f := strings.Fields(ln.Text)
		if len(f) < 2 || len(f) > 3 {
			errs = append(errs, ln.Errorf("want RESULT ACTION [SCORE], e.g. \"softfail none 2\""))
			continue
		}
		code, ok := ParseCode(f[0])
		if !ok {
			errs = append(errs, ln.Errorf("unknown SPF result %q", f[0]))
			continue
		}
		var a Action
		switch strings.ToLower(f[1]) {
		case "reject":
			a.Verdict = filters.Reject
		case "tempfail":
			a.Verdict = filters.Tempfail
		case "quarantine":
			a.Verdict = filters.Quarantine
		case "none", "score":
		default:
			errs = append(errs, ln.Errorf("unknown action %q (want reject, tempfail, quarantine or none)", f[1]))
			continue
		}
		if len(f) == 3 {
			sc, err := strconv.ParseFloat(f[2], 64)
			if err != nil {
				errs = append(errs, ln.Errorf("bad score %q", f[2]))
				continue
			}
			a.Score = sc
		}
		acts[code] = a
	}
	return acts, errors.Join(errs...)
}

// LoadActions reads the "spf" setting from a configuration directory.
func LoadActions(dir string) (map[Code]Action, error) {
	lines, err := policy.ReadSetting(dir, "spf")
	if errors.Is(err, policy.ErrNotSet) {
		return DefaultActions(), nil
	}
	if err != nil {
		return nil, err
	}
	return ParseActions(lines)
}
