// Package reputation remembers how each client behaved and scores new mail
// by that history, as Rspamd's reputation and ip_score modules do and as
// Postfix's postscreen remembers the clients that passed its tests.
//
// For each bucket — the client's address, its network (a /24 or /48 by
// default), and the envelope sender's domain when SPF or DKIM
// authenticated it (a forged domain is neither credited nor blamed) — it
// keeps two decayed counts: good outcomes (messages accepted with a low
// score) and bad ones (a message or recipient refused by a check or by the
// score, or quarantined). The gateway tells the pipeline how each
// transaction ended (filters.OutcomeObserver). The counts decay with a
// half-life, so a client that mends its ways is forgiven and a clean one
// that turns bad loses its credit.
//
// The score of a bucket grows with the evidence: with g good and b bad
// outcomes (n = g+b), the bad share p = (b+1)/(n+2) (Laplace's rule: no
// history says 1/2), the direction d = 2p-1, the confidence tanh(n/E),
// and the score d·tanh(n/E) times maxscore (d > 0) or -minscore (d < 0).
// At connect the client's and its network's scores (weighted) are added;
// at MAIL the sender domain's when SPF passed, else at the end of DATA
// when DKIM passed for it. Limits (off by default) refuse MAIL from a
// bucket that scores too high.
//
// Counting is atomic in both state stores without read-modify-write: an
// outcome at time t adds 2^((t-T)/h) (scaled to an integer) to a counter
// of the epoch that began at T, one epoch being 16 half-lives; the decayed
// count at time now is the counter divided by 2^((now-T)/h). Reading takes
// the current and the previous epoch; older outcomes weigh under 2^-16.
//
// The package owns the keys under "rep:" in the shared state store and the
// parsing of the reputation setting file.
package reputation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"postern/filters"
	"postern/filters/dkim"
	"postern/filters/state"
)

// Name is the filter's name in the filters setting and in results.
const Name = "reputation"

// Variables the admin's rules can test.
const (
	VarClient      = "REPUTATION"              // new, clean, neutral, bad, or exempt
	VarClientScore = "REPUTATION_SCORE"        // the connect score
	VarDomain      = "REPUTATION_DOMAIN"       // the authenticated sender domain's status
	VarDomainName  = "REPUTATION_DOMAIN_NAME"  // which domain that is
	VarDomainScore = "REPUTATION_DOMAIN_SCORE" // its score
)

// Statuses.
const (
	StatusNew     = "new"     // fewer outcomes than minsamples
	StatusClean   = "clean"   // score at or below the clean level
	StatusNeutral = "neutral" // between
	StatusBad     = "bad"     // score at or above the bad level
	StatusExempt  = "exempt"  // authenticated, a relay client, or REPUTATION=off in smtpaccess
)

const (
	// scale turns the epoch weights into integers: an outcome counts at
	// least 1000, so the counts keep three decimals.
	scale = 1000
	// epochHalfLives is an epoch's length in half-lives: an epoch's
	// weights stay below 2^16·1000, and outcomes two epochs old weigh
	// under 2^-16.
	epochHalfLives = 16
)

// Kind is what a bucket is about.
type Kind string

const (
	KindIP      Kind = "ip"
	KindNetwork Kind = "net"
	KindDomain  Kind = "domain"
)

// Bucket is one thing whose history is kept.
type Bucket struct {
	Kind Kind
	ID   string // "192.0.2.1", "192.0.2.0/24", "example.org"
}

func (b Bucket) String() string {
	switch b.Kind {
	case KindNetwork:
		return "network " + b.ID
	case KindDomain:
		return "domain " + b.ID
	}
	return "ip " + b.ID
}

// Counts are a bucket's decayed numbers of outcomes.
type Counts struct{ Good, Bad float64 }

// N is the number of outcomes.
func (c Counts) N() float64 { return c.Good + c.Bad }

// Options build a Reputation.
type Options struct {
	Config
	Store  state.Store // required
	Logger *slog.Logger
	Now    func() time.Time // nil: time.Now
}

// Reputation is the filter. It is safe for concurrent use.
type Reputation struct {
	cfg   Config
	store state.Store
	log   *slog.Logger
	now   func() time.Time

	storeErrs state.ErrorLog
}

var (
	_ filters.ConnectChecker  = (*Reputation)(nil)
	_ filters.MailChecker     = (*Reputation)(nil)
	_ filters.DataChecker     = (*Reputation)(nil)
	_ filters.OutcomeObserver = (*Reputation)(nil)
)

// New checks opt and returns the filter.
func New(opt Options) (*Reputation, error) {
	if opt.Store == nil {
		return nil, errors.New("reputation: no state store")
	}
	if err := opt.Config.Check(); err != nil {
		return nil, fmt.Errorf("reputation: %w", err)
	}
	r := &Reputation{cfg: opt.Config, store: opt.Store, log: opt.Logger, now: opt.Now}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.now == nil {
		r.now = time.Now
	}
	return r, nil
}

// Name returns "reputation".
func (r *Reputation) Name() string { return Name }

// Config returns the settings in force.
func (r *Reputation) Config() Config { return r.cfg }

// ClientBuckets returns the buckets of a client address: itself and its
// network (an IPv4-mapped address counts as IPv4).
func (r *Reputation) ClientBuckets(ip netip.Addr) []Bucket {
	ip = ip.Unmap()
	bits := r.cfg.IPv6Prefix
	if ip.Is4() {
		bits = r.cfg.IPv4Prefix
	}
	network, err := ip.Prefix(bits)
	if err != nil {
		network = netip.PrefixFrom(ip, ip.BitLen())
	}
	return []Bucket{{KindIP, ip.String()}, {KindNetwork, network.String()}}
}

// key is the store key of a bucket's counter of one epoch. The half-life
// is part of it: counters summed with another half-life's weights would
// mean something else, so changing it starts the history afresh.
func (r *Reputation) key(b Bucket, epoch int64, good bool) string {
	kind := "b"
	if good {
		kind = "g"
	}
	return fmt.Sprintf("rep:%s:%s|h%d|e%d|%s", b.Kind, b.ID, int64(r.cfg.HalfLife/time.Second), epoch, kind)
}

func (r *Reputation) epochSeconds() float64 {
	return epochHalfLives * r.cfg.HalfLife.Seconds()
}

// epochOf returns t's epoch and how many seconds into it t is.
func (r *Reputation) epochOf(t time.Time) (int64, float64) {
	sec := float64(t.UnixNano()) / 1e9
	e := math.Floor(sec / r.epochSeconds())
	return int64(e), sec - e*r.epochSeconds()
}

// record counts one outcome for b at now.
func (r *Reputation) record(ctx context.Context, b Bucket, good bool, now time.Time) error {
	epoch, into := r.epochOf(now)
	w := int64(math.Round(scale * math.Exp2(into/r.cfg.HalfLife.Seconds())))
	// A counter lives through its own epoch and the next, when it is
	// still read as the previous one.
	ttl := time.Duration(2*r.epochSeconds()) * time.Second
	_, err := r.store.Incr(ctx, r.key(b, epoch, good), w, ttl)
	return err
}

// Counts returns b's decayed counts at now.
func (r *Reputation) Counts(ctx context.Context, b Bucket, now time.Time) (Counts, error) {
	epoch, into := r.epochOf(now)
	var c Counts
	for back := int64(0); back < 2; back++ {
		// Seconds from the start of that epoch to now.
		age := into + float64(back)*r.epochSeconds()
		div := scale * math.Exp2(age/r.cfg.HalfLife.Seconds())
		for _, good := range []bool{true, false} {
			v, found, err := r.store.Get(ctx, r.key(b, epoch-back, good))
			if err != nil {
				return Counts{}, err
			}
			if !found {
				continue
			}
			n, err := strconv.ParseInt(string(v), 10, 64)
			if err != nil || n < 0 {
				continue // not ours to understand; counts as nothing
			}
			if good {
				c.Good += float64(n) / div
			} else {
				c.Bad += float64(n) / div
			}
		}
	}
	return c, nil
}

// Reset forgets b's history.
func (r *Reputation) Reset(ctx context.Context, b Bucket) error {
	epoch, _ := r.epochOf(r.now())
	for back := int64(0); back < 2; back++ {
		for _, good := range []bool{true, false} {
			if err := r.store.Delete(ctx, r.key(b, epoch-back, good)); err != nil {
				return err
			}
		}
	}
	return nil
}

// Score is the score of counts c (see the package comment): 0 under
// minsamples, otherwise between minscore and maxscore, growing with the
// evidence.
func (c Config) Score(n Counts) float64 {
	total := n.N()
	if total < c.MinSamples || total <= 0 {
		return 0
	}
	p := (n.Bad + 1) / (total + 2)
	d := 2*p - 1
	confidence := math.Tanh(total / c.Evidence)
	if d >= 0 {
		return d * confidence * c.MaxScore
	}
	return d * confidence * -c.MinScore
}

// Status names a score for the rules.
func (c Config) Status(n Counts, score float64) string {
	switch {
	case n.N() < c.MinSamples || n.N() <= 0:
		return StatusNew
	case score <= c.Clean:
		return StatusClean
	case score >= c.Bad:
		return StatusBad
	}
	return StatusNeutral
}

// Assessment is one bucket's history and what it means.
type Assessment struct {
	Bucket Bucket
	Counts Counts
	Score  float64
	Status string
}

func (a Assessment) String() string {
	return fmt.Sprintf("%s good %.1f bad %.1f score %+.2f", a.Bucket, a.Counts.Good, a.Counts.Bad, a.Score)
}

// Assess reads b's history at now and scores it.
func (r *Reputation) Assess(ctx context.Context, b Bucket, now time.Time) (Assessment, error) {
	c, err := r.Counts(ctx, b, now)
	if err != nil {
		return Assessment{}, err
	}
	s := r.cfg.Score(c)
	return Assessment{Bucket: b, Counts: c, Score: s, Status: r.cfg.Status(c, s)}, nil
}

// exempt returns why the session is neither scored nor recorded, or "".
func exempt(s *filters.Session) string {
	if s.AuthUser != "" {
		return "authenticated client"
	}
	if _, ok := s.Access["RELAYCLIENT"]; ok {
		return "smtpaccess RELAYCLIENT"
	}
	if v, ok := s.Access["REPUTATION"]; ok {
		switch strings.ToLower(strings.TrimSpace(v)) {
		case "off", "no", "0", "false":
			return "smtpaccess REPUTATION=" + v
		}
	}
	if !s.ClientIP.IsValid() {
		return "no client address"
	}
	return ""
}

// CheckConnect scores the client's address and network.
func (r *Reputation) CheckConnect(ctx context.Context, s *filters.Session) filters.Result {
	if why := exempt(s); why != "" {
		return filters.Result{Filter: Name, Reason: "reputation: not applied: " + why, Vars: map[string]string{VarClient: StatusExempt}}
	}
	now := r.now()
	var parts []string
	var score float64
	var as []Assessment
	for _, b := range r.ClientBuckets(s.ClientIP) {
		a, err := r.Assess(ctx, b, now)
		if err != nil {
			return r.storeFailed(s, err)
		}
		as = append(as, a)
		w := r.weight(b.Kind)
		score += w * a.Score
		parts = append(parts, fmt.Sprintf("%s ×%g", a, w))
	}
	status := r.cfg.Status(Counts{Good: as[0].Counts.Good + as[1].Counts.Good, Bad: as[0].Counts.Bad + as[1].Counts.Bad}, score)
	if as[0].Status == StatusNew && as[1].Status == StatusNew {
		status = StatusNew
	}
	return filters.Result{
		Filter: Name,
		Score:  score,
		Reason: fmt.Sprintf("reputation: %s; client %s %+.2f", strings.Join(parts, "; "), status, score),
		Vars:   map[string]string{VarClient: status, VarClientScore: strconv.FormatFloat(score, 'f', 2, 64)},
	}
}

// CheckMail scores the sender's domain when SPF authenticated it, and
// refuses a client, network or domain past the configured limits.
func (r *Reputation) CheckMail(ctx context.Context, s *filters.Session) filters.Result {
	if why := exempt(s); why != "" {
		return filters.Result{Filter: Name, Reason: "reputation: not applied: " + why}
	}
	now := r.now()
	if r.cfg.RejectAt > 0 || r.cfg.TempfailAt > 0 {
		for _, b := range r.ClientBuckets(s.ClientIP) {
			a, err := r.Assess(ctx, b, now)
			if err != nil {
				return r.storeFailed(s, err)
			}
			if res, refused := r.limit(a); refused {
				return res
			}
		}
	}
	domain := authenticatedDomain(s, false)
	if domain == "" {
		return filters.Result{Filter: Name, Reason: "reputation: sender domain not authenticated at MAIL (SPF)"}
	}
	return r.domainResult(ctx, s, domain, "SPF", now)
}

// CheckData scores the sender's domain when DKIM authenticated it and it
// was not scored at MAIL.
func (r *Reputation) CheckData(ctx context.Context, s *filters.Session, _ filters.Message) filters.Result {
	if why := exempt(s); why != "" {
		return filters.Result{Filter: Name, Reason: "reputation: not applied: " + why}
	}
	if s.Var(VarDomainName) != "" {
		return filters.Result{Filter: Name, Reason: "reputation: sender domain scored at MAIL"}
	}
	domain := authenticatedDomain(s, true)
	if domain == "" {
		return filters.Result{Filter: Name, Reason: "reputation: sender domain not authenticated (neither SPF nor DKIM passed for it): not scored"}
	}
	return r.domainResult(ctx, s, domain, "DKIM", r.now())
}

func (r *Reputation) domainResult(ctx context.Context, s *filters.Session, domain, how string, now time.Time) filters.Result {
	a, err := r.Assess(ctx, Bucket{KindDomain, domain}, now)
	if err != nil {
		return r.storeFailed(s, err)
	}
	if res, refused := r.limit(a); refused {
		return res
	}
	score := r.cfg.WeightDomain * a.Score
	return filters.Result{
		Filter: Name,
		Score:  score,
		Reason: fmt.Sprintf("reputation: %s (authenticated by %s) ×%g; %s %+.2f", a, how, r.cfg.WeightDomain, a.Status, score),
		Vars: map[string]string{VarDomain: a.Status, VarDomainName: domain,
			VarDomainScore: strconv.FormatFloat(score, 'f', 2, 64)},
	}
}

// limit refuses a bucket past the reject or tempfail limit.
func (r *Reputation) limit(a Assessment) (filters.Result, bool) {
	res := filters.Result{Filter: Name, Enhanced: "5.7.1", Code: 550, Verdict: filters.Reject}
	switch {
	case r.cfg.RejectAt > 0 && a.Score >= r.cfg.RejectAt:
		res.Reason = fmt.Sprintf("reputation: %s reaches the reject limit %g", a, r.cfg.RejectAt)
	case r.cfg.TempfailAt > 0 && a.Score >= r.cfg.TempfailAt:
		res.Verdict, res.Code, res.Enhanced = filters.Tempfail, 451, "4.7.1"
		res.Reason = fmt.Sprintf("reputation: %s reaches the tempfail limit %g", a, r.cfg.TempfailAt)
	default:
		return filters.Result{}, false
	}
	res.Message = fmt.Sprintf("Bad reputation of %s here: %.0f of the last %.0f messages refused (score %.1f)",
		a.Bucket, a.Counts.Bad, a.Counts.N(), a.Score)
	key := map[Kind]string{KindIP: VarClient, KindNetwork: VarClient, KindDomain: VarDomain}[a.Bucket.Kind]
	res.Vars = map[string]string{key: a.Status}
	return res, true
}

func (r *Reputation) weight(k Kind) float64 { return r.cfg.Weight(k) }

// authenticatedDomain returns the envelope sender's domain when an earlier
// check authenticated it: SPF passed for the MAIL FROM domain, or (with
// dkimToo) a DKIM signature of that domain or of a parent of it passed
// (whoever signs for example.org controls its subdomains). "" otherwise:
// an unauthenticated domain may be anybody's.
func authenticatedDomain(s *filters.Session, dkimToo bool) string {
	from := strings.Trim(s.From, "<> ")
	i := strings.LastIndexByte(from, '@')
	if i < 0 {
		return ""
	}
	domain := strings.ToLower(strings.TrimSuffix(from[i+1:], "."))
	if domain == "" || len(domain) > 253 || strings.ContainsAny(domain, " |[]") {
		return ""
	}
	for _, res := range s.Results {
		if res.Filter != "spf" && !strings.HasPrefix(res.Filter, "spf:") {
			continue
		}
		if strings.EqualFold(res.Vars["SPF"], "pass") && strings.EqualFold(strings.TrimSuffix(res.Vars["SPF_DOMAIN"], "."), domain) {
			return domain
		}
	}
	if !dkimToo {
		return ""
	}
	domains, status, found := dkim.FromResults(s.Results)
	if !found || status != dkim.Pass {
		return ""
	}
	for _, d := range domains {
		d = strings.ToLower(strings.TrimSuffix(d, "."))
		if d != "" && (domain == d || strings.HasSuffix(domain, "."+d)) {
			return domain
		}
	}
	return ""
}

// Judgement is what an outcome says about the client.
type Judgement int

const (
	Neither Judgement = iota
	Good
	Bad
)

// Judge decides whether an outcome is good, bad, or says nothing:
// refused or quarantined by a check is bad; by the score, or accepted, it
// depends on the score without reputation's own part (badfrom, goodbelow);
// a tempfail (greylisting, a DNS timeout) says nothing, nor does a refusal
// of our own (a client refused for its reputation would otherwise never
// be forgiven).
func (c Config) Judge(o filters.Outcome) Judgement {
	switch {
	case o.Filter == Name || o.Verdict == filters.Tempfail:
		return Neither
	case (o.Verdict == filters.Reject || o.Verdict == filters.Quarantine) && o.Filter != "score":
		return Bad
	case o.Score >= c.BadFrom:
		return Bad
	case o.Verdict == filters.Accept && o.Score < c.GoodBelow:
		return Good
	}
	return Neither
}

// Outcome records how a transaction ended in the client's, its network's
// and the authenticated sender domain's histories.
func (r *Reputation) Outcome(ctx context.Context, s *filters.Session, o filters.Outcome) {
	if exempt(s) != "" {
		return
	}
	j := r.cfg.Judge(o)
	if j == Neither {
		return
	}
	buckets := r.ClientBuckets(s.ClientIP)
	if d := authenticatedDomain(s, true); d != "" {
		buckets = append(buckets, Bucket{KindDomain, d})
	}
	now := r.now()
	for _, b := range buckets {
		if err := r.record(ctx, b, j == Good, now); err != nil {
			r.logStoreError(s, err)
			return
		}
	}
	r.log.Debug("reputation: outcome recorded", "session", s.ID, "good", j == Good, "stage", o.Stage.String(),
		"verdict", o.Verdict.String(), "by", o.Filter, "score", o.Score, "buckets", len(buckets))
}

func (r *Reputation) storeFailed(s *filters.Session, err error) filters.Result {
	r.logStoreError(s, err)
	if r.cfg.OnStoreError == StoreErrorTempfail {
		return filters.Result{Filter: Name, Verdict: filters.Tempfail, Code: 451, Enhanced: "4.3.0",
			Message: "Temporary local problem, please try again later",
			Reason:  "reputation: state store failed, deferring (onstoreerror tempfail): " + err.Error()}
	}
	return filters.Result{Filter: Name, Reason: "reputation: state store failed, not scored (onstoreerror pass): " + err.Error()}
}

// logStoreError logs at Error level, once a minute at most: during an
// outage every session fails the same way.
func (r *Reputation) logStoreError(s *filters.Session, err error) {
	n, due := r.storeErrs.Due()
	if !due {
		return
	}
	r.log.Error("reputation: state store failed; reputation degraded", "session", s.ID, "err", err, "failures_not_logged", n)
}

// ParseTarget reads what an admin names on the command line: an address
// (its own bucket and its network's), a network (masked to the configured
// prefix length, the only one kept), or a sender domain.
func (r *Reputation) ParseTarget(s string) ([]Bucket, error) {
	if ip, err := netip.ParseAddr(s); err == nil {
		return r.ClientBuckets(ip), nil
	}
	if p, err := netip.ParsePrefix(s); err == nil {
		return r.ClientBuckets(p.Addr())[1:], nil
	}
	d := strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(s, "@"), "."))
	if d == "" || len(d) > 253 || !strings.Contains(d, ".") || strings.ContainsAny(d, " |[]/@:\t") {
		return nil, fmt.Errorf("%q: want an IP address, a network (192.0.2.0/24) or a domain", s)
	}
	return []Bucket{{KindDomain, d}}, nil
}

// Explain says how a's score comes about, step by step, for a user who
// asks why their mail is scored so.
func (c Config) Explain(a Assessment) []string {
	n := a.Counts.N()
	out := []string{
		fmt.Sprintf("outcomes (decayed, half-life %s): good %.1f, bad %.1f", formatDuration(c.HalfLife), a.Counts.Good, a.Counts.Bad),
	}
	if n < c.MinSamples || n <= 0 {
		return append(out, fmt.Sprintf("fewer than minsamples %g outcomes: no score", c.MinSamples))
	}
	p := (a.Counts.Bad + 1) / (n + 2)
	bound, name := c.MaxScore, "maxscore"
	if p < 0.5 {
		bound, name = -c.MinScore, "-minscore"
	}
	out = append(out,
		fmt.Sprintf("bad share p = (bad+1)/(n+2) = %.1f/%.1f = %.2f; direction 2p-1 = %+.2f", a.Counts.Bad+1, n+2, p, 2*p-1),
		fmt.Sprintf("confidence tanh(n/evidence) = tanh(%.1f/%g) = %.2f", n, c.Evidence, math.Tanh(n/c.Evidence)),
		fmt.Sprintf("score = %+.2f × %.2f × %g (%s) = %+.2f", 2*p-1, math.Tanh(n/c.Evidence), bound, name, a.Score),
	)
	switch {
	case c.RejectAt > 0 && a.Score >= c.RejectAt:
		out = append(out, fmt.Sprintf("at or above the reject limit %g: MAIL is refused (550 5.7.1)", c.RejectAt))
	case c.TempfailAt > 0 && a.Score >= c.TempfailAt:
		out = append(out, fmt.Sprintf("at or above the tempfail limit %g: MAIL is deferred (451 4.7.1)", c.TempfailAt))
	}
	return out
}

// Weight is how much a bucket of kind k counts in the check's score.
func (c Config) Weight(k Kind) float64 {
	switch k {
	case KindIP:
		return c.WeightIP
	case KindNetwork:
		return c.WeightNetwork
	}
	return c.WeightDomain
}

// formatDuration writes whole days as "7d".
func formatDuration(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}
