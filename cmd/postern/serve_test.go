package main

import (
	"testing"
	"time"
)

func TestParseQuiet(t *testing.T) {
	for _, tc := range []struct {
		in       string
		sessions int
		wait     time.Duration
		bad      bool
	}{
		{in: "2", sessions: 2, wait: 2 * time.Millisecond},
		{in: "4,500us", sessions: 4, wait: 500 * time.Microsecond},
		{in: " 1 , 3ms", sessions: 1, wait: 3 * time.Millisecond},
		{in: "0", sessions: -1, wait: 2 * time.Millisecond},
		{in: "-1", bad: true},
		{in: "two", bad: true},
		{in: "2,", bad: true},
		{in: "2,0s", bad: true},
		{in: "2,5s", bad: true},
		{in: "2,-1ms", bad: true},
	} {
		s, w, err := parseQuiet(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("%q: accepted as %d, %v", tc.in, s, w)
			}
			continue
		}
		if err != nil || s != tc.sessions || w != tc.wait {
			t.Errorf("%q: %d, %v, %v; want %d, %v", tc.in, s, w, err, tc.sessions, tc.wait)
		}
	}
}
