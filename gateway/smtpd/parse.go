package smtpd

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Limits of RFC 5321 4.5.3.1.
const (
	maxLocalPart = 64
	maxDomain    = 255
	maxPath      = 256
	maxVerb      = 16
	maxParams    = 32
	maxEnvID     = 100 // RFC 3461 4.4
	maxORcpt     = 500 // RFC 3461 4.2
)

// parseCommand splits a command line (without its line ending) into the
// upper-cased verb and the argument after the first space. ok is false when
// the verb is not a plausible SMTP verb (letters only, at most 16).
func parseCommand(line string) (verb, arg string, ok bool) {
	verb, arg, _ = strings.Cut(line, " ")
	if len(verb) == 0 || len(verb) > maxVerb {
		return "", "", false
	}
	for i := 0; i < len(verb); i++ {
		c := verb[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return "", "", false
		}
	}
	// RFC 5321 4.1.1 has exactly one SP; trailing spaces are a common
	// client slip and carry no meaning.
	return strings.ToUpper(verb), strings.TrimRight(arg, " \t"), true
}

// pathError says why a path did not parse.
type pathError struct {
	reason   string
	needUTF8 bool // the path is fine but for non-ASCII without SMTPUTF8
}

func (e *pathError) Error() string { return "bad address: " + e.reason }

func badPath(format string, args ...any) *pathError {
	return &pathError{reason: fmt.Sprintf(format, args...)}
}

// splitPathArg takes the argument of MAIL or RCPT ("FROM:<path> params"),
// checks the keyword and returns what is inside the angle brackets and the
// parameter text after it. A space after the colon is tolerated (many
// clients send one).
func splitPathArg(arg, keyword string) (inner, params string, err error) {
	if len(arg) < len(keyword)+1 || !strings.EqualFold(arg[:len(keyword)], keyword) || arg[len(keyword)] != ':' {
		return "", "", fmt.Errorf("expected %s:<address>", keyword)
	}
	rest := strings.TrimLeft(arg[len(keyword)+1:], " ")
	if rest == "" || rest[0] != '<' {
		return "", "", badPath("angle brackets required")
	}
	inQuote, escaped := false, false
	for i := 1; i < len(rest); i++ {
		c := rest[i]
		switch {
		case escaped:
			escaped = false
		case inQuote && c == '\\':
			escaped = true
		case c == '"':
			inQuote = !inQuote
		case !inQuote && c == '<':
			return "", "", badPath("unexpected '<'")
		case !inQuote && c == '>':
			params = rest[i+1:]
			if params != "" && params[0] != ' ' {
				return "", "", badPath("garbage after '>'")
			}
			return rest[1:i], strings.TrimLeft(params, " "), nil
		}
	}
	return "", "", badPath("missing '>'")
}

// parsePath validates the inside of a Path (RFC 5321 4.1.2): an optional
// source route, which is dropped (RFC 5321 3.6.1 and appendix C: servers
// SHOULD ignore it), then a Mailbox. It returns the mailbox as received.
// allowPostmaster accepts the bare "postmaster" of RCPT TO (4.1.1.3).
func parsePath(inner string, utf8OK, allowPostmaster bool) (string, error) {
	if len(inner)+2 > maxPath {
		return "", badPath("path longer than %d octets", maxPath)
	}
	if inner == "" {
		return "", badPath("empty address")
	}
	if inner[0] == '@' {
		// A-d-l ":" ; the route has no quotes, so the first ':' ends it.
		route, rest, ok := strings.Cut(inner, ":")
		if !ok {
			return "", badPath("source route without ':'")
		}
		for _, hop := range strings.Split(route, ",") {
			if len(hop) < 2 || hop[0] != '@' {
				return "", badPath("bad source route")
			}
			if err := checkDomain(hop[1:], utf8OK); err != nil {
				return "", err
			}
		}
		inner = rest
	}
	if allowPostmaster && strings.EqualFold(inner, "postmaster") {
		return inner, nil
	}
	if err := checkMailbox(inner, utf8OK); err != nil {
		return "", err
	}
	return inner, nil
}

// ParseRecipient checks addr as the server checks a RCPT TO path (with
// SMTPUTF8; a bare "postmaster" allowed) and returns the mailbox, a source
// route dropped: for tools that show what the server would do with an
// address (postern check route).
func ParseRecipient(addr string) (string, error) {
	return parsePath(addr, true, true)
}

// checkMailbox validates Local-part "@" (Domain / address-literal).
func checkMailbox(s string, utf8OK bool) error {
	at := lastUnquotedAt(s)
	if at < 0 {
		return badPath("no domain")
	}
	local, domain := s[:at], s[at+1:]
	if err := checkLocalPart(local, utf8OK); err != nil {
		return err
	}
	return checkDomain(domain, utf8OK)
}

func lastUnquotedAt(s string) int {
	at, inQuote, escaped := -1, false, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case escaped:
			escaped = false
		case inQuote && c == '\\':
			escaped = true
		case c == '"':
			inQuote = !inQuote
		case !inQuote && c == '@':
			at = i
		}
	}
	return at
}

func checkLocalPart(local string, utf8OK bool) error {
	if local == "" {
		return badPath("empty local part")
	}
	if len(local) > maxLocalPart {
		return badPath("local part longer than %d octets", maxLocalPart)
	}
	if !utf8.ValidString(local) {
		return badPath("local part is not UTF-8")
	}
	nonASCII := false
	if local[0] == '"' {
		// Quoted-string = DQUOTE *QcontentSMTP DQUOTE
		if len(local) < 2 || local[len(local)-1] != '"' {
			return badPath("unterminated quoted local part")
		}
		body := local[1 : len(local)-1]
		for i := 0; i < len(body); i++ {
			c := body[i]
			switch {
			case c == '\\':
				i++
				if i == len(body) || body[i] < 32 || body[i] > 126 {
					return badPath("bad quoted pair")
				}
			case c == '"':
				return badPath("stray quote in local part")
			case c >= 0x80:
				nonASCII = true
			case c < 32 || c > 126:
				return badPath("control character in local part")
			}
		}
	} else {
		// Dot-string = Atom *("." Atom)
		if local[0] == '.' || local[len(local)-1] == '.' || strings.Contains(local, "..") {
			return badPath("bad dots in local part")
		}
		for i := 0; i < len(local); i++ {
			c := local[i]
			switch {
			case c >= 0x80:
				nonASCII = true
			case c == '.' || isAtext(c):
			default:
				return badPath("character %q not allowed in local part", c)
			}
		}
	}
	if nonASCII && !utf8OK {
		return &pathError{reason: "non-ASCII local part without SMTPUTF8", needUTF8: true}
	}
	return nil
}

// isAtext: RFC 5322 3.2.3 atext, ASCII only.
func isAtext(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

func checkDomain(d string, utf8OK bool) error {
	if d == "" {
		return badPath("empty domain")
	}
	if len(d) > maxDomain {
		return badPath("domain longer than %d octets", maxDomain)
	}
	if d[0] == '[' {
		return checkAddressLiteral(d)
	}
	if !utf8.ValidString(d) {
		return badPath("domain is not UTF-8")
	}
	nonASCII := false
	for _, label := range strings.Split(d, ".") {
		// RFC 5321 4.1.2: sub-domain = Let-dig [Ldh-str]; a trailing dot
		// makes an empty label and is refused here.
		if label == "" || len(label) > 63 {
			return badPath("bad domain label")
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return badPath("domain label starts or ends with '-'")
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			switch {
			case c >= 0x80:
				nonASCII = true
			case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-':
			default:
				return badPath("character %q not allowed in domain", c)
			}
		}
	}
	if nonASCII && !utf8OK {
		return &pathError{reason: "non-ASCII domain without SMTPUTF8", needUTF8: true}
	}
	return nil
}

// checkAddressLiteral: RFC 5321 4.1.3.
func checkAddressLiteral(d string) error {
	if len(d) < 3 || d[len(d)-1] != ']' {
		return badPath("bad address literal")
	}
	body := d[1 : len(d)-1]
	if tag, rest, ok := strings.Cut(body, ":"); ok {
		if strings.EqualFold(tag, "IPv6") {
			a, err := netip.ParseAddr(rest)
			if err != nil || !a.Is6() || a.Zone() != "" {
				return badPath("bad IPv6 address literal")
			}
			return nil
		}
		// General-address-literal = Standardized-tag ":" 1*dcontent
		if tag == "" || rest == "" {
			return badPath("bad address literal")
		}
		for i := 0; i < len(body); i++ {
			if c := body[i]; c < 33 || c > 126 || c == '[' || c == '\\' || c == ']' {
				return badPath("bad address literal")
			}
		}
		return nil
	}
	a, err := netip.ParseAddr(body)
	if err != nil || !a.Is4() {
		return badPath("bad IPv4 address literal")
	}
	return nil
}

// esmtpParam is one "KEY[=VALUE]" of MAIL or RCPT (RFC 5321 4.1.2).
type esmtpParam struct {
	Key      string // upper case
	Value    string
	HasValue bool
}

// parseParams splits the parameter text after the path.
func parseParams(s string) ([]esmtpParam, error) {
	var out []esmtpParam
	for _, f := range strings.Fields(s) {
		if len(out) == maxParams {
			return nil, errors.New("too many parameters")
		}
		k, v, hasValue := strings.Cut(f, "=")
		if k == "" {
			return nil, fmt.Errorf("empty parameter keyword in %q", f)
		}
		for i := 0; i < len(k); i++ {
			c := k[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' && i > 0) {
				return nil, fmt.Errorf("bad parameter keyword %q", k)
			}
		}
		if hasValue {
			if v == "" {
				return nil, fmt.Errorf("empty value for %s", k)
			}
			if !utf8.ValidString(v) {
				return nil, fmt.Errorf("value of %s is not UTF-8", k)
			}
			for _, r := range v {
				if r < 33 || r == '=' || r == 127 {
					return nil, fmt.Errorf("bad character in value of %s", k)
				}
			}
		}
		out = append(out, esmtpParam{Key: strings.ToUpper(k), Value: v, HasValue: hasValue})
	}
	return out, nil
}

// decodeXtext decodes RFC 3461 4 xtext ("+" and two hex digits; lower-case
// hex is accepted too).
func decodeXtext(s string) (string, error) {
	if !strings.Contains(s, "+") {
		for i := 0; i < len(s); i++ {
			if c := s[i]; c < 33 || c > 126 || c == '=' {
				return "", fmt.Errorf("xtext: bad character %q", c)
			}
		}
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '+':
			if i+3 > len(s) {
				return "", errors.New("xtext: truncated +XX")
			}
			v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
			if err != nil {
				return "", fmt.Errorf("xtext: bad +XX: %w", err)
			}
			b.WriteByte(byte(v))
			i += 2
		case c < 33 || c > 126 || c == '=':
			return "", fmt.Errorf("xtext: bad character %q", c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

// parseMailParams turns MAIL FROM parameters into MailParams, given what
// the connection offers. It returns the reply to send on error.
func (c *conn) parseMailParams(ps []esmtpParam) (*MailParams, *Reply) {
	p := &MailParams{}
	seen := map[string]bool{}
	for _, kv := range ps {
		if seen[kv.Key] {
			return nil, NewReply(501, "5.5.4", "Error: duplicate %s parameter", kv.Key)
		}
		seen[kv.Key] = true
		unknown := NewReply(555, "5.5.4", "Error: unsupported MAIL parameter %s", kv.Key)
		switch kv.Key {
		case "SIZE": // RFC 1870
			if !kv.HasValue {
				return nil, NewReply(501, "5.5.4", "Error: SIZE needs a value")
			}
			n, err := strconv.ParseInt(kv.Value, 10, 64)
			if err != nil || n < 0 || len(kv.Value) > 20 {
				if errors.Is(err, strconv.ErrRange) {
					return nil, NewReply(552, "5.3.4", "Error: message size exceeds fixed limit")
				}
				return nil, NewReply(501, "5.5.4", "Error: bad SIZE value")
			}
			p.Size = n
		case "BODY": // RFC 6152, RFC 3030
			v := strings.ToUpper(kv.Value)
			switch {
			case v == "7BIT":
			case v == "8BITMIME" && c.opt.Enable8BitMIME:
			case v == "BINARYMIME" && c.opt.EnableBinaryMIME:
			default:
				return nil, NewReply(501, "5.5.4", "Error: unsupported BODY value")
			}
			p.Body = v
		case "SMTPUTF8": // RFC 6531 3.4
			if !c.opt.EnableSMTPUTF8 {
				return nil, unknown
			}
			if kv.HasValue {
				return nil, NewReply(501, "5.5.4", "Error: SMTPUTF8 takes no value")
			}
			p.SMTPUTF8 = true
		case "RET": // RFC 3461 4.3
			if !c.opt.EnableDSN {
				return nil, unknown
			}
			v := strings.ToUpper(kv.Value)
			if v != "FULL" && v != "HDRS" {
				return nil, NewReply(501, "5.5.4", "Error: RET must be FULL or HDRS")
			}
			p.Ret = v
		case "ENVID": // RFC 3461 4.4
			if !c.opt.EnableDSN {
				return nil, unknown
			}
			v, err := decodeXtext(kv.Value)
			if err != nil || v == "" || len(kv.Value) > maxEnvID {
				return nil, NewReply(501, "5.5.4", "Error: bad ENVID value")
			}
			p.EnvID = v
		case "AUTH": // RFC 4954 5
			if !c.authOffered() {
				return nil, unknown
			}
			v, err := decodeXtext(kv.Value)
			if err != nil || v == "" {
				return nil, NewReply(501, "5.5.4", "Error: bad AUTH value")
			}
			p.Auth = v
		case "REQUIRETLS": // RFC 8689 3: only on a TLS session
			if !c.opt.EnableRequireTLS || c.info.TLS == nil {
				return nil, unknown
			}
			if kv.HasValue {
				return nil, NewReply(501, "5.5.4", "Error: REQUIRETLS takes no value")
			}
			p.RequireTLS = true
		default:
			return nil, unknown
		}
	}
	return p, nil
}

// parseRcptParams turns RCPT TO parameters into RcptParams.
func (c *conn) parseRcptParams(ps []esmtpParam) (*RcptParams, *Reply) {
	p := &RcptParams{}
	seen := map[string]bool{}
	for _, kv := range ps {
		if seen[kv.Key] {
			return nil, NewReply(501, "5.5.4", "Error: duplicate %s parameter", kv.Key)
		}
		seen[kv.Key] = true
		switch {
		case kv.Key == "NOTIFY" && c.opt.EnableDSN: // RFC 3461 4.1
			parts := strings.Split(strings.ToUpper(kv.Value), ",")
			got := map[string]bool{}
			for _, n := range parts {
				switch n {
				case "NEVER", "SUCCESS", "FAILURE", "DELAY":
				default:
					return nil, NewReply(501, "5.5.4", "Error: bad NOTIFY value")
				}
				if got[n] {
					return nil, NewReply(501, "5.5.4", "Error: bad NOTIFY value")
				}
				got[n] = true
			}
			if got["NEVER"] && len(parts) > 1 {
				return nil, NewReply(501, "5.5.4", "Error: NOTIFY=NEVER stands alone")
			}
			p.Notify = parts
		case kv.Key == "ORCPT" && c.opt.EnableDSN: // RFC 3461 4.2
			typ, addr, ok := strings.Cut(kv.Value, ";")
			if !ok || typ == "" || addr == "" || len(kv.Value) > maxORcpt {
				return nil, NewReply(501, "5.5.4", "Error: bad ORCPT value")
			}
			dec, err := decodeXtext(addr)
			if strings.EqualFold(typ, "utf-8") {
				// RFC 6533 3: utf-8-addr-xtext; keep it as sent.
				dec, err = addr, nil
			}
			if err != nil {
				return nil, NewReply(501, "5.5.4", "Error: bad ORCPT value")
			}
			p.ORcpt = typ + ";" + dec
		default:
			return nil, NewReply(555, "5.5.4", "Error: unsupported RCPT parameter %s", kv.Key)
		}
	}
	return p, nil
}
