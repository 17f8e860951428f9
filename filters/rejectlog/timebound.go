package rejectlog

import (
	"fmt"
	"time"
)

// timeForms are the times the filter takes, read as UTC.
var timeForms = []string{time.RFC3339, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02 15:04:05", "2006-01-02 15:04", "2006-01-02"}

// ParseTimeBound reads a time bound of a Query (Since, Until) as the web
// admin's Rejects page and postern rejects take it: a duration back from
// now ("24h", "30m") or one of timeForms. "" is no bound.
func ParseTimeBound(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("%q: a duration back from now is positive", s)
		}
		return now.Add(-d), nil
	}
	for _, f := range timeForms {
		if t, err := time.ParseInLocation(f, s, time.UTC); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q: want a duration (24h) or a time (2026-11-25 14:30, UTC)", s)
}
