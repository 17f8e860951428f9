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
//
// With a Store (SetStore: the checks' state store, embedded or Redis) the
// answers are shared: a process that does not know an address looks there
// before probing, and every answer is written there, so the gateways of a
// cluster probe an address once and a restart forgets nothing.
package callout

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"time"
)

// Store is where answers are shared (filters/state.Store satisfies it).
type Store interface {
	Get(ctx context.Context, key string) (value []byte, found bool, err error)
	Set(ctx context.Context, key string, value []byte, ttl time.Duration) error
}

// storeTimeout bounds each use of the Store: it is a cache, and a slow
// one must not hold up a session.
const storeTimeout = time.Second

// record is an answer as the Store keeps it.
type record struct {
	Verdict  Verdict `json:"v"`
	Text     string  `json:"t,omitempty"`
	Verified int64   `json:"verified,omitempty"` // Unix seconds
	Expires  int64   `json:"expires"`            // Unix seconds
}

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
	store   Store
	wg      sync.WaitGroup
}

// SetStore makes the cache share its answers through st (nil: memory
// only).
func (c *Cache) SetStore(st Store) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.store = st
}

func storeKey(k string) string { return "callout:" + k }

// load reads k's shared answer, if the Store has one.
func (c *Cache) load(ctx context.Context, st Store, k string) (*entry, bool) {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	b, found, err := st.Get(ctx, storeKey(k))
	if err != nil || !found {
		return nil, false
	}
	var r record
	if json.Unmarshal(b, &r) != nil || r.Expires == 0 {
		return nil, false
	}
	e := &entry{res: Result{r.Verdict, r.Text}, expires: time.Unix(r.Expires, 0)}
	if r.Verified != 0 {
		e.verified = time.Unix(r.Verified, 0)
	}
	return e, true
}

// save writes k's answer for the other processes, kept as long as it can
// still serve (a deliverable address for PositiveTTL after it was
// verified, whatever its refresh time).
func (c *Cache) save(st Store, k string, r record, now time.Time) {
	ttl := time.Unix(r.Expires, 0).Sub(now)
	if r.Verified != 0 {
		ttl = max(ttl, time.Unix(r.Verified, 0).Add(c.opt.PositiveTTL).Sub(now))
	}
	if ttl < time.Second {
		return
	}
	b, err := json.Marshal(r)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(c.ctx, storeTimeout)
	defer cancel()
	st.Set(ctx, storeKey(k), b, ttl) // a cache: a failed write costs a probe later
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
	if st := c.store; e == nil && st != nil {
		c.mu.Unlock()
		shared, ok := c.load(ctx, st, k)
		c.mu.Lock()
		if e = c.entries[k]; e == nil && ok {
			c.evict()
			e = shared
			c.entries[k] = e
		}
	}
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
	st := c.store
	r := record{Verdict: res.Verdict, Text: res.Text, Expires: e.expires.Unix()}
	if !e.verified.IsZero() {
		r.Verified = e.verified.Unix()
	}
	c.mu.Unlock()
	// Shared before the sessions waiting here go on: once one is
	// answered, every process can know.
	if st != nil {
		c.save(st, k, r, now)
	}
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
