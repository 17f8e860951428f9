package dnsbl

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"postern/filters"
	"postern/policy"
)

// SettingName is the configuration setting (file or directory) the zones
// are read from.
const SettingName = "dnsbl"

// Bounds on the configuration.
const (
	MaxZones      = 64  // zones in one configuration
	MaxCodeRanges = 64  // items in one codes= list
	maxMessageLen = 400 // a reply line must stay under 512 octets (RFC 5321 section 4.5.3.1.5)
)

// Zone is one configured list.
type Zone struct {
	Name     string    // the DNS zone, lower case, without trailing dot
	Type     ListType  // block or allow
	Subjects []Subject // what is looked up; default: the client IP
	Weight   float64   // added to the score on a hit
	Action   Action    // what a hit does besides scoring
	Codes    Codes     // which answers count as a hit
	Var      string    // variable set for the rules on a hit ("" for none); Courier's VAR
	Message  string    // reply template (see Render); "" for the default
	Literal  bool      // Message is taken as is (Courier's msg), without % substitutions
	FetchTXT bool      // look up the TXT reason on a hit
	TXTList  bool      // the list publishes TXT records only (Courier's "*" message)
	Origin   string    // FILE:LINE the zone came from, for messages
}

// Config is the parsed dnsbl setting.
type Config struct {
	Zones []*Zone
	// Threshold: reject when the summed weights of the block hits reach it;
	// 0 turns the threshold off (only zones with action=reject reject).
	Threshold float64
	// Timeout bounds all the lookups of one stage together (one deadline).
	Timeout time.Duration
	// DNSErrorTempfail: a zone that cannot answer (timeout, SERVFAIL) makes
	// the verdict tempfail (451 4.4.3) when nothing else decided; otherwise
	// the zone has no opinion.
	DNSErrorTempfail bool
	// RejectStage is the first stage at which a rejection is given; hits
	// found earlier are held until then. Default StageRcpt, so the
	// rejection log shows sender and recipient.
	RejectStage filters.Stage
	// BodyDomains bounds the link domains of one message looked up for
	// the zones on=body (default DefaultBodyDomains).
	BodyDomains int
	// BodySkip are registered domains never looked up for on=body zones,
	// besides DefaultBodySkip (unless BodySkipDefaults is false) and the
	// server's own domains.
	BodySkip         []string
	BodySkipDefaults bool
}

// Defaults.
const (
	DefaultTimeout     = 5 * time.Second
	DefaultBlockWeight = 5
	DefaultAllowWeight = -5
)

// DefaultConfig returns a configuration without zones and with the defaults.
func DefaultConfig() Config {
	return Config{Timeout: DefaultTimeout, RejectStage: filters.StageRcpt,
		BodyDomains: DefaultBodyDomains, BodySkipDefaults: true}
}

// Codes says which answers of a zone count as a listing. The zero value
// matches every answer in 127.0.0.0/8 except 127.0.0.1 (RFC 5782 section 5:
// the not-listed test point) and the error codes 127.255.255.0/24.
type Codes struct {
	Ranges []CodeRange
	Masks  []uint8 // bitmasks tested against the last octet ("&4")
}

// CodeRange is an inclusive range of answers.
type CodeRange struct{ From, To netip.Addr }

// Match reports whether answer a counts as a listing.
func (c Codes) Match(a netip.Addr) bool {
	a = a.Unmap()
	if !loopback.Contains(a) || errorCodes.Contains(a) {
		return false
	}
	if len(c.Ranges) == 0 && len(c.Masks) == 0 {
		return a != testPoint1
	}
	for _, r := range c.Ranges {
		if a.Compare(r.From) >= 0 && a.Compare(r.To) <= 0 {
			return true
		}
	}
	last := a.As4()[3]
	for _, m := range c.Masks {
		if last&m != 0 {
			return true
		}
	}
	return false
}

func (c Codes) String() string {
	if len(c.Ranges) == 0 && len(c.Masks) == 0 {
		return "any"
	}
	var parts []string
	for _, r := range c.Ranges {
		if r.From == r.To {
			parts = append(parts, r.From.String())
		} else {
			parts = append(parts, r.From.String()+"-"+r.To.String())
		}
	}
	for _, m := range c.Masks {
		parts = append(parts, "&"+strconv.Itoa(int(m)))
	}
	return strings.Join(parts, ",")
}

// ParseCodes parses a codes= list: comma-separated addresses
// ("127.0.0.2"), ranges ("127.0.0.2-127.0.0.11"), prefixes
// ("127.0.1.0/24") and last-octet bitmasks ("&4", "&0x0c"); every address
// must be in 127.0.0.0/8.
func ParseCodes(s string) (Codes, error) {
	var c Codes
	items := strings.Split(s, ",")
	if len(items) > MaxCodeRanges {
		return c, fmt.Errorf("more than %d codes", MaxCodeRanges)
	}
	for _, item := range items {
		item = strings.TrimSpace(item)
		switch {
		case item == "":
			return c, errors.New("empty item in codes")
		case strings.HasPrefix(item, "&"):
			m, err := strconv.ParseUint(item[1:], 0, 8)
			if err != nil || m == 0 {
				return c, fmt.Errorf("bitmask %q: want &N with N from 1 to 255", item)
			}
			c.Masks = append(c.Masks, uint8(m))
		case strings.Contains(item, "/"):
			p, err := netip.ParsePrefix(item)
			if err != nil || !p.Addr().Is4() || !loopback.Contains(p.Masked().Addr()) || p.Bits() < 8 {
				return c, fmt.Errorf("prefix %q: want a prefix inside 127.0.0.0/8", item)
			}
			p = p.Masked()
			c.Ranges = append(c.Ranges, CodeRange{p.Addr(), lastAddr(p)})
		default:
			from, to, isRange := strings.Cut(item, "-")
			a, err := parseCode(from)
			if err != nil {
				return c, err
			}
			b := a
			if isRange {
				if b, err = parseCode(to); err != nil {
					return c, err
				}
				if b.Less(a) {
					return c, fmt.Errorf("range %q runs backwards", item)
				}
			}
			c.Ranges = append(c.Ranges, CodeRange{a, b})
		}
	}
	return c, nil
}

func parseCode(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil || !a.Is4() || !loopback.Contains(a) {
		return netip.Addr{}, fmt.Errorf("code %q: want an IPv4 address in 127.0.0.0/8", s)
	}
	return a, nil
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// Load reads the dnsbl setting from the configuration directory. A missing
// setting is an empty configuration (no zones), not an error.
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

// Parse builds a Config from the meaningful lines of the setting. Errors
// carry FILE:LINE (a *policy.Error).
func Parse(lines []policy.Line) (Config, error) {
	cfg := DefaultConfig()
	seen := map[string]string{}
	for _, l := range lines {
		zones, err := parseLine(&cfg, l)
		if err != nil {
			return Config{}, err
		}
		for _, z := range zones {
			key := z.Name + " " + z.Type.String() + " " + subjectsKey(z.Subjects)
			if prev, dup := seen[key]; dup {
				return Config{}, l.Errorf("zone %s (%s) already configured at %s", z.Name, z.Type, prev)
			}
			seen[key] = z.Origin
			if len(cfg.Zones) >= MaxZones {
				return Config{}, l.Errorf("more than %d zones", MaxZones)
			}
			cfg.Zones = append(cfg.Zones, z)
		}
	}
	return cfg, nil
}

func subjectsKey(s []Subject) string {
	parts := make([]string, len(s))
	for i, x := range s {
		parts[i] = string(x)
	}
	return strings.Join(parts, ",")
}

// ParseZoneLine parses one zone given on a command line (`postern check
// dnsbl --zone`), in either syntax, as if it were line 1 of a file named
// "--zone".
func ParseZoneLine(text string) ([]*Zone, error) {
	cfg := DefaultConfig()
	return parseLine(&cfg, policy.Line{File: "--zone", Num: 1, Text: text})
}

// parseLine handles one line: a global setting, Courier -block/-allow
// options (possibly several, possibly wrapped in BLACKLISTS="..."), or a
// zone in Postern's syntax.
func parseLine(cfg *Config, l policy.Line) ([]*Zone, error) {
	text := strings.TrimSpace(l.Text)
	rest, blacklists := strings.CutPrefix(text, "BLACKLISTS=")
	if blacklists {
		text = strings.TrimSpace(rest)
	}
	words, err := splitWords(text)
	if err != nil {
		return nil, l.Errorf("%v", err)
	}
	if len(words) == 0 {
		return nil, nil
	}
	// BLACKLISTS="-block=a -block=b" as in Courier's esmtpd file quotes the
	// whole list, which the shell splits again when it runs couriertcpd.
	if blacklists && len(words) == 1 {
		if words, err = splitWords(words[0]); err != nil {
			return nil, l.Errorf("%v", err)
		}
		if len(words) == 0 {
			return nil, nil // BLACKLISTS="": no lists
		}
	}
	origin := fmt.Sprintf("%s:%d", l.File, l.Num)
	if strings.HasPrefix(words[0], "-") {
		var zones []*Zone
		for _, w := range words {
			z, err := parseCourierOption(w)
			if err != nil {
				return nil, l.Errorf("%v", err)
			}
			z.Origin = origin
			zones = append(zones, z)
		}
		return zones, nil
	}
	switch strings.ToLower(words[0]) {
	case "bodyskip":
		if len(words) < 2 {
			return nil, l.Errorf("bodyskip takes one or more domains")
		}
		for _, w := range words[1:] {
			if strings.EqualFold(w, "-defaults") {
				cfg.BodySkipDefaults = false
				continue
			}
			d := RegisteredDomain(w)
			if d == "" {
				return nil, l.Errorf("bodyskip %q: want a registered domain like example.com", w)
			}
			cfg.BodySkip = append(cfg.BodySkip, d)
		}
		return nil, nil
	case "bodydomains":
		if len(words) != 2 {
			return nil, l.Errorf("%s takes one value", words[0])
		}
		n, err := strconv.Atoi(words[1])
		if err != nil || n < 1 || n > MaxBodyDomains {
			return nil, l.Errorf("bodydomains %q: want a number from 1 to %d", words[1], MaxBodyDomains)
		}
		cfg.BodyDomains = n
		return nil, nil
	case "threshold", "timeout", "dnserror", "rejectstage":
		if len(words) != 2 {
			return nil, l.Errorf("%s takes one value", words[0])
		}
		return nil, parseGlobal(cfg, l, strings.ToLower(words[0]), words[1])
	}
	z, err := parseZone(words)
	if err != nil {
		return nil, l.Errorf("%v", err)
	}
	z.Origin = origin
	return []*Zone{z}, nil
}

func parseGlobal(cfg *Config, l policy.Line, key, val string) error {
	switch key {
	case "threshold":
		f, err := strconv.ParseFloat(val, 64)
		if err != nil || f < 0 || f > 1e6 {
			return l.Errorf("threshold %q: want a number from 0 to 1000000", val)
		}
		cfg.Threshold = f
	case "timeout":
		d, err := time.ParseDuration(val)
		if err != nil || d <= 0 || d > time.Minute {
			return l.Errorf("timeout %q: want a duration up to 1m, e.g. 5s", val)
		}
		cfg.Timeout = d
	case "dnserror":
		switch strings.ToLower(val) {
		case "tempfail":
			cfg.DNSErrorTempfail = true
		case "ignore", "none":
			cfg.DNSErrorTempfail = false
		default:
			return l.Errorf("dnserror %q: want tempfail or ignore", val)
		}
	case "rejectstage":
		st, ok := parseStage(val)
		if !ok {
			return l.Errorf("rejectstage %q: want connect, helo, mail, rcpt or data", val)
		}
		cfg.RejectStage = st
	}
	return nil
}

func parseStage(s string) (filters.Stage, bool) {
	for st := filters.StageConnect; st <= filters.StageData; st++ {
		if strings.EqualFold(s, st.String()) {
			return st, true
		}
	}
	return 0, false
}

// parseZone parses Postern's syntax: ZONE [key=value ...].
func parseZone(words []string) (*Zone, error) {
	name, err := normalizeZone(words[0])
	if err != nil {
		return nil, err
	}
	z := &Zone{Name: name, Subjects: []Subject{SubjectIP}, FetchTXT: true}
	var weightSet, actionSet bool
	for _, w := range words[1:] {
		key, val, ok := strings.Cut(w, "=")
		if !ok {
			return nil, fmt.Errorf("%q: want key=value", w)
		}
		switch strings.ToLower(key) {
		case "type":
			switch strings.ToLower(val) {
			case "block", "dnsbl", "rhsbl":
				z.Type = Block
			case "allow", "dnswl", "whitelist":
				z.Type = Allow
			default:
				return nil, fmt.Errorf("type %q: want block or allow", val)
			}
		case "weight", "score":
			f, err := strconv.ParseFloat(val, 64)
			if err != nil || f < -1e6 || f > 1e6 {
				return nil, fmt.Errorf("weight %q: want a number", val)
			}
			z.Weight, weightSet = f, true
		case "action":
			switch strings.ToLower(val) {
			case "score":
				z.Action = ActionScore
			case "reject":
				z.Action = ActionReject
			case "accept":
				z.Action = ActionAccept
			default:
				return nil, fmt.Errorf("action %q: want score, reject or accept", val)
			}
			actionSet = true
		case "codes", "code":
			if z.Codes, err = ParseCodes(val); err != nil {
				return nil, err
			}
		case "on", "check":
			z.Subjects = nil
			for _, s := range strings.Split(strings.ToLower(val), ",") {
				switch Subject(s) {
				case SubjectIP, SubjectHELO, SubjectSender, SubjectFrom, SubjectBody:
					if !containsSubject(z.Subjects, Subject(s)) {
						z.Subjects = append(z.Subjects, Subject(s))
					}
				default:
					return nil, fmt.Errorf("on %q: want ip, helo, sender, from or body", s)
				}
			}
		case "var":
			if err := validVar(val); err != nil {
				return nil, err
			}
			z.Var = val
		case "message", "msg":
			if len(val) > maxMessageLen || strings.IndexFunc(val, isControl) >= 0 {
				return nil, fmt.Errorf("message: at most %d printable characters", maxMessageLen)
			}
			z.Message = val
		case "txt":
			b, err := strconv.ParseBool(val)
			if err != nil {
				return nil, fmt.Errorf("txt %q: want yes or no", val)
			}
			z.FetchTXT = b
		default:
			return nil, fmt.Errorf("unknown key %q (want type, weight, action, codes, on, var, message, txt)", key)
		}
	}
	if !weightSet {
		z.Weight = DefaultBlockWeight
		if z.Type == Allow {
			z.Weight = DefaultAllowWeight
		}
	}
	if !actionSet && z.Type == Block {
		z.Action = ActionReject
	}
	if z.Type == Allow && z.Action == ActionReject {
		return nil, errors.New("action=reject on an allow zone: use type=block")
	}
	if z.Type == Block && z.Action == ActionAccept {
		return nil, errors.New("action=accept on a block zone: use type=allow")
	}
	return z, nil
}

func containsSubject(list []Subject, s Subject) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// parseCourierOption parses couriertcpd(1)'s
//
//	-block=zone[,var[/n.n.n.n][,msg]]
//	-allow=zone[,var[/n.n.n.n[,]]]
//
// The variable defaults to BLOCK; Courier refuses mail when BLOCK is set
// to a non-empty value, so a -block with BLOCK rejects, a -block with
// another variable only sets it (for the rules), and an -allow sets its
// variable to the empty string, which makes later zones of the same variable
// skip their lookup (the whitelist effect). A msg of "*" means the list
// publishes TXT records, whose text becomes the message.
func parseCourierOption(w string) (*Zone, error) {
	opt, arg, ok := strings.Cut(w, "=")
	if !ok {
		return nil, fmt.Errorf("%q: want -block=zone or -allow=zone (quote a message that has spaces)", w)
	}
	z := &Zone{Subjects: []Subject{SubjectIP}, Var: "BLOCK"}
	switch opt {
	case "-block":
		z.Type = Block
	case "-allow":
		z.Type = Allow
	default:
		return nil, fmt.Errorf("%q: only -block= and -allow= are DNS list options", opt)
	}
	// The message is everything after the second comma: it may contain
	// commas of its own.
	parts := strings.SplitN(arg, ",", 3)
	zoneText, zoneCode, hasCode := strings.Cut(parts[0], "/") // "-block=zone/127.0.0.2"
	name, err := normalizeZone(zoneText)
	if err != nil {
		return nil, err
	}
	z.Name = name
	if hasCode {
		code, err := parseCode(zoneCode)
		if err != nil {
			return nil, err
		}
		z.Codes = Codes{Ranges: []CodeRange{{code, code}}}
	}
	msgGiven := false
	if len(parts) > 1 {
		v, ip, hasIP := strings.Cut(parts[1], "/")
		if v != "" {
			if err := validVar(v); err != nil {
				return nil, err
			}
			z.Var = v
		}
		if hasIP {
			code, err := parseCode(ip)
			if err != nil {
				return nil, err
			}
			z.Codes = Codes{Ranges: []CodeRange{{code, code}}}
		}
	}
	if len(parts) > 2 {
		msgGiven = true
		msg := parts[2]
		if len(msg) > maxMessageLen || strings.IndexFunc(msg, isControl) >= 0 {
			return nil, fmt.Errorf("message: at most %d printable characters", maxMessageLen)
		}
		if z.Type == Block {
			if msg == "*" {
				if len(z.Codes.Ranges) > 0 {
					return nil, errors.New(`a "*" message (TXT list) cannot be combined with /n.n.n.n`)
				}
				z.TXTList = true
			} else {
				z.Message, z.Literal = msg, msg != ""
			}
		}
	}
	switch z.Type {
	case Block:
		z.FetchTXT = !msgGiven // Courier's ANY query gets the TXT when no message is given
		if z.Var == "BLOCK" {
			z.Action, z.Weight = ActionReject, DefaultBlockWeight
		} else {
			z.Action, z.Weight = ActionScore, 0
		}
	case Allow:
		z.FetchTXT = msgGiven // "-allow=zone,VAR," asks for the TXT too (VAR_TXT)
		// An -allow only exempts from the -block options of its variable;
		// it is no general "accept".
		z.Action, z.Weight = ActionScore, 0
	}
	return z, nil
}

func normalizeZone(s string) (string, error) {
	z := NormalizeDomain(s)
	if z == "" || !strings.Contains(z, ".") {
		return "", fmt.Errorf("zone %q: want a DNS zone like dnsbl.example.org", s)
	}
	if len(z) > 180 {
		return "", fmt.Errorf("zone %q: longer than 180 octets leaves no room for the query", s)
	}
	return z, nil
}

// validVar accepts what a shell (and the maildrop rules) accepts as a
// variable name, and refuses the names this package sets itself.
func validVar(v string) error {
	if v == "" || len(v) > 64 {
		return fmt.Errorf("variable %q: want a name of 1 to 64 characters", v)
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || i > 0 && c >= '0' && c <= '9') {
			return fmt.Errorf("variable %q: letters, digits and _ only, not starting with a digit", v)
		}
	}
	if strings.HasPrefix(v, "DNSBL_") || strings.HasPrefix(v, "DNSWL_") {
		return fmt.Errorf("variable %q: DNSBL_ and DNSWL_ names are set by the filter itself", v)
	}
	return nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// splitWords splits a line into words at blanks; "double" and 'single'
// quotes group (as a shell would, so BLACKLISTS lines copied from Courier's
// esmtpd file work), and a backslash escapes the next character inside
// double quotes and outside quotes.
func splitWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			} else if c == '\\' && quote == '"' && i+1 < len(s) {
				i++
				cur.WriteByte(s[i])
			} else {
				cur.WriteByte(c)
			}
		case c == '"' || c == '\'':
			quote, inWord = c, true
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			inWord = true
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated %c quote", quote)
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}
