package webmail

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"unicode"
	"unicode/utf8"

	"postern/internal/atomicfile"
	pmime "postern/mailbox/mime"
)

// The address book is kept where and as Courier's sqwebmail keeps it, so
// that a user moving from sqwebmail keeps theirs and both can use it: the
// file sqwebmail-addressbook in the top directory of the Maildir, one
// entry per record in the form of a mail header field,
//
//	nickname: "Name" <address>, <address>,
//	    "Other Name" <address>
//
// the nickname before the colon, an RFC 5322 address list after it, and
// lines that begin with a space or a tab continuing the record above.
// sqwebmail writes names and addresses in UTF-8 (names quoted, with \ before
// " and \), reads nicknames in lower case, and stops reading at a blank
// line; Postern writes the same, in lower case and without blank lines.
// Names in RFC 2047 encoded words are read as well (and written back in
// UTF-8). A record Postern cannot read (no colon, bytes that are not
// UTF-8, an address list it cannot parse) is skipped and reported, and
// written back as it was when the file is saved: nothing a user had is
// lost by editing another entry (but for lines that continue no record,
// which would join the record above).
const addressBookFile = "sqwebmail-addressbook"

// Bounds of the address book.
const (
	maxBookFile    = 1 << 20 // bytes of the file
	maxBookEntries = 5000    // nicknames
	maxNickLen     = 64      // bytes of a nickname
	maxBookName    = 256     // bytes of a name
	maxBookAddr    = 320     // bytes of an address
	// An entry holds at most maxRecipients addresses: one message's worth.
)

// bookAddress is one address of an entry, with its name ("" when none).
type bookAddress struct {
	Name, Addr string
}

// String is the address as a header shows it: "Name" <box@domain>.
func (a bookAddress) String() string {
	if a.Name == "" {
		return "<" + a.Addr + ">"
	}
	return quoteName(a.Name) + " <" + a.Addr + ">"
}

// bookEntry is a nickname and its addresses: one person, or a list.
type bookEntry struct {
	Nick  string // lower case
	Addrs []bookAddress
}

// Name is what the entry is called: its first address's name, else its
// nickname.
func (e *bookEntry) Name() string {
	for _, a := range e.Addrs {
		if a.Name != "" {
			return a.Name
		}
	}
	return e.Nick
}

// bookRecord is one record of the file: an entry, or the text of one that
// could not be read, kept to be written back unchanged.
type bookRecord struct {
	entry *bookEntry
	raw   string // when entry is nil: the record's lines, without the last newline
	nick  string // of a raw record: its nickname when it has one (a duplicate, say)
}

// bookProblem is a record of the file that was skipped, and why.
type bookProblem struct {
	Line   int
	Reason string
}

func (p bookProblem) String() string { return fmt.Sprintf("line %d: %s", p.Line, p.Reason) }

// addressBook is the file read: its records in order, and the problems.
type addressBook struct {
	records  []bookRecord
	byNick   map[string]*bookEntry // the readable entries
	Problems []bookProblem
}

var (
	errBookTooBig = fmt.Errorf("the address book file is larger than %d KiB", maxBookFile>>10)
	errBookFull   = fmt.Errorf("the address book holds %d entries, its most", maxBookEntries)
	errNickTaken  = errors.New("that nickname is taken")
	errNoEntry    = errors.New("there is no such nickname")
)

// parseAddressBook reads the file's bytes. It never fails: what it cannot
// read it reports in Problems and keeps as raw records.
func parseAddressBook(data []byte) *addressBook {
	b := &addressBook{byNick: map[string]*bookEntry{}}
	text := string(data)
	var cur []string
	start := 0
	flush := func() {
		if cur != nil {
			b.addRecord(start, cur)
		}
		cur = nil
	}
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimRight(line, "\r") // CRLF files (and stray CRs) read as LF
		switch {
		case strings.TrimSpace(line) == "" && !strings.HasPrefix(line, " ") && !strings.HasPrefix(line, "\t"):
			// A blank line. sqwebmail's newer reader stops here; this one
			// reads on, and Postern never writes one.
			flush()
		case line[0] == ' ' || line[0] == '\t':
			if cur == nil {
				start = i + 1
			}
			cur = append(cur, line)
		default:
			flush()
			start, cur = i+1, []string{line}
		}
	}
	flush()
	return b
}

// addRecord reads one record (its lines, the first at line number n).
func (b *addressBook) addRecord(n int, lines []string) {
	raw := strings.Join(lines, "\n")
	bad := func(nick, why string) {
		b.records = append(b.records, bookRecord{raw: raw, nick: nick})
		b.Problems = append(b.Problems, bookProblem{Line: n, Reason: why})
	}
	if strings.TrimSpace(raw) == "" {
		return // only blanks: nothing to keep
	}
	if lines[0][0] == ' ' || lines[0][0] == '\t' {
		// Written back, it would join the record above: it is left out.
		b.Problems = append(b.Problems, bookProblem{Line: n, Reason: "a continuation line with no entry above it (left out when the book is saved)"})
		return
	}
	if !utf8.ValidString(raw) {
		bad("", "not UTF-8 text")
		return
	}
	name, value, ok := strings.Cut(raw, ":")
	if !ok {
		bad("", "no colon after the nickname")
		return
	}
	nick := strings.ToLower(name)
	if err := checkNick(nick); err != nil {
		bad("", fmt.Sprintf("the nickname %.40q %s", name, err))
		return
	}
	if b.find(nick) != nil {
		bad(nick, fmt.Sprintf("the nickname %q appears again (the first one is used)", nick))
		return
	}
	if b.count() >= maxBookEntries {
		bad(nick, fmt.Sprintf("more than %d entries", maxBookEntries))
		return
	}
	// Unfolded (RFC 5322 2.2.3): the line breaks go, the blanks that
	// began the continuation lines stay.
	addrs, err := parseBookAddresses(strings.ReplaceAll(value, "\n", ""))
	if err != nil {
		bad(nick, fmt.Sprintf("%s: %s", nick, err))
		return
	}
	e := &bookEntry{Nick: nick, Addrs: addrs}
	b.records = append(b.records, bookRecord{entry: e})
	b.byNick[nick] = e
}

// entries are the readable entries, in the file's order.
func (b *addressBook) entries() []*bookEntry {
	var out []*bookEntry
	for _, r := range b.records {
		if r.entry != nil {
			out = append(out, r.entry)
		}
	}
	return out
}

func (b *addressBook) count() int { return len(b.byNick) }

// reindex rebuilds the index of nicknames after a change.
func (b *addressBook) reindex() {
	b.byNick = make(map[string]*bookEntry, len(b.records))
	for _, r := range b.records {
		if r.entry != nil {
			b.byNick[r.entry.Nick] = r.entry
		}
	}
}

// find returns the entry of a nickname (in any case), or nil.
func (b *addressBook) find(nick string) *bookEntry {
	if b == nil {
		return nil
	}
	return b.byNick[strings.ToLower(nick)]
}

// put adds e, or, when old is a nickname, replaces old's entry by e (a
// rename when the nicknames differ).
func (b *addressBook) put(old string, e *bookEntry) error {
	if err := checkEntry(e); err != nil {
		return err
	}
	old = strings.ToLower(old)
	if other := b.find(e.Nick); other != nil && other.Nick != old {
		return errNickTaken
	}
	if old == "" {
		if b.count() >= maxBookEntries {
			return errBookFull
		}
		b.records = append(b.records, bookRecord{entry: e})
		b.reindex()
		return nil
	}
	i := slices.IndexFunc(b.records, func(r bookRecord) bool { return r.entry != nil && r.entry.Nick == old })
	if i < 0 {
		return errNoEntry
	}
	b.records[i].entry = e
	// Unreadable records under either nickname would come back in its
	// place at the next reading (or, in sqwebmail, be found first).
	b.records = slices.DeleteFunc(b.records, func(r bookRecord) bool {
		return r.entry == nil && (r.nick == old || r.nick == e.Nick)
	})
	b.reindex()
	return nil
}

// remove deletes a nickname's entry, and the unreadable records that carry
// the same nickname (which would otherwise take its place).
func (b *addressBook) remove(nick string) error {
	nick = strings.ToLower(nick)
	if b.find(nick) == nil {
		return errNoEntry
	}
	b.records = slices.DeleteFunc(b.records, func(r bookRecord) bool {
		return (r.entry != nil && r.entry.Nick == nick) || (r.entry == nil && r.nick == nick)
	})
	b.reindex()
	return nil
}

// format writes the file: each entry as sqwebmail writes one (each
// further address on a line of its own, indented), the records that could
// not be read as they were, no blank lines.
func (b *addressBook) format() []byte {
	var s strings.Builder
	for _, r := range b.records {
		if r.entry == nil {
			s.WriteString(r.raw + "\n") // its lines as they were: none blank, the first not indented
			continue
		}
		s.WriteString(r.entry.Nick + ": ")
		for j, a := range r.entry.Addrs {
			if j > 0 {
				s.WriteString(",\n    ")
			}
			s.WriteString(a.String())
		}
		s.WriteString("\n")
	}
	return []byte(s.String())
}

// checkNick tells why a (lower case) nickname cannot be one: it must be a
// word that cannot be taken for an address: no blanks, control
// characters, quotes, brackets or any of :;,<>@\ (sqwebmail drops the
// same from the nicknames it is given, and "()[] besides).
func checkNick(nick string) error {
	switch {
	case nick == "":
		return errors.New("is empty")
	case len(nick) > maxNickLen:
		return fmt.Errorf("is longer than %d bytes", maxNickLen)
	case !utf8.ValidString(nick):
		return errors.New("is not UTF-8 text")
	}
	for _, r := range nick {
		if unicode.IsSpace(r) || unicode.IsControl(r) || r == utf8.RuneError || strings.ContainsRune(`:;,<>@\"()[]`, r) {
			return fmt.Errorf("may not hold %q", r)
		}
	}
	return nil
}

// checkEntry checks an entry built from a form (or from the file).
func checkEntry(e *bookEntry) error {
	if err := checkNick(e.Nick); err != nil {
		return fmt.Errorf("the nickname %s", err)
	}
	if len(e.Addrs) == 0 {
		return errors.New("give at least one address")
	}
	if len(e.Addrs) > maxRecipients {
		return fmt.Errorf("at most %d addresses under one nickname", maxRecipients)
	}
	for _, a := range e.Addrs {
		if err := checkBookName(a.Name); err != nil {
			return err
		}
		if err := checkBookAddr(a.Addr); err != nil {
			return err
		}
	}
	return nil
}

func checkBookName(name string) error {
	if len(name) > maxBookName || !utf8.ValidString(name) || strings.ContainsFunc(name, func(r rune) bool { return unicode.IsControl(r) || r == utf8.RuneError }) {
		return fmt.Errorf("the name %.40q is too long or holds a control character", name)
	}
	return nil
}

// checkBookAddr checks an address of the file: one word without blanks,
// control characters or the characters that would end it in a header.
// Without an @ it is another nickname (sqwebmail expands those too).
func checkBookAddr(addr string) error {
	if addr == "" || len(addr) > maxBookAddr || !utf8.ValidString(addr) ||
		strings.ContainsFunc(addr, func(r rune) bool {
			return unicode.IsSpace(r) || unicode.IsControl(r) || r == utf8.RuneError || strings.ContainsRune(`<>()",;:\[]`, r)
		}) {
		return fmt.Errorf("%.60q is not an address", addr)
	}
	return nil
}

// quoteName writes a name as an RFC 5322 quoted string, as sqwebmail
// does: \ before " and \, UTF-8 as it is.
func quoteName(name string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(name) + `"`
}

// parseBookAddresses reads the address list of a record, as a mail reader
// reads a To field: "Name" <addr>, Name <addr>, <addr>, addr, addr (Name);
// empty members (a trailing comma) are skipped.
func parseBookAddresses(value string) ([]bookAddress, error) {
	toks, err := tokenizeBook(value)
	if err != nil {
		return nil, err
	}
	var out []bookAddress
	var piece []bookToken
	end := func() error {
		defer func() { piece = piece[:0] }()
		if len(piece) == 0 {
			return nil
		}
		a, err := bookAddressOf(piece)
		if err != nil {
			return err
		}
		if len(out) >= maxRecipients {
			return fmt.Errorf("more than %d addresses", maxRecipients)
		}
		out = append(out, a)
		return nil
	}
	for _, t := range toks {
		if t.kind == ',' {
			if err := end(); err != nil {
				return nil, err
			}
			continue
		}
		piece = append(piece, t)
	}
	if err := end(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, errors.New("no address")
	}
	return out, nil
}

// bookToken is a token of an address list: an atom ('a'), a quoted string
// ('"'), a comment ('('), an address in angle brackets ('<'), a comma.
type bookToken struct {
	kind byte
	text string // unquoted
}

func tokenizeBook(s string) ([]bookToken, error) {
	var out []bookToken
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == ',':
			out = append(out, bookToken{kind: ','})
			i++
		case c == '"':
			text, n, err := scanQuoted(s[i:], '"', '"')
			if err != nil {
				return nil, err
			}
			out = append(out, bookToken{kind: '"', text: text})
			i += n
		case c == '(':
			text, n, err := scanQuoted(s[i:], '(', ')')
			if err != nil {
				return nil, err
			}
			out = append(out, bookToken{kind: '(', text: text})
			i += n
		case c == '<':
			j := strings.IndexByte(s[i:], '>')
			if j < 0 {
				return nil, errors.New("a < without its >")
			}
			out = append(out, bookToken{kind: '<', text: strings.TrimSpace(s[i+1 : i+j])})
			i += j + 1
		case strings.IndexByte(">);:[]\\", c) >= 0:
			return nil, fmt.Errorf("a stray %q", c)
		default:
			j := i
			for j < len(s) && strings.IndexByte(" \t\r\n,\"(<>);:[]\\", s[j]) < 0 {
				j++
			}
			out = append(out, bookToken{kind: 'a', text: s[i:j]})
			i = j
		}
	}
	return out, nil
}

// scanQuoted reads a quoted string or a comment (nested) at the start of
// s, undoing \ escapes; it returns the text and the bytes read.
func scanQuoted(s string, open, close byte) (string, int, error) {
	var b strings.Builder
	depth := 1 // s[0] is open
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s):
			i++
			c = s[i]
		case c == close:
			if depth--; depth == 0 {
				return b.String(), i + 1, nil
			}
		case c == open:
			depth++
		}
		b.WriteByte(c)
	}
	if open == '"' {
		return "", 0, errors.New("a quote without its end")
	}
	return "", 0, errors.New("a ( without its )")
}

// bookAddressOf makes one address of the tokens between commas.
func bookAddressOf(toks []bookToken) (bookAddress, error) {
	var phrase []string
	var comment, addr string
	angle, quoted := false, false
	for _, t := range toks {
		switch t.kind {
		case '(':
			if comment == "" {
				comment = strings.TrimSpace(t.text)
			}
		case '<':
			if angle {
				return bookAddress{}, errors.New("two addresses in <> without a comma")
			}
			angle, addr = true, t.text
		default:
			if angle {
				return bookAddress{}, fmt.Errorf("%q after the address", t.text)
			}
			phrase = append(phrase, t.text)
			quoted = quoted || t.kind == '"'
		}
	}
	var a bookAddress
	if angle {
		a = bookAddress{Name: strings.Join(phrase, " "), Addr: addr}
	} else {
		if len(phrase) != 1 || quoted {
			return bookAddress{}, fmt.Errorf("%.60q is not an address", strings.Join(phrase, " "))
		}
		a = bookAddress{Addr: phrase[0]}
	}
	if a.Name == "" {
		a.Name = comment
	}
	a.Name = strings.TrimSpace(a.Name)
	if strings.Contains(a.Name, "=?") {
		a.Name = clean(pmime.DecodeHeaderValue(a.Name))
	}
	if err := checkBookName(a.Name); err != nil {
		return bookAddress{}, err
	}
	if err := checkBookAddr(a.Addr); err != nil {
		return bookAddress{}, err
	}
	return a, nil
}

// readAddressBook reads the address book of the Maildir at root; a
// missing file is an empty book. The file is opened without following a
// symbolic link and must be a regular file (never a FIFO that would hang
// the request), of at most maxBookFile bytes.
func readAddressBook(root string) (*addressBook, error) {
	path := filepath.Join(root, addressBookFile)
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, os.ErrNotExist) {
		return &addressBook{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("address book %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("address book %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("address book %s: not a regular file", path)
	}
	if st.Size() > maxBookFile {
		return nil, errBookTooBig
	}
	data, err := io.ReadAll(io.LimitReader(f, maxBookFile+1))
	if err != nil {
		return nil, fmt.Errorf("address book %s: %w", path, err)
	}
	if len(data) > maxBookFile {
		return nil, errBookTooBig
	}
	return parseAddressBook(data), nil
}

// writeAddressBook replaces the file atomically (temporary file, fsync,
// rename, fsync of the directory): a crash leaves the old book or the new
// one, whole. Its temporary name starts with a dot but is no folder (it
// has no cur/), so folder listings pass it by.
func writeAddressBook(root string, b *addressBook) error {
	data := b.format()
	if len(data) > maxBookFile {
		return errBookTooBig
	}
	if err := atomicfile.Write(filepath.Join(root, addressBookFile), data, 0o600); err != nil {
		return fmt.Errorf("address book %s: %w", root, err)
	}
	return nil
}
