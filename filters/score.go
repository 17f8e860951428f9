package filters

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// ParseScoreLine reads a check's "score RESULT NUMBER" setting line (words
// as split, "score" first) into the score of the result it names: results
// maps each result name (lower case) to its score. The number is bounded
// to ±1000; the result is matched without regard to case.
func ParseScoreLine(words []string, results map[string]*float64) error {
	var n float64
	var err error
	if len(words) == 3 {
		n, err = strconv.ParseFloat(words[2], 64)
	}
	if len(words) != 3 || err != nil || n != n || n > 1000 || n < -1000 {
		return fmt.Errorf("want \"score RESULT NUMBER\" (a number between -1000 and 1000)")
	}
	p, ok := results[strings.ToLower(words[1])]
	if !ok {
		names := make([]string, 0, len(results))
		for k := range results {
			names = append(names, k)
		}
		sort.Strings(names)
		return fmt.Errorf("score: unknown result %q (%s)", words[1], strings.Join(names, ", "))
	}
	*p = n
	return nil
}
