package mtasts

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Parse parses a policy body (RFC 8461 section 3.2): "key: value" lines
// separated by LF or CRLF. version (STSv1), mode and max_age are required,
// mx at least once unless the mode is none. Keys and the version and mode
// values are case-sensitive, as the RFC's grammar says.
//
// Parse is as strict as the RFC about what it uses and lenient about
// layout, as the big senders are: fields come in any order, spaces and tabs
// around keys and values and blank lines are ignored, unknown keys are
// ignored, a repeated key other than mx counts only the first time, a
// max_age above 31557600 is clamped to it, and mx patterns may end in a dot
// and are stored in lower case. A body over 64 KiB is refused (section 3.3).
func Parse(body []byte) (*Policy, error) {
	if len(body) > maxPolicySize {
		return nil, fmt.Errorf("mta-sts policy: %d bytes, more than %d", len(body), maxPolicySize)
	}
	var (
		p                                 Policy
		seenVersion, seenMode, seenMaxAge bool
	)
	for n, line := range bytes.Split(body, []byte("\n")) {
		// sts-policy-term is LF or CRLF; WSP around fields is allowed.
		text := strings.Trim(strings.TrimSuffix(string(line), "\r"), " \t")
		if text == "" {
			continue
		}
		key, value, ok := strings.Cut(text, ":")
		if !ok {
			return nil, fmt.Errorf("mta-sts policy line %d: no ':' in %.40q", n+1, text)
		}
		key = strings.TrimRight(key, " \t")
		value = strings.TrimLeft(value, " \t")
		if !validFieldName(key) {
			return nil, fmt.Errorf("mta-sts policy line %d: bad key %.40q", n+1, key)
		}
		if !validFieldValue(value) {
			return nil, fmt.Errorf("mta-sts policy line %d: bad value for %s", n+1, key)
		}
		// Section 3.2: of a field other than mx that appears more than
		// once, all but the first are ignored.
		switch key {
		case "version":
			if seenVersion {
				continue
			}
			seenVersion = true
			if value != "STSv1" {
				return nil, fmt.Errorf("mta-sts policy: version %.40q, not STSv1", value)
			}
		case "mode":
			if seenMode {
				continue
			}
			seenMode = true
			switch Mode(value) {
			case ModeEnforce, ModeTesting, ModeNone:
				p.Mode = Mode(value)
			default:
				return nil, fmt.Errorf("mta-sts policy: unknown mode %.40q", value)
			}
		case "max_age":
			if seenMaxAge {
				continue
			}
			seenMaxAge = true
			maxAge, err := parseMaxAge(value)
			if err != nil {
				return nil, err
			}
			p.MaxAge = maxAge
		case "mx":
			pattern, err := normalizePattern(value)
			if err != nil {
				return nil, fmt.Errorf("mta-sts policy line %d: %w", n+1, err)
			}
			p.MX = append(p.MX, pattern)
		default:
			// Section 3.2: unknown fields SHALL be ignored.
		}
	}
	switch {
	case !seenVersion:
		return nil, fmt.Errorf("mta-sts policy: no version field")
	case !seenMode:
		return nil, fmt.Errorf("mta-sts policy: no mode field")
	case !seenMaxAge:
		return nil, fmt.Errorf("mta-sts policy: no max_age field")
	case len(p.MX) == 0 && p.Mode != ModeNone:
		// Section 3.2: mx is required at least once, except with mode none.
		return nil, fmt.Errorf("mta-sts policy: mode %s without mx", p.Mode)
	}
	return &p, nil
}

// parseMaxAge reads sts-policy-max-age-value: plaintext non-negative integer
// seconds, at most 31557600 (RFC 8461 section 3.2). Larger values are
// clamped rather than refused: the publisher clearly means "long".
func parseMaxAge(value string) (time.Duration, error) {
	if value == "" || strings.Trim(value, "0123456789") != "" {
		return 0, fmt.Errorf("mta-sts policy: max_age %.40q is not a number of seconds", value)
	}
	seconds, err := strconv.ParseUint(value, 10, 64)
	if err != nil || seconds > uint64(maxMaxAge/time.Second) {
		return maxMaxAge, nil // only possible error is overflow: clamp too
	}
	return time.Duration(seconds) * time.Second, nil
}

// validFieldName: sts-policy-ext-name (RFC 8461 section 3.2), which every
// known key also matches: a letter or digit, then at most 31 letters,
// digits, '_', '-' or '.'.
func validFieldName(name string) bool {
	if name == "" || len(name) > 32 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case isAlnum(c):
		case i > 0 && (c == '_' || c == '-' || c == '.'):
		default:
			return false
		}
	}
	return true
}

// validFieldValue: sts-policy-ext-value (RFC 8461 section 3.2) minus the
// strictness about inner tabs: printable ASCII, spaces and UTF-8, no control
// characters. An empty value is invalid for every field.
func validFieldValue(value string) bool {
	if value == "" {
		return false
	}
	for i := 0; i < len(value); i++ {
		if c := value[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// normalizePattern validates an mx value, sts-policy-mx-value of RFC 8461
// section 3.2: a domain, optionally preceded by "*." to match one label.
// Domains must be ASCII (A-labels for IDNs); a trailing dot is dropped and
// the result is lower case.
func normalizePattern(value string) (string, error) {
	name, wildcard := strings.CutPrefix(value, "*.")
	domain, err := normalizeName(name, 253)
	if err != nil {
		return "", fmt.Errorf("mx %.80q: %w", value, err)
	}
	if wildcard {
		return "*." + domain, nil
	}
	return domain, nil
}

// normalizeDomain checks that domain can be looked up and used as a cache
// file name: a DNS name of letters, digits and hyphens (A-labels for IDNs),
// short enough that mta-sts.DOMAIN is a valid name. No '/', no "..", no
// empty label can pass, so DIR/DOMAIN.json never leaves DIR.
func normalizeDomain(domain string) (string, error) {
	return normalizeName(domain, 253-len("mta-sts."))
}

// normalizeName lower-cases a host name without its trailing dot and checks
// it is a DNS name of letters, digits and hyphens (RFC 5321 section 4.1.2
// Domain, RFC 1035 section 2.3.4 lengths) of at most maxLen octets.
func normalizeName(name string, maxLen int) (string, error) {
	name = strings.TrimSuffix(name, ".")
	if name == "" {
		return "", fmt.Errorf("empty name")
	}
	if len(name) > maxLen {
		return "", fmt.Errorf("name longer than %d octets", maxLen)
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" || len(label) > 63 {
			return "", fmt.Errorf("label of %d octets", len(label))
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return "", fmt.Errorf("label %q starts or ends with '-'", label)
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; !isAlnum(c) && c != '-' {
				return "", fmt.Errorf("character %q in label", c)
			}
		}
	}
	// Only ASCII is left, so ToLower cannot turn a non-ASCII character
	// (the Kelvin sign) into an ASCII one.
	return strings.ToLower(name), nil
}

// ParseTXT finds the MTA-STS record among the TXT records of _mta-sts.DOMAIN
// and returns its id (RFC 8461 section 3.1). Records not starting with
// "v=STSv1" are discarded. If none is left, if more than one is, or if the
// one left is syntactically invalid, there is no policy: the error wraps
// ErrNoPolicy and says which.
//
// The record is "v=STSv1" then ';'-separated key=value fields, the first id
// field (1 to 32 letters and digits) required; spaces and tabs around ';'
// and a final ';' are allowed, unknown fields ignored, a repeated id counts
// the first time only (as section 3.2 says of policy fields).
func ParseTXT(records []string) (id string, err error) {
	var candidates []string
	for _, r := range records {
		if rest, ok := strings.CutPrefix(r, "v=STSv1"); ok && (rest == "" || strings.ContainsRune(" \t;", rune(rest[0]))) {
			candidates = append(candidates, r)
		}
	}
	switch len(candidates) {
	case 0:
		return "", fmt.Errorf("%w: no v=STSv1 TXT record", ErrNoPolicy)
	case 1:
	default:
		return "", fmt.Errorf("%w: %d v=STSv1 TXT records", ErrNoPolicy, len(candidates))
	}
	record := candidates[0]
	fields := strings.Split(record, ";")
	if strings.Trim(fields[0], " \t") != "v=STSv1" {
		return "", fmt.Errorf("%w: TXT record %.80q: bad version field", ErrNoPolicy, record)
	}
	for _, field := range fields[1:] {
		field = strings.Trim(field, " \t")
		if field == "" {
			continue // the optional final delimiter, or a stray extra one
		}
		key, value, ok := strings.Cut(field, "=")
		if !ok || !validFieldName(key) || !validTXTValue(value) {
			return "", fmt.Errorf("%w: TXT record %.80q: bad field %.40q", ErrNoPolicy, record, field)
		}
		if key == "id" && id == "" {
			if !validID(value) {
				return "", fmt.Errorf("%w: TXT record %.80q: bad id %.40q", ErrNoPolicy, record, value)
			}
			id = value
		}
	}
	if id == "" {
		return "", fmt.Errorf("%w: TXT record %.80q has no id", ErrNoPolicy, record)
	}
	return id, nil
}

// validTXTValue: sts-ext-value of RFC 8461 section 3.1, printable ASCII
// other than '=', ';' and space.
func validTXTValue(value string) bool {
	if value == "" {
		return false
	}
	for i := 0; i < len(value); i++ {
		if c := value[i]; c <= ' ' || c >= 0x7f || c == '=' || c == ';' {
			return false
		}
	}
	return true
}

// validID: sts-id of RFC 8461 section 3.1, 1 to 32 letters and digits.
func validID(id string) bool {
	if id == "" || len(id) > 32 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if !isAlnum(id[i]) {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}
