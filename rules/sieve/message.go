package sieve

import (
	"bytes"
	"io"
	stdmime "mime"
	"strings"

	gomessage "github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset" // charsets for body :text and :content

	"postern/mailbox/mime"
)

// field is one header field of the message.
type field struct {
	name  string // as written
	value string // the raw value after the colon, folding kept
	raw   string // the whole field as it stands in the message, line ends included

	// Caches: a 30-rule script asks for the same fields many times.
	dec, unf   string
	decOK      bool
	addrs      []address
	addrsValid bool
}

// unfolded is the value without line breaks and surrounding white space
// (RFC 5322 2.2.3), not decoded.
func (f *field) unfolded() string {
	if f.unf != "" || f.decOK {
		return f.unf
	}
	v := f.value
	if strings.ContainsAny(v, "\r\n") {
		var b strings.Builder
		b.Grow(len(v))
		for i := 0; i < len(v); i++ {
			if v[i] != '\r' && v[i] != '\n' {
				b.WriteByte(v[i])
			}
		}
		v = b.String()
	}
	f.unf = strings.Trim(v, " \t")
	return f.unf
}

// decoded is the value as the header test sees it: unfolded and with
// RFC 2047 encoded-words decoded to UTF-8 (RFC 5228 5.7).
func (f *field) decoded() string {
	if !f.decOK {
		f.dec = mime.DecodeHeaderValue(f.unfolded())
		f.decOK = true
	}
	return f.dec
}

// addresses is the field's address list (parseAddresses), parsed once.
func (f *field) addresses() []address {
	if !f.addrsValid {
		f.addrs = parseAddresses(f.unfolded())
		f.addrsValid = true
	}
	return f.addrs
}

// message is the message a script runs over: its header fields (which
// editheader may change) and its body.
type message struct {
	eol    string // "\r\n" or "\n", as the message has it
	fields []field
	body   []byte
	edited bool
	gen    int        // counts header edits, so that what was built from the header can tell it is stale
	parts  []bodyPart // decoded MIME parts, built on the first body test
	parsed bool
	// work counts the fields scanned since the run last charged it as
	// steps: a header test on a message of 10,000 fields costs more than
	// one on 10.
	work int
}

// maxHeaderFields bounds the fields looked at: a message of a million
// one-byte header lines must not cost a million steps per header test.
const maxHeaderFields = 10000

func newMessage(raw []byte) *message {
	m := &message{eol: "\n"}
	if i := bytes.IndexByte(raw, '\n'); i > 0 && raw[i-1] == '\r' {
		m.eol = "\r\n"
	}
	off := 0
	if bytes.HasPrefix(raw, []byte("From ")) {
		// An mbox "From " line is no header field: skip it.
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			off = i + 1
		}
	}
	for off < len(raw) {
		end := bytes.IndexByte(raw[off:], '\n')
		lineEnd := len(raw)
		if end >= 0 {
			lineEnd = off + end + 1
		}
		line := raw[off:lineEnd]
		trimmed := bytes.TrimRight(line, "\r\n")
		if len(trimmed) == 0 {
			off = lineEnd
			break // the blank line that ends the header
		}
		if (line[0] == ' ' || line[0] == '\t') && len(m.fields) > 0 {
			f := &m.fields[len(m.fields)-1]
			f.value += string(line)
			f.raw += string(line)
			off = lineEnd
			continue
		}
		colon := bytes.IndexByte(trimmed, ':')
		if colon <= 0 || !validFieldName(string(bytes.TrimRight(trimmed[:colon], " \t"))) || len(m.fields) >= maxHeaderFields {
			break // not a header line: the body starts here
		}
		m.fields = append(m.fields, field{
			name:  string(bytes.TrimRight(trimmed[:colon], " \t")),
			value: string(line[colon+1:]),
			raw:   string(line),
		})
		off = lineEnd
	}
	m.body = raw[off:]
	return m
}

// values returns the fields named name (case-insensitively), in order.
func (m *message) values(name string) []*field {
	m.work += len(m.fields)
	var out []*field
	for i := range m.fields {
		if strings.EqualFold(m.fields[i].name, name) {
			out = append(out, &m.fields[i])
		}
	}
	return out
}

// first returns the unfolded value of the first field named name.
func (m *message) first(name string) (string, bool) {
	m.work += len(m.fields)
	for i := range m.fields {
		if strings.EqualFold(m.fields[i].name, name) {
			return m.fields[i].unfolded(), true
		}
	}
	return "", false
}

// bytes returns the message as it stands after any header edits.
func (m *message) bytes(orig []byte) []byte {
	if !m.edited {
		return orig
	}
	var b bytes.Buffer
	for _, f := range m.fields {
		b.WriteString(f.raw)
		if !strings.HasSuffix(f.raw, "\n") {
			b.WriteString(m.eol)
		}
	}
	b.WriteString(m.eol)
	b.Write(m.body)
	return b.Bytes()
}

func (m *message) size(orig []byte) int {
	if !m.edited {
		return len(orig)
	}
	n := len(m.eol) + len(m.body)
	for _, f := range m.fields {
		n += len(f.raw)
	}
	return n
}

// addField adds a header field at the top, or at the end with last
// (RFC 5293 section 4). The value is RFC 2047-encoded when it is not
// ASCII, and line breaks in it become spaces.
func (m *message) addField(name, value string, last bool) {
	value = strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(value)
	if !isASCII(value) {
		value = stdmime.QEncoding.Encode("utf-8", value)
	}
	f := field{name: name, value: " " + value, raw: name + ": " + value + m.eol}
	if last {
		m.fields = append(m.fields, f)
	} else {
		m.fields = append([]field{f}, m.fields...)
	}
	m.edited = true
	m.gen++
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// address is one address of a header or the envelope, split for the
// address parts of RFC 5228 2.7.4.
type address struct {
	all, local, domain string
}

// parseAddresses returns the addresses of a header value; group names are
// skipped. A value with no address at all is returned whole as :all, as
// RFC 5228 5.1 allows for unparsable headers.
func parseAddresses(value string) []address {
	list := mime.ParseAddressList(value)
	var out []address
	for _, a := range list {
		if a.Group {
			continue
		}
		local, domain := a.Mailbox, a.Host
		if local == mime.MissingMailbox {
			local = ""
		}
		if domain == mime.MissingDomain {
			domain = ""
		}
		all := local
		if domain != "" {
			all = local + "@" + domain
		}
		out = append(out, address{all: all, local: local, domain: domain})
	}
	if len(list) == 0 && strings.TrimSpace(value) != "" {
		out = append(out, address{all: strings.TrimSpace(value)})
	}
	return out
}

// envelopeAddress splits an envelope address; the null path "<>" or ""
// is the empty string for every address part (RFC 5228 5.4).
func envelopeAddress(s string) address {
	s = strings.TrimSpace(s)
	s = strings.TrimSuffix(strings.TrimPrefix(s, "<"), ">")
	if s == "" {
		return address{}
	}
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return address{all: s, local: s}
	}
	return address{all: s, local: s[:at], domain: s[at+1:]}
}

// validAddress reports whether s is one mail address with a local part
// and a domain: what redirect and vacation :from need.
func validAddress(s string) bool {
	if strings.ContainsAny(s, "\r\n\x00") {
		return false
	}
	list := mime.ParseAddressList(s)
	if len(list) != 1 || list[0].Group {
		return false
	}
	a := list[0]
	return a.Mailbox != "" && a.Mailbox != mime.MissingMailbox && a.Host != "" && a.Host != mime.MissingDomain
}

// bareAddress returns "local@domain" of an address written with or
// without a display name.
func bareAddress(s string) string {
	for _, a := range parseAddresses(s) {
		if a.domain != "" {
			return a.all
		}
	}
	return strings.TrimSpace(s)
}

// bodyPart is one leaf MIME part, decoded to UTF-8 text.
type bodyPart struct {
	ctype string // "type/subtype", lower case
	text  string
}

// Bounds on the MIME structure the body test walks.
const (
	maxBodyParts = 500
	maxBodyDepth = 20
)

// bodyParts decodes the message's MIME parts once (RFC 5173 5.2): transfer
// encodings and charsets are undone; a message go-message cannot read is
// one text/plain part.
func (m *message) bodyParts(orig []byte) []bodyPart {
	if m.parsed {
		return m.parts
	}
	m.parsed = true
	e, err := gomessage.Read(bytes.NewReader(m.bytes(orig)))
	if e == nil || err != nil && !gomessage.IsUnknownCharset(err) && !gomessage.IsUnknownEncoding(err) {
		m.parts = []bodyPart{{ctype: "text/plain", text: string(m.body)}}
		return m.parts
	}
	m.walk(e, 0)
	return m.parts
}

func (m *message) walk(e *gomessage.Entity, depth int) {
	if len(m.parts) >= maxBodyParts || depth > maxBodyDepth {
		return
	}
	ctype, _, err := e.Header.ContentType()
	if err != nil || ctype == "" {
		ctype = "text/plain"
	}
	ctype = strings.ToLower(ctype)
	if mr := e.MultipartReader(); mr != nil {
		for len(m.parts) < maxBodyParts {
			p, err := mr.NextPart()
			if err != nil && p == nil {
				return
			}
			if p != nil {
				m.walk(p, depth+1)
			}
		}
		return
	}
	body, _ := io.ReadAll(e.Body)
	m.parts = append(m.parts, bodyPart{ctype: ctype, text: string(body)})
	if ctype == "message/rfc822" {
		if inner, err := gomessage.Read(bytes.NewReader(body)); inner != nil && (err == nil || gomessage.IsUnknownCharset(err)) {
			m.walk(inner, depth+1)
		}
	}
}

// stripTags turns HTML into its text, roughly: inline tags vanish, other
// tags and line breaks become one space, script and style elements go,
// entities stay. Enough for :text keys.
func stripTags(s string) string {
	var b strings.Builder
	lower := strings.ToLower(s)
	space := func() {
		if b.Len() > 0 && !strings.HasSuffix(b.String(), " ") {
			b.WriteByte(' ')
		}
	}
	for i := 0; i < len(s); {
		c := s[i]
		if c != '<' {
			if c == ' ' || c == '\t' || c == '\r' || c == '\n' {
				space()
			} else {
				b.WriteByte(c)
			}
			i++
			continue
		}
		for _, skip := range []string{"<script", "<style"} {
			if strings.HasPrefix(lower[i:], skip) {
				end := strings.Index(lower[i:], "</"+skip[1:])
				if end < 0 {
					return b.String()
				}
				i += end
			}
		}
		end := strings.IndexByte(s[i:], '>')
		if end < 0 {
			break
		}
		if !inlineTag(lower[i+1 : i+end]) {
			space()
		}
		i += end + 1
	}
	return strings.TrimSpace(b.String())
}

// inlineTag reports whether a tag (its text between < and >) is an inline
// element, whose boundaries do not separate words.
func inlineTag(tag string) bool {
	tag = strings.TrimPrefix(tag, "/")
	name, _, _ := strings.Cut(tag, " ")
	switch strings.TrimSuffix(name, "/") {
	case "a", "b", "i", "u", "s", "em", "strong", "span", "font", "small", "big", "code", "sub", "sup", "tt", "abbr":
		return true
	}
	return false
}
