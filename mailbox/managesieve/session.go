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
	"sync"
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

// Reasons a session stops reading.
var (
	errInterrupted = errors.New("server shutting down")
	errIdle        = errors.New("idle timeout")
)

// session is one client connection.
type session struct {
	srv    *Server
	log    *slog.Logger
	remote string
	start  time.Time

	// mu guards conn (replaced by STARTTLS) and interrupted (set by
	// Shutdown and Kick).
	mu          sync.Mutex
	conn        net.Conn
	interrupted bool

	br    *bufio.Reader
	in    reader
	w     *bufio.Writer
	isTLS bool

	user         string            // logged-in account; "" before AUTHENTICATE
	store        *sievestore.Store // the account's scripts, once logged in
	authFailures int
	badCommands  int

	// track is what `postern who` shows and `postern kick` ends.
	track *netserve.Tracker
}

// Tracker is the session's record for Who and Kick.
func (s *session) Tracker() *netserve.Tracker { return s.track }

func newSession(srv *Server, conn net.Conn) *session {
	_, isTLS := conn.(*tls.Conn)
	s := &session{srv: srv, conn: conn, remote: conn.RemoteAddr().String(), start: time.Now()}
	s.track = netserve.NewTracker("managesieve", s.remote, conn.LocalAddr().String(), isTLS)
	s.log = srv.log.With("remote", s.remote)
	s.br = bufio.NewReaderSize(connReader{s}, 4096)
	s.w = bufio.NewWriterSize(connWriter{s}, 32<<10)
	s.in.br = s.br
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

// connReader and connWriter always use the session's current connection,
// so STARTTLS can swap it underneath the buffers.
type connReader struct{ s *session }

func (c connReader) Read(p []byte) (int, error) { return c.s.currentConn().Read(p) }

type connWriter struct{ s *session }

// Write arms a deadline per write so a client that stops reading cannot
// hold a session forever.
func (c connWriter) Write(p []byte) (int, error) {
	conn := c.s.currentConn()
	conn.SetWriteDeadline(time.Now().Add(c.s.srv.opt.IdleTimeout))
	return conn.Write(p)
}

func (s *session) currentConn() net.Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conn
}

// interrupt makes the session stop after its current command.
func (s *session) interrupt() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.interrupted = true
	s.conn.SetReadDeadline(time.Now())
}

func (s *session) forceClose() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conn.Close()
}

func (s *session) isInterrupted() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.interrupted
}

func (s *session) run() {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("managesieve: session panic", "panic", p, "stack", string(debug.Stack()))
		}
		s.currentConn().Close()
		s.log.Info("managesieve: disconnect", "user", s.user, "duration", time.Since(s.start).Round(time.Millisecond))
	}()
	if tc, ok := s.conn.(*tls.Conn); ok {
		if err := s.handshake(tc); err != nil {
			s.log.Debug("managesieve: TLS handshake", "err", err)
			return
		}
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

// readCommand reads the next command within the idle timeout.
func (s *session) readCommand() (command, error) {
	if err := s.armRead(); err != nil {
		return command{}, err
	}
	cmd, err := s.in.readCommand()
	return cmd, s.readError(err)
}

// armRead sets the idle deadline for the next read, unless the session is
// being stopped.
func (s *session) armRead() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.interrupted {
		return errInterrupted
	}
	s.conn.SetReadDeadline(time.Now().Add(s.srv.opt.IdleTimeout))
	return nil
}

// readError tells a timeout caused by Shutdown or Kick from an idle client.
func (s *session) readError(err error) error {
	var ne net.Error
	switch {
	case err == nil:
		return nil
	case s.isInterrupted():
		return errInterrupted
	case errors.As(err, &ne) && ne.Timeout():
		return errIdle
	}
	return err
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
	case errors.Is(err, errInterrupted) && s.track.IsKicked():
		s.respond("BYE", "", netserve.KickedText)
	case errors.Is(err, errInterrupted):
		s.respond("BYE", "TRYLATER", "Server shutting down")
	case errors.Is(err, errIdle):
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

// handshake runs the TLS handshake of ServeTLS or STARTTLS.
func (s *session) handshake(tc *tls.Conn) error {
	if err := netserve.Handshake(s.srv.baseCtx, tc, tlsHandshakeTimeout); err != nil {
		return fmt.Errorf("managesieve: TLS handshake: %w", err)
	}
	s.isTLS = true
	s.track.Update(func(i *netserve.SessionInfo) { i.TLS = true })
	return nil
}
