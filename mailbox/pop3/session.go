package pop3

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"strings"
	"time"

	"postern/auth"
	"postern/internal/netserve"
	"postern/mailbox/maildir"
)

// sessionState is the RFC 1939 state; UPDATE is entered only inside QUIT.
type sessionState int

const (
	stateAuthorization sessionState = iota
	stateTransaction
)

// Reasons a session stops reading.
var (
	errLineTooLong     = errors.New("command line too long")
	errLineFarTooLong  = errors.New("command line too long, no newline")
	errAuthCancelled   = errors.New("authentication cancelled")
	errBadSASLEncoding = errors.New("invalid base64 in SASL response")
)

// session is one client connection.
type session struct {
	srv    *Server
	log    *slog.Logger
	remote string
	start  time.Time

	// conn is shared with Shutdown and Kick; STLS replaces the
	// connection in it, underneath r and w.
	conn  *netserve.Conn
	r     *bufio.Reader
	w     *bufio.Writer
	isTLS bool

	state        sessionState
	pendingUser  string // USER given, PASS expected next
	authFailures netserve.LoginFailures
	badCommands  int
	user         string
	drop         *maildrop

	retrCount, topCount int
	bytesSent           int64

	// track is what `postern who` shows and `postern kick` ends.
	track *netserve.Tracker
}

// Tracker is the session's record for Who and Kick.
func (s *session) Tracker() *netserve.Tracker { return s.track }

func newSession(srv *Server, conn net.Conn) *session {
	_, isTLS := conn.(*tls.Conn)
	s := &session{srv: srv, isTLS: isTLS, remote: conn.RemoteAddr().String(), start: time.Now()}
	s.track = netserve.NewTracker("pop3", s.remote, conn.LocalAddr().String(), isTLS)
	s.log = srv.log.With("remote", s.remote)
	// The idle timeout bounds each write too, so that a client that
	// stops reading cannot hold a session (and its goroutine) forever.
	s.conn = netserve.NewConn(conn, srv.opt.IdleTimeout)
	s.r = bufio.NewReaderSize(s.conn, 4096)
	s.w = bufio.NewWriterSize(s.conn, 32<<10)
	s.authFailures = netserve.LoginFailures{Max: srv.opt.MaxAuthFailures, Delay: srv.opt.AuthFailureDelay}
	return s
}

// interrupt makes the session stop after its current command.
func (s *session) interrupt() { s.conn.Interrupt() }

func (s *session) forceClose() { s.conn.Close() }

func (s *session) reply(format string, args ...any) {
	fmt.Fprintf(s.w, format, args...)
	s.w.WriteString("\r\n")
}

func (s *session) run() {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("pop3: session panic", "panic", p, "stack", string(debug.Stack()))
		}
		s.conn.Close()
		s.log.Info("pop3: disconnect", "user", s.user, "top", s.topCount, "retr", s.retrCount,
			"sent", s.bytesSent, "duration", time.Since(s.start).Round(time.Millisecond))
	}()
	if err := s.conn.Handshake(s.srv.baseCtx, tlsHandshakeTimeout); err != nil {
		s.log.Debug("pop3: TLS handshake", "err", err)
		return
	}
	s.log.Debug("pop3: connect", "tls", s.isTLS)
	s.reply("+OK Postern POP3 server ready on %s", s.srv.opt.Hostname)
	if s.w.Flush() != nil {
		return
	}
	for {
		line, err := s.readLine()
		switch {
		case err == nil:
		case errors.Is(err, errLineTooLong):
			if s.badCommand("-ERR Line too long") {
				return
			}
			if s.w.Flush() != nil {
				return
			}
			continue
		case errors.Is(err, errLineFarTooLong):
			s.reply("-ERR Line too long, closing connection")
			s.w.Flush()
			return
		case errors.Is(err, netserve.ErrInterrupted) && s.track.IsKicked():
			// Nothing is deleted: the session never reaches UPDATE.
			s.reply("-ERR %s", netserve.KickedText)
			s.w.Flush()
			return
		case errors.Is(err, netserve.ErrInterrupted):
			s.reply("-ERR [SYS/TEMP] Server shutting down")
			s.w.Flush()
			return
		case errors.Is(err, netserve.ErrIdle):
			s.reply("-ERR Autologout; idle for too long")
			s.w.Flush()
			return
		default:
			return // EOF or a broken connection; nothing is deleted
		}
		stop := s.dispatch(line)
		// RFC 2449 section 6.6 (PIPELINING): answer every command, but
		// send a batch of answers in one write.
		if stop || s.r.Buffered() == 0 {
			if s.w.Flush() != nil {
				return
			}
		}
		if stop {
			return
		}
	}
}

// readLine reads one command line, without its line ending, within the
// idle timeout; Shutdown and Kick cut the wait (netserve.ErrInterrupted).
func (s *session) readLine() (string, error) {
	if err := s.conn.BeginWait(s.srv.opt.IdleTimeout); err != nil {
		return "", err
	}
	defer s.conn.EndWait()
	var buf []byte
	total := 0
	for {
		chunk, err := s.r.ReadSlice('\n')
		total += len(chunk)
		if total <= maxLineLength {
			buf = append(buf, chunk...)
		}
		if err == bufio.ErrBufferFull {
			if total >= maxDiscardLength {
				return "", errLineFarTooLong
			}
			continue
		}
		if err != nil {
			return "", s.conn.WaitError(err)
		}
		if total > maxLineLength {
			return "", errLineTooLong
		}
		line := strings.TrimSuffix(string(buf), "\n")
		return strings.TrimSuffix(line, "\r"), nil
	}
}

// badCommand answers an unknown or malformed command and reports whether
// the client has now made too many of them.
func (s *session) badCommand(msg string) (stop bool) {
	s.badCommands++
	if s.badCommands >= maxBadCommands {
		s.reply("-ERR Too many invalid commands, closing connection")
		return true
	}
	s.reply("%s", msg)
	return false
}

// dispatch runs one command line and reports whether the session ends.
func (s *session) dispatch(line string) (stop bool) {
	cmd, err := parseCommand(line)
	if err != nil {
		return s.badCommand("-ERR Invalid command")
	}
	// RFC 1939 section 7: PASS is valid only straight after USER.
	pendingUser := s.pendingUser
	s.pendingUser = ""

	switch cmd.Name {
	case "CAPA":
		s.capa()
		return false
	case "QUIT":
		return s.quit()
	}
	if s.state == stateAuthorization {
		switch cmd.Name {
		case "USER":
			return s.cmdUser(cmd)
		case "PASS":
			return s.cmdPass(cmd, pendingUser)
		case "AUTH":
			return s.cmdAuth(cmd)
		case "STLS":
			return s.cmdSTLS()
		case "STAT", "LIST", "RETR", "DELE", "NOOP", "RSET", "TOP", "UIDL":
			return s.badCommand("-ERR Not logged in yet")
		}
		return s.badCommand("-ERR Unknown command")
	}
	switch cmd.Name {
	case "STAT":
		count, octets := s.drop.totals()
		s.reply("+OK %d %d", count, octets)
	case "LIST":
		s.cmdList(cmd, false)
	case "UIDL":
		s.cmdList(cmd, true)
	case "RETR":
		return s.cmdRetr(cmd, false)
	case "TOP":
		return s.cmdRetr(cmd, true)
	case "DELE":
		if m, n, ok := s.message(cmd, 1); ok {
			m.deleted = true
			s.reply("+OK Message %d deleted", n)
		}
	case "NOOP":
		s.reply("+OK")
	case "RSET":
		for _, m := range s.drop.messages {
			m.deleted = false
		}
		count, octets := s.drop.totals()
		s.reply("+OK Maildrop has %d messages (%d octets)", count, octets)
	case "USER", "PASS", "AUTH", "STLS":
		s.reply("-ERR Already logged in")
	default:
		return s.badCommand("-ERR Unknown command")
	}
	return false
}

// capa answers CAPA (RFC 2449 section 5). What is listed is what this
// session would accept now: STLS only while it can be used, USER and SASL
// only where a login is allowed.
func (s *session) capa() {
	s.reply("+OK Capability list follows")
	s.reply("TOP")
	s.reply("UIDL")
	s.reply("RESP-CODES")
	s.reply("AUTH-RESP-CODE")
	s.reply("PIPELINING")
	if s.state == stateAuthorization {
		if s.loginAllowed() {
			s.reply("USER")
			s.reply("SASL PLAIN")
		}
		if s.srv.opt.TLSConfig != nil && !s.isTLS {
			s.reply("STLS")
		}
	}
	s.reply("IMPLEMENTATION Postern")
	s.reply(".")
}

// loginAllowed is RFC 2595 section 2.4: no cleartext passwords on an
// unprotected connection unless the administrator allows it.
func (s *session) loginAllowed() bool {
	return s.isTLS || s.srv.opt.AllowInsecureAuth
}

const plaintextRefused = "-ERR [AUTH] Plaintext authentication disallowed without TLS; use STLS first"

func (s *session) cmdUser(cmd command) bool {
	if !s.loginAllowed() {
		s.reply(plaintextRefused)
		return false
	}
	name := strings.TrimSpace(cmd.Rest)
	if name == "" || len(name) > 255 {
		return s.badCommand("-ERR USER needs a user name")
	}
	s.pendingUser = name
	s.reply("+OK Send your password")
	return false
}

func (s *session) cmdPass(cmd command, user string) bool {
	if !s.loginAllowed() {
		s.reply(plaintextRefused)
		return false
	}
	if user == "" {
		return s.badCommand("-ERR Send USER first")
	}
	return s.login(user, cmd.Rest)
}

// cmdAuth is RFC 5034 with the PLAIN mechanism (RFC 4616).
func (s *session) cmdAuth(cmd command) bool {
	if len(cmd.Args) == 0 {
		// Not in RFC 5034, but older clients send a bare AUTH to list the
		// mechanisms, and most servers answer so.
		s.reply("+OK")
		if s.loginAllowed() {
			s.reply("PLAIN")
		}
		s.reply(".")
		return false
	}
	if !strings.EqualFold(cmd.Args[0], "PLAIN") {
		s.reply("-ERR Unsupported authentication mechanism")
		return false
	}
	if !s.loginAllowed() {
		s.reply(plaintextRefused)
		return false
	}
	var response string
	if len(cmd.Args) > 1 {
		response = cmd.Args[1]
		if response == "=" { // RFC 5034 section 4: "=" is an empty initial response
			response = ""
		}
	} else {
		s.reply("+ ")
		if err := s.w.Flush(); err != nil {
			return true
		}
		line, err := s.readLine()
		if err != nil {
			return true
		}
		response = line
	}
	user, password, err := decodePlain(response)
	if errors.Is(err, errAuthCancelled) {
		s.reply("-ERR Authentication cancelled")
		return false
	}
	if err != nil {
		return s.loginFailed("-ERR [AUTH] Invalid SASL PLAIN response")
	}
	return s.login(user, password)
}

// decodePlain decodes a base64 SASL PLAIN response: authzid NUL authcid NUL
// password (RFC 4616 section 2). Acting as another user (an authzid that
// differs from the authcid) is not supported.
func decodePlain(response string) (user, password string, err error) {
	if response == "*" {
		return "", "", errAuthCancelled
	}
	raw, err := base64.StdEncoding.DecodeString(response)
	if err != nil {
		return "", "", fmt.Errorf("%w: %v", errBadSASLEncoding, err)
	}
	parts := bytes.Split(raw, []byte{0})
	if len(parts) != 3 || len(parts[1]) == 0 || len(parts[1]) > 255 || len(parts[2]) > 1024 {
		return "", "", errors.New("malformed PLAIN response")
	}
	if len(parts[0]) > 0 && !bytes.Equal(parts[0], parts[1]) {
		return "", "", errors.New("PLAIN authorization identity differs from user")
	}
	return string(parts[1]), string(parts[2]), nil
}

// login checks the password, opens the maildrop and enters TRANSACTION.
func (s *session) login(user, password string) (stop bool) {
	svc := s.srv.opt.Auth
	if svc == nil {
		s.reply("-ERR [SYS/TEMP] Authentication is not configured")
		return false
	}
	ctx, cancel := context.WithTimeout(s.srv.baseCtx, authTimeout)
	defer cancel()
	acct, err := svc.AuthenticateFrom(ctx, auth.ServicePOP3, auth.AddrOf(s.conn.NetConn().RemoteAddr()), user, password)
	switch {
	case err == nil:
	case errors.Is(err, auth.ErrBlocked):
		s.log.Warn("pop3: login refused, client blocked after too many failed logins", "user", user)
		s.reply("-ERR [SYS/TEMP] Too many failed logins from your address, try again later")
		return true
	case errors.Is(err, auth.ErrNoSuchUser), errors.Is(err, auth.ErrBadPassword):
		s.log.Info("pop3: login failed", "user", user, "err", err)
		return s.loginFailed("-ERR [AUTH] Invalid user name or password")
	case errors.Is(err, auth.ErrDisabled):
		s.log.Info("pop3: login refused, POP3 disabled", "user", user)
		return s.loginFailed("-ERR [SYS/PERM] POP3 access is disabled for this account")
	default:
		s.log.Warn("pop3: authentication unavailable", "user", user, "err", err)
		s.reply("-ERR [SYS/TEMP] Authentication temporarily unavailable, try again later")
		return false
	}

	if acct.Disabled("insecure"+auth.ServicePOP3) && !s.isTLS {
		// Courier's "disableinsecurepop3" account option: this account may
		// only use POP3 over TLS (STLS or pop3s).
		s.log.Info("pop3: login refused without TLS", "user", acct.Name)
		s.reply("-ERR [AUTH] POP3 access without TLS is disabled for this account")
		return false
	}
	if !netserve.AdmitLogin(&s.srv.group, s, acct.Name) {
		// RFC 2449's IN-USE, as Dovecot answers: the user's other sessions
		// hold the maildrop; the client may try again later.
		s.reply("-ERR [IN-USE] %s", netserve.TooManyForUser)
		return false
	}
	if hosts, local := s.srv.opt.Proxy.Route(acct); len(hosts) > 0 {
		if stop, done := s.proxyTo(hosts, local, acct, password); done {
			return stop
		}
	}
	drop, err := openMaildrop(ctx, acct.MaildirPath(), maildir.ReaderFor(acct.UID, acct.GID), s.log)
	if err != nil {
		s.log.Error("pop3: open maildrop", "user", acct.Name, "err", err)
		if errors.Is(err, maildir.ErrNotMaildir) {
			s.reply("-ERR [SYS/PERM] Your maildrop is not available")
		} else {
			s.reply("-ERR [SYS/TEMP] Unable to open your maildrop, try again later")
		}
		return false
	}
	s.srv.logins.Add(1)
	s.user = acct.Name
	s.track.Update(func(i *netserve.SessionInfo) { i.User = acct.Name })
	s.drop = drop
	s.state = stateTransaction
	count, octets := drop.totals()
	s.log.Info("pop3: login", "user", acct.Name, "tls", s.isTLS, "messages", count)
	s.reply("+OK Logged in; maildrop has %d messages (%d octets)", count, octets)
	return false
}

// loginFailed counts a failure, pauses to slow guessing, and answers with
// reply, or ends the session after too many failures.
func (s *session) loginFailed(reply string) (stop bool) {
	s.srv.loginFailures.Add(1)
	if s.authFailures.Fail(s.srv.baseCtx) {
		s.log.Info("pop3: too many failed logins", "failures", s.authFailures.Count())
		s.reply("-ERR [AUTH] Too many failed logins, closing connection")
		return true
	}
	s.reply("%s", reply)
	return false
}

// cmdSTLS is RFC 2595 section 4.
func (s *session) cmdSTLS() bool {
	if s.srv.opt.TLSConfig == nil {
		s.reply("-ERR STLS not available")
		return false
	}
	if s.isTLS {
		s.reply("-ERR Command not permitted when TLS active")
		return false
	}
	s.reply("+OK Begin TLS negotiation")
	if err := s.w.Flush(); err != nil {
		return true
	}
	if err := s.conn.StartTLS(s.srv.baseCtx, s.srv.opt.TLSConfig, tlsHandshakeTimeout); err != nil {
		s.log.Info("pop3: STLS handshake failed", "err", err)
		return true
	}
	// Anything the client pipelined after STLS arrived in plaintext and
	// must not be acted on (RFC 2595 section 4, and the classic STARTTLS
	// command injection): drop the buffered input.
	s.r.Reset(s.conn)
	s.w.Reset(s.conn)
	s.isTLS = true
	s.track.Update(func(i *netserve.SessionInfo) { i.TLS = true })
	return false
}

// message resolves the message-number argument at index i; on failure it
// has already answered.
func (s *session) message(cmd command, want int) (*dropMessage, int, bool) {
	if len(cmd.Args) < want {
		s.reply("-ERR Missing message number")
		return nil, 0, false
	}
	n, ok := parseNumber(cmd.Args[0])
	if !ok || n < 1 || n > len(s.drop.messages) {
		s.reply("-ERR No such message")
		return nil, 0, false
	}
	m := s.drop.messages[n-1]
	if m.deleted {
		s.reply("-ERR Message %d already deleted", n)
		return nil, 0, false
	}
	return m, n, true
}

// cmdList answers LIST and UIDL, for one message or for all.
func (s *session) cmdList(cmd command, uidl bool) {
	value := func(m *dropMessage) any {
		if uidl {
			return m.uidl
		}
		return m.size
	}
	if len(cmd.Args) > 0 {
		if m, n, ok := s.message(cmd, 1); ok {
			s.reply("+OK %d %v", n, value(m))
		}
		return
	}
	if uidl {
		s.reply("+OK Unique-ID listing follows")
	} else {
		count, octets := s.drop.totals()
		s.reply("+OK %d messages (%d octets)", count, octets)
	}
	for i, m := range s.drop.messages {
		if !m.deleted {
			s.reply("%d %v", i+1, value(m))
		}
	}
	s.reply(".")
}

// cmdRetr answers RETR and TOP. It ends the session only when the
// connection broke mid-message.
func (s *session) cmdRetr(cmd command, top bool) (stop bool) {
	want := 1
	if top {
		want = 2
	}
	if len(cmd.Args) < want {
		s.reply("-ERR Missing argument")
		return false
	}
	bodyLines := -1
	if top {
		n, ok := parseNumber(cmd.Args[1])
		if !ok {
			s.reply("-ERR Invalid line count")
			return false
		}
		bodyLines = n
	}
	m, n, ok := s.message(cmd, 1)
	if !ok {
		return false
	}
	f, err := s.drop.folder.Open(m.key)
	if err != nil {
		if errors.Is(err, maildir.ErrNoMessage) {
			s.reply("-ERR [SYS/PERM] Message %d was removed by another session", n)
		} else {
			s.log.Error("pop3: open message", "user", s.user, "key", m.key, "err", err)
			s.reply("-ERR [SYS/TEMP] Cannot read message %d", n)
		}
		return false
	}
	defer f.Close()
	if top {
		s.reply("+OK Top of message %d follows", n)
	} else {
		s.reply("+OK %d octets", m.size)
	}
	sent, err := sendMessage(s.w, f, bodyLines)
	s.bytesSent += sent
	s.srv.bytesSent.Add(sent)
	if err != nil {
		// Half a message is on the wire; the only honest thing left is to
		// hang up (the client will see no terminating ".").
		s.log.Error("pop3: sending message", "user", s.user, "key", m.key, "err", err)
		return true
	}
	if top {
		s.topCount++
		return false
	}
	if sent != m.size {
		s.log.Warn("pop3: message size differs from the size list", "user", s.user, "key", m.key, "listed", m.size, "sent", sent)
	}
	s.retrCount++
	s.srv.retrieved.Add(1)
	if err := s.drop.markSeen(m); err != nil && !errors.Is(err, maildir.ErrNoMessage) {
		s.log.Warn("pop3: mark seen", "user", s.user, "err", err)
	}
	return false
}

// quit ends the session; in TRANSACTION it first enters UPDATE (RFC 1939
// section 6) and removes the messages marked deleted.
func (s *session) quit() bool {
	if s.state != stateTransaction {
		s.reply("+OK Postern POP3 server signing off")
		return true
	}
	removed, err := s.drop.expunge()
	s.srv.deleted.Add(int64(removed))
	if err != nil {
		s.log.Error("pop3: update", "user", s.user, "err", err)
		s.reply("-ERR [SYS/TEMP] Some deleted messages not removed")
		return true
	}
	count := 0
	for _, m := range s.drop.messages {
		if !m.deleted {
			count++
		}
	}
	s.log.Info("pop3: update", "user", s.user, "deleted", removed, "left", count)
	s.reply("+OK Postern POP3 server signing off (%d messages left)", count)
	return true
}
