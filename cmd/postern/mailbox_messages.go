package main

// postern mailbox's message subcommands: search, fetch, expunge, move and
// flags, over the messages a search query (mailbox_query.go) matches.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"postern/auth"
	"postern/mailbox/maildir"
	"postern/mailbox/mime"
)

// parseQuery parses the query words; exit 64 on a mistake. needMailbox
// refuses a query without a mailbox key (expunge, move: "all" alone
// would mean every message of every folder).
func (c *mailboxCmd) parseQuery(words []string, needMailbox bool) (*queryNode, bool) {
	q, err := parseSearchQuery(words, c.now, c.names)
	if err != nil {
		c.usageError("%v", err)
		return nil, false
	}
	if needMailbox && !q.contains(qMailbox) {
		c.usageError("the query names no mailbox; add 'mailbox NAME' ('mailbox *' for every folder)")
		return nil, false
	}
	return q, true
}

// messageView is one message as a query and fetch see it; what costs a
// read is read once, when first asked for.
type messageView struct {
	f     *maildir.Folder
	snap  *maildir.Snapshot
	m     *maildir.Message
	names [2]string

	header    []byte // the header, up to the empty line, read at most once
	haveHdr   bool
	parsed    *mime.Header
	saved     time.Time
	haveSaved bool
	err       error // the first read that failed; ErrNoMessage: the message went away
}

func (v *messageView) folderNames() [2]string    { return v.names }
func (v *messageView) message() *maildir.Message { return v.m }

func (v *messageView) maxUID() uint32 {
	if n := len(v.snap.Messages); n > 0 {
		return v.snap.Messages[n-1].UID
	}
	return 0
}

func (v *messageView) saveDate() time.Time {
	if !v.haveSaved {
		var err error
		v.saved, err = v.f.SaveDate(v.m.Key)
		v.fail(err)
		v.haveSaved = true
	}
	return v.saved
}

func (v *messageView) internalDate() time.Time {
	if v.m.InternalDate.IsZero() {
		d, err := v.f.InternalDate(v.m.Key) // a first Sync does not stat every file
		v.fail(err)
		v.m.InternalDate = d
	}
	return v.m.InternalDate
}

// fail keeps the first error.
func (v *messageView) fail(err error) {
	if err != nil && v.err == nil {
		v.err = err
	}
}

// maxHeaderRead bounds the header read for a search or a fetch of
// header fields; a longer header is searched in its first part only.
const maxHeaderRead = 256 << 10

// readHeader reads the message's header, once.
func (v *messageView) readHeader() []byte {
	if !v.haveHdr {
		v.haveHdr = true
		b, err := v.f.ReadMessage(v.m.Key, nil, maxHeaderRead)
		v.fail(err)
		v.header = b[:headerEnd(b)]
	}
	return v.header
}

// headerEnd is the length of the header in b: up to and including the
// empty line, or all of b when there is none.
func headerEnd(b []byte) int {
	for i := 0; i < len(b); {
		j := i
		for j < len(b) && b[j] != '\n' {
			j++
		}
		if j == i || j == i+1 && b[i] == '\r' {
			return min(j+1, len(b))
		}
		i = j + 1
	}
	return len(b)
}

// fields parses the header, once.
func (v *messageView) fields() *mime.Header {
	if v.parsed == nil {
		raw := v.readHeader()
		h, err := mime.ParseHeader(bytes.NewReader(raw), 0, int64(len(raw)))
		v.fail(err)
		v.parsed = &h
	}
	return v.parsed
}

// headerValues: every field named field, RFC 2047-decoded, lower-cased.
func (v *messageView) headerValues(field string) []string {
	var out []string
	for _, val := range v.decodedValues(field) {
		out = append(out, strings.ToLower(val))
	}
	return out
}

// decodedValues: every field named field, RFC 2047-decoded.
func (v *messageView) decodedValues(field string) []string {
	var out []string
	for _, val := range v.fields().Values(field) {
		out = append(out, mime.DecodeHeaderValue(val))
	}
	return out
}

// messageOp does a subcommand's work on one message a query matched and
// says whether it counts (was changed, printed).
type messageOp func(a *auth.Account, v *messageView) (bool, error)

// onMatches parses the query words (64 on a mistake; needMailbox: see
// parseQuery) and runs op on every message they match in each account;
// the progress line counts the messages op counted.
func (c *mailboxCmd) onMatches(words []string, needMailbox bool, done string, op messageOp) int {
	q, ok := c.parseQuery(words, needMailbox)
	if !ok {
		return 64
	}
	return c.run(false, func(a *auth.Account, md *maildir.Maildir) (string, error) {
		n := 0
		err := c.eachMatch(md, q, "", func(v *messageView) error {
			counts, err := op(a, v)
			if err == nil && counts {
				n++
			}
			return err
		})
		return fmt.Sprintf("%d %s", n, done), err
	})
}

// matchFunc gets each message a query matched.
type matchFunc func(v *messageView) error

// eachMatch calls fn for every message of md that q matches, folder by
// folder in folders' order, skipping the folder skip (a move's
// target). Folders the query's mailbox keys rule out are not read. A
// message that goes away meanwhile is passed over.
func (c *mailboxCmd) eachMatch(md *maildir.Maildir, q *queryNode, skip string, fn matchFunc) error {
	folders, err := c.folders(md)
	if err != nil {
		return err
	}
	for _, name := range folders {
		names := c.names.both(name)
		if name == skip || q.folderMatch(names) == triNo {
			continue
		}
		f, err := md.Folder(name)
		if errors.Is(err, maildir.ErrNoFolder) {
			continue // deleted meanwhile
		}
		if err != nil {
			return err
		}
		snap, err := f.Sync(false)
		if err != nil {
			return err
		}
		for i := range snap.Messages {
			m := snap.Messages[i] // a copy: the snapshot is shared and read-only
			v := &messageView{f: f, snap: snap, m: &m, names: names}
			ok := q.matches(v)
			if errors.Is(v.err, maildir.ErrNoMessage) {
				continue
			}
			if v.err != nil {
				return v.err
			}
			if !ok {
				continue
			}
			if err := fn(v); err != nil && !errors.Is(err, maildir.ErrNoMessage) {
				return err
			}
		}
	}
	return nil
}

const searchDescription = `
Prints the mailbox and the UID of each message QUERY matches, a line each
("INBOX<TAB>42"), as doveadm search does (which prints the mailbox's GUID:
Postern's Maildirs keep none). --json adds the folder's UIDVALIDITY. The
query language is in 'postern mailbox --help' and docs/mailbox.md; without a
mailbox key every folder is searched.`

func (c *mailboxCmd) search(args []string) int {
	fs := c.flags("QUERY", searchDescription)
	if code, done := c.parse(fs, args); done {
		return code
	}
	return c.onMatches(fs.Args(), false, "found", func(a *auth.Account, v *messageView) (bool, error) {
		if c.asJSON {
			c.emitJSON(map[string]any{"user": a.Name, "mailbox": v.names[0], "uid": v.m.UID, "uidvalidity": v.snap.UIDValidity})
		} else {
			c.emitText(a, v.names[0]+"\t"+strconv.FormatUint(uint64(v.m.UID), 10))
		}
		return true, nil
	})
}

// fetchFields are the fields fetch knows besides hdr.NAME.
var fetchFields = []string{"user", "mailbox", "uid", "flags", "size", "size.physical", "size.virtual",
	"date.received", "date.saved", "date.sent", "hdr", "body", "text"}

// multiLineFields are printed on the lines after their name.
var multiLineFields = []string{"hdr", "body", "text"}

// maxFetchText bounds a message read whole for fetch's body and text.
const maxFetchText = 1 << 30

const fetchDescription = `
Prints FIELDS of each message QUERY matches, as doveadm fetch does: FIELDS is
one argument, the fields separated by spaces, of user, mailbox, uid, flags
(IMAP's: \Seen \Answered \Flagged \Deleted \Draft \Recent and keywords), size
(size.physical: on disk), size.virtual (with CRLF line ends), date.received
(the internal date), date.saved (when it came into the folder), date.sent
(its Date: field), hdr (the whole header), body, text (the whole message),
and hdr.NAME (the field NAME, RFC 2047-decoded; one line per occurrence).
Each message is a block of "field: value" lines, hdr, body and text on the
lines after "field:", the blocks separated by a line holding a form feed;
--json prints one object per message instead.`

func (c *mailboxCmd) fetch(args []string) int {
	fs := c.flags("FIELDS QUERY", fetchDescription)
	if code, done := c.parse(fs, args); done {
		return code
	}
	if fs.NArg() < 2 {
		return c.usageError("want FIELDS and a QUERY")
	}
	fields := strings.Fields(strings.ToLower(fs.Arg(0)))
	for _, f := range fields {
		if !slices.Contains(fetchFields, f) && !(strings.HasPrefix(f, "hdr.") && validFieldName(f[4:])) {
			return c.usageError("unknown fetch field %s (known: %s, hdr.NAME)", quoteWord(f), strings.Join(fetchFields, " "))
		}
	}
	if len(fields) == 0 {
		return c.usageError("no fetch fields")
	}
	return c.onMatches(fs.Args()[1:], false, "fetched", func(a *auth.Account, v *messageView) (bool, error) {
		values := make([]fetchValue, 0, len(fields))
		for _, f := range fields {
			val, err := fetchField(a, v, f)
			if err != nil {
				return false, err
			}
			values = append(values, val)
		}
		c.emitFetch(values)
		return true, nil
	})
}

// fetchValue is one field of one fetched message.
type fetchValue struct {
	name  string
	lines []string // the text form: one line, or one per header occurrence
	json  any
}

// fetchField reads one field of a message.
func fetchField(a *auth.Account, v *messageView, field string) (fetchValue, error) {
	one := func(s string, j any) (fetchValue, error) {
		return fetchValue{name: field, lines: []string{s}, json: j}, nil
	}
	date := func(t time.Time) (fetchValue, error) {
		if t.IsZero() {
			return one("", "")
		}
		return one(t.Local().Format(time.DateTime), t.Format(time.RFC3339))
	}
	m := v.m
	switch field {
	case "user":
		return one(a.Name, a.Name)
	case "mailbox":
		return one(v.names[0], v.names[0])
	case "uid":
		return one(strconv.FormatUint(uint64(m.UID), 10), m.UID)
	case "flags":
		f := imapFlags(m, v.snap.FromNew(m.UID))
		return one(f, f)
	case "size", "size.physical":
		return one(strconv.FormatInt(m.Size, 10), m.Size)
	case "size.virtual":
		n, err := virtualSize(v.f, m)
		if err != nil {
			return fetchValue{}, err
		}
		return one(strconv.FormatInt(n, 10), n)
	case "date.received":
		return date(v.internalDate())
	case "date.saved":
		return date(v.saveDate())
	case "date.sent":
		t, _ := mime.ParseDate(v.fields().Get("Date"))
		return date(t)
	case "hdr":
		h := string(v.readHeader())
		return one(h, h)
	case "body", "text":
		b, err := v.f.ReadMessage(m.Key, nil, maxFetchText)
		if err != nil {
			return fetchValue{}, err
		}
		if field == "body" {
			b = b[headerEnd(b):]
		}
		return one(string(b), string(b))
	}
	vals := v.decodedValues(field[len("hdr."):])
	if v.err != nil {
		return fetchValue{}, v.err
	}
	if len(vals) == 0 {
		vals = []string{""}
	}
	for i, s := range vals { // one line each, whatever a hostile header holds
		vals[i] = strings.Map(func(r rune) rune {
			if r < 0x20 || r == 0x7f {
				return ' '
			}
			return r
		}, s)
	}
	return fetchValue{name: field, lines: vals, json: strings.Join(vals, "\n")}, nil
}

// emitFetch prints one message's fields: a JSON object, or doveadm's
// pager form ("field: value" lines, records separated by a form feed).
func (c *mailboxCmd) emitFetch(values []fetchValue) {
	if c.asJSON {
		obj := map[string]any{}
		for _, v := range values {
			obj[v.name] = v.json
		}
		c.emitJSON(obj)
		return
	}
	var b strings.Builder
	if c.records > 0 {
		b.WriteString("\f\n")
	}
	for _, v := range values {
		if slices.Contains(multiLineFields, v.name) {
			b.WriteString(v.name + ":\n" + v.lines[0])
			if !strings.HasSuffix(v.lines[0], "\n") {
				b.WriteString("\n")
			}
			continue
		}
		for _, l := range v.lines {
			b.WriteString(v.name + ": " + l + "\n")
		}
	}
	io.WriteString(c.e.stdout, b.String())
	c.records++
}

// imapFlags is a message's flags as IMAP names them.
func imapFlags(m *maildir.Message, recent bool) string {
	var out []string
	for _, f := range imapSystemFlags {
		if strings.IndexByte(m.Flags, f.letter) >= 0 {
			out = append(out, f.name)
		}
	}
	if recent {
		out = append(out, `\Recent`)
	}
	return strings.Join(append(out, m.Keywords...), " ")
}

// systemFlag is an IMAP system flag and its Maildir info letter.
type systemFlag struct {
	name   string
	letter byte
}

// imapSystemFlags are IMAP's system flags and their Maildir info letters
// (RFC 3501 2.3.2, maildir(5)); "P" (passed) has no IMAP flag.
var imapSystemFlags = []systemFlag{
	{`\Answered`, maildir.FlagReplied},
	{`\Flagged`, maildir.FlagFlagged},
	{`\Deleted`, maildir.FlagTrashed},
	{`\Seen`, maildir.FlagSeen},
	{`\Draft`, maildir.FlagDraft},
}

const expungeDescription = `
Removes the messages QUERY matches for good, as IMAP EXPUNGE does: the files
go, and maildirsize gets the negative lines that keep the quota right. The
query must name a mailbox ('mailbox *' for every folder), so that a slip
cannot empty a whole account. The classic: every account's Trash, older
than a week in it:  postern mailbox expunge -A mailbox Trash savedbefore 7d`

func (c *mailboxCmd) expunge(args []string) int {
	fs := c.flags("QUERY", expungeDescription)
	if code, done := c.parse(fs, args); done {
		return code
	}
	return c.onMatches(fs.Args(), true, "expunged", func(a *auth.Account, v *messageView) (bool, error) {
		return true, v.f.Remove(v.m.Key)
	})
}

const moveDescription = `
Moves the messages QUERY matches into the folder DEST, as IMAP MOVE does:
each is hard-linked into DEST with its flags, keywords and internal date
under a new name, then unlinked from its folder, so a crash in between
leaves a copy, never a loss; DEST numbers them (new UIDs) under its lock.
DEST must exist (postern mailbox create); messages already in DEST stay.
The query must name a mailbox. A move into a folder the quota counts is
refused when it would exceed the quota (exit 75).`

func (c *mailboxCmd) move(args []string) int {
	fs := c.flags("DEST QUERY", moveDescription)
	if code, done := c.parse(fs, args); done {
		return code
	}
	if fs.NArg() < 2 {
		return c.usageError("want DEST and a QUERY")
	}
	dests, ok := c.parseFolderArgs(fs.Args()[:1], "")
	if !ok {
		return 64
	}
	q, ok := c.parseQuery(fs.Args()[1:], true)
	if !ok {
		return 64
	}
	dest := dests[0]
	return c.run(false, func(a *auth.Account, md *maildir.Maildir) (string, error) {
		dst, err := md.Folder(dest)
		if err != nil {
			return "", fmt.Errorf("move to %s: %w", c.names.display(dest), err)
		}
		var moved []string
		err = c.eachMatch(md, q, dest, func(v *messageView) error {
			key, err := v.f.CopyTo(dst, v.m.Key)
			if err != nil {
				return err
			}
			moved = append(moved, key)
			return v.f.Remove(v.m.Key)
		})
		if len(moved) > 0 {
			// Number them now, as IMAP MOVE does for COPYUID.
			if _, _, uerr := dst.UIDs(moved); uerr != nil && err == nil {
				err = uerr
			}
		}
		return fmt.Sprintf("%d moved", len(moved)), err
	})
}

const flagsDescription = `
Changes the flags of the messages QUERY matches, as doveadm flags and IMAP
STORE do: add sets FLAGS, remove clears them, replace makes them the
message's only flags (Maildir's P, which IMAP cannot name, is kept). FLAGS is
one argument, the flags separated by spaces: \Seen \Answered \Flagged
\Deleted \Draft, and keywords ($Junk, work). Setting or clearing \Deleted
adjusts maildirsize, as Courier's quota does not count such messages.`

func (c *mailboxCmd) flagsCmd(args []string) int {
	fs := c.flags("add|remove|replace FLAGS QUERY", flagsDescription)
	if code, done := c.parse(fs, args); done {
		return code
	}
	if fs.NArg() < 3 {
		return c.usageError("want add, remove or replace, FLAGS and a QUERY")
	}
	op := fs.Arg(0)
	if op != "add" && op != "remove" && op != "replace" {
		return c.usageError("%s: want add, remove or replace", quoteWord(op))
	}
	letters, keywords, err := parseIMAPFlags(fs.Arg(1))
	if err != nil {
		return c.usageError("%v", err)
	}
	return c.onMatches(fs.Args()[2:], false, "changed", func(a *auth.Account, v *messageView) (bool, error) {
		flags, kws := changeFlags(op, v.m.Flags, v.m.Keywords, letters, keywords)
		if flags == v.m.Flags && slices.Equal(kws, v.m.Keywords) {
			return false, nil
		}
		return true, v.f.SetFlags(v.m.Key, flags, kws)
	})
}

// parseIMAPFlags splits a flag list into Maildir info letters (sorted)
// and keywords (sorted, without duplicates).
func parseIMAPFlags(list string) (string, []string, error) {
	var letters []byte
	var keywords []string
	words := strings.Fields(list)
	if len(words) == 0 {
		return "", nil, errors.New("no flags given")
	}
	for _, w := range words {
		if !strings.HasPrefix(w, `\`) {
			if err := maildir.ValidKeyword(w); err != nil {
				return "", nil, fmt.Errorf("flag %s: %v", quoteWord(w), err)
			}
			keywords = append(keywords, w)
			continue
		}
		i := slices.IndexFunc(imapSystemFlags, func(f systemFlag) bool { return strings.EqualFold(f.name, w) })
		if i < 0 {
			return "", nil, fmt.Errorf("flag %s: not a flag one may set (%s)", quoteWord(w), `\Seen \Answered \Flagged \Deleted \Draft`)
		}
		letters = append(letters, imapSystemFlags[i].letter)
	}
	slices.Sort(letters)
	slices.Sort(keywords)
	return string(slices.Compact(letters)), slices.Compact(keywords), nil
}

// changeFlags applies add, remove or replace to a message's flags and
// keywords.
func changeFlags(op, flags string, keywords []string, letters string, kws []string) (string, []string) {
	var outFlags []byte
	var outKws []string
	switch op {
	case "add":
		outFlags = append([]byte(flags), letters...)
		outKws = append(slices.Clone(keywords), kws...)
	case "remove":
		for i := 0; i < len(flags); i++ {
			if strings.IndexByte(letters, flags[i]) < 0 {
				outFlags = append(outFlags, flags[i])
			}
		}
		outKws = slices.DeleteFunc(slices.Clone(keywords), func(k string) bool { return slices.Contains(kws, k) })
	default: // replace
		outFlags = []byte(letters)
		if strings.IndexByte(flags, maildir.FlagPassed) >= 0 {
			outFlags = append(outFlags, maildir.FlagPassed)
		}
		outKws = slices.Clone(kws)
	}
	slices.Sort(outFlags)
	slices.Sort(outKws)
	return string(slices.Compact(outFlags)), slices.Compact(outKws)
}
