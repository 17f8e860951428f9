package autoconfig

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"postern/gateway/outbound/mtasts"
	"postern/policy"
)

// SettingMTASTS is the setting that lists the domains' MTA-STS policies.
const SettingMTASTS = "mtastspolicy"

// maxMaxAge is the largest max_age RFC 8461 section 3.2 allows (a year).
const maxMaxAge = 31557600

// Policy is one domain's MTA-STS policy, as served.
type Policy struct {
	Domain string
	Mode   string // enforce, testing or none
	MaxAge int    // seconds
	MX     []string
	// Body is the policy file, byte for byte (RFC 8461 section 3.2).
	Body string
	// ID is the id= of the _mta-sts TXT record: derived from Body, so it
	// changes exactly when the policy does (section 3.1).
	ID string
}

// Policies are the MTA-STS policies of the domains, by domain.
type Policies struct {
	byDomain map[string]*Policy
}

// Get returns the policy of domain (lower case).
func (p *Policies) Get(domain string) (*Policy, bool) {
	if p == nil {
		return nil, false
	}
	pol, ok := p.byDomain[domain]
	return pol, ok
}

// LoadPolicies reads the mtastspolicy setting of cfg's directory. An
// absent setting is no policies. Every bad line is reported with its file
// and line.
func LoadPolicies(cfg *policy.Config) (*Policies, error) {
	lines, err := policy.ReadSetting(cfg.Dir, SettingMTASTS)
	if errors.Is(err, policy.ErrNotSet) {
		return &Policies{}, nil
	}
	if err != nil {
		return nil, err
	}
	return ParsePolicies(lines, cfg.Me, cfg.HasDomain)
}

// ParsePolicies parses mtastspolicy lines:
//
//	DOMAIN mode=enforce|testing|none max_age=SECONDS [mx=PATTERN ...]
//
// mx defaults to me. hosted, when not nil, must accept the domain: a
// policy for a domain whose mail we do not take is a mistake.
func ParsePolicies(lines []policy.Line, me string, hosted func(string) bool) (*Policies, error) {
	ps := &Policies{byDomain: map[string]*Policy{}}
	var errs []error
	for _, l := range lines {
		p, err := parsePolicyLine(l.Text, me)
		if err == nil && hosted != nil && !hosted(p.Domain) {
			err = fmt.Errorf("%s is not a domain this server accepts mail for (acceptmailfor, hosteddomains)", p.Domain)
		}
		if err == nil && ps.byDomain[p.Domain] != nil {
			err = fmt.Errorf("%s has a policy already", p.Domain)
		}
		if err != nil {
			errs = append(errs, l.Errorf("%v", err))
			continue
		}
		ps.byDomain[p.Domain] = p
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return ps, nil
}

func parsePolicyLine(text, me string) (*Policy, error) {
	fields := strings.Fields(text)
	p := &Policy{Domain: strings.TrimSuffix(strings.ToLower(fields[0]), "."), MaxAge: -1}
	if strings.Contains(p.Domain, "=") {
		return nil, fmt.Errorf("a line starts with the domain, not %.40q", fields[0])
	}
	for _, f := range fields[1:] {
		key, value, ok := strings.Cut(f, "=")
		if !ok || value == "" {
			return nil, fmt.Errorf("%.40q is not KEY=VALUE (mode=, max_age=, mx=)", f)
		}
		switch key {
		case "mode":
			if p.Mode != "" {
				return nil, errors.New("mode given twice")
			}
			switch value {
			case "enforce", "testing", "none":
				p.Mode = value
			default:
				return nil, fmt.Errorf("mode %.40q: want enforce, testing or none", value)
			}
		case "max_age":
			if p.MaxAge >= 0 {
				return nil, errors.New("max_age given twice")
			}
			n, err := strconv.Atoi(value)
			if err != nil || n < 0 || n > maxMaxAge || strings.Trim(value, "0123456789") != "" {
				return nil, fmt.Errorf("max_age %.40q: want seconds from 0 to %d (RFC 8461 section 3.2)", value, maxMaxAge)
			}
			p.MaxAge = n
		case "mx":
			p.MX = append(p.MX, strings.TrimSuffix(strings.ToLower(value), "."))
		default:
			return nil, fmt.Errorf("unknown key %.40q (mode=, max_age=, mx=)", key)
		}
	}
	switch {
	case p.Mode == "":
		return nil, errors.New("no mode= (enforce, testing or none)")
	case p.MaxAge < 0:
		return nil, errors.New("no max_age= (seconds; RFC 8461 suggests weeks)")
	}
	if len(p.MX) == 0 {
		p.MX = []string{strings.ToLower(me)}
	}
	p.Body = policyBody(p)
	// The sending side's parser judges what we would serve: the domain
	// and the patterns must be DNS names it accepts.
	if err := checkPolicyNames(p); err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(p.Body))
	p.ID = hex.EncodeToString(sum[:16]) // 32 characters, the most sts-id allows
	return p, nil
}

// checkPolicyNames refuses a domain or an mx pattern that is not a DNS
// name, by parsing the policy as a sender would.
func checkPolicyNames(p *Policy) error {
	if err := checkDNSName(p.Domain); err != nil {
		return fmt.Errorf("domain %.80q: %w", p.Domain, err)
	}
	parsed, err := mtasts.Parse([]byte(p.Body))
	if err != nil {
		return err
	}
	if len(parsed.MX) != len(p.MX) {
		return fmt.Errorf("mx patterns %q do not all survive parsing", p.MX)
	}
	return nil
}

// checkDNSName accepts a host name of letters, digits and hyphens (RFC 1035
// section 2.3.4 lengths), the form MTA-STS needs for mta-sts.DOMAIN.
func checkDNSName(name string) error {
	// An mx line with the name is parsed as a sender parses patterns.
	_, err := mtasts.Parse([]byte("version: STSv1\nmode: none\nmax_age: 0\nmx: mta-sts." + name + "\n"))
	if err != nil {
		return errors.New("not a DNS name")
	}
	return nil
}

// policyBody renders the policy file (RFC 8461 section 3.2): CRLF-ended
// "key: value" lines, version first.
func policyBody(p *Policy) string {
	var b strings.Builder
	b.WriteString("version: STSv1\r\n")
	b.WriteString("mode: " + p.Mode + "\r\n")
	for _, mx := range p.MX {
		b.WriteString("mx: " + mx + "\r\n")
	}
	b.WriteString("max_age: " + strconv.Itoa(p.MaxAge) + "\r\n")
	return b.String()
}

// mtaSTS answers GET /.well-known/mta-sts.txt for the host mta-sts.DOMAIN
// (RFC 8461 section 3.3: the policy host is that name and no other).
func (h *Handler) mtaSTS(w http.ResponseWriter, r *http.Request) {
	if !allowGet(w, r) {
		return
	}
	domain, ok := strings.CutPrefix(requestHost(r), "mta-sts.")
	if !ok {
		http.NotFound(w, r)
		return
	}
	p, ok := h.set.MTASTS.Get(domain)
	if !ok || !h.set.Hosted(domain) {
		http.NotFound(w, r)
		return
	}
	// Section 3.2: the media type is text/plain.
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("Content-Length", strconv.Itoa(len(p.Body)))
	w.Write([]byte(p.Body))
}
