package imap

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	"postern/mailbox/maildir"
	"postern/mailbox/mime"
)

// FETCH and UID FETCH (RFC 3501 6.4.5, 6.4.8), with BINARY (RFC 3516,
// binary.go), EMAILID and THREADID (RFC 8474, objectid.go), SAVEDATE
// (RFC 8514) and PREVIEW (RFC 8970, preview.go).
func fetchCommands() []*commandSpec {
	return []*commandSpec{
		{name: "FETCH", states: stateSelected, caps: []string{"BINARY", "OBJECTID", "SAVEDATE", "PREVIEW"}, parse: parseFetch, exec: execFetch},
		{name: "UID FETCH", states: stateSelected, parse: parseFetch, exec: execFetch},
	}
}

const maxSectionPath = 16 // part numbers in one BODY[1.2.3...] section

// fetchItem is one fetch attribute.
type fetchItem struct {
	name    string // ENVELOPE, FLAGS, INTERNALDATE, RFC822, RFC822.HEADER, RFC822.SIZE, RFC822.TEXT, BODY, BODYSTRUCTURE, UID, or BODY[, BINARY[, BINARY.SIZE[ for sections
	section mime.SectionSpec
	label   string // the section as echoed in the response, e.g. "HEADER.FIELDS (From To)"
	peek    bool
	lazy    bool // PREVIEW (LAZY), RFC 8970 3.1
	partial bool
	start   int64
	count   int64
}

type fetchArgs struct {
	set   seqArg
	items []fetchItem
	mods  fetchModifiers
}

func (it *fetchItem) needsBody() bool {
	switch it.name {
	case "ENVELOPE", "BODY", "BODYSTRUCTURE", "RFC822", "RFC822.HEADER", "RFC822.TEXT", "BODY[", "BINARY[", "BINARY.SIZE[":
		return true
	}
	return false
}

// headerOnly: the item needs nothing of the message beyond its header
// block, so the rest of the file is not read.
func (it *fetchItem) headerOnly() bool {
	switch it.name {
	case "ENVELOPE", "RFC822.HEADER":
		return true
	case "BODY[":
		return len(it.section.Path) == 0 && strings.HasPrefix(it.section.Specifier, "HEADER")
	}
	return false
}

// setsSeen: body fetches without PEEK mark the message \Seen (RFC 3501 6.4.5).
func (it *fetchItem) setsSeen() bool {
	return (it.name == "BODY[" || it.name == "BINARY[") && !it.peek || it.name == "RFC822" || it.name == "RFC822.TEXT"
}

// parseFetch reads the set, the items and the optional modifiers of
// RFC 7162 ("(CHANGEDSINCE n [VANISHED])").
func parseFetch(d *decoder) (any, error) {
	v, err := parseFetchItems(d)
	if err != nil {
		return nil, err
	}
	a := v.(fetchArgs)
	if b, err := d.peek(); err == nil && b == ' ' {
		d.readByte()
		if a.mods, err = d.fetchModifiers(); err != nil {
			return nil, err
		}
	}
	return a, nil
}

func parseFetchItems(d *decoder) (any, error) {
	if err := d.sp(); err != nil {
		return nil, err
	}
	set, err := d.seqArg()
	if err != nil {
		return nil, err
	}
	if err := d.sp(); err != nil {
		return nil, err
	}
	var a fetchArgs
	a.set = set
	b, err := d.peek()
	if err != nil {
		return nil, err
	}
	if b != '(' {
		name, err := d.readWhile(isFetchNameChar, "fetch attribute")
		if err != nil {
			return nil, err
		}
		switch strings.ToUpper(name) {
		case "ALL":
			a.items = macroItems("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE")
			return a, nil
		case "FAST":
			a.items = macroItems("FLAGS", "INTERNALDATE", "RFC822.SIZE")
			return a, nil
		case "FULL":
			a.items = macroItems("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY")
			return a, nil
		}
		it, err := d.fetchAttRest(name)
		if err != nil {
			return nil, err
		}
		a.items = []fetchItem{it}
		return a, nil
	}
	d.readByte()
	for {
		name, err := d.readWhile(isFetchNameChar, "fetch attribute")
		if err != nil {
			return nil, err
		}
		it, err := d.fetchAttRest(name)
		if err != nil {
			return nil, err
		}
		if len(a.items) >= 64 {
			return nil, syntaxErr("too many fetch attributes")
		}
		a.items = append(a.items, it)
		b, err := d.peek()
		if err != nil {
			return nil, err
		}
		if b == ')' {
			d.readByte()
			return a, nil
		}
		if err := d.sp(); err != nil {
			return nil, err
		}
	}
}

func macroItems(names ...string) []fetchItem {
	items := make([]fetchItem, len(names))
	for i, n := range names {
		items[i].name = n
	}
	return items
}

func isFetchNameChar(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.'
}

// fetchAttRest finishes an attribute whose name was read: a section and a
// partial range for BODY[ and BODY.PEEK[.
func (d *decoder) fetchAttRest(name string) (fetchItem, error) {
	name = strings.ToUpper(name)
	it := fetchItem{name: name}
	switch name {
	case "ENVELOPE", "FLAGS", "INTERNALDATE", "RFC822", "RFC822.HEADER", "RFC822.SIZE", "RFC822.TEXT", "BODYSTRUCTURE", "UID", "MODSEQ",
		"EMAILID", "THREADID", "SAVEDATE":
		return it, nil
	case "PREVIEW":
		return it, d.previewModifiers(&it)
	case "BODY", "BODY.PEEK":
	case "BINARY", "BINARY.PEEK", "BINARY.SIZE":
		return d.binaryAttRest(name)
	default:
		return it, syntaxErr("unknown fetch attribute %s", truncate(name, 40))
	}
	b, err := d.peek()
	if err != nil {
		return it, err
	}
	if b != '[' {
		if name == "BODY.PEEK" {
			return it, syntaxErr("BODY.PEEK needs a section")
		}
		return it, nil
	}
	d.readByte()
	it.peek = name == "BODY.PEEK"
	it.name = "BODY["
	if err := d.section(&it); err != nil {
		return it, err
	}
	return it, d.partial(&it)
}

// partial reads an optional "<start.count>" range.
func (d *decoder) partial(it *fetchItem) error {
	if b, err := d.peek(); err != nil || b != '<' {
		return nil
	}
	d.readByte()
	start, err := d.number()
	if err != nil {
		return err
	}
	if err := d.expect('.', "'.'"); err != nil {
		return err
	}
	count, err := d.number()
	if err != nil {
		return err
	}
	if count == 0 {
		return syntaxErr("partial length must not be zero")
	}
	if err := d.expect('>', "'>'"); err != nil {
		return err
	}
	it.partial, it.start, it.count = true, int64(start), int64(count)
	return nil
}

// section reads what follows "[" up to and including "]".
func (d *decoder) section(it *fetchItem) error {
	spec, err := d.readWhileMaybe(isFetchNameChar)
	if err != nil {
		return err
	}
	rest := spec
	var path []int
	for rest != "" && isDigit(rest[0]) {
		end := strings.IndexByte(rest, '.')
		numStr := rest
		if end >= 0 {
			numStr, rest = rest[:end], rest[end+1:]
		} else {
			rest = ""
		}
		n, err := strconv.Atoi(numStr)
		if err != nil || n < 1 || len(numStr) > 9 {
			return syntaxErr("invalid section part number")
		}
		if len(path) >= maxSectionPath {
			return syntaxErr("section nesting too deep")
		}
		path = append(path, n)
		if end >= 0 && rest == "" {
			return syntaxErr("invalid section")
		}
	}
	specifier := strings.ToUpper(rest)
	switch specifier {
	case "", "HEADER", "TEXT":
	case "MIME":
		if len(path) == 0 {
			return syntaxErr("MIME needs a part number")
		}
	case "HEADER.FIELDS", "HEADER.FIELDS.NOT":
		if err := d.sp(); err != nil {
			return err
		}
		fields, err := d.headerList()
		if err != nil {
			return err
		}
		it.section.Fields = fields
	default:
		return syntaxErr("invalid section %s", truncate(spec, 40))
	}
	if err := d.expect(']', "']'"); err != nil {
		return err
	}
	it.section.Path = path
	it.section.Specifier = specifier
	label := make([]byte, 0, len(spec)+16)
	for i, n := range path {
		if i > 0 {
			label = append(label, '.')
		}
		label = strconv.AppendInt(label, int64(n), 10)
	}
	if specifier != "" {
		if len(path) > 0 {
			label = append(label, '.')
		}
		label = append(label, specifier...)
	}
	if it.section.Fields != nil {
		label = append(label, " ("...)
		for i, f := range it.section.Fields {
			if i > 0 {
				label = append(label, ' ')
			}
			label = appendAstring(label, f)
		}
		label = append(label, ')')
	}
	it.label = string(label)
	return nil
}

// readWhileMaybe is readWhile that accepts an empty result.
func (d *decoder) readWhileMaybe(ok func(byte) bool) (string, error) {
	b, err := d.peek()
	if err != nil {
		return "", err
	}
	if !ok(b) {
		return "", nil
	}
	return d.readWhile(ok, "section")
}

// headerList reads "(" header-fld-name *(SP header-fld-name) ")".
func (d *decoder) headerList() ([]string, error) {
	if err := d.expect('(', "'('"); err != nil {
		return nil, err
	}
	var fields []string
	for {
		f, err := d.astring()
		if err != nil {
			return nil, err
		}
		if len(fields) >= 256 {
			return nil, syntaxErr("too many header fields")
		}
		fields = append(fields, f)
		b, err := d.peek()
		if err != nil {
			return nil, err
		}
		if b == ')' {
			d.readByte()
			return fields, nil
		}
		if err := d.sp(); err != nil {
			return nil, err
		}
	}
}

func execFetch(s *session, c *command) result {
	a := c.args.(fetchArgs)
	sel := s.sel
	set := sel.expand(a.set, c.uid)
	if !c.uid && !sel.seqInRange(set) {
		return bad("Invalid sequence number")
	}
	items := a.items
	if a.mods.vanished && (!c.uid || !s.qresyncOn()) {
		// RFC 7162 3.2.6: only UID FETCH, and only after ENABLE QRESYNC.
		return bad("VANISHED needs UID FETCH and ENABLE QRESYNC")
	}
	wantFlags, wantModSeq, needBody, needParse, setSeen, wantBinary := false, false, false, false, false, false
	// headersOnly: every item that reads the message needs only its header;
	// envelopeOnly: that item is ENVELOPE alone, which the index may hold.
	headersOnly, envelopeOnly := true, true
	for i := range items {
		if items[i].needsBody() {
			headersOnly = headersOnly && items[i].headerOnly()
			envelopeOnly = envelopeOnly && items[i].name == "ENVELOPE"
		}
		switch items[i].name {
		case "FLAGS":
			wantFlags = true
		case "MODSEQ":
			wantModSeq = true
		case "BINARY[", "BINARY.SIZE[":
			wantBinary = true
		}
		needBody = needBody || items[i].needsBody()
		needParse = needParse || items[i].needsBody() && !items[i].wholeMessage()
		setSeen = setSeen || items[i].setsSeen()
	}
	setSeen = setSeen && !sel.readOnly && sel.maySetSeen()
	if setSeen {
		sel.ownView() // \Seen is set in place below
	}
	if c.uid {
		// UID FETCH always returns the UID (RFC 3501 6.4.8).
		has := false
		for i := range items {
			if items[i].name == "UID" {
				has = true
			}
		}
		if !has {
			items = append([]fetchItem{{name: "UID"}}, items...)
		}
	}
	if wantModSeq || a.mods.changedSince > 0 {
		s.enableCondstore() // RFC 7162 3.1: a CONDSTORE-enabling command
		if !wantModSeq {
			// CHANGEDSINCE implies the MODSEQ item (RFC 7162 3.1.4.1).
			items = append(items, fetchItem{name: "MODSEQ"})
		}
	}
	indexes := sel.resolve(set, c.uid)
	var modseqs []uint64 // parallel to indexes, when mod-sequences matter
	if wantModSeq || a.mods.changedSince > 0 || s.condstoreOn() {
		view := make([]viewMessage, len(indexes))
		for k, i := range indexes {
			view[k].uid = sel.msgs[i].uid
		}
		modseqs = sel.index.modseqsOf(view)
	}
	if a.mods.vanished {
		if err := s.writeVanished(s.vanishedIn(a.mods.changedSince, set), true); err != nil {
			return fatal()
		}
	}
	expungeIssued, unknownCTE := false, false
	seenChanged := false
	var seenModSeq uint64
	w := s.w
	for k, i := range indexes {
		m := &sel.msgs[i]
		if a.mods.changedSince > 0 && modseqs[k] <= a.mods.changedSince {
			continue
		}
		s.fetchModSeq = 0
		if modseqs != nil {
			s.fetchModSeq = modseqs[k]
		}
		var msg *loadedMessage
		// The index keeps each ENVELOPE once rendered (it never changes).
		fromIndex := needBody && envelopeOnly && sel.index.envelope(m.uid) != ""
		if needBody && !m.gone && !fromIndex {
			var err error
			if needParse && headersOnly {
				msg, err = s.loadHeader(m)
			} else if needParse {
				msg, err = s.loadMessage(m)
			} else {
				// Only the whole message is wanted: it is streamed from the
				// file, never held in memory.
				msg, err = s.openMessage(m)
			}
			if err != nil {
				if !errors.Is(err, maildir.ErrNoMessage) {
					return s.storageResult(err, "FETCH")
				}
				msg = nil
				s.markChanged() // report the expunge at the next chance
			}
		}
		if needBody && msg == nil && !fromIndex {
			expungeIssued = true
		}
		if wantBinary && msg != nil {
			if err := msg.decodeBinaryItems(items); err != nil {
				msg.close()
				if !errors.Is(err, mime.ErrUnknownEncoding) {
					return s.storageResult(err, "FETCH")
				}
				// RFC 3516 4.3: the FETCH fails; this message gets no
				// response (and no \Seen), the others theirs.
				unknownCTE = true
				continue
			}
		}
		addFlags := false
		if setSeen && msg != nil && !sel.hasFlag(i, maildir.FlagSeen) {
			letters := unionLetters(m.letters, string(maildir.FlagSeen))
			if err := sel.folder.SetFlags(m.key, letters, m.keywords); err == nil {
				m.letters = letters
				seenModSeq = sel.index.storeFlags([]flagChange{{uid: m.uid, letters: letters, keywords: m.keywords}})
				s.fetchModSeq = seenModSeq
				seenChanged = true
				addFlags = !wantFlags
			} else if !errors.Is(err, maildir.ErrNoMessage) {
				return s.storageResult(err, "FETCH")
			}
		}
		// EMAILID and THREADID read the message file: a message gone
		// meanwhile goes without them, as without its body items.
		objGone := false
		for k := range items {
			if n := items[k].name; (n == "EMAILID" || n == "THREADID") && !objGone {
				if _, err := s.objectID(n, m); err != nil {
					if !errors.Is(err, maildir.ErrNoMessage) {
						msg.close()
						return s.storageResult(err, "FETCH")
					}
					objGone, expungeIssued = true, true
				}
			}
		}
		w.line("* ").num(uint64(i + 1)).raw(" FETCH (")
		first := true
		for k := range items {
			it := &items[k]
			if it.needsBody() && msg == nil && !fromIndex {
				continue
			}
			if objGone && (it.name == "EMAILID" || it.name == "THREADID") {
				continue
			}
			if !first {
				w.byte(' ')
			}
			first = false
			if err := s.writeFetchItem(it, m, msg); err != nil {
				msg.close()
				return s.storageResult(err, "FETCH")
			}
		}
		if addFlags {
			if !first {
				w.byte(' ')
			}
			w.raw("FLAGS ")
			w.buf = appendFlags(w.buf, m.letters, m.keywords, sel.isRecent(m))
			if s.condstoreOn() && !wantModSeq && a.mods.changedSince == 0 {
				// The flag change goes out with its new mod-sequence
				// (RFC 7162 3.2.4).
				w.raw(" MODSEQ (").num(seenModSeq).byte(')')
			}
		}
		msg.close()
		if err := w.byte(')').end(); err != nil {
			return fatal()
		}
	}
	if seenChanged {
		s.srv.hub.notify(sel.folder.Path(), s)
	}
	if unknownCTE {
		return no("UNKNOWN-CTE", "Cannot decode the content transfer encoding of a requested part")
	}
	if expungeIssued {
		return no("EXPUNGEISSUED", "Some messages were expunged meanwhile")
	}
	return ok(c.name + " completed")
}

// writeFetchItem appends one attribute and its value.
func (s *session) writeFetchItem(it *fetchItem, m *viewMessage, msg *loadedMessage) error {
	w := s.w
	switch it.name {
	case "UID":
		w.raw("UID ").num(uint64(m.uid))
	case "MODSEQ":
		w.raw("MODSEQ (").num(s.fetchModSeq).byte(')')
	case "EMAILID", "THREADID":
		// RFC 8474 5.1, 5.2; a message gone meanwhile has neither (the
		// caller skipped the item).
		id, err := s.objectID(it.name, m)
		if err != nil {
			return err
		}
		w.raw(it.name).raw(" (").raw(id).byte(')')
	case "SAVEDATE":
		// RFC 8514 4.3: NIL when the mailbox keeps no save date; here,
		// only when the message vanished meanwhile.
		w.raw("SAVEDATE ")
		if t := s.saveDate(m); t.IsZero() {
			w.raw("NIL")
		} else {
			w.byte('"')
			w.buf = t.AppendFormat(w.buf, "02-Jan-2006 15:04:05 -0700")
			w.byte('"')
		}
	case "PREVIEW":
		w.raw("PREVIEW ")
		p, ok, err := s.preview(m, msg, it.lazy)
		if err != nil {
			return err
		}
		if !ok {
			w.raw("NIL")
		} else {
			w.str(p)
		}
	case "FLAGS":
		w.raw("FLAGS ")
		w.buf = appendFlags(w.buf, m.letters, m.keywords, s.sel.isRecent(m))
	case "INTERNALDATE":
		w.raw(`INTERNALDATE "`)
		w.buf = s.internalDate(m).AppendFormat(w.buf, "02-Jan-2006 15:04:05 -0700")
		w.byte('"')
	case "RFC822.SIZE":
		size, err := s.messageSize(m, msg)
		if err != nil {
			if errors.Is(err, maildir.ErrNoMessage) {
				size = m.size
			} else {
				return err
			}
		}
		w.raw("RFC822.SIZE ").num(uint64(size))
	case "ENVELOPE":
		w.raw("ENVELOPE ")
		if env := s.sel.index.envelope(m.uid); env != "" {
			w.raw(env)
			break
		}
		start := len(w.buf)
		w.buf = appendEnvelope(w.buf, msg.root.Envelope)
		s.sel.index.setEnvelope(m.uid, m.key, string(w.buf[start:]))
	case "BODY":
		w.raw("BODY ")
		w.buf = appendBodyStructure(w.buf, msg.root, false, 0)
	case "BODYSTRUCTURE":
		w.raw("BODYSTRUCTURE ")
		w.buf = appendBodyStructure(w.buf, msg.root, true, 0)
	case "RFC822":
		w.raw("RFC822 ")
		return s.writeWhole(msg)
	case "RFC822.HEADER", "RFC822.TEXT":
		spec := mime.SectionSpec{Specifier: "HEADER"}
		if it.name == "RFC822.TEXT" {
			spec.Specifier = "TEXT"
		}
		data, err := mime.Section(bytes.NewReader(msg.data), msg.root, spec)
		if err != nil {
			return fmt.Errorf("imap: fetch %s: %w", it.name, err)
		}
		w.raw(it.name).byte(' ').literal(data)
	case "BODY[":
		if it.wholeMessage() {
			w.raw("BODY[] ")
			return s.writeWhole(msg)
		}
		var data []byte
		if len(it.section.Path) == 0 && it.section.Specifier == "" {
			data = msg.data
		} else {
			var err error
			data, err = mime.Section(bytes.NewReader(msg.data), msg.root, it.section)
			if err != nil {
				return fmt.Errorf("imap: fetch BODY[%s]: %w", it.label, err)
			}
		}
		w.raw("BODY[").raw(it.label).byte(']')
		data = it.cut(w, data)
		w.byte(' ').literal(data)
	case "BINARY[", "BINARY.SIZE[":
		return s.writeBinaryItem(it, msg)
	}
	return nil
}

// cut applies the item's partial range to data and writes the "<start>"
// of the response (RFC 3501 6.4.5: the start is echoed, not the count).
func (it *fetchItem) cut(w *responseWriter, data []byte) []byte {
	if !it.partial {
		return data
	}
	w.byte('<').num(uint64(it.start)).byte('>')
	if it.start >= int64(len(data)) {
		return nil
	}
	data = data[it.start:]
	if int64(len(data)) > it.count {
		data = data[:it.count]
	}
	return data
}

// loadedMessage is a message read for one FETCH or SEARCH: its bytes with
// CRLF line ends (what IMAP clients must see, RFC 3501 2.3.4: messages are
// RFC 5322 text) and its parsed structure; or, when only the whole message
// is wanted, the open file and its CRLF size, to be streamed.
type loadedMessage struct {
	data []byte
	root *mime.Part
	// headerOnly: data is the header block alone (loadHeader), so its
	// length is not the message's size.
	headerOnly bool
	// decoded holds BINARY sections by label, decoded once per message.
	decoded map[string][]byte

	file     *os.File
	crlfSize int64
}

func (m *loadedMessage) close() {
	if m != nil && m.file != nil {
		m.file.Close()
		m.file = nil
	}
}

// wholeMessage: the item is the complete message (RFC822, BODY[] without
// a partial range), which can be streamed without parsing.
func (it *fetchItem) wholeMessage() bool {
	return it.name == "RFC822" ||
		it.name == "BODY[" && len(it.section.Path) == 0 && it.section.Specifier == "" && !it.partial
}

// openMessage opens a message for streaming.
func (s *session) openMessage(m *viewMessage) (*loadedMessage, error) {
	size, err := s.messageSize(m, nil)
	if err != nil {
		return nil, err
	}
	f, err := s.sel.folder.Open(m.key)
	if err != nil {
		return nil, err
	}
	return &loadedMessage{file: f, crlfSize: size}, nil
}

// writeWhole writes the whole message as a literal, from memory or streamed
// from the file with bare LFs made CRLF.
func (s *session) writeWhole(msg *loadedMessage) error {
	w := s.w
	if msg.file == nil {
		w.literal(msg.data)
		return nil
	}
	w.byte('{').num(uint64(msg.crlfSize)).raw("}\r\n")
	if _, err := w.bw.Write(w.buf); err != nil {
		return err
	}
	w.buf = w.buf[:0]
	if _, err := msg.file.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("imap: stream message: %w", err)
	}
	return streamCRLF(w.bw, msg.file, msg.crlfSize)
}

// streamCRLF copies r to w converting bare LF to CRLF, writing exactly size
// bytes: the literal length is already on the wire, so a file that changed
// size meanwhile is cut or padded rather than breaking the protocol.
func streamCRLF(w *bufio.Writer, r io.Reader, size int64) error {
	buf := make([]byte, 32<<10)
	var prev byte
	written := int64(0)
	for written < size {
		n, err := r.Read(buf)
		for _, c := range buf[:n] {
			if c == '\n' && prev != '\r' && written < size {
				w.WriteByte('\r')
				written++
			}
			if written < size {
				w.WriteByte(c)
				written++
			}
			prev = c
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("imap: stream message: %w", err)
		}
	}
	for ; written < size; written++ {
		w.WriteByte(' ')
	}
	return nil
}

// maxLoadedMessage bounds what is read of one message for FETCH.
const maxLoadedMessage = 1 << 30

// loadMessage reads and parses a message. Maildir files written by MTAs
// often have bare LF line ends; they are converted, and every size and
// offset is then counted in CRLF form as IMAP requires.
func (s *session) loadMessage(m *viewMessage) (*loadedMessage, error) {
	f, err := s.sel.folder.Open(m.key)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, maxLoadedMessage))
	return s.parseLoaded(m.uid, raw, err, mime.Parse)
}

// parseLoaded finishes loading message uid from raw (read with readErr):
// CRLF line ends, its CRLF size noted in the index, parsed with parse.
func (s *session) parseLoaded(uid uint32, raw []byte, readErr error, parse func(io.ReaderAt, int64) (*mime.Part, error)) (*loadedMessage, error) {
	if readErr != nil {
		return nil, fmt.Errorf("imap: read message %d: %w", uid, readErr)
	}
	data := toCRLF(raw)
	s.sel.index.setCRLFSize(uid, int64(len(data)))
	root, err := parse(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return nil, fmt.Errorf("imap: parse message %d: %w", uid, err)
	}
	return &loadedMessage{data: data, root: root}, nil
}

// maxHeaderBlock bounds what loadHeader reads looking for the end of the
// header; a longer header makes it read the whole message instead.
const maxHeaderBlock = 256 << 10

// loadHeader reads and parses only a message's header block (up to and
// including the empty line), for FETCH items that need nothing more:
// ENVELOPE, RFC822.HEADER, BODY[HEADER...]. Such a fetch on messages with
// big attachments then reads a few kilobytes of each, not the whole file.
// A message that ends within the bound is read whole and serves as
// loadMessage's would.
func (s *session) loadHeader(m *viewMessage) (*loadedMessage, error) {
	f, err := s.sel.folder.Open(m.key)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := make([]byte, 0, 8<<10)
	for {
		if len(buf) == cap(buf) {
			if cap(buf) >= maxHeaderBlock {
				return s.loadMessage(m)
			}
			buf = slices.Grow(buf, cap(buf))
		}
		n, rerr := f.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if end := headerBlockEnd(buf); end >= 0 {
			data := toCRLF(buf[:end])
			root, err := mime.Parse(bytes.NewReader(data), int64(len(data)))
			if err != nil {
				return nil, fmt.Errorf("imap: parse header of message %d: %w", m.uid, err)
			}
			return &loadedMessage{data: data, root: root, headerOnly: true}, nil
		}
		if errors.Is(rerr, io.EOF) {
			// A message without a body: what was read is all of it.
			data := toCRLF(buf)
			s.sel.index.setCRLFSize(m.uid, int64(len(data)))
			root, err := mime.Parse(bytes.NewReader(data), int64(len(data)))
			if err != nil {
				return nil, fmt.Errorf("imap: parse message %d: %w", m.uid, err)
			}
			return &loadedMessage{data: data, root: root}, nil
		}
		if rerr != nil {
			return nil, fmt.Errorf("imap: read message %d: %w", m.uid, rerr)
		}
	}
}

// headerBlockEnd is the offset just past the empty line that ends the
// header in b, or -1 when b holds no complete header yet.
func headerBlockEnd(b []byte) int {
	if len(b) > 0 && b[0] == '\n' {
		return 1
	}
	if len(b) > 1 && b[0] == '\r' && b[1] == '\n' {
		return 2
	}
	return blankLineEnd(b)
}

// toCRLF returns b with every bare LF made CRLF; b itself when it is
// already clean.
func toCRLF(b []byte) []byte { return mime.CRLF(b) }

// messageSize is RFC822.SIZE: the size in CRLF form. Dovecot's ",W=" gives
// it directly; otherwise it is counted once and remembered.
func (s *session) messageSize(m *viewMessage, msg *loadedMessage) (int64, error) {
	if msg != nil && !msg.headerOnly {
		if msg.file != nil {
			return msg.crlfSize, nil
		}
		return int64(len(msg.data)), nil
	}
	if m.vsize > 0 {
		return m.vsize, nil
	}
	if n := s.sel.index.crlfSize(m.uid); n > 0 {
		return n, nil
	}
	f, err := s.sel.folder.Open(m.key)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n, err := crlfSize(f)
	if err != nil {
		return 0, fmt.Errorf("imap: size of message %d: %w", m.uid, err)
	}
	s.sel.index.setCRLFSize(m.uid, n)
	return n, nil
}

// crlfSize counts the bytes of r as they would be with CRLF line ends.
func crlfSize(r io.Reader) (int64, error) {
	br := bufio.NewReaderSize(r, 32<<10)
	var n int64
	var prev byte
	for {
		chunk, err := br.ReadSlice('\n')
		n += int64(len(chunk))
		if len(chunk) > 0 && chunk[len(chunk)-1] == '\n' {
			before := prev
			if len(chunk) >= 2 {
				before = chunk[len(chunk)-2]
			}
			if before != '\r' {
				n++
			}
		}
		if len(chunk) > 0 {
			prev = chunk[len(chunk)-1]
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return 0, err
		}
	}
}
