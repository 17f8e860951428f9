package imap

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"postern/mailbox/acl"
	"postern/mailbox/maildir"
)

// APPEND (RFC 3501 6.3.11) with APPENDUID (RFC 4315) and MULTIAPPEND
// (RFC 3502). Each message literal is streamed from the connection into the
// Maildir: it is never held whole in memory, and a synchronizing literal
// that is too big, or aimed at a mailbox that does not exist, is refused
// before the client sends it.
func appendCommands() []*commandSpec {
	return []*commandSpec{
		{name: "APPEND", states: authenticated, caps: []string{"MULTIAPPEND"}, parse: parseAppend, exec: execAppend, ownsLineEnd: true, expungeOK: true},
	}
}

type appendArgs struct {
	mailbox string
	flags   flagSet
	date    time.Time
	size    int64
	sync    bool
	binary  bool // sent as a literal8, "~{n}"
	// utf8: sent as RFC 6855 4's "UTF8 (~{n}...)": a message that may have
	// UTF-8 header fields (stored as sent); a ")" follows the data.
	utf8 bool
}

func parseAppend(d *decoder) (any, error) {
	if err := d.sp(); err != nil {
		return nil, err
	}
	a, err := d.mailboxAndMessage()
	if err != nil {
		return nil, err
	}
	return a, nil
}

// mailboxAndMessage reads "mailbox SP append-message" up to the message
// literal's data: the end of APPEND (RFC 9051 6.3.12) and of REPLACE
// (RFC 8508 3.3).
func (d *decoder) mailboxAndMessage() (appendArgs, error) {
	mb, err := d.astring()
	if err != nil {
		return appendArgs{}, err
	}
	if err := d.sp(); err != nil {
		return appendArgs{}, err
	}
	a, err := d.appendMessage()
	if err != nil {
		return appendArgs{}, err
	}
	a.mailbox = mb
	return a, nil
}

// appendMessage reads one message's "[flag-list SP] [date-time SP]
// literal" up to the literal's data: the first after the mailbox name, and
// with MULTIAPPEND (RFC 3502) each further one after a space.
func (d *decoder) appendMessage() (appendArgs, error) {
	var a appendArgs
	b, err := d.peek()
	if err != nil {
		return a, err
	}
	if b == '(' {
		names, err := d.flagList()
		if err != nil {
			return a, err
		}
		if a.flags, err = parseFlagNames(names); err != nil {
			return a, err
		}
		if err := d.sp(); err != nil {
			return a, err
		}
		if b, err = d.peek(); err != nil {
			return a, err
		}
	}
	if b == '"' {
		s, err := d.quoted()
		if err != nil {
			return a, err
		}
		if a.date, err = parseDateTime(s); err != nil {
			return a, err
		}
		if err := d.sp(); err != nil {
			return a, err
		}
		if b, err = d.peek(); err != nil {
			return a, err
		}
	}
	if b == 'U' || b == 'u' {
		// RFC 6855 4: append-data =/ "UTF8" SP "(" literal8 ")".
		name, err := d.atom()
		if err != nil {
			return a, err
		}
		if !strings.EqualFold(name, "UTF8") {
			return a, syntaxErr("unknown APPEND data item %s", truncate(name, 40))
		}
		if err := d.sp(); err != nil {
			return a, err
		}
		if err := d.expect('(', "'('"); err != nil {
			return a, err
		}
		if b, err = d.peek(); err != nil {
			return a, err
		}
		if b != '~' {
			return a, syntaxErr("UTF8 needs a literal8")
		}
		a.utf8 = true
	}
	if b == '~' {
		// literal8 (RFC 3516 4.4): the message may hold NUL and bare
		// CR or LF; it is stored as sent, like any other.
		d.readByte()
		a.binary = true
	}
	if a.size, a.sync, err = d.literalHeader(); err != nil {
		return a, err
	}
	return a, nil
}

// flagList reads "(" [flag *(SP flag)] ")".
func (d *decoder) flagList() ([]string, error) {
	if err := d.expect('(', "'('"); err != nil {
		return nil, err
	}
	var names []string
	for {
		b, err := d.peek()
		if err != nil {
			return nil, err
		}
		if b == ')' {
			d.readByte()
			return names, nil
		}
		if len(names) > 0 {
			if err := d.sp(); err != nil {
				return nil, err
			}
		}
		f, err := d.flag()
		if err != nil {
			return nil, err
		}
		if len(names) >= maxKeywordsPerCommand+8 {
			return nil, syntaxErr("too many flags")
		}
		names = append(names, f)
	}
}

// flag reads a keyword atom or a "\" system flag.
func (d *decoder) flag() (string, error) {
	b, err := d.peek()
	if err != nil {
		return "", err
	}
	if b == '\\' {
		d.readByte()
		a, err := d.atom()
		if err != nil {
			return "", err
		}
		return `\` + a, nil
	}
	return d.atom()
}

// parseDateTime parses RFC 3501's date-time: "dd-Mon-yyyy hh:mm:ss +zzzz",
// the day possibly space-padded.
func parseDateTime(s string) (time.Time, error) {
	t, err := time.Parse("_2-Jan-2006 15:04:05 -0700", s)
	if err != nil {
		return time.Time{}, syntaxErr("invalid date-time %q", truncate(s, 40))
	}
	return t, nil
}

// maxMultiAppend bounds the messages of one APPEND: each is staged on disk
// until the command ends.
const maxMultiAppend = 1000

func execAppend(s *session, c *command) result {
	a := c.args.(appendArgs)
	var staged []*maildir.Staged
	discard := func() {
		for _, st := range staged {
			st.Discard()
		}
		staged = nil
	}
	// refuse answers without taking the current literal: for a
	// synchronizing one the client sends nothing more; a non-synchronizing
	// one is on its way and is skipped when its size is sane, with the
	// rest of the command (further MULTIAPPEND messages).
	refuse := func(r result) result {
		discard()
		return s.refuseLiteral(c, a, "APPEND", r)
	}
	ref, r, found := s.resolveMailbox(a.mailbox)
	if !found {
		return refuse(r)
	}
	defer s.releaseRef(ref)
	if !ref.rights.Has(acl.Insert) {
		return refuse(noPerm()) // RFC 4314 4: APPEND needs "i"
	}
	f, err := ref.mail.Folder(ref.folder)
	if err == nil && ref.fs != nil {
		f, err = s.fsSharedInsertTarget(ref)
	}
	if err != nil {
		if errors.Is(err, maildir.ErrNoFolder) {
			return refuse(no("TRYCREATE", "No such mailbox; create it first"))
		}
		return refuse(s.storageResult(err, "APPEND"))
	}
	// MULTIAPPEND (RFC 3502): every message is staged (written and made
	// durable in tmp/) as it arrives; only when the whole command has been
	// read are they committed, so that any failure leaves none behind.
	var total int64
	for {
		if a.utf8 && !s.utf8Accept() {
			// RFC 6855 4: UTF8 data only after ENABLE UTF8=ACCEPT.
			return refuse(bad("APPEND UTF8 needs ENABLE UTF8=ACCEPT"))
		}
		if a.size > s.srv.opt.MaxLiteralSize {
			return refuse(no("TOOBIG", fmt.Sprintf("Message exceeds the %d-byte limit", s.srv.opt.MaxLiteralSize)))
		}
		if len(staged) >= maxMultiAppend {
			return refuse(no("LIMIT", fmt.Sprintf("At most %d messages in one APPEND", maxMultiAppend)))
		}
		total += a.size
		// The usage is only counted when there is a quota to hold it to
		// (without maildirsize that means listing every folder).
		if limit, err := ref.mail.QuotaLimit(); err == nil && !limit.IsZero() {
			if limit, used, err := ref.mail.Quota(); err == nil {
				n := int64(len(staged) + 1)
				if limit.Bytes > 0 && used.Bytes+total > limit.Bytes || limit.Messages > 0 && used.Messages+n > limit.Messages {
					return refuse(no("OVERQUOTA", "Mailbox is over quota"))
				}
			}
		}
		if err := s.continueLiteral(a.size, a.sync); err != nil {
			discard()
			return fatal()
		}
		body := &exactReader{r: s.br, left: a.size}
		// Without flags the message goes to new/ and is \Recent for the
		// next session that looks, as a delivery would be.
		st, serr := f.Stage(body, maildir.DeliverOptions{Flags: a.flags.letters, Keywords: a.flags.keywords, InternalDate: a.date})
		if body.left > 0 {
			// Staging stopped early (disk error): keep the connection in
			// step by reading the rest.
			if _, err := io.CopyN(io.Discard, s.br, body.left); err != nil {
				discard()
				return fatal()
			}
		}
		if body.err != nil {
			if serr == nil {
				st.Discard()
			}
			discard()
			return fatal()
		}
		if serr != nil {
			// The rest of the command is read and dropped; nothing is kept.
			discard()
			if err := s.d.discardCommand(); err != nil {
				return fatal()
			}
			return s.storageResult(serr, "APPEND")
		}
		staged = append(staged, st)
		if a.utf8 {
			if err := s.d.expect(')', "')' after UTF8 data"); err != nil {
				discard()
				var pe *parseError
				if errors.As(err, &pe) {
					return s.badAppendTail(pe)
				}
				return fatal()
			}
		}
		// A space after the literal starts the next message; the end of
		// the line ends the command.
		b, err := s.d.peek()
		if err != nil {
			discard()
			return fatal()
		}
		if b != ' ' {
			if err := s.d.crlf(); err != nil {
				discard()
				var pe *parseError
				if errors.As(err, &pe) {
					return s.badAppendTail(pe)
				}
				return fatal()
			}
			break
		}
		s.d.readByte()
		next, err := s.d.appendMessage()
		if err != nil {
			discard()
			var pe *parseError
			if errors.As(err, &pe) {
				return s.badAppendTail(pe)
			}
			return fatal()
		}
		next.mailbox = a.mailbox
		a = next
	}
	keys := make([]string, 0, len(staged))
	for i, st := range staged {
		key, err := st.Commit()
		if err != nil {
			// All or nothing: the committed ones go again, the rest are
			// dropped.
			for _, k := range keys {
				f.Remove(k)
			}
			for _, rest := range staged[i+1:] {
				rest.Discard()
			}
			return s.storageResult(err, "APPEND")
		}
		keys = append(keys, key)
	}
	s.srv.hub.notify(f.Path(), s)
	if s.sel != nil && s.sel.folder.Path() == f.Path() {
		s.markChanged()
	}
	// APPENDUID (RFC 4315 3): the new messages' UIDs, in the order sent.
	// No Sync: numbering the new keys is enough, and leaves the snapshot
	// to the session that will move them to cur/ (which then only adds
	// them to the last one).
	if ref.fs != nil {
		f.AdoptShared(keys, s.identity())
		return ok("APPEND completed") // UIDs come with the view's next sync
	}
	validity, uids, err := f.UIDs(keys)
	if err == nil && !slices.Contains(uids, 0) {
		return okCode(fmt.Sprintf("APPENDUID %d %s", validity, compactUIDs(uids)), "APPEND completed")
	}
	return ok("APPEND completed")
}

// badAppendTail answers a syntax error after an APPEND literal: the rest of
// the command is thrown away as after any syntax error.
func (s *session) badAppendTail(pe *parseError) result {
	if err := s.d.discardCommand(); err != nil {
		return fatal()
	}
	return bad(pe.msg)
}

// exactReader reads exactly left bytes; an early end of the connection is
// an error, never a short message handed to the Maildir as complete.
type exactReader struct {
	r    io.Reader
	left int64
	err  error
}

func (e *exactReader) Read(p []byte) (int, error) {
	if e.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > e.left {
		p = p[:e.left]
	}
	n, err := e.r.Read(p)
	e.left -= int64(n)
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		e.err = err
		return n, err
	}
	return n, nil
}

// refuseLiteral answers r to cmd (APPEND, REPLACE) before its message
// literal is taken: a synchronizing literal is then never sent; a
// non-synchronizing one is skipped with the rest of the command when its
// size is sane, else (RFC 7888 4) refused and the connection closed.
func (s *session) refuseLiteral(c *command, a appendArgs, cmd string, r result) result {
	if a.sync {
		return r
	}
	if err := s.d.skip(a.size); err != nil {
		if errors.Is(err, errAbsurdInput) {
			s.writeResult(c.tag, r)
			s.bye("message too big for " + cmd + ", closing connection")
		}
		return fatal()
	}
	if err := s.d.discardCommand(); err != nil {
		return fatal()
	}
	return r
}
