// Package callout remembers what recipient probes found out, so that a
// relay gateway can refuse mail for unknown users of the domains behind it
// during the SMTP session (Postfix's reject_unverified_recipient and its
// verify(8) cache) without asking the next hop for every message.
//
// A probe (outbound.Client.Verify) connects to the server that would
// receive the mail and asks RCPT TO without sending anything. Its answer is
// kept: "undeliverable" for NegativeTTL, "no answer" (server down,
// temporary reply) for UnknownTTL, "deliverable" for PositiveTTL, asked
// again in the background after PositiveRefresh (the session does not
// wait for that), and kept when that probe gets no answer (Postfix's
// address_verify_positive_refresh_time and _expire_time). A session never
// waits longer than Wait: a probe still running then goes on in the
// background and its answer serves the client's retry (Postfix's
// address_verify_poll_delay). One probe per address runs at a time; every
// session asking meanwhile waits for it.
package callout

import (
	"context"
	"strings"
	"sync"
	"time"
)

// Verdict is a probe's finding.
type Verdict int

const (
	Unknown       Verdict = iota // no answer: try again later
	Deliverable                  // the next hop takes the address
	Undeliverable                // the next hop refuses the address
)

// Result is a Verdict with the next hop's reply, or why there was none.
type Result struct {
	Verdict Verdict
	Text    string
}

// Probe asks the next hop about one address.
type Probe func(ctx context.Context, addr string) Result

// Options tune a Cache; zero values take the defaults.
type Options struct {
	Wait            time.Duration // longest a session waits; default 8s
	ProbeTimeout    time.Duration // longest a probe runs; default 60s
	PositiveTTL     time.Duration // default 7 days
	PositiveRefresh time.Duration // default 1 day
	NegativeTTL     time.Duration // default 3 hours
	UnknownTTL      time.Duration // default 1 minute
	MaxEntries      int           // default 100000; the oldest go first
	Now             func() time.Time
}

// Cache is safe for concurrent use. Close stops the probes in flight.
type Cache struct {
	probe  Probe
	opt    Options
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	entries map[string]*entry
	wg      sync.WaitGroup
}

type entry struct {
	res      Result
	expires  time.Time
	verified time.Time     // when the address was last found deliverable
	done     chan struct{} // non-nil while a probe runs
}

// New returns a Cache asking probe.
func New(probe Probe, opt Options) *Cache {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&opt.Wait, 8*time.Second)
	def(&opt.ProbeTimeout, 60*time.Second)
	def(&opt.PositiveTTL, 7*24*time.Hour)
	def(&opt.PositiveRefresh, 24*time.Hour)
	def(&opt.NegativeTTL, 3*time.Hour)
	def(&opt.UnknownTTL, time.Minute)
	if opt.MaxEntries <= 0 {
		opt.MaxEntries = 100000
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Cache{probe: probe, opt: opt, ctx: ctx, cancel: cancel, entries: map[string]*entry{}}
}

// key folds the domain's case; the local part keeps its own (RFC 5321
// 2.4), as the next hop may tell them apart.
func key(addr string) string {
	if at := strings.LastIndexByte(addr, '@'); at >= 0 {
		return addr[:at+1] + strings.ToLower(addr[at+1:])
	}
	return addr
}

// Check returns what is known about addr, probing when nothing fresh is.
// It waits at most Wait (or until ctx ends) and then answers Unknown while
// the probe goes on.
func (c *Cache) Check(ctx context.Context, addr string) Result {
	k := key(addr)
	c.mu.Lock()
	e := c.entries[k]
	now := c.opt.Now()
	if e != nil && e.done == nil && now.Before(e.expires) {
		res := e.res
		c.mu.Unlock()
		return res
	}
	if e != nil && e.res.Verdict == Deliverable && now.Sub(e.verified) < c.opt.PositiveTTL {
		// Due for a refresh: the known answer now, a probe behind it.
		if e.done == nil {
			e.done = make(chan struct{})
			c.wg.Add(1)
			go c.run(k, addr, e, e.done)
		}
		res := e.res
		c.mu.Unlock()
		return res
	}
	if e == nil {
		e = &entry{}
		c.evict()
		c.entries[k] = e
	}
	if e.done == nil {
		e.done = make(chan struct{})
		c.wg.Add(1)
		go c.run(k, addr, e, e.done)
	}
	done := e.done
	c.mu.Unlock()

	t := time.NewTimer(c.opt.Wait)
	defer t.Stop()
	select {
	case <-done:
		c.mu.Lock()
		defer c.mu.Unlock()
		return e.res
	case <-t.C:
	case <-ctx.Done():
	}
	return Result{Unknown, "address verification in progress"}
}

// run probes addr and records the answer. An Unknown answer keeps an
// address verified within PositiveTTL deliverable.
func (c *Cache) run(k, addr string, e *entry, done chan struct{}) {
	defer c.wg.Done()
	ctx, cancel := context.WithTimeout(c.ctx, c.opt.ProbeTimeout)
	res := c.probe(ctx, addr)
	cancel()
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.opt.Now()
	switch res.Verdict {
	case Deliverable:
		e.verified = now
		e.expires = now.Add(c.opt.PositiveRefresh)
	case Undeliverable:
		e.verified = time.Time{}
		e.expires = now.Add(c.opt.NegativeTTL)
	default:
		e.expires = now.Add(c.opt.UnknownTTL)
		if !e.verified.IsZero() && now.Sub(e.verified) < c.opt.PositiveTTL {
			res = Result{Deliverable, "verified " + e.verified.Format(time.RFC3339) + "; no answer now: " + res.Text}
		}
	}
	e.res = res
	e.done = nil
	close(done)
}

// evict makes room when the cache is full: expired entries go, then
// others at random (map order) down to nine tenths of MaxEntries, so the
// sweep is paid once per MaxEntries/10 new addresses, not on each. Called
// with mu held.
func (c *Cache) evict() {
	if len(c.entries) < c.opt.MaxEntries {
		return
	}
	now := c.opt.Now()
	for k, e := range c.entries {
		if e.done == nil && !now.Before(e.expires) {
			delete(c.entries, k)
		}
	}
	for k, e := range c.entries {
		if len(c.entries) < c.opt.MaxEntries*9/10 {
			break
		}
		if e.done == nil {
			delete(c.entries, k)
		}
	}
}

// Close cancels the probes in flight and waits for them to end.
func (c *Cache) Close() {
	c.cancel()
	c.wg.Wait()
}
