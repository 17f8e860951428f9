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
	model *Model
	log   *slog.Logger
}

var _ filters.DataChecker = (*Filter)(nil)

// New returns the check.
func New(o Options) (*Filter, error) {
	if o.Store == nil {
		return nil, errors.New("bayes: no state store")
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Filter{cfg: o.Config, model: &Model{Store: o.Store}, log: log}, nil
}

func (f *Filter) Name() string { return Name }

// CheckData classifies the message.
func (f *Filter) CheckData(ctx context.Context, s *filters.Session, msg filters.Message) filters.Result {
	toks, err := Tokenize(msg, msg.Size())
	if err == nil {
		var cl Classification
		cl, err = f.model.Classify(ctx, f.cfg.Params, toks)
		if err == nil {
			return f.result(cl)
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

// Message helpers for training ------------------------------------------

// ReadMessage tokenizes and digests a whole message held in memory.
func ReadMessage(r io.ReaderAt, size int64) (digest string, tokens []string, err error) {
	if tokens, err = Tokenize(r, size); err != nil {
		return "", nil, err
	}
	digest, err = Digest(r, size)
	return digest, tokens, err
}
