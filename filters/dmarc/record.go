package dmarc

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Policy is a requested handling of failing mail (RFC 7489 section 6.3, p=
// and sp=), and also the disposition actually applied.
type Policy string

const (
	PolicyNone       Policy = "none"
	PolicyQuarantine Policy = "quarantine"
	PolicyReject     Policy = "reject"
)

// weaker is the next less strict policy (RFC 7489 section 6.6.4: what
// applies to the part of failing mail pct= leaves out).
func (p Policy) weaker() Policy {
	switch p {
	case PolicyReject:
		return PolicyQuarantine
	default:
		return PolicyNone
	}
}

// Alignment is an identifier alignment mode (RFC 7489 section 3.1).
type Alignment byte

const (
	Relaxed Alignment = 'r' // the organizational domains must match
	Strict  Alignment = 's' // the domains must be identical
)

func (a Alignment) String() string {
	if a == Strict {
		return "strict"
	}
	return "relaxed"
}

// Record is a parsed DMARC policy record (RFC 7489 section 6.3).
type Record struct {
	Policy          Policy // p=
	SubdomainPolicy Policy // sp=; "" when absent (then p= applies to subdomains)
	DKIMAlignment   Alignment
	SPFAlignment    Alignment
	Percent         int      // pct=, 0..100
	ReportAggregate []string // rua=
	ReportFailure   []string // ruf=
	FailureOptions  string   // fo=, as written
	// Notes lists what was wrong but ignored (section 6.3: syntax errors in
	// tags other than v= are discarded in favour of defaults).
	Notes []string
}

// String renders the record's effective tags.
func (r Record) String() string {
	s := fmt.Sprintf("v=DMARC1; p=%s", r.Policy)
	if r.SubdomainPolicy != "" {
		s += "; sp=" + string(r.SubdomainPolicy)
	}
	s += fmt.Sprintf("; adkim=%c; aspf=%c; pct=%d", r.DKIMAlignment, r.SPFAlignment, r.Percent)
	return s
}

// Errors of ParseRecord, for errors.Is.
var (
	// ErrNotDMARC: the text does not start with v=DMARC1, so it is not a
	// DMARC record at all (section 6.6.3 step 3 discards such records).
	ErrNotDMARC = errors.New("dmarc: not a DMARC record (no leading v=DMARC1)")
	// ErrBadRecord: a DMARC record without a usable policy.
	ErrBadRecord = errors.New("dmarc: invalid DMARC record")
)

// maxRecordTags bounds the tags read from one record.
const maxRecordTags = 64

// ParseRecord parses a DMARC record as section 6.3 and 6.6.3 ask: v=DMARC1
// must be the first tag; unknown tags are ignored; a bad adkim, aspf or pct
// falls back to its default (noted in Record.Notes); a missing or invalid
// p= (or an invalid sp=) makes the record unusable unless it has a rua=
// address, in which case it acts as p=none.
func ParseRecord(txt string) (Record, error) {
	rec := Record{DKIMAlignment: Relaxed, SPFAlignment: Relaxed, Percent: 100}
	parts := strings.Split(txt, ";")
	if len(parts) > maxRecordTags {
		parts = parts[:maxRecordTags]
		rec.Notes = append(rec.Notes, "too many tags; the rest ignored")
	}
	first := true
	var p, sp string
	var haveP, haveSP bool
	seen := make(map[string]bool)
	for _, part := range parts {
		name, value, ok := strings.Cut(part, "=")
		name = strings.ToLower(strings.TrimSpace(name))
		value = strings.TrimSpace(value)
		if first {
			// The version tag is matched exactly: "DMARC1" is case-sensitive
			// in the ABNF (section 6.4).
			if name != "v" || !ok || value != "DMARC1" {
				return Record{}, ErrNotDMARC
			}
			first = false
			continue
		}
		if !ok {
			if strings.TrimSpace(part) != "" {
				rec.Notes = append(rec.Notes, fmt.Sprintf("ignored %q: not a tag=value pair", clip(part)))
			}
			continue
		}
		if seen[name] {
			rec.Notes = append(rec.Notes, fmt.Sprintf("ignored repeated %s=", clip(name)))
			continue
		}
		seen[name] = true
		switch name {
		case "p":
			p, haveP = strings.ToLower(value), true
		case "sp":
			sp, haveSP = strings.ToLower(value), true
		case "adkim", "aspf":
			a := Relaxed
			switch strings.ToLower(value) {
			case "r":
			case "s":
				a = Strict
			default:
				rec.Notes = append(rec.Notes, fmt.Sprintf("invalid %s=%q; relaxed used", name, clip(value)))
			}
			if name == "adkim" {
				rec.DKIMAlignment = a
			} else {
				rec.SPFAlignment = a
			}
		case "pct":
			n, err := strconv.Atoi(value)
			if err != nil || n < 0 || n > 100 {
				rec.Notes = append(rec.Notes, fmt.Sprintf("invalid pct=%q; 100 used", clip(value)))
				n = 100
			}
			rec.Percent = n
		case "rua":
			rec.ReportAggregate = uriList(value)
		case "ruf":
			rec.ReportFailure = uriList(value)
		case "fo":
			rec.FailureOptions = value
		case "v":
			rec.Notes = append(rec.Notes, "ignored a second v=")
		}
	}
	if first {
		return Record{}, ErrNotDMARC
	}
	pOK := validPolicy(p)
	spOK := !haveSP || validPolicy(sp)
	if haveP && pOK && spOK {
		rec.Policy = Policy(p)
		rec.SubdomainPolicy = Policy(sp)
		return rec, nil
	}
	// Section 6.6.3: without a valid p= (or with an invalid sp=), a record
	// with a usable rua= acts as p=none; otherwise no DMARC processing.
	if hasMailtoURI(rec.ReportAggregate) {
		rec.Policy = PolicyNone
		rec.SubdomainPolicy = ""
		rec.Notes = append(rec.Notes, "no valid p= (or invalid sp=); treated as p=none because rua= is given")
		return rec, nil
	}
	if !haveP {
		return Record{}, fmt.Errorf("%w: no p= tag", ErrBadRecord)
	}
	if !pOK {
		return Record{}, fmt.Errorf("%w: p=%q is not none, quarantine or reject", ErrBadRecord, clip(p))
	}
	return Record{}, fmt.Errorf("%w: sp=%q is not none, quarantine or reject", ErrBadRecord, clip(sp))
}

func validPolicy(p string) bool {
	return p == string(PolicyNone) || p == string(PolicyQuarantine) || p == string(PolicyReject)
}

func uriList(v string) []string {
	var out []string
	for _, u := range strings.Split(v, ",") {
		if u = strings.TrimSpace(u); u != "" && len(out) < 16 {
			out = append(out, u)
		}
	}
	return out
}

func hasMailtoURI(uris []string) bool {
	for _, u := range uris {
		if len(u) > 7 && strings.EqualFold(u[:7], "mailto:") && strings.Contains(u, "@") {
			return true
		}
	}
	return false
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
