package reformime

import (
	"bytes"
	"sort"
	"strconv"
	"strings"

	"postern/mailbox/mime"
)

// Limits that keep a hostile message from costing more than a sane one.
const (
	maxParts      = 300 // Courier's limit (sections and multipart preambles): past it, the rest of the message is ignored
	maxDepth      = 64  // deeper nesting is kept as a leaf
	maxHeaderSize = 1 << 20
)

// Part is one MIME section as Courier's rfc2045 parser sees it, with the
// byte offsets and line counts reformime -i prints.
type Part struct {
	Parent   *Part
	Children []*Part

	StartPos  int64 // first byte of the section's header
	StartBody int64 // first byte of its body
	endPos    int64 // end of the last line seen, newline included
	endBody   int64 // end of the last line, without its newline in multiparts
	nLines    int64
	nBodyLine int64

	Header []Field // the section's header fields, unfolded later

	mime         bool // a MIME-Version field is here or inherited
	ContentType  string
	Params       []Param
	CTE          string // Content-Transfer-Encoding as written, lower-cased
	Boundary     string // for multiparts: the delimiter without "--"
	rfc822       bool   // message/rfc822 (or message/global): one child
	inHeader     bool
	closed       bool    // a multipart's final delimiter was seen
	closedEmpty  bool    // a final delimiter came before any section
	newBoundary  string  // the delimiter -r writes
	rawParams    []Param // Params before RFC 2231 decoding, for -r
	uncounted    bool    // the header ended with the message: its last field does not count
	depth        int
	headerBytes  int
	headerLines  int    // complete header lines read
	headerEnd    int64  // end of the last one, without its newline
	charset      string // inherited from the enclosing multipart
	inheritedCTE string // likewise
}

// Field is one header field as it appeared, folded lines joined.
type Field struct {
	Name  string // as written
	Value string // after the colon, folding kept, leading blanks removed
	Raw   []byte // the whole field with its line ends

	noColon bool // a line without a colon
}

// Param is one Content-Type or Content-Disposition parameter.
type Param struct {
	Name, Value string
}

// Pos returns the offsets and line counts reformime -i prints. As Courier
// does, a section inside another one does not own the line end before the
// next delimiter.
func (p *Part) Pos() (start, startBody, end, lines, bodyLines int64) {
	start, startBody, end = p.StartPos, p.StartBody, p.endPos
	lines, bodyLines = p.nLines, p.nBodyLine
	if p.Parent != nil {
		end = p.endBody
		if lines > 0 {
			lines--
		}
		if bodyLines > 0 {
			bodyLines--
		}
	}
	return
}

// IsMultipart says whether the section has a delimiter (its children).
func (p *Part) IsMultipart() bool { return p.Boundary != "" }

// Get returns the first header field called name (case-insensitive), with
// its folding joined.
func (p *Part) Get(name string) (string, bool) {
	for _, f := range p.fields() {
		if strings.EqualFold(f.Name, name) {
			return unfold(f.Value), true
		}
	}
	return "", false
}

// fields are the header fields that count: when the message ended inside
// the header, Courier never interprets the last one.
func (p *Part) fields() []Field {
	if p.uncounted && len(p.Header) > 0 {
		return p.Header[:len(p.Header)-1]
	}
	return p.Header
}

// Values returns every header field called name, in order.
func (p *Part) Values(name string) []string {
	var vs []string
	for _, f := range p.fields() {
		if strings.EqualFold(f.Name, name) {
			vs = append(vs, unfold(f.Value))
		}
	}
	return vs
}

// disposition is the Content-Disposition value and parameters, read as
// Content-Type is: the last value, parameters added up.
func (p *Part) disposition() (string, []Param) {
	var disp string
	var params []Param
	if !p.mime {
		return "", nil
	}
	for _, v := range p.Values("content-disposition") {
		d, ps := parseValue(v)
		disp = d
		params = mergeParams(params, ps)
	}
	return disp, params
}

func mergeParams(old, add []Param) []Param {
next:
	for _, a := range add {
		for i := range old {
			if old[i].Name == a.Name {
				old[i].Value = a.Value
				continue next
			}
		}
		old = append(old, a)
	}
	return old
}

// Param returns the Content-Type parameter called name.
func (p *Part) Param(name string) (string, bool) {
	for _, pr := range p.Params {
		if strings.EqualFold(pr.Name, name) {
			return pr.Value, true
		}
	}
	return "", false
}

// parser feeds the message through Courier's line machine: each line goes
// down the chain of open sections until a delimiter matches or the section
// being read is reached.
type parser struct {
	root    *Part
	nparts  int
	partial []byte // header field being collected
}

// Parse reads a whole message into its section tree. Any byte string is a
// message; broken MIME is read as Courier reads it.
func Parse(msg []byte) *Part {
	root := &Part{inHeader: true}
	pr := &parser{root: root}
	for len(msg) > 0 {
		i := bytes.IndexByte(msg, '\n')
		var line []byte
		if i < 0 {
			line, msg = msg, nil
		} else {
			line, msg = msg[:i+1], msg[i+1:]
		}
		pr.doLine(line)
	}
	pr.finish(root)
	return root
}

// finish ends the header of every section still reading one at the end
// of the message. As Courier does, the field being read when the message
// ended is not interpreted, and a line without its newline stays out.
func (pr *parser) finish(p *Part) {
	if p.inHeader {
		body := p.headerEnd
		if p.headerLines == 0 {
			body = p.endPos
		}
		// -u still shows the field that was being read.
		p.uncounted = true
		pr.endHeader(p, body, false)
	}
	for _, c := range p.Children {
		pr.finish(c)
	}
}

func (p *Part) lastChild() *Part {
	if len(p.Children) == 0 {
		return nil
	}
	return p.Children[len(p.Children)-1]
}

// update adds one line to p and every section around it.
func update(p *Part, cnt, n int64, lines int64) {
	newEnd, newBody := p.endPos+cnt, p.endPos+n
	for q := p; q != nil; q = q.Parent {
		q.endPos = newEnd
		q.endBody = newBody
		q.nLines += lines
		if !q.inHeader {
			q.nBodyLine += lines
		}
	}
}

func (pr *parser) doLine(line []byte) {
	if pr.nparts > maxParts {
		return // as Courier does: a message this complex is read no further
	}
	cnt := int64(len(line))
	complete := cnt > 0 && line[cnt-1] == '\n'
	text := line
	var nl int64
	if complete {
		text = line[:cnt-1]
		nl = 1
		if len(text) > 0 && text[len(text)-1] == '\r' {
			text = text[:len(text)-1]
			nl = 2
		}
	}
	n := cnt - nl

	p := pr.root
	for !p.inHeader {
		lc := p.lastChild()
		if (lc != nil && lc.closed) || p.closedEmpty {
			// Epilogue after the final delimiter.
			update(p, cnt, n, lines(complete))
			return
		}
		if complete && p.Boundary != "" && isDelimiter(text, p.Boundary) {
			if bytes.HasPrefix(text[2+len(p.Boundary):], []byte("--")) {
				if lc != nil {
					lc.closed = true
				} else {
					p.closedEmpty = true
				}
				update(p, cnt, cnt, lines(complete))
				return
			}
			start := p.endPos + cnt
			update(p, cnt, n, lines(complete))
			pr.addChild(p, start, true)
			return
		}
		if lc == nil {
			break
		}
		p = lc
	}

	if p.inHeader {
		if len(text) == 0 && complete {
			update(p, cnt, cnt, 1)
			pr.endHeader(p, p.endPos, true)
			return
		}
		if !complete {
			// Courier leaves a last line without its newline out of
			// the header.
			update(p, cnt, n, 0)
			return
		}
		pr.headerLine(p, line)
		p.headerLines++
		if len(text) >= 13 && strings.EqualFold(string(text[:13]), "mime-version:") {
			p.mime = true
		}
		update(p, cnt, n, 1)
		p.headerEnd = p.endBody
		return
	}
	// A line read in a multipart (its preamble or epilogue) or in one of
	// its sections leaves its line end to the delimiter that may follow.
	if p.Boundary != "" || (p.Parent != nil && p.Parent.Boundary != "") {
		update(p, cnt, n, lines(complete))
	} else {
		update(p, cnt, cnt, lines(complete))
	}
}

func lines(complete bool) int64 {
	if complete {
		return 1
	}
	return 0
}

// isDelimiter says whether a line starts "--boundary" (RFC 2046 5.1.1;
// Courier compares without case and ignores what follows).
func isDelimiter(text []byte, boundary string) bool {
	return len(text) >= 2+len(boundary) && text[0] == '-' && text[1] == '-' &&
		strings.EqualFold(string(text[2:2+len(boundary)]), boundary)
}

func (pr *parser) addChild(p *Part, start int64, inherit bool) *Part {
	c := &Part{Parent: p, StartPos: start, endPos: start, endBody: start, inHeader: true, depth: p.depth + 1}
	if inherit {
		c.mime = p.mime
		c.charset = p.charset
		c.inheritedCTE = p.CTE
		if cs, ok := p.Param("charset"); ok && cs != "" {
			c.charset = cs
		}
	}
	pr.nparts++
	p.Children = append(p.Children, c)
	return c
}

// headerLine collects one header line; a line starting with a blank
// continues the previous field.
func (pr *parser) headerLine(p *Part, line []byte) {
	if p.headerBytes > maxHeaderSize {
		return
	}
	p.headerBytes += len(line)
	if (line[0] == ' ' || line[0] == '\t') && len(p.Header) > 0 {
		f := &p.Header[len(p.Header)-1]
		f.Raw = append(f.Raw, line...)
		return
	}
	p.Header = append(p.Header, Field{Raw: append([]byte(nil), line...)})
}

// endHeader interprets the collected header and starts the body at body.
func (pr *parser) endHeader(p *Part, body int64, terminated bool) {
	p.inHeader = false
	p.StartBody = body
	var fields []Field
	for _, f := range p.Header {
		raw := string(f.Raw)
		name, value, ok := strings.Cut(raw, ":")
		if !ok {
			// Courier keeps a line without a colon as a field with no value.
			// Courier keeps the line end in the name of such a field.
			name, value = strings.ReplaceAll(raw, "\r", ""), ""
			f.noColon = true
		}
		f.Name = strings.TrimRight(name, " \t")
		f.Value = strings.TrimLeft(strings.TrimRight(value, "\r\n"), " \t")
		fields = append(fields, f)
	}
	p.Header = fields
	p.ContentType = "text/plain"
	p.CTE = p.inheritedCTE
	if vs := p.Values("content-transfer-encoding"); len(vs) > 0 {
		v := vs[len(vs)-1]
		p.CTE = strings.ToLower(strings.Map(dropSpace, stripComments(v)))
	}
	// Courier applies the MIME-Version rule when the header ends with its
	// blank line; a header cut short keeps the Content-Type it had.
	if !terminated {
		p.mime = true
	}
	if p.mime {
		// Courier reads every Content-Type field: the last one's value
		// wins, and parameters add up, a later one replacing an earlier.
		for _, v := range p.Values("content-type") {
			typ, params := parseValue(v)
			if typ != "" {
				p.ContentType = typ
			}
			p.Params = mergeParams(p.Params, params)
			_, raw := parseValueRaw(v)
			p.rawParams = mergeParams(p.rawParams, raw)
		}
	}
	if terminated && p.Parent != nil && p.Parent.ContentType == "multipart/digest" {
		if _, ok := p.Get("content-type"); !ok || !p.mime {
			p.ContentType = "message/rfc822"
		}
	}
	if strings.HasPrefix(p.ContentType, "multipart/") {
		if b, ok := p.Param("boundary"); ok && b != "" {
			p.Boundary = b
			pr.nparts++ // Courier counts the preamble as a part
		}
		return
	}
	if terminated && (p.ContentType == "message/rfc822" || p.ContentType == "message/global") {
		p.rfc822 = true
		pr.addChild(p, body, false)
	}
}

func unfold(v string) string {
	if !strings.ContainsAny(v, "\r\n") {
		return v
	}
	v = strings.ReplaceAll(v, "\r\n", "\n")
	return strings.ReplaceAll(v, "\n", "")
}

// stripComments removes (comments) outside quoted strings.
func stripComments(s string) string {
	if !strings.Contains(s, "(") {
		return s
	}
	var b strings.Builder
	depth, quoted := 0, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quoted:
			b.WriteByte(c)
			if c == '\\' && i+1 < len(s) {
				i++
				b.WriteByte(s[i])
			} else if c == '"' {
				quoted = false
			}
		case depth > 0:
			if c == '\\' {
				i++
			} else if c == '(' {
				depth++
			} else if c == ')' {
				depth--
			}
		case c == '"':
			quoted = true
			b.WriteByte(c)
		case c == '(':
			depth++
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// parseValue splits "type/sub; a=b; c="d"" into a lower-case value and its
// parameters. As Courier does, a backslash in a quoted string is kept as
// written. RFC 2231 continuations are joined and their charset converted.
func parseValue(v string) (string, []Param) {
	typ, raw := parseValueRaw(v)
	return typ, combineRFC2231(raw)
}

// parseValueRaw is parseValue without the RFC 2231 step.
func parseValueRaw(v string) (string, []Param) {
	v = stripComments(v)
	head, rest, _ := strings.Cut(v, ";")
	var raw []Param
	for rest != "" && len(raw) < 200 {
		rest = strings.TrimLeft(rest, " \t\r\n;")
		if rest == "" {
			break
		}
		eq := strings.IndexAny(rest, "=;")
		if eq < 0 {
			break
		}
		if rest[eq] == ';' {
			rest = rest[eq:]
			continue
		}
		name := strings.ToLower(strings.TrimSpace(rest[:eq]))
		rest = strings.TrimLeft(rest[eq+1:], " \t\r\n")
		var value string
		if strings.HasPrefix(rest, "\"") {
			end := -1
			for k := 1; k < len(rest); k++ {
				if rest[k] == '\\' {
					k++
				} else if rest[k] == '"' {
					end = k - 1
					break
				}
			}
			if end < 0 {
				value, rest = rest[1:], ""
			} else {
				value, rest = rest[1:1+end], rest[2+end:]
			}
			if j := strings.IndexByte(rest, ';'); j >= 0 {
				rest = rest[j:]
			} else {
				rest = ""
			}
		} else {
			j := strings.IndexByte(rest, ';')
			if j < 0 {
				j = len(rest)
			}
			// Courier reads an unquoted value as atoms and joins them.
			value, rest = strings.Map(dropSpace, rest[:j]), rest[j:]
		}
		raw = append(raw, Param{Name: name, Value: value})
	}
	return strings.ToLower(strings.Map(dropSpace, head)), raw
}

// combineRFC2231 joins "name*0", "name*1*"... into one "name" parameter,
// percent-decoding the encoded sections and converting from the charset
// named in the first one (RFC 2231 3, 4).
func combineRFC2231(raw []Param) []Param {
	var out []Param
	type piece struct {
		num     int
		encoded bool
		value   string
	}
	pieces := map[string][]piece{}
	index := map[string]int{}
	for _, pr := range raw {
		star := strings.IndexByte(pr.Name, '*')
		if star <= 0 {
			if _, dup := index[pr.Name]; !dup {
				index[pr.Name] = len(out)
				out = append(out, pr)
			}
			continue
		}
		base, suffix := pr.Name[:star], pr.Name[star+1:]
		encoded := strings.HasSuffix(suffix, "*") || suffix == ""
		suffix = strings.TrimSuffix(suffix, "*")
		num := 0
		if suffix != "" {
			n, err := strconv.Atoi(suffix)
			if err != nil || n < 0 || n > 1000 {
				continue
			}
			num = n
		}
		if _, ok := index[base]; !ok {
			index[base] = len(out)
			out = append(out, Param{Name: base})
		}
		pieces[base] = append(pieces[base], piece{num, encoded, pr.Value})
	}
	for base, ps := range pieces {
		sort.SliceStable(ps, func(i, j int) bool { return ps[i].num < ps[j].num })
		var b []byte
		charset := ""
		for i, pc := range ps {
			v := pc.value
			if pc.encoded {
				if i == 0 {
					if cs, r, ok := strings.Cut(v, "'"); ok {
						if _, r2, ok := strings.Cut(r, "'"); ok {
							charset, v = cs, r2
						}
					}
				}
				b = append(b, percentDecode(v)...)
			} else {
				b = append(b, v...)
			}
		}
		val := string(b)
		if charset != "" {
			val = mime.ToUTF8(charset, b)
		}
		out[index[base]].Value = val
	}
	return out
}

func percentDecode(s string) []byte {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s)+0 && hexval(s[i+1]) >= 0 && hexval(s[i+2]) >= 0 {
			out = append(out, byte(hexval(s[i+1])<<4|hexval(s[i+2])))
			i += 2
			continue
		}
		out = append(out, s[i])
	}
	return out
}

func dropSpace(r rune) rune {
	if r == ' ' || r == '\t' || r == '\r' || r == '\n' {
		return -1
	}
	return r
}
