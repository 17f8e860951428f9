// Package bofh keeps Courier's "bofh" junk-mail controls working for admins
// who move from Courier to Postern: the same file, the same directives, the
// same effect at the same point of the SMTP dialogue.
//
// The bofh setting (courier(8), "bofh") lists one directive a line:
//
//	badfrom user@domain | @domain | @.domain | user@.domain
//	badmx IP
//	freemail domain [domain2 ...]
//	spamtrap user@domain
//	maxrcpts N [hard]
//	opt NAME=VALUE
//
// badfrom refuses return addresses; badmx refuses senders whose domain's
// mail servers include a blocked address (with opt BOFHCHECKDNS, on by
// default, which also refuses return addresses in domains that do not exist);
// freemail accepts a sender claiming a domain only from mail relays whose
// verified host name is in that domain or the others listed; spamtrap
// refuses mail to a trap address and (Postern's addition) blocks the client
// for a while, in the shared state store, so every gateway refuses it;
// maxrcpts bounds the recipients of one message; opt BOFHCHECKHELO checks
// that the HELO name resolves to the client; opt BOFHHEADERLIMIT bounds the
// header; opt BOFHNOBASE64TEXT refuses base64-encoded text parts.
//
// The SPF options of the file (BOFHSPF*) belong to the spf filter in Postern
// and the backscatter option has nothing to do (Postern never accepts and
// bounces later): the parser accepts them and reports each as a Notice with
// its FILE:LINE, so the loader can log what to configure instead. Anything
// else is an error at FILE:LINE.
package bofh

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"postern/policy"
)

// SettingName is the configuration setting the directives are read from.
const SettingName = "bofh"

// Defaults, as Courier has them where Courier has one.
const (
	DefaultHeaderLimit   = 100000 // opt BOFHHEADERLIMIT
	MinHeaderLimit       = 1000
	DefaultMaxRcpts      = 100
	DefaultSpamtrapBlock = time.Hour // Postern's "spamtrapblock"
	MaxSpamtrapBlock     = 30 * 24 * time.Hour
)

// Config is the parsed bofh setting.
type Config struct {
	BadFrom   []AddressPattern
	BadMX     []netip.Prefix // single addresses are /32 or /128
	Freemail  []Freemail
	Spamtraps map[string]bool // lower-case addresses

	// MaxRcpts is the number of recipients accepted per message (0: no
	// limit from this file); MaxRcptsHard refuses the rest with 5xx
	// instead of 4xx.
	MaxRcpts     int
	MaxRcptsHard bool

	CheckDNS     bool // opt BOFHCHECKDNS (default on, as in Courier's esmtpd)
	CheckHELO    int  // opt BOFHCHECKHELO: 0 off, 1 permanent error, 2 temporary error
	HeaderLimit  int  // opt BOFHHEADERLIMIT
	NoBase64Text bool // opt BOFHNOBASE64TEXT

	// SpamtrapBlock is how long a client that wrote to a spam trap is
	// refused (Postern's "spamtrapblock DURATION"; 0 = only the session).
	SpamtrapBlock time.Duration

	// Notices are directives that were understood but are not acted on by
	// this filter, with what to do instead.
	Notices []Notice
}

// Notice is a directive this filter accepts without acting on it.
type Notice struct {
	Origin string // FILE:LINE
	Text   string // what was written and what to configure instead
}

func (n Notice) String() string { return n.Origin + ": " + n.Text }

// DefaultConfig is the configuration of an empty bofh file.
func DefaultConfig() Config {
	return Config{
		Spamtraps:     map[string]bool{},
		CheckDNS:      true,
		HeaderLimit:   DefaultHeaderLimit,
		SpamtrapBlock: DefaultSpamtrapBlock,
	}
}

// AddressPattern is one badfrom entry.
type AddressPattern struct {
	Local      string // "" matches any local part
	Domain     string // lower case
	Subdomains bool   // "@.domain": any subdomain of Domain (not Domain itself)
}

// Match reports whether address (local@domain) matches the pattern. Local
// parts compare case-insensitively, as Courier does.
func (p AddressPattern) Match(address string) bool {
	local, domain, ok := cutAt(address)
	if !ok {
		return false
	}
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	if p.Local != "" && !strings.EqualFold(p.Local, local) {
		return false
	}
	if p.Subdomains {
		return strings.HasSuffix(domain, "."+p.Domain)
	}
	return domain == p.Domain
}

func (p AddressPattern) String() string {
	if p.Subdomains {
		return p.Local + "@." + p.Domain
	}
	return p.Local + "@" + p.Domain
}

// Freemail is one freemail line: mail from Domain is accepted only from
// relays whose host name is in Domain or one of Relays.
type Freemail struct {
	Domain string
	Relays []string // the other domains the relays may be in
}

// cutAt splits an address at its last '@'.
func cutAt(addr string) (local, domain string, ok bool) {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return "", "", false
	}
	return addr[:i], addr[i+1:], true
}

// Load reads the bofh setting; a missing setting is the default
// configuration.
func Load(dir string) (Config, error) {
	lines, err := policy.ReadSetting(dir, SettingName)
	if errors.Is(err, policy.ErrNotSet) {
		return DefaultConfig(), nil
	}
	if err != nil {
		return Config{}, err
	}
	return Parse(lines)
}

// Bounds on the file.
const (
	maxEntries = 100000
	maxArgs    = 64
)

// Parse builds a Config from the meaningful lines of the setting. Errors
// are *policy.Error values with FILE:LINE.
func Parse(lines []policy.Line) (Config, error) {
	cfg := DefaultConfig()
	entries := 0
	for _, l := range lines {
		fields := strings.Fields(l.Text)
		if len(fields) == 0 {
			continue
		}
		if len(fields) > maxArgs {
			return Config{}, l.Errorf("more than %d words", maxArgs)
		}
		entries++
		if entries > maxEntries {
			return Config{}, l.Errorf("more than %d directives", maxEntries)
		}
		if err := parseDirective(&cfg, l, strings.ToLower(fields[0]), fields[1:]); err != nil {
			return Config{}, err
		}
	}
	return cfg, nil
}

func parseDirective(cfg *Config, l policy.Line, directive string, args []string) error {
	origin := fmt.Sprintf("%s:%d", l.File, l.Num)
	switch directive {
	case "badfrom":
		if len(args) == 0 {
			return l.Errorf("badfrom: want an address, @domain or @.domain")
		}
		for _, a := range args {
			p, err := parsePattern(a)
			if err != nil {
				return l.Errorf("badfrom %s: %v", a, err)
			}
			cfg.BadFrom = append(cfg.BadFrom, p)
		}
	case "badmx":
		if len(args) == 0 {
			return l.Errorf("badmx: want an IP address")
		}
		for _, a := range args {
			p, err := parseIPOrPrefix(a)
			if err != nil {
				return l.Errorf("badmx %s: want an IP address (or a prefix)", a)
			}
			cfg.BadMX = append(cfg.BadMX, p)
		}
	case "freemail":
		if len(args) == 0 {
			return l.Errorf("freemail: want one or more domains")
		}
		var doms []string
		for _, a := range args {
			d := normalizeDomain(a)
			if d == "" {
				return l.Errorf("freemail: %q is not a domain", a)
			}
			doms = append(doms, d)
		}
		cfg.Freemail = append(cfg.Freemail, Freemail{Domain: doms[0], Relays: doms[1:]})
	case "spamtrap":
		if len(args) == 0 {
			return l.Errorf("spamtrap: want an address")
		}
		for _, a := range args {
			local, dom, ok := cutAt(a)
			if !ok || local == "" || normalizeDomain(dom) == "" {
				return l.Errorf("spamtrap %s: want user@domain", a)
			}
			cfg.Spamtraps[strings.ToLower(local)+"@"+normalizeDomain(dom)] = true
		}
	case "maxrcpts":
		if len(args) < 1 || len(args) > 2 || len(args) == 2 && !strings.EqualFold(args[1], "hard") {
			return l.Errorf("maxrcpts: want N [hard]")
		}
		n, err := strconv.Atoi(args[0])
		if err != nil || n < 1 || n > 100000 {
			return l.Errorf("maxrcpts %q: want a number from 1 to 100000", args[0])
		}
		cfg.MaxRcpts, cfg.MaxRcptsHard = n, len(args) == 2
	case "spamtrapblock":
		if len(args) != 1 {
			return l.Errorf("spamtrapblock: want a duration, e.g. 1h")
		}
		d, err := time.ParseDuration(args[0])
		if err != nil || d < 0 || d > MaxSpamtrapBlock {
			return l.Errorf("spamtrapblock %q: want a duration from 0 to 720h", args[0])
		}
		cfg.SpamtrapBlock = d
	case "opt":
		if len(args) != 1 {
			return l.Errorf("opt: want NAME=VALUE")
		}
		return parseOpt(cfg, l, origin, args[0])
	default:
		return l.Errorf("unknown directive %q (want badfrom, badmx, freemail, spamtrap, maxrcpts, spamtrapblock or opt)", directive)
	}
	return nil
}

func parseOpt(cfg *Config, l policy.Line, origin, opt string) error {
	name, val, hasVal := strings.Cut(opt, "=")
	name = strings.ToUpper(name)
	flag := func() (bool, error) {
		if !hasVal {
			return true, nil
		}
		n, err := strconv.Atoi(val)
		if err != nil || n < 0 {
			return false, l.Errorf("opt %s=%s: want 0 or 1", name, val)
		}
		return n != 0, nil
	}
	note := func(text string) {
		cfg.Notices = append(cfg.Notices, Notice{Origin: origin, Text: "opt " + opt + ": " + text})
	}
	switch name {
	case "BOFHCHECKDNS":
		b, err := flag()
		if err != nil {
			return err
		}
		cfg.CheckDNS = b
	case "BOFHCHECKHELO":
		n, err := strconv.Atoi(val)
		if !hasVal {
			n, err = 1, nil
		}
		if err != nil || n < 0 || n > 2 {
			return l.Errorf("opt BOFHCHECKHELO=%s: want 0, 1 or 2", val)
		}
		cfg.CheckHELO = n
	case "BOFHHEADERLIMIT":
		n, err := strconv.Atoi(val)
		if err != nil || n <= 0 || n > 64<<20 {
			return l.Errorf("opt BOFHHEADERLIMIT=%s: want a number of bytes", val)
		}
		cfg.HeaderLimit = max(n, MinHeaderLimit) // Courier's minimum
	case "BOFHNOBASE64TEXT":
		b, err := flag()
		if err != nil {
			return err
		}
		cfg.NoBase64Text = b
	case "BOFHSPFHELO", "BOFHSPFMAILFROM", "BOFHSPFFROM", "BOFHSPFHARDERROR", "BOFHSPFTRUSTME", "BOFHSPFNOVERBOSE":
		note("not applied here: SPF is the spf filter's; configure it in the spf setting (see docs/bofh.md)")
	case "BOFHSUPPRESSBACKSCATTER":
		note("nothing to do: Postern refuses during the SMTP dialogue and never accepts mail it would bounce later")
	case "BOFHNOEXPN", "BOFHNOVRFY":
		note("nothing to do: the gateway never discloses addresses (VRFY answers 252, EXPN 502)")
	case "BOFHACCEPT":
		note("not supported: no counterpart in Postern")
	default:
		return l.Errorf("unknown option %q", name)
	}
	return nil
}

func parsePattern(s string) (AddressPattern, error) {
	local, dom, ok := cutAt(s)
	if !ok {
		return AddressPattern{}, errors.New("want user@domain, @domain, @.domain or user@.domain")
	}
	p := AddressPattern{Local: local}
	if strings.HasPrefix(dom, ".") {
		p.Subdomains = true
		dom = dom[1:]
	}
	if p.Domain = normalizeDomain(dom); p.Domain == "" {
		return AddressPattern{}, fmt.Errorf("%q is not a domain", dom)
	}
	return p, nil
}

func parseIPOrPrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// normalizeDomain lower-cases domain and strips a trailing dot; it returns
// "" for something that is not a host name.
func normalizeDomain(domain string) string {
	d := strings.ToLower(strings.TrimSuffix(domain, "."))
	if d == "" || len(d) > 253 {
		return ""
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 {
			return ""
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c >= 0x80) {
				return ""
			}
		}
	}
	return d
}
