package auth

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// ErrBlocked: the client made too many failed logins lately; it is not
// asked for a password again until its block ends (Guard).
var ErrBlocked = errors.New("auth: too many failed logins from this address, try again later")

// GuardConfig is the "authlimit" setting: how many failed logins a client
// network may make in Window before every login from it is refused for
// Block, and which networks are never blocked.
type GuardConfig struct {
	Failures int           // 0 turns the guard off
	Window   time.Duration // counting window
	Block    time.Duration // how long a client stays blocked
	Exempt   []netip.Prefix
}

// DefaultGuardConfig: 20 failures an hour block an address for an hour;
// loopback (a webmail or proxy on this host logging users in) is exempt.
func DefaultGuardConfig() GuardConfig {
	return GuardConfig{Failures: 20, Window: time.Hour, Block: time.Hour,
		Exempt: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}}
}

// Guard counts failed logins per client network (an IPv4 address, an IPv6
// /64) across IMAP, POP3 and SMTP AUTH, and blocks a network that fails
// too often: password spraying from one place stops after Failures tries
// instead of going on at the speed of new connections. It is what
// fail2ban does for Postfix and Dovecot from their logs, built in (and
// those logs are still written, for fail2ban users). Safe for concurrent
// use; the counts live in memory (a restart forgets them).
type Guard struct {
	mu      sync.Mutex
	cfg     GuardConfig
	store   GuardStore // nil: the counts live in clients
	clients map[netip.Prefix]*guardEntry
	now     func() time.Time
	blocked atomic.Int64 // logins refused because of a block
	blocks  atomic.Int64 // blocks imposed
	// OnBlock, when set, is told of each new block (for the log).
	OnBlock func(client netip.Prefix, failures int, until time.Time)
}

type guardEntry struct {
	failures     int
	windowStart  time.Time
	blockedUntil time.Time
}

// GuardStore is where a Guard keeps its counts so that they outlive a
// restart and, on a shared store, count a client's failures at every
// server of a cluster together (filters/state's Store, embedded or Redis,
// is one).
type GuardStore interface {
	Get(ctx context.Context, key string) ([]byte, bool, error)
	Set(ctx context.Context, key string, value []byte, ttl time.Duration) error
	Incr(ctx context.Context, key string, delta int64, ttl time.Duration) (int64, error)
	Delete(ctx context.Context, key string) error
}

// SetStore has the guard count in st; while st fails, it counts in memory.
func (g *Guard) SetStore(st GuardStore) {
	g.mu.Lock()
	g.store = st
	g.mu.Unlock()
}

// storeTimeout bounds each store operation on the login path.
const storeTimeout = 2 * time.Second

// maxGuardEntries bounds the memory a spraying botnet can make us use.
const maxGuardEntries = 100000

// NewGuard returns a Guard with cfg.
func NewGuard(cfg GuardConfig) *Guard {
	return &Guard{cfg: cfg, clients: map[netip.Prefix]*guardEntry{}, now: time.Now}
}

// SetConfig applies a new configuration (reload), keeping the counts.
func (g *Guard) SetConfig(cfg GuardConfig) {
	g.mu.Lock()
	g.cfg = cfg
	g.mu.Unlock()
}

// clientKey is the network failures are counted for: an IPv4 address, an
// IPv6 /64 (one customer's network).
func clientKey(ip netip.Addr) netip.Prefix {
	ip = ip.Unmap()
	if ip.Is4() {
		return netip.PrefixFrom(ip, 32)
	}
	p, _ := ip.Prefix(64)
	return p
}

func (g *Guard) exempt(ip netip.Addr) bool {
	for _, p := range g.cfg.Exempt {
		if p.Contains(ip.Unmap()) {
			return true
		}
	}
	return false
}

// Blocked reports whether logins from ip are refused now.
func (g *Guard) Blocked(ip netip.Addr) bool {
	if g == nil || !ip.IsValid() {
		return false
	}
	_, st, skip := g.settings(ip)
	if skip {
		return false
	}
	k := clientKey(ip)
	if st != nil {
		ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
		_, found, err := st.Get(ctx, "authguard:block:"+k.String())
		cancel()
		if err == nil {
			if found {
				g.blocked.Add(1)
			}
			return found
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	e := g.clients[k]
	if e != nil && g.now().Before(e.blockedUntil) {
		g.blocked.Add(1)
		return true
	}
	return false
}

// settings returns the configuration and store in force, and whether ip
// is not to be counted (the guard is off, or ip is exempt).
func (g *Guard) settings(ip netip.Addr) (GuardConfig, GuardStore, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.cfg, g.store, g.cfg.Failures <= 0 || g.exempt(ip)
}

// Fail counts a failed login from ip, and blocks its network once it has
// made Failures of them within Window. The store is asked without the
// guard's lock held, so a slow store slows only the logins that fail.
func (g *Guard) Fail(ip netip.Addr) {
	if g == nil || !ip.IsValid() {
		return
	}
	cfg, st, skip := g.settings(ip)
	if skip {
		return
	}
	now := g.now()
	k := clientKey(ip)
	if st != nil {
		if until, blocked, ok := g.failInStore(st, cfg, k, now); ok {
			if blocked && g.OnBlock != nil {
				g.OnBlock(k, cfg.Failures, until)
			}
			return
		}
	}
	g.mu.Lock()
	e := g.clients[k]
	if e == nil {
		g.sweep(now)
		e = &guardEntry{windowStart: now}
		g.clients[k] = e
	}
	if now.Sub(e.windowStart) >= cfg.Window {
		e.failures, e.windowStart = 0, now
	}
	e.failures++
	n, until, blocked := e.failures, time.Time{}, false
	if e.failures >= cfg.Failures && !now.Before(e.blockedUntil) {
		e.blockedUntil = now.Add(cfg.Block)
		e.failures, e.windowStart = 0, now
		until, blocked = e.blockedUntil, true
		g.blocks.Add(1)
	}
	g.mu.Unlock()
	if blocked && g.OnBlock != nil {
		g.OnBlock(k, n, until)
	}
}

// failInStore counts a failure of k in the store: ok is false when the
// store failed (the caller counts in memory then).
func (g *Guard) failInStore(st GuardStore, cfg GuardConfig, k netip.Prefix, now time.Time) (until time.Time, blocked, ok bool) {
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	n, err := st.Incr(ctx, "authguard:fail:"+k.String(), 1, cfg.Window)
	if err != nil {
		return time.Time{}, false, false
	}
	if n < int64(cfg.Failures) {
		return time.Time{}, false, true
	}
	until = now.Add(cfg.Block)
	if err := st.Set(ctx, "authguard:block:"+k.String(), []byte(until.UTC().Format(time.RFC3339)), cfg.Block); err != nil {
		return time.Time{}, false, false
	}
	st.Delete(ctx, "authguard:fail:"+k.String()) // counting starts again after the block
	g.blocks.Add(1)
	return until, true, true
}

// sweep drops entries whose window and block are over when the map is
// full, then any others, so memory stays bounded. Called with mu held.
func (g *Guard) sweep(now time.Time) {
	if len(g.clients) < maxGuardEntries {
		return
	}
	for k, e := range g.clients {
		if now.Sub(e.windowStart) >= g.cfg.Window && !now.Before(e.blockedUntil) {
			delete(g.clients, k)
		}
	}
	for k := range g.clients {
		if len(g.clients) < maxGuardEntries*9/10 {
			break
		}
		delete(g.clients, k)
	}
}

// GuardStats are the guard's counters since start.
type GuardStats struct {
	Blocks  int64 // clients blocked
	Refused int64 // logins refused because the client was blocked
	Tracked int   // client networks counted in memory (without a working store)
}

// Stats returns the counters.
func (g *Guard) Stats() GuardStats {
	if g == nil {
		return GuardStats{}
	}
	g.mu.Lock()
	n := len(g.clients)
	g.mu.Unlock()
	return GuardStats{Blocks: g.blocks.Load(), Refused: g.blocked.Load(), Tracked: n}
}

// SetGuard has AuthenticateFrom count failures in g (nil: no guard).
func (s *Service) SetGuard(g *Guard) { s.guard = g }

// Guard returns the guard set with SetGuard, or nil.
func (s *Service) Guard() *Guard { return s.guard }

// AuthenticateFrom is Authenticate for a login from a network client: a
// client the guard has blocked gets ErrBlocked without its password being
// looked at, and a wrong password or unknown user counts against it.
func (s *Service) AuthenticateFrom(ctx context.Context, service string, client netip.Addr, name, password string) (*Account, error) {
	ip := client.Unmap()
	if s.guard.Blocked(ip) {
		return nil, ErrBlocked
	}
	a, err := s.Authenticate(ctx, service, name, password)
	if errors.Is(err, ErrBadPassword) || errors.Is(err, ErrNoSuchUser) {
		s.guard.Fail(ip)
	}
	return a, err
}

// AddrOf is the IP address of a connection's remote end (a TCP address),
// or the zero Addr.
func AddrOf(a net.Addr) netip.Addr {
	if t, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(t.IP)
		return ip.Unmap()
	}
	if a != nil {
		if ap, err := netip.ParseAddrPort(a.String()); err == nil {
			return ap.Addr().Unmap()
		}
	}
	return netip.Addr{}
}
