package behaviour

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"postern/policy"
)

func TestLoadOptions(t *testing.T) {
	dir := t.TempDir()
	o, err := LoadOptions(dir)
	if err != nil || o.EarlyTalker != ActionReject || !o.FCrDNS || o.Scores != DefaultScores() {
		t.Fatalf("absent setting: %+v, %v", o, err)
	}
	os.WriteFile(filepath.Join(dir, "behaviour"), []byte("# trial\nearlytalker score\npipelining ignore\nheloresolve no\nfcrdns require\nmaxptrnames 4\nscore fcrdnsnone 2.5\nscore EarlyTalker 7\n"), 0o644)
	o, err = LoadOptions(dir)
	if err != nil {
		t.Fatal(err)
	}
	if o.EarlyTalker != ActionScore || o.Pipelining != ActionIgnore || o.HeloResolve || !o.RequireFCrDNS ||
		o.MaxPTRNames != 4 || o.Scores.FCrDNSNone != 2.5 || o.Scores.EarlyTalker != 7 {
		t.Fatalf("parsed %+v", o)
	}
	for text, want := range map[string]string{
		"earlytalker drop":     "behaviour:1:",
		"\nfcrdns maybe":       "behaviour:2:",
		"score nosuch 1":       "unknown check",
		"score heloours NaN":   "behaviour:1:",
		"score heloours 1000":  "behaviour:1:",
		"maxptrnames 0":        "behaviour:1:",
		"frobnicate yes":       "unknown keyword",
		"heloresolve":          "behaviour:1:",
		"pipelining score now": "takes one value",
	} {
		os.WriteFile(filepath.Join(dir, "behaviour"), []byte(text+"\n"), 0o644)
		_, err := LoadOptions(dir)
		var pe *policy.Error
		if err == nil || !errors.As(err, &pe) || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v; want *policy.Error with %q", text, err, want)
		}
	}
}

func FuzzParseOptions(f *testing.F) {
	f.Add("earlytalker score\nscore heloours 3\nfcrdns require\n")
	f.Fuzz(func(t *testing.T, text string) {
		var lines []policy.Line
		for i, l := range strings.Split(text, "\n") {
			if l = strings.TrimSpace(l); l != "" {
				lines = append(lines, policy.Line{File: "behaviour", Num: i + 1, Text: l})
			}
		}
		if _, err := ParseOptions(lines); err != nil && !strings.HasPrefix(err.Error(), "behaviour:") {
			t.Fatalf("error without file and line: %v", err)
		}
	})
}
