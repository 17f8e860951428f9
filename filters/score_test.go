package filters

import (
	"strings"
	"testing"
)

func TestParseScoreLine(t *testing.T) {
	var pass, fail float64
	results := map[string]*float64{"pass": &pass, "fail": &fail}
	if err := ParseScoreLine(strings.Fields("score FAIL 3.5"), results); err != nil || fail != 3.5 || pass != 0 {
		t.Fatalf("score FAIL 3.5: %v, fail %v pass %v", err, fail, pass)
	}
	for _, bad := range []string{"score pass", "score pass x", "score pass NaN", "score pass 1001", "score pass 1 2", "score maybe 1"} {
		if err := ParseScoreLine(strings.Fields(bad), results); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if err := ParseScoreLine(strings.Fields("score maybe 1"), results); err == nil || !strings.Contains(err.Error(), "(fail, pass)") {
		t.Errorf("unknown result: %v", err)
	}
}
