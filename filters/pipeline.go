package filters

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"time"
)

// Mode is how the pipeline treats one filter's verdicts, so an admin can
// deploy a check in watch-only mode first (maddy's uniform check action).
type Mode int

const (
	ModeReject     Mode = iota // verdicts apply as given (the default)
	ModeQuarantine             // a reject becomes a quarantine; a tempfail is kept
	ModeScore                  // verdicts are ignored; only the score counts
	ModeIgnore                 // the result is logged and recorded, nothing else
)

// ParseMode reads "reject", "quarantine", "score" or "ignore".
func ParseMode(s string) (Mode, error) {
	switch strings.ToLower(s) {
	case "reject":
		return ModeReject, nil
	case "quarantine":
		return ModeQuarantine, nil
	case "score":
		return ModeScore, nil
	case "ignore", "watch":
		return ModeIgnore, nil
	}
	return 0, fmt.Errorf("unknown mode %q (want reject, quarantine, score or ignore)", s)
}

func (m Mode) String() string {
	return [...]string{"reject", "quarantine", "score", "ignore"}[m]
}

// Entry is one configured filter.
type Entry struct {
	Filter Filter
	Mode   Mode
	Weight float64 // multiplies the filter's score; 0 means 1
}

// Thresholds turn the total score into a verdict at the end of DATA.
// Zero disables a threshold.
type Thresholds struct {
	Reject     float64 // total ≥ Reject: 550 5.7.1
	Quarantine float64 // total ≥ Quarantine: file into Junk
}

// Decision is what the pipeline concluded at one stage.
type Decision struct {
	Verdict  Verdict
	Code     int
	Enhanced string
	Message  string // text for the client
	Filter   string // the filter (or "score") that decided
	Reason   string
	// Hold: a quarantining filter asked for the queued copies to be held
	// (Result.Hold); HoldReason is its reason.
	Hold       bool
	HoldReason string

	// Unless the command is refused: at StageData the message as the
	// filters rewrote it (nil: unchanged), and at every stage their
	// envelope changes, in the filters' order (see Result.Rewritten,
	// Result.Envelope). The gateway applies those of MAIL and RCPT with
	// those of DATA.
	Rewritten []byte
	Envelope  *EnvelopeChange
}

// Pipeline runs configured filters stage by stage.
type Pipeline struct {
	entries    []Entry
	thresholds Thresholds
	timeout    time.Duration
	log        *slog.Logger
	observe    func(filter string, v Verdict, d time.Duration)
}

// PipelineOptions tunes a Pipeline.
type PipelineOptions struct {
	Thresholds   Thresholds
	StageTimeout time.Duration // per filter call; default 30s
	Logger       *slog.Logger
	// Observe is called for every result (for metrics): the filter, the
	// verdict after the mode was applied, and how long it took.
	Observe func(filter string, v Verdict, d time.Duration)
}

// NewPipeline builds a pipeline running entries in the given order.
func NewPipeline(entries []Entry, opt PipelineOptions) *Pipeline {
	if opt.StageTimeout == 0 {
		opt.StageTimeout = 30 * time.Second
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	if opt.Observe == nil {
		opt.Observe = func(string, Verdict, time.Duration) {}
	}
	return &Pipeline{entries: entries, thresholds: opt.Thresholds, timeout: opt.StageTimeout, log: opt.Logger, observe: opt.Observe}
}

// Close closes the filters that are Closers (a reload replaced them).
func (p *Pipeline) Close() {
	if p == nil {
		return
	}
	for _, e := range p.entries {
		if c, ok := e.Filter.(Closer); ok {
			c.Close()
		}
	}
}

// Empty reports whether no filter is configured.
func (p *Pipeline) Empty() bool { return p == nil || len(p.entries) == 0 }

// Run runs every filter that works at stage, in order, recording each
// result in s.Results and its weighted score in s.Score. It stops at the
// first reject or tempfail (after modes are applied) and returns it; an
// Accept verdict ends the stage early with NoOpinion. At StageData it
// finally applies the score thresholds. rcpt is the recipient at
// StageRcpt; msg the message at StageData.
//
// Conditional deferrals follow Postfix's smtpd_check.c: the first
// Result.DeferIfReject of the stage turns a later Reject (a filter's or
// the score's) into its tempfail; the first Result.DeferIfPermit defers
// the stage when it ends without a refusal (an implicit permit) or with
// an Accept (an explicit one), while a later Reject still refuses. One
// given at StageMail is kept in s.DeferIfPermit and defers each RCPT of
// the transaction unless a check refuses that recipient, as Postfix
// carries its sender restrictions' defer_if_permit into the recipient
// restrictions; the end of DATA starts afresh, as Postfix's does.
func (p *Pipeline) Run(ctx context.Context, stage Stage, s *Session, rcpt string, msg Message) Decision {
	if p.Empty() {
		return Decision{}
	}
	var ifPermit, ifReject *Decision
	switch stage {
	case StageMail:
		s.DeferIfPermit = nil
	case StageRcpt:
		ifPermit = s.DeferIfPermit
	}
	quarantine := Decision{}
	var hold *string // the reason of the first quarantine that asks for a hold
	var rewritten []byte
	var envelope *EnvelopeChange
	for _, e := range p.entries {
		res, ok := p.call(ctx, e.Filter, stage, s, rcpt, msg)
		if !ok {
			continue
		}
		if res.Filter == "" {
			res.Filter = e.Filter.Name()
		}
		weight := e.Weight
		if weight == 0 {
			weight = 1
		}
		original := res.Verdict
		if res.Verdict != Quarantine {
			res.Hold = false
		}
		switch e.Mode {
		case ModeQuarantine:
			if res.Verdict == Reject {
				res.Verdict = Quarantine
			}
		case ModeScore:
			res.Verdict, res.Hold = NoOpinion, false
			res.DeferIfPermit, res.DeferIfReject = nil, nil
		case ModeIgnore:
			res.Verdict, res.Hold = NoOpinion, false
			res.DeferIfPermit, res.DeferIfReject = nil, nil
			weight = 0
			// A filter that is only watched changes nothing.
			res.Rewritten, res.Envelope = nil, nil
		}
		if stage == StageData && res.Rewritten != nil {
			rewritten = res.Rewritten
			msg = bytes.NewReader(rewritten)
		}
		envelope = envelope.Merge(res.Envelope)
		if res.DeferIfPermit != nil && ifPermit == nil {
			ifPermit = conditionalDeferral(res, *res.DeferIfPermit)
		}
		if res.DeferIfReject != nil && ifReject == nil {
			ifReject = conditionalDeferral(res, *res.DeferIfReject)
		}
		score := res.Score * weight
		s.Results = append(s.Results, res)
		s.Score += score
		p.log.Debug("filter result", "session", s.ID, "stage", stage.String(), "filter", res.Filter,
			"verdict", res.Verdict.String(), "as_configured", original.String(), "mode", e.Mode.String(),
			"score", score, "reason", res.Reason)
		switch res.Verdict {
		case Reject:
			return deferIfReject(decisionFrom(res), ifReject)
		case Tempfail:
			return decisionFrom(res)
		case Quarantine:
			if quarantine.Verdict == NoOpinion {
				quarantine = decisionFrom(res)
			}
			if res.Hold && hold == nil {
				hold = &res.Reason
			}
		case Accept:
			return permit(stage, s, withHold(withChanges(quarantine, rewritten, envelope), hold), ifPermit)
		}
	}
	if quarantine.Verdict != NoOpinion {
		return permit(stage, s, withHold(withChanges(quarantine, rewritten, envelope), hold), ifPermit)
	}
	if stage == StageData {
		d := p.scoreDecision(s)
		if d.Verdict == Reject {
			return deferIfReject(d, ifReject)
		}
		return permit(stage, s, withChanges(d, rewritten, envelope), ifPermit)
	}
	return permit(stage, s, withChanges(Decision{}, rewritten, envelope), ifPermit)
}

// conditionalDeferral is the tempfail of a DEFER_IF_PERMIT or
// DEFER_IF_REJECT reply (default 450 4.7.1, as Postfix's
// access_map_defer_code).
func conditionalDeferral(r Result, rep Reply) *Decision {
	d := &Decision{Verdict: Tempfail, Code: rep.Code, Enhanced: rep.Enhanced, Message: rep.Text, Filter: r.Filter, Reason: r.Reason}
	if d.Code == 0 {
		d.Code = 450
	}
	if d.Enhanced == "" {
		d.Enhanced = "4.7.1"
	}
	if d.Message == "" {
		d.Message = "Service unavailable"
	}
	return d
}

// deferIfReject turns a rejection into a pending DEFER_IF_REJECT's
// tempfail; the reason says what was deferred.
func deferIfReject(d Decision, ifReject *Decision) Decision {
	if ifReject == nil || d.Verdict != Reject {
		return d
	}
	out := *ifReject
	out.Reason += " (DEFER_IF_REJECT; deferred instead of " + d.Filter + "'s reject: " + d.Reason + ")"
	return out
}

// permit ends a stage that lets the client through (d): a pending
// DEFER_IF_PERMIT defers it instead, or, at StageMail, is kept for the
// transaction's recipients.
func permit(stage Stage, s *Session, d Decision, ifPermit *Decision) Decision {
	switch {
	case ifPermit == nil:
		return d
	case stage == StageMail:
		s.DeferIfPermit = ifPermit
		return d
	}
	out := *ifPermit
	out.Reason += " (DEFER_IF_PERMIT)"
	return out
}

// withHold marks a quarantine decision for a hold when a filter asked.
func withHold(d Decision, hold *string) Decision {
	if hold != nil && d.Verdict == Quarantine {
		d.Hold, d.HoldReason = true, *hold
	}
	return d
}

// withChanges carries the filters' changes on a decision that lets the
// message in; a refused message keeps none.
func withChanges(d Decision, rewritten []byte, env *EnvelopeChange) Decision {
	if d.Verdict == Reject || d.Verdict == Tempfail {
		return d
	}
	d.Rewritten, d.Envelope = rewritten, env
	return d
}

// scoreDecision applies the thresholds to the total score.
func (p *Pipeline) scoreDecision(s *Session) Decision {
	t := p.thresholds
	reason := fmt.Sprintf("total score %.1f", s.Score)
	switch {
	case t.Reject > 0 && s.Score >= t.Reject:
		return Decision{Verdict: Reject, Code: 550, Enhanced: "5.7.1", Filter: "score",
			Message: fmt.Sprintf("Message refused as spam (score %.1f, limit %.1f)", s.Score, t.Reject), Reason: reason}
	case t.Quarantine > 0 && s.Score >= t.Quarantine:
		return Decision{Verdict: Quarantine, Filter: "score", Reason: reason}
	}
	return Decision{}
}

func decisionFrom(r Result) Decision {
	d := Decision{Verdict: r.Verdict, Code: r.Code, Enhanced: r.Enhanced, Message: r.Message, Filter: r.Filter, Reason: r.Reason}
	switch r.Verdict {
	case Reject:
		if d.Code == 0 {
			d.Code = 550
		}
		if d.Enhanced == "" {
			d.Enhanced = "5.7.1"
		}
	case Tempfail:
		if d.Code == 0 {
			d.Code = 451
		}
		if d.Enhanced == "" {
			d.Enhanced = "4.7.1"
		}
	}
	if d.Message == "" {
		d.Message = r.Reason
	}
	if d.Message == "" {
		d.Message = "Refused by policy (" + r.Filter + ")"
	}
	return d
}

// call runs one filter at one stage with the stage timeout. ok is false
// when the filter does not work at that stage. A panicking filter is
// logged and counted as a tempfail: hostile input must never crash the
// gateway, nor silently let mail through a check that broke.
func (p *Pipeline) call(ctx context.Context, f Filter, stage Stage, s *Session, rcpt string, msg Message) (res Result, ok bool) {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	start := time.Now()
	defer func() {
		if r := recover(); r != nil {
			p.log.Error("filter panicked", "filter", f.Name(), "stage", stage.String(), "panic", r, "stack", string(debug.Stack()))
			res = Result{Filter: f.Name(), Verdict: Tempfail, Reason: "internal error in filter " + f.Name(),
				Message: "Temporary policy failure, try again later"}
			ok = true
		}
		if ok {
			p.observe(f.Name(), res.Verdict, time.Since(start))
		}
	}()
	switch stage {
	case StageConnect:
		if c, is := f.(ConnectChecker); is {
			return c.CheckConnect(ctx, s), true
		}
	case StageHelo:
		if c, is := f.(HeloChecker); is {
			return c.CheckHelo(ctx, s), true
		}
	case StageMail:
		if c, is := f.(MailChecker); is {
			return c.CheckMail(ctx, s), true
		}
	case StageRcpt:
		if c, is := f.(RcptChecker); is {
			return c.CheckRcpt(ctx, s, rcpt), true
		}
	case StageData:
		if c, is := f.(DataChecker); is {
			return c.CheckData(ctx, s, msg), true
		}
	}
	return Result{}, false
}

// Tell tells every filter that learns from outcomes (OutcomeObserver) how
// the transaction in s ended; each gets o with Score less its own part.
// Like a stage, each call has the stage time limit, and a panic is logged
// and contained.
func (p *Pipeline) Tell(ctx context.Context, s *Session, o Outcome) {
	if p.Empty() {
		return
	}
	for _, e := range p.entries {
		obs, ok := e.Filter.(OutcomeObserver)
		if !ok {
			continue
		}
		told := o
		told.Score = s.Score - ownScore(e, s.Results)
		p.tell(ctx, obs, e.Filter.Name(), s, told)
	}
}

// ownScore is what entry e's results added to the total.
func ownScore(e Entry, results []Result) float64 {
	weight := e.Weight
	switch {
	case e.Mode == ModeIgnore:
		return 0
	case weight == 0:
		weight = 1
	}
	name, own := e.Filter.Name(), 0.0
	for _, r := range results {
		if r.Filter == name || strings.HasPrefix(r.Filter, name+":") {
			own += r.Score * weight
		}
	}
	return own
}

func (p *Pipeline) tell(ctx context.Context, obs OutcomeObserver, name string, s *Session, o Outcome) {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	defer func() {
		if r := recover(); r != nil {
			p.log.Error("filter panicked learning an outcome", "filter", name, "panic", r, "stack", string(debug.Stack()))
		}
	}()
	obs.Outcome(ctx, s, o)
}

// AuthenticationResults joins every result's RFC 8601 parts into one
// header field for authservID, or "" when there are none.
func AuthenticationResults(authservID string, results []Result) string {
	var parts []string
	for _, r := range results {
		parts = append(parts, r.AuthResults...)
	}
	if len(parts) == 0 {
		return ""
	}
	return "Authentication-Results: " + authservID + ";\r\n\t" + strings.Join(parts, ";\r\n\t")
}
