// Package outbound delivers messages to other mail servers over SMTP: it
// owns the routes file (Courier's esmtproutes in spirit: per-domain relays,
// a smarthost, TLS policy), the smarthost credentials, MX resolution (RFC
// 5321 section 5.1, null MX of RFC 7505) and the SMTP client conversation
// (STARTTLS per RFC 3207, AUTH per RFC 4954, SIZE, 8BITMIME, SMTPUTF8, DSN
// parameters of RFC 3461, REQUIRETLS of RFC 8689).
//
// Client implements delivery.Deliverer: the queue hands it one message and
// the recipients of one destination domain; it answers with one result per
// recipient, temporary or permanent, with the diagnostic a DSN needs. It
// keeps no queue state and never retries on its own beyond trying the next
// MX host in the same call.
package outbound

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"postern/gateway/delivery"
	"postern/gateway/outbound/dane"
	"postern/gateway/outbound/mtasts"
	"postern/gateway/outbound/tlsrpt"
)

// Options configure a Client. Only Hostname is required.
type Options struct {
	Hostname string                 // our name (policy's "me"): in EHLO, and to find ourselves among MX hosts
	HELOName string                 // the name sent in EHLO/HELO instead of Hostname ("esmtphelo"); "" uses Hostname
	Routes   *Routes                // nil: everything by MX
	Auth     map[string]Credentials // smarthostauth, keyed by lower-case name
	Resolver Resolver               // nil: NewDNSResolver(nil, 5s)

	// SenderRoutes chooses a relay by the envelope sender; it overrides
	// the Routes default ('*') but not a Routes rule for the recipient's
	// domain (see Client.route). nil: no sender rules.
	SenderRoutes *SenderRoutes

	DialTimeout    time.Duration // TCP connect; default 30s
	CommandTimeout time.Duration // each command's reply (and the greeting); default 5m (RFC 5321 4.5.3.2)
	DataTimeout    time.Duration // sending the message and its final reply; default 10m (RFC 5321 4.5.3.2.6)

	// TLSConfig is the base TLS configuration: client certificates, trusted
	// roots (RootCAs; nil uses the system's), minimum version. ServerName
	// and InsecureSkipVerify are set per connection.
	TLSConfig *tls.Config

	Logger *slog.Logger // nil: discard

	Port       int          // default 25; routes may set their own
	LocalAddrs []netip.Addr // source addresses to bind, one per family at most (optional)

	// ConnCacheIdle is how long a session that finished a transaction is
	// kept for the next message to the same host; default 5s, negative
	// disables the cache. Call Close to end cached sessions.
	ConnCacheIdle time.Duration

	// DANE authenticates MX hosts with their DNSSEC-signed TLSA records
	// (RFC 7672) when Resolver is a SecureResolver: it trusts the AD bit
	// of its answers, so its servers must be a validating resolver on a
	// trusted path (this host). Routes with their own /SECURITY are left
	// as they are.
	DANE bool
	// MTASTS, when set, applies destination domains' MTA-STS policies
	// (RFC 8461) to MX deliveries without DANE.
	MTASTS *mtasts.Client
	// TLSReport counts the TLS sessions of MX deliveries for SMTP TLS
	// Reporting (RFC 8460); nil counts nothing.
	TLSReport *tlsrpt.Recorder

	// Self are the addresses and ports this server receives mail on (its
	// smtp listeners; a wildcard listener stands for every address of the
	// host). An MX host that resolves to one of them is this server, as if
	// it were named "me" (RFC 5321 section 5.1).
	Self []netip.AddrPort

	MaxHosts            int // MX hosts tried per delivery; default 5
	MaxAddressesPerHost int // addresses tried per host; default 3
	MaxAddresses        int // addresses tried per delivery; default 10
}

// Client delivers to remote SMTP servers. It is safe for concurrent use.
type Client struct {
	opts  Options
	log   *slog.Logger
	stats statsCounter
	pool  *sessionPool
}

var _ delivery.Deliverer = (*Client)(nil)

// New returns a Client for opts.
func New(opts Options) (*Client, error) {
	if opts.Hostname == "" {
		return nil, errors.New("outbound: Options.Hostname is required")
	}
	if opts.HELOName == "" {
		opts.HELOName = opts.Hostname
	}
	if strings.ContainsAny(opts.Hostname+opts.HELOName, " \t\r\n") {
		return nil, fmt.Errorf("outbound: hostname %q or HELO name %q has blanks", opts.Hostname, opts.HELOName)
	}
	if opts.Resolver == nil {
		opts.Resolver = NewDNSResolver(nil, 5*time.Second)
	}
	setDefault(&opts.DialTimeout, 30*time.Second)
	setDefault(&opts.CommandTimeout, 5*time.Minute)
	setDefault(&opts.DataTimeout, 10*time.Minute)
	setDefault(&opts.Port, 25)
	setDefault(&opts.MaxHosts, 5)
	setDefault(&opts.MaxAddressesPerHost, 3)
	setDefault(&opts.MaxAddresses, 10)
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.ConnCacheIdle == 0 {
		opts.ConnCacheIdle = 5 * time.Second
	}
	return &Client{opts: opts, log: log, stats: newStatsCounter(), pool: newSessionPool(opts.ConnCacheIdle)}, nil
}

// Close ends the cached sessions (QUIT) and stops caching. Deliver still
// works afterwards, without the cache.
func (c *Client) Close() error {
	c.pool.close()
	return nil
}

func setDefault[T int | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// Enhanced status codes used for failures found on this side (RFC 3463).
const (
	statusBadAddress     = "5.1.3"  // bad destination mailbox address syntax
	statusNoSuchDomain   = "5.1.2"  // bad destination system address
	statusNullMX         = "5.1.10" // RFC 7505 section 4.2
	statusLoop           = "5.4.6"  // routing loop detected
	statusNoAnswer       = "4.4.1"  // no answer from host
	statusBadConnection  = "4.4.2"  // bad connection
	statusDNSTemporary   = "4.4.3"  // directory server failure
	statusUnableToRoute  = "4.4.4"
	statusTLSFailed      = "4.7.5" // cryptographic failure
	statusAuthFailed     = "4.7.8"
	statusAuthNeedsTLS   = "4.7.0"
	statusTooBig         = "5.3.4"
	statusNeedsSMTPUTF8  = "5.6.7"  // RFC 6531 section 3.6.2 (RFC 6532)
	statusNeedsREQUIRETL = "5.7.10" // RFC 8689 section 5
	statusNoValidMX      = "4.7.5"  // MTA-STS: no MX host the policy allows (RFC 8461 section 5)
	statusLocalError     = "4.3.0"  // other mail system problem (the queued message unreadable)
)

// failure is a delivery failure that applies to every recipient of an
// attempt, before any recipient was answered (or instead of answers).
type failure struct {
	temporary  bool
	status     string
	diagnostic string // full RFC 3464 Diagnostic-Code: "smtp; 421 ..." or "x-postern; ..."
	reason     string // metrics label
	remoteMTA  string
	err        error
	nextHost   bool // another host of the destination may do better
}

func (f *failure) result() delivery.Result {
	return delivery.Result{
		Err:        f.err,
		Permanent:  !f.temporary,
		Diagnostic: f.diagnostic,
		Status:     f.status,
		RemoteMTA:  f.remoteMTA,
	}
}

// localFailure builds a failure found on this side.
func localFailure(temporary bool, status, reason string, err error) *failure {
	return &failure{
		temporary:  temporary,
		status:     status,
		reason:     reason,
		err:        err,
		diagnostic: "x-postern; " + oneLine(err.Error()),
	}
}

// Deliver implements delivery.Deliverer. Recipients are grouped by domain
// (the queue passes one domain, but nothing breaks if it does not); each
// group is one SMTP transaction. The route is chosen by the envelope's
// sender and the domain; one call has one sender, so the domain alone
// keys the groups. Sessions are cached under the relay's address, port
// and login (sessionKey), so messages of two senders to one domain never
// share a session through the wrong relay.
func (c *Client) Deliver(ctx context.Context, env *delivery.Envelope, rcpts []delivery.Recipient, msg delivery.Message) []delivery.Result {
	results := make([]delivery.Result, len(rcpts))
	if env == nil || msg == nil {
		f := localFailure(true, "4.3.0", "internal", errors.New("outbound: Deliver called without an envelope or a message"))
		for i := range results {
			results[i] = f.result()
			c.stats.count(results[i], f.reason)
		}
		return results
	}
	groups := map[string][]int{}
	var order []string
	for i, r := range rcpts {
		domain, err := recipientDomain(r.Addr)
		if err != nil {
			f := localFailure(false, statusBadAddress, "bad-address", fmt.Errorf("recipient %q: %w", r.Addr, err))
			results[i] = f.result()
			c.stats.count(results[i], f.reason)
			continue
		}
		if _, ok := groups[domain]; !ok {
			order = append(order, domain)
		}
		groups[domain] = append(groups[domain], i)
	}
	for _, domain := range order {
		idx := groups[domain]
		sub := make([]delivery.Recipient, len(idx))
		for j, i := range idx {
			sub[j] = rcpts[i]
		}
		res, reasons := c.deliverDomain(ctx, env, domain, sub, msg)
		for j, i := range idx {
			results[i] = res[j]
			c.stats.count(res[j], reasons[j])
		}
	}
	return results
}

// maxAddressLen bounds a recipient address (RFC 5321 4.5.3.1: 64 + 1 +
// 255, with room for quoting).
const maxAddressLen = 512

// recipientDomain checks an address enough to send it and returns its
// domain in lookup form.
func recipientDomain(addr string) (string, error) {
	if len(addr) > maxAddressLen {
		return "", errors.New("address too long")
	}
	if strings.ContainsAny(addr, "\r\n\x00<>") {
		return "", errors.New("address has forbidden characters")
	}
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 || at == len(addr)-1 {
		return "", errors.New("address has no local part or domain")
	}
	d := addr[at+1:]
	if strings.HasPrefix(d, "[") {
		return "", errors.New("address literals are not routed")
	}
	return normalizeDomain(d)
}

// deliverDomain delivers to the recipients of one domain and returns their
// results and a metrics reason for each.
func (c *Client) deliverDomain(ctx context.Context, env *delivery.Envelope, domain string, rcpts []delivery.Recipient, msg delivery.Message) ([]delivery.Result, []string) {
	route, source := c.route(env.From, domain)
	log := c.log.With("queue_id", env.ID, "domain", domain)
	if source == SourceSender {
		log = log.With("senderroute", fmt.Sprintf("%s:%d", route.Origin.File, route.Origin.Num))
	}
	all := func(f *failure) ([]delivery.Result, []string) {
		log.Info("delivery failed", "temporary", f.temporary, "status", f.status, "diagnostic", f.diagnostic)
		res := make([]delivery.Result, len(rcpts))
		reasons := make([]string, len(rcpts))
		for i := range res {
			res[i] = f.result()
			reasons[i] = f.reason
		}
		return res, reasons
	}
	if env.RequireTLS && route.Security == SecurityNone {
		return all(localFailure(false, statusNeedsREQUIRETL, "requiretls",
			fmt.Errorf("REQUIRETLS message, but the route for %s (%s:%d) forbids TLS", domain, route.Origin.File, route.Origin.Num)))
	}
	hosts, f := c.resolve(ctx, domain, route)
	if f != nil {
		return all(f)
	}
	if hosts, f = c.applyMTASTS(ctx, domain, route, hosts, log); f != nil {
		return all(f)
	}
	if route.UsesMX() {
		for i := range hosts {
			hosts[i].domain = domain
		}
	}
	var temp, perm *failure
	tried := 0
hosts:
	for _, h := range hosts {
		for n, addr := range h.addrs {
			if n >= c.opts.MaxAddressesPerHost || tried >= c.opts.MaxAddresses {
				continue hosts
			}
			tried++
			res, reasons, f := c.attempt(ctx, env, route, h, addr, rcpts, msg, false)
			if f != nil && f.reason == "tls-handshake" && c.hostSecurity(route, env, h) == SecurityOpportunistic {
				// Opportunistic TLS failed mid-handshake: the peer offered
				// STARTTLS it cannot do. Sending in clear is no worse than a
				// peer that never offered it (RFC 3207 section 4.1), and is
				// what keeps mail flowing to such hosts.
				log.Info("STARTTLS failed; retrying in clear", "host", h.name, "addr", addr, "err", f.err)
				res, reasons, f = c.attempt(ctx, env, route, h, addr, rcpts, msg, true)
			}
			if f == nil {
				return res, reasons
			}
			log.Info("attempt failed", "host", h.name, "addr", addr, "temporary", f.temporary, "diagnostic", f.diagnostic)
			if f.temporary {
				temp = f
			} else {
				perm = f
			}
			if !f.nextHost || ctx.Err() != nil {
				return all(f)
			}
			if f.remoteMTA != "" {
				// The host answered and could not take the message: its
				// other addresses would say the same.
				continue hosts
			}
		}
	}
	switch {
	case temp != nil:
		// A host we could not reach may take the message later, so a
		// host's refusal of a capability does not bounce it yet.
		return all(temp)
	case perm != nil:
		return all(perm)
	}
	return all(localFailure(true, statusUnableToRoute, "no-address", fmt.Errorf("no usable address for %s", domain)))
}

// host is one server to try: its name (for TLS verification and
// Remote-MTA) and addresses.
type host struct {
	name    string // host name, or the address for a literal relay
	literal bool
	addrs   []netip.Addr
	// dane is what the host's TLSA records require (RFC 7672 section
	// 2.2), found only when DANE is on and its MX and address lookups were
	// validated; tlsa are the records that authenticate it.
	dane dane.Requirement
	tlsa []dane.Record
	// canonical is the end of name's CNAME chain ("" if name is not an
	// alias); tlsaBase is the name whose TLSA records are in tlsa: the
	// canonical name when it has some, else name (RFC 7672 section
	// 2.2.2). It is sent as SNI, and the certificate may match it or name.
	canonical, tlsaBase string
	// sts: an MTA-STS policy in enforce mode names this host, so it gets
	// TLS with a certificate valid for its name (RFC 8461 section 4.2).
	sts bool
	// stsPolicy is the domain's MTA-STS policy (enforce or testing) the
	// host was tried under, for TLS reporting.
	stsPolicy *mtasts.Policy
	// stsFetchFailure is the RFC 8460 result type of the failed fetch of
	// the policy the domain announces ("" when none failed): its sessions
	// are reported as that failure under policy type sts.
	stsFetchFailure string
	// domain is the recipient domain of an MX delivery (the TLSRPT policy
	// domain); "" for a routed relay, whose sessions are not reported.
	domain string
}

// resolve finds the hosts to try for domain under route (RFC 5321 5.1).
func (c *Client) resolve(ctx context.Context, domain string, route Route) ([]host, *failure) {
	if route.RelayAddr.IsValid() {
		return []host{{name: route.RelayAddr.String(), literal: true, addrs: []netip.Addr{route.RelayAddr}}}, nil
	}
	if route.Relay != "" {
		// A configured relay: A/AAAA only, never MX (Courier's
		// esmtproutes). Failing to find it is the admin's to fix, so it
		// is never permanent.
		h, f := c.lookupHost(ctx, route.Relay, route)
		if f != nil {
			if !f.temporary {
				f.temporary, f.status = true, statusUnableToRoute
			}
			return nil, f
		}
		return []host{h}, nil
	}
	sr, _ := c.opts.Resolver.(SecureResolver)
	if !c.opts.DANE || route.Security != SecurityOpportunistic {
		sr = nil
	}
	var mxs []*net.MX
	var err error
	mxSecure := false
	if sr != nil {
		mxs, mxSecure, err = sr.LookupMXSecure(ctx, domain)
	} else {
		mxs, err = c.opts.Resolver.LookupMX(ctx, domain)
	}
	if !mxSecure {
		sr = nil // RFC 7672 section 2.2.1: no DANE for hosts named by an insecure MX RRset
	}
	if err != nil {
		if isNoSuchDomain(err) {
			return nil, localFailure(false, statusNoSuchDomain, "no-such-domain", fmt.Errorf("MX %s: %w", domain, err))
		}
		return nil, localFailure(true, statusDNSTemporary, "dns", fmt.Errorf("MX %s: %w", domain, err))
	}
	mxs, listed := dropSelfMX(mxs, c.opts.Hostname)
	if listed && len(mxs) == 0 {
		return nil, localFailure(false, statusLoop, "loop", fmt.Errorf("mail for %s loops back to myself: %s is its best MX", domain, c.opts.Hostname))
	}
	names, nullMX := orderMX(mxs)
	if nullMX {
		return nil, localFailure(false, statusNullMX, "null-mx", fmt.Errorf("domain %s does not accept mail (null MX, RFC 7505)", domain))
	}
	implicit := len(names) == 0
	if implicit {
		names = []string{domain} // the implicit MX
	}
	if len(names) > c.opts.MaxHosts {
		names = names[:c.opts.MaxHosts]
	}
	var hosts []host
	var lastFail *failure
	for _, n := range names {
		h, secure, f := c.lookupHostSecure(ctx, n, route, sr)
		if f == nil && secure {
			f = c.lookupDANE(ctx, sr, &h, route)
		}
		if f != nil {
			lastFail = f
			continue
		}
		hosts = append(hosts, h)
	}
	if len(hosts) > 0 {
		return c.dropSelfHosts(domain, hosts, mxs, route)
	}
	if implicit && lastFail != nil && !lastFail.temporary {
		// No MX and no address: not a mail domain (RFC 5321 5.1).
		return nil, localFailure(false, statusNoSuchDomain, "no-such-domain", fmt.Errorf("domain %s has no MX and no address: %w", domain, lastFail.err))
	}
	if lastFail != nil && !implicit {
		// MX hosts that do not resolve are a DNS mistake that is usually
		// fixed; retry rather than bounce.
		lastFail.temporary = true
		if !strings.HasPrefix(lastFail.status, "4") {
			lastFail.status = statusUnableToRoute
		}
		return nil, lastFail
	}
	return nil, lastFail
}

// dropSelfHosts is dropSelfMX by address: an MX host (or the implicit MX)
// whose addresses include one this server receives mail on is this
// server under another name, so it and every host of equal or lower
// preference go; when none is left, the mail would loop (5.4.6).
func (c *Client) dropSelfHosts(domain string, hosts []host, mxs []*net.MX, route Route) ([]host, *failure) {
	if len(c.opts.Self) == 0 {
		return hosts, nil
	}
	port := c.port(route, SecurityOpportunistic)
	pref := func(name string) int {
		for _, mx := range mxs {
			if mx != nil && strings.EqualFold(strings.TrimSuffix(mx.Host, "."), strings.TrimSuffix(name, ".")) {
				return int(mx.Pref)
			}
		}
		return 0 // the implicit MX
	}
	selfPref, selfName := -1, ""
	for _, h := range hosts {
		for _, a := range h.addrs {
			if slices.Contains(c.opts.Self, netip.AddrPortFrom(a, uint16(port))) && (selfPref < 0 || pref(h.name) < selfPref) {
				selfPref, selfName = pref(h.name), h.name
			}
		}
	}
	if selfPref < 0 {
		return hosts, nil
	}
	var kept []host
	for _, h := range hosts {
		if pref(h.name) < selfPref {
			kept = append(kept, h)
		}
	}
	if len(kept) == 0 {
		return nil, localFailure(false, statusLoop, "loop", fmt.Errorf("mail for %s loops back to myself: its MX %s is this server's address", domain, selfName))
	}
	return kept, nil
}

// lookupDANE finds what h's TLSA records require (RFC 7672 section 2.2),
// for a host whose addresses were validated. A failed TLSA lookup makes
// the host one not to use (its records may say TLS is required). For an
// MX host that is an alias (validated, as its addresses were), the
// records are looked for at the end of the CNAME chain first, then at
// the name itself (section 2.2.2).
func (c *Client) lookupDANE(ctx context.Context, sr SecureResolver, h *host, route Route) *failure {
	port := c.port(route, SecurityOpportunistic)
	bases := []string{h.name}
	if h.canonical != "" {
		bases = []string{h.canonical, h.name}
	}
	for i, base := range bases {
		rrs, secure, err := sr.LookupTLSA(ctx, port, base)
		if err != nil {
			f := localFailure(true, statusDNSTemporary, "dane-tlsa", fmt.Errorf("TLSA _%d._tcp.%s: %w", port, base, err))
			f.nextHost = true
			return f
		}
		if len(rrs) == 0 && secure && i+1 < len(bases) {
			continue // none at the target, securely: try the MX name
		}
		h.dane, h.tlsa = dane.Classify(rrs, secure)
		h.tlsaBase = base
		return nil
	}
	return nil
}

// applyMTASTS applies the domain's MTA-STS policy (RFC 8461 section 5) to
// an MX delivery with the default security and no DANE host: in enforce
// mode only the hosts the policy names are used, each with TLS and a
// certificate valid for its name; none named is a temporary failure. In
// testing mode the mismatches are logged and delivery goes on as before.
func (c *Client) applyMTASTS(ctx context.Context, domain string, route Route, hosts []host, log *slog.Logger) ([]host, *failure) {
	if c.opts.MTASTS == nil || !route.UsesMX() || route.Security != SecurityOpportunistic {
		return hosts, nil
	}
	for _, h := range hosts {
		if h.dane != dane.Opportunistic {
			return hosts, nil // DANE takes precedence (RFC 8461 section 2)
		}
	}
	p, err := c.opts.MTASTS.Policy(ctx, domain)
	if err == nil && p == nil {
		if kind := c.opts.MTASTS.FetchFailure(domain); kind != "" {
			for i := range hosts {
				hosts[i].stsFetchFailure = kind // reported (RFC 8460 4.3.2.2)
			}
		}
	}
	if err != nil || p == nil || p.Mode == mtasts.ModeNone {
		return hosts, nil // no policy: deliver as without one (section 3.3)
	}
	for i := range hosts {
		hosts[i].stsPolicy = p // reported under it, in either mode (RFC 8460)
	}
	var kept []host
	for _, h := range hosts {
		if p.Match(h.name) {
			h.sts = p.Mode == mtasts.ModeEnforce
			kept = append(kept, h)
		} else {
			log.Info("MX host not in the domain's MTA-STS policy", "host", h.name, "mode", p.Mode, "policy_id", p.ID)
		}
	}
	if p.Mode != mtasts.ModeEnforce {
		return hosts, nil
	}
	if len(kept) == 0 {
		return nil, localFailure(true, statusNoValidMX, "mta-sts",
			fmt.Errorf("no MX host of %s is allowed by its MTA-STS policy (id %s: %s)", domain, p.ID, strings.Join(p.MX, ", ")))
	}
	return kept, nil
}

// lookupHost resolves name to addresses allowed by route, IPv4 first, then
// interleaved with IPv6.
func (c *Client) lookupHost(ctx context.Context, name string, route Route) (host, *failure) {
	h, _, f := c.lookupHostSecure(ctx, name, route, nil)
	return h, f
}

// lookupHostSecure is lookupHost that, given a SecureResolver, also says
// whether the addresses were validated (DNSSEC), for DANE.
func (c *Client) lookupHostSecure(ctx context.Context, name string, route Route, sr SecureResolver) (host, bool, *failure) {
	var ips []net.IPAddr
	var err error
	secure, canonical := false, ""
	if sr != nil {
		ips, canonical, secure, err = sr.LookupIPAddrSecure(ctx, name)
	} else {
		ips, err = c.opts.Resolver.LookupIPAddr(ctx, name)
	}
	if err != nil {
		if isNoSuchDomain(err) {
			return host{}, false, localFailure(false, statusNoSuchDomain, "no-such-domain", fmt.Errorf("host %s: %w", name, err))
		}
		return host{}, false, localFailure(true, statusDNSTemporary, "dns", fmt.Errorf("host %s: %w", name, err))
	}
	var v4, v6 []netip.Addr
	for _, ip := range ips {
		a, ok := netip.AddrFromSlice(ip.IP)
		if !ok {
			continue
		}
		a = a.Unmap()
		if !usableAddr(a) {
			continue
		}
		if a.Is4() {
			if !route.IPv6Only {
				v4 = append(v4, a)
			}
		} else if !route.IPv4Only {
			v6 = append(v6, a)
		}
	}
	var addrs []netip.Addr
	for i := 0; i < len(v4) || i < len(v6); i++ {
		if i < len(v4) {
			addrs = append(addrs, v4[i])
		}
		if i < len(v6) {
			addrs = append(addrs, v6[i])
		}
	}
	if len(addrs) == 0 {
		return host{}, false, localFailure(false, statusNoSuchDomain, "no-address", fmt.Errorf("host %s has no usable address", name))
	}
	return host{name: name, addrs: addrs, canonical: canonical}, secure, nil
}

// usableAddr refuses addresses no mail server can have (0.0.0.0,
// multicast); loopback is allowed, as tests and local relays use it.
func usableAddr(a netip.Addr) bool {
	return a.IsValid() && !a.IsUnspecified() && !a.IsMulticast()
}

// security is the TLS policy for one delivery: the route's, raised by a
// REQUIRETLS message (RFC 8689 section 4.2.1) to a verified certificate.
func (c *Client) security(route Route, env *delivery.Envelope) Security {
	if env.RequireTLS && (route.Security == SecurityOpportunistic || route.Security == SecurityStartTLS) {
		return SecurityRequired
	}
	return route.Security
}

// hostSecurity is the TLS policy for a connection to h: the route's (with
// REQUIRETLS, see security) or, for MX hosts under the default one, what
// DANE or MTA-STS require of h.
func (c *Client) hostSecurity(route Route, env *delivery.Envelope, h host) Security {
	sec := c.security(route, env)
	if route.Security != SecurityOpportunistic {
		return sec
	}
	switch {
	case h.dane == dane.Authenticate:
		return SecurityDANE // authenticated: REQUIRETLS is satisfied too
	case h.dane == dane.EncryptOnly && sec == SecurityOpportunistic:
		return SecurityStartTLS // TLSA records, none usable: encrypt, cannot authenticate
	case h.sts:
		return SecurityRequired
	}
	return sec
}

// tlsConfig returns the configuration for a connection to h.
func (c *Client) tlsConfig(h host, verify bool) *tls.Config {
	var cfg *tls.Config
	if c.opts.TLSConfig != nil {
		cfg = c.opts.TLSConfig.Clone()
	} else {
		cfg = &tls.Config{}
	}
	if cfg.MinVersion == 0 {
		cfg.MinVersion = tls.VersionTLS12
	}
	// The name verified (and sent as SNI unless it is an address, which
	// crypto/tls then checks against the certificate's IP SANs).
	cfg.ServerName = h.name
	// Opportunistic TLS does not verify: an unverified session still
	// protects against passive listeners (RFC 3207 section 4.1, RFC 7435).
	cfg.InsecureSkipVerify = !verify
	if verify && len(h.tlsa) > 0 {
		// DANE: the TLSA records decide, not the CA roots (RFC 7672
		// section 3.1); the reference names are the TLSA base domain,
		// sent as SNI (section 8.1), and the MX host's name (3.2.2).
		cfg.InsecureSkipVerify = true
		names := []string{h.name}
		if h.tlsaBase != "" && !strings.EqualFold(h.tlsaBase, h.name) {
			cfg.ServerName = h.tlsaBase
			names = []string{h.tlsaBase, h.name}
		}
		records := h.tlsa
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			return dane.Verify(cs.PeerCertificates, records, names, time.Now())
		}
	}
	return cfg
}

// session is one SMTP connection.
type session struct {
	c        *Client
	key      poolKey
	raw      net.Conn       // the TCP connection
	limited  *readLimitConn // raw, with a bound on what the peer may send
	conn     net.Conn       // limited, or TLS over it
	sc       *smtp.Client
	host     host
	tls      bool // TLS is active
	verified bool // and the certificate was verified
	stop     func() bool
	broken   bool // not reusable
}

// watch makes cancelling ctx (shutdown, queue deadline) close the
// connection, which unblocks any read or write in progress.
func (s *session) watch(ctx context.Context) {
	raw := s.raw
	s.stop = context.AfterFunc(ctx, func() { raw.Close() })
}

// unwatch releases the watcher of the delivery that used the session.
func (s *session) unwatch() {
	if s.stop != nil {
		s.stop()
		s.stop = nil
	}
}

// attempt runs one SMTP transaction with addr. It returns per-recipient
// results when the host gave definitive answers, or a failure that applies
// to all recipients.
func (c *Client) attempt(ctx context.Context, env *delivery.Envelope, route Route, h host, addr netip.Addr, rcpts []delivery.Recipient, msg delivery.Message, noTLS bool) ([]delivery.Result, []string, *failure) {
	c.stats.attempt()
	remoteMTA := "dns; " + h.name
	sec := c.hostSecurity(route, env, h)
	port := c.port(route, sec)
	key := c.sessionKey(route, h, addr, sec, noTLS)
	s := c.pool.take(ctx, key)
	if s == nil {
		var f *failure
		s, f = c.connect(ctx, key, route, h, env)
		if f != nil {
			if f.remoteMTA == "" && f.reason != "connect" {
				f.remoteMTA = remoteMTA
			}
			return nil, nil, f
		}
	}
	res, reasons, f := s.transaction(ctx, env, rcpts, msg)
	if f != nil && f.remoteMTA == "" {
		f.remoteMTA = remoteMTA
	}
	if f == nil {
		delivered, failed := 0, 0
		for _, r := range res {
			if r.Err == nil {
				delivered++
			} else {
				failed++
			}
		}
		c.log.Info("transaction done", "queue_id", env.ID, "host", h.name, "addr", addr, "port", port,
			"tls", s.tls, "verified", s.verified, "delivered", delivered, "refused", failed)
	}
	if f == nil && !s.broken && ctx.Err() == nil {
		// The transaction ended with a reply: the session is ready for the
		// next message to this host (RFC 5321 section 4.1.4).
		c.pool.put(s)
	} else if s.broken || ctx.Err() != nil {
		s.abort()
	} else {
		s.quit()
	}
	return res, reasons, f
}

// port is where a host of route is reached: the route's own port, else
// the client's (465 for implicit TLS).
func (c *Client) port(route Route, sec Security) int {
	switch {
	case route.Port != 0:
		return route.Port
	case sec == SecuritySMTPS:
		return 465
	case route.LMTP:
		return 24 // RFC 2033 section 5
	}
	return c.opts.Port
}

// sessionKey names a session to addr of h: its address, port, TLS policy
// and login, what a cached session must share to be reused.
func (c *Client) sessionKey(route Route, h host, addr netip.Addr, sec Security, noTLS bool) poolKey {
	key := poolKey{addr: netip.AddrPortFrom(addr, uint16(c.port(route, sec))), host: h.name, security: sec, noTLS: noTLS, lmtp: route.LMTP}
	if cr, ok := c.credentials(route); ok {
		key.user = cr.User
	}
	return key
}

// connect dials addr, reads the greeting, says EHLO, does STARTTLS or
// implicit TLS as the policy asks, and authenticates to a smarthost.
func (c *Client) connect(ctx context.Context, key poolKey, route Route, h host, env *delivery.Envelope) (*session, *failure) {
	sec, noTLS := key.security, key.noTLS
	addr, port := key.addr.Addr(), int(key.addr.Port())
	target := key.addr.String()
	dialer := net.Dialer{Timeout: c.opts.DialTimeout}
	for _, la := range c.opts.LocalAddrs {
		if la.Is4() == addr.Is4() {
			dialer.LocalAddr = &net.TCPAddr{IP: la.AsSlice()}
			break
		}
	}
	conn, err := dialer.DialContext(ctx, "tcp", target)
	if err != nil {
		f := localFailure(true, statusNoAnswer, "connect", fmt.Errorf("connect to %s[%s]:%d: %w", h.name, addr, port, err))
		f.nextHost = true
		return nil, f
	}
	limited := &readLimitConn{Conn: conn}
	limited.reset()
	s := &session{c: c, key: key, raw: conn, limited: limited, conn: limited, host: h}
	s.watch(ctx)
	fail := func(f *failure) (*session, *failure) {
		s.unwatch()
		conn.Close()
		if ctx.Err() != nil {
			f = localFailure(true, statusBadConnection, "interrupted", fmt.Errorf("delivery to %s interrupted: %w", h.name, context.Cause(ctx)))
		}
		return nil, f
	}
	verify := sec == SecurityRequired || sec == SecuritySMTPS || sec == SecurityDANE
	mandatory := sec == SecurityStartTLS || sec == SecurityRequired || sec == SecurityDANE
	if sec == SecuritySMTPS {
		tc := tls.Client(s.conn, c.tlsConfig(h, true))
		hctx, cancel := context.WithTimeout(ctx, c.opts.CommandTimeout)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			return fail(tlsFailure(h, err, true))
		}
		s.conn, s.tls, s.verified = tc, true, true
	}
	s.sc = c.newSMTPClient(s.conn, key.lmtp)
	if err := s.sc.Hello(c.opts.HELOName); err != nil {
		return fail(replyFailure(err, "greeting", true))
	}
	if !s.tls && sec != SecurityNone && !noTLS {
		offered, _ := s.sc.Extension("STARTTLS")
		switch {
		case offered:
			if f := s.startTLS(ctx, mandatory, verify); f != nil {
				c.reportTLS(s, tlsResultType(h, f))
				return fail(f)
			}
		case mandatory:
			f := localFailure(true, statusTLSFailed, "tls-required", fmt.Errorf("%s does not offer STARTTLS and the route requires TLS; not sending in clear", h.name))
			f.nextHost = true
			if env.RequireTLS {
				f.temporary, f.status, f.reason = false, statusNeedsREQUIRETL, "requiretls"
			}
			c.reportTLS(s, tlsrpt.StartTLSNotSupported)
			return fail(f)
		}
		if s.tls {
			kind, reason := c.testingCheck(s)
			c.reportTLSReason(s, kind, reason)
		} else {
			c.reportTLS(s, tlsrpt.StartTLSNotSupported) // offered none, or refused it
		}
	}
	if f := s.authenticate(route); f != nil {
		return fail(f)
	}
	return s, nil
}

func (c *Client) newSMTPClient(conn net.Conn, lmtp bool) *smtp.Client {
	sc := smtp.NewClient(conn)
	if lmtp {
		sc = smtp.NewClientLMTP(conn) // LHLO, and a reply per recipient
	}
	sc.CommandTimeout = c.opts.CommandTimeout
	sc.SubmissionTimeout = c.opts.DataTimeout
	return sc
}

// startTLS upgrades the session (RFC 3207). go-smtp's client has no
// public STARTTLS for a session that already said EHLO with our own name,
// so the command is written on the connection directly (the client has
// nothing buffered: the server waits for our command), and a new go-smtp
// client continues on the TLS connection after a synthetic greeting, then
// says EHLO again as RFC 3207 section 4.2 requires.
func (s *session) startTLS(ctx context.Context, mandatory, verify bool) *failure {
	c := s.c
	if err := s.conn.SetDeadline(time.Now().Add(c.opts.CommandTimeout)); err != nil {
		return localFailure(true, statusBadConnection, "connection", err)
	}
	if _, err := io.WriteString(s.conn, "STARTTLS\r\n"); err != nil {
		f := localFailure(true, statusBadConnection, "connection", fmt.Errorf("STARTTLS to %s: %w", s.host.name, err))
		f.nextHost = true
		return f
	}
	code, text, err := readReplyUnbuffered(s.conn)
	if err != nil {
		f := localFailure(true, statusBadConnection, "connection", fmt.Errorf("STARTTLS to %s: %w", s.host.name, err))
		f.nextHost = true
		return f
	}
	if code != 220 {
		err := fmt.Errorf("%s refused STARTTLS: %d %s", s.host.name, code, text)
		if mandatory {
			f := &failure{temporary: true, status: statusTLSFailed, reason: "tls-required", err: err,
				diagnostic: fmt.Sprintf("smtp; %d %s", code, oneLine(text)), nextHost: true}
			return f
		}
		// Opportunistic: carry on in clear on this connection; the
		// session stays usable after a refused STARTTLS.
		return nil
	}
	s.conn.SetDeadline(time.Time{})
	tc := tls.Client(s.conn, c.tlsConfig(s.host, verify))
	hctx, cancel := context.WithTimeout(ctx, c.opts.CommandTimeout)
	err = tc.HandshakeContext(hctx)
	cancel()
	if err != nil {
		f := tlsFailure(s.host, err, verify)
		if len(s.host.tlsa) > 0 && verify {
			f.reason = "dane-verify"
		}
		return f
	}
	s.conn, s.tls, s.verified = tc, true, verify
	s.sc = c.newSMTPClient(&greetedConn{Conn: tc, pending: []byte("220 " + s.host.name + " TLS ready\r\n")}, s.key.lmtp)
	if err := s.sc.Hello(c.opts.HELOName); err != nil {
		return replyFailure(err, "ehlo", true)
	}
	return nil
}

// readReplyUnbuffered reads one SMTP reply byte by byte, so that nothing
// past the reply is consumed before the TLS handshake (RFC 3207 section
// 4.2 and the STARTTLS injection attacks: bytes sent before the handshake
// must not be read as if protected).
func readReplyUnbuffered(conn net.Conn) (int, string, error) {
	var lines []string
	code := 0
	for n := 0; n < 20; n++ {
		line, err := readLineUnbuffered(conn, 1000)
		if err != nil {
			return 0, "", err
		}
		if len(line) < 3 {
			return 0, "", fmt.Errorf("malformed reply %q", line)
		}
		c, err := strconv.Atoi(line[:3])
		if err != nil || c < 200 || c > 599 || (code != 0 && c != code) {
			return 0, "", fmt.Errorf("malformed reply %q", line)
		}
		code = c
		rest := line[3:]
		if rest == "" || rest[0] == ' ' {
			lines = append(lines, strings.TrimPrefix(rest, " "))
			return code, strings.Join(lines, " "), nil
		}
		if rest[0] != '-' {
			return 0, "", fmt.Errorf("malformed reply %q", line)
		}
		lines = append(lines, rest[1:])
	}
	return 0, "", errors.New("reply has too many lines")
}

func readLineUnbuffered(conn net.Conn, max int) (string, error) {
	var buf []byte
	b := make([]byte, 1)
	for len(buf) <= max {
		if _, err := conn.Read(b); err != nil {
			return "", err
		}
		if b[0] == '\n' {
			return strings.TrimSuffix(string(buf), "\r"), nil
		}
		buf = append(buf, b[0])
	}
	return "", errors.New("reply line too long")
}

// greetedConn replays a greeting to a fresh go-smtp client after STARTTLS,
// where the protocol has none.
type greetedConn struct {
	net.Conn
	pending []byte
}

func (g *greetedConn) Read(p []byte) (int, error) {
	if len(g.pending) > 0 {
		n := copy(p, g.pending)
		g.pending = g.pending[n:]
		return n, nil
	}
	return g.Conn.Read(p)
}

// tlsFailure describes a failed handshake. Temporary: the peer's
// certificate or TLS stack may be fixed, and the next host may be fine.
func tlsFailure(h host, err error, verified bool) *failure {
	what := "TLS handshake"
	if verified {
		what = "TLS handshake (certificate verified)"
	}
	f := localFailure(true, statusTLSFailed, "tls-handshake", fmt.Errorf("%s with %s: %w", what, h.name, err))
	if verified {
		f.reason = "tls-verify"
	}
	f.nextHost = true
	return f
}

// testingCheck does for a host under an MTA-STS policy in testing mode
// what enforce mode would have done before sending (RFC 8461 section 5:
// report, deliver anyway): the host must be in the policy and its
// certificate valid for its name. It returns the RFC 8460 result type of
// the first check that fails and a reason, or "" when all pass or the
// host is not in testing mode.
func (c *Client) testingCheck(s *session) (string, string) {
	h := s.host
	p := h.stsPolicy
	if p == nil || p.Mode != mtasts.ModeTesting || s.verified || c.opts.TLSReport == nil {
		return "", ""
	}
	if !p.Match(h.name) {
		return tlsrpt.ValidationFailure, "mx host not in the MTA-STS policy"
	}
	tc, ok := s.conn.(*tls.Conn)
	if !ok {
		return "", ""
	}
	cs := tc.ConnectionState()
	if len(cs.PeerCertificates) == 0 {
		return tlsrpt.CertNotTrusted, "no certificate"
	}
	opts := x509.VerifyOptions{DNSName: h.name, Intermediates: x509.NewCertPool()}
	if c.opts.TLSConfig != nil {
		opts.Roots = c.opts.TLSConfig.RootCAs
	}
	for _, ic := range cs.PeerCertificates[1:] {
		opts.Intermediates.AddCert(ic)
	}
	if _, err := cs.PeerCertificates[0].Verify(opts); err != nil {
		return tlsResultType(h, &failure{err: err}), ""
	}
	return "", ""
}

// reportTLS counts an MX session's TLS outcome for SMTP TLS Reporting
// (RFC 8460): resultType "" for TLS negotiated as the host's policy asked.
func (c *Client) reportTLS(s *session, resultType string) { c.reportTLSReason(s, resultType, "") }

// reportTLSReason is reportTLS with a failure-reason-code.
func (c *Client) reportTLSReason(s *session, resultType, reason string) {
	h := s.host
	if c.opts.TLSReport == nil || h.domain == "" {
		return
	}
	p := tlsrpt.Policy{Type: tlsrpt.TypeNoPolicy, Domain: h.domain}
	if h.stsFetchFailure != "" && h.dane == dane.Opportunistic && h.stsPolicy == nil {
		// The domain announces a policy that could not be had: the
		// session counts as that failure (section 4.3.2.2).
		p.Type, resultType = tlsrpt.TypeSTS, h.stsFetchFailure
	}
	switch {
	case h.dane != dane.Opportunistic:
		p.Type = tlsrpt.TypeTLSA
		for _, r := range h.tlsa {
			p.Strings = append(p.Strings, r.String())
		}
	case h.stsPolicy != nil:
		sp := h.stsPolicy
		p.Type = tlsrpt.TypeSTS
		p.Strings = []string{"version: STSv1", "mode: " + string(sp.Mode)}
		for _, mx := range sp.MX {
			p.Strings = append(p.Strings, "mx: "+mx)
		}
		p.Strings = append(p.Strings, fmt.Sprintf("max_age: %d", int64(sp.MaxAge/time.Second)))
	}
	if resultType == "" {
		c.opts.TLSReport.Success(p)
		return
	}
	f := tlsrpt.Failure{ResultType: resultType, ReceivingMXHostname: h.name, ReasonCode: reason}
	if a, ok := s.raw.LocalAddr().(*net.TCPAddr); ok {
		f.SendingMTAIP = a.IP.String()
	}
	if a, ok := s.raw.RemoteAddr().(*net.TCPAddr); ok {
		f.ReceivingIP = a.IP.String()
	}
	c.opts.TLSReport.Failure(p, f)
}

// tlsResultType names a failed TLS negotiation as RFC 8460 section 4.3
// does.
func tlsResultType(h host, f *failure) string {
	if f.reason == "dane-verify" {
		return tlsrpt.ValidationFailure // no TLSA record matched the certificate
	}
	var hostErr x509.HostnameError
	var invalid x509.CertificateInvalidError
	var unknown x509.UnknownAuthorityError
	// sts-webpki-invalid is not one of these: it is about the policy
	// host's certificate (section 4.3.2.2), the MX's own certificate
	// failures are the same under MTA-STS as under no policy.
	switch {
	case errors.As(f.err, &hostErr):
		return tlsrpt.CertHostMismatch
	case errors.As(f.err, &invalid) && invalid.Reason == x509.Expired:
		return tlsrpt.CertExpired
	case errors.As(f.err, &unknown):
		return tlsrpt.CertNotTrusted
	}
	return tlsrpt.ValidationFailure
}

// authenticate logs in to a smarthost when credentials are configured for
// the route: by its /auth= name, else by the relay's name. Passwords are
// only sent over TLS.
func (s *session) authenticate(route Route) *failure {
	creds, ok := s.c.credentials(route)
	if !ok {
		return nil
	}
	if !s.tls {
		f := localFailure(true, statusAuthNeedsTLS, "auth", fmt.Errorf("not sending credentials to %s without TLS", s.host.name))
		f.nextHost = true
		return f
	}
	var mech sasl.Client
	switch {
	case s.sc.SupportsAuth("PLAIN"):
		mech = sasl.NewPlainClient("", creds.User, creds.Password)
	case s.sc.SupportsAuth("LOGIN"):
		mech = &loginClient{user: creds.User, password: creds.Password}
	default:
		// A relay we hold a login for that offers no usable mechanism is
		// misconfigured; defer rather than relay unauthenticated and risk
		// a bounce for the admin's mistake.
		f := localFailure(true, statusAuthFailed, "auth", fmt.Errorf("%s offers neither AUTH PLAIN nor AUTH LOGIN", s.host.name))
		f.nextHost = true
		return f
	}
	if err := s.sc.Auth(mech); err != nil {
		// Soft bounce, as Postfix's smtp_sasl_auth_soft_bounce: wrong
		// credentials are the admin's to fix, not the sender's fault.
		f := replyFailure(err, "auth", true)
		f.temporary = true
		if f.status == "" || f.status[0] != '4' {
			f.status = statusAuthFailed
		}
		return f
	}
	return nil
}

// loginClient is the LOGIN mechanism as servers actually run it
// (draft-murchison-sasl-login): no initial response, then the user name and
// the password, one per challenge, whatever the prompts say. go-sasl's
// client sends the user name as an initial response and insists on the
// exact prompt "Password:", which some servers refuse or word differently.
type loginClient struct {
	user, password string
	step           int
}

func (l *loginClient) Start() (string, []byte, error) { return "LOGIN", nil, nil }

func (l *loginClient) Next(challenge []byte) ([]byte, error) {
	l.step++
	switch l.step {
	case 1:
		return []byte(l.user), nil
	case 2:
		return []byte(l.password), nil
	}
	return nil, errors.New("AUTH LOGIN: unexpected third challenge")
}

func (c *Client) credentials(route Route) (Credentials, bool) {
	if len(c.opts.Auth) == 0 {
		return Credentials{}, false
	}
	if route.AuthName != "" {
		cr, ok := c.opts.Auth[strings.ToLower(route.AuthName)]
		return cr, ok
	}
	name := route.Relay
	if route.RelayAddr.IsValid() {
		name = route.RelayAddr.String()
		if cr, ok := c.opts.Auth["["+name+"]"]; ok {
			return cr, true
		}
	}
	if name == "" {
		return Credentials{}, false // MX delivery never authenticates
	}
	cr, ok := c.opts.Auth[strings.ToLower(name)]
	return cr, ok
}

// maxPeerBytes bounds what a peer may send us in one session setup or one
// transaction: replies are short, so a peer sending more is broken or
// hostile (go-smtp bounds a line, not the number of lines of a reply).
const maxPeerBytes = 1 << 20

// readLimitConn fails reads once the peer sent maxPeerBytes since reset.
type readLimitConn struct {
	net.Conn
	remaining atomic.Int64
}

var errPeerTooChatty = errors.New("peer sent more than 1 MiB of replies")

func (r *readLimitConn) reset() { r.remaining.Store(maxPeerBytes) }

func (r *readLimitConn) Read(p []byte) (int, error) {
	left := r.remaining.Load()
	if left <= 0 {
		return 0, errPeerTooChatty
	}
	if int64(len(p)) > left {
		p = p[:left]
	}
	n, err := r.Conn.Read(p)
	r.remaining.Add(-int64(n))
	return n, err
}

// noteError marks the session unusable when err is not an SMTP reply: the
// connection broke or timed out, and waiting for QUIT would only wait.
func (s *session) noteError(err error) {
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		s.broken = true
	}
}

// abort closes the session without QUIT.
func (s *session) abort() {
	s.unwatch()
	s.raw.Close()
}

// quit ends the session politely (QUIT, bounded by a short deadline) and
// closes it.
func (s *session) quit() {
	s.unwatch()
	if s.sc != nil {
		s.sc.CommandTimeout = quitTimeout
		s.sc.Quit()
		s.sc.Close()
	}
	s.raw.Close()
}

// quitTimeout bounds the wait for QUIT's reply: nothing depends on it.
const quitTimeout = 5 * time.Second

// transaction sends MAIL, RCPT for each recipient, DATA and the message.
func (s *session) transaction(ctx context.Context, env *delivery.Envelope, rcpts []delivery.Recipient, msg delivery.Message) ([]delivery.Result, []string, *failure) {
	c, sc := s.c, s.sc
	s.limited.reset()
	interrupted := func(f *failure) *failure {
		if ctx.Err() != nil {
			return localFailure(true, statusBadConnection, "interrupted", fmt.Errorf("delivery to %s interrupted: %w", s.host.name, context.Cause(ctx)))
		}
		return f
	}

	// Addresses: domains become A-labels when the peer does not need to
	// see UTF-8 (RFC 6531 allows that); UTF-8 local parts or a message
	// flagged SMTPUTF8 need the extension.
	utf8Offered, _ := sc.Extension("SMTPUTF8")
	from, fromNeeds := downgradeAddress(env.From)
	addrs := make([]string, len(rcpts))
	needUTF8 := env.SMTPUTF8 || fromNeeds
	for i, r := range rcpts {
		a, needs := downgradeAddress(r.Addr)
		addrs[i] = a
		needUTF8 = needUTF8 || needs
	}
	if needUTF8 {
		if !utf8Offered {
			return nil, nil, &failure{
				status: statusNeedsSMTPUTF8, reason: "smtputf8", nextHost: true,
				err:        fmt.Errorf("%s does not offer SMTPUTF8, which the message needs", s.host.name),
				diagnostic: fmt.Sprintf("x-postern; %s does not offer SMTPUTF8, which the message needs (RFC 6531)", s.host.name),
			}
		}
		from = env.From
		for i, r := range rcpts {
			addrs[i] = r.Addr
		}
	}
	if env.RequireTLS {
		ok, _ := sc.Extension("REQUIRETLS")
		if !s.verified || !ok {
			return nil, nil, &failure{
				status: statusNeedsREQUIRETL, reason: "requiretls", nextHost: true,
				err:        fmt.Errorf("%s does not offer REQUIRETLS over a verified TLS session", s.host.name),
				diagnostic: fmt.Sprintf("x-postern; %s does not offer REQUIRETLS over a verified TLS session (RFC 8689)", s.host.name),
			}
		}
	}
	if peer8bit, _ := sc.Extension("8BITMIME"); !peer8bit || env.Body8Bit {
		// RFC 6152 section 3: 8-bit content goes to a peer without
		// 8BITMIME as quoted-printable; RFC 3030: binary parts go as
		// base64, since this client sends with DATA (downgrade.go).
		converted, changed, err := sevenBit(msg, peer8bit)
		if err != nil {
			return nil, nil, localFailure(true, statusLocalError, "read", fmt.Errorf("reading the message for %s: %w", s.host.name, err))
		}
		if changed {
			c.log.Debug("outbound: message converted for the peer (8-bit or binary parts re-encoded)", "host", s.host.name, "size", msg.Size(), "converted", converted.Size())
			msg = converted
		}
	}
	if max, ok := sc.MaxMessageSize(); ok && max > 0 && msg.Size() > int64(max) {
		// RFC 1870 section 6.1: do not send what the server said it refuses.
		return nil, nil, &failure{
			status: statusTooBig, reason: "size", nextHost: true,
			err:        fmt.Errorf("message of %d bytes exceeds %s's limit of %d", msg.Size(), s.host.name, max),
			diagnostic: fmt.Sprintf("x-postern; message of %d bytes exceeds %s's SIZE limit of %d", msg.Size(), s.host.name, max),
		}
	}

	mopts := &smtp.MailOptions{Size: msg.Size(), UTF8: needUTF8, RequireTLS: env.RequireTLS}
	// BODY=8BITMIME: go-smtp declares it whenever the peer offers
	// 8BITMIME (harmless for 7-bit content, RFC 6152 section 3). A peer
	// without 8BITMIME got the message converted to 7 bits above.
	dsnOffered, _ := sc.Extension("DSN")
	if dsnOffered {
		switch strings.ToUpper(env.Ret) {
		case "FULL":
			mopts.Return = smtp.DSNReturnFull
		case "HDRS":
			mopts.Return = smtp.DSNReturnHeaders
		}
		if isPrintableASCII(env.EnvID) && len(env.EnvID) <= 100 {
			mopts.EnvelopeID = env.EnvID
		}
	}
	if err := sc.Mail(from, mopts); err != nil {
		s.noteError(err)
		f := replyFailure(err, "mail", true)
		if f.smtpCode() >= 500 {
			f.nextHost = false // the sender is refused: every host would say so
		}
		return nil, nil, interrupted(f)
	}

	results := make([]delivery.Result, len(rcpts))
	reasons := make([]string, len(rcpts))
	var accepted []int
	for i, r := range rcpts {
		if err := sc.Rcpt(addrs[i], rcptOptions(r)); err != nil {
			s.noteError(err)
			var se *smtp.SMTPError
			if !errors.As(err, &se) {
				// The connection broke before DATA: nothing was
				// delivered, so another host may take all of it.
				return nil, nil, interrupted(replyFailure(err, "rcpt", true))
			}
			f := replyFailure(err, "rcpt", false)
			results[i] = f.result()
			results[i].RemoteMTA = "dns; " + s.host.name
			reasons[i] = f.reason
			continue
		}
		accepted = append(accepted, i)
	}
	if len(accepted) == 0 {
		// End the transaction so the session can carry another one.
		if err := sc.Reset(); err != nil {
			s.broken = true // the answers stand; the session goes
		}
		return results, reasons, nil
	}

	applyAll := func(f *failure) ([]delivery.Result, []string, *failure) {
		for _, i := range accepted {
			results[i] = f.result()
			results[i].RemoteMTA = "dns; " + s.host.name
			reasons[i] = f.reason
		}
		return results, reasons, nil
	}
	w, err := sc.Data()
	if err != nil {
		s.noteError(err)
		var se *smtp.SMTPError
		if !errors.As(err, &se) {
			return nil, nil, interrupted(replyFailure(err, "data", true))
		}
		return applyAll(replyFailure(err, "data", false))
	}
	s.conn.SetWriteDeadline(time.Now().Add(c.opts.DataTimeout))
	if _, err := io.Copy(w, io.NewSectionReader(msg, 0, msg.Size())); err != nil {
		s.broken = true
		return nil, nil, interrupted(localFailure(true, statusBadConnection, "data", fmt.Errorf("sending message to %s: %w", s.host.name, err)))
	}
	if s.key.lmtp {
		return s.lmtpReplies(w, addrs, accepted, results, reasons, dsnOffered, interrupted)
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		s.noteError(err)
		var se *smtp.SMTPError
		if !errors.As(err, &se) {
			// The end of data went out but its reply did not come back: the
			// message may have been delivered. Do not try another host now
			// (RFC 5321 section 6.1 accepts a duplicate over a loss; the
			// queue's retry is the one place that decides).
			f := localFailure(true, statusBadConnection, "data", fmt.Errorf("no reply to end of data from %s: %w", s.host.name, err))
			return applyAll(interrupted(f))
		}
		return applyAll(replyFailure(err, "data", false))
	}
	status := "2.0.0"
	if code, _ := parseEnhanced(resp.StatusText); code != "" && code[0] == '2' {
		status = code
	}
	for _, i := range accepted {
		results[i] = delivery.Result{Diagnostic: "smtp; 250 " + oneLine(resp.StatusText), Status: status, RemoteMTA: "dns; " + s.host.name, Relayed: !dsnOffered}
		reasons[i] = "delivered"
	}
	return results, reasons, nil
}

// lmtpReplies ends an LMTP transaction: the server answers each accepted
// recipient on its own (RFC 2033 section 4.2), so each gets its own
// result.
func (s *session) lmtpReplies(w *smtp.DataCommand, addrs []string, accepted []int, results []delivery.Result, reasons []string, dsnOffered bool, interrupted func(*failure) *failure) ([]delivery.Result, []string, *failure) {
	resp, err := w.CloseWithLMTPResponse()
	var perRcpt smtp.LMTPDataError
	if err != nil && !errors.As(err, &perRcpt) {
		s.noteError(err)
		s.broken = true
		// No answers, or not all of them: the message may have been
		// delivered to some; the queue's retry decides (as for SMTP).
		f := localFailure(true, statusBadConnection, "data", fmt.Errorf("no reply to end of data from %s: %w", s.host.name, err))
		f = interrupted(f)
		for _, i := range accepted {
			results[i] = f.result()
			results[i].RemoteMTA = "dns; " + s.host.name
			reasons[i] = f.reason
		}
		return results, reasons, nil
	}
	for _, i := range accepted {
		if se := perRcpt[addrs[i]]; se != nil {
			s.noteError(se)
			f := replyFailure(se, "data", false)
			results[i] = f.result()
			results[i].RemoteMTA = "dns; " + s.host.name
			reasons[i] = f.reason
			continue
		}
		r := resp[addrs[i]]
		if r == nil {
			// The connection broke before this recipient's answer: it may
			// have the message; the queue's retry decides.
			f := interrupted(localFailure(true, statusBadConnection, "data", fmt.Errorf("no reply for %s to end of data from %s: %v", addrs[i], s.host.name, err)))
			s.broken = true
			results[i] = f.result()
			results[i].RemoteMTA = "dns; " + s.host.name
			reasons[i] = f.reason
			continue
		}
		text := r.StatusText
		status := "2.0.0"
		if code, _ := parseEnhanced(text); code != "" && code[0] == '2' {
			status = code
		}
		results[i] = delivery.Result{Diagnostic: "smtp; 250 " + oneLine(text), Status: status, RemoteMTA: "dns; " + s.host.name, Relayed: !dsnOffered}
		reasons[i] = "delivered"
	}
	return results, reasons, nil
}

// rcptOptions carries the RFC 3461 parameters through; go-smtp only sends
// them when the peer offers DSN.
func rcptOptions(r delivery.Recipient) *smtp.RcptOptions {
	o := &smtp.RcptOptions{}
	switch {
	case r.Notify&delivery.NotifyNever != 0:
		o.Notify = []smtp.DSNNotify{smtp.DSNNotifyNever}
	case r.Notify != delivery.NotifyDefault:
		if r.Notify&delivery.NotifySuccess != 0 {
			o.Notify = append(o.Notify, smtp.DSNNotifySuccess)
		}
		if r.Notify&delivery.NotifyFailure != 0 {
			o.Notify = append(o.Notify, smtp.DSNNotifyFailure)
		}
		if r.Notify&delivery.NotifyDelay != 0 {
			o.Notify = append(o.Notify, smtp.DSNNotifyDelayed)
		}
	}
	if typ, addr, ok := strings.Cut(r.ORcpt, ";"); ok && addr != "" && len(addr) <= maxAddressLen && !strings.ContainsAny(addr, "\r\n\x00") {
		switch {
		case strings.EqualFold(typ, "rfc822") && isPrintableASCII(addr):
			o.OriginalRecipientType, o.OriginalRecipient = smtp.DSNAddressTypeRFC822, addr
		case strings.EqualFold(typ, "rfc822") || strings.EqualFold(typ, "utf-8"):
			// RFC 6533 section 3: a UTF-8 address travels as utf-8 type.
			o.OriginalRecipientType, o.OriginalRecipient = smtp.DSNAddressTypeUTF8, addr
		}
	}
	return o
}

// downgradeAddress returns addr with its domain in A-labels, and whether
// it still needs SMTPUTF8 (a UTF-8 local part).
func downgradeAddress(addr string) (string, bool) {
	if isASCII(addr) {
		return addr, false
	}
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return addr, true
	}
	local, domain := addr[:at], addr[at+1:]
	if d, err := normalizeDomain(domain); err == nil {
		domain = d
	}
	out := local + "@" + domain
	return out, !isASCII(out)
}

// replyFailure turns an error of the go-smtp client into a failure:
// SMTP replies keep their code (4xx temporary, 5xx permanent), anything
// else is a broken connection (temporary).
func replyFailure(err error, stage string, nextHost bool) *failure {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		status := fmt.Sprintf("%d.%d.%d", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
		if se.EnhancedCode == (smtp.EnhancedCode{}) || se.EnhancedCode == smtp.NoEnhancedCode {
			status = fmt.Sprintf("%d.0.0", se.Code/100)
		}
		diag := fmt.Sprintf("smtp; %d %s %s", se.Code, status, oneLine(se.Message))
		if se.EnhancedCode == (smtp.EnhancedCode{}) || se.EnhancedCode == smtp.NoEnhancedCode {
			diag = fmt.Sprintf("smtp; %d %s", se.Code, oneLine(se.Message))
		}
		return &failure{
			temporary:  se.Code < 500,
			status:     status,
			diagnostic: diag,
			reason:     stage,
			err:        fmt.Errorf("%s: %w", stage, err),
			nextHost:   nextHost,
		}
	}
	f := localFailure(true, statusBadConnection, "connection", fmt.Errorf("%s: %w", stage, err))
	f.nextHost = nextHost
	return f
}

func (f *failure) smtpCode() int {
	var se *smtp.SMTPError
	if errors.As(f.err, &se) {
		return se.Code
	}
	return 0
}

// parseEnhanced returns the RFC 2034 enhanced code at the start of text.
func parseEnhanced(text string) (string, string) {
	code, rest, _ := strings.Cut(text, " ")
	parts := strings.Split(code, ".")
	if len(parts) != 3 {
		return "", text
	}
	for _, p := range parts {
		if _, err := strconv.Atoi(p); err != nil || len(p) > 3 {
			return "", text
		}
	}
	return code, rest
}

// oneLine folds a multi-line reply into one line for a DSN field, and
// drops control characters a remote server may have sent.
func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == '\t' {
			return ' '
		}
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
	if len(s) > 900 {
		s = s[:900]
	}
	return strings.TrimSpace(s)
}

func isPrintableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return s != ""
}
