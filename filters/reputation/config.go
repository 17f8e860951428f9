package reputation

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"postern/policy"
)

// SettingName is the configuration file (or directory) this package reads.
const SettingName = "reputation"

// Defaults. The half-life is Rspamd's and postscreen's order of magnitude
// (postscreen forgets a client that passed after a week by default); a
// /24 and a /48 are what one sender usually controls.
const (
	DefaultHalfLife   = 7 * 24 * time.Hour
	DefaultIPv4Prefix = 24
	DefaultIPv6Prefix = 48
	DefaultMinSamples = 3
	DefaultEvidence   = 10
	DefaultMaxScore   = 5
	DefaultMinScore   = -2
	DefaultGoodBelow  = 2
	DefaultBadFrom    = 5
	DefaultClean      = -1
	DefaultBad        = 1
)

// StoreErrorAction says what to do when the state store cannot answer.
type StoreErrorAction int

const (
	StoreErrorPass     StoreErrorAction = iota // no opinion, logged
	StoreErrorTempfail                         // 451 4.3.0 until the store is back
)

// Config is what the reputation setting file says.
type Config struct {
	HalfLife   time.Duration // the decay: a count halves in this time
	IPv4Prefix int           // the client's network for IPv4
	IPv6Prefix int           // and for IPv6
	// MinSamples: a bucket with fewer (decayed) outcomes has no score.
	MinSamples float64
	// Evidence: the number of outcomes at which the confidence is
	// tanh(1) ≈ 0.76 of the bounds.
	Evidence float64
	MaxScore float64 // the bound for a bucket with nothing but bad outcomes (> 0)
	MinScore float64 // the bound for nothing but good ones (≤ 0)
	// Weights of the buckets' scores in the result's score.
	WeightIP, WeightNetwork, WeightDomain float64
	// GoodBelow: an accepted message whose score (without reputation's own)
	// is below this is a good outcome. BadFrom: a message scoring this much
	// is a bad one even when accepted (default: spamscore's quarantine).
	GoodBelow, BadFrom float64
	// Clean and Bad are the levels for the REPUTATION variables: a score at
	// or below Clean is "clean", at or above Bad "bad".
	Clean, Bad float64
	// RejectAt and TempfailAt refuse MAIL from a client, network or
	// domain whose bucket scores at least this much; 0 is off (the
	// default: the score alone works through spamscore).
	RejectAt, TempfailAt float64
	OnStoreError         StoreErrorAction
}

// DefaultConfig returns the defaults above.
func DefaultConfig() Config {
	return Config{
		HalfLife: DefaultHalfLife, IPv4Prefix: DefaultIPv4Prefix, IPv6Prefix: DefaultIPv6Prefix,
		MinSamples: DefaultMinSamples, Evidence: DefaultEvidence,
		MaxScore: DefaultMaxScore, MinScore: DefaultMinScore,
		WeightIP: 1, WeightNetwork: 0.5, WeightDomain: 1,
		GoodBelow: DefaultGoodBelow, BadFrom: DefaultBadFrom,
		Clean: DefaultClean, Bad: DefaultBad,
	}
}

// Check reports what is wrong with c, or nil.
func (c Config) Check() error {
	finite := func(vs ...float64) bool {
		for _, v := range vs {
			if math.IsNaN(v) || math.IsInf(v, 0) || math.Abs(v) > 1e6 {
				return false
			}
		}
		return true
	}
	switch {
	case !finite(c.MinSamples, c.Evidence, c.MaxScore, c.MinScore, c.WeightIP, c.WeightNetwork, c.WeightDomain,
		c.GoodBelow, c.BadFrom, c.Clean, c.Bad, c.RejectAt, c.TempfailAt):
		return errors.New("a number is not finite or beyond ±1000000")
	case c.HalfLife < time.Minute || c.HalfLife > 365*24*time.Hour:
		return fmt.Errorf("halflife %v: want 1m to 365d", c.HalfLife)
	case c.IPv4Prefix < 8 || c.IPv4Prefix > 32 || c.IPv6Prefix < 16 || c.IPv6Prefix > 128:
		return fmt.Errorf("network /%d (IPv4), /%d (IPv6): want 8..32 and 16..128", c.IPv4Prefix, c.IPv6Prefix)
	case c.MinSamples < 0 || c.Evidence <= 0:
		return fmt.Errorf("minsamples %v, evidence %v: want minsamples ≥ 0 and evidence > 0", c.MinSamples, c.Evidence)
	case c.MaxScore <= 0 || c.MinScore > 0:
		return fmt.Errorf("maxscore %v, minscore %v: want maxscore > 0 and minscore ≤ 0", c.MaxScore, c.MinScore)
	case c.WeightIP < 0 || c.WeightNetwork < 0 || c.WeightDomain < 0:
		return errors.New("weights must not be negative")
	case c.GoodBelow > c.BadFrom:
		return fmt.Errorf("goodbelow %v is above badfrom %v", c.GoodBelow, c.BadFrom)
	case c.Clean > c.Bad:
		return fmt.Errorf("clean %v is above bad %v", c.Clean, c.Bad)
	case c.RejectAt < 0 || c.TempfailAt < 0:
		return errors.New("reject and tempfail limits must be positive (or off)")
	}
	return nil
}

// LoadConfig reads the reputation setting from the configuration
// directory over base (DefaultConfig with the server's own defaults, e.g.
// BadFrom from spamscore). present is false when the setting does not
// exist.
func LoadConfig(dir string, base Config) (cfg Config, present bool, err error) {
	lines, err := policy.ReadSetting(dir, SettingName)
	if errors.Is(err, policy.ErrNotSet) {
		return base, false, nil
	}
	if err != nil {
		return Config{}, false, fmt.Errorf("reputation: %w", err)
	}
	cfg, err = ParseConfig(lines, base)
	return cfg, err == nil, err
}

// ParseConfig reads reputation setting lines over base, one "keyword
// value..." per line:
//
//	halflife 7d
//	ipv4prefix 24
//	ipv6prefix 48
//	minsamples 3
//	evidence 10
//	maxscore 5
//	minscore -2
//	weight ip=1 network=0.5 domain=1
//	goodbelow 2
//	badfrom 5
//	clean -1
//	bad 1
//	reject 4|off
//	tempfail 3|off
//	onstoreerror pass|tempfail
//
// Errors name the file and line.
func ParseConfig(lines []policy.Line, base Config) (Config, error) {
	cfg := base
	for _, l := range lines {
		fields := strings.Fields(l.Text)
		if len(fields) < 2 {
			return Config{}, l.Errorf("reputation: want \"keyword value\", got %q", l.Text)
		}
		kw, args := strings.ToLower(fields[0]), fields[1:]
		if kw != "weight" && len(args) != 1 {
			return Config{}, l.Errorf("reputation: %s takes one value, got %d", kw, len(args))
		}
		v := args[0]
		number := func(dst *float64) error {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil || math.IsNaN(n) || math.IsInf(n, 0) {
				return l.Errorf("reputation: %s %q: want a number", kw, v)
			}
			*dst = n
			return nil
		}
		var err error
		switch kw {
		case "halflife":
			d, perr := policy.ParseDuration(v)
			if perr != nil || d <= 0 {
				return Config{}, l.Errorf("reputation: halflife %q: want a duration like 7d, 36h", v)
			}
			cfg.HalfLife = d
		case "ipv4prefix", "ipv6prefix":
			n, perr := strconv.Atoi(strings.TrimPrefix(v, "/"))
			lo, hi := 8, 32
			if kw == "ipv6prefix" {
				lo, hi = 16, 128
			}
			if perr != nil || n < lo || n > hi {
				return Config{}, l.Errorf("reputation: %s %q: want a number from %d to %d", kw, v, lo, hi)
			}
			if kw == "ipv4prefix" {
				cfg.IPv4Prefix = n
			} else {
				cfg.IPv6Prefix = n
			}
		case "minsamples":
			err = number(&cfg.MinSamples)
		case "evidence":
			err = number(&cfg.Evidence)
		case "maxscore":
			err = number(&cfg.MaxScore)
		case "minscore":
			err = number(&cfg.MinScore)
		case "goodbelow":
			err = number(&cfg.GoodBelow)
		case "badfrom":
			err = number(&cfg.BadFrom)
		case "clean":
			err = number(&cfg.Clean)
		case "bad":
			err = number(&cfg.Bad)
		case "reject", "tempfail":
			dst := &cfg.RejectAt
			if kw == "tempfail" {
				dst = &cfg.TempfailAt
			}
			if strings.EqualFold(v, "off") {
				*dst = 0
				break
			}
			if err = number(dst); err == nil && *dst <= 0 {
				err = l.Errorf("reputation: %s %q: want a score above 0, or off", kw, v)
			}
		case "weight":
			for _, a := range args {
				name, val, _ := strings.Cut(strings.ToLower(a), "=")
				n, perr := strconv.ParseFloat(val, 64)
				if perr != nil || n < 0 || math.IsInf(n, 0) || math.IsNaN(n) {
					return Config{}, l.Errorf("reputation: weight %q: want ip=N, network=N or domain=N with N ≥ 0", a)
				}
				switch name {
				case "ip":
					cfg.WeightIP = n
				case "network":
					cfg.WeightNetwork = n
				case "domain":
					cfg.WeightDomain = n
				default:
					return Config{}, l.Errorf("reputation: weight %q: want ip=N, network=N or domain=N", a)
				}
			}
		case "onstoreerror":
			switch strings.ToLower(v) {
			case "pass":
				cfg.OnStoreError = StoreErrorPass
			case "tempfail":
				cfg.OnStoreError = StoreErrorTempfail
			default:
				return Config{}, l.Errorf("reputation: onstoreerror %q: want pass or tempfail", v)
			}
		default:
			return Config{}, l.Errorf("reputation: unknown keyword %q", fields[0])
		}
		if err != nil {
			return Config{}, err
		}
	}
	if err := cfg.Check(); err != nil {
		f := ""
		if len(lines) > 0 {
			f = lines[0].File
		}
		return Config{}, &policy.Error{File: f, Reason: "reputation: " + err.Error()}
	}
	return cfg, nil
}
