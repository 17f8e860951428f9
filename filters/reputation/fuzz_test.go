package reputation

import (
	"context"
	"strings"
	"testing"
	"time"

	"postern/policy"
)

// FuzzParseConfig: any setting file is either refused with a FILE:LINE
// error or yields a Config that New accepts and whose scores stay within
// the bounds.
func FuzzParseConfig(f *testing.F) {
	f.Add("halflife 7d\nipv4prefix 24\nipv6prefix 48\n")
	f.Add("weight ip=1 network=0.5 domain=1\nreject 4\ntempfail off\n")
	f.Add("maxscore 1e300\nminscore -1e300\n")
	f.Add("goodbelow 2\nbadfrom 1\n")
	f.Add("halflife 1m\nevidence 0.0001\nminsamples 0\n")
	f.Fuzz(func(t *testing.T, text string) {
		var lines []policy.Line
		for i, l := range strings.Split(text, "\n") {
			if l = strings.TrimSpace(l); l != "" {
				lines = append(lines, policy.Line{File: "reputation", Num: i + 1, Text: l})
			}
		}
		cfg, err := ParseConfig(lines, DefaultConfig())
		if err != nil {
			if !strings.HasPrefix(err.Error(), "reputation") {
				t.Fatalf("error without file name: %v", err)
			}
			return
		}
		if _, err := New(Options{Config: cfg, Store: nopStore{}}); err != nil {
			t.Fatalf("ParseConfig accepted what New refuses: %v", err)
		}
		for _, n := range []Counts{{}, {Bad: 1e9}, {Good: 1e9}, {Good: 3, Bad: 4}} {
			if s := cfg.Score(n); s > cfg.MaxScore || s < cfg.MinScore || s != s {
				t.Fatalf("score %v of %+v outside [%v, %v]", s, n, cfg.MinScore, cfg.MaxScore)
			}
		}
	})
}

// nopStore satisfies state.Store for tests that never touch the store.
type nopStore struct{}

func (nopStore) Get(context.Context, string) ([]byte, bool, error)        { return nil, false, nil }
func (nopStore) Set(context.Context, string, []byte, time.Duration) error { return nil }
func (nopStore) SetNX(context.Context, string, []byte, time.Duration) (bool, error) {
	return true, nil
}
func (nopStore) Incr(context.Context, string, int64, time.Duration) (int64, error) { return 1, nil }
func (nopStore) Delete(context.Context, string) error                              { return nil }
func (nopStore) Close() error                                                      { return nil }
