package imap

import (
	"fmt"
	"net"
	"strings"

	"postern/auth"
)

// ServeConn serves the one connection c to its end, on the caller's
// goroutine: IMAP over a pipe or an inherited socket (inetd, systemd's
// Accept=yes, an ssh command), as Courier's imapd and Dovecot's imap run
// from standard input. With preauth the session starts logged in as that
// account, greeted "* PREAUTH" (RFC 9051 7.1.4), as Courier's imapd run
// with AUTHENTICATED set and Dovecot's imap run from ssh; without it the
// client logs in as on a listener.
func (s *Server) ServeConn(c net.Conn, preauth *auth.Account) error {
	sess := s.newSession(c, false)
	var err error
	if closed := s.group.Run(sess, func() { err = sess.runPreauth(preauth) }); closed != nil {
		c.Close()
		return closed
	}
	return err
}

// runPreauth runs the session, logged in as preauth first when that is
// set.
func (sess *session) runPreauth(preauth *auth.Account) error {
	if preauth != nil {
		if err := sess.loggedIn(preauth); err != nil {
			sess.bye("cannot open your mailbox now, try again later")
			sess.conn.Close()
			return fmt.Errorf("imap: preauth %s: %w", preauth.Name, err)
		}
		sess.log.Info("imap: pre-authenticated session")
	}
	sess.run()
	return nil
}

// sanitizeText makes s safe inside a response's text: no control
// characters (a line break would end the response early).
func sanitizeText(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}
