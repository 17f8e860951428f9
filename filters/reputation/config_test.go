package reputation

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"postern/policy"
)

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	base := DefaultConfig()
	base.BadFrom = 8 // as the server sets it from spamscore
	if cfg, present, err := LoadConfig(dir, base); err != nil || present || cfg.BadFrom != 8 {
		t.Fatalf("absent setting: present=%v err=%v badfrom %v", present, err, cfg.BadFrom)
	}
	os.WriteFile(filepath.Join(dir, "reputation"), []byte(`# reputation
halflife 3d
ipv4prefix /28
ipv6prefix 56
minsamples 5
evidence 20
maxscore 6
minscore -3
weight ip=2 network=0
weight domain=1.5
goodbelow 1
clean -0.5
bad 2
reject 4.5
tempfail off
onstoreerror tempfail
`), 0o644)
	cfg, present, err := LoadConfig(dir, base)
	if err != nil || !present {
		t.Fatal(present, err)
	}
	want := Config{HalfLife: 72 * time.Hour, IPv4Prefix: 28, IPv6Prefix: 56, MinSamples: 5, Evidence: 20,
		MaxScore: 6, MinScore: -3, WeightIP: 2, WeightNetwork: 0, WeightDomain: 1.5, GoodBelow: 1, BadFrom: 8,
		Clean: -0.5, Bad: 2, RejectAt: 4.5, TempfailAt: 0, OnStoreError: StoreErrorTempfail}
	if cfg != want {
		t.Fatalf("parsed\n%+v\nwant\n%+v", cfg, want)
	}
}

func TestConfigErrorsNameFileAndLine(t *testing.T) {
	for text, wantErr := range map[string]string{
		"halflife 7d\nbogus 1\n":     "reputation:2: reputation: unknown keyword",
		"halflife soon\n":            "reputation:1: reputation: halflife",
		"\n\nipv4prefix 33\n":        "reputation:3:",
		"maxscore lots\n":            "reputation:1:",
		"maxscore NaN\n":             "reputation:1:",
		"weight ip=1 asn=2\n":        "reputation:1:",
		"weight ip=-1\n":             "reputation:1:",
		"reject -2\n":                "reputation:1:",
		"onstoreerror maybe\n":       "reputation:1:",
		"halflife\n":                 "reputation:1:",
		"halflife 1d 2d\n":           "takes one value",
		"goodbelow 6\nbadfrom 5\n":   "goodbelow 6 is above badfrom 5",
		"minscore 1\n":               "minscore",
		"halflife 99999999999999d\n": "reputation:1:",
	} {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "reputation"), []byte(text), 0o644)
		_, _, err := LoadConfig(dir, DefaultConfig())
		var pe *policy.Error
		if err == nil || !errors.As(err, &pe) || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("%q: err = %v; want a *policy.Error containing %q", text, err, wantErr)
		}
	}
}
