package dmarc

import (
	"errors"
	"strings"
	"time"

	"postern/filters"
	"postern/policy"
)

// SettingName is the configuration file (or directory) of the DMARC
// filter: CONFIGDIR/dmarc.
const SettingName = "dmarc"

// LoadOptions reads CONFIGDIR/dmarc into Options (without Resolver, which
// the caller sets). An absent setting gives the defaults.
func LoadOptions(configDir string) (Options, error) {
	lines, err := policy.ReadSetting(configDir, SettingName)
	if errors.Is(err, policy.ErrNotSet) {
		return Options{}, nil
	}
	if err != nil {
		return Options{}, err
	}
	return ParseSetting(lines)
}

// ParseSetting parses the lines of the dmarc setting, one directive a line:
//
//	override POLICY POLICY   apply the second policy where a domain asks for the first
//	tempfail                 answer 451 on temperror (default: no opinion)
//	rejectbadfrom            answer 550 when From has no single author domain
//	checkauthenticated       evaluate mail from authenticated clients too
//	timeout DURATION         bound of the DNS work per message (default 10s)
//	score RESULT NUMBER      score of pass, fail, none, temperror, permerror
//
// Errors name the file and line.
func ParseSetting(lines []policy.Line) (Options, error) {
	var opts Options
	scores := DefaultScores
	var errs []error
	for _, ln := range lines {
		words := strings.Fields(ln.Text)
		if len(words) == 0 {
			continue
		}
		switch strings.ToLower(words[0]) {
		case "override":
			if len(words) != 3 || !validPolicy(strings.ToLower(words[1])) || !validPolicy(strings.ToLower(words[2])) {
				errs = append(errs, ln.Errorf("dmarc: want \"override POLICY POLICY\" with policies none, quarantine, reject"))
				continue
			}
			if opts.Override == nil {
				opts.Override = make(map[Policy]Policy)
			}
			opts.Override[Policy(strings.ToLower(words[1]))] = Policy(strings.ToLower(words[2]))
		case "tempfail", "rejectbadfrom", "checkauthenticated":
			if len(words) != 1 {
				errs = append(errs, ln.Errorf("dmarc: %s takes no argument", words[0]))
				continue
			}
			switch strings.ToLower(words[0]) {
			case "tempfail":
				opts.TempFail = true
			case "rejectbadfrom":
				opts.RejectBadFrom = true
			default:
				opts.CheckAuthenticated = true
			}
		case "timeout":
			d, err := time.ParseDuration(strings.Join(words[1:], ""))
			if len(words) != 2 || err != nil || d <= 0 || d > 5*time.Minute {
				errs = append(errs, ln.Errorf("dmarc: want \"timeout DURATION\" between 0 and 5m, e.g. 10s"))
				continue
			}
			opts.Timeout = d
		case "score":
			if err := filters.ParseScoreLine(words, map[string]*float64{
				"pass": &scores.Pass, "fail": &scores.Fail, "none": &scores.None, "temperror": &scores.TempError, "permerror": &scores.PermError,
			}); err != nil {
				errs = append(errs, ln.Errorf("dmarc: %v", err))
				continue
			}
		default:
			errs = append(errs, ln.Errorf("dmarc: unknown directive %q", words[0]))
		}
	}
	if len(errs) > 0 {
		return Options{}, errors.Join(errs...)
	}
	opts.Scores = &scores
	return opts, nil
}
