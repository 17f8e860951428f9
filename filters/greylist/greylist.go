// Package greylist implements greylisting: the first time a (client
// network, sender, recipient) triplet is seen, the recipient is refused with
// a temporary error; a real mail server queues the message and retries, and
// a retry that comes after Delay and within RetryWindow is accepted and the
// triplet remembered for Lifetime (refreshed while it keeps being used). Much
// bulk spam software never retries. RFC 5321 section 4.5.4.1 requires a
// sender to retry after a 4yz reply, which is what makes the technique safe;
// RFC 6647 describes it and its trade-offs (section 4 lists the keys used,
// section 5 the recommended delays).
//
// The check runs at RCPT TO (as Postgrey does): every recipient is its own
// triplet, so in a multi-recipient transaction only the recipients not yet
// seen are deferred and the sending server retries just those.
//
// Automatic passes: authenticated clients, configured client networks, the
// smtpaccess variables RELAYCLIENT or GREYLIST=off, senders of configured
// domains whose SPF check passed (an earlier filter's Vars["SPF"]="pass"),
// and client networks that have already passed greylisting AutoWhitelist
// times (RFC 6647 section 4.2.1: a client that retries properly will do so
// again).
//
// The package owns the greylist's keys in the shared state store (prefix
// "grey:") and the parsing of the greylist setting file.
package greylist

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
	"time"

	"postern/filters"
	"postern/filters/state"
)

// Defaults (RFC 6647 section 5 and Postgrey's long-standing defaults).
const (
	DefaultDelay         = 5 * time.Minute
	DefaultRetryWindow   = 48 * time.Hour
	DefaultLifetime      = 35 * 24 * time.Hour
	DefaultIPv4Prefix    = 24
	DefaultIPv6Prefix    = 64
	DefaultAutoWhitelist = 5

	// refreshEvery limits how often a passed triplet's lifetime is pushed
	// forward: once a day is plenty for a 35-day lifetime and spares the
	// store a write per recipient.
	refreshEvery = 24 * time.Hour
)

// Vars["GREYLIST"] values.
const (
	StatusNew         = "new"         // first sight: deferred
	StatusEarly       = "early"       // retried before Delay: deferred again
	StatusPassed      = "passed"      // retried in time, or known: accepted
	StatusWhitelisted = "whitelisted" // not greylisted at all
	StatusUnavailable = "unavailable" // the store failed; see OnStoreError
)

// StoreErrorAction says what to do when the state store cannot answer.
type StoreErrorAction int

const (
	// StoreErrorPass lets the recipient through (no opinion) and logs:
	// greylisting is a filter, and a Redis outage must not stop all mail.
	StoreErrorPass StoreErrorAction = iota
	// StoreErrorTempfail answers 451 4.3.0 until the store is back.
	StoreErrorTempfail
)

// NullSenderAction says how the null reverse path (<>, bounces and other
// DSNs) is treated.
type NullSenderAction int

const (
	// NullSenderGreylist greylists <> like any sender: real bounces come
	// from real MTAs that retry.
	NullSenderGreylist NullSenderAction = iota
	// NullSenderPass never greylists <>.
	NullSenderPass
)

// Config is what the greylist setting file says.
type Config struct {
	Delay         time.Duration // minimum time before a retry is accepted
	RetryWindow   time.Duration // a retry later than this after first sight starts over
	Lifetime      time.Duration // how long a passed triplet (and an auto-whitelisted network) is remembered
	IPv4Prefix    int           // client network size for IPv4 (RFC 6647 section 4.1: a /24 covers server farms)
	IPv6Prefix    int           // and for IPv6
	AutoWhitelist int           // passes after which a client network skips greylisting; 0 = never
	NullSender    NullSenderAction
	OnStoreError  StoreErrorAction
	// SPFPassDomains are sender domains (lower case) whose mail skips
	// greylisting when SPF passed for the MAIL FROM.
	SPFPassDomains []string
	// Whitelist are client networks never greylisted.
	Whitelist []netip.Prefix
	// PassRecipients are recipients never greylisted: a full address
	// ("abuse@example.com"), a local part on every domain ("postmaster@"),
	// or a whole domain ("@example.com").
	PassRecipients []string
}

// DefaultConfig returns the defaults above.
func DefaultConfig() Config {
	return Config{
		Delay:         DefaultDelay,
		RetryWindow:   DefaultRetryWindow,
		Lifetime:      DefaultLifetime,
		IPv4Prefix:    DefaultIPv4Prefix,
		IPv6Prefix:    DefaultIPv6Prefix,
		AutoWhitelist: DefaultAutoWhitelist,
	}
}

// Options build a Greylist.
type Options struct {
	Config
	Store  state.Store // required
	Logger *slog.Logger
	Now    func() time.Time // nil: time.Now
}

// Greylist is the filter. It is safe for concurrent use.
type Greylist struct {
	cfg   Config
	store state.Store
	log   *slog.Logger
	now   func() time.Time

	storeErrs state.ErrorLog
}

var _ filters.RcptChecker = (*Greylist)(nil)

// New checks opt and returns the filter.
func New(opt Options) (*Greylist, error) {
	if opt.Store == nil {
		return nil, errors.New("greylist: no state store")
	}
	c := opt.Config
	switch {
	case c.Delay < 0 || c.RetryWindow <= 0 || c.Lifetime <= 0:
		return nil, fmt.Errorf("greylist: delay %v, retry window %v, lifetime %v: want delay >= 0 and positive windows", c.Delay, c.RetryWindow, c.Lifetime)
	case c.RetryWindow <= c.Delay:
		return nil, fmt.Errorf("greylist: retry window %v must be longer than the delay %v", c.RetryWindow, c.Delay)
	case c.IPv4Prefix < 8 || c.IPv4Prefix > 32 || c.IPv6Prefix < 16 || c.IPv6Prefix > 128:
		return nil, fmt.Errorf("greylist: client network /%d (IPv4), /%d (IPv6): want 8..32 and 16..128", c.IPv4Prefix, c.IPv6Prefix)
	case c.AutoWhitelist < 0:
		return nil, fmt.Errorf("greylist: autowhitelist %d: want 0 or more", c.AutoWhitelist)
	}
	g := &Greylist{cfg: c, store: opt.Store, log: opt.Logger, now: opt.Now}
	if g.log == nil {
		g.log = slog.New(slog.DiscardHandler)
	}
	if g.now == nil {
		g.now = time.Now
	}
	return g, nil
}

// Name returns "greylist".
func (g *Greylist) Name() string { return "greylist" }

// Triplet is what greylisting remembers.
type Triplet struct {
	Network   netip.Prefix // the client's network
	Sender    string       // normalised MAIL FROM ("<>" for the null sender)
	Recipient string       // lower-cased RCPT TO
}

func (t Triplet) String() string {
	return t.Network.String() + "|" + t.Sender + "|" + t.Recipient
}

// key is the store key. Very long addresses are hashed so that the key stays
// within state.MaxKeyLen.
func (t Triplet) key() string {
	k := "grey:t:" + t.String()
	if len(k) > 512 {
		sum := sha256.Sum256([]byte(t.Sender + "|" + t.Recipient))
		k = "grey:t:" + t.Network.String() + "|#" + hex.EncodeToString(sum[:])
	}
	return k
}

// ClientNetwork returns ip's network at the given prefix lengths; an
// IPv4-mapped IPv6 address counts as IPv4.
func ClientNetwork(ip netip.Addr, v4, v6 int) netip.Prefix {
	ip = ip.Unmap()
	bits := v6
	if ip.Is4() {
		bits = v4
	}
	p, err := ip.Prefix(bits)
	if err != nil {
		return netip.PrefixFrom(ip, ip.BitLen())
	}
	return p
}

// NormalizeSender reduces a reverse path to what stays the same across a
// sender's retries and messages, so that per-message tags do not make every
// message a new triplet: lower case; BATV tags stripped ("prvs=1234abcd=user@d"
// → "user@d"); a "+detail" subaddress dropped; runs of digits in the local
// part replaced by "#" (VERP and bounce addresses carry message numbers).
// The null sender is "<>". Normalising the result again gives it back.
func NormalizeSender(addr string) string {
	// One pass can leave what another would take away ("prvs==<x" keeps
	// "<x"; "a +b" leaves "a "), so passes run until nothing changes:
	// after the first, each one only shortens the string.
	n := normalizeSenderOnce(addr)
	for range len(n) + 1 {
		m := normalizeSenderOnce(n)
		if m == n {
			break
		}
		n = m
	}
	return n
}

func normalizeSenderOnce(addr string) string {
	addr = strings.ToLower(strings.TrimSpace(strings.Trim(strings.TrimSpace(addr), "<>")))
	if addr == "" {
		return "<>"
	}
	local, domain, ok := addr, "", false
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		local, domain, ok = addr[:i], addr[i+1:], true
	}
	// BATV (draft-levine-smtp-batv): prvs=KDDDSSSS=local, and the older
	// local=prvs order is not stripped: it is not unambiguous.
	for stripped := true; stripped; {
		stripped = false
		for _, tag := range []string{"prvs=", "msprvs1=", "btv1=="} {
			if strings.HasPrefix(local, tag) {
				// Stripped only when a local part is left: "prvs=000=" alone
				// is no BATV address, and must normalise as itself.
				if j := strings.IndexByte(local[len(tag):], '='); j >= 0 && len(local) > len(tag)+j+1 {
					local, stripped = local[len(tag)+j+1:], true
				}
				break
			}
		}
	}
	if i := strings.IndexByte(local, '+'); i > 0 {
		local = local[:i]
	}
	var b strings.Builder
	inDigits := false
	for i := 0; i < len(local); i++ {
		c := local[i]
		if c >= '0' && c <= '9' {
			if !inDigits {
				b.WriteByte('#')
			}
			inDigits = true
			continue
		}
		inDigits = false
		b.WriteByte(c)
	}
	if !ok {
		return b.String()
	}
	return b.String() + "@" + domain
}

func normalizeRecipient(rcpt string) string {
	return strings.ToLower(strings.Trim(strings.TrimSpace(rcpt), "<>"))
}

func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return strings.TrimSuffix(addr[i+1:], ".")
	}
	return ""
}

// CheckRcpt greylists one recipient.
func (g *Greylist) CheckRcpt(ctx context.Context, s *filters.Session, rcpt string) filters.Result {
	if why := g.whitelisted(s, rcpt); why != "" {
		return g.result(StatusWhitelisted, "greylist: not applied: "+why)
	}
	if !s.ClientIP.IsValid() {
		return g.result(StatusWhitelisted, "greylist: not applied: no client address")
	}
	t := Triplet{
		Network:   ClientNetwork(s.ClientIP, g.cfg.IPv4Prefix, g.cfg.IPv6Prefix),
		Sender:    NormalizeSender(s.From),
		Recipient: normalizeRecipient(rcpt),
	}
	res, err := g.check(ctx, t)
	if err != nil {
		return g.storeFailed(s, t, err)
	}
	return res
}

// whitelisted returns why greylisting does not apply, or "".
func (g *Greylist) whitelisted(s *filters.Session, rcpt string) string {
	if s.AuthUser != "" {
		return "authenticated client"
	}
	if _, ok := s.Access["RELAYCLIENT"]; ok {
		return "smtpaccess RELAYCLIENT"
	}
	if v, ok := s.Access["GREYLIST"]; ok {
		switch strings.ToLower(strings.TrimSpace(v)) {
		case "off", "no", "0", "false", "pass":
			return "smtpaccess GREYLIST=" + v
		}
	}
	ip := s.ClientIP.Unmap()
	for _, p := range g.cfg.Whitelist {
		if p.Contains(ip) {
			return "client network " + p.String() + " is whitelisted"
		}
	}
	if strings.Trim(s.From, "<> ") == "" && g.cfg.NullSender == NullSenderPass {
		return "null sender"
	}
	if len(g.cfg.SPFPassDomains) > 0 && spfPassed(s) {
		d := strings.ToLower(domainOf(strings.Trim(s.From, "<>")))
		for _, want := range g.cfg.SPFPassDomains {
			if d == want {
				return "SPF pass for " + d
			}
		}
	}
	r := normalizeRecipient(rcpt)
	for _, p := range g.cfg.PassRecipients {
		switch {
		case strings.HasPrefix(p, "@"):
			if strings.HasSuffix(r, p) {
				return "recipient domain " + p + " is not greylisted"
			}
		case strings.HasSuffix(p, "@"):
			if strings.HasPrefix(r, p) {
				return "recipient " + p + " is not greylisted"
			}
		case r == p:
			return "recipient " + p + " is not greylisted"
		}
	}
	return ""
}

// spfPassed reports whether an earlier filter found SPF pass for MAIL FROM.
func spfPassed(s *filters.Session) bool {
	for _, r := range s.Results {
		if strings.EqualFold(r.Vars["SPF"], "pass") {
			return true
		}
	}
	return false
}

// record is the stored state of a triplet: "w:FIRST" while waiting for the
// retry, "p:FIRST:REFRESHED" once passed (Unix seconds).
type record struct {
	passed    bool
	firstSeen time.Time
	refreshed time.Time
}

func (r record) encode() []byte {
	if r.passed {
		return fmt.Appendf(nil, "p:%d:%d", r.firstSeen.Unix(), r.refreshed.Unix())
	}
	return fmt.Appendf(nil, "w:%d", r.firstSeen.Unix())
}

func decodeRecord(b []byte) (record, bool) {
	parts := strings.Split(string(b), ":")
	unix := func(s string) (time.Time, bool) {
		n, err := strconv.ParseInt(s, 10, 64)
		return time.Unix(n, 0), err == nil
	}
	switch {
	case len(parts) == 2 && parts[0] == "w":
		t, ok := unix(parts[1])
		return record{firstSeen: t}, ok
	case len(parts) == 3 && parts[0] == "p":
		t1, ok1 := unix(parts[1])
		t2, ok2 := unix(parts[2])
		return record{passed: true, firstSeen: t1, refreshed: t2}, ok1 && ok2
	}
	return record{}, false
}

func (g *Greylist) check(ctx context.Context, t Triplet) (filters.Result, error) {
	now := g.now()
	if g.cfg.AutoWhitelist > 0 {
		okKey := "grey:awl-ok:" + t.Network.String()
		v, found, err := g.store.Get(ctx, okKey)
		if err != nil {
			return filters.Result{}, err
		}
		if found {
			if since, err := strconv.ParseInt(string(v), 10, 64); err == nil && now.Sub(time.Unix(since, 0)) > refreshEvery {
				if err := g.store.Set(ctx, okKey, strconv.AppendInt(nil, now.Unix(), 10), g.cfg.Lifetime); err != nil {
					return filters.Result{}, err
				}
			}
			return g.result(StatusWhitelisted, "greylist: client network "+t.Network.String()+" passed greylisting before (auto-whitelist)"), nil
		}
	}

	key := t.key()
	for attempt := 0; attempt < 3; attempt++ {
		raw, found, err := g.store.Get(ctx, key)
		if err != nil {
			return filters.Result{}, err
		}
		rec, valid := decodeRecord(raw)
		if !found || !valid || (!rec.passed && now.Sub(rec.firstSeen) > g.cfg.RetryWindow) {
			// First sight (or a retry so late that it counts as one).
			fresh := record{firstSeen: now}
			var stored bool
			if found {
				stored, err = true, g.store.Set(ctx, key, fresh.encode(), g.cfg.RetryWindow)
			} else {
				stored, err = g.store.SetNX(ctx, key, fresh.encode(), g.cfg.RetryWindow)
			}
			if err != nil {
				return filters.Result{}, err
			}
			if !stored {
				continue // another session (or gateway) created it just now: read it
			}
			return g.deferral(StatusNew, t, g.cfg.Delay), nil
		}
		if !rec.passed {
			if wait := g.cfg.Delay - now.Sub(rec.firstSeen); wait > 0 {
				return g.deferral(StatusEarly, t, wait), nil
			}
			rec = record{passed: true, firstSeen: rec.firstSeen, refreshed: now}
			if err := g.store.Set(ctx, key, rec.encode(), g.cfg.Lifetime); err != nil {
				return filters.Result{}, err
			}
			if err := g.countPass(ctx, t, now); err != nil {
				return filters.Result{}, err
			}
			return g.result(StatusPassed, fmt.Sprintf("greylist: %s retried after %s", t, now.Sub(rec.firstSeen).Round(time.Second))), nil
		}
		if now.Sub(rec.refreshed) > refreshEvery {
			rec.refreshed = now
			if err := g.store.Set(ctx, key, rec.encode(), g.cfg.Lifetime); err != nil {
				return filters.Result{}, err
			}
		}
		return g.result(StatusPassed, fmt.Sprintf("greylist: %s known since %s", t, rec.firstSeen.UTC().Format(time.RFC3339))), nil
	}
	return filters.Result{}, fmt.Errorf("greylist: %s: the triplet keeps changing under us", t)
}

// countPass counts a triplet's first pass towards its network's
// auto-whitelist. Two gateways passing the same triplet at the same instant
// may count it twice; the threshold is a heuristic, so that is harmless.
func (g *Greylist) countPass(ctx context.Context, t Triplet, now time.Time) error {
	if g.cfg.AutoWhitelist == 0 {
		return nil
	}
	net := t.Network.String()
	n, err := g.store.Incr(ctx, "grey:awl:"+net, 1, g.cfg.Lifetime)
	if err != nil {
		return err
	}
	if n >= int64(g.cfg.AutoWhitelist) {
		g.log.Info("greylist: client network auto-whitelisted", "network", net, "passes", n)
		return g.store.Set(ctx, "grey:awl-ok:"+net, strconv.AppendInt(nil, now.Unix(), 10), g.cfg.Lifetime)
	}
	return nil
}

func (g *Greylist) result(status, reason string) filters.Result {
	return filters.Result{
		Filter:  g.Name(),
		Verdict: filters.NoOpinion,
		Reason:  reason,
		Vars:    map[string]string{"GREYLIST": status},
	}
}

// defer_ is the temporary refusal (RFC 6647 section 2.1: a 4yz reply; 4.7.1
// "delivery not authorized" per RFC 3463, as is customary for greylisting).
func (g *Greylist) deferral(status string, t Triplet, wait time.Duration) filters.Result {
	secs := int64((wait + time.Second - 1) / time.Second)
	return filters.Result{
		Filter:   g.Name(),
		Verdict:  filters.Tempfail,
		Code:     451,
		Enhanced: "4.7.1",
		Message:  fmt.Sprintf("Greylisted, please try again in %d seconds", secs),
		Reason:   fmt.Sprintf("greylist: %s %s, retry allowed in %ds", t, map[string]string{StatusNew: "seen for the first time", StatusEarly: "retried too early"}[status], secs),
		Vars:     map[string]string{"GREYLIST": status},
	}
}

func (g *Greylist) storeFailed(s *filters.Session, t Triplet, err error) filters.Result {
	g.logStoreError(s, t, err)
	if g.cfg.OnStoreError == StoreErrorTempfail {
		return filters.Result{
			Filter:   g.Name(),
			Verdict:  filters.Tempfail,
			Code:     451,
			Enhanced: "4.3.0",
			Message:  "Temporary local problem, please try again later",
			Reason:   "greylist: state store failed, deferring (onstoreerror tempfail): " + err.Error(),
			Vars:     map[string]string{"GREYLIST": StatusUnavailable},
		}
	}
	return g.result(StatusUnavailable, "greylist: state store failed, not greylisting (onstoreerror pass): "+err.Error())
}

// logStoreError logs at Error level, but once a minute at most: during an
// outage every recipient fails the same way.
func (g *Greylist) logStoreError(s *filters.Session, t Triplet, err error) {
	n, due := g.storeErrs.Due()
	if !due {
		return
	}
	action := "pass"
	if g.cfg.OnStoreError == StoreErrorTempfail {
		action = "tempfail"
	}
	g.log.Error("greylist: state store failed; greylisting degraded", "action", action,
		"session", s.ID, "triplet", t.String(), "err", err, "failures_not_logged", n)
}
