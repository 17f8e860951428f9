package imap

import (
	"errors"
	"fmt"
	"io"
	"time"

	"postern/mailbox/maildir"
)

// APPEND (RFC 3501 6.3.11) with APPENDUID (RFC 4315). The message literal
// is streamed from the connection into the Maildir: it is never held whole
// in memory, and a synchronizing literal that is too big, or aimed at a
// mailbox that does not exist, is refused before the client sends it.
func appendCommands() []*commandSpec {
	return []*commandSpec{
		{name: "APPEND", states: authenticated, parse: parseAppend, exec: execAppend, ownsLineEnd: true, expungeOK: true},
	}
}

type appendArgs struct {
	mailbox string
	flags   flagSet
	date    time.Time
	size    int64
	sync    bool
	binary  bool // sent as a literal8, "~{n}"
}

func parseAppend(d *decoder) (any, error) {
	if err := d.sp(); err != nil {
		return nil, err
	}
	mb, err := d.astring()
	if err != nil {
		return nil, err
	}
	a := appendArgs{mailbox: mb}
	if err := d.sp(); err != nil {
		return nil, err
	}
	b, err := d.peek()
	if err != nil {
		return nil, err
	}
	if b == '(' {
		names, err := d.flagList()
		if err != nil {
			return nil, err
		}
		if a.flags, err = parseFlagNames(names); err != nil {
			return nil, err
		}
		if err := d.sp(); err != nil {
			return nil, err
		}
		if b, err = d.peek(); err != nil {
			return nil, err
		}
	}
	if b == '"' {
		s, err := d.quoted()
		if err != nil {
			return nil, err
		}
		if a.date, err = parseDateTime(s); err != nil {
			return nil, err
		}
		if err := d.sp(); err != nil {
			return nil, err
		}
		if b, err = d.peek(); err != nil {
			return nil, err
		}
	}
	if b == '~' {
		// literal8 (RFC 3516 4.4): the message may hold NUL and bare
		// CR or LF; it is stored as sent, like any other.
		d.readByte()
		a.binary = true
	}
	if a.size, a.sync, err = d.literalHeader(); err != nil {
		return nil, err
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

func execAppend(s *session, c *command) result {
	a := c.args.(appendArgs)
	// refuse answers without taking the literal: for a synchronizing one
	// the client sends nothing more; a non-synchronizing one is on its way
	// and is skipped when its size is sane.
	refuse := func(r result) result {
		if !a.sync {
			if err := s.d.skip(a.size); err != nil {
				if errors.Is(err, errAbsurdInput) {
					// RFC 7888 4: a non-synchronizing literal over the
					// limit is refused and the connection closed.
					s.writeResult(c.tag, r)
					s.bye("message too big for APPEND, closing connection")
				}
				return fatal()
			}
			if err := s.d.crlf(); err != nil {
				return fatal()
			}
		}
		return r
	}
	folder, err := s.folderName(a.mailbox)
	if err != nil {
		return refuse(nameResult(err))
	}
	f, err := s.mail.Folder(folder)
	if err != nil {
		if errors.Is(err, maildir.ErrNoFolder) {
			return refuse(no("TRYCREATE", "No such mailbox; create it first"))
		}
		return refuse(s.storageResult(err, "APPEND"))
	}
	if a.size > s.srv.opt.MaxLiteralSize {
		return refuse(no("TOOBIG", fmt.Sprintf("Message exceeds the %d-byte limit", s.srv.opt.MaxLiteralSize)))
	}
	if limit, used, err := s.mail.Quota(); err == nil {
		if limit.Bytes > 0 && used.Bytes+a.size > limit.Bytes || limit.Messages > 0 && used.Messages+1 > limit.Messages {
			return refuse(no("OVERQUOTA", "Mailbox is over quota"))
		}
	}
	if err := s.continueLiteral(a.size, a.sync); err != nil {
		return fatal()
	}
	body := &exactReader{r: s.br, left: a.size}
	// Without flags the message goes to new/ and is \Recent for the next
	// session that looks, as a delivery would be.
	key, derr := f.Deliver(body, maildir.DeliverOptions{Flags: a.flags.letters, Keywords: a.flags.keywords, InternalDate: a.date})
	if body.left > 0 {
		// Delivery stopped early (disk error, quota): keep the connection
		// in step by reading the rest.
		if _, err := io.CopyN(io.Discard, s.br, body.left); err != nil {
			return fatal()
		}
	}
	if body.err != nil {
		return fatal()
	}
	if err := s.d.crlf(); err != nil {
		if derr == nil {
			f.Remove(key) // a broken command must not leave a message behind
		}
		var pe *parseError
		if errors.As(err, &pe) {
			return bad("Expected end of line after the APPEND literal (MULTIAPPEND is not supported)")
		}
		return fatal()
	}
	if derr != nil {
		return s.storageResult(derr, "APPEND")
	}
	s.srv.hub.notify(f.Path(), s)
	if s.sel != nil && s.sel.folder.Path() == f.Path() {
		s.markChanged()
	}
	// APPENDUID (RFC 4315 3): the new message's UID.
	snap, err := f.Sync(false)
	if err == nil {
		for i := range snap.Messages {
			if snap.Messages[i].Key == key {
				return okCode(fmt.Sprintf("APPENDUID %d %d", snap.UIDValidity, snap.Messages[i].UID), "APPEND completed")
			}
		}
	}
	return ok("APPEND completed")
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
