// Package behaviour scores how an SMTP client behaves, before it has sent
// any mail: the signals that tell a real mail server from spam software.
//
//   - Early talking: a client that sends before the server's greeting
//     (RFC 5321 section 4.3.1: the client waits for the 220) is almost
//     always a bot that does not read replies. Postfix's postscreen calls
//     this the pregreet test. Rejected by default.
//   - Pipelining without PIPELINING: sending several commands without
//     waiting for replies when the server did not offer PIPELINING (RFC 2920
//     section 3.1) is the same carelessness. Rejected by default.
//   - HELO sanity (RFC 5321 section 4.1.1.1): the argument must be a domain
//     or an address literal; a bare IP address, one of our own names or
//     addresses, a name that does not resolve or does not point at the
//     client each add to the score.
//   - Forward-confirmed reverse DNS (FCrDNS): the client address's PTR
//     names (RFC 1035 section 3.5) are looked up again, and one of them must
//     resolve back to the address. Scored; never a rejection on its own
//     unless configured (RFC 7372 section 3.3 gives it the code X.7.25).
//
// Results go to the pipeline as scores and as variables for the admin's
// rules (EARLYTALKER, PIPELINING, HELO_CHECK, HELO_RESOLVES, HELO_MATCH,
// FCRDNS, FCRDNS_NAME, PTR). This package owns those checks; the gateway
// owns the Session, and sets Session.ClientName from FCRDNS_NAME (or by
// calling CheckFCrDNS itself) when it wants the verified name in its logs and
// Received fields.
package behaviour

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"

	"postern/filters"
	"postern/filters/dns"
)

// Action is what a protocol violation leads to.
type Action int

const (
	ActionReject Action = iota // refuse (554 5.5.1) and let the gateway close
	ActionScore                // add the score, let the total decide
	ActionIgnore               // record the variable only
)

// Scores are the default weights; a positive score is spammy.
type Scores struct {
	EarlyTalker  float64 // when ActionScore
	Pipelining   float64 // when ActionScore
	HeloInvalid  float64 // not a domain nor an address literal
	HeloNotFQDN  float64 // a single label ("localhost", "DESKTOP-1")
	HeloBareIP   float64 // "192.0.2.1" instead of "[192.0.2.1]"
	HeloOurs     float64 // our own name or address: forged
	HeloLiteral  float64 // an address literal that is not the client's address
	HeloNoDNS    float64 // the name does not resolve (only with HeloResolve)
	HeloMismatch float64 // the name resolves, but not to the client
	FCrDNSFail   float64 // PTR names exist but none points back
	FCrDNSNone   float64 // no PTR at all
}

// DefaultScores are chosen so that no single HELO or rDNS finding reaches a
// typical reject threshold (5) on its own, while a client that fails several
// does.
func DefaultScores() Scores {
	return Scores{
		EarlyTalker:  5,
		Pipelining:   3,
		HeloInvalid:  2.5,
		HeloNotFQDN:  1.5,
		HeloBareIP:   2,
		HeloOurs:     4,
		HeloLiteral:  2,
		HeloNoDNS:    1,
		HeloMismatch: 0.5,
		FCrDNSFail:   1.5,
		FCrDNSNone:   1,
	}
}

// Options configure the filter.
type Options struct {
	// Resolver answers the DNS questions; nil turns off FCrDNS and HELO
	// resolution.
	Resolver *dns.Resolver
	// OwnNames are this server's host names (the "me" setting, listener
	// names); OwnIPs its addresses. A client presenting them is forging.
	OwnNames []string
	OwnIPs   []netip.Addr

	EarlyTalker Action
	Pipelining  Action
	// HeloResolve looks the HELO name up (A/AAAA) and scores a name that
	// does not exist or does not point at the client.
	HeloResolve bool
	// FCrDNS turns the forward-confirmed reverse DNS check on.
	FCrDNS bool
	// RequireFCrDNS rejects clients without forward-confirmed reverse DNS
	// (550 5.7.25; 451 4.7.25 when DNS fails), as Postfix's
	// reject_unknown_client_hostname does. Off by default: many small
	// legitimate servers lack it.
	RequireFCrDNS bool
	// MaxPTRNames bounds how many PTR names are checked (default 10).
	MaxPTRNames int

	Scores Scores
	Logger *slog.Logger
}

// DefaultOptions are the documented defaults, without a resolver.
func DefaultOptions() Options {
	return Options{
		EarlyTalker: ActionReject,
		Pipelining:  ActionReject,
		HeloResolve: true,
		FCrDNS:      true,
		MaxPTRNames: 10,
		Scores:      DefaultScores(),
	}
}

// Filter is the behaviour filter. It is safe for concurrent use.
type Filter struct {
	opt      Options
	ownNames []string
	log      *slog.Logger
}

var (
	_ filters.ConnectChecker = (*Filter)(nil)
	_ filters.HeloChecker    = (*Filter)(nil)
	_ filters.MailChecker    = (*Filter)(nil)
	_ filters.RcptChecker    = (*Filter)(nil)
	_ filters.DataChecker    = (*Filter)(nil)
)

// New returns the filter.
func New(opt Options) *Filter {
	if opt.MaxPTRNames <= 0 {
		opt.MaxPTRNames = 10
	}
	f := &Filter{opt: opt, log: opt.Logger}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	for _, n := range opt.OwnNames {
		f.ownNames = append(f.ownNames, canonicalName(n))
	}
	return f
}

// Name returns "behaviour".
func (f *Filter) Name() string { return "behaviour" }

// Variables set by this filter.
const (
	VarEarlyTalker  = "EARLYTALKER"   // "yes"
	VarPipelining   = "PIPELINING"    // "violation"
	VarHeloCheck    = "HELO_CHECK"    // ok|invalid|nofqdn|bareip|ours|literal-mismatch
	VarHeloResolves = "HELO_RESOLVES" // yes|no|temperror|unchecked
	VarHeloMatch    = "HELO_MATCH"    // yes|no|unknown
	VarFCrDNS       = "FCRDNS"        // pass|fail|none|temperror
	VarFCrDNSName   = "FCRDNS_NAME"   // the confirmed name, on pass
	VarPTR          = "PTR"           // the first PTR name, if any
)

// builder collects the findings of one stage into one Result.
type builder struct {
	res     filters.Result
	reasons []string
}

func (f *Filter) newBuilder() *builder {
	return &builder{res: filters.Result{Filter: f.Name(), Vars: map[string]string{}}}
}

func (b *builder) add(score float64, reason string) {
	b.res.Score += score
	b.reasons = append(b.reasons, reason)
}

func (b *builder) done() filters.Result {
	if len(b.reasons) > 0 {
		b.res.Reason = "behaviour: " + strings.Join(b.reasons, "; ")
	}
	if len(b.res.Vars) == 0 {
		b.res.Vars = nil
	}
	return b.res
}

// reported tells whether an earlier stage already reported var.
func reported(s *filters.Session, name, variable string) bool {
	for _, r := range s.Results {
		if r.Filter == name && r.Vars[variable] != "" {
			return true
		}
	}
	return false
}

// protocol handles early talking and pipelining, once per session each.
// It returns true when the stage's answer is a rejection.
func (f *Filter) protocol(b *builder, s *filters.Session) bool {
	if s.EarlyTalker && !reported(s, f.Name(), VarEarlyTalker) {
		b.res.Vars[VarEarlyTalker] = "yes"
		if f.violation(b, f.opt.EarlyTalker, f.opt.Scores.EarlyTalker,
			"client talked before the greeting (pregreet)",
			"Protocol error: talking before the greeting") {
			return true
		}
	}
	if s.PipeliningViolation && !reported(s, f.Name(), VarPipelining) {
		b.res.Vars[VarPipelining] = "violation"
		if f.violation(b, f.opt.Pipelining, f.opt.Scores.Pipelining,
			"client pipelined commands without PIPELINING (RFC 2920 section 3.1)",
			"Protocol error: commands sent without waiting for replies") {
			return true
		}
	}
	return false
}

func (f *Filter) violation(b *builder, a Action, score float64, reason, message string) bool {
	switch a {
	case ActionReject:
		b.res.Verdict, b.res.Code, b.res.Enhanced, b.res.Message = filters.Reject, 554, "5.5.1", message
		b.add(0, reason)
		return true
	case ActionScore:
		b.add(score, reason)
	default:
		b.add(0, reason+" (ignored)")
	}
	return false
}

// CheckConnect runs the pregreet test and FCrDNS.
func (f *Filter) CheckConnect(ctx context.Context, s *filters.Session) filters.Result {
	b := f.newBuilder()
	if f.protocol(b, s) {
		return b.done()
	}
	if f.opt.FCrDNS {
		f.fcrdns(ctx, b, s)
	}
	return b.done()
}

// CheckHelo runs the protocol checks not yet reported and HELO sanity.
func (f *Filter) CheckHelo(ctx context.Context, s *filters.Session) filters.Result {
	b := f.newBuilder()
	if f.protocol(b, s) {
		return b.done()
	}
	f.helo(ctx, b, s)
	return b.done()
}

// CheckMail, CheckRcpt and CheckData report a pipelining violation first
// seen at those stages.
func (f *Filter) CheckMail(_ context.Context, s *filters.Session) filters.Result {
	b := f.newBuilder()
	f.protocol(b, s)
	return b.done()
}

func (f *Filter) CheckRcpt(_ context.Context, s *filters.Session, _ string) filters.Result {
	b := f.newBuilder()
	f.protocol(b, s)
	return b.done()
}

func (f *Filter) CheckData(_ context.Context, s *filters.Session, _ filters.Message) filters.Result {
	b := f.newBuilder()
	f.protocol(b, s)
	return b.done()
}

// fcrdns adds the FCrDNS finding.
func (f *Filter) fcrdns(ctx context.Context, b *builder, s *filters.Session) {
	var r FCrDNSResult
	if s.ClientName != "" {
		// The gateway verified it already (see the package comment).
		r = FCrDNSResult{Status: FCrDNSPass, Name: s.ClientName, Names: []string{s.ClientName}}
	} else if f.opt.Resolver != nil {
		r = CheckFCrDNS(ctx, f.opt.Resolver, s.ClientIP, f.opt.MaxPTRNames)
	} else {
		return
	}
	b.res.Vars[VarFCrDNS] = r.Status
	if len(r.Names) > 0 {
		b.res.Vars[VarPTR] = r.Names[0]
	}
	switch r.Status {
	case FCrDNSPass:
		b.res.Vars[VarFCrDNSName] = r.Name
	case FCrDNSFail:
		b.add(f.opt.Scores.FCrDNSFail, fmt.Sprintf("no PTR name of %s resolves back to it (%s)", s.ClientIP, strings.Join(r.Names, ", ")))
	case FCrDNSNone:
		b.add(f.opt.Scores.FCrDNSNone, fmt.Sprintf("%s has no reverse DNS", s.ClientIP))
	case FCrDNSTempError:
		b.add(0, fmt.Sprintf("reverse DNS of %s could not be checked: %v", s.ClientIP, r.Err))
	}
	if f.opt.RequireFCrDNS && r.Status != FCrDNSPass {
		b.res.Verdict, b.res.Code, b.res.Enhanced = filters.Reject, 550, "5.7.25"
		b.res.Message = fmt.Sprintf("Reverse DNS validation failed for %s", s.ClientIP)
		if r.Status == FCrDNSTempError {
			b.res.Verdict, b.res.Code, b.res.Enhanced = filters.Tempfail, 451, "4.7.25"
			b.res.Message = fmt.Sprintf("Reverse DNS of %s could not be checked, try again later", s.ClientIP)
		}
	}
}

// isOurs reports whether name is one of this server's names.
func (f *Filter) isOurs(name string) bool {
	return slices.Contains(f.ownNames, canonicalName(name))
}

func canonicalName(n string) string { return strings.ToLower(strings.TrimSuffix(n, ".")) }

// ourIP reports whether ip is one of this server's addresses.
func (f *Filter) ourIP(ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, o := range f.opt.OwnIPs {
		if o.Unmap() == ip {
			return true
		}
	}
	return false
}
