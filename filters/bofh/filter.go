package bofh

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net/netip"
	"net/textproto"
	"strconv"
	"strings"

	"postern/filters"
	"postern/filters/dns"
	"postern/filters/state"
)

// FilterName is the filter's name in results and logs.
const FilterName = "bofh"

// VarCheck is the variable naming the check that refused ("badfrom",
// "badmx", "freemail", "checkdns", "checkhelo", "spamtrap", "blocked",
// "maxrcpts", "headerlimit", "base64text"); set only on a refusal.
const VarCheck = "BOFH"

// Bounds of the DNS work per check.
const (
	maxMXHosts   = 10
	maxPTRNames  = 5
	maxMIMEDepth = 20
	maxMIMEParts = 500
)

// Options configure the filter.
type Options struct {
	Config Config
	// Resolver answers the DNS checks (BOFHCHECKDNS, badmx, freemail's
	// reverse lookup when the gateway did not verify one, BOFHCHECKHELO).
	Resolver *dns.Resolver
	// Store keeps spam-trap blocks across sessions and gateways; nil keeps
	// them for the session only.
	Store state.Store
	// StoreErrorTempfail: when the store cannot answer whether a client is
	// blocked, tempfail (451 4.3.0) instead of letting the client on.
	StoreErrorTempfail bool
	Logger             *slog.Logger
}

// Filter applies the bofh controls. It implements the connect, HELO, MAIL,
// RCPT and DATA checkers.
type Filter struct {
	cfg   Config
	r     *dns.Resolver
	store state.Store
	opts  Options
	log   *slog.Logger
}

var (
	_ filters.ConnectChecker = (*Filter)(nil)
	_ filters.HeloChecker    = (*Filter)(nil)
	_ filters.MailChecker    = (*Filter)(nil)
	_ filters.RcptChecker    = (*Filter)(nil)
	_ filters.DataChecker    = (*Filter)(nil)
)

// New returns the filter. A resolver is required when a DNS check is on.
func New(opts Options) (*Filter, error) {
	c := opts.Config
	if c.Spamtraps == nil {
		c.Spamtraps = map[string]bool{}
	}
	needDNS := c.CheckDNS || c.CheckHELO > 0 || len(c.Freemail) > 0
	if needDNS && opts.Resolver == nil {
		return nil, errors.New("bofh: filter: DNS checks configured but no resolver")
	}
	f := &Filter{cfg: c, r: opts.Resolver, store: opts.Store, opts: opts, log: opts.Logger}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	return f, nil
}

// Name implements filters.Filter.
func (f *Filter) Name() string { return FilterName }

func (f *Filter) refuse(check string, code int, enhanced, msg, reason string) filters.Result {
	v := filters.Reject
	if code < 500 {
		v = filters.Tempfail
	}
	return filters.Result{
		Filter: FilterName, Verdict: v, Code: code, Enhanced: enhanced, Message: msg,
		Reason: "bofh " + check + ": " + reason,
		Vars:   map[string]string{VarCheck: check},
	}
}

func pass(reason string) filters.Result {
	return filters.Result{Filter: FilterName, Reason: "bofh: " + reason}
}

// relayClient reports whether the client may relay (authenticated, or
// RELAYCLIENT from smtpaccess): Courier exempts such clients from the
// freemail and HELO checks.
func relayClient(s *filters.Session) bool {
	if s.AuthUser != "" {
		return true
	}
	_, ok := s.Access["RELAYCLIENT"]
	return ok
}

// CheckConnect implements filters.ConnectChecker: a client blocked for
// writing to a spam trap is refused at once.
func (f *Filter) CheckConnect(ctx context.Context, s *filters.Session) filters.Result {
	if res, blocked := f.checkBlocked(ctx, s, filters.StageConnect); blocked {
		return res
	}
	return pass("client not blocked")
}

// CheckHelo implements filters.HeloChecker: opt BOFHCHECKHELO.
func (f *Filter) CheckHelo(ctx context.Context, s *filters.Session) filters.Result {
	if res, blocked := f.checkBlocked(ctx, s, filters.StageHelo); blocked {
		return res
	}
	level := f.cfg.CheckHELO
	// Courier lets smtpaccess override the global default per client.
	if v, ok := s.Access["BOFHCHECKHELO"]; ok {
		if n, err := strconv.Atoi(v); err == nil && n >= 0 && n <= 2 {
			level = n
		}
	}
	if level == 0 || relayClient(s) {
		return pass("HELO not checked")
	}
	return f.checkHELO(ctx, s, level)
}

// CheckMail implements filters.MailChecker: badfrom, freemail,
// BOFHCHECKDNS and badmx, in Courier's order.
func (f *Filter) CheckMail(ctx context.Context, s *filters.Session) filters.Result {
	if res, blocked := f.checkBlocked(ctx, s, filters.StageMail); blocked {
		return res
	}
	sender := s.From
	if sender == "" {
		return pass("null sender")
	}
	for _, p := range f.cfg.BadFrom {
		if p.Match(sender) {
			return f.refuse("badfrom", 550, "5.7.1", "Sender rejected: "+sender, "matches badfrom "+p.String())
		}
	}
	_, domain, ok := cutAt(sender)
	domain = normalizeDomain(domain)
	if !ok || domain == "" {
		return pass("sender without a domain")
	}
	if !relayClient(s) {
		if res, refused := f.checkFreemail(ctx, s, sender, domain); refused {
			return res
		}
	}
	if !f.cfg.CheckDNS {
		return pass("sender accepted")
	}
	return f.checkDNS(ctx, domain)
}

// CheckRcpt implements filters.RcptChecker: spamtrap and maxrcpts.
func (f *Filter) CheckRcpt(ctx context.Context, s *filters.Session, rcpt string) filters.Result {
	if res, blocked := f.checkBlocked(ctx, s, filters.StageRcpt); blocked {
		return res
	}
	if f.isSpamtrap(rcpt) {
		return f.trapped(ctx, s, rcpt)
	}
	if n := f.cfg.MaxRcpts; n > 0 && len(s.Rcpts) >= n {
		// RFC 5321 section 4.5.3.1.10: 452 for too many recipients, so
		// the client sends the rest in another transaction; "hard" is
		// Courier's permanent refusal.
		if f.cfg.MaxRcptsHard {
			return f.refuse("maxrcpts", 550, "5.5.3", fmt.Sprintf("Too many recipients (at most %d per message)", n),
				fmt.Sprintf("recipient %d over the limit of %d", len(s.Rcpts)+1, n))
		}
		return f.refuse("maxrcpts", 452, "4.5.3", fmt.Sprintf("Too many recipients (at most %d per message), send the rest later", n),
			fmt.Sprintf("recipient %d over the limit of %d", len(s.Rcpts)+1, n))
	}
	return pass("recipient accepted")
}

// CheckData implements filters.DataChecker: a client trapped during the
// transaction loses the whole message (Courier refuses every message with
// a spam trap among its recipients), then the header limit and the
// base64-text rule.
func (f *Filter) CheckData(ctx context.Context, s *filters.Session, msg filters.Message) filters.Result {
	if res, blocked := f.checkBlocked(ctx, s, filters.StageData); blocked {
		return res
	}
	size, err := headerSize(msg, f.cfg.HeaderLimit)
	if err != nil {
		return f.refuse("headerlimit", 451, "4.3.0", "Could not read the message, try again later", err.Error())
	}
	if size > f.cfg.HeaderLimit {
		return f.refuse("headerlimit", 552, "5.3.4",
			fmt.Sprintf("Message header larger than %d bytes", f.cfg.HeaderLimit),
			fmt.Sprintf("header over %d bytes", f.cfg.HeaderLimit))
	}
	if f.cfg.NoBase64Text {
		part, found := findBase64Text(msg)
		if found {
			return f.refuse("base64text", 550, "5.6.0", "Base64-encoded text is not accepted here; send it as text",
				"base64-encoded "+part+" part")
		}
	}
	return pass("message accepted")
}

// --- spam traps and blocks ----------------------------------------------

func (f *Filter) isSpamtrap(rcpt string) bool {
	local, dom, ok := cutAt(rcpt)
	if !ok {
		return false
	}
	return f.cfg.Spamtraps[strings.ToLower(local)+"@"+normalizeDomain(dom)]
}

// blockKey is the state key of a blocked client: the address for IPv4, the
// /64 for IPv6 (one host usually has a whole /64 to hop around in).
func blockKey(ip netip.Addr) string {
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return "bofh:trap:" + p.String()
	}
	return "bofh:trap:" + ip.String()
}

func (f *Filter) trapped(ctx context.Context, s *filters.Session, rcpt string) filters.Result {
	res := f.refuse("spamtrap", 550, "5.7.1", "Delivery not authorized, message refused",
		"recipient "+rcpt+" is a spam trap; client "+s.ClientIP.String()+" blocked")
	if f.store != nil && f.cfg.SpamtrapBlock > 0 && s.ClientIP.IsValid() {
		if err := f.store.Set(ctx, blockKey(s.ClientIP), []byte(rcpt), f.cfg.SpamtrapBlock); err != nil {
			// The session still refuses the client; only the block for
			// later sessions is lost.
			f.log.Error("bofh: cannot record spam-trap block", "client", s.ClientIP, "err", err)
			res.Reason += " (for this session only: " + err.Error() + ")"
		} else {
			res.Reason += " for " + f.cfg.SpamtrapBlock.String()
		}
	}
	return res
}

// checkBlocked refuses a client that hit a spam trap earlier in this session
// or, with a store, in an earlier one.
func (f *Filter) checkBlocked(ctx context.Context, s *filters.Session, stage filters.Stage) (filters.Result, bool) {
	code := 550
	if stage == filters.StageConnect {
		code = 554 // RFC 5321 section 3.1
	}
	for _, r := range s.Results {
		if r.Filter == FilterName && (r.Vars[VarCheck] == "spamtrap" || r.Vars[VarCheck] == "blocked") {
			return f.refuse("blocked", code, "5.7.1", "Delivery not authorized, message refused",
				"client wrote to a spam trap in this session"), true
		}
	}
	if f.store == nil || !s.ClientIP.IsValid() {
		return filters.Result{}, false
	}
	trap, found, err := f.store.Get(ctx, blockKey(s.ClientIP))
	if err != nil {
		f.log.Error("bofh: cannot read spam-trap blocks", "client", s.ClientIP, "err", err)
		if f.opts.StoreErrorTempfail {
			return f.refuse("blocked", 451, "4.3.0", "Temporary local problem, try again later",
				"state store unavailable: "+err.Error()), true
		}
		return filters.Result{}, false
	}
	if found {
		return f.refuse("blocked", code, "5.7.1", "Delivery not authorized, message refused",
			"client blocked after writing to spam trap "+sanitize(string(trap))), true
	}
	return filters.Result{}, false
}

func sanitize(s string) string {
	if len(s) > 256 {
		s = s[:256]
	}
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return -1
		}
		return r
	}, s)
}

// --- DNS checks --------------------------------------------------------

// checkFreemail: a sender in a freemail domain must come from a relay whose
// verified host name is in that domain (or one of the others listed).
func (f *Filter) checkFreemail(ctx context.Context, s *filters.Session, sender, domain string) (filters.Result, bool) {
	var rule *Freemail
	for i := range f.cfg.Freemail {
		if f.cfg.Freemail[i].Domain == domain {
			rule = &f.cfg.Freemail[i]
			break
		}
	}
	if rule == nil {
		return filters.Result{}, false
	}
	names := []string{}
	if s.ClientName != "" {
		names = append(names, s.ClientName)
	} else {
		verified, temporary := f.verifiedNames(ctx, s.ClientIP)
		if temporary {
			// Courier's "softdnserr": a name we cannot check now is
			// given the benefit of the doubt.
			return filters.Result{}, false
		}
		names = verified
	}
	allowed := append([]string{rule.Domain}, rule.Relays...)
	for _, n := range names {
		n = normalizeDomain(n)
		for _, d := range allowed {
			if n == d || strings.HasSuffix(n, "."+d) {
				return filters.Result{}, false
			}
		}
	}
	return f.refuse("freemail", 550, "5.7.1",
		fmt.Sprintf("Sender rejected: %s can be accepted only from %s's mail relays", sender, rule.Domain),
		fmt.Sprintf("client %s (%s) is not a %s relay", s.ClientIP, orNone(strings.Join(names, ",")), strings.Join(allowed, "/"))), true
}

func orNone(s string) string {
	if s == "" {
		return "no verified name"
	}
	return s
}

// verifiedNames is forward-confirmed reverse DNS: the PTR names of ip whose
// addresses include ip. temporary is true when a lookup failed temporarily
// and no name was confirmed.
func (f *Filter) verifiedNames(ctx context.Context, ip netip.Addr) (names []string, temporary bool) {
	if !ip.IsValid() {
		return nil, false
	}
	ip = ip.Unmap()
	ptrs, err := f.r.LookupPTR(ctx, ip)
	if err != nil {
		return nil, dns.IsTemporary(err)
	}
	if len(ptrs) > maxPTRNames {
		ptrs = ptrs[:maxPTRNames]
	}
	for _, name := range ptrs {
		addrs, err := f.r.LookupIP(ctx, name)
		if err != nil && dns.IsTemporary(err) {
			temporary = true
		}
		for _, a := range addrs {
			if a.Unmap() == ip {
				names = append(names, name)
				break
			}
		}
	}
	return names, temporary && len(names) == 0
}

// checkDNS is Courier's BOFHCHECKDNS with badmx: the sender's domain must
// exist with an MX or address (RFC 5321 section 5.1's implicit MX), its mail
// servers must not be blocked, and an MX must name a host, not an address
// (RFC 1035 section 3.3.9).
func (f *Filter) checkDNS(ctx context.Context, domain string) filters.Result {
	mxs, err := f.r.LookupMX(ctx, domain)
	var hosts []string
	switch {
	case err == nil:
		for _, mx := range mxs {
			if mx.Host == "" || mx.Host == "." {
				// RFC 7505 section 4.2: a null MX domain sends no mail.
				return f.refuse("checkdns", 550, "5.7.27", "Sender address has null MX: "+domain,
					domain+" publishes a null MX (RFC 7505)")
			}
			if _, err := netip.ParseAddr(mx.Host); err == nil {
				return f.refuse("checkdns", 550, "5.1.8",
					"MX records for "+domain+" violate section 3.3.9 of RFC 1035", "MX "+mx.Host+" is an address")
			}
			hosts = append(hosts, mx.Host)
		}
	case dns.IsNotFound(err):
		// No MX: the domain itself is the mail server, if it has an address.
		addrs, aerr := f.r.LookupIP(ctx, domain)
		switch {
		case aerr == nil:
			if res, bad := f.badMX(domain, domain, addrs); bad {
				return res
			}
			return pass("sender domain " + domain + " has an address")
		case dns.IsNotFound(aerr):
			return f.refuse("checkdns", 550, "5.1.8", "Domain does not exist: "+domain,
				domain+" has neither MX nor address records")
		case dns.IsTemporary(aerr):
			return f.refuse("checkdns", 451, "4.4.3", "DNS lookup failure: "+domain+". Try again later",
				aerr.Error())
		default:
			return f.refuse("checkdns", 550, "5.1.8", "Invalid sender domain: "+domain, aerr.Error())
		}
	case dns.IsTemporary(err):
		return f.refuse("checkdns", 451, "4.4.3", "DNS lookup failure: "+domain+". Try again later", err.Error())
	default:
		return f.refuse("checkdns", 550, "5.1.8", "Invalid sender domain: "+domain, err.Error())
	}
	if len(f.cfg.BadMX) == 0 {
		return pass("sender domain " + domain + " has MX")
	}
	if len(hosts) > maxMXHosts {
		hosts = hosts[:maxMXHosts]
	}
	for _, h := range hosts {
		// Best effort, as in Courier: an MX host that cannot be resolved
		// now hides nothing we could see.
		addrs, err := f.r.LookupIP(ctx, h)
		if err != nil {
			continue
		}
		if res, bad := f.badMX(domain, h, addrs); bad {
			return res
		}
	}
	return pass("sender domain " + domain + " has MX")
}

func (f *Filter) badMX(domain, host string, addrs []netip.Addr) (filters.Result, bool) {
	for _, a := range addrs {
		a = a.Unmap()
		for _, p := range f.cfg.BadMX {
			if p.Contains(a) {
				return f.refuse("badmx", 550, "5.7.1", "Mail server at "+a.String()+" is blocked",
					fmt.Sprintf("mail server %s (%s) of %s is in badmx %s", host, a, domain, p)), true
			}
		}
	}
	return filters.Result{}, false
}

// checkHELO is Courier's BOFHCHECKHELO: the HELO name (unless it is the
// client's own address) must have the client's address among its own
// addresses or its mail servers' addresses.
func (f *Filter) checkHELO(ctx context.Context, s *filters.Session, level int) filters.Result {
	helo := strings.TrimSpace(s.HELO)
	client := s.ClientIP.Unmap()
	if lit := strings.Trim(strings.TrimPrefix(strings.TrimPrefix(helo, "["), "IPv6:"), "[]"); lit != "" {
		if a, err := netip.ParseAddr(lit); err == nil && a.Unmap() == client {
			return pass("HELO is the client's address")
		}
	}
	hardCode, hardEnh := 550, "5.7.1"
	if level == 2 {
		hardCode, hardEnh = 451, "4.7.1"
	}
	name := normalizeDomain(helo)
	if name == "" {
		return f.refuse("checkhelo", hardCode, hardEnh, "HELO "+sanitize(helo)+" does not match "+client.String(),
			"HELO is neither a host name nor the client's address")
	}
	temporary := false
	notFound := 0
	check := func(host string) bool {
		addrs, err := f.r.LookupIP(ctx, host)
		if err != nil {
			if dns.IsTemporary(err) {
				temporary = true
			}
			if dns.IsNotFound(err) && host == name {
				notFound++
			}
			return false
		}
		for _, a := range addrs {
			if a.Unmap() == client {
				return true
			}
		}
		return false
	}
	if check(name) {
		return pass("HELO " + name + " resolves to the client")
	}
	mxs, err := f.r.LookupMX(ctx, name)
	switch {
	case err == nil:
		if len(mxs) > maxMXHosts {
			mxs = mxs[:maxMXHosts]
		}
		for _, mx := range mxs {
			if mx.Host != "" && check(mx.Host) {
				return pass("HELO " + name + " has the client among its mail servers")
			}
		}
	case dns.IsNotFound(err):
		notFound++
	case dns.IsTemporary(err):
		temporary = true
	}
	switch {
	case temporary:
		return f.refuse("checkhelo", 451, "4.4.3", "DNS lookup on HELO "+name+" failed. Try again later",
			"temporary DNS failure")
	case notFound == 2:
		return f.refuse("checkhelo", hardCode, hardEnh, "HELO "+name+" does not exist", "no address or MX records")
	}
	return f.refuse("checkhelo", hardCode, hardEnh, "HELO "+name+" does not match "+client.String(),
		"no address of "+name+" or its mail servers is "+client.String())
}

// --- message checks ----------------------------------------------------

// headerSize returns the size of the header section (up to and including
// the empty line), reading at most limit+1 bytes of it.
func headerSize(msg filters.Message, limit int) (int, error) {
	br := bufio.NewReader(io.NewSectionReader(msg, 0, msg.Size()))
	n := 0
	for n <= limit {
		line, err := br.ReadSlice('\n')
		n += len(line)
		if len(line) > 0 && (string(line) == "\r\n" || string(line) == "\n") {
			return n, nil
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("bofh: read header: %w", err)
		}
	}
	return n, nil
}

// findBase64Text walks the MIME structure (RFC 2045, 2046) looking for a
// text/plain or text/html leaf in base64, which opt BOFHNOBASE64TEXT
// refuses (ordinary mail programs send text as 7bit, 8bit or
// quoted-printable; base64 text is a spam tool's way past content filters).
func findBase64Text(msg filters.Message) (string, bool) {
	tp := textproto.NewReader(bufio.NewReader(io.NewSectionReader(msg, 0, msg.Size())))
	hdr, err := tp.ReadMIMEHeader()
	if err != nil && len(hdr) == 0 {
		return "", false
	}
	parts := 0
	return walkMIME(textproto.MIMEHeader(hdr), tp.R, 0, &parts)
}

func walkMIME(h textproto.MIMEHeader, body io.Reader, depth int, parts *int) (string, bool) {
	*parts++
	if depth > maxMIMEDepth || *parts > maxMIMEParts {
		return "", false
	}
	ctype := h.Get("Content-Type")
	mt, params, err := mime.ParseMediaType(ctype)
	if ctype == "" || err != nil {
		mt = "text/plain" // RFC 2045 section 5.2
	}
	if strings.HasPrefix(mt, "multipart/") && params["boundary"] != "" {
		mr := multipart.NewReader(body, params["boundary"])
		for {
			p, err := mr.NextRawPart()
			if err != nil {
				return "", false
			}
			if what, found := walkMIME(p.Header, p, depth+1, parts); found {
				return what, true
			}
		}
	}
	if (mt == "text/plain" || mt == "text/html") &&
		strings.EqualFold(strings.TrimSpace(h.Get("Content-Transfer-Encoding")), "base64") {
		return mt, true
	}
	return "", false
}
