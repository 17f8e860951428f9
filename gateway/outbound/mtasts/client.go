package mtasts

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"
)

// Options configure a Client. All are optional.
type Options struct {
	// LookupTXT returns the TXT records of a name (the outbound resolver's;
	// nil: net.DefaultResolver). A name that does not exist or has no TXT
	// records may give an empty list or an error that IsNotFound
	// recognizes; any other error is taken as DNS trouble.
	LookupTXT func(ctx context.Context, name string) ([]string, error)
	// IsNotFound reports whether a LookupTXT error says "no such name"
	// (NXDOMAIN). A *net.DNSError with IsNotFound is always recognized.
	IsNotFound func(error) bool
	// LookupIPAddr resolves the policy host mta-sts.DOMAIN for the HTTPS
	// fetch (nil: net.DefaultResolver).
	LookupIPAddr func(ctx context.Context, host string) ([]net.IPAddr, error)

	Port    int            // HTTPS port of policy hosts; default 443
	RootCAs *x509.CertPool // roots trusted for policy hosts; nil: the system's

	// Dir is where policies are kept across restarts, one DOMAIN.json file
	// each; "" keeps them in memory only.
	Dir string

	// Timeout bounds the TXT lookup and, separately, the HTTPS fetch of a
	// policy; default one minute (RFC 8461 section 3.3 suggests one minute
	// for the fetch).
	Timeout time.Duration

	Now    func() time.Time // nil: time.Now
	Logger *slog.Logger     // nil: discard
}

// Timings of RFC 8461 section 3.3.
const (
	// refreshAfter: a cached policy is fetched again, even with the same
	// TXT id, once it is this old, when it is next asked for ("MTAs SHOULD
	// proactively refresh cached policies before they expire; a suggested
	// refresh frequency is once per day"). A failed refresh keeps it.
	refreshAfter = 24 * time.Hour
	// retryFetchAfter: after a failed fetch, the same policy id of the same
	// domain is not fetched again for this long ("limit further attempts
	// to a period of five minutes or longer per version ID").
	retryFetchAfter = 5 * time.Minute
)

// Client discovers, fetches and caches MTA-STS policies. It is safe for
// concurrent use.
type Client struct {
	lookupTXT    func(ctx context.Context, name string) ([]string, error)
	isNotFound   func(error) bool
	lookupIPAddr func(ctx context.Context, host string) ([]net.IPAddr, error)
	port         int
	rootCAs      *x509.CertPool
	timeout      time.Duration
	now          func() time.Time
	log          *slog.Logger

	cache   *cache
	flights flightGroup

	mu       sync.Mutex
	failures map[string]failedFetch // by domain: the last failed fetch
}

// failedFetch is a fetch that failed, to hold back the next attempt for the
// same id (RFC 8461 section 3.3).
type failedFetch struct {
	id   string
	at   time.Time
	kind string // an RFC 8460 result type: FetchError, WebPKIInvalid or PolicyInvalid
}

// New returns a Client. With opts.Dir it creates the directory if needed
// and loads the unexpired policies saved there.
func New(opts Options) (*Client, error) {
	c := &Client{
		lookupTXT:    opts.LookupTXT,
		isNotFound:   opts.IsNotFound,
		lookupIPAddr: opts.LookupIPAddr,
		port:         opts.Port,
		rootCAs:      opts.RootCAs,
		timeout:      opts.Timeout,
		now:          opts.Now,
		log:          opts.Logger,
		failures:     map[string]failedFetch{},
	}
	if c.lookupTXT == nil {
		c.lookupTXT = net.DefaultResolver.LookupTXT
	}
	if c.lookupIPAddr == nil {
		c.lookupIPAddr = net.DefaultResolver.LookupIPAddr
	}
	if c.port == 0 {
		c.port = 443
	}
	if c.port < 0 || c.port > 65535 {
		return nil, fmt.Errorf("mta-sts: port %d out of range", c.port)
	}
	if c.timeout <= 0 {
		c.timeout = time.Minute
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	cache, err := newCache(opts.Dir, c.now(), c.log)
	if err != nil {
		return nil, err
	}
	c.cache = cache
	return c, nil
}

// Policy returns the MTA-STS policy that applies to mail for domain, or nil
// when the domain has none (RFC 8461 sections 3 and 5). A policy with mode
// none is returned as it is: the domain withdrew its policy.
//
//  1. The TXT record _mta-sts.DOMAIN is looked up. If its id is that of
//     the cached, unexpired policy, the cached policy is returned (fetched
//     again first once it is a day old).
//  2. Otherwise the policy is fetched from https://mta-sts.DOMAIN, cached
//     and returned.
//  3. Section 3.3: when no live policy can be had (no TXT record, DNS
//     trouble, a failed fetch) but an unexpired policy is cached, the
//     cached policy is returned: that is what the cache is for.
//  4. Section 3.3: when there is a TXT record but the fetch fails and
//     nothing is cached, delivery goes on as though the domain had no
//     policy: Policy returns nil, nil and logs the failure as a warning.
//     The same goes for DNS trouble with nothing cached. Such failures are
//     not errors for the caller, because the RFC leaves it nothing else to
//     do; an attacker who can block the fetch could as well strip the TXT
//     record.
//
// The error is non-nil only when domain is not a usable DNS name
// (ErrInvalidDomain) or ctx ends first. Concurrent calls for the same
// domain share one lookup. The returned policy must not be modified.
func (c *Client) Policy(ctx context.Context, domain string) (*Policy, error) {
	name, err := normalizeDomain(domain)
	if err != nil {
		return nil, fmt.Errorf("mta-sts %.100q: %w: %v", domain, ErrInvalidDomain, err)
	}
	for {
		policy, joined, err := c.flights.do(ctx, name, func() (*Policy, error) {
			return c.discover(ctx, name)
		})
		if joined && err != nil && ctx.Err() == nil {
			// The call that did the work gave up (its context ended):
			// ours has not, so try again, maybe doing the work ourselves.
			continue
		}
		return policy, err
	}
}

// discover does the work of Policy for one normalized domain.
func (c *Client) discover(ctx context.Context, domain string) (*Policy, error) {
	now := c.now()
	log := c.log.With("domain", domain)
	cached := c.cache.get(domain, now)

	id, err := c.lookupID(ctx, domain)
	switch {
	case ctx.Err() != nil:
		return nil, fmt.Errorf("mta-sts %s: %w", domain, ctx.Err())
	case errors.Is(err, ErrNoPolicy):
		if cached != nil {
			// Section 3.3: the cached policy stays until it expires,
			// even when the TXT record is gone.
			log.Debug("mta-sts: no usable TXT record, using the cached policy", "id", cached.ID, "expires", cached.Expires(), "reason", err)
			return cached, nil
		}
		log.Debug("mta-sts: no policy", "reason", err)
		c.forgetFailure(domain) // the TXT record is gone: nothing failed
		return nil, nil
	case err != nil:
		if cached != nil {
			log.Warn("mta-sts: TXT lookup failed, using the cached policy", "id", cached.ID, "err", err)
			return cached, nil
		}
		log.Warn("mta-sts: TXT lookup failed, proceeding as without a policy", "err", err)
		return nil, nil
	}

	if cached != nil && cached.ID == id && now.Sub(cached.Fetched) < refreshAfter {
		return cached, nil
	}
	if c.failedRecently(domain, id, now) {
		log.Debug("mta-sts: policy fetch failed recently, not trying again yet", "id", id)
		return cached, nil
	}

	fetchCtx, cancel := context.WithTimeout(ctx, c.timeout)
	policy, err := c.fetch(fetchCtx, domain)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("mta-sts %s: %w", domain, ctx.Err())
		}
		c.noteFailure(domain, id, now, failureKind(err))
		if cached != nil {
			log.Warn("mta-sts: policy fetch failed, using the cached policy", "id", id, "cached_id", cached.ID, "err", err)
			return cached, nil
		}
		// Section 3.3: no policy fetched, none cached: deliver as though
		// the domain had not implemented MTA-STS.
		log.Warn("mta-sts: policy fetch failed, proceeding as without a policy", "id", id, "err", err)
		return nil, nil
	}
	policy.ID = id
	policy.Fetched = now
	c.forgetFailure(domain)
	c.cache.put(domain, policy, now)
	log.Info("mta-sts: policy fetched", "id", id, "mode", policy.Mode, "mx", policy.MX, "max_age", policy.MaxAge)
	return policy, nil
}

// lookupID looks up _mta-sts.DOMAIN and returns the id of its STS record
// (RFC 8461 section 3.1). The error wraps ErrNoPolicy when there is no
// usable record, including when the name does not exist.
func (c *Client) lookupID(ctx context.Context, domain string) (string, error) {
	name := "_mta-sts." + domain
	lookupCtx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	// Section 3.1: a CNAME must be followed; the resolver does that.
	records, err := c.lookupTXT(lookupCtx, name)
	if err != nil {
		if c.notFound(err) {
			return "", fmt.Errorf("%w: TXT %s: %v", ErrNoPolicy, name, err)
		}
		return "", fmt.Errorf("TXT %s: %w", name, err)
	}
	id, err := ParseTXT(records)
	if err != nil {
		return "", fmt.Errorf("TXT %s: %w", name, err)
	}
	return id, nil
}

func (c *Client) notFound(err error) bool {
	if c.isNotFound != nil && c.isNotFound(err) {
		return true
	}
	var dnsErr *net.DNSError
	return errors.As(err, &dnsErr) && dnsErr.IsNotFound
}

// failedRecently reports whether fetching id for domain failed less than
// retryFetchAfter ago.
func (c *Client) failedRecently(domain, id string, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	f, ok := c.failures[domain]
	if !ok {
		return false
	}
	if f.id != id || now.Sub(f.at) >= retryFetchAfter || now.Before(f.at) {
		delete(c.failures, domain)
		return false
	}
	return true
}

// noteFailure remembers a failed fetch; stale entries of other domains go
// at the same time so the map stays small.
func (c *Client) noteFailure(domain, id string, now time.Time, kind string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for d, f := range c.failures {
		if now.Sub(f.at) >= retryFetchAfter {
			delete(c.failures, d)
		}
	}
	c.failures[domain] = failedFetch{id: id, at: now, kind: kind}
}

// FetchFailure says why the last Policy call for domain found no policy
// although the domain announces one (its TXT record): the RFC 8460
// result type of the failed fetch (FetchError, WebPKIInvalid,
// PolicyInvalid), for TLS reporting; "" when nothing failed.
func (c *Client) FetchFailure(domain string) string {
	name, err := normalizeDomain(domain)
	if err != nil {
		return ""
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.failures[name].kind
}

func (c *Client) forgetFailure(domain string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.failures, domain)
}

// flightGroup lets concurrent Policy calls for one domain share one lookup
// (a small singleflight: golang.org/x/sync is not among our modules).
type flightGroup struct {
	mu      sync.Mutex
	flights map[string]*flight
}

// flight is one lookup in progress; waiters read policy and err after done
// is closed.
type flight struct {
	done    chan struct{}
	waiters int // calls that joined (guarded by flightGroup.mu), for tests
	policy  *Policy
	err     error
}

// do runs fn for key unless a call for key is already running, in which
// case it waits for that call's result (joined is true) or for ctx to end.
func (g *flightGroup) do(ctx context.Context, key string, fn func() (*Policy, error)) (policy *Policy, joined bool, err error) {
	g.mu.Lock()
	if f, ok := g.flights[key]; ok {
		f.waiters++
		g.mu.Unlock()
		select {
		case <-f.done:
			return f.policy, true, f.err
		case <-ctx.Done():
			return nil, true, fmt.Errorf("mta-sts %s: %w", key, ctx.Err())
		}
	}
	if g.flights == nil {
		g.flights = map[string]*flight{}
	}
	f := &flight{done: make(chan struct{}), err: errors.New("mta-sts: lookup did not finish")}
	g.flights[key] = f
	g.mu.Unlock()

	defer func() {
		g.mu.Lock()
		delete(g.flights, key)
		g.mu.Unlock()
		close(f.done)
	}()
	f.policy, f.err = fn()
	return f.policy, false, f.err
}
