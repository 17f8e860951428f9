package bayes

import (
	"bytes"
	"context"
	"testing"

	"postern/filters/state"
	"postern/filters/state/statetest"
)

// BenchmarkClassify measures one classification (the store reads for a
// corpus message's tokens: one GetMany) against both stores, and the
// same with one Get per token, to show what batching saves.
func BenchmarkClassify(b *testing.B) {
	stores := map[string]func(b *testing.B) state.Store{
		"embedded": func(b *testing.B) state.Store { return statetest.Embedded(b) },
		"redis":    func(b *testing.B) state.Store { return statetest.Redis(b, statetest.RedisPrefix(b)) },
	}
	for name, open := range stores {
		s := open(b)
		m := &Model{Store: s}
		learnAll(b, m, Spam, corpus(b, "train", "spam"))
		learnAll(b, m, Ham, corpus(b, "train", "ham"))
		msg := corpus(b, "test", "spam")[0]
		toks, _ := Tokenize(bytes.NewReader(msg), int64(len(msg)))
		b.Run(name+"/getmany", func(b *testing.B) {
			b.ReportMetric(float64(len(toks)), "tokens")
			for b.Loop() {
				if _, err := m.Classify(context.Background(), testParams(), toks); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/get-per-token", func(b *testing.B) {
			one := &Model{Store: onlyStore{s}}
			for b.Loop() {
				if _, err := one.Classify(context.Background(), testParams(), toks); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// onlyStore hides the batch interfaces of a Store.
type onlyStore struct{ state.Store }
