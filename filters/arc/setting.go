package arc

import (
	"errors"
	"strings"
	"time"

	"postern/filters"
	"postern/policy"
)

// SettingName is the configuration file (or directory) of the ARC filter
// and sealer: CONFIGDIR/arc.
const SettingName = "arc"

// Config is the arc setting.
type Config struct {
	// Filter are the verification filter's options (without Resolver,
	// which the caller sets).
	Filter Options
	// Seal: seal the mail our aliases and forward files send on to other
	// hosts (off with "seal no").
	Seal bool
}

// LoadConfig reads CONFIGDIR/arc. An absent setting gives the defaults:
// no trusted sealers, DefaultScores, sealing on.
func LoadConfig(configDir string) (Config, error) {
	lines, err := policy.ReadSetting(configDir, SettingName)
	if errors.Is(err, policy.ErrNotSet) {
		return ParseSetting(nil)
	}
	if err != nil {
		return Config{}, err
	}
	return ParseSetting(lines)
}

// ParseSetting parses the lines of the arc setting, one directive a line:
//
//	trusted DOMAIN...        sealers whose chains may override a DMARC policy (repeatable)
//	score RESULT NUMBER      score of pass, trusted, fail, none, temperror
//	timeout DURATION         bound of the verification per message (default 20s)
//	seal yes|no              seal forwarded mail (default yes)
//
// Errors name the file and line.
func ParseSetting(lines []policy.Line) (Config, error) {
	cfg := Config{Seal: true}
	scores := DefaultScores
	var errs []error
	for _, ln := range lines {
		words := strings.Fields(ln.Text)
		if len(words) == 0 {
			continue
		}
		switch strings.ToLower(words[0]) {
		case "trusted":
			if len(words) < 2 {
				errs = append(errs, ln.Errorf("arc: want \"trusted DOMAIN...\""))
				continue
			}
			for _, d := range words[1:] {
				d = normalizeDomain(d)
				if !validDomain(d) {
					errs = append(errs, ln.Errorf("arc: trusted: %q is not a domain name", d))
					continue
				}
				cfg.Filter.Trusted = append(cfg.Filter.Trusted, d)
			}
		case "score":
			if err := filters.ParseScoreLine(words, map[string]*float64{
				"pass": &scores.Pass, "trusted": &scores.Trusted, "fail": &scores.Fail, "none": &scores.None, "temperror": &scores.TempError,
			}); err != nil {
				errs = append(errs, ln.Errorf("arc: %v", err))
			}
		case "timeout":
			d, err := time.ParseDuration(strings.Join(words[1:], ""))
			if len(words) != 2 || err != nil || d <= 0 || d > 5*time.Minute {
				errs = append(errs, ln.Errorf("arc: want \"timeout DURATION\" between 0 and 5m, e.g. 20s"))
				continue
			}
			cfg.Filter.Verify.Timeout = d
		case "seal":
			if len(words) != 2 || words[1] != "yes" && words[1] != "no" {
				errs = append(errs, ln.Errorf("arc: want \"seal yes\" or \"seal no\""))
				continue
			}
			cfg.Seal = words[1] == "yes"
		default:
			errs = append(errs, ln.Errorf("arc: unknown directive %q (trusted, score, timeout, seal)", words[0]))
		}
	}
	if len(errs) > 0 {
		return Config{}, errors.Join(errs...)
	}
	cfg.Filter.Scores = &scores
	return cfg, nil
}

// validDomain accepts LDH labels separated by dots, at least two labels.
func validDomain(d string) bool {
	if len(d) > 253 || !strings.Contains(d, ".") {
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
