package smap

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
	"time"

	"postern/auth"
	"postern/internal/netserve"
	"postern/mailbox/maildir"
)

// session is one SMAP connection.
type session struct {
	srv *Server
	log *slog.Logger
	// conn is shared with Shutdown and Kick; STARTTLS replaces the
	// connection in it.
	conn     *netserve.Conn
	br       *bufio.Reader
	bw       *bufio.Writer
	tls      bool
	remoteIP netip.Addr

	user string
	acct *auth.Account
	md   *maildir.Maildir
	cur  *openFolder // the open folder, nil when none
	add  *addState   // ADD's settings between its command lines
	// cache is the last message FETCH read, kept for the next FETCH of it.
	cache *cachedMessage

	authFailures    netserve.LoginFailures
	badCommands     int
	closeAfterLogin bool // the client is blocked: end the session
	// proxied is set once the session has been relayed to another
	// mailbox host (the session is over).
	proxied bool

	// track is what `postern who` shows and `postern kick` ends.
	track *netserve.Tracker
}

// Tracker is the session's record for Who and Kick.
func (sess *session) Tracker() *netserve.Tracker { return sess.track }

// ending reports whether the session must end at this command boundary:
// the server is shutting down, or an admin kicked the session.
func (sess *session) ending() bool {
	return sess.srv.shuttingDown() || sess.track.IsKicked()
}

// newSession makes the session of c; br reads c, or is nil for a new
// connection.
func (s *Server) newSession(c net.Conn, br *bufio.Reader, isTLS bool) *session {
	// writeTimeout bounds each write, so that a client that stops
	// reading cannot hold a session forever.
	conn := netserve.NewConn(c, writeTimeout)
	if br == nil {
		br = bufio.NewReaderSize(conn, 4<<10)
	}
	sess := &session{
		srv:          s,
		conn:         conn,
		br:           br,
		bw:           bufio.NewWriterSize(conn, 8<<10),
		tls:          isTLS,
		remoteIP:     auth.AddrOf(c.RemoteAddr()),
		log:          s.log.With("remote", c.RemoteAddr().String()),
		track:        netserve.NewTracker("smap", c.RemoteAddr().String(), c.LocalAddr().String(), isTLS),
		authFailures: netserve.LoginFailures{Max: maxAuthFailures},
	}
	return sess
}

func (sess *session) writeString(s string) { sess.bw.WriteString(s) }
func (sess *session) flush() error         { return sess.bw.Flush() }

// interrupt wakes a session blocked reading (Shutdown).
func (sess *session) interrupt() { sess.conn.Interrupt() }

// kill cuts the connection, and a relay's backend (Shutdown past its
// deadline).
func (sess *session) kill() { sess.conn.Close() }

func (sess *session) close() {
	sess.closeFolder()
}

// readCommand reads the next line with the given timeout, marked as
// interruptible by Shutdown.
func (sess *session) readCommand(timeout time.Duration) (string, error) {
	if sess.conn.BeginWait(timeout) != nil {
		return "", errShutdown
	}
	defer sess.conn.EndWait()
	if sess.ending() {
		return "", errShutdown
	}
	return readLine(sess.br)
}

var errShutdown = errors.New("smap: server shutting down")

// readFailed decides what a failed read means: a line too long is answered
// and the session goes on; anything else ends it, with a BYE when the
// client may still listen.
func (sess *session) readFailed(err error, eol string) bool {
	switch {
	case errors.Is(err, errLineTooLong):
		sess.writeString("-ERR Command line too long" + eol)
		return sess.flush() == nil
	case errors.Is(err, errAbsurdInput):
		sess.writeString("-ERR Command line too long" + eol + "* BYE Too much input without a newline" + eol)
	case (errors.Is(err, errShutdown) || isTimeout(err)) && sess.track.IsKicked():
		sess.writeString("* BYE " + netserve.KickedText + eol)
	case errors.Is(err, errShutdown) || sess.srv.shuttingDown() && isTimeout(err):
		sess.writeString("* BYE Courier-SMAP server shutting down" + eol)
	case isTimeout(err):
		sess.writeString("* BYE Disconnected for inactivity." + eol)
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
		return false
	default:
		sess.log.Debug("smap: read", "err", err)
		return false
	}
	sess.flush()
	return false
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded)
}

// serveListener runs a session on Postern's own SMAP listener.
func (sess *session) serveListener() {
	if err := sess.conn.Handshake(context.Background(), tlsHandshakeTimeout); err != nil {
		sess.log.Debug("smap: TLS handshake", "err", err)
		return
	}
	// conn.html: an SMAP server greets as an IMAP server would, with
	// SMAP1 among the capabilities.
	sess.writeString("* OK [CAPABILITY " + sess.capabilities() + "] " + sess.srv.opt.Hostname + " Postern SMAP1 ready\r\n")
	if sess.flush() != nil {
		return
	}
	sess.preLogin()
}

// capabilities are the pre-login capabilities (conn.html): SMAP1,
// STARTTLS while it is possible.
func (sess *session) capabilities() string {
	caps := "SMAP1"
	if sess.srv.opt.TLSConfig != nil && !sess.tls {
		caps += " STARTTLS"
	}
	return caps
}

// preLogin serves the commands before login. Courier's clients send them
// tagged "\SMAP1" (an IMAP tag that switches Courier's imapd to SMAP); a
// command without the tag is taken too. Replies are SMAP's +OK and -ERR,
// with IMAP's CRLF, as Courier's login process sends them.
func (sess *session) preLogin() {
	defer func() {
		if r := recover(); r != nil {
			sess.log.Error("smap: session panic", "panic", r, "stack", string(debug.Stack()))
			sess.writeString("* BYE Internal server error\r\n")
			sess.flush()
		}
	}()
	for {
		line, err := sess.readCommand(unauthTimeout)
		if err != nil {
			if !sess.readFailed(err, "\r\n") {
				return
			}
			continue
		}
		w := newWords(line)
		cmd := w.next()
		if cmd == `\SMAP1` {
			cmd = w.next()
		}
		switch upper(cmd) {
		case "":
			continue
		case "CAPABILITY":
			sess.writeString("* CAPABILITY " + sess.capabilities() + "\r\n+OK CAPABILITY completed\r\n")
		case "NOOP":
			sess.writeString("+OK NOOP completed\r\n")
		case "LOGOUT":
			sess.writeString("* BYE Courier-SMAP server shutting down\r\n+OK LOGOUT completed\r\n")
			sess.flush()
			return
		case "STARTTLS":
			if !sess.startTLS() {
				return
			}
			continue
		case "LOGIN":
			user, pass := w.next(), w.next()
			if sess.login(user, pass) {
				if sess.proxied {
					return
				}
				sess.serveSMAP()
				return
			}
			if sess.authFailures.TooMany() || sess.closeAfterLogin {
				sess.writeString("* BYE Too many failed logins\r\n")
				sess.flush()
				return
			}
		default:
			sess.badCommands++
			sess.writeString("-ERR Syntax error.\r\n")
			if sess.badCommands >= maxBadCommands {
				sess.writeString("* BYE Too many invalid commands\r\n")
				sess.flush()
				return
			}
		}
		if sess.flush() != nil {
			return
		}
	}
}

func (sess *session) startTLS() bool {
	if sess.srv.opt.TLSConfig == nil || sess.tls {
		sess.writeString("-ERR STARTTLS not available\r\n")
		return sess.flush() == nil
	}
	// Anything pipelined after STARTTLS came in the clear: refuse it
	// rather than read it as if it came over TLS.
	if sess.br.Buffered() > 0 {
		sess.writeString("* BYE Data after STARTTLS\r\n")
		sess.flush()
		return false
	}
	sess.writeString("+OK Begin SSL/TLS negotiation now.\r\n")
	if sess.flush() != nil {
		return false
	}
	if err := sess.conn.StartTLS(context.Background(), sess.srv.opt.TLSConfig, tlsHandshakeTimeout); err != nil {
		sess.log.Debug("smap: STARTTLS handshake", "err", err)
		return false
	}
	// A hand-off's reader is the IMAP session's: read through conn now.
	sess.br = bufio.NewReaderSize(sess.conn, 4<<10)
	sess.bw.Reset(sess.conn)
	sess.tls = true
	sess.track.Update(func(i *netserve.SessionInfo) { i.TLS = true })
	return true
}

// login checks the credentials and opens the account's Maildir; on
// success it writes Courier's "+OK SMAP1 LOGIN Ok." and returns true.
func (sess *session) login(user, pass string) bool {
	fail := func(msg string) bool {
		sess.writeString("-ERR " + msg + "\r\n")
		return false
	}
	if !sess.tls && !sess.srv.opt.AllowInsecureAuth {
		return fail("STARTTLS required")
	}
	if user == "" {
		return fail("Login failed.")
	}
	a := sess.srv.opt.Auth
	if a == nil {
		return fail("Authentication is not configured.")
	}
	ctx, cancel := context.WithTimeout(context.Background(), authTimeout)
	defer cancel()
	acct, err := a.AuthenticateFrom(ctx, auth.ServiceSMAP, sess.remoteIP, user, pass)
	if err != nil {
		switch {
		case errors.Is(err, auth.ErrBlocked):
			sess.log.Warn("smap: login refused, client blocked after too many failed logins", "user", user)
			sess.closeAfterLogin = true
			return fail("Too many failed logins from your address, try again later.")
		case errors.Is(err, auth.ErrTemporary):
			sess.log.Warn("smap: authentication backend failure", "user", user, "err", err)
			return fail("Temporary authentication failure, try again later.")
		case errors.Is(err, auth.ErrDisabled):
			sess.log.Info("smap: login refused, IMAP disabled for account", "user", user)
			return fail("IMAP access disabled for this account.")
		}
		sess.srv.loginFailures.Add(1)
		sess.authFailures.Fail(ctx) // preLogin ends the session after too many
		sess.log.Info("smap: authentication failed", "user", user)
		return fail("Login failed.")
	}
	if !netserve.AdmitLogin(&sess.srv.group, sess, acct.Name) {
		return fail(netserve.TooManyForUser + ".")
	}
	if hosts, local := sess.srv.opt.Proxy.Route(acct); len(hosts) > 0 {
		if ok, done := sess.proxyTo(hosts, local, acct, pass); done {
			return ok
		}
	}
	md, err := openMaildir(acct)
	if err != nil {
		sess.log.Error("smap: open mailbox", "user", acct.Name, "err", err)
		return fail("Cannot open your mailbox now, try again later.")
	}
	sess.acct, sess.user, sess.md = acct, acct.Name, md
	sess.track.Update(func(i *netserve.SessionInfo) { i.User = acct.Name })
	sess.log = sess.log.With("user", acct.Name)
	sess.srv.logins.Add(1)
	sess.log.Info("smap: login")
	sess.writeString("+OK SMAP1 LOGIN Ok.\n")
	return true
}

// openMaildir opens the account's Maildir, making it on first login, as
// the IMAP server does.
func openMaildir(acct *auth.Account) (*maildir.Maildir, error) {
	path := acct.MaildirPath()
	m, err := maildir.OpenAs(path, acct.UID, acct.GID)
	if err == nil {
		return m, nil
	}
	if _, serr := os.Stat(path); errors.Is(serr, os.ErrNotExist) {
		if merr := maildir.MakeFor(path, acct.UID, acct.GID); merr != nil {
			return nil, merr
		}
		return maildir.OpenAs(path, acct.UID, acct.GID)
	}
	return nil, err
}

// serveSMAP is the logged-in command loop (Courier's smap()).
func (sess *session) serveSMAP() {
	for {
		if sess.flush() != nil {
			return
		}
		line, err := sess.readCommand(sess.srv.opt.IdleTimeout)
		if err != nil {
			if !sess.readFailed(err, "\n") {
				return
			}
			continue
		}
		sess.srv.commands.Add(1)
		if !sess.dispatch(line) {
			sess.writeString("* BYE Courier-SMAP server shutting down\n+OK LOGOUT completed\n")
			sess.flush()
			sess.log.Info("smap: logout")
			return
		}
		if sess.badCommands >= maxBadCommands {
			sess.writeString("* BYE Too many invalid commands\n")
			sess.flush()
			return
		}
	}
}

// dispatch runs one command; false means LOGOUT.
func (sess *session) dispatch(line string) bool {
	w := newWords(line)
	cmd := upper(w.next())
	if cmd == "ADD" {
		if sess.cmdAdd(w) {
			return true
		}
		// The message was stored (or failed): the ADD is over.
		sess.add = nil
		return true
	}
	// Any other command ends an ADD in progress (Courier resets it).
	sess.add = nil
	if h := commands[cmd]; h != nil {
		sess.badCommands = 0
		h(sess, cmd, w)
		return true
	}
	switch cmd {
	case "LOGOUT", "QUIT":
		return false
	}
	if sess.cur != nil {
		if h := folderCommands[cmd]; h != nil {
			sess.badCommands = 0
			h(sess, cmd, w)
			return true
		}
	}
	sess.badCommands++
	sess.writeString("-ERR Syntax error.\n")
	return true
}

// commands are valid whether or not a folder is open; folderCommands only
// with one (Courier answers "Syntax error." otherwise).
var commands, folderCommands map[string]handler

// handler runs one command; cmd is its upper-cased name, w the words after.
type handler func(s *session, cmd string, w *words)

func init() {
	commands = map[string]handler{
		"RSET":      func(s *session, _ string, _ *words) { s.writeString("+OK Reset\n") },
		"NOOP":      (*session).cmdNoop,
		"LIST":      (*session).cmdList,
		"STATUS":    (*session).cmdStatus,
		"CREATE":    (*session).cmdCreate,
		"MKDIR":     (*session).cmdMkdir,
		"RMDIR":     (*session).cmdRmdir,
		"DELETE":    (*session).cmdDelete,
		"RENAME":    (*session).cmdRename,
		"OPEN":      (*session).cmdOpen,
		"SOPEN":     (*session).cmdOpen,
		"CLOSE":     (*session).cmdClose,
		"IDLE":      (*session).cmdIdle,
		"ACL":       (*session).cmdACL,
		"GETACL":    (*session).cmdACL,
		"SETACL":    (*session).cmdSetACL,
		"DELETEACL": (*session).cmdSetACL,
	}
	folderCommands = map[string]handler{
		"EXPUNGE": (*session).cmdExpunge,
		"STORE":   (*session).cmdStore,
		"FETCH":   (*session).cmdFetch,
		"COPY":    (*session).cmdCopy,
		"MOVE":    (*session).cmdCopy,
		"SEARCH":  (*session).cmdSearch,
	}
}
