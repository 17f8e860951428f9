// Package ratelimit limits how much a client network, a sender or an
// authenticated user may do per time window: connections, messages
// (transactions, counted at MAIL FROM) and recipients (counted at RCPT TO),
// each by rules of the form "client /24 messages 100/1h". It also guards
// against dictionary attacks: the gateway reports every recipient it refused
// as unknown (NoteUnknownRecipient), and a client over its "unknown" limit is
// refused and disconnected for the rest of the window.
//
// Counting uses fixed windows on the shared state store (Store.Incr): a
// counter starts at the first event and expires one window later, and every
// gateway sharing the store counts into the same counter. A fixed window is
// exact inside itself but lets a client that times its bursts send up to
// twice the limit across a window boundary (the end of one window and the
// start of the next); that is the price of one store operation per event.
//
// Over a limit the answer is a temporary failure (451 4.7.0, RFC 3463:
// "other or undefined security status"), which real senders retry later; a
// dictionary attacker gets a rejection with Vars["DISCONNECT"]="1", which
// tells the gateway to send the reply and close the connection.
//
// The package owns its keys in the store (prefix "rl:") and the parsing of
// the ratelimit setting file.
package ratelimit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"

	"postern/filters"
	"postern/filters/state"
)

// Options build a Limiter.
type Options struct {
	Config
	Store  state.Store // required
	Logger *slog.Logger
}

// Limiter is the rate-limit filter. It is safe for concurrent use.
type Limiter struct {
	rules   []Rule
	onError StoreErrorAction
	store   state.Store
	log     *slog.Logger

	storeErrs state.ErrorLog
}

var (
	_ filters.ConnectChecker = (*Limiter)(nil)
	_ filters.MailChecker    = (*Limiter)(nil)
	_ filters.RcptChecker    = (*Limiter)(nil)
)

// New returns the filter.
func New(opt Options) (*Limiter, error) {
	if opt.Store == nil {
		return nil, errors.New("ratelimit: no state store")
	}
	for i := range opt.Rules {
		if r := &opt.Rules[i]; r.Limit < 1 || r.Window < MinWindow || r.Window > MaxWindow {
			return nil, fmt.Errorf("ratelimit: rule %d (%s): limit %d per %v out of range", i+1, r, r.Limit, r.Window)
		}
	}
	l := &Limiter{rules: opt.Rules, onError: opt.OnStoreError, store: opt.Store, log: opt.Logger}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	return l, nil
}

// Name returns "ratelimit".
func (l *Limiter) Name() string { return "ratelimit" }

// exempt reports whether smtpaccess turned rate limits off for this client
// (RATELIMIT=off).
func exempt(s *filters.Session) bool {
	switch strings.ToLower(strings.TrimSpace(s.Access["RATELIMIT"])) {
	case "off", "no", "0", "false":
		return true
	}
	return false
}

// CheckConnect counts the connection against "connections" rules, and
// refuses a client still blocked for too many unknown recipients.
func (l *Limiter) CheckConnect(ctx context.Context, s *filters.Session) filters.Result {
	if exempt(s) {
		return l.none()
	}
	if r := l.checkUnknown(ctx, s.ClientIP, filters.StageConnect); r.Verdict != filters.NoOpinion {
		return r
	}
	return l.count(ctx, s, Connections)
}

// CheckMail counts the transaction against "messages" rules.
func (l *Limiter) CheckMail(ctx context.Context, s *filters.Session) filters.Result {
	if exempt(s) {
		return l.none()
	}
	return l.count(ctx, s, Messages)
}

// CheckRcpt refuses a client over its unknown-recipient limit, then counts
// the recipient against "rcpts" rules.
func (l *Limiter) CheckRcpt(ctx context.Context, s *filters.Session, rcpt string) filters.Result {
	if exempt(s) {
		return l.none()
	}
	if r := l.checkUnknown(ctx, s.ClientIP, filters.StageRcpt); r.Verdict != filters.NoOpinion {
		return r
	}
	return l.count(ctx, s, Recipients)
}

// NoteUnknownRecipient is called by the gateway each time it refuses a
// recipient as unknown (550 5.1.1). It counts the refusal against the
// "unknown" rules and returns a Reject with Vars["DISCONNECT"]="1" once the
// client is over a limit: the gateway then sends that reply instead of its
// own and closes the connection. Otherwise the Result has no opinion.
func (l *Limiter) NoteUnknownRecipient(ctx context.Context, ip netip.Addr) filters.Result {
	var over *Rule
	var overN int64
	var overSubject string
	for i := range l.rules {
		r := &l.rules[i]
		if r.What != Unknown {
			continue
		}
		subject, ok := clientSubject(r, ip)
		if !ok {
			continue
		}
		n, err := l.store.Incr(ctx, counterKey(r, subject), 1, r.Window)
		if err != nil {
			return l.storeFailed(ctx, "", err)
		}
		if n > r.Limit && over == nil {
			over, overN, overSubject = r, n, subject
		}
	}
	if over == nil {
		return l.none()
	}
	return l.dictionaryAttack(over, overN, overSubject, filters.StageRcpt)
}

// checkUnknown reads (without counting) the unknown-recipient counters.
func (l *Limiter) checkUnknown(ctx context.Context, ip netip.Addr, stage filters.Stage) filters.Result {
	for i := range l.rules {
		r := &l.rules[i]
		if r.What != Unknown {
			continue
		}
		subject, ok := clientSubject(r, ip)
		if !ok {
			continue
		}
		v, found, err := l.store.Get(ctx, counterKey(r, subject))
		if err != nil {
			return l.storeFailed(ctx, "", err)
		}
		if !found {
			continue
		}
		if n, err := strconv.ParseInt(string(v), 10, 64); err == nil && n > r.Limit {
			return l.dictionaryAttack(r, n, subject, stage)
		}
	}
	return l.none()
}

// dictionaryAttack is the answer to a client over an "unknown" limit. At
// RCPT it is a rejection (550 5.7.1); at connect, where a 5xx greeting would
// make a sending MTA bounce everything it has queued for us, it is 421 4.7.0:
// come back after the window. Either way the gateway closes the connection.
func (l *Limiter) dictionaryAttack(r *Rule, n int64, subject string, stage filters.Stage) filters.Result {
	res := filters.Result{
		Filter:   l.Name(),
		Verdict:  filters.Reject,
		Code:     550,
		Enhanced: "5.7.1",
		Message:  "Too many unknown recipients, closing connection",
		Reason: fmt.Sprintf("ratelimit: %d unknown recipients from %s within %s (limit %d, rule %q at %s): dictionary attack",
			n, subject, formatWindow(r.Window), r.Limit, r.String(), r.Source),
		Vars: map[string]string{"RATELIMIT": "unknown", "RATELIMIT_RULE": r.String(), "DISCONNECT": "1"},
	}
	if stage == filters.StageConnect {
		res.Verdict, res.Code, res.Enhanced = filters.Tempfail, 421, "4.7.0"
		res.Message = "Too many unknown recipients from your address, try again later"
	}
	return res
}

// count adds one event of kind what to every matching rule's counter and
// reports the first rule whose limit is now exceeded. Every matching counter
// is incremented, even after one is exceeded, so that all of them stay true.
func (l *Limiter) count(ctx context.Context, s *filters.Session, what Counted) filters.Result {
	var over *Rule
	var overN int64
	var overSubject string
	for i := range l.rules {
		r := &l.rules[i]
		if r.What != what {
			continue
		}
		subject, ok := l.subject(r, s)
		if !ok {
			continue
		}
		n, err := l.store.Incr(ctx, counterKey(r, subject), 1, r.Window)
		if err != nil {
			return l.storeFailed(ctx, s.ID, err)
		}
		if n > r.Limit && over == nil {
			over, overN, overSubject = r, n, subject
		}
	}
	if over == nil {
		return l.none()
	}
	return filters.Result{
		Filter:   l.Name(),
		Verdict:  filters.Tempfail,
		Code:     451,
		Enhanced: "4.7.0",
		Message: fmt.Sprintf("Rate limit exceeded: too many %s from %s %s (limit %d per %s), try again later",
			what, describeSubject(over.Subject), overSubject, over.Limit, formatWindow(over.Window)),
		Reason: fmt.Sprintf("ratelimit: %d %s from %s %s within %s exceeds %d (rule %q at %s)",
			overN, what, over.Subject, overSubject, formatWindow(over.Window), over.Limit, over.String(), over.Source),
		Vars: map[string]string{"RATELIMIT": what.String(), "RATELIMIT_RULE": over.String()},
	}
}

func describeSubject(s Subject) string {
	switch s {
	case SubjectClient:
		return "client"
	case SubjectSender:
		return "sender"
	}
	return "user"
}

// subject returns the value a rule counts for this session, or false when
// the rule does not apply.
func (l *Limiter) subject(r *Rule, s *filters.Session) (string, bool) {
	switch r.Subject {
	case SubjectClient:
		return clientSubject(r, s.ClientIP)
	case SubjectSender:
		from := strings.ToLower(strings.Trim(strings.TrimSpace(s.From), "<>"))
		if from == "" {
			from = "<>"
		}
		domain := ""
		if i := strings.LastIndexByte(from, '@'); i >= 0 {
			domain = strings.TrimSuffix(from[i+1:], ".")
		}
		switch {
		case r.Address != "":
			return from, from == r.Address
		case r.Domain != "":
			return "@" + domain, domain == r.Domain
		case r.PerDomain:
			return "@" + domain, domain != ""
		}
		return from, true
	case SubjectAuth:
		if s.AuthUser == "" {
			return "", false
		}
		if r.User != "" {
			return s.AuthUser, s.AuthUser == r.User
		}
		return s.AuthUser, true
	}
	return "", false
}

func clientSubject(r *Rule, ip netip.Addr) (string, bool) {
	if !ip.IsValid() {
		return "", false
	}
	ip = ip.Unmap()
	if r.Network.IsValid() {
		return r.Network.String(), r.Network.Contains(ip)
	}
	bits := r.V6Bits
	if ip.Is4() {
		bits = r.V4Bits
	}
	p, err := ip.Prefix(bits)
	if err != nil {
		return "", false
	}
	if bits == ip.BitLen() {
		return ip.String(), true
	}
	return p.String(), true
}

// counterKey is "rl:RULE-ID:SUBJECT", the subject hashed when long (sender
// addresses can be up to 256 octets, RFC 5321 section 4.5.3.1.3).
func counterKey(r *Rule, subject string) string {
	if len(subject) > 200 {
		sum := sha256.Sum256([]byte(subject))
		subject = "#" + hex.EncodeToString(sum[:16])
	}
	return "rl:" + r.id() + ":" + subject
}

func (l *Limiter) none() filters.Result { return filters.Result{Filter: l.Name()} }

func (l *Limiter) storeFailed(_ context.Context, sessionID string, err error) filters.Result {
	l.logStoreError(sessionID, err)
	if l.onError == StoreErrorTempfail {
		return filters.Result{
			Filter:   l.Name(),
			Verdict:  filters.Tempfail,
			Code:     451,
			Enhanced: "4.3.0",
			Message:  "Temporary local problem, please try again later",
			Reason:   "ratelimit: state store failed, deferring (onstoreerror tempfail): " + err.Error(),
			Vars:     map[string]string{"RATELIMIT": "unavailable"},
		}
	}
	return filters.Result{
		Filter: l.Name(),
		Reason: "ratelimit: state store failed, limits not enforced (onstoreerror pass): " + err.Error(),
		Vars:   map[string]string{"RATELIMIT": "unavailable"},
	}
}

// logStoreError logs at Error level at most once a minute.
func (l *Limiter) logStoreError(sessionID string, err error) {
	n, due := l.storeErrs.Due()
	if !due {
		return
	}
	action := "pass"
	if l.onError == StoreErrorTempfail {
		action = "tempfail"
	}
	l.log.Error("ratelimit: state store failed; rate limits degraded", "action", action,
		"session", sessionID, "err", err, "failures_not_logged", n)
}
