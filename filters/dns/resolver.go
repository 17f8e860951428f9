// Package dns is Postern's one DNS resolver: every check that needs DNS
// (SPF, DNSBL, DKIM, DMARC, forward-confirmed reverse DNS, outbound MX
// routing) asks through a *Resolver so that caching, timeouts and limits are
// the same everywhere.
//
// It is a stub resolver (RFC 1035 section 7) that asks recursive servers:
// the configured Servers, or the nameservers of /etc/resolv.conf. Answers are
// cached by TTL in a bounded LRU cache, negative answers too (RFC 2308, with
// a cap). Queries go over UDP with EDNS0 and a 1232-byte buffer (the DNS
// flag day 2020 size), fall back to TCP when the answer is truncated
// (RFC 7766 section 5), check the ID and question of every answer, follow
// CNAME chains to a bounded depth, and refuse oversize answers.
//
// Every failure is one of three classes, tested with errors.Is: ErrNotFound
// (a definite "none": NXDOMAIN or no data), ErrTemporary (timeout, SERVFAIL,
// network trouble: try again later) and ErrPermanent (an invalid name, a
// CNAME loop, an oversize answer). Checks map these to their own results, for
// example SPF's none / temperror / permerror.
package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mdns "github.com/miekg/dns"
)

// Defaults for Options fields left zero.
const (
	DefaultTimeout          = 2 * time.Second
	DefaultAttempts         = 2
	DefaultCacheSize        = 10000
	DefaultMaxTTL           = 24 * time.Hour
	DefaultMaxNegativeTTL   = 15 * time.Minute
	DefaultMaxCNAMEChain    = 8
	DefaultMaxAnswerRecords = 256
	DefaultResolvConf       = "/etc/resolv.conf"

	// ednsBufferSize is the EDNS0 UDP payload size: large enough for most
	// answers, small enough to avoid IP fragmentation (DNS flag day 2020).
	ednsBufferSize = 1232
)

// Options configure a Resolver. The zero value asks the servers of
// /etc/resolv.conf with the defaults above.
type Options struct {
	// Servers are recursive resolvers as host:port. Empty means the
	// nameservers listed in ResolvConf.
	Servers []string
	// ResolvConf is the resolv.conf(5) file read when Servers is empty.
	ResolvConf string
	// Timeout bounds one exchange with one server (UDP, and TCP on truncation).
	Timeout time.Duration
	// Attempts is how many rounds over the server list are made before a
	// query fails with a temporary error.
	Attempts int
	// Parallel asks every server at once and takes the first usable answer;
	// otherwise servers are tried in order, the next after a failure.
	Parallel bool
	// CacheSize bounds the number of cached answers; negative disables the
	// cache.
	CacheSize int
	// MaxTTL caps how long a positive answer is cached.
	MaxTTL time.Duration
	// MaxNegativeTTL caps how long NXDOMAIN / no-data answers are cached
	// (RFC 2308 section 5 takes the TTL from the SOA; this bounds it).
	MaxNegativeTTL time.Duration
	// MaxCNAMEChain bounds the CNAME indirections followed for one query.
	MaxCNAMEChain int
	// MaxAnswerRecords bounds the resource records accepted in one answer;
	// a larger answer fails with ErrTooLarge.
	MaxAnswerRecords int
	// Logger receives debug logs of exchanges and warnings of failures.
	Logger *slog.Logger
	// Now is the clock used for cache expiry; nil means time.Now.
	Now func() time.Time
}

// Resolver asks DNS questions with caching. It is safe for concurrent use.
type Resolver struct {
	servers          []string
	timeout          time.Duration
	attempts         int
	parallel         bool
	maxTTL           time.Duration
	maxNegativeTTL   time.Duration
	maxCNAMEChain    int
	maxAnswerRecords int
	log              *slog.Logger
	now              func() time.Time
	cache            *lruCache // nil when disabled

	inflightMu sync.Mutex
	inflight   map[cacheKey]*inflightCall

	stats counters
}

type inflightCall struct {
	done   chan struct{}
	answer *Answer
	err    error
}

// New builds a Resolver. It fails only when no server is configured and none
// can be read from resolv.conf.
func New(opts Options) (*Resolver, error) {
	r := &Resolver{
		servers:          append([]string(nil), opts.Servers...),
		timeout:          orDefault(opts.Timeout, DefaultTimeout),
		attempts:         orDefault(opts.Attempts, DefaultAttempts),
		parallel:         opts.Parallel,
		maxTTL:           orDefault(opts.MaxTTL, DefaultMaxTTL),
		maxNegativeTTL:   orDefault(opts.MaxNegativeTTL, DefaultMaxNegativeTTL),
		maxCNAMEChain:    orDefault(opts.MaxCNAMEChain, DefaultMaxCNAMEChain),
		maxAnswerRecords: orDefault(opts.MaxAnswerRecords, DefaultMaxAnswerRecords),
		log:              opts.Logger,
		now:              opts.Now,
		inflight:         make(map[cacheKey]*inflightCall),
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.now == nil {
		r.now = time.Now
	}
	if opts.CacheSize >= 0 {
		r.cache = newLRUCache(orDefault(opts.CacheSize, DefaultCacheSize))
	}
	if len(r.servers) == 0 {
		path := opts.ResolvConf
		if path == "" {
			path = DefaultResolvConf
		}
		cfg, err := mdns.ClientConfigFromFile(path)
		if err != nil {
			return nil, fmt.Errorf("dns: read %s: %w", path, err)
		}
		for _, s := range cfg.Servers {
			r.servers = append(r.servers, net.JoinHostPort(s, cfg.Port))
		}
		if len(r.servers) == 0 {
			return nil, fmt.Errorf("dns: %s lists no nameserver: %w", path, ErrNoServers)
		}
	}
	for _, s := range r.servers {
		if _, _, err := net.SplitHostPort(s); err != nil {
			return nil, fmt.Errorf("dns: server %q: want host:port: %w", s, err)
		}
	}
	return r, nil
}

func orDefault[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// Servers returns the servers this resolver asks, in order.
func (r *Resolver) Servers() []string { return append([]string(nil), r.servers...) }

// FlushCache forgets every cached answer.
func (r *Resolver) FlushCache() {
	if r.cache != nil {
		r.cache.flush()
	}
}

// Answer is the result of one query, after following CNAMEs.
type Answer struct {
	Name    string    // the name asked, lower-case FQDN
	Type    uint16    // the query type
	CNAMEs  []string  // the CNAME targets followed, in order
	Records []mdns.RR // the records of Type at the end of the chain; do not modify
	TTL     time.Duration
	Cached  bool   // served from the cache
	Server  string // the server that answered (empty when cached)
}

// Query asks for the records of qtype at name (a domain name, with or without
// the trailing dot). A nil error means at least one record; otherwise the
// error matches ErrNotFound, ErrTemporary or ErrPermanent and is a
// *LookupError.
func (r *Resolver) Query(ctx context.Context, name string, qtype uint16) (*Answer, error) {
	r.stats.lookups.Add(1)
	fqdn, err := normalizeName(name)
	if err != nil {
		return nil, &LookupError{Name: name, Type: qtype, Err: err}
	}
	key := cacheKey{fqdn, qtype}
	if r.cache != nil {
		if e, ok := r.cache.get(key, r.now()); ok {
			r.stats.cacheHits.Add(1)
			if e.err != nil {
				return nil, &LookupError{Name: fqdn, Type: qtype, Err: e.err}
			}
			a := *e.answer
			a.Cached = true
			a.Server = ""
			a.TTL = e.expires.Sub(r.now())
			return &a, nil
		}
		r.stats.cacheMisses.Add(1)
	}

	// Collapse concurrent identical questions into one exchange.
	r.inflightMu.Lock()
	if c, ok := r.inflight[key]; ok {
		r.inflightMu.Unlock()
		select {
		case <-c.done:
			return c.answer, c.err
		case <-ctx.Done():
			return nil, &LookupError{Name: fqdn, Type: qtype, Err: withCause(ErrTimeout, ctx.Err())}
		}
	}
	c := &inflightCall{done: make(chan struct{})}
	r.inflight[key] = c
	r.inflightMu.Unlock()

	c.answer, c.err = r.resolve(ctx, fqdn, qtype)

	r.inflightMu.Lock()
	delete(r.inflight, key)
	r.inflightMu.Unlock()
	close(c.done)
	return c.answer, c.err
}

// normalizeName returns the lower-case FQDN for name, in miekg/dns's
// presentation form (so that it compares equal to names in answers), or
// ErrInvalidName. Names are bounded by RFC 1035 section 2.3.4: 63 octets a
// label, 255 in all on the wire.
func normalizeName(name string) (string, error) {
	if name == "" {
		return "", ErrInvalidName
	}
	fqdn := mdns.Fqdn(strings.ToLower(name))
	if fqdn != "." && strings.HasPrefix(fqdn, ".") || strings.Contains(fqdn, "..") {
		return "", ErrInvalidName
	}
	if _, ok := mdns.IsDomainName(fqdn); !ok {
		return "", ErrInvalidName
	}
	var buf [256]byte
	n, err := mdns.PackDomainName(fqdn, buf[:], 0, nil, false)
	if err != nil || n > 255 {
		return "", ErrInvalidName
	}
	canonical, _, err := mdns.UnpackDomainName(buf[:n], 0)
	if err != nil {
		return "", ErrInvalidName
	}
	return canonical, nil
}

// resolve asks the servers, follows CNAMEs across queries when a server did
// not, and caches the outcome.
func (r *Resolver) resolve(ctx context.Context, fqdn string, qtype uint16) (*Answer, error) {
	ans := &Answer{Name: fqdn, Type: qtype}
	target := fqdn
	seen := map[string]bool{fqdn: true}
	var minTTL uint32 = ^uint32(0)
	for {
		resp, server, err := r.ask(ctx, target, qtype)
		if err != nil {
			return nil, &LookupError{Name: fqdn, Type: qtype, Server: server, Err: err}
		}
		ans.Server = server
		// Walk the answer section from target along CNAMEs (RFC 1034
		// section 3.6.2): records of qtype owned by the current name end the
		// chain; a CNAME moves it on.
		records, chainEnd, chainErr := r.walkChain(resp, target, qtype, seen, &ans.CNAMEs, &minTTL)
		if chainErr != nil {
			return nil, &LookupError{Name: fqdn, Type: qtype, Server: server, Err: chainErr}
		}
		if len(records) > 0 {
			ans.Records = records
			ans.TTL = r.capTTL(minTTL, r.maxTTL)
			r.store(cacheKey{fqdn, qtype}, ans, nil)
			return ans, nil
		}
		// No data for qtype. RFC 6604: the rcode describes the last name in
		// the chain, so NXDOMAIN after a CNAME means the target is missing.
		if resp.Rcode == mdns.RcodeNameError {
			return nil, r.negative(fqdn, qtype, server, resp, ErrNXDomain)
		}
		if chainEnd != target && qtype != mdns.TypeCNAME {
			// The server gave us a CNAME but not what it points at: ask for
			// the target ourselves.
			target = chainEnd
			continue
		}
		return nil, r.negative(fqdn, qtype, server, resp, ErrNoData)
	}
}

// walkChain follows CNAMEs inside one response starting at name. It returns
// the records of qtype found at the end of the chain and the last name
// reached.
func (r *Resolver) walkChain(resp *mdns.Msg, name string, qtype uint16, seen map[string]bool, cnames *[]string, minTTL *uint32) ([]mdns.RR, string, error) {
	cur := name
	for {
		var records []mdns.RR
		var next string
		for _, rr := range resp.Answer {
			h := rr.Header()
			if !strings.EqualFold(h.Name, cur) || h.Class != mdns.ClassINET {
				continue
			}
			if h.Rrtype == qtype {
				records = append(records, rr)
				*minTTL = min(*minTTL, h.Ttl)
			} else if h.Rrtype == mdns.TypeCNAME && next == "" {
				next = strings.ToLower(rr.(*mdns.CNAME).Target)
				*minTTL = min(*minTTL, h.Ttl)
			}
		}
		if len(records) > 0 || next == "" {
			return records, cur, nil
		}
		if seen[next] || len(*cnames) >= r.maxCNAMEChain {
			return nil, cur, ErrCNAMELoop
		}
		seen[next] = true
		*cnames = append(*cnames, strings.TrimSuffix(next, "."))
		cur = next
	}
}

func (r *Resolver) capTTL(ttl uint32, max time.Duration) time.Duration {
	d := time.Duration(ttl) * time.Second
	if d > max {
		d = max
	}
	return d
}

// negative records a NXDOMAIN / no-data answer. RFC 2308 section 5: the
// negative TTL is the lesser of the SOA's TTL and its MINIMUM field; without
// an SOA the answer is not cached.
func (r *Resolver) negative(fqdn string, qtype uint16, server string, resp *mdns.Msg, kind error) error {
	for _, rr := range resp.Ns {
		if soa, ok := rr.(*mdns.SOA); ok {
			ttl := r.capTTL(min(soa.Hdr.Ttl, soa.Minttl), r.maxNegativeTTL)
			r.store(cacheKey{fqdn, qtype}, nil, kind, ttl)
			break
		}
	}
	return &LookupError{Name: fqdn, Type: qtype, Server: server, Err: kind}
}

func (r *Resolver) store(key cacheKey, ans *Answer, negErr error, negTTL ...time.Duration) {
	if r.cache == nil {
		return
	}
	ttl := time.Duration(0)
	if ans != nil {
		ttl = ans.TTL
	} else if len(negTTL) > 0 {
		ttl = negTTL[0]
	}
	if ttl <= 0 {
		return
	}
	var stored *Answer
	if ans != nil {
		cp := *ans
		stored = &cp
	}
	r.cache.put(cacheEntry{key: key, answer: stored, err: negErr, expires: r.now().Add(ttl)})
}

// ask sends one question to the servers, in order or in parallel, with
// retries, and returns the first usable response: NOERROR or NXDOMAIN.
func (r *Resolver) ask(ctx context.Context, name string, qtype uint16) (*mdns.Msg, string, error) {
	if len(r.servers) == 0 {
		return nil, "", ErrNoServers
	}
	var lastErr error
	var lastServer string
	for attempt := 0; attempt < r.attempts; attempt++ {
		if err := ctx.Err(); err != nil {
			return nil, "", withCause(ErrTimeout, err)
		}
		if r.parallel && len(r.servers) > 1 {
			resp, server, err := r.askParallel(ctx, name, qtype)
			if err == nil || !errors.Is(err, ErrTemporary) {
				return resp, server, err
			}
			lastErr, lastServer = err, server
			continue
		}
		for _, server := range r.servers {
			resp, err := r.exchange(ctx, server, name, qtype)
			if err == nil || !errors.Is(err, ErrTemporary) {
				return resp, server, err
			}
			lastErr, lastServer = err, server
			r.log.Debug("dns exchange failed", "server", server, "name", name, "type", mdns.TypeToString[qtype], "err", err)
		}
	}
	r.log.Warn("dns query failed", "name", name, "type", mdns.TypeToString[qtype], "server", lastServer, "err", lastErr)
	return nil, lastServer, lastErr
}

func (r *Resolver) askParallel(ctx context.Context, name string, qtype uint16) (*mdns.Msg, string, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		resp   *mdns.Msg
		server string
		err    error
	}
	// Buffered so that every sender finishes even after we stopped reading.
	results := make(chan result, len(r.servers))
	for _, server := range r.servers {
		go func() {
			resp, err := r.exchange(ctx, server, name, qtype)
			results <- result{resp, server, err}
		}()
	}
	var last result
	for range r.servers {
		res := <-results
		if res.err == nil || !errors.Is(res.err, ErrTemporary) {
			return res.resp, res.server, res.err
		}
		last = res
	}
	return nil, last.server, last.err
}

// exchange asks one server once: UDP with EDNS0, TCP when the UDP answer is
// truncated. The response is checked against the question (RFC 5452 section
// 9.1: ID, question name, type and class) and bounded in size.
func (r *Resolver) exchange(ctx context.Context, server, name string, qtype uint16) (*mdns.Msg, error) {
	q := new(mdns.Msg)
	q.SetQuestion(name, qtype)
	q.RecursionDesired = true
	q.SetEdns0(ednsBufferSize, false)

	r.stats.exchanges.Add(1)
	resp, err := r.exchangeOver(ctx, "udp", server, q)
	if err == nil && resp.Truncated {
		// RFC 7766 section 5: retry over TCP when truncated.
		r.stats.tcpFallbacks.Add(1)
		resp, err = r.exchangeOver(ctx, "tcp", server, q)
		if err == nil && resp.Truncated {
			err = withCause(ErrBadResponse, errors.New("truncated answer over TCP"))
		}
	}
	if err != nil {
		return nil, err
	}
	if resp.Rcode == mdns.RcodeFormatError && resp.IsEdns0() == nil {
		// A server that does not understand EDNS0 (RFC 6891 section 7):
		// ask again without it.
		q.Extra = nil
		resp, err = r.exchangeOver(ctx, "udp", server, q)
		if err == nil && resp.Truncated {
			r.stats.tcpFallbacks.Add(1)
			resp, err = r.exchangeOver(ctx, "tcp", server, q)
		}
		if err != nil {
			return nil, err
		}
	}
	switch resp.Rcode {
	case mdns.RcodeSuccess, mdns.RcodeNameError:
	case mdns.RcodeServerFailure:
		r.stats.serverFailures.Add(1)
		return nil, withCause(ErrServerFailure, fmt.Errorf("rcode %s", mdns.RcodeToString[resp.Rcode]))
	default:
		// REFUSED, NOTIMP, FORMERR...: this server cannot help, another may.
		r.stats.serverFailures.Add(1)
		return nil, withCause(ErrServerFailure, fmt.Errorf("rcode %s", mdns.RcodeToString[resp.Rcode]))
	}
	if n := len(resp.Answer); n > r.maxAnswerRecords {
		return nil, withCause(ErrTooLarge, fmt.Errorf("%d records in answer, limit %d", n, r.maxAnswerRecords))
	}
	return resp, nil
}

func (r *Resolver) exchangeOver(ctx context.Context, network, server string, q *mdns.Msg) (*mdns.Msg, error) {
	client := &mdns.Client{Net: network, Timeout: r.timeout, UDPSize: ednsBufferSize}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	conn, err := client.DialContext(ctx, server)
	if err != nil {
		return nil, r.classifyNetError(err)
	}
	defer conn.Close()
	// Unblock the read as soon as the caller gives up.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	resp, _, err := client.ExchangeWithConnContext(ctx, q, conn)
	if err != nil {
		if resp != nil && resp.Truncated && network == "udp" {
			// A truncated UDP answer may not unpack in full; TCP will tell.
			return resp, nil
		}
		if ctx.Err() != nil {
			r.stats.timeouts.Add(1)
			return nil, withCause(ErrTimeout, err)
		}
		return nil, r.classifyNetError(err)
	}
	if resp.Id != q.Id || !resp.Response || len(resp.Question) != 1 ||
		!strings.EqualFold(resp.Question[0].Name, q.Question[0].Name) ||
		resp.Question[0].Qtype != q.Question[0].Qtype ||
		resp.Question[0].Qclass != q.Question[0].Qclass {
		return nil, withCause(ErrBadResponse, errors.New("answer does not match the question"))
	}
	return resp, nil
}

func (r *Resolver) classifyNetError(err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		r.stats.timeouts.Add(1)
		return withCause(ErrTimeout, err)
	}
	if errors.Is(err, mdns.ErrBuf) || errors.Is(err, mdns.ErrId) {
		return withCause(ErrBadResponse, err)
	}
	var de *mdns.Error
	if errors.As(err, &de) {
		return withCause(ErrBadResponse, err)
	}
	return withCause(ErrTemporary, err)
}

// Stats are running totals, cheap to read for metrics.
type Stats struct {
	Lookups        uint64 // Query calls (including through the Lookup helpers)
	CacheHits      uint64
	CacheMisses    uint64
	Exchanges      uint64 // questions sent to a server
	TCPFallbacks   uint64 // truncated UDP answers retried over TCP
	Timeouts       uint64
	ServerFailures uint64 // SERVFAIL, REFUSED and other failure rcodes
	CacheEntries   int
}

type counters struct {
	lookups, cacheHits, cacheMisses, exchanges, tcpFallbacks, timeouts, serverFailures atomic.Uint64
}

// Stats returns the running totals.
func (r *Resolver) Stats() Stats {
	s := Stats{
		Lookups:        r.stats.lookups.Load(),
		CacheHits:      r.stats.cacheHits.Load(),
		CacheMisses:    r.stats.cacheMisses.Load(),
		Exchanges:      r.stats.exchanges.Load(),
		TCPFallbacks:   r.stats.tcpFallbacks.Load(),
		Timeouts:       r.stats.timeouts.Load(),
		ServerFailures: r.stats.serverFailures.Load(),
	}
	if r.cache != nil {
		s.CacheEntries = r.cache.len()
	}
	return s
}
