package bayes

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"

	"postern/filters"
	"postern/filters/state"
)

// Name is the check's name in results, logs and the filters setting.
const Name = "bayes"

// Variables the check sets for the admin's rules.
const (
	VarProb   = "BAYES_PROB"   // the spam probability, "0.0000" to "1.0000"; unset when not trained
	VarResult = "BAYES_RESULT" // spam, ham, unsure, untrained or error
	VarModel  = "BAYES_MODEL"  // user or global: the model that classified
)

// Options configure the check.
type Options struct {
	Config Config
	Store  state.Store // required
	Logger *slog.Logger
}

// Filter is the bayes check: at DATA it classifies the message and scores
// it by the Config's bands. It never rejects by itself; the score does,
// with the others, at the spamscore thresholds. Not an authentication
// method, it adds no Authentication-Results.
type Filter struct {
	cfg   Config
	store state.Store
	model *Model
	log   *slog.Logger
	auto  *autolearner // nil without the autolearn setting
}

var (
	_ filters.DataChecker     = (*Filter)(nil)
	_ filters.OutcomeObserver = (*Filter)(nil)
	_ filters.Closer          = (*Filter)(nil)
)

// New returns the check.
func New(o Options) (*Filter, error) {
	if o.Store == nil {
		return nil, errors.New("bayes: no state store")
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f := &Filter{cfg: o.Config, store: o.Store, model: &Model{Store: o.Store}, log: log}
	if o.Config.Autolearn != nil {
		f.auto = newAutolearner(f.model, log)
	}
	return f, nil
}

// Close stops the autolearn worker (after a reload replaced the check).
func (f *Filter) Close() {
	if f.auto != nil {
		f.auto.close()
	}
}

func (f *Filter) Name() string { return Name }

// CheckData classifies the message: with its recipient's own model when
// the setting has per-user models, the message is for exactly one local
// account and that model has learned enough; else with the global one.
func (f *Filter) CheckData(ctx context.Context, s *filters.Session, msg filters.Message) filters.Result {
	toks, err := TokenizeWith(msg, msg.Size(), f.cfg.Tokens())
	if err == nil {
		var cl Classification
		var which string
		cl, which, err = f.classify(ctx, s, toks)
		if err == nil {
			f.remember(s, msg, toks)
			f.log.Info("bayes: classified", "session", s.ID, "model", which, "trained", cl.Trained, "prob", strconv.FormatFloat(cl.Prob, 'f', 4, 64))
			res := f.result(cl)
			res.Vars[VarModel] = which
			return res
		}
	}
	// A store that cannot answer costs the message its bayes score, never
	// its delivery.
	f.log.Warn("bayes: not classified", "session", s.ID, "err", err)
	return filters.Result{Filter: Name, Reason: "bayes: not classified: " + err.Error(),
		Vars: map[string]string{VarResult: "error"}}
}

func (f *Filter) result(cl Classification) filters.Result {
	if !cl.Trained {
		return filters.Result{Filter: Name,
			Reason: fmt.Sprintf("bayes: not trained yet (%d spam, %d ham learned; %d of each needed)", cl.Totals.Spam, cl.Totals.Ham, f.cfg.Params.MinLearns),
			Vars:   map[string]string{VarResult: "untrained"}}
	}
	score := f.cfg.Score(cl.Prob)
	verdict := "unsure"
	switch {
	case score > 0:
		verdict = "spam"
	case score < 0:
		verdict = "ham"
	}
	var top []string
	for _, t := range cl.Used[:min(len(cl.Used), 5)] {
		top = append(top, t.Text+"="+strconv.FormatFloat(t.Prob, 'f', 2, 64))
	}
	return filters.Result{
		Filter: Name,
		Score:  score,
		Reason: fmt.Sprintf("bayes: %s, probability %.4f from %d tokens (%s)", verdict, cl.Prob, len(cl.Used), strings.Join(top, " ")),
		Vars:   map[string]string{VarProb: strconv.FormatFloat(cl.Prob, 'f', 4, 64), VarResult: verdict},
	}
}

// classify uses the recipient's model when it is trained, else the
// global one; which says which ("user" or "global").
func (f *Filter) classify(ctx context.Context, s *filters.Session, toks []string) (cl Classification, which string, err error) {
	if f.cfg.PerUser != PerUserNo && f.cfg.PerUser != "" && len(s.Accounts) == 1 {
		cl, err = UserModel(f.store, s.Accounts[0]).Classify(ctx, f.cfg.Params, toks)
		if err != nil || cl.Trained {
			return cl, "user", err
		}
	}
	cl, err = f.model.Classify(ctx, f.cfg.Params, toks)
	return cl, "global", err
}

// Message helpers for training ------------------------------------------

// ReadMessage tokenizes and digests a whole message held in memory.
func ReadMessage(r io.ReaderAt, size int64, opt TokenOptions) (digest string, tokens []string, err error) {
	if tokens, err = TokenizeWith(r, size, opt); err != nil {
		return "", nil, err
	}
	digest, err = Digest(r, size)
	return digest, tokens, err
}
