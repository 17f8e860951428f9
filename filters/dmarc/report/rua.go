package report

import (
	"context"
	"errors"
	"fmt"
	"net/mail"
	"net/url"
	"strconv"
	"strings"

	"postern/filters/dmarc"
)

// URI is one usable rua= destination.
type URI struct {
	Address string // the mailto: address
	Domain  string // its domain, lower case
	// MaxSize is the "!10m" limit in bytes; 0: none (RFC 7489 section
	// 6.2: a report larger than this is not sent there).
	MaxSize int64
}

// ParseURI reads one rua= entry as RFC 7489 section 6.4 writes it:
// "mailto:" address, percent-encoded where needed, with an optional
// "!SIZE[kmgt]" limit. Other schemes are an error: we send by mail only.
func ParseURI(s string) (URI, error) {
	s = strings.TrimSpace(s)
	if len(s) < 7 || !strings.EqualFold(s[:7], "mailto:") {
		return URI{}, fmt.Errorf("dmarc report: %q is not a mailto: URI", clip(s))
	}
	rest := s[7:]
	var u URI
	// The size suffix follows the last "!": an address may not contain
	// one unencoded (section 6.4 asks for "!" to be escaped as %21).
	if i := strings.LastIndexByte(rest, '!'); i >= 0 {
		n, err := parseSize(rest[i+1:])
		if err != nil {
			return URI{}, fmt.Errorf("dmarc report: %q: %w", clip(s), err)
		}
		u.MaxSize, rest = n, rest[:i]
	}
	if strings.ContainsAny(rest, "?#") {
		// Header fields or a fragment in the URI: not ours to follow.
		rest = rest[:strings.IndexAny(rest, "?#")]
	}
	addr, err := url.PathUnescape(rest)
	if err != nil {
		return URI{}, fmt.Errorf("dmarc report: %q: %w", clip(s), err)
	}
	a, err := mail.ParseAddress(addr)
	if err != nil || a.Name != "" || strings.ContainsAny(a.Address, "\r\n\x00<>, ") {
		return URI{}, fmt.Errorf("dmarc report: %q: not a plain address", clip(s))
	}
	at := strings.LastIndexByte(a.Address, '@')
	if at <= 0 || at == len(a.Address)-1 {
		return URI{}, fmt.Errorf("dmarc report: %q: not a plain address", clip(s))
	}
	u.Address = a.Address
	u.Domain = strings.ToLower(strings.TrimSuffix(a.Address[at+1:], "."))
	return u, nil
}

// parseSize reads "10", "10k", "10m", "1g", "1t" (section 6.4: the unit
// is a power of two; none means bytes).
func parseSize(s string) (int64, error) {
	if s == "" {
		return 0, errors.New("empty size limit")
	}
	mult := int64(1)
	switch s[len(s)-1] {
	case 'k', 'K':
		mult = 1 << 10
	case 'm', 'M':
		mult = 1 << 20
	case 'g', 'G':
		mult = 1 << 30
	case 't', 'T':
		mult = 1 << 40
	}
	if mult != 1 {
		s = s[:len(s)-1]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("bad size limit %q", clip(s))
	}
	return n * mult, nil
}

// ErrNotAuthorized: the rua domain did not agree to receive the policy
// domain's reports (section 7.1).
var ErrNotAuthorized = errors.New("the report destination does not accept reports for this domain")

// External reports whether a destination domain needs the section 7.1
// check for reports about policyDomain: their organizational domains
// differ.
func External(policyDomain, destDomain string) bool {
	return !strings.EqualFold(dmarc.OrganizationalDomain(policyDomain), dmarc.OrganizationalDomain(destDomain))
}

// VerifyExternal is RFC 7489 section 7.1: the destination's domain must
// publish "v=DMARC1" at POLICYDOMAIN._report._dmarc.DESTDOMAIN. Only one
// such record may be there. A DNS error is returned as it is (the caller
// tries again at the next run); an absent or wrong record is
// ErrNotAuthorized.
func VerifyExternal(ctx context.Context, lookupTXT func(context.Context, string) ([]string, error), isNotFound func(error) bool, policyDomain, destDomain string) error {
	name := policyDomain + "._report._dmarc." + destDomain
	txts, err := lookupTXT(ctx, name)
	if err != nil {
		if isNotFound != nil && isNotFound(err) {
			return fmt.Errorf("%w: no TXT record at %s", ErrNotAuthorized, name)
		}
		return fmt.Errorf("TXT %s: %w", name, err)
	}
	n := 0
	for _, t := range txts {
		// Section 7.1 step 6: the record starts with the v=DMARC1 tag.
		v, _, _ := strings.Cut(t, ";")
		if k, val, ok := strings.Cut(v, "="); ok && strings.TrimSpace(k) == "v" && strings.TrimSpace(val) == "DMARC1" {
			n++
		}
	}
	if n != 1 {
		return fmt.Errorf("%w: %d v=DMARC1 records at %s", ErrNotAuthorized, n, name)
	}
	return nil
}

func clip(s string) string {
	if len(s) > 60 {
		return s[:60] + "..."
	}
	return s
}
