package imap

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"postern/auth"
	"postern/internal/netserve"
	"postern/mailbox/maildir"
)

// state is a session state of RFC 3501 section 3, as a bit so that a command
// can name every state it is valid in.
type state uint8

const (
	stateNotAuth state = 1 << iota
	stateAuth
	stateSelected
	stateLogout
)

const (
	anyState      = stateNotAuth | stateAuth | stateSelected
	authenticated = stateAuth | stateSelected
)

// session is one client connection.
type session struct {
	srv *Server
	id  uint64
	log *slog.Logger
	// conn is shared with Shutdown and Kick; STARTTLS replaces the
	// connection in it.
	conn *netserve.Conn
	// remoteIP is the client's address, for counting failed logins.
	remoteIP netip.Addr
	br       *bufio.Reader
	bw       *bufio.Writer
	d        *decoder
	w        *responseWriter
	tls      bool
	// compressed: COMPRESS DEFLATE is active (RFC 4978); br and bw then
	// carry the inflated and to-be-deflated streams.
	compressed bool

	state   state
	user    string
	account *auth.Account
	mail    *maildir.Maildir
	sel     *selected
	enabled map[string]bool
	// fetchModSeq is the mod-sequence of the message FETCH is writing.
	fetchModSeq uint64

	badCount     int
	authFailures netserve.LoginFailures
	logout       bool
	closeReason  string // set by a command: BYE with this text after its response

	// changed is signalled (without blocking) when another session or a
	// file-system event touched the selected folder.
	changed chan struct{}

	// track is what `postern who` shows and `postern kick` ends.
	track *netserve.Tracker
}

// Tracker is the session's record for Who and Kick.
func (sess *session) Tracker() *netserve.Tracker { return sess.track }

func (s *Server) newSession(c net.Conn, isTLS bool) *session {
	id := s.nextID.Add(1)
	sess := &session{
		srv: s,
		id:  id,
		// writeTimeout bounds each write, so that a client that stops
		// reading cannot hold a session forever, while a large FETCH
		// to a slow but live client still completes chunk by chunk.
		conn:         netserve.NewConn(c, writeTimeout),
		remoteIP:     auth.AddrOf(c.RemoteAddr()),
		tls:          isTLS,
		state:        stateNotAuth,
		changed:      make(chan struct{}, 1),
		log:          s.log.With("session", id, "remote", c.RemoteAddr().String()),
		track:        netserve.NewTracker("imap", c.RemoteAddr().String(), c.LocalAddr().String(), isTLS),
		authFailures: netserve.LoginFailures{Max: maxAuthFailures},
	}
	sess.setConnStreams()
	return sess
}

// setConnStreams (re)builds the buffered reader and writer over the
// connection, at start and after STARTTLS.
func (sess *session) setConnStreams() {
	sess.setStreams(bufio.NewReaderSize(sess.conn, 4<<10), sess.conn, nil)
}

// setStreams makes in the command reader's input and out the responses'
// output: the connection's at start and after STARTTLS, the DEFLATE layers
// after COMPRESS. sync, when not nil, is flushed after every flush of the
// buffered writer (the compressor's own buffer).
func (sess *session) setStreams(in *bufio.Reader, out io.Writer, sync flusher) {
	sess.br = in
	sess.bw = bufio.NewWriterSize(out, 8<<10)
	sess.w = newResponseWriter(sess.bw)
	sess.w.sync = sync
	sess.d = newDecoder(sess.br, sess.continueLiteral)
	sess.d.maxSkip = sess.srv.opt.MaxLiteralSize
}

// continueLiteral asks the client for a synchronizing literal's data.
func (sess *session) continueLiteral(size int64, sync bool) error {
	if !sync {
		return nil
	}
	sess.w.line("+ Ready for literal data").end()
	return sess.w.flush()
}

// authAllowed reports whether LOGIN and AUTHENTICATE may be used now.
func (sess *session) authAllowed() bool {
	return sess.tls || sess.srv.opt.AllowInsecureAuth
}

// interruptWait is called by Shutdown: a session blocked reading the next
// command is woken so that it can say BYE.
func (sess *session) interruptWait() { sess.conn.Interrupt() }

// closeConn ends the connection from another goroutine (Shutdown past its
// deadline).
func (sess *session) closeConn() { sess.conn.Close() }

// shuttingDown reports whether the session must end at this command
// boundary: the server is shutting down, or an admin kicked the session.
func (sess *session) shuttingDown() bool {
	select {
	case <-sess.srv.done:
		return true
	default:
		return sess.track.IsKicked()
	}
}

// endText is the BYE text of a session that shuttingDown ends.
func (sess *session) endText() string {
	if sess.track.IsKicked() {
		return netserve.KickedText
	}
	return "server shutting down"
}

func (sess *session) bye(text string) {
	sess.w.line("* BYE ").raw(text).end()
	sess.w.flush()
}

func (sess *session) run() {
	defer func() {
		if r := recover(); r != nil {
			// A bug in one command must not take the whole server down.
			sess.log.Error("imap: session panic", "panic", r, "stack", string(debug.Stack()))
			sess.bye("internal server error")
		}
		sess.closeSelected()
		if sess.mail != nil {
			sess.srv.hub.releaseMaildir(sess.account.MaildirPath())
		}
		sess.conn.Close()
		sess.log.Debug("imap: session closed", "user", sess.user)
	}()
	sess.log.Debug("imap: session opened")
	if err := sess.conn.Handshake(context.Background(), tlsHandshakeTimeout); err != nil {
		sess.log.Debug("imap: TLS handshake", "err", err)
		return
	}
	if sess.state == stateAuth { // pre-authenticated (ServeConn)
		sess.w.line("* PREAUTH [CAPABILITY ")
		sess.appendCapabilities()
		sess.w.raw("] ").raw(sess.srv.opt.Hostname).raw(" Postern IMAP4rev1 ready, logged in as ").raw(sanitizeText(sess.user)).end()
	} else {
		sess.w.line("* OK [CAPABILITY ")
		sess.appendCapabilities()
		sess.w.raw("] ").raw(sess.srv.opt.Hostname).raw(" Postern IMAP4rev1 ready").end()
	}
	if sess.w.flush() != nil {
		return
	}
	for !sess.logout {
		if sess.shuttingDown() {
			sess.bye(sess.endText())
			return
		}
		if !sess.serveOne() {
			return
		}
	}
}

func (sess *session) appendCapabilities() {
	for i, c := range sess.srv.capabilities(sess) {
		if i > 0 {
			sess.w.byte(' ')
		}
		sess.w.raw(c)
	}
}

// readTimeout is the autologout timer for the current state.
func (sess *session) readTimeout() time.Duration {
	if sess.state == stateNotAuth {
		return sess.srv.unauthTimeout
	}
	return sess.srv.opt.IdleTimeout
}

// serveOne reads and runs one command; false ends the connection.
func (sess *session) serveOne() bool {
	if sess.conn.BeginWait(sess.readTimeout()) != nil || sess.shuttingDown() {
		sess.bye(sess.endText())
		return false
	}
	sess.d.reset()
	if sess.state == stateNotAuth && sess.srv.opt.SMAP != nil && wantsSMAP(sess.br) {
		sess.handOffSMAP()
		return false
	}
	cmd, err := sess.readCommand()
	sess.conn.EndWait()
	if err != nil {
		return sess.readFailed(cmd, err)
	}
	start := time.Now()
	cmd.spec.count.Add(1)
	res := cmd.spec.exec(sess, cmd)
	if res.fatal {
		return false
	}
	if res.sent {
		return true
	}
	if sess.sel != nil && !cmd.spec.noUpdates {
		if r, failed := sess.syncResult(sess.sendUpdates(cmd.spec.expungeOK, false)); failed && r.fatal {
			return false
		}
	}
	if res.status == "BAD" {
		sess.badCount++
	} else {
		sess.badCount = 0
	}
	sess.writeResult(cmd.tag, res)
	sess.log.Debug("imap: command", "command", cmd.name, "status", res.status, "duration", time.Since(start))
	if err := sess.w.flush(); err != nil {
		return false
	}
	if sess.badCount >= maxBadCommands {
		sess.bye("too many invalid commands")
		return false
	}
	if sess.closeReason != "" {
		sess.bye(sess.closeReason)
		return false
	}
	return true
}

func (sess *session) writeResult(tag string, res result) {
	sess.w.line(tag).byte(' ').raw(res.status).byte(' ')
	if res.code != "" {
		sess.w.byte('[').raw(res.code).raw("] ")
	}
	sess.w.raw(res.text).end()
}

// readFailed answers a command that could not be read and decides whether
// the connection survives.
func (sess *session) readFailed(cmd *command, err error) bool {
	tag := "*"
	if cmd != nil && cmd.tag != "" {
		tag = cmd.tag
	}
	var ne net.Error
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed), errors.Is(err, io.ErrUnexpectedEOF):
		return false
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, os.ErrDeadlineExceeded):
		if sess.shuttingDown() {
			sess.bye(sess.endText())
		} else {
			sess.bye("autologout; idle for too long")
		}
		return false
	case errors.Is(err, errAbsurdInput):
		sess.bye("input too big, closing connection")
		return false
	}
	var msg string
	var pe *parseError
	switch {
	case errors.As(err, &pe):
		msg = pe.msg
	case errors.Is(err, errLineTooLong):
		// Past 64 KiB a command is not worth reading on: answer and close,
		// so a client streaming junk without a newline costs one buffer.
		sess.w.line(tag).raw(" BAD command line too long").end()
		sess.bye("command line too long, closing connection")
		return false
	case errors.Is(err, errLiteralTooBig):
		msg = "literal too big"
	default:
		sess.log.Debug("imap: read", "err", err)
		return false
	}
	// Reading may stop inside the line; the rest must go before the next
	// command is read, within the same line budget.
	sess.conn.SetReadDeadline(time.Now().Add(sess.srv.unauthTimeout))
	if derr := sess.d.discardCommand(); derr != nil {
		if errors.Is(derr, errAbsurdInput) || errors.Is(derr, errLineTooLong) {
			sess.w.line(tag).raw(" BAD ").raw(msg).end()
			sess.bye("command line too long, closing connection")
		}
		return false
	}
	sess.badCount++
	sess.w.line(tag).raw(" BAD ").raw(msg).end()
	if sess.badCount >= maxBadCommands {
		sess.w.line("* BYE too many invalid commands").end()
		sess.w.flush()
		return false
	}
	return sess.w.flush() == nil
}

// command is one parsed command.
type command struct {
	tag  string
	name string // upper case; "UID FETCH" for UID commands
	uid  bool
	spec *commandSpec
	args any
}

// result is a command's tagged response.
type result struct {
	status string // OK, NO, BAD
	code   string // response code without brackets, e.g. "TRYCREATE"
	text   string
	fatal  bool // the connection is already finished (BYE sent)
	sent   bool // the command wrote its tagged response itself
}

func ok(text string) result           { return result{status: "OK", text: text} }
func okCode(code, text string) result { return result{status: "OK", code: code, text: text} }
func no(code, text string) result     { return result{status: "NO", code: code, text: text} }
func bad(text string) result          { return result{status: "BAD", text: text} }
func fatal() result                   { return result{fatal: true} }

// readCommand reads "tag SP name [SP args] CRLF".
func (sess *session) readCommand() (*command, error) {
	d := sess.d
	// Empty lines between commands are tolerated, as other servers do.
	for {
		b, err := d.peek()
		if err != nil {
			return nil, err
		}
		if b != '\r' && b != '\n' {
			break
		}
		d.readByte()
	}
	return sess.srv.parseCommand(d, sess.state)
}

// parseCommand reads one command from d for a session in state st. Errors
// are parseErrors (answer BAD) or reader errors.
func (s *Server) parseCommand(d *decoder, st state) (*command, error) {
	cmd := &command{}
	tag, err := d.readWhile(isTagChar, "tag")
	if err != nil {
		return nil, err
	}
	cmd.tag = tag
	if err := d.sp(); err != nil {
		return cmd, err
	}
	name, err := d.readWhile(isAtomChar, "command name")
	if err != nil {
		return cmd, err
	}
	name = strings.ToUpper(name)
	if name == "UID" {
		if err := d.sp(); err != nil {
			return cmd, err
		}
		sub, err := d.readWhile(isAtomChar, "command name")
		if err != nil {
			return cmd, err
		}
		name = "UID " + strings.ToUpper(sub)
		cmd.uid = true
	}
	cmd.name = name
	spec := s.commands[name]
	if spec == nil {
		return cmd, syntaxErr("unknown command %s", strconv.Quote(truncate(name, 40)))
	}
	if spec.states&st == 0 {
		return cmd, syntaxErr("%s not allowed in this state", name)
	}
	cmd.spec = spec
	if spec.parse != nil {
		if cmd.args, err = spec.parse(d); err != nil {
			return cmd, err
		}
	}
	if !spec.ownsLineEnd {
		if err := d.crlf(); err != nil {
			return cmd, err
		}
	}
	return cmd, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded)
}
