package sieve

import (
	"fmt"
	"strings"
	"time"

	"postern/mailbox/mime"
)

// parseZone reads a :zone argument, "+hhmm" or "-hhmm" (RFC 5260 4.1).
func parseZone(s string) (*time.Location, bool) {
	if len(s) != 5 || s[0] != '+' && s[0] != '-' || !isDigits(s[1:]) {
		return nil, false
	}
	h := int(s[1]-'0')*10 + int(s[2]-'0')
	m := int(s[3]-'0')*10 + int(s[4]-'0')
	if h > 23 || m > 59 {
		return nil, false
	}
	off := (h*60 + m) * 60
	if s[0] == '-' {
		off = -off
	}
	return time.FixedZone(s, off), true
}

// dateTest runs date and currentdate (RFC 5260 sections 4 and 5).
func (r *run) dateTest(n *node, f *frame) (bool, error) {
	var t time.Time
	var partArg *param
	if n.name == "currentdate" {
		t, partArg = r.now, n.args[0]
	} else {
		partArg = n.args[1]
		name, err := r.expandOne(n.args[0], f)
		if err != nil {
			return false, err
		}
		fields := selectFields(n, r.msg.values(name))
		if len(fields) == 0 {
			return false, nil
		}
		value := fields[0].unfolded()
		if strings.EqualFold(name, "received") {
			// The date of a Received field follows its last ";" (RFC 5322 3.6.7).
			if i := strings.LastIndexByte(value, ';'); i >= 0 {
				value = value[i+1:]
			}
		}
		var ok bool
		if t, ok = mime.ParseDate(value); !ok {
			return false, nil // RFC 5260 4: an unparsable date fails the test
		}
	}
	switch {
	case n.has("originalzone"):
	case n.tags["zone"] != nil:
		z, err := r.expandOne(n.tags["zone"], f)
		if err != nil {
			return false, err
		}
		loc, ok := parseZone(z)
		if !ok {
			return false, runtimeErrorf(n.tags["zone"].pos, "%s: :zone %q is not a zone like +0100", n.name, z)
		}
		t = t.In(loc)
	default:
		t = t.In(r.now.Location()) // the local zone of the delivery
	}
	part, err := r.expandOne(partArg, f)
	if err != nil {
		return false, err
	}
	value, ok := datePart(t, strings.ToLower(part))
	if !ok {
		return false, runtimeErrorf(partArg.pos, "%s: unknown date part %q", n.name, part)
	}
	return r.matchValues(n, f, []string{value})
}

// datePart formats one date part of RFC 5260 section 4.2.
func datePart(t time.Time, part string) (string, bool) {
	switch part {
	case "year":
		return fmt.Sprintf("%04d", t.Year()), true
	case "month":
		return fmt.Sprintf("%02d", int(t.Month())), true
	case "day":
		return fmt.Sprintf("%02d", t.Day()), true
	case "date":
		return t.Format("2006-01-02"), true
	case "julian":
		// Modified Julian Day: days since 1858-11-17, 40587 days before
		// the Unix epoch.
		civil := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
		return fmt.Sprintf("%d", floorDiv(civil.Unix(), 86400)+40587), true
	case "hour":
		return fmt.Sprintf("%02d", t.Hour()), true
	case "minute":
		return fmt.Sprintf("%02d", t.Minute()), true
	case "second":
		return fmt.Sprintf("%02d", t.Second()), true
	case "time":
		return t.Format("15:04:05"), true
	case "iso8601":
		return t.Format("2006-01-02T15:04:05-07:00"), true
	case "std11":
		return t.Format("Mon, 02 Jan 2006 15:04:05 -0700"), true
	case "zone":
		return t.Format("-0700"), true
	case "weekday":
		return fmt.Sprintf("%d", int(t.Weekday())), true
	}
	return "", false
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}
