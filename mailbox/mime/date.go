package mime

import (
	"strconv"
	"strings"
	"time"
)

// ParseDate parses an RFC 5322 date-time (section 3.3) leniently, for
// SEARCH SENTBEFORE/SENTON/SENTSINCE and SORT: the day of the week is
// optional and not checked, comments and extra commas are ignored, seconds
// are optional, a "." may separate the time fields, the obsolete forms of
// RFC 5322 4.3 are accepted (two- and three-digit years, named and military
// zones, which count as +0000 as the RFC says), month names may be long or
// in any case, and a missing zone means UTC. ok is false when no date can
// be found.
func ParseDate(raw string) (time.Time, bool) {
	s := stripComments(raw)
	fields := strings.FieldsFunc(s, func(r rune) bool {
		return r == ' ' || r == '\t' || r == ',' || r == '\r' || r == '\n'
	})
	var (
		day, month, year  = -1, -1, -1
		hour, minute, sec = -1, 0, 0
		zone              *time.Location
	)
	for _, f := range fields {
		switch {
		case month < 0 && monthNumber(f) > 0:
			month = monthNumber(f)
		case hour < 0 && strings.ContainsAny(f, ":.") && parseClock(f, &hour, &minute, &sec):
		case day < 0 && isDigits(f) && len(f) <= 2:
			day, _ = strconv.Atoi(f)
		case year < 0 && isDigits(f) && len(f) >= 2 && len(f) <= 4 && (day >= 0 || month >= 0):
			year, _ = strconv.Atoi(f)
			switch len(f) {
			case 2: // RFC 5322 4.3: 00-49 is 20xx, 50-99 is 19xx
				if year < 50 {
					year += 2000
				} else {
					year += 1900
				}
			case 3:
				year += 1900
			}
		case zone == nil && hour >= 0 && (f[0] == '+' || f[0] == '-') && len(f) == 5 && isDigits(f[1:]):
			h, _ := strconv.Atoi(f[1:3])
			m, _ := strconv.Atoi(f[3:5])
			off := (h*60 + m) * 60
			if f[0] == '-' {
				off = -off
			}
			zone = time.FixedZone(f, off)
		case zone == nil && hour >= 0:
			if off, ok := namedZoneHours(strings.ToUpper(f)); ok {
				zone = time.FixedZone(strings.ToUpper(f), off*3600)
			} else if len(f) == 1 && isLetter(f[0]) {
				zone = time.UTC // obsolete military zones: treat as +0000 (RFC 5322 4.3)
			}
		}
	}
	if day < 1 || day > 31 || month < 1 || year < 0 {
		return time.Time{}, false
	}
	if hour < 0 {
		hour = 0
	}
	if zone == nil {
		zone = time.UTC
	}
	if hour > 23 || minute > 59 || sec > 60 {
		return time.Time{}, false
	}
	if sec == 60 {
		sec = 59 // leap second: keep it in the same minute
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, 0, zone)
	if t.Day() != day {
		return time.Time{}, false // e.g. 31 Feb
	}
	return t, true
}

// namedZoneHours returns the offset of an obsolete zone name of RFC 5322
// 4.3, in hours.
func namedZoneHours(name string) (int, bool) {
	switch name {
	case "UT", "UTC", "GMT", "Z":
		return 0, true
	case "EST":
		return -5, true
	case "EDT":
		return -4, true
	case "CDT":
		return -5, true
	case "CST":
		return -6, true
	case "MST":
		return -7, true
	case "MDT":
		return -6, true
	case "PST":
		return -8, true
	case "PDT":
		return -7, true
	}
	return 0, false
}

func monthNumber(f string) int {
	if len(f) < 3 {
		return 0
	}
	switch strings.ToLower(f[:3]) {
	case "jan":
		return 1
	case "feb":
		return 2
	case "mar":
		return 3
	case "apr":
		return 4
	case "may":
		return 5
	case "jun":
		return 6
	case "jul":
		return 7
	case "aug":
		return 8
	case "sep":
		return 9
	case "oct":
		return 10
	case "nov":
		return 11
	case "dec":
		return 12
	}
	return 0
}

// parseClock reads "hh:mm[:ss]" (also with "." separators).
func parseClock(f string, hour, minute, sec *int) bool {
	parts := strings.FieldsFunc(f, func(r rune) bool { return r == ':' || r == '.' })
	if len(parts) < 2 || len(parts) > 3 {
		return false
	}
	nums := make([]int, 3)
	for i, p := range parts {
		if !isDigits(p) || len(p) > 2 {
			return false
		}
		nums[i], _ = strconv.Atoi(p)
	}
	*hour, *minute, *sec = nums[0], nums[1], nums[2]
	return true
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func isLetter(c byte) bool { return 'a' <= c|0x20 && c|0x20 <= 'z' }
