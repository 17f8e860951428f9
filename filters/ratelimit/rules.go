package ratelimit

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"postern/policy"
)

// SettingName is the configuration file (or directory) this package reads.
const SettingName = "ratelimit"

// Subject is whose activity a rule counts.
type Subject int

const (
	SubjectClient Subject = iota // the client's address or network
	SubjectSender                // the MAIL FROM address or its domain
	SubjectAuth                  // the authenticated user
)

var subjectNames = [...]string{"client", "sender", "auth"}

func (s Subject) String() string { return subjectNames[s] }

// Counted is what a rule counts.
type Counted int

const (
	Connections Counted = iota // at connect
	Messages                   // at MAIL FROM (each transaction)
	Recipients                 // at RCPT TO (each recipient asked for)
	Unknown                    // recipients the gateway refused as unknown (NoteUnknownRecipient)
)

var countedNames = [...]string{"connections", "messages", "rcpts", "unknown"}

func (c Counted) String() string { return countedNames[c] }

// Limits on rules, so that a typo cannot build a counter that never ends.
const (
	MinWindow = time.Second
	MaxWindow = 90 * 24 * time.Hour
	MaxRules  = 1000
)

// Rule is one line of the ratelimit setting:
//
//	SUBJECT SELECTOR WHAT LIMIT/WINDOW
type Rule struct {
	Subject Subject
	What    Counted
	Limit   int64
	Window  time.Duration

	// SubjectClient: Network, when valid, restricts the rule to clients in
	// it and counts them together; otherwise every client is counted per
	// network of V4Bits / V6Bits (32/128: per address).
	Network        netip.Prefix
	V4Bits, V6Bits int

	// SubjectSender: Address ("user@domain") or Domain ("example.org")
	// restricts the rule to that sender; PerDomain counts every sender
	// domain separately; none of them: every address separately.
	// SubjectAuth: User restricts the rule to that user; "" counts each.
	Address, Domain, User string
	PerDomain             bool

	Selector string // as written, for messages
	Source   string // FILE:LINE
}

// id is the rule's part of its counters' keys: what the rule counts and
// over which window, not its limit, so that raising a limit does not reset
// the counters, and every gateway with the same rule shares them.
func (r *Rule) id() string {
	return r.Subject.String() + "," + r.Selector + "," + r.What.String() + "," + strconv.FormatInt(int64(r.Window/time.Second), 10)
}

// String writes the rule back in the setting's syntax.
func (r *Rule) String() string {
	return fmt.Sprintf("%s %s %s %d/%s", r.Subject, r.Selector, r.What, r.Limit, formatWindow(r.Window))
}

func formatWindow(d time.Duration) string {
	switch {
	case d%(24*time.Hour) == 0:
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	case d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	case d%time.Minute == 0:
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	}
	return strconv.FormatInt(int64(d/time.Second), 10) + "s"
}

// Config is the parsed ratelimit setting.
type Config struct {
	Rules        []Rule
	OnStoreError StoreErrorAction
}

// StoreErrorAction says what to do when the state store cannot answer.
type StoreErrorAction int

const (
	// StoreErrorPass lets the client through and logs: a limit that cannot
	// be counted is not enforced (a Redis outage must not stop all mail).
	StoreErrorPass StoreErrorAction = iota
	// StoreErrorTempfail answers 451 4.3.0 until the store is back.
	StoreErrorTempfail
)

// LoadConfig reads the ratelimit setting from the configuration directory;
// present is false when it does not exist.
func LoadConfig(dir string) (cfg Config, present bool, err error) {
	lines, err := policy.ReadSetting(dir, SettingName)
	if errors.Is(err, policy.ErrNotSet) {
		return Config{}, false, nil
	}
	if err != nil {
		return Config{}, false, fmt.Errorf("ratelimit: %w", err)
	}
	cfg, err = ParseConfig(lines)
	return cfg, err == nil, err
}

// ParseConfig reads ratelimit setting lines:
//
//	client /24 connections 60/1m     every client /24 (IPv6: /64)
//	client * messages 100/1h         every client address
//	client /24,/48 rcpts 1000/1h     IPv4 /24, IPv6 /48
//	client 192.0.2.0/24 messages 10/1d   only that network, counted together
//	sender * messages 200/1h         every sender address
//	sender @* rcpts 5000/1d          every sender domain
//	sender @example.org messages 50/1h   only that domain
//	auth * rcpts 1000/1d             every authenticated user
//	auth alice messages 10/1m        only alice
//	client * unknown 20/1h           dictionary attack: unknown recipients
//	onstoreerror pass|tempfail
//
// The window is a number and a unit (s, m, h, d, w); a bare unit means one
// ("100/h"). Errors name the file and line.
func ParseConfig(lines []policy.Line) (Config, error) {
	var cfg Config
	for _, l := range lines {
		f := strings.Fields(l.Text)
		if len(f) == 2 && strings.EqualFold(f[0], "onstoreerror") {
			switch strings.ToLower(f[1]) {
			case "pass":
				cfg.OnStoreError = StoreErrorPass
			case "tempfail":
				cfg.OnStoreError = StoreErrorTempfail
			default:
				return Config{}, l.Errorf("ratelimit: onstoreerror %q: want pass or tempfail", f[1])
			}
			continue
		}
		r, err := parseRule(l)
		if err != nil {
			return Config{}, err
		}
		if len(cfg.Rules) >= MaxRules {
			return Config{}, l.Errorf("ratelimit: more than %d rules", MaxRules)
		}
		cfg.Rules = append(cfg.Rules, r)
	}
	return cfg, nil
}

func parseRule(l policy.Line) (Rule, error) {
	f := strings.Fields(l.Text)
	if len(f) != 4 {
		return Rule{}, l.Errorf("ratelimit: want \"SUBJECT SELECTOR WHAT LIMIT/WINDOW\" (e.g. \"client /24 messages 100/1h\"), got %q", l.Text)
	}
	r := Rule{Selector: f[1], Source: fmt.Sprintf("%s:%d", l.File, l.Num)}
	switch strings.ToLower(f[0]) {
	case "client":
		r.Subject = SubjectClient
	case "sender", "from":
		r.Subject = SubjectSender
	case "auth", "user":
		r.Subject = SubjectAuth
	default:
		return Rule{}, l.Errorf("ratelimit: subject %q: want client, sender or auth", f[0])
	}
	switch strings.ToLower(f[2]) {
	case "connections", "connection", "conn":
		r.What = Connections
	case "messages", "message", "msgs":
		r.What = Messages
	case "rcpts", "rcpt", "recipients":
		r.What = Recipients
	case "unknown", "unknownrcpts":
		r.What = Unknown
	default:
		return Rule{}, l.Errorf("ratelimit: %q: want connections, messages, rcpts or unknown", f[2])
	}
	if r.Subject != SubjectClient && (r.What == Connections || r.What == Unknown) {
		return Rule{}, l.Errorf("ratelimit: %s can only be counted per client (the sender and the user are not known yet)", r.What)
	}
	if err := parseSelector(&r); err != nil {
		return Rule{}, l.Errorf("ratelimit: %s selector %q: %v", r.Subject, f[1], err)
	}
	limit, window, ok := strings.Cut(f[3], "/")
	n, err := strconv.ParseInt(limit, 10, 64)
	if !ok || err != nil || n < 1 || n > 1<<40 {
		return Rule{}, l.Errorf("ratelimit: limit %q: want COUNT/WINDOW with a count of at least 1 (e.g. 100/1h)", f[3])
	}
	r.Limit = n
	if window != "" && (window[0] < '0' || window[0] > '9') {
		window = "1" + window
	}
	d, err := parseWindow(window)
	if err != nil || d < MinWindow || d > MaxWindow || d%time.Second != 0 {
		return Rule{}, l.Errorf("ratelimit: window %q: want whole seconds from 1s to 90d (30s, 10m, 1h, 1d, 1w)", window)
	}
	r.Window = d
	return r, nil
}

func parseSelector(r *Rule) error {
	sel := r.Selector
	switch r.Subject {
	case SubjectClient:
		r.V4Bits, r.V6Bits = 32, 128
		switch {
		case sel == "*":
			return nil
		case strings.HasPrefix(sel, "/"):
			v4, v6, both := strings.Cut(sel, ",")
			a, err := strconv.Atoi(v4[1:])
			if err != nil || a < 1 || a > 32 {
				return errors.New("want /N with N from 1 to 32 for IPv4")
			}
			r.V4Bits, r.V6Bits = a, 64
			if a == 32 {
				r.V6Bits = 128
			}
			if both {
				b, err := strconv.Atoi(strings.TrimPrefix(v6, "/"))
				if err != nil || b < 1 || b > 128 || !strings.HasPrefix(v6, "/") {
					return errors.New("want /N,/M with M from 1 to 128 for IPv6")
				}
				r.V6Bits = b
			}
			return nil
		}
		var p netip.Prefix
		var err error
		if strings.Contains(sel, "/") {
			p, err = netip.ParsePrefix(sel)
		} else {
			var a netip.Addr
			a, err = netip.ParseAddr(sel)
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if err != nil {
			return errors.New("want *, /N, /N,/M, an address or a network")
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		r.Network = p.Masked()
	case SubjectSender:
		switch {
		case sel == "*":
		case sel == "@*":
			r.PerDomain = true
		case strings.HasPrefix(sel, "@") && len(sel) > 1 && !strings.Contains(sel[1:], "@"):
			r.Domain = strings.ToLower(strings.TrimSuffix(sel[1:], "."))
		case strings.Count(sel, "@") == 1 && !strings.HasPrefix(sel, "@") && !strings.HasSuffix(sel, "@"):
			r.Address = strings.ToLower(sel)
		default:
			return errors.New("want *, @*, @domain or user@domain")
		}
	case SubjectAuth:
		if sel != "*" {
			r.User = sel
		}
	}
	return nil
}

// parseWindow reads "30s", "10m", "1h", "1d", "2w" (and Go durations).
func parseWindow(s string) (time.Duration, error) {
	for suffix, unit := range map[string]time.Duration{"d": 24 * time.Hour, "w": 7 * 24 * time.Hour} {
		if n, ok := strings.CutSuffix(s, suffix); ok {
			v, err := strconv.ParseUint(n, 10, 16)
			if err != nil {
				return 0, err
			}
			return time.Duration(v) * unit, nil
		}
	}
	return time.ParseDuration(s)
}
