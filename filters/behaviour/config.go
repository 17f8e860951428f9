package behaviour

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"postern/policy"
)

// SettingName is the optional configuration file (or directory) this
// package reads; without it the filter runs with DefaultOptions.
const SettingName = "behaviour"

// LoadOptions reads the behaviour setting over DefaultOptions. Resolver,
// OwnNames, OwnIPs and Logger come from the rest of the configuration and
// are left for the caller to fill in.
func LoadOptions(dir string) (Options, error) {
	lines, err := policy.ReadSetting(dir, SettingName)
	if errors.Is(err, policy.ErrNotSet) {
		return DefaultOptions(), nil
	}
	if err != nil {
		return Options{}, fmt.Errorf("behaviour: %w", err)
	}
	return ParseOptions(lines)
}

// ParseOptions reads behaviour setting lines:
//
//	earlytalker reject|score|ignore
//	pipelining reject|score|ignore
//	heloresolve yes|no
//	fcrdns yes|no|require
//	maxptrnames 10
//	score NAME POINTS     (NAME: earlytalker pipelining heloinvalid helonotfqdn
//	                       helobareip heloours heloliteral helonodns helomismatch
//	                       fcrdnsfail fcrdnsnone)
func ParseOptions(lines []policy.Line) (Options, error) {
	o := DefaultOptions()
	scores := map[string]*float64{
		"earlytalker": &o.Scores.EarlyTalker, "pipelining": &o.Scores.Pipelining,
		"heloinvalid": &o.Scores.HeloInvalid, "helonotfqdn": &o.Scores.HeloNotFQDN,
		"helobareip": &o.Scores.HeloBareIP, "heloours": &o.Scores.HeloOurs,
		"heloliteral": &o.Scores.HeloLiteral, "helonodns": &o.Scores.HeloNoDNS,
		"helomismatch": &o.Scores.HeloMismatch, "fcrdnsfail": &o.Scores.FCrDNSFail,
		"fcrdnsnone": &o.Scores.FCrDNSNone,
	}
	actions := map[string]Action{"reject": ActionReject, "score": ActionScore, "ignore": ActionIgnore}
	for _, l := range lines {
		f := strings.Fields(strings.ToLower(l.Text))
		if len(f) < 2 {
			return Options{}, l.Errorf("behaviour: want \"keyword value\", got %q", l.Text)
		}
		if f[0] != "score" && len(f) != 2 {
			return Options{}, l.Errorf("behaviour: %s takes one value", f[0])
		}
		switch f[0] {
		case "earlytalker", "pipelining":
			a, ok := actions[f[1]]
			if !ok {
				return Options{}, l.Errorf("behaviour: %s %q: want reject, score or ignore", f[0], f[1])
			}
			if f[0] == "earlytalker" {
				o.EarlyTalker = a
			} else {
				o.Pipelining = a
			}
		case "heloresolve":
			switch f[1] {
			case "yes", "on":
				o.HeloResolve = true
			case "no", "off":
				o.HeloResolve = false
			default:
				return Options{}, l.Errorf("behaviour: heloresolve %q: want yes or no", f[1])
			}
		case "fcrdns":
			switch f[1] {
			case "yes", "on":
				o.FCrDNS, o.RequireFCrDNS = true, false
			case "no", "off":
				o.FCrDNS, o.RequireFCrDNS = false, false
			case "require":
				o.FCrDNS, o.RequireFCrDNS = true, true
			default:
				return Options{}, l.Errorf("behaviour: fcrdns %q: want yes, no or require", f[1])
			}
		case "maxptrnames":
			n, err := strconv.Atoi(f[1])
			if err != nil || n < 1 || n > 100 {
				return Options{}, l.Errorf("behaviour: maxptrnames %q: want 1 to 100", f[1])
			}
			o.MaxPTRNames = n
		case "score":
			if len(f) != 3 {
				return Options{}, l.Errorf("behaviour: want \"score NAME POINTS\"")
			}
			p, ok := scores[f[1]]
			if !ok {
				return Options{}, l.Errorf("behaviour: score %q: unknown check", f[1])
			}
			v, err := strconv.ParseFloat(f[2], 64)
			if err != nil || v < -100 || v > 100 || v != v {
				return Options{}, l.Errorf("behaviour: score %s %q: want a number from -100 to 100", f[1], f[2])
			}
			*p = v
		default:
			return Options{}, l.Errorf("behaviour: unknown keyword %q", f[0])
		}
	}
	return o, nil
}
