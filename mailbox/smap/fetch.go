package smap

import (
	"errors"
	"io"
	"strconv"
	"strings"
	"time"

	"postern/mailbox/maildir"
	"postern/mailbox/reformime"
)

// chunkSize is how much message data one "{n/total}" block carries, as
// Courier's SMAP_BUFSIZ.
const chunkSize = 8192

// maxParse bounds a message read into memory for its MIME structure.
const maxParse = 64 << 20

var errInvalid = errors.New("Invalid argument")

// cachedMessage is the last message FETCH read, with its structure.
type cachedMessage struct {
	key  string
	data []byte
	root *reformime.Part
}

// message returns message index i's text and structure.
func (sess *session) message(i int) (*cachedMessage, error) {
	m := &sess.cur.msgs[i]
	if c := sess.cache; c != nil && c.key == m.key {
		return c, nil
	}
	f, err := sess.cur.f.Open(m.key)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxParse+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxParse {
		return nil, errors.New("File too large")
	}
	c := &cachedMessage{key: m.key, data: data, root: reformime.Parse(data)}
	sess.cache = c
	return c, nil
}

// fetchItem is one CONTENTS=ENTITY[mimeid](headers) of FETCH.
type fetchItem struct {
	peek   bool
	entity string
	hdrs   string // upper case, comma separated; "" is every header
	mimeid string
}

// Attribute bits of FETCH, printed in this order on one line.
const (
	attrFlags = 1 << iota
	attrKeywords
	attrUID
	attrSize
	attrInternalDate
)

// cmdFetch: FETCH msgset item... (smapfetch). Items are the attributes
// FLAGS, KEYWORDS, UID, SIZE, INTERNALDATE (one line per message, after
// everything else) and CONTENTS[.PEEK]=ENTITY[mimeid](headers), each sent
// for the whole set in turn. Unknown items are ignored, as Courier does.
func (sess *session) cmdFetch(_ string, w *words) {
	set, p, _, ok := parseMsgSet(w)
	if !ok {
		// Courier goes on with no items: nothing but the OK.
		sess.writeString("+OK Message retrieved.\n")
		return
	}
	attrs := 0
	for ; p != ""; p = w.next() {
		eq := strings.IndexByte(p, '=')
		if eq < 0 {
			switch upper(p) {
			case "UID":
				attrs |= attrUID
			case "SIZE":
				attrs |= attrSize
			case "FLAGS":
				attrs |= attrFlags
			case "KEYWORDS":
				attrs |= attrKeywords
			case "INTERNALDATE":
				attrs |= attrInternalDate
			}
			continue
		}
		name, entity := upper(p[:eq]), p[eq+1:]
		if name != "CONTENTS" && name != "CONTENTS.PEEK" {
			continue
		}
		it := fetchItem{peek: name == "CONTENTS.PEEK"}
		if k := strings.LastIndexByte(entity, '('); k >= 0 {
			it.hdrs = entity[k+1:]
			entity = entity[:k]
			if e := strings.LastIndexByte(it.hdrs, ')'); e >= 0 {
				it.hdrs = it.hdrs[:e]
			}
			it.hdrs = upper(it.hdrs)
		}
		if k := strings.LastIndexByte(entity, '['); k >= 0 {
			it.mimeid = entity[k+1:]
			entity = entity[:k]
			if e := strings.LastIndexByte(it.mimeid, ']'); e >= 0 {
				it.mimeid = it.mimeid[:e]
			}
		}
		it.entity = upper(entity)
		if err := sess.cur.each(set, func(i int) error { return sess.fetchContents(i, &it) }); err != nil {
			sess.writeString("-ERR Cannot retrieve message: " + errText2(err) + "\n")
			return
		}
	}
	if attrs != 0 {
		sess.cur.each(set, func(i int) error {
			sess.writeString(sess.attrLine(i, attrs))
			return nil
		})
	}
	sess.writeString("+OK Message retrieved.\n")
}

// errText2 is errText with the errors of message reading.
func errText2(err error) string {
	if errors.Is(err, errInvalid) {
		return "Invalid argument"
	}
	if err.Error() == "File too large" {
		return "File too large"
	}
	return errText(err)
}

func (sess *session) attrLine(i int, attrs int) string {
	m := &sess.cur.msgs[i]
	var b strings.Builder
	b.WriteString("* FETCH " + strconv.Itoa(i+1))
	if attrs&attrFlags != 0 {
		b.WriteString(" FLAGS=" + flagWords(m.flags))
	}
	if attrs&attrKeywords != 0 {
		b.WriteString(` "KEYWORDS=` + quoteInner(strings.Join(m.keywords, ",")) + `"`)
	}
	if attrs&attrUID != 0 {
		b.WriteString(` "UID=` + quoteInner(m.key) + `"`)
	}
	if attrs&attrSize != 0 {
		b.WriteString(" SIZE=" + strconv.FormatInt(m.size, 10))
	}
	if attrs&attrInternalDate != 0 {
		if t, err := sess.cur.f.InternalDate(m.key); err == nil {
			b.WriteString(` "INTERNALDATE=` + rfc822Date(t) + `"`)
		}
	}
	b.WriteString("\n")
	return b.String()
}

// rfc822Date is Courier's rfc822_mkdate: local time with a numeric zone.
func rfc822Date(t time.Time) string {
	return t.Local().Format("Mon, 02 Jan 2006 15:04:05 -0700")
}

// fetchContents sends one CONTENTS item of message index i, then marks it
// seen unless PEEK.
func (sess *session) fetchContents(i int, it *fetchItem) error {
	msg, err := sess.message(i)
	if err != nil {
		return err
	}
	var part *reformime.Part
	if it.mimeid != "" {
		if part = findMIME(msg.root, it.mimeid); part == nil {
			return errInvalid
		}
	}
	switch it.entity {
	case "MIME":
		sess.mimeTree(i, msg, msg.root, it.hdrs)
	case "HEADERS", "RAWHEADERS":
		sess.headers(i, msg, part, it.hdrs, it.entity)
	case "BODY", "ALL":
		start, end := bodyRange(msg, part, it.entity == "ALL")
		sess.sendBlocks(i, msg.data[start:end], int64(end-start))
	case "BODY.DECODED":
		p := part
		end := int64(len(msg.data))
		if p == nil {
			p = msg.root
		} else {
			_, _, end, _, _ = p.Pos()
		}
		_, startBody, _, _, _ := p.Pos()
		if startBody > end {
			startBody = end
		}
		est := end - startBody
		if len(p.CTE) == 6 && upper(p.CTE) == "BASE64" {
			est = est / 4 * 3
		}
		sess.sendBlocks(i, reformime.DecodeBody(p.CTE, msg.data[startBody:end]), est)
	}
	if !it.peek && !sess.cur.readOnly() {
		m := &sess.cur.msgs[i]
		if !strings.ContainsRune(m.flags, maildir.FlagSeen) {
			flags := sortedFlags(m.flags + string(maildir.FlagSeen))
			if err := sess.cur.f.SetFlags(m.key, flags, m.keywords); err == nil {
				m.flags = flags
				sess.cur.dirty = true
				sess.writeString(fetchFlagsLine(i, m, true, false))
			} else if !isGone(err) {
				sess.log.Warn("smap: set seen", "key", m.key, "err", err)
			}
		}
	}
	return nil
}

// bodyRange is the byte range BODY (after the header) or ALL (with it)
// sends, of the whole message or of a part.
func bodyRange(msg *cachedMessage, part *reformime.Part, all bool) (int, int) {
	if part == nil {
		if all {
			return 0, len(msg.data)
		}
		_, startBody, _, _, _ := msg.root.Pos()
		return clamp(startBody, len(msg.data)), len(msg.data)
	}
	start, startBody, end, _, _ := part.Pos()
	e := clamp(end, len(msg.data))
	if all {
		return min(clamp(start, len(msg.data)), e), e
	}
	return min(clamp(startBody, len(msg.data)), e), e
}

func clamp(v int64, n int) int {
	if v < 0 {
		return 0
	}
	if v > int64(n) {
		return n
	}
	return int(v)
}

// sendBlocks writes message data as Courier does: "{n/est} FETCH k
// CONTENTS", the first n bytes, then "n" and the next n bytes for each
// further block of at most 8192, and an empty line at the end. Nothing to
// send is "{.0} FETCH k CONTENTS" and a ".".
func (sess *session) sendBlocks(i int, data []byte, est int64) {
	num := strconv.Itoa(i + 1)
	if len(data) == 0 {
		sess.writeString("{.0} FETCH " + num + " CONTENTS\n.\n")
		return
	}
	for first := true; len(data) > 0; first = false {
		n := min(len(data), chunkSize)
		if first {
			sess.writeString("{" + strconv.Itoa(n) + "/" + strconv.FormatInt(est, 10) + "} FETCH " + num + " CONTENTS\n")
		} else {
			sess.writeString(strconv.Itoa(n) + "\n")
		}
		sess.bw.Write(data[:n])
		sess.srv.bytesSent.Add(int64(n))
		data = data[n:]
	}
	sess.writeString("\n")
}

// headers sends a header (HEADERS: folded lines joined; RAWHEADERS: as
// written) of the message or of a part, the fields named by hdrs only.
func (sess *session) headers(i int, msg *cachedMessage, part *reformime.Part, hdrs, entity string) {
	p := part
	offset := int64(0)
	if p == nil {
		p = msg.root // "{.0}": Courier does not measure the whole message's header
	} else {
		start, startBody, _, _, _ := p.Pos()
		offset = startBody - start
	}
	sess.writeString("{." + strconv.FormatInt(offset, 10) + "} FETCH " + strconv.Itoa(i+1) + " " + entity + "\n")
	sess.writeFields(p, hdrs, entity == "RAWHEADERS")
}

func (sess *session) writeFields(p *reformime.Part, hdrs string, raw bool) {
	for _, f := range p.Header {
		if f.Name == "" || !hasHeader(hdrs, f.Name) {
			continue
		}
		v := strings.TrimRight(f.Value, " \t\r\n")
		if raw {
			v = strings.ReplaceAll(v, "\r\n", "\n")
			// A continuation line that is "." would end the reply early.
			v = strings.ReplaceAll(v, "\n.", "\n..")
		} else {
			v = unfold(v)
		}
		if strings.HasPrefix(f.Name, ".") {
			sess.writeString(".")
		}
		sess.writeString(f.Name + ": " + v + "\n")
	}
	sess.writeString(".\n")
}

// unfold joins folded lines: each line break and the blanks after it
// become one space.
func unfold(v string) string {
	if !strings.ContainsAny(v, "\r\n") {
		return v
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == '\r' || c == '\n' {
			for i+1 < len(v) && (v[i+1] == '\r' || v[i+1] == '\n' || v[i+1] == ' ' || v[i+1] == '\t') {
				i++
			}
			b.WriteByte(' ')
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// envelopeHeaders are what ":ENVELOPE" names; ":MIME" adds MIME-Version
// and Content-*.
var envelopeHeaders = []string{"DATE", "SUBJECT", "FROM", "SENDER", "REPLY-TO", "TO", "CC", "BCC", "IN-REPLY-TO", "MESSAGE-ID", "REFERENCES"}

// hasHeader reports whether the header list (upper case, comma separated;
// empty for all) takes a field (Courier's hashdr).
func hasHeader(list, name string) bool {
	if list == "" {
		return true
	}
	un := upper(name)
	for _, item := range strings.Split(list, ",") {
		switch item {
		case "":
			continue
		case ":ENVELOPE", ":MIME":
			for _, h := range envelopeHeaders {
				if un == h {
					return true
				}
			}
			if item == ":MIME" && (un == "MIME-VERSION" || strings.HasPrefix(un, "CONTENT-")) {
				return true
			}
		}
		if item == un {
			return true
		}
	}
	return false
}

// mimeTree sends the MIME entity: each part's MIME header with its line
// count, size and section numbers, depth first.
func (sess *session) mimeTree(i int, msg *cachedMessage, p *reformime.Part, hdrs string) {
	start, startBody, end, _, bodyLines := p.Pos()
	id := mimeID(p)
	var b strings.Builder
	b.WriteString("{." + strconv.FormatInt(startBody-start, 10) + "} FETCH " + strconv.Itoa(i+1))
	b.WriteString(" LINES=" + strconv.FormatInt(bodyLines, 10) + " SIZE=" + strconv.FormatInt(end-startBody, 10))
	if p.Parent == nil {
		b.WriteString(` "MIME.ID="` + "\n")
	} else {
		parent := ""
		if p.Parent.Parent != nil {
			parent = mimeID(p.Parent)
		}
		b.WriteString(` "MIME.ID=` + id + `" "MIME.PARENT=` + parent + `"` + "\n")
	}
	sess.writeString(b.String())
	sess.writeFields(p, hdrs, false)
	for _, c := range p.Children {
		sess.mimeTree(i, msg, c, hdrs)
	}
}

// pindex is a part's number among its siblings as Courier's rfc2045
// numbers them: the top is 1, a multipart's parts 1, 2, ..., and the
// message inside a message/rfc822 part 0.
func pindex(p *reformime.Part) int {
	if p.Parent == nil {
		return 1
	}
	base := 0
	if p.Parent.IsMultipart() {
		base = 1
	}
	for k, c := range p.Parent.Children {
		if c == p {
			return k + base
		}
	}
	return 0
}

func mimeID(p *reformime.Part) string {
	if p.Parent == nil {
		return "1"
	}
	return mimeID(p.Parent) + "." + strconv.Itoa(pindex(p))
}

// findMIME finds the part a MIME.ID names ("1", "1.2", "1.2.0"), or nil.
func findMIME(root *reformime.Part, id string) *reformime.Part {
	siblings := []*reformime.Part{root}
	var cur *reformime.Part
	for id != "" {
		if id[0] < '0' || id[0] > '9' {
			return nil
		}
		n := 0
		for id != "" && id[0] >= '0' && id[0] <= '9' {
			if n < 1<<20 {
				n = n*10 + int(id[0]-'0')
			}
			id = id[1:]
		}
		cur = nil
		for _, s := range siblings {
			if pindex(s) == n {
				cur = s
				break
			}
		}
		if cur == nil {
			return nil
		}
		if id != "" {
			if id[0] != '.' || len(id) == 1 {
				return nil
			}
			id = id[1:]
			siblings = cur.Children
		}
	}
	return cur
}
