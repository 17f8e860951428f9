package smap

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"strconv"
	"strings"
	"time"

	"postern/mailbox/maildir"
	"postern/mailbox/mime"
)

// addState is what ADD's command lines have set so far (smapadd): a
// client may give the settings over several "ADD" lines before the one
// with the message.
type addState struct {
	folder   *maildir.Folder
	shared   bool // folder is a sharable folder: give the message to the user
	flags    string
	keywords []string
	date     time.Time
	from     string
	notify   string
	rcpts    []string
}

// Sender sends ADD's message to its RCPTTO recipients: Courier's "send it
// too", which Courier does by running sendmail. The server wires it to the
// MTA's local submission. from is MAILFROM ("" when not given); notify is
// NOTIFY's DSN list; msg has LF line ends. An error's text is the -ERR
// reply.
type Sender interface {
	Send(ctx context.Context, login, from string, rcpts []string, notify string, msg []byte) error
}

// uploadTimeout bounds each read of ADD's message data, as Courier's
// read_timeout(60).
const uploadTimeout = 60 * time.Second

var (
	errTooLarge  = errors.New("smap: message too large")
	errNoSending = errors.New("sending mail through SMAP is not available on this server")
)

// sendTimeout bounds the hand-off of a message to the MTA.
const sendTimeout = 2 * time.Minute

// sendError is the Sender's refusal, sent to the client as it is.
type sendError struct{ err error }

func (e sendError) Error() string { return e.err.Error() }
func (e sendError) Unwrap() error { return e.err }

// oneLine keeps a reply on one line.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, s)
}

// cmdAdd handles one ADD line. It returns true while the ADD goes on (a
// settings line), false when the message was received (or the ADD failed
// on it), which ends the ADD.
func (sess *session) cmdAdd(w *words) bool {
	if sess.add == nil {
		sess.add = &addState{}
	}
	st := sess.add
	okmsg := "So far, so good..."
	for p := w.next(); p != ""; p = w.next() {
		name, value, hasValue := strings.Cut(p, "=")
		name = upper(name)
		switch {
		case name == "FOLDER":
			f, shared, err := sess.insertTarget(w.path())
			if err != nil {
				sess.writeString("-ERR Invalid folder: " + errText(err) + "\n")
				return true
			}
			st.folder, st.shared = f, shared
			okmsg = "Will add to this folder"
		case name == "MAILFROM" && hasValue:
			st.from = value
			okmsg = "MAIL FROM set"
		case name == "NOTIFY" && hasValue:
			st.notify = value
			okmsg = "NOTIFY set"
		case name == "RCPTTO" && hasValue:
			if len(st.rcpts) < 1000 {
				st.rcpts = append(st.rcpts, value)
			}
			okmsg = "RCPT TO set"
		case name == "FLAGS" && hasValue:
			st.flags = parseFlagWords(upper(value))
			okmsg = "FLAGS set"
		case name == "KEYWORDS" && hasValue:
			st.keywords = parseKeywordWords(value)
			okmsg = "KEYWORDS set"
		case name == "INTERNALDATE" && hasValue:
			if t, ok := mime.ParseDate(value); ok {
				st.date = t
				okmsg = "INTERNALDATE set"
			}
		case strings.HasPrefix(p, "{"):
			sess.upload(st, p[1:])
			return false
		}
	}
	sess.writeString("+OK " + okmsg + "\n")
	return true
}

// upload receives ADD's message ("{.}": dot-stuffed lines ending with
// "."; "{n/total}": n bytes, then a line with the next block's size or an
// empty line) and stores it in the ADD's folder.
func (sess *session) upload(st *addState, format string) {
	sess.writeString("> Go ahead\n")
	if sess.flush() != nil {
		return
	}
	r := &uploadReader{sess: sess, br: sess.br, limit: sess.srv.opt.MaxMessageSize}
	if strings.HasPrefix(format, ".") {
		r.dot = true
	} else {
		r.left = leadingNumber(format)
	}
	var key string
	var err error
	switch {
	case len(st.rcpts) > 0 && sess.srv.opt.Sender == nil:
		// Not offered here: the message is read and nothing is kept.
		err = errNoSending
	case len(st.rcpts) > 0:
		// Sent first, then stored: a message that cannot be sent is not
		// kept either, as in Courier.
		var msg bytes.Buffer
		if _, err = io.Copy(&msg, r); err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), sendTimeout)
			err = sess.srv.opt.Sender.Send(ctx, sess.user, st.from, st.rcpts, st.notify, msg.Bytes())
			cancel()
			if err != nil {
				err = sendError{err}
			} else if st.folder != nil {
				key, err = st.folder.Deliver(bytes.NewReader(msg.Bytes()), maildir.DeliverOptions{Flags: st.flags, Keywords: st.keywords, InternalDate: st.date})
			}
			if err == nil {
				sess.log.Info("smap: message sent", "from", st.from, "recipients", len(st.rcpts))
			}
		}
	case st.folder == nil:
		// Courier stores a message without FOLDER nowhere.
		_, err = io.Copy(io.Discard, r)
	default:
		key, err = st.folder.Deliver(r, maildir.DeliverOptions{Flags: st.flags, Keywords: st.keywords, InternalDate: st.date})
	}
	r.drain()
	if r.err != nil {
		// The connection failed: nothing to answer.
		sess.conn.Close()
		return
	}
	switch {
	case r.tooLarge:
		sess.writeString("-ERR Message too large\n")
	case errors.Is(err, errNoSending):
		sess.writeString("-ERR " + err.Error() + "\n")
	case errors.As(err, new(sendError)):
		sess.log.Info("smap: send refused", "err", err)
		sess.writeString("-ERR " + oneLine(err.Error()) + "\n")
	case err != nil:
		sess.log.Warn("smap: add", "err", err)
		if errors.Is(err, maildir.ErrOverQuota) {
			sess.writeString("-ERR No space left on device\n")
		} else {
			sess.writeString("-ERR " + errText(err) + "\n")
		}
	default:
		if key != "" {
			if st.shared {
				st.folder.AdoptShared([]string{key}, sess.identity())
			}
			sess.srv.added.Add(1)
			sess.writeString(`* ADD "UID=` + quoteInner(key) + `"` + "\n")
		}
		sess.writeString("+OK Message saved\n")
	}
}

func leadingNumber(s string) int64 {
	var n int64
	for i := 0; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
		if n < 1<<50 {
			n = n*10 + int64(s[i]-'0')
		}
	}
	return n
}

// uploadReader turns ADD's data into the message: CRs dropped, dots
// unstuffed, a final newline added when missing, at least one newline
// (Courier's add_msg). Past limit it reads on to the end but gives
// errTooLarge, so that the protocol stays in step and nothing is stored.
type uploadReader struct {
	sess  *session
	br    *bufio.Reader
	dot   bool
	left  int64 // bytes left in the current block (block mode)
	limit int64
	n     int64
	done  bool
	err   error // reading the connection failed

	tooLarge bool
	lastNL   bool
	pend     []byte // bytes decided but not yet given
	midLine  bool   // dot mode: the last line read had no newline yet
}

func (u *uploadReader) Read(p []byte) (int, error) {
	for len(u.pend) == 0 {
		switch {
		case u.tooLarge:
			return 0, errTooLarge
		case u.done:
			return 0, io.EOF
		case u.err != nil:
			return 0, u.err
		}
		u.fill()
	}
	n := copy(p, u.pend)
	u.pend = u.pend[n:]
	return n, nil
}

// drain reads to the end of the data, discarding what is left.
func (u *uploadReader) drain() {
	for !u.done && u.err == nil {
		u.pend = u.pend[:0]
		u.fill()
	}
	u.pend = nil
}

// fill decides the next bytes of the message.
func (u *uploadReader) fill() {
	u.sess.conn.SetReadDeadline(time.Now().Add(uploadTimeout))
	if u.dot {
		frag, err := u.br.ReadSlice('\n')
		if err != nil && err != bufio.ErrBufferFull {
			u.err = err
			return
		}
		line := dropCR(frag)
		atStart := !u.midLine
		u.midLine = err != nil
		if atStart && len(line) > 0 && line[0] == '.' {
			if string(line) == ".\n" {
				u.finish()
				return
			}
			line = line[1:]
		}
		u.give(line)
		return
	}
	if u.left == 0 {
		// The line after a block gives the next block's size; a line
		// without a number ends the message.
		l, err := readLine(u.br)
		if err != nil && !errors.Is(err, errLineTooLong) {
			u.err = err
			return
		}
		if l == "" || l[0] < '0' || l[0] > '9' {
			u.finish()
			return
		}
		u.left = leadingNumber(l)
		return
	}
	buf := make([]byte, min(u.left, 8192))
	n, err := io.ReadFull(u.br, buf)
	u.left -= int64(n)
	u.give(dropCR(buf[:n]))
	if err != nil {
		u.err = err
	}
}

func dropCR(b []byte) []byte {
	if !strings.Contains(string(b), "\r") {
		return b
	}
	out := make([]byte, 0, len(b))
	for _, c := range b {
		if c != '\r' {
			out = append(out, c)
		}
	}
	return out
}

func (u *uploadReader) give(b []byte) {
	if len(b) == 0 {
		return
	}
	u.n += int64(len(b))
	u.lastNL = b[len(b)-1] == '\n'
	if u.tooLarge {
		return
	}
	if u.n > u.limit {
		u.tooLarge = true
		u.pend = nil
		return
	}
	u.pend = append(u.pend, b...)
}

func (u *uploadReader) finish() {
	if !u.tooLarge && (!u.lastNL || u.n == 0) {
		u.pend = append(u.pend, '\n')
	}
	u.done = true
}

func itoa(i int) string { return strconv.Itoa(i) }
