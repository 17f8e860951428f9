package bayes

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"postern/policy"
)

// SettingName is the configuration file (or directory) this package reads.
const SettingName = "bayes"

// Band is one score line: a probability at or beyond Prob (at or above
// for spam, at or below for ham) adds Score.
type Band struct {
	Prob, Score float64
}

// PerUser says which models a user's filing teaches and which one
// classifies their mail (Rspamd's per_user, SpamAssassin's per-user bayes).
type PerUser string

const (
	PerUserNo   PerUser = "no"   // one model for the installation
	PerUserYes  PerUser = "yes"  // the user's model and the global one learn; the user's classifies once trained
	PerUserOnly PerUser = "only" // the user's model alone learns from their filing
)

// Autolearn is the setting that learns from the pipeline's own verdicts
// (Rspamd's autolearn): a message whose total score, without bayes's own
// part, reaches Spam is learned as spam, one at or below Ham as ham.
type Autolearn struct {
	Spam, Ham float64
}

// Config is the bayes setting.
type Config struct {
	Params    Parameters
	Spam      []Band // most extreme (highest Prob) first
	Ham       []Band // most extreme (lowest Prob) first
	PerUser   PerUser
	Autolearn *Autolearn // nil: off
	Bigrams   bool
}

// Tokens are the tokenizer options the setting asks for: learning and
// classification must tokenize alike.
func (c Config) Tokens() TokenOptions { return TokenOptions{Bigrams: c.Bigrams} }

// DefaultConfig is used for what the setting leaves out. The scores
// assume the default spamscore thresholds (quarantine 5, reject 10): a
// sure spam is a strong signal but never a rejection on its own.
func DefaultConfig() Config {
	return Config{
		Params:  DefaultParameters(),
		Spam:    []Band{{0.99, 4}, {0.9, 2}},
		Ham:     []Band{{0.01, -2}, {0.1, -1}},
		PerUser: PerUserNo,
	}
}

// Score maps a probability to the score bands: the most extreme band the
// probability reaches, 0 when none.
func (c Config) Score(prob float64) float64 {
	for _, b := range c.Spam {
		if prob >= b.Prob {
			return b.Score
		}
	}
	for _, b := range c.Ham {
		if prob <= b.Prob {
			return b.Score
		}
	}
	return 0
}

// LoadConfig reads the bayes setting from the configuration directory,
// over DefaultConfig when it is absent.
func LoadConfig(dir string) (Config, error) {
	lines, err := policy.ReadSetting(dir, SettingName)
	if errors.Is(err, policy.ErrNotSet) {
		return DefaultConfig(), nil
	}
	if err != nil {
		return Config{}, fmt.Errorf("bayes: %w", err)
	}
	return ParseConfig(lines)
}

// ParseConfig reads bayes setting lines over DefaultConfig:
//
//	minlearns 200        spam and ham messages each before it says anything
//	maxtokens 150        most interesting tokens combined
//	spam 0.99 4          at or above this probability, add this score
//	ham 0.01 -2          at or below this probability, add this score
//	peruser no|yes|only  per-user models (default no)
//	autolearn 12 -2      learn totals >= 12 as spam, <= -2 as ham ("autolearn no": off, the default)
//	bigrams no|yes       word pairs as tokens (default no)
//
// spam and ham lines may repeat; when the setting has any of one kind,
// they replace that kind's defaults. Errors name the file and line.
func ParseConfig(lines []policy.Line) (Config, error) {
	cfg := DefaultConfig()
	var spam, ham []Band
	var errs []error
	for _, l := range lines {
		f := strings.Fields(l.Text)
		if len(f) == 0 {
			continue
		}
		kw := strings.ToLower(f[0])
		switch kw {
		case "minlearns", "maxtokens":
			if len(f) != 2 {
				errs = append(errs, l.Errorf("bayes: %s takes one number", kw))
				continue
			}
			n, err := strconv.Atoi(f[1])
			if err != nil || n < 1 || n > 1000000 || kw == "maxtokens" && n > MaxTokens {
				errs = append(errs, l.Errorf("bayes: %s %q: want a whole number from 1 to %d", kw, f[1], map[string]int{"minlearns": 1000000, "maxtokens": MaxTokens}[kw]))
				continue
			}
			if kw == "minlearns" {
				cfg.Params.MinLearns = int64(n)
			} else {
				cfg.Params.MaxTokens = n
			}
		case "spam", "ham":
			if len(f) != 3 {
				errs = append(errs, l.Errorf("bayes: want \"%s PROBABILITY SCORE\"", kw))
				continue
			}
			p, err1 := strconv.ParseFloat(f[1], 64)
			s, err2 := strconv.ParseFloat(f[2], 64)
			switch {
			case err1 != nil || !(p >= 0 && p <= 1):
				errs = append(errs, l.Errorf("bayes: %s probability %q: want a number from 0 to 1", kw, f[1]))
			case err2 != nil || !finiteScore(s):
				errs = append(errs, l.Errorf("bayes: %s score %q: want a number from -1000 to 1000", kw, f[2]))
			case kw == "spam":
				spam = append(spam, Band{p, s})
			default:
				ham = append(ham, Band{p, s})
			}
		case "peruser":
			if len(f) != 2 || !slices.Contains([]string{"no", "yes", "only"}, strings.ToLower(f[1])) {
				errs = append(errs, l.Errorf("bayes: want \"peruser no|yes|only\""))
				continue
			}
			cfg.PerUser = PerUser(strings.ToLower(f[1]))
		case "bigrams":
			if len(f) != 2 || !slices.Contains([]string{"no", "yes"}, strings.ToLower(f[1])) {
				errs = append(errs, l.Errorf("bayes: want \"bigrams no|yes\""))
				continue
			}
			cfg.Bigrams = strings.EqualFold(f[1], "yes")
		case "autolearn":
			if len(f) == 2 && strings.EqualFold(f[1], "no") {
				cfg.Autolearn = nil
				continue
			}
			if len(f) != 3 {
				errs = append(errs, l.Errorf("bayes: want \"autolearn SPAMSCORE HAMSCORE\" or \"autolearn no\""))
				continue
			}
			sp, err1 := strconv.ParseFloat(f[1], 64)
			hm, err2 := strconv.ParseFloat(f[2], 64)
			switch {
			case err1 != nil || err2 != nil || !finiteScore(sp) || !finiteScore(hm):
				errs = append(errs, l.Errorf("bayes: autolearn %q %q: want two numbers from -1000 to 1000", f[1], f[2]))
			case hm >= sp:
				errs = append(errs, l.Errorf("bayes: autolearn: the spam score %v must be above the ham score %v", sp, hm))
			default:
				cfg.Autolearn = &Autolearn{Spam: sp, Ham: hm}
			}
		default:
			errs = append(errs, l.Errorf("bayes: unknown keyword %q (minlearns, maxtokens, spam, ham, peruser, autolearn, bigrams)", f[0]))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return Config{}, err
	}
	if spam != nil {
		sort.SliceStable(spam, func(i, j int) bool { return spam[i].Prob > spam[j].Prob })
		cfg.Spam = spam
	}
	if ham != nil {
		sort.SliceStable(ham, func(i, j int) bool { return ham[i].Prob < ham[j].Prob })
		cfg.Ham = ham
	}
	return cfg, nil
}

// finiteScore: a score the setting may name (not NaN, not huge).
func finiteScore(s float64) bool { return s >= -1000 && s <= 1000 }
