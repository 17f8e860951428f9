package policy

import (
	"errors"
	"fmt"
	"strings"
)

// BCC is the "bcc" setting: archive addresses that get a copy of every
// message, or of those from or to given addresses and domains (Postfix's
// always_bcc, sender_bcc_maps and recipient_bcc_maps in one file). Lines:
//
//	always ADDRESS
//	sender PATTERN ADDRESS
//	recipient PATTERN ADDRESS
//
// PATTERN is user@domain (that address), @domain or domain (any address
// at that domain), .domain (any address at a subdomain of it, not at the
// domain itself, as in "locals"). Patterns match without regard to case.
// A nil *BCC archives nothing.
type BCC struct {
	always    []string
	sender    bccTable
	recipient bccTable
}

// bccTable maps what a pattern names to its archive addresses: exact
// addresses, domains, and ".domain" keys for subdomains.
type bccTable struct {
	addr   map[string][]string
	domain map[string][]string
}

// maxBCCArchives bounds how many archive addresses one message may get,
// so a file with thousands of matching lines cannot blow up an envelope.
const maxBCCArchives = 100

// ParseBCC reads the lines of the "bcc" setting. Every bad line is
// reported with its file and line; an empty setting gives nil.
func ParseBCC(lines []Line) (*BCC, error) {
	b := &BCC{}
	var errs []error
	n := 0
	for _, ln := range lines {
		f := strings.Fields(ln.Text)
		if len(f) == 0 {
			continue
		}
		kind := strings.ToLower(f[0])
		switch {
		case kind == "always" && len(f) == 2:
			a, err := bccAddress(f[1])
			if err != nil {
				errs = append(errs, ln.Errorf("bcc: %v", err))
				continue
			}
			b.always = appendUnique(b.always, a)
		case (kind == "sender" || kind == "recipient") && len(f) == 3:
			a, err := bccAddress(f[2])
			if err != nil {
				errs = append(errs, ln.Errorf("bcc: %v", err))
				continue
			}
			t := &b.sender
			if kind == "recipient" {
				t = &b.recipient
			}
			if err := t.add(f[1], a); err != nil {
				errs = append(errs, ln.Errorf("bcc: %v", err))
				continue
			}
		default:
			errs = append(errs, ln.Errorf("bcc: want \"always ADDRESS\", \"sender PATTERN ADDRESS\" or \"recipient PATTERN ADDRESS\", got %q", ln.Text))
			continue
		}
		n++
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if n == 0 {
		return nil, nil
	}
	return b, nil
}

// bccAddress checks an archive address: user@domain, the domain valid;
// the domain is lower-cased, the local part kept as written (RFC 5321 2.4).
func bccAddress(s string) (string, error) {
	s = strings.TrimSuffix(strings.TrimPrefix(s, "<"), ">")
	at := strings.LastIndexByte(s, '@')
	if at <= 0 || strings.ContainsAny(s, "<>\"\\,;") {
		return "", fmt.Errorf("archive address %q: want user@domain", s)
	}
	d := strings.TrimSuffix(strings.ToLower(s[at+1:]), ".")
	if err := checkDomain(d); err != nil {
		return "", fmt.Errorf("archive address %q: %v", s, err)
	}
	return s[:at] + "@" + d, nil
}

// add enters pattern p with archive address a.
func (t *bccTable) add(p, a string) error {
	p = strings.ToLower(p)
	if t.addr == nil {
		t.addr, t.domain = map[string][]string{}, map[string][]string{}
	}
	at := strings.LastIndexByte(p, '@')
	switch {
	case at > 0:
		d := strings.TrimSuffix(p[at+1:], ".")
		if err := checkDomain(d); err != nil || strings.ContainsAny(p[:at], "<>\"\\,;") {
			return fmt.Errorf("pattern %q: want user@domain, @domain, domain or .domain", p)
		}
		k := p[:at] + "@" + d
		t.addr[k] = appendUnique(t.addr[k], a)
		return nil
	case at == 0:
		p = p[1:]
	}
	key := p
	if strings.HasPrefix(p, ".") {
		p = p[1:]
	}
	p = strings.TrimSuffix(p, ".")
	if err := checkDomain(p); err != nil {
		return fmt.Errorf("pattern %q: %v", key, err)
	}
	if strings.HasPrefix(key, ".") {
		p = "." + p
	}
	t.domain[p] = appendUnique(t.domain[p], a)
	return nil
}

// match appends to out the archive addresses for address addr.
func (t *bccTable) match(out []string, addr string) []string {
	if t.addr == nil || addr == "" {
		return out
	}
	addr = strings.ToLower(strings.Trim(addr, "<>"))
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return out
	}
	d := strings.TrimSuffix(addr[at+1:], ".")
	for _, a := range t.addr[addr[:at]+"@"+d] {
		out = appendUnique(out, a)
	}
	for _, a := range t.domain[d] {
		out = appendUnique(out, a)
	}
	// Every parent domain's ".domain" entry: a.b.example matches
	// ".b.example" and ".example".
	for i := strings.IndexByte(d, '.'); i >= 0; i = strings.IndexByte(d, '.') {
		for _, a := range t.domain[d[i:]] {
			out = appendUnique(out, a)
		}
		d = d[i+1:]
	}
	return out
}

// Archives returns the archive addresses for a message from sender from
// (the envelope sender, "" for the null sender, which no sender line
// matches) to rcpts, each once, in the order always, sender, recipient
// lines; at most maxBCCArchives of them.
func (b *BCC) Archives(from string, rcpts []string) []string {
	if b == nil {
		return nil
	}
	out := append([]string(nil), b.always...)
	out = b.sender.match(out, from)
	for _, r := range rcpts {
		out = b.recipient.match(out, r)
	}
	if len(out) > maxBCCArchives {
		out = out[:maxBCCArchives]
	}
	return out
}

// appendUnique appends a unless list has it already, compared without
// regard to case: one archive copy for "Archive@x" and "archive@x".
func appendUnique(list []string, a string) []string {
	for _, x := range list {
		if strings.EqualFold(x, a) {
			return list
		}
	}
	return append(list, a)
}
