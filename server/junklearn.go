package server

import (
	"bytes"
	"context"
	"fmt"

	"postern/filters/bayes"
	"postern/filters/state"
	"postern/policy"
)

// LearnJunk teaches the bayes check's model (docs/bayes.md) what a user
// said of a message by filing it: spam when it went into the Junk folder,
// ham when it came out of it. The IMAP server and the webmail call it (as
// Dovecot with imapsieve and rspamd does). It does nothing when the bayes
// check is not in the filters setting or the message is too large to
// learn; a message learned before is not counted twice. With per-user
// models (peruser yes) it learns into login's model and the global one,
// with "peruser only" into login's alone.
func (s *Server) LearnJunk(ctx context.Context, login string, msg []byte, spam bool) error {
	if s.store == nil || !bayesConfigured(s.Config()) {
		return nil
	}
	if int64(len(msg)) > bayes.MaxScan*4 {
		return nil // a huge message teaches little and costs much
	}
	bc, err := bayes.LoadConfig(s.Config().Dir)
	if err != nil {
		return fmt.Errorf("bayes: %w", err)
	}
	r := bytes.NewReader(msg)
	digest, tokens, err := bayes.ReadMessage(r, int64(len(msg)), bc.Tokens())
	if err != nil {
		return fmt.Errorf("bayes: read message: %w", err)
	}
	class := bayes.Ham
	if spam {
		class = bayes.Spam
	}
	for _, m := range junkModels(s.store, bc, login) {
		res, err := m.model.Learn(ctx, class, digest, tokens)
		if err != nil {
			s.log.Warn("bayes: not learned from the user's filing", "user", login, "model", m.name, "class", class, "err", err)
			return err
		}
		s.log.Info("bayes: learned from the user's filing", "user", login, "model", m.name, "class", class, "result", res.String())
	}
	return nil
}

type namedModel struct {
	name  string // "user" or "global", as BAYES_MODEL says
	model *bayes.Model
}

// junkModels are the models a user's filing teaches under the peruser
// setting.
func junkModels(store state.Store, bc bayes.Config, login string) []namedModel {
	var out []namedModel
	if bc.PerUser == bayes.PerUserYes || bc.PerUser == bayes.PerUserOnly {
		out = append(out, namedModel{"user", bayes.UserModel(store, login)})
	}
	if bc.PerUser != bayes.PerUserOnly {
		out = append(out, namedModel{"global", &bayes.Model{Store: store}})
	}
	return out
}

// bayesConfigured reports whether the filters setting names the bayes
// check.
func bayesConfigured(cfg *policy.Config) bool {
	lines, err := policy.ReadSetting(cfg.Dir, "filters")
	if err != nil {
		return false
	}
	list, err := parseFilterList(lines)
	if err != nil {
		return false
	}
	for _, f := range list {
		if f.name == "bayes" {
			return true
		}
	}
	return false
}
