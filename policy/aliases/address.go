package aliases

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Bounds on one address. RFC 5321 section 4.5.3.1 limits a path to 256
// octets; we allow a little more so that a display name or angle brackets
// written around it do not count, and refuse anything longer.
const (
	maxAddressLen = 320
	maxDomainLen  = 255
)

var errBadAddress = errors.New("bad address")

// splitList splits an address list at commas that are not inside double
// quotes or angle brackets, so `"Smith, J" <j@x>` stays one item. Items are
// trimmed; empty items (from "a,,b" or a trailing comma) are dropped.
func splitList(s string) []string {
	var items []string
	inQuote, angle, start := false, 0, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && inQuote && i+1 < len(s):
			i++ // a quoted-pair: the next byte is literal
		case c == '"':
			inQuote = !inQuote
		case c == '<' && !inQuote:
			angle++
		case c == '>' && !inQuote && angle > 0:
			angle--
		case c == ',' && !inQuote && angle == 0:
			if item := strings.TrimSpace(s[start:i]); item != "" {
				items = append(items, item)
			}
			start = i + 1
		}
	}
	if item := strings.TrimSpace(s[start:]); item != "" {
		items = append(items, item)
	}
	return items
}

// indexUnquoted returns the index of the first c in s outside double quotes,
// or -1.
func indexUnquoted(s string, c byte) int {
	inQuote := false
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\' && inQuote:
			i++
		case s[i] == '"':
			inQuote = !inQuote
		case s[i] == c && !inQuote:
			return i
		}
	}
	return -1
}

// lastIndexUnquoted returns the index of the last c in s outside double
// quotes, or -1.
func lastIndexUnquoted(s string, c byte) int {
	last := -1
	inQuote := false
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\' && inQuote:
			i++
		case s[i] == '"':
			inQuote = !inQuote
		case s[i] == c && !inQuote:
			last = i
		}
	}
	return last
}

// canonicalAddress checks one address as written in an alias file and
// returns it in canonical form: the angle-bracketed part if there is one
// (`Name <a@b>` → `a@b`), the domain lower-cased and without a trailing
// dot. A bare local part (no "@") names a local account. The local part
// keeps its case: only the receiving host may fold it (RFC 5321 section
// 2.4); keys and duplicate checks fold it separately.
func canonicalAddress(s string) (string, error) {
	s = strings.TrimSpace(s)
	if open := indexUnquoted(s, '<'); open >= 0 {
		end := strings.LastIndexByte(s, '>')
		if end < open || strings.TrimSpace(s[end+1:]) != "" {
			return "", fmt.Errorf("%w %q: unbalanced angle brackets", errBadAddress, s)
		}
		s = strings.TrimSpace(s[open+1 : end])
	}
	if s == "" {
		return "", fmt.Errorf("%w: empty", errBadAddress)
	}
	if len(s) > maxAddressLen {
		return "", fmt.Errorf("%w: longer than %d bytes", errBadAddress, maxAddressLen)
	}
	if !utf8.ValidString(s) {
		return "", fmt.Errorf("%w %q: not UTF-8", errBadAddress, s)
	}
	local, domain := s, ""
	if at := lastIndexUnquoted(s, '@'); at >= 0 {
		local, domain = s[:at], s[at+1:]
		if domain == "" {
			return "", fmt.Errorf("%w %q: empty domain", errBadAddress, s)
		}
	}
	if err := checkLocalPart(local); err != nil {
		return "", fmt.Errorf("%w %q: %v", errBadAddress, s, err)
	}
	if domain == "" {
		return local, nil
	}
	d, err := canonicalDomain(domain)
	if err != nil {
		return "", fmt.Errorf("%w %q: %v", errBadAddress, s, err)
	}
	return local + "@" + d, nil
}

// checkLocalPart accepts a dot-atom-like local part (RFC 5322 section
// 3.4.1, with UTF-8 allowed per RFC 6531) or a quoted string. It refuses
// what would make the address ambiguous in a list or a path: white space,
// control characters, specials outside quotes, and a leading period (Courier
// reserves local parts starting with "." for itself).
func checkLocalPart(local string) error {
	if local == "" {
		return errors.New("empty local part")
	}
	if strings.HasPrefix(local, ".") {
		return errors.New("local part starts with a period")
	}
	if local[0] == '"' {
		if len(local) < 2 || local[len(local)-1] != '"' {
			return errors.New("unterminated quoted local part")
		}
		for i := 1; i < len(local)-1; i++ {
			c := local[i]
			if c < 0x20 || c == 0x7f {
				return errors.New("control character in local part")
			}
			if c == '\\' {
				i++
			} else if c == '"' {
				return errors.New("stray quote in local part")
			}
		}
		return nil
	}
	for _, r := range local {
		if r < 0x20 || r == 0x7f || r == ' ' || r == '\t' || strings.ContainsRune(`"(),:;<>@[\]`, r) {
			return fmt.Errorf("character %q not allowed in local part", r)
		}
	}
	return nil
}

// canonicalDomain checks a domain or address literal and lower-cases it,
// dropping one trailing dot (the root) as DNS does.
func canonicalDomain(domain string) (string, error) {
	d := strings.ToLower(strings.TrimSuffix(domain, "."))
	if d == "" || len(d) > maxDomainLen {
		return "", errors.New("bad domain length")
	}
	if strings.HasPrefix(d, "[") {
		if !strings.HasSuffix(d, "]") || strings.ContainsAny(d[1:len(d)-1], "[]\\ \t") {
			return "", errors.New("bad address literal")
		}
		return d, nil
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" {
			return "", errors.New("empty label in domain")
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return "", errors.New("label starts or ends with a hyphen")
		}
		for _, r := range label {
			ok := r == '-' || r == '_' || (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r >= 0x80
			if !ok {
				return "", fmt.Errorf("character %q not allowed in domain", r)
			}
		}
	}
	return d, nil
}

// foldKey is the form in which names are compared: Courier's alias names
// are case-insensitive, the whole address folded.
func foldKey(canonical string) string { return strings.ToLower(canonical) }

// splitAddress splits a canonical address at its last unquoted "@".
func splitAddress(addr string) (local, domain string, hasDomain bool) {
	if at := lastIndexUnquoted(addr, '@'); at >= 0 {
		return addr[:at], addr[at+1:], true
	}
	return addr, "", false
}

// SplitExtension splits a local part at the first of the separator bytes:
// "user-foo-bar" with "-" gives ("user", "foo-bar"); with "+-" the first
// "+" or "-" wins. With no separator present ext is "" and base is local.
// Courier's separator is "-" (dot-courier(5)); "+" is the common
// alternative. Accounts whose names contain a separator are found with
// ExtensionCandidates instead.
func SplitExtension(local, separators string) (base, ext string) {
	if separators == "" {
		return local, ""
	}
	if i := strings.IndexAny(local, separators); i > 0 {
		return local[:i], local[i+1:]
	}
	return local, ""
}

// Split is one way of reading a local part as account and extension.
type Split struct {
	Base, Ext string
}

// ExtensionCandidates lists the ways local splits into an account and an
// extension, longest account first, the whole local part (no extension)
// leading: "a-b-c" gives {a-b-c ""}, {a-b c}, {a b-c}. This is the order in
// which Courier's local delivery looks for an account when the local part
// has dashes, so "mary-ann-lists" still reaches an account "mary-ann".
func ExtensionCandidates(local, separators string) []Split {
	out := []Split{{Base: local}}
	if separators == "" {
		return out
	}
	for i := len(local) - 1; i > 0; i-- {
		if strings.IndexByte(separators, local[i]) >= 0 {
			out = append(out, Split{Base: local[:i], Ext: local[i+1:]})
		}
	}
	return out
}

// DotCourierNames lists, in lookup order, the delivery-instruction names
// dot-courier(5) consults for an extension: for "foo-bar" they are
// ".courier-foo-bar", ".courier-foo-default", ".courier-default"; for ""
// only ".courier". The extension is lower-cased and its periods become
// colons, as Courier names those files.
func DotCourierNames(ext string) []string {
	if ext == "" {
		return []string{".courier"}
	}
	ext = strings.ReplaceAll(strings.ToLower(ext), ".", ":")
	names := []string{".courier-" + ext}
	for i := len(ext) - 1; i > 0; i-- {
		if ext[i] == '-' {
			names = append(names, ".courier-"+ext[:i]+"-default")
		}
	}
	return append(names, ".courier-default")
}
