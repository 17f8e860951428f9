// Package netserve holds what Postern's protocol servers share around
// their sessions: the accept loop's error handling (SMTP, IMAP, POP3,
// SMAP) — temporary accept failures (out of file descriptors, timeouts)
// are retried with a growing pause instead of stopping the service for
// everyone, and a server that is shutting down is told so rather than
// shown a "use of closed connection" error — and Group, the listeners and
// sessions of the IMAP, POP3, SMAP and ManageSieve servers, their
// graceful shutdown, and their connection limits (limits.go: in total, per
// client address, and per user and address at login). Within a session
// of those servers, Conn (conn.go) is the client connection that
// Shutdown and Kick interrupt, STARTTLS upgrades and a proxied login
// hands to its relay, and LoginFailures (login.go) counts and slows
// failed logins.
package netserve

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"syscall"
	"time"
)

// ErrClosing is returned by Accept when the server is shutting down.
var ErrClosing = errors.New("netserve: server closing")

// Acceptor accepts connections from one listener.
type Acceptor struct {
	Listener net.Listener
	Name     string          // for logs and errors: "smtpd", "imap", "pop3"
	Closing  func() bool     // reports whether the server is shutting down
	Done     <-chan struct{} // closed at shutdown; ends a pause early (may be nil)
	Logger   *slog.Logger

	backoff time.Duration
}

// Accept returns the next connection. It retries temporary failures with
// a pause doubling from 5 ms up to 1 s, returns ErrClosing once the server
// is shutting down, and any other failure wrapped with the listener's
// address.
func (a *Acceptor) Accept() (net.Conn, error) {
	for {
		c, err := a.Listener.Accept()
		if err == nil {
			a.backoff = 0
			return c, nil
		}
		if a.Closing != nil && a.Closing() {
			return nil, ErrClosing
		}
		if !Temporary(err) {
			return nil, fmt.Errorf("%s: accept on %s: %w", a.Name, a.Listener.Addr(), err)
		}
		a.backoff = min(max(2*a.backoff, 5*time.Millisecond), time.Second)
		if a.Logger != nil {
			a.Logger.Warn(a.Name+": accept", "err", err, "retry_in", a.backoff)
		}
		select {
		case <-time.After(a.backoff):
		case <-a.Done: // nil Done never fires
			return nil, ErrClosing
		}
	}
}

// Temporary reports whether an accept error is worth retrying: a timeout,
// or the process or system running out of file descriptors.
func Temporary(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}
