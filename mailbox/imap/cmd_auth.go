package imap

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"os"
	"strings"
	"time"

	"postern/auth"
	"postern/internal/netserve"
	"postern/mailbox/maildir"
)

// Commands of the not-authenticated state (RFC 3501 6.2), with SASL-IR
// (RFC 4959) for AUTHENTICATE.
func authCommands() []*commandSpec {
	return []*commandSpec{
		{name: "STARTTLS", states: stateNotAuth, caps: []string{"STARTTLS"}, exec: execStartTLS},
		{name: "LOGIN", states: stateNotAuth, parse: parseLogin, exec: execLogin},
		{name: "AUTHENTICATE", states: stateNotAuth, parse: parseAuthenticate, exec: execAuthenticate},
	}
}

const authTimeout = 30 * time.Second

func execStartTLS(s *session, c *command) result {
	if s.srv.opt.TLSConfig == nil {
		return bad("STARTTLS not available")
	}
	if s.tls {
		return bad("TLS already active")
	}
	// Anything the client pipelined after STARTTLS was sent in the clear
	// and must not be read as if it came over TLS (RFC 3501 6.2.1, the
	// command injection attack); refuse it.
	if s.br.Buffered() > 0 {
		s.bye("data after STARTTLS")
		return fatal()
	}
	s.writeResult(c.tag, ok("Begin TLS negotiation now"))
	if err := s.w.flush(); err != nil {
		return fatal()
	}
	if err := s.conn.StartTLS(context.Background(), s.srv.opt.TLSConfig, tlsHandshakeTimeout); err != nil {
		s.log.Debug("imap: STARTTLS handshake", "err", err)
		return fatal()
	}
	s.setConnStreams()
	s.tls = true
	s.track.Update(func(i *netserve.SessionInfo) { i.TLS = true })
	// The tagged OK is already out; the next command starts over TLS.
	return result{sent: true}
}

type loginArgs struct{ user, pass string }

func parseLogin(d *decoder) (any, error) {
	if err := d.sp(); err != nil {
		return nil, err
	}
	u, err := d.astring()
	if err != nil {
		return nil, err
	}
	if err := d.sp(); err != nil {
		return nil, err
	}
	p, err := d.astring()
	if err != nil {
		return nil, err
	}
	return loginArgs{u, p}, nil
}

func execLogin(s *session, c *command) result {
	if !s.authAllowed() {
		return no("PRIVACYREQUIRED", "LOGIN is disabled until STARTTLS")
	}
	a := c.args.(loginArgs)
	return s.authenticate(c.tag, a.user, a.pass)
}

type authenticateArgs struct {
	mech    string
	initial *string // SASL-IR initial response, base64 ("=" is empty)
}

func parseAuthenticate(d *decoder) (any, error) {
	if err := d.sp(); err != nil {
		return nil, err
	}
	mech, err := d.atom()
	if err != nil {
		return nil, err
	}
	args := authenticateArgs{mech: strings.ToUpper(mech)}
	if b, err := d.peek(); err == nil && b == ' ' {
		d.readByte()
		ir, err := d.readWhile(func(c byte) bool { return isBase64Char(c) || c == '=' }, "initial response")
		if err != nil {
			return nil, err
		}
		args.initial = &ir
	}
	return args, nil
}

func isBase64Char(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/'
}

func execAuthenticate(s *session, c *command) result {
	if !s.authAllowed() {
		return no("PRIVACYREQUIRED", "AUTHENTICATE is disabled until STARTTLS")
	}
	a := c.args.(authenticateArgs)
	if a.mech != "PLAIN" {
		return no("CANNOT", "Unsupported authentication mechanism")
	}
	var resp string
	if a.initial != nil {
		resp = *a.initial
	} else {
		// Empty challenge (RFC 4616: PLAIN starts with the client).
		s.w.line("+ ").end()
		if err := s.w.flush(); err != nil {
			return fatal()
		}
		line, err := s.readAuthLine(unauthTimeout)
		if err != nil {
			return fatal()
		}
		if line == "*" {
			return bad("AUTHENTICATE cancelled")
		}
		resp = line
	}
	var raw []byte
	if resp != "=" {
		var err error
		raw, err = base64.StdEncoding.DecodeString(resp)
		if err != nil {
			return bad("Invalid base64 in SASL response")
		}
	}
	// authzid NUL authcid NUL passwd (RFC 4616 section 2).
	parts := bytes.Split(raw, []byte{0})
	if len(parts) != 3 {
		return bad("Malformed PLAIN response")
	}
	authz, user, pass := string(parts[0]), string(parts[1]), string(parts[2])
	if authz != "" && authz != user {
		return no("AUTHORIZATIONFAILED", "Acting as another user is not permitted")
	}
	return s.authenticate(c.tag, user, pass)
}

// readAuthLine reads one SASL response line, bounded like a command.
func (s *session) readAuthLine(timeout time.Duration) (string, error) {
	s.conn.SetReadDeadline(time.Now().Add(timeout))
	s.d.reset()
	var b []byte
	for {
		c, err := s.d.readByte()
		if err != nil {
			return "", err
		}
		if c == '\n' {
			return strings.TrimSuffix(string(b), "\r"), nil
		}
		if len(b) > 8<<10 {
			return "", errLineTooLong
		}
		b = append(b, c)
	}
}

// authenticate checks the credentials and opens the account's mailbox, or
// relays the session to the account's mailhost (proxy.go); tag is the
// command's.
func (s *session) authenticate(tag, user, pass string) result {
	if s.srv.opt.Auth == nil {
		return no("UNAVAILABLE", "Authentication is not configured")
	}
	ctx, cancel := context.WithTimeout(context.Background(), authTimeout)
	defer cancel()
	acct, err := s.srv.opt.Auth.AuthenticateFrom(ctx, auth.ServiceIMAP, s.remoteIP, user, pass)
	if err != nil {
		switch {
		case errors.Is(err, auth.ErrBlocked):
			s.log.Warn("imap: login refused, client blocked after too many failed logins", "user", user)
			s.closeReason = "client blocked after too many failed logins"
			return no("UNAVAILABLE", "Too many failed logins from your address, try again later")
		case errors.Is(err, auth.ErrTemporary):
			s.log.Warn("imap: authentication backend failure", "user", user, "err", err)
			return no("UNAVAILABLE", "Temporary authentication failure, try again later")
		case errors.Is(err, auth.ErrDisabled):
			s.log.Info("imap: login refused, IMAP disabled for account", "user", user)
			return no("CONTACTADMIN", "IMAP access is disabled for this account")
		}
		s.srv.authFailures.Add(1)
		s.log.Info("imap: authentication failed", "user", user)
		if s.authFailures.Fail(ctx) {
			s.closeReason = "too many authentication failures"
		}
		return no("AUTHENTICATIONFAILED", "Invalid credentials")
	}
	if !netserve.AdmitLogin(&s.srv.group, s, acct.Name) {
		// RFC 5530's LIMIT; the client may try again once another of its
		// sessions has ended.
		return no("LIMIT", netserve.TooManyForUser)
	}
	if hosts, local := s.srv.opt.Proxy.Route(acct); len(hosts) > 0 {
		if res, done := s.proxyTo(tag, hosts, local, acct, pass); done {
			return res
		}
	}
	if err := s.loggedIn(acct); err != nil {
		return no("UNAVAILABLE", "Cannot open your mailbox now, try again later")
	}
	s.log.Info("imap: login")
	return okCode("CAPABILITY "+s.capabilityList(), "Logged in")
}

// loggedIn opens acct's mailbox and moves the session to the authenticated
// state (a LOGIN or AUTHENTICATE that succeeded, or a pre-authenticated
// session).
func (s *session) loggedIn(acct *auth.Account) error {
	mail, err := s.srv.hub.openMaildir(acct)
	if err != nil {
		s.log.Error("imap: open mailbox", "user", acct.Name, "err", err)
		return err
	}
	s.account, s.user, s.mail = acct, acct.Name, mail
	s.state = stateAuth
	s.track.Update(func(i *netserve.SessionInfo) { i.User = acct.Name })
	s.srv.opt.Purger.LoggedIn(acct.Name, func() (*maildir.Maildir, error) {
		return maildir.OpenAs(acct.MaildirPath(), acct.UID, acct.GID)
	})
	s.log = s.log.With("user", acct.Name)
	s.ensureSpecialUse()
	s.registerSharedFolders()
	return nil
}

// capabilityList is the session's capabilities, space separated.
func (s *session) capabilityList() string {
	var b []byte
	for i, c := range s.srv.capabilities(s) {
		if i > 0 {
			b = append(b, ' ')
		}
		b = append(b, c...)
	}
	return string(b)
}

// openMaildir opens the account's Maildir, making it when the directory does
// not exist yet (first login of a new account, as Courier's maildirmake).
func openMaildir(path string, opt maildir.Options) (*maildir.Maildir, error) {
	m, err := maildir.OpenWithOptions(path, opt)
	if err == nil {
		return m, nil
	}
	if _, serr := os.Stat(path); errors.Is(serr, os.ErrNotExist) {
		make := maildir.Make
		if r := opt.Reader; r != nil {
			make = func(p string) error { return maildir.MakeFor(p, r.UID, r.GID) }
		}
		if merr := make(path); merr != nil {
			return nil, merr
		}
		return maildir.OpenWithOptions(path, opt)
	}
	return nil, err
}

// ensureSpecialUse creates and subscribes the special-use folders that are
// missing (RFC 6154 names clients look for).
func (s *session) ensureSpecialUse() {
	existing, err := s.mail.Folders()
	if err != nil {
		s.log.Warn("imap: list folders", "err", err)
		return
	}
	have := map[string]bool{}
	for _, f := range existing {
		have[f] = true
	}
	for _, f := range maildir.SpecialUseFolders {
		if have[f.Folder] {
			continue
		}
		if err := s.mail.CreateFolder(f.Folder); err != nil && !errors.Is(err, maildir.ErrFolderExists) {
			s.log.Warn("imap: create special-use folder", "folder", f.Folder, "err", err)
			continue
		}
		if err := s.mail.Subscribe(subscriptionName(f.Folder), true); err != nil {
			s.log.Warn("imap: subscribe special-use folder", "folder", f.Folder, "err", err)
		}
	}
}
