package greylist

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
const SettingName = "greylist"

// LoadConfig reads the greylist setting from the configuration directory.
// present is false when the setting does not exist (greylisting is off).
func LoadConfig(dir string) (cfg Config, present bool, err error) {
	lines, err := policy.ReadSetting(dir, SettingName)
	if errors.Is(err, policy.ErrNotSet) {
		return Config{}, false, nil
	}
	if err != nil {
		return Config{}, false, fmt.Errorf("greylist: %w", err)
	}
	cfg, err = ParseConfig(lines)
	return cfg, err == nil, err
}

// ParseConfig reads greylist setting lines, one "keyword value..." per
// line, over DefaultConfig:
//
//	delay 5m
//	retrywindow 2d
//	lifetime 35d
//	ipv4prefix 24
//	ipv6prefix 64
//	autowhitelist 5          (0 turns it off)
//	nullsender greylist|pass
//	onstoreerror pass|tempfail
//	spfpass example.com example.org ...
//	whitelist 192.0.2.0/24 2001:db8::/32 198.51.100.7 ...
//	passrecipient postmaster@ abuse@example.com @example.net ...
//
// The list keywords may repeat. Errors name the file and line.
func ParseConfig(lines []policy.Line) (Config, error) {
	cfg := DefaultConfig()
	for _, l := range lines {
		fields := strings.Fields(l.Text)
		if len(fields) < 2 {
			return Config{}, l.Errorf("greylist: want \"keyword value\", got %q", l.Text)
		}
		kw, args := strings.ToLower(fields[0]), fields[1:]
		one := func() (string, error) {
			if len(args) != 1 {
				return "", l.Errorf("greylist: %s takes one value, got %d", kw, len(args))
			}
			return args[0], nil
		}
		switch kw {
		case "delay", "retrywindow", "lifetime":
			v, err := one()
			if err != nil {
				return Config{}, err
			}
			d, err := ParseDuration(v)
			if err != nil || (d <= 0 && kw != "delay") {
				return Config{}, l.Errorf("greylist: %s %q: want a duration like 300s, 5m, 2d", kw, v)
			}
			switch kw {
			case "delay":
				cfg.Delay = d
			case "retrywindow":
				cfg.RetryWindow = d
			default:
				cfg.Lifetime = d
			}
		case "ipv4prefix", "ipv6prefix", "autowhitelist":
			v, err := one()
			if err != nil {
				return Config{}, err
			}
			n, err := strconv.Atoi(strings.TrimPrefix(v, "/"))
			lo, hi := 8, 32
			if kw == "ipv6prefix" {
				lo, hi = 16, 128
			} else if kw == "autowhitelist" {
				lo, hi = 0, 1000000
			}
			if err != nil || n < lo || n > hi {
				return Config{}, l.Errorf("greylist: %s %q: want a number from %d to %d", kw, v, lo, hi)
			}
			switch kw {
			case "ipv4prefix":
				cfg.IPv4Prefix = n
			case "ipv6prefix":
				cfg.IPv6Prefix = n
			default:
				cfg.AutoWhitelist = n
			}
		case "nullsender":
			v, err := one()
			if err != nil {
				return Config{}, err
			}
			switch strings.ToLower(v) {
			case "greylist":
				cfg.NullSender = NullSenderGreylist
			case "pass":
				cfg.NullSender = NullSenderPass
			default:
				return Config{}, l.Errorf("greylist: nullsender %q: want greylist or pass", v)
			}
		case "onstoreerror":
			v, err := one()
			if err != nil {
				return Config{}, err
			}
			switch strings.ToLower(v) {
			case "pass":
				cfg.OnStoreError = StoreErrorPass
			case "tempfail":
				cfg.OnStoreError = StoreErrorTempfail
			default:
				return Config{}, l.Errorf("greylist: onstoreerror %q: want pass or tempfail", v)
			}
		case "spfpass":
			for _, d := range args {
				d = strings.ToLower(strings.TrimSuffix(d, "."))
				if !validDomain(d) {
					return Config{}, l.Errorf("greylist: spfpass %q: not a domain name", d)
				}
				cfg.SPFPassDomains = append(cfg.SPFPassDomains, d)
			}
		case "whitelist":
			for _, a := range args {
				p, err := parsePrefix(a)
				if err != nil {
					return Config{}, l.Errorf("greylist: whitelist %q: want an address or network (192.0.2.0/24)", a)
				}
				cfg.Whitelist = append(cfg.Whitelist, p)
			}
		case "passrecipient":
			for _, a := range args {
				a = strings.ToLower(a)
				if strings.Count(a, "@") != 1 || a == "@" {
					return Config{}, l.Errorf("greylist: passrecipient %q: want user@domain, user@ or @domain", a)
				}
				cfg.PassRecipients = append(cfg.PassRecipients, a)
			}
		default:
			return Config{}, l.Errorf("greylist: unknown keyword %q", fields[0])
		}
	}
	if cfg.RetryWindow <= cfg.Delay {
		f := ""
		if len(lines) > 0 {
			f = lines[0].File
		}
		return Config{}, &policy.Error{File: f, Reason: fmt.Sprintf("greylist: retrywindow %v must be longer than delay %v", cfg.RetryWindow, cfg.Delay)}
	}
	return cfg, nil
}

// parsePrefix accepts a network or a single address.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
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

// validDomain is a light check for configuration: LDH labels.
func validDomain(d string) bool {
	if d == "" || len(d) > 253 {
		return false
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// ParseDuration reads a duration as Go writes it ("90s", "1h30m") or with a
// day or week suffix ("2d", "5w"), as admins write greylist lifetimes.
func ParseDuration(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		return scaled(n, 24*time.Hour)
	}
	if n, ok := strings.CutSuffix(s, "w"); ok {
		return scaled(n, 7*24*time.Hour)
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, err
	}
	if d < 0 {
		return 0, fmt.Errorf("negative duration %q", s)
	}
	return d, nil
}

func scaled(n string, unit time.Duration) (time.Duration, error) {
	v, err := strconv.ParseUint(n, 10, 32)
	if err != nil || v > 10000 {
		return 0, fmt.Errorf("duration %q: want a whole number of days or weeks up to 10000", n)
	}
	return time.Duration(v) * unit, nil
}
