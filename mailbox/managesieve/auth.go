package managesieve

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"strings"

	"postern/auth"
	"postern/internal/netserve"
	"postern/mailbox/sievestore"
)

// saslMechanisms are the SASL mechanisms offered, in order of preference:
// PLAIN (RFC 4616), which RFC 5804 section 2.1 requires over TLS, and
// LOGIN (draft-murchison-sasl-login), which some clients still use.
var saslMechanisms = []string{"PLAIN", "LOGIN"}

// Bounds of one SASL exchange's fields (as Courier and the POP3 server).
const (
	maxUserLength     = 255
	maxPasswordLength = 1024
)

var (
	errAuthCancelled = errors.New("authentication cancelled")
	errBadSASL       = errors.New("malformed SASL response")
)

// cmdStartTLS: RFC 5804 section 2.2. After the handshake the server sends
// its capabilities again, unasked, as they change under TLS.
func (s *session) cmdStartTLS([]arg) bool {
	if s.srv.opt.TLSConfig == nil {
		s.respond("NO", "", "STARTTLS is not available")
		return false
	}
	if s.isTLS {
		s.respond("NO", "", "TLS is already active")
		return false
	}
	// Anything the client sent after STARTTLS came in the clear and must
	// not be taken as sent over TLS (the STARTTLS command injection).
	if s.br.Buffered() > 0 {
		s.respond("BYE", "", "Data after STARTTLS, closing connection")
		return true
	}
	s.respond("OK", "", "Begin TLS negotiation now")
	if err := s.w.Flush(); err != nil {
		return true
	}
	if err := s.conn.StartTLS(s.srv.baseCtx, s.srv.opt.TLSConfig, tlsHandshakeTimeout); err != nil {
		s.log.Info("managesieve: STARTTLS handshake failed", "err", err)
		return true
	}
	s.br.Reset(s.conn)
	s.w.Reset(s.conn)
	s.isTLS = true
	s.track.Update(func(i *netserve.SessionInfo) { i.TLS = true })
	s.capabilities("TLS negotiation successful")
	return false
}

// cmdAuthenticate: RFC 5804 section 2.1 with PLAIN and LOGIN, an initial
// response or the challenge-response form.
func (s *session) cmdAuthenticate(args []arg) bool {
	mech := strings.ToUpper(args[0].value)
	if !strings.Contains(" "+strings.Join(saslMechanisms, " ")+" ", " "+mech+" ") {
		s.respond("NO", "", "Unsupported authentication mechanism "+truncate(args[0].value))
		return false
	}
	if !s.loginAllowed() {
		s.respond("NO", "ENCRYPT-NEEDED", "Authentication needs TLS; use STARTTLS first")
		return false
	}
	var initial *string
	if len(args) == 2 {
		initial = &args[1].value
	}
	var user, password string
	var err error
	switch mech {
	case "PLAIN":
		user, password, err = s.plain(initial)
	case "LOGIN":
		user, password, err = s.login(initial)
	}
	var pe *protoError
	switch {
	case err == nil:
		return s.signIn(user, password)
	case errors.Is(err, errAuthCancelled):
		s.respond("NO", "", "Authentication cancelled")
		return false
	case errors.Is(err, errBadSASL), errors.As(err, &pe) && !pe.fatal:
		return s.loginFailed("", "Malformed SASL response")
	default:
		return s.readFailed(err)
	}
}

// plain reads a PLAIN response: authzid NUL authcid NUL password (RFC
// 4616 section 2). Acting as another user is not supported: the authzid
// must be empty or the authcid.
func (s *session) plain(initial *string) (user, password string, err error) {
	resp, err := s.saslStep(initial, "")
	if err != nil {
		return "", "", err
	}
	parts := bytes.Split(resp, []byte{0})
	if len(parts) != 3 || len(parts[1]) == 0 || len(parts[1]) > maxUserLength || len(parts[2]) > maxPasswordLength {
		return "", "", errBadSASL
	}
	if len(parts[0]) > 0 && !bytes.Equal(parts[0], parts[1]) {
		return "", "", errBadSASL
	}
	return string(parts[1]), string(parts[2]), nil
}

// login asks for the user name (unless it came as the initial response)
// and the password.
func (s *session) login(initial *string) (user, password string, err error) {
	u, err := s.saslStep(initial, "Username:")
	if err != nil {
		return "", "", err
	}
	p, err := s.saslStep(nil, "Password:")
	if err != nil {
		return "", "", err
	}
	if len(u) == 0 || len(u) > maxUserLength || len(p) > maxPasswordLength {
		return "", "", errBadSASL
	}
	return string(u), string(p), nil
}

// saslStep returns the decoded initial response when there is one, or
// sends the challenge as a string line and reads the client's string
// (RFC 5804 section 2.1); "*" cancels.
func (s *session) saslStep(initial *string, challenge string) ([]byte, error) {
	var resp string
	if initial != nil {
		resp = *initial
	} else {
		writeString(s.w, base64.StdEncoding.EncodeToString([]byte(challenge)))
		s.w.WriteString("\r\n")
		if err := s.w.Flush(); err != nil {
			return nil, err
		}
		if err := s.conn.BeginWait(s.srv.opt.IdleTimeout); err != nil {
			return nil, err
		}
		args, err := s.in.readArgs()
		s.conn.EndWait()
		if err != nil {
			return nil, s.conn.WaitError(err)
		}
		if len(args) != 1 {
			return nil, errBadSASL
		}
		resp = args[0].value
	}
	if resp == "*" {
		return nil, errAuthCancelled
	}
	decoded, err := base64.StdEncoding.DecodeString(resp)
	if err != nil {
		return nil, errBadSASL
	}
	return decoded, nil
}

// signIn checks the password and opens the account's script storage.
func (s *session) signIn(user, password string) (stop bool) {
	svc := s.srv.opt.Auth
	if svc == nil {
		s.respond("NO", "TRYLATER", "Authentication is not configured")
		return false
	}
	ctx, cancel := context.WithTimeout(s.srv.baseCtx, authTimeout)
	defer cancel()
	acct, err := svc.AuthenticateFrom(ctx, AuthService, auth.AddrOf(s.conn.NetConn().RemoteAddr()), user, password)
	switch {
	case err == nil:
	case errors.Is(err, auth.ErrBlocked):
		s.log.Warn("managesieve: login refused, client blocked after too many failed logins", "user", user)
		s.respond("BYE", "TRYLATER", "Too many failed logins from your address, try again later")
		return true
	case errors.Is(err, auth.ErrNoSuchUser), errors.Is(err, auth.ErrBadPassword):
		s.log.Info("managesieve: login failed", "user", user, "err", err)
		return s.loginFailed("", "Authentication failed")
	case errors.Is(err, auth.ErrDisabled):
		s.log.Info("managesieve: login refused, service disabled", "user", user)
		return s.loginFailed("", "ManageSieve access is disabled for this account")
	default:
		s.log.Warn("managesieve: authentication unavailable", "user", user, "err", err)
		s.respond("NO", "TRYLATER", "Authentication temporarily unavailable, try again later")
		return false
	}
	if acct.Disabled("insecure"+AuthService) && !s.isTLS {
		// Courier's disableinsecure<service> option, as POP3 and IMAP read it.
		s.log.Info("managesieve: login refused without TLS", "user", acct.Name)
		s.respond("NO", "ENCRYPT-NEEDED", "This account may use ManageSieve only over TLS")
		return false
	}
	if !netserve.AdmitLogin(&s.srv.group, s, acct.Name) {
		// As Dovecot's mail_max_userip_connections; the client may try
		// again once another of its sessions has ended.
		s.respond("NO", "TRYLATER", netserve.TooManyForUser)
		return false
	}
	if acct.Home == "" {
		s.log.Error("managesieve: account has no home directory", "user", acct.Name)
		s.respond("NO", "", "Your account has no home directory to keep scripts in")
		return false
	}
	s.store = sievestore.Open(acct.Home, sievestore.Owner{UID: acct.UID, GID: acct.GID}, s.srv.opt.Limits)
	s.user = acct.Name
	s.setLiteralLimit()
	s.srv.logins.Add(1)
	s.track.Update(func(i *netserve.SessionInfo) { i.User = acct.Name })
	s.log.Info("managesieve: login", "user", acct.Name, "tls", s.isTLS)
	s.respond("OK", "", "Logged in")
	return false
}

// loginFailed counts a failure, pauses to slow guessing, and answers NO,
// or BYE after too many failures.
func (s *session) loginFailed(code, text string) (stop bool) {
	s.srv.loginFailures.Add(1)
	if s.authFailures.Fail(s.srv.baseCtx) {
		s.log.Info("managesieve: too many failed logins", "failures", s.authFailures.Count())
		s.respond("BYE", "", "Too many failed logins, closing connection")
		return true
	}
	s.respond("NO", code, text)
	return false
}

// cmdUnauthenticate: RFC 5804 section 2.14, back to the state before
// AUTHENTICATE (TLS stays).
func (s *session) cmdUnauthenticate([]arg) bool {
	s.log.Info("managesieve: unauthenticate", "user", s.user)
	s.store, s.user = nil, ""
	s.setLiteralLimit()
	s.track.Update(func(i *netserve.SessionInfo) { i.User = "" })
	s.respond("OK", "", "Unauthenticate completed")
	return false
}
