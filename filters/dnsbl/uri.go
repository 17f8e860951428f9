package dnsbl

import (
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"golang.org/x/net/html"
	"golang.org/x/net/idna"
	"golang.org/x/net/publicsuffix"

	"postern/filters"
	"postern/mailbox/mime"
)

// Bounds of the body link extraction (the "body" subject): a hostile
// message must cost no more than this whatever its size or shape.
const (
	DefaultBodyDomains = 20      // distinct domains looked up per message
	MaxBodyDomains     = 100     // the largest bodydomains setting
	maxBodyText        = 1 << 20 // decoded text examined, all parts together
	maxBodyParts       = 100     // text parts examined
	maxHostLen         = 253
)

// DefaultBodySkip are registered domains that URI lists never list and
// that legitimate mail links to all the time (markup namespaces, the large
// platforms, RFC 2606 examples): skipping them saves queries. The bodyskip
// setting adds to them.
var DefaultBodySkip = []string{
	"w3.org", "xmlsoap.org", "schemas.microsoft.com", "microsoft.com", "outlook.com",
	"google.com", "gmail.com", "googleapis.com", "apple.com", "icloud.com",
	"youtube.com", "facebook.com", "instagram.com", "linkedin.com", "twitter.com",
	"x.com", "wikipedia.org", "example.com", "example.org", "example.net",
}

// BodyOptions bound and filter BodyDomains.
type BodyOptions struct {
	MaxDomains int             // at most this many values; DefaultBodyDomains when 0
	Skip       map[string]bool // registered domains (lower case, ASCII) left out
}

// BodyDomains returns the registered domains (and IP address literals) of
// the links in the text/plain and text/html parts of msg, in order of
// appearance, without duplicates, at most opts.MaxDomains of them. The
// transfer encodings and charsets are undone; in HTML the href, src,
// action, background and data attributes and the text are read, entities
// decoded; in plain text
// URL-looking tokens (scheme://host, including the hxxp:// defanged form)
// and bare www. hosts. Hosts are lower-cased, IDNs converted to punycode
// (the form the lists publish), and reduced to the registered domain by the
// public suffix list, which is what SURBL, URIBL and Spamhaus DBL list.
// A message that cannot be parsed gives what could be read.
func BodyDomains(msg filters.Message, opts BodyOptions) []string {
	if opts.MaxDomains <= 0 {
		opts.MaxDomains = DefaultBodyDomains
	}
	root, err := mime.ParseStructure(msg, msg.Size())
	if err != nil || root == nil {
		return nil
	}
	c := &collector{opts: opts, seen: map[string]bool{}}
	budget := maxBodyText
	parts := 0
	var walk func(p *mime.Part)
	walk = func(p *mime.Part) {
		if c.full() || budget <= 0 || parts >= maxBodyParts {
			return
		}
		switch {
		case p.Message != nil:
			walk(p.Message)
		case len(p.Children) > 0:
			for _, ch := range p.Children {
				walk(ch)
			}
		case p.Type == "text" && (p.Subtype == "plain" || p.Subtype == "html") && !p.Truncated:
			parts++
			leaf := *p
			// Encoded text is at most 3x its decoded size (QP); read no
			// more than the budget can use.
			leaf.End = min(leaf.End, leaf.BodyStart+int64(budget)*3+1024)
			text, err := leaf.Text(msg)
			if err != nil {
				return
			}
			if len(text) > budget {
				text = text[:budget]
			}
			budget -= len(text)
			if p.Subtype == "html" {
				c.scanHTML(text)
			} else {
				c.scanText(text)
			}
		}
	}
	walk(root)
	return c.out
}

type collector struct {
	opts BodyOptions
	seen map[string]bool
	out  []string
}

func (c *collector) full() bool { return len(c.out) >= c.opts.MaxDomains }

func (c *collector) add(host string) {
	if c.full() {
		return
	}
	d := RegisteredDomain(host)
	if d == "" || c.seen[d] || c.opts.Skip[d] {
		return
	}
	c.seen[d] = true
	c.out = append(c.out, d)
}

// scanHTML reads links from attributes and from the text (a URL written
// as text is as clickable in most clients, and spammers write both).
func (c *collector) scanHTML(s string) {
	z := html.NewTokenizer(strings.NewReader(s))
	for !c.full() {
		switch z.Next() {
		case html.ErrorToken:
			return
		case html.TextToken:
			c.scanText(string(z.Text()))
		case html.StartTagToken, html.SelfClosingTagToken:
			_, hasAttr := z.TagName()
			for hasAttr {
				var key, val []byte
				key, val, hasAttr = z.TagAttr()
				switch string(key) {
				case "href", "src", "action", "background", "data":
					c.scanLink(string(val))
				}
			}
		}
	}
}

// scanLink handles an attribute value: a URL, maybe relative (no host) or
// of another scheme (mailto:, cid:), which give nothing.
func (c *collector) scanLink(v string) {
	v = strings.TrimSpace(v)
	if v == "" {
		return
	}
	if h, ok := hostAfterScheme(v); ok {
		c.add(h)
		return
	}
	if strings.HasPrefix(v, "//") { // scheme-relative
		c.add(hostPart(v[2:]))
		return
	}
	if len(v) > 4 && strings.EqualFold(v[:4], "www.") {
		c.add(hostPart(v))
	}
}

// scanText finds scheme://host and www.host tokens in text. Each kind of
// token is searched for once past the previous one, so the scan is linear
// in the text however many tokens it holds.
func (c *collector) scanText(s string) {
	nextScheme, nextWWW := -2, -2 // absolute positions; -2: not searched yet, -1: none
	for i := 0; i < len(s) && !c.full(); {
		if nextScheme != -1 && nextScheme < i {
			nextScheme = indexFrom(s, i, func(t string) int { return strings.Index(t, "://") })
		}
		if nextWWW != -1 && nextWWW < i {
			nextWWW = indexFrom(s, i, func(t string) int { return indexFold(t, "www.") })
		}
		switch {
		case nextScheme < 0 && nextWWW < 0:
			return
		case nextScheme >= 0 && (nextWWW < 0 || nextScheme <= nextWWW):
			at := nextScheme
			// The scheme is the letters before "://": http, https, hxxp,
			// ftp ... anything alphabetic, as defanging varies.
			k := at
			for k > 0 && k > at-10 && isSchemeChar(s[k-1]) {
				k--
			}
			if k < at {
				c.add(hostPart(s[at+3:]))
			}
			i = at + 3
		default:
			at := nextWWW
			if at == 0 || !isHostChar(s[at-1]) {
				c.add(hostPart(s[at:]))
			}
			i = at + 4
		}
	}
}

// indexFrom applies index to s[from:] and returns an absolute position,
// or -1.
func indexFrom(s string, from int, index func(string) int) int {
	if j := index(s[from:]); j >= 0 {
		return from + j
	}
	return -1
}

// indexFold is strings.Index for an ASCII sub, ignoring case.
func indexFold(s, sub string) int {
	first := sub[0]
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i]|0x20 == first && strings.EqualFold(s[i:i+len(sub)], sub) {
			return i
		}
	}
	return -1
}

func isSchemeChar(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b == '*' || b == '+'
}

func isHostChar(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '-' || b == '.' || b >= 0x80
}

// hostAfterScheme returns the host of an absolute URL "scheme://...".
func hostAfterScheme(v string) (string, bool) {
	i := strings.Index(v, "://")
	if i <= 0 || i > 10 {
		return "", false
	}
	for k := 0; k < i; k++ {
		if !isSchemeChar(v[k]) {
			return "", false
		}
	}
	return hostPart(v[i+3:]), true
}

// hostPart returns the host at the start of s (the authority of a URL,
// or a bare www. host): userinfo dropped, port dropped, percent-encoding
// undone, IPv6 literals kept in their brackets.
func hostPart(s string) string {
	// An authority longer than this is no link anyone follows; the bound
	// keeps a scan of text full of "://" linear.
	const maxAuthority = 1024
	end := -1
	for i := 0; i < len(s) && i <= maxAuthority; i++ {
		b := s[i]
		if b == '/' || b == '?' || b == '#' || b == '\\' || b <= ' ' || b == '"' || b == '\'' ||
			b == '<' || b == '>' || b == '(' || b == ')' || b == ',' || b == ';' || b == '|' {
			end = i
			break
		}
	}
	if end < 0 {
		if len(s) > maxAuthority {
			return ""
		}
		end = len(s)
	}
	auth := s[:end]
	if at := strings.LastIndexByte(auth, '@'); at >= 0 {
		auth = auth[at+1:] // http://paypal.com@evil.example/ goes to evil.example
	}
	if strings.HasPrefix(auth, "[") {
		if k := strings.IndexByte(auth, ']'); k > 0 {
			return auth[:k+1]
		}
		return ""
	}
	if k := strings.IndexByte(auth, ':'); k >= 0 {
		auth = auth[:k]
	}
	if strings.Contains(auth, "%") {
		if u, err := url.PathUnescape(auth); err == nil {
			auth = u
		}
	}
	// Sentence punctuation after a URL in text is not part of it.
	return strings.TrimRight(auth, ".!:*")
}

// RegisteredDomain reduces a link host to what URI lists are asked about:
// an IP address literal (IPv4 also in the single-number form browsers
// accept, http://3232235777/) as the address, a host name as its
// registered domain (public suffix + 1 label, golang.org/x/net/publicsuffix),
// lower case, IDNs in punycode. It returns "" for what is no Internet host
// (no dot, a bare public suffix, invalid characters).
func RegisteredDomain(host string) string {
	host = strings.TrimSuffix(strings.TrimSpace(host), ".")
	if host == "" || len(host) > maxHostLen {
		return ""
	}
	if strings.HasPrefix(host, "[") {
		ip, err := netip.ParseAddr(strings.Trim(host, "[]"))
		if err != nil {
			return ""
		}
		return ip.Unmap().String()
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return ip.Unmap().String() // an IPv6 link host is bracketed; this is a value already reduced
	}
	if n, err := strconv.ParseUint(host, 0, 32); err == nil && n > 0xffffff {
		return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}).String()
	}
	ascii, err := idna.Lookup.ToASCII(host)
	if err != nil {
		// idna's Lookup profile refuses "_" and some odd forms; try the
		// plain lower-case form before giving up.
		ascii = strings.ToLower(host)
	}
	d := NormalizeDomain(ascii)
	if d == "" || !strings.Contains(d, ".") {
		return ""
	}
	for i := 0; i < len(d); i++ {
		if d[i] >= 0x80 {
			return "" // not convertible to punycode: no list has it
		}
	}
	tld := d[strings.LastIndexByte(d, '.')+1:]
	if !isTLD(tld) {
		return "" // "1.2.3", "file.txt"-ish tokens are not hosts
	}
	reg, err := publicsuffix.EffectiveTLDPlusOne(d)
	if err != nil {
		return ""
	}
	return reg
}

// isTLD: letters only, or an IDN TLD in punycode.
func isTLD(t string) bool {
	if strings.HasPrefix(t, "xn--") && len(t) > 4 {
		return true
	}
	if len(t) < 2 {
		return false
	}
	for i := 0; i < len(t); i++ {
		if t[i] < 'a' || t[i] > 'z' {
			return false
		}
	}
	return true
}
