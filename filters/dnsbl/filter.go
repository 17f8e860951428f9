package dnsbl

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/mail"
	"strconv"
	"strings"
	"sync"

	"postern/filters"
	"postern/filters/dns"
)

// FilterName is the default name of the filter in results and logs.
const FilterName = "dnsbl"

// Variables the filter sets for the admin's rules (besides each zone's own
// Courier-style VAR, VAR_IP, VAR_TXT and VAR_ZONE).
const (
	VarScore  = "DNSBL_SCORE"  // the summed weights of every hit so far in the session
	VarListed = "DNSBL_LISTED" // block zones that listed a subject, space-separated
	VarAllow  = "DNSWL_LISTED" // allow zones that listed the client, space-separated
	VarErrors = "DNSBL_ERRORS" // zones that could not answer, space-separated
	VarResult = "DNSBL_RESULT" // reject, accept, listed, clean or temperror
	// The link domains of the message body (zones on=body), at DATA.
	VarBodyDomains = "DNSBL_BODY_DOMAINS" // the domains and IPs looked up, space-separated
	VarBodyListed  = "DNSBL_BODY_LISTED"  // those a block zone listed, space-separated
)

// maxFromDomains bounds the From header addresses looked up at DATA.
const maxFromDomains = 5

// maxHeaderRead bounds how much of the message is read to find the From
// header.
const maxHeaderRead = 64 * 1024

// maxParallel bounds the lookups in flight for one evaluation.
const maxParallel = 16

// Options configure the filter.
type Options struct {
	Config   Config
	Resolver *dns.Resolver // required
	Logger   *slog.Logger
	Name     string // the filter's name; default FilterName
	// OwnDomains are the server's own domains (its name, the domains it
	// accepts mail for): links to them are never looked up.
	OwnDomains []string
}

// Filter checks the session's client IP, HELO name, sender domain and From
// header domains against the configured lists. It implements the connect,
// HELO, MAIL, RCPT and DATA checkers.
//
// At every stage it evaluates every subject known so far (the resolver's
// cache makes repeated questions free), so the verdict and the score always
// reflect the whole session, whichever stages the gateway calls; the Result
// score is the change since the filter's previous result, so that the
// pipeline's running total stays right.
type Filter struct {
	cfg  Config
	r    *dns.Resolver
	log  *slog.Logger
	name string
	body BodyOptions
}

var (
	_ filters.ConnectChecker = (*Filter)(nil)
	_ filters.HeloChecker    = (*Filter)(nil)
	_ filters.MailChecker    = (*Filter)(nil)
	_ filters.RcptChecker    = (*Filter)(nil)
	_ filters.DataChecker    = (*Filter)(nil)
)

// New returns a filter for opts.
func New(opts Options) (*Filter, error) {
	if opts.Resolver == nil {
		return nil, errors.New("dnsbl: filter: no resolver")
	}
	f := &Filter{cfg: opts.Config, r: opts.Resolver, log: opts.Logger, name: opts.Name}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	if f.name == "" {
		f.name = FilterName
	}
	if f.cfg.Timeout <= 0 {
		f.cfg.Timeout = DefaultTimeout
	}
	f.body = BodyOptions{MaxDomains: f.cfg.BodyDomains, Skip: map[string]bool{}}
	if f.cfg.BodySkipDefaults {
		for _, d := range DefaultBodySkip {
			f.body.Skip[d] = true
		}
	}
	for _, d := range f.cfg.BodySkip {
		f.body.Skip[d] = true
	}
	for _, d := range opts.OwnDomains {
		if r := RegisteredDomain(d); r != "" {
			f.body.Skip[r] = true
		}
	}
	return f, nil
}

// Name implements filters.Filter.
func (f *Filter) Name() string { return f.name }

// CheckConnect implements filters.ConnectChecker.
func (f *Filter) CheckConnect(ctx context.Context, s *filters.Session) filters.Result {
	return f.check(ctx, s, filters.StageConnect, nil)
}

// CheckHelo implements filters.HeloChecker.
func (f *Filter) CheckHelo(ctx context.Context, s *filters.Session) filters.Result {
	return f.check(ctx, s, filters.StageHelo, nil)
}

// CheckMail implements filters.MailChecker.
func (f *Filter) CheckMail(ctx context.Context, s *filters.Session) filters.Result {
	return f.check(ctx, s, filters.StageMail, nil)
}

// CheckRcpt implements filters.RcptChecker.
func (f *Filter) CheckRcpt(ctx context.Context, s *filters.Session, rcpt string) filters.Result {
	return f.check(ctx, s, filters.StageRcpt, nil)
}

// CheckData implements filters.DataChecker: the From header domains and
// the link domains of the body join the subjects.
func (f *Filter) CheckData(ctx context.Context, s *filters.Session, msg filters.Message) filters.Result {
	var from, body []string
	if f.wants(SubjectFrom) {
		from = FromDomains(msg)
	}
	if f.wants(SubjectBody) {
		body = BodyDomains(msg, f.body)
	}
	return f.checkSubjects(ctx, s, filters.StageData, SessionSubjects(s, from).WithBody(body))
}

// BodyDomains returns the link domains of msg that the filter would look
// up: bounded by the bodydomains setting, without the skipped domains.
func (f *Filter) BodyDomains(msg filters.Message) []string { return BodyDomains(msg, f.body) }

func (f *Filter) wants(subject Subject) bool {
	for _, z := range f.cfg.Zones {
		if containsSubject(z.Subjects, subject) {
			return true
		}
	}
	return false
}

// Subjects are the values to look up, by kind.
type Subjects map[Subject][]string

// SessionSubjects returns what is known about s: its client IP, HELO name
// and sender domain, and the given From header domains.
func SessionSubjects(s *filters.Session, fromDomains []string) Subjects {
	sub := Subjects{}
	if s.ClientIP.IsValid() {
		sub[SubjectIP] = []string{s.ClientIP.Unmap().String()}
	}
	if d := NormalizeDomain(s.HELO); d != "" {
		sub[SubjectHELO] = []string{d}
	}
	if _, dom, ok := cutAt(s.From); ok {
		if d := NormalizeDomain(dom); d != "" {
			sub[SubjectSender] = []string{d}
		}
	}
	for _, d := range fromDomains {
		if d = NormalizeDomain(d); d != "" && !contains(sub[SubjectFrom], d) {
			sub[SubjectFrom] = append(sub[SubjectFrom], d)
		}
	}
	return sub
}

func cutAt(addr string) (local, domain string, ok bool) {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return "", "", false
	}
	return addr[:i], addr[i+1:], true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// WithBody adds the link domains of the message body (see BodyDomains)
// and returns sub.
func (sub Subjects) WithBody(domains []string) Subjects {
	for _, d := range domains {
		if d != "" && !contains(sub[SubjectBody], d) {
			sub[SubjectBody] = append(sub[SubjectBody], d)
		}
	}
	return sub
}

// Evaluation is what the lists say about a set of subjects.
type Evaluation struct {
	Lookups   []Lookup // every lookup, in zone order
	Hits      []Lookup // the listings that count, in zone order
	Skipped   []Lookup // listings ignored because an earlier zone set the same variable
	Score     float64  // the summed weights of Hits
	Threshold float64
	Reject    *Lookup // the first hit of a zone with action=reject
	Accept    *Lookup // the first hit of a zone with action=accept
	OverLimit bool    // Score reached a non-zero Threshold
	Errors    []Lookup
	Vars      map[string]string
}

// Rejects reports whether the evaluation refuses the client.
func (e *Evaluation) Rejects() bool {
	return e.Accept == nil && (e.Reject != nil || e.OverLimit)
}

// TempErrors are the errors of block zones that a retry may cure.
func (e *Evaluation) TempErrors() []Lookup {
	var out []Lookup
	for _, l := range e.Errors {
		if l.Zone.Type == Block && dns.IsTemporary(l.Err) {
			out = append(out, l)
		}
	}
	return out
}

// Evaluate asks every zone about the subjects it is configured for, in
// parallel under one deadline (Config.Timeout), and combines the answers in
// configuration order.
func (f *Filter) Evaluate(ctx context.Context, sub Subjects) *Evaluation {
	type job struct {
		z       *Zone
		subject Subject
		value   string
	}
	var jobs []job
	for _, z := range f.cfg.Zones {
		for _, kind := range z.Subjects {
			for _, v := range sub[kind] {
				jobs = append(jobs, job{z, kind, v})
			}
		}
	}
	ev := &Evaluation{Threshold: f.cfg.Threshold, Vars: map[string]string{}}
	if len(jobs) == 0 {
		return ev
	}
	ctx, cancel := context.WithTimeout(ctx, f.cfg.Timeout)
	defer cancel()
	ev.Lookups = make([]Lookup, len(jobs))
	sem := make(chan struct{}, maxParallel)
	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ev.Lookups[i] = Ask(ctx, f.r, j.z, j.subject, j.value)
		}()
	}
	wg.Wait()
	f.combine(ev)
	return ev
}

// combine applies the lookups in configuration order (couriertcpd(1),
// MULTIPLE DNS LISTS: the first zone that sets a variable wins, later zones
// with the same variable are skipped).
func (f *Filter) combine(ev *Evaluation) {
	varSetBy := map[string]*Zone{} // variable -> the zone that set it
	var listed, allowed, errs, bodyListed []string
	bodyCounted := map[*Zone]bool{} // zones whose weight a body domain added
	for i := range ev.Lookups {
		l := &ev.Lookups[i]
		z := l.Zone
		if l.Err != nil {
			ev.Errors = append(ev.Errors, *l)
			errs = appendUnique(errs, z.Name)
			f.log.Warn("dnsbl: zone did not answer", "zone", z.Name, "query", l.Query, "origin", z.Origin, "err", l.Err)
			continue
		}
		if !l.Listed {
			continue
		}
		if z.Var != "" {
			switch by := varSetBy[z.Var]; {
			case by == nil:
				varSetBy[z.Var] = z
				f.setZoneVars(ev.Vars, l)
			case by != z:
				ev.Skipped = append(ev.Skipped, *l)
				continue
			}
			// The same zone listing another subject (HELO and sender)
			// counts again, but its first hit keeps the variables.
		}
		if l.Subject == SubjectBody {
			if z.Type == Block {
				bodyListed = appendUnique(bodyListed, l.Value)
			}
			l.Repeat = bodyCounted[z]
			bodyCounted[z] = true
		}
		ev.Hits = append(ev.Hits, *l)
		if !l.Repeat {
			ev.Score += z.Weight
		}
		if z.Type == Block {
			listed = appendUnique(listed, z.Name)
		} else {
			allowed = appendUnique(allowed, z.Name)
		}
	}
	for i := range ev.Hits {
		z := ev.Hits[i].Zone
		if z.Type == Block && z.Action == ActionReject && ev.Reject == nil {
			ev.Reject = &ev.Hits[i]
		}
		if z.Type == Allow && z.Action == ActionAccept && ev.Accept == nil {
			ev.Accept = &ev.Hits[i]
		}
	}
	blockScore := 0.0
	for _, h := range ev.Hits {
		if h.Zone.Type == Block && !h.Repeat {
			blockScore += h.Zone.Weight
		}
	}
	// The threshold counts block weights only: a DNSWL hit lowers the
	// score the rules see, but does not argue with a threshold it did not
	// ask for; use action=accept to exempt.
	ev.OverLimit = ev.Threshold > 0 && blockScore >= ev.Threshold
	ev.Vars[VarScore] = formatScore(ev.Score)
	ev.Vars[VarListed] = strings.Join(listed, " ")
	ev.Vars[VarAllow] = strings.Join(allowed, " ")
	ev.Vars[VarErrors] = strings.Join(errs, " ")
	if len(bodyListed) > 0 || ev.askedBody() {
		ev.Vars[VarBodyListed] = strings.Join(bodyListed, " ")
		var asked []string
		for _, l := range ev.Lookups {
			if l.Subject == SubjectBody {
				asked = appendUnique(asked, l.Value)
			}
		}
		ev.Vars[VarBodyDomains] = strings.Join(asked, " ")
	}
	switch {
	case ev.Accept != nil:
		ev.Vars[VarResult] = "accept"
	case ev.Rejects():
		ev.Vars[VarResult] = "reject"
	case len(listed) > 0:
		ev.Vars[VarResult] = "listed"
	case len(ev.TempErrors()) > 0:
		ev.Vars[VarResult] = "temperror"
	default:
		ev.Vars[VarResult] = "clean"
	}
}

func (e *Evaluation) askedBody() bool {
	for _, l := range e.Lookups {
		if l.Subject == SubjectBody {
			return true
		}
	}
	return false
}

// setZoneVars sets Courier's variables for a hit (couriertcpd(1),
// ADDITIONAL DNS ACCESS LIST VARIABLES): VAR is the message for a block
// list and empty for an allow list; VAR_IP the A record, VAR_TXT the TXT
// record, VAR_ZONE the zone.
func (f *Filter) setZoneVars(vars map[string]string, l *Lookup) {
	v := l.Zone.Var
	if l.Zone.Type == Block {
		vars[v] = RenderMessage(l)
	} else {
		vars[v] = ""
	}
	if l.Code.IsValid() {
		vars[v+"_IP"] = l.Code.String()
	}
	if l.TXT != "" {
		vars[v+"_TXT"] = l.TXT
	}
	vars[v+"_ZONE"] = l.Zone.Name
}

func appendUnique(list []string, s string) []string {
	if contains(list, s) {
		return list
	}
	return append(list, s)
}

func formatScore(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// RenderMessage is the reply text for a hit: the zone's message with its
// substitutions (%i or %s the IP address or domain, %z the zone, %t the TXT
// reason, %c the answer code, %q the name queried, %% a percent sign), the
// Courier message as written, or a default naming the zone and the reason.
func RenderMessage(l *Lookup) string {
	z := l.Zone
	if z.Literal {
		return z.Message
	}
	if z.TXTList && z.Message == "" {
		if l.TXT != "" {
			return l.TXT
		}
	}
	tmpl := z.Message
	if tmpl == "" {
		what := "Client address"
		if l.Subject != SubjectIP {
			what = map[Subject]string{SubjectHELO: "HELO name", SubjectSender: "Sender domain", SubjectFrom: "From domain", SubjectBody: "Link domain"}[l.Subject]
		}
		tmpl = what + " %i is listed by %z"
		if l.TXT != "" {
			tmpl += ": %t"
		}
	}
	var b strings.Builder
	for i := 0; i < len(tmpl); i++ {
		c := tmpl[i]
		if c != '%' || i+1 == len(tmpl) {
			b.WriteByte(c)
			continue
		}
		i++
		switch tmpl[i] {
		case 'i', 's':
			b.WriteString(l.Value)
		case 'z':
			b.WriteString(z.Name)
		case 't':
			b.WriteString(l.TXT)
		case 'c':
			if l.Code.IsValid() {
				b.WriteString(l.Code.String())
			}
		case 'q':
			b.WriteString(l.Query)
		case '%':
			b.WriteByte('%')
		default:
			b.WriteByte('%')
			b.WriteByte(tmpl[i])
		}
	}
	out := b.String()
	if len(out) > maxMessageLen {
		out = out[:maxMessageLen]
	}
	return out
}

// check evaluates the session at stage and turns the evaluation into a
// Result.
func (f *Filter) check(ctx context.Context, s *filters.Session, stage filters.Stage, fromDomains []string) filters.Result {
	return f.checkSubjects(ctx, s, stage, SessionSubjects(s, fromDomains))
}

func (f *Filter) checkSubjects(ctx context.Context, s *filters.Session, stage filters.Stage, sub Subjects) filters.Result {
	ev := f.Evaluate(ctx, sub)
	res := filters.Result{Filter: f.name, Vars: ev.Vars, Reason: ev.Summary()}
	res.Score = ev.Score - f.reported(s)
	switch {
	case ev.Accept != nil:
		res.Verdict = filters.Accept
	case stage < f.cfg.RejectStage:
		// Held until the reject stage; the variables are there already.
	case ev.Rejects():
		res.Verdict = filters.Reject
		res.Code, res.Enhanced = 550, "5.7.1" // RFC 3463: delivery not authorized, message refused
		if stage == filters.StageConnect {
			res.Code = 554 // RFC 5321 section 3.1: refusal at connection opening
		}
		res.Message = ev.RejectMessage()
	case f.cfg.DNSErrorTempfail && len(ev.TempErrors()) > 0:
		res.Verdict = filters.Tempfail
		res.Code, res.Enhanced = 451, "4.4.3" // RFC 3463: directory server failure
		res.Message = "DNS list lookup failed (" + ev.TempErrors()[0].Zone.Name + "), try again later"
	}
	if stage == filters.StageData {
		res.AuthResults = ev.AuthResults()
	}
	return res
}

// reported is the cumulative score this filter stated in its latest result
// in the session: the new result's Score is the difference, so the total
// counts every hit once.
func (f *Filter) reported(s *filters.Session) float64 {
	for i := len(s.Results) - 1; i >= 0; i-- {
		r := s.Results[i]
		if r.Filter != f.name {
			continue
		}
		if v, err := strconv.ParseFloat(r.Vars[VarScore], 64); err == nil {
			return v
		}
		return 0
	}
	return 0
}

// RejectMessage is the reply text when the evaluation rejects.
func (e *Evaluation) RejectMessage() string {
	if e.Reject != nil {
		return RenderMessage(e.Reject)
	}
	var zones []string
	for _, h := range e.Hits {
		if h.Zone.Type == Block {
			zones = appendUnique(zones, h.Zone.Name)
		}
	}
	return fmt.Sprintf("Listed by %s (score %s, limit %s)", strings.Join(zones, ", "),
		formatScore(e.Score), formatScore(e.Threshold))
}

// Summary says in one line what the lists said, for logs and the
// rejection log.
func (e *Evaluation) Summary() string {
	if len(e.Lookups) == 0 {
		return "dnsbl: nothing to look up"
	}
	var parts []string
	for _, h := range e.Hits {
		p := fmt.Sprintf("%s %s %s", h.Zone.Name, h.Zone.Type, h.Value)
		if h.Code.IsValid() {
			p += " (" + h.Code.String() + ")"
		}
		if h.TXT != "" {
			p += ": " + h.TXT
		}
		if h.Repeat {
			p += " (zone already counted)"
		}
		parts = append(parts, p)
	}
	for _, l := range e.Skipped {
		parts = append(parts, fmt.Sprintf("%s %s %s ignored: %s already set", l.Zone.Name, l.Zone.Type, l.Value, l.Zone.Var))
	}
	for _, l := range e.Errors {
		parts = append(parts, fmt.Sprintf("%s error for %s: %v", l.Zone.Name, l.Value, l.Err))
	}
	if len(parts) == 0 {
		return fmt.Sprintf("dnsbl: not listed (%d lookups)", len(e.Lookups))
	}
	out := "dnsbl: " + strings.Join(parts, "; ") + "; score " + formatScore(e.Score)
	if e.Threshold > 0 {
		out += " (limit " + formatScore(e.Threshold) + ")"
	}
	return out
}

// AuthResults are the RFC 8904 "dnswl" method results of the allow hits on
// the client address, for Authentication-Results (RFC 8601).
func (e *Evaluation) AuthResults() []string {
	var out []string
	for _, h := range e.Hits {
		if h.Zone.Type != Allow || h.Subject != SubjectIP {
			continue
		}
		r := "dnswl=pass dns.zone=" + h.Zone.Name
		if h.Code.IsValid() {
			r += " policy.ip=" + h.Code.String()
		}
		if h.TXT != "" {
			r += ` policy.txt="` + strings.NewReplacer(`"`, "", `\`, "").Replace(h.TXT) + `"`
		}
		out = append(out, r)
	}
	return out
}

// FromDomains returns the domains of the addresses in the message's From
// header field (RFC 5322 section 3.6.2), at most five, reading no more than
// 64 KiB of header. A header that cannot be parsed gives none.
func FromDomains(msg filters.Message) []string {
	n := msg.Size()
	if n > maxHeaderRead {
		n = maxHeaderRead
	}
	buf := make([]byte, n)
	if _, err := msg.ReadAt(buf, 0); err != nil && !errors.Is(err, io.EOF) {
		return nil
	}
	if i := bytes.Index(buf, []byte("\r\n\r\n")); i >= 0 {
		buf = buf[:i+4]
	} else if i := bytes.Index(buf, []byte("\n\n")); i >= 0 {
		buf = buf[:i+2]
	} else {
		buf = append(buf, "\r\n\r\n"...)
	}
	m, err := mail.ReadMessage(bytes.NewReader(buf))
	if err != nil {
		return nil
	}
	addrs, err := m.Header.AddressList("From")
	if err != nil {
		return nil
	}
	var out []string
	for _, a := range addrs {
		if _, d, ok := cutAt(a.Address); ok {
			if d = NormalizeDomain(d); d != "" {
				out = appendUnique(out, d)
			}
		}
		if len(out) == maxFromDomains {
			break
		}
	}
	return out
}
