package managesieve

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime/debug"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"postern/internal/netserve"
	"postern/mailbox/sievestore"
)

// Bounds on a session.
const (
	maxBadCommands = 10 // unknown or malformed commands before BYE
	// maxAuthLiteral bounds literals before login: SASL responses are
	// short, and an unknown client must not make us buffer a script.
	maxAuthLiteral = 8 << 10
	// minDiscard is the least a too-large literal is skipped over (rather
	// than ending the session) so the client gets a NO it can show.
	minDiscard = 64 << 10
)

// session is one client connection.
type session struct {
	srv    *Server
	log    *slog.Logger
	remote string
	start  time.Time

	// conn is shared with Shutdown and Kick; STARTTLS replaces the
	// connection in it, underneath br and w.
	conn  *netserve.Conn
	br    *bufio.Reader
	in    reader
	w     *bufio.Writer
	isTLS bool

	user         string            // logged-in account; "" before AUTHENTICATE
	store        *sievestore.Store // the account's scripts, once logged in
	authFailures netserve.LoginFailures
	badCommands  int

	// track is what `postern who` shows and `postern kick` ends.
	track *netserve.Tracker
}

// Tracker is the session's record for Who and Kick.
func (s *session) Tracker() *netserve.Tracker { return s.track }

func newSession(srv *Server, conn net.Conn) *session {
	_, isTLS := conn.(*tls.Conn)
	s := &session{srv: srv, isTLS: isTLS, remote: conn.RemoteAddr().String(), start: time.Now()}
	s.track = netserve.NewTracker("managesieve", s.remote, conn.LocalAddr().String(), isTLS)
	s.log = srv.log.With("remote", s.remote)
	// The idle timeout bounds each write too, so that a client that
	// stops reading cannot hold a session forever.
	s.conn = netserve.NewConn(conn, srv.opt.IdleTimeout)
	s.br = bufio.NewReaderSize(s.conn, 4096)
	s.w = bufio.NewWriterSize(s.conn, 32<<10)
	s.in.br = s.br
	s.authFailures = netserve.LoginFailures{Max: srv.opt.MaxAuthFailures, Delay: srv.opt.AuthFailureDelay}
	s.setLiteralLimit()
	return s
}

// setLiteralLimit bounds literals by the session's state: a script may be
// uploaded only after login.
func (s *session) setLiteralLimit() {
	s.in.maxLiteral = maxAuthLiteral
	if s.store != nil {
		s.in.maxLiteral = s.srv.opt.Limits.MaxScriptSize
	}
	s.in.maxDiscard = max(minDiscard, 4*s.in.maxLiteral)
}

// interrupt makes the session stop after its current command.
func (s *session) interrupt() { s.conn.Interrupt() }

func (s *session) forceClose() { s.conn.Close() }

func (s *session) run() {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("managesieve: session panic", "panic", p, "stack", string(debug.Stack()))
		}
		s.conn.Close()
		s.log.Info("managesieve: disconnect", "user", s.user, "duration", time.Since(s.start).Round(time.Millisecond))
	}()
	if err := s.conn.Handshake(s.srv.baseCtx, tlsHandshakeTimeout); err != nil {
		s.log.Debug("managesieve: TLS handshake", "err", err)
		return
	}
	s.log.Debug("managesieve: connect", "tls", s.isTLS)
	// RFC 5804 section 1.7: the greeting is the capability response.
	s.capabilities("Postern ManageSieve ready on " + s.srv.opt.Hostname)
	if s.w.Flush() != nil {
		return
	}
	for {
		cmd, err := s.readCommand()
		stop := false
		if err != nil {
			stop = s.readFailed(err)
		} else {
			stop = s.dispatch(cmd)
		}
		// Answer every command, but send a batch of answers to pipelined
		// commands in one write.
		if stop || s.br.Buffered() == 0 {
			if s.w.Flush() != nil {
				return
			}
		}
		if stop {
			return
		}
	}
}

// readCommand reads the next command within the idle timeout; Shutdown
// and Kick cut the wait (netserve.ErrInterrupted).
func (s *session) readCommand() (command, error) {
	if err := s.conn.BeginWait(s.srv.opt.IdleTimeout); err != nil {
		return command{}, err
	}
	defer s.conn.EndWait()
	cmd, err := s.in.readCommand()
	return cmd, s.conn.WaitError(err)
}

// readFailed answers what stopped a command from being read, and reports
// whether the session ends.
func (s *session) readFailed(err error) (stop bool) {
	var pe *protoError
	switch {
	case errors.As(err, &pe) && pe.fatal:
		s.log.Info("managesieve: unreadable input, closing", "err", pe.msg)
		s.respond("BYE", pe.code, capitalize(pe.msg)+", closing connection")
		return true
	case errors.As(err, &pe):
		return s.badCommand(pe.code, capitalize(pe.msg))
	case errors.Is(err, netserve.ErrInterrupted) && s.track.IsKicked():
		s.respond("BYE", "", netserve.KickedText)
	case errors.Is(err, netserve.ErrInterrupted):
		s.respond("BYE", "TRYLATER", "Server shutting down")
	case errors.Is(err, netserve.ErrIdle):
		s.respond("BYE", "", "Disconnected for inactivity")
	default:
		if !errors.Is(err, io.EOF) {
			s.log.Debug("managesieve: read", "err", err)
		}
	}
	return true
}

// badCommand answers an unknown or malformed command with NO, or with BYE
// once the client has sent too many of them.
func (s *session) badCommand(code, text string) (stop bool) {
	s.badCommands++
	if s.badCommands >= maxBadCommands {
		s.respond("BYE", "", "Too many invalid commands, closing connection")
		return true
	}
	s.respond("NO", code, text)
	return false
}

// respond writes an OK, NO or BYE response (RFC 5804 section 1.3) with an
// optional response code and human-readable text.
func (s *session) respond(status, code, text string) {
	s.w.WriteString(status)
	if code != "" {
		s.w.WriteString(" (" + code + ")")
	}
	if text != "" {
		s.w.WriteByte(' ')
		writeString(s.w, text)
	}
	s.w.WriteString("\r\n")
}

// stringWriter is what writeString writes to: a bufio.Writer or a
// strings.Builder.
type stringWriter interface {
	io.StringWriter
	io.ByteWriter
}

// writeString writes s as an RFC 5804 string: quoted when it is short
// UTF-8 text without CR, LF or NUL, a literal ({N} CRLF octets) otherwise.
func writeString(w stringWriter, s string) {
	if len(s) > maxQuoted || !utf8.ValidString(s) || strings.ContainsAny(s, "\r\n\x00") {
		w.WriteString(fmt.Sprintf("{%d}\r\n", len(s)))
		w.WriteString(s)
		return
	}
	w.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			w.WriteByte('\\')
		}
		w.WriteByte(s[i])
	}
	w.WriteByte('"')
}

// withString makes a response code that carries a string: TAG, SASL.
func withString(code, value string) string {
	var b strings.Builder
	b.WriteString(code + " ")
	writeString(&b, value)
	return b.String()
}

// capabilities writes the capability response (RFC 5804 section 1.7)
// ending in OK with text: what this session can use now. SASL lists the
// mechanisms only where a login is allowed (an empty list is allowed
// because STARTTLS is then offered); STARTTLS only before TLS and login.
func (s *session) capabilities(text string) {
	capability := func(name, value string, withValue bool) {
		writeString(s.w, name)
		if withValue {
			s.w.WriteByte(' ')
			writeString(s.w, value)
		}
		s.w.WriteString("\r\n")
	}
	capability("IMPLEMENTATION", "Postern", true)
	exts := s.extensions()
	capability("SIEVE", strings.Join(exts, " "), true)
	// RFC 5804 section 1.7: with enotify, NOTIFY lists the methods.
	if slices.Contains(exts, "enotify") {
		capability("NOTIFY", "mailto", true)
	}
	mechanisms := ""
	if s.loginAllowed() {
		mechanisms = strings.Join(saslMechanisms, " ")
	}
	capability("SASL", mechanisms, true)
	if s.srv.opt.TLSConfig != nil && !s.isTLS && s.store == nil {
		capability("STARTTLS", "", false)
	}
	if s.store != nil {
		capability("OWNER", s.user, true)
	}
	capability("UNAUTHENTICATE", "", false)
	capability("VERSION", "1.0", true)
	s.respond("OK", "", text)
}

func (s *session) extensions() []string {
	if f := s.srv.opt.Extensions; f != nil {
		return f()
	}
	return defaultExtensions
}

// loginAllowed: no cleartext passwords on an unprotected connection
// unless the administrator allows it (RFC 5804 section 2.1 lets a server
// refuse mechanisms by security policy).
func (s *session) loginAllowed() bool {
	return s.isTLS || s.srv.opt.AllowInsecureAuth
}
