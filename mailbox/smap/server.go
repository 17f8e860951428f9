// Package smap is Postern's server for Courier's Simple Mail Access
// Protocol, version 1 (SMAP1): the protocol Courier's imapd speaks when
// SMAP_CAPABILITY is set and the Cone mail client uses. It serves the same
// Maildir++ folders, flags, keywords, UIDs and quotas as the IMAP server
// (through mailbox/maildir), so an IMAP client and an SMAP client see one
// mailbox and each sees the other's changes.
//
// A session starts in one of two ways: on Postern's own SMAP listener,
// which greets with "* OK [CAPABILITY SMAP1 ...]" and takes Courier's
// "\SMAP1 LOGIN", or inside an IMAP connection whose client sent a command
// tagged "\SMAP1", as Courier's clients do when the IMAP greeting lists
// SMAP1; the IMAP server then hands the connection over (HandOff).
//
// It owns the protocol: the command reader (lines of at most 8192 octets,
// words with SMAP's quoting), each session's view of its open folder
// (message numbers, flags, keywords) and the untagged updates that keep it
// in step with other sessions and processes, the MIME rendering of FETCH
// (Courier's rfc2045 offsets and section numbers, read by
// mailbox/reformime's parser), ADD's uploads, and SEARCH. Behaviour
// follows Courier's imapd (imap/smap.c): replies, their wording, and what
// it accepts. Mail storage is mailbox/maildir's; who may log in is auth's
// (service "imap", as Courier's SMAP rides on its IMAP server).
package smap

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"postern/auth"
	"postern/internal/netserve"
	"postern/mailbox/proxy"
)

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("smap: server closed")

// Defaults for Options fields left zero.
const (
	// DefaultIdleTimeout is the spec's minimum: "SMAP servers must have a
	// timeout of at least 30 minutes" (smapsyntax).
	DefaultIdleTimeout    = 30 * time.Minute
	DefaultMaxMessageSize = 64 << 20
	unauthTimeout         = 60 * time.Second
	writeTimeout          = 2 * time.Minute
	tlsHandshakeTimeout   = 30 * time.Second
	authTimeout           = 30 * time.Second
	maxAuthFailures       = 5
	maxBadCommands        = 20
	idlePoll              = 60 * time.Second // when the folder cannot be watched, as Courier's imapidle
)

// Options configure a Server.
type Options struct {
	Hostname string
	// TLSConfig enables STARTTLS before login when non-nil.
	TLSConfig *tls.Config
	Auth      *auth.Service
	Logger    *slog.Logger
	// AllowInsecureAuth permits LOGIN before TLS.
	AllowInsecureAuth bool
	// IdleTimeout ends a logged-in session that sends nothing for this
	// long (default 30 minutes).
	IdleTimeout time.Duration
	// MaxMessageSize bounds ADD's upload (default 64 MiB).
	MaxMessageSize int64
	// Sender, when set, sends ADD's messages that have RCPTTO recipients;
	// without it such an ADD is refused.
	Sender Sender
	// Proxy, when enabled, sends each account whose mailhost names another
	// host there after its login, over that host's IMAP port switched to
	// SMAP (Courier's IMAP_PROXY, which SMAP follows; proxy.go).
	Proxy *proxy.Config
	// ConnLimits, when set, bounds the sessions (Courier's MAXDAEMONS
	// and MAXPERIP, Dovecot's mail_max_userip_connections); it is read at
	// each connection and each login, so a reload applies to the next.
	// nil: no limits.
	ConnLimits func() netserve.Limits

	// testIdlePoll shortens IDLE's rescan interval in tests.
	testIdlePoll time.Duration
}

// Stats are the server's running counters, cheap to read for metrics.
type Stats struct {
	Connections   int64 // sessions started (own listener and IMAP hand-offs)
	HandOffs      int64 // of which came from an IMAP connection
	Active        int64
	Logins        int64
	LoginFailures int64
	Commands      int64 // commands after login
	BytesSent     int64 // message octets sent by FETCH CONTENTS
	MessagesAdded int64 // by ADD
	// ProxiedSessions counts logins relayed to another mailbox host,
	// ProxyFailures those that could not be.
	ProxiedSessions int64
	ProxyFailures   int64
	// ConnectionsRefused counts connections turned away over the total
	// or per-address limit, LoginsRefused logins over the per-user and
	// address one.
	ConnectionsRefused int64
	LoginsRefused      int64
}

// Server serves SMAP on any number of listeners and takes IMAP hand-offs.
type Server struct {
	opt   Options
	log   *slog.Logger
	watch *watcher

	group netserve.Group[*session]

	handoffs, logins, loginFailures, commands, bytesSent, added atomic.Int64
	proxied, proxyFailures                                      atomic.Int64
}

// NewServer returns a server; it does nothing until Serve or HandOff.
func NewServer(opt Options) *Server {
	if opt.IdleTimeout <= 0 {
		opt.IdleTimeout = DefaultIdleTimeout
	}
	if opt.MaxMessageSize <= 0 {
		opt.MaxMessageSize = DefaultMaxMessageSize
	}
	if opt.Hostname == "" {
		opt.Hostname = "localhost"
	}
	log := opt.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{opt: opt, log: log}
	s.group.Name, s.group.Logger, s.group.Closed = "smap", log, ErrServerClosed
	s.group.Limits, s.group.Refusal = opt.ConnLimits, refusal
	s.watch = newWatcher(log)
	return s
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	return Stats{
		Connections:        int64(s.group.Started()),
		HandOffs:           s.handoffs.Load(),
		Active:             int64(s.group.Len()),
		Logins:             s.logins.Load(),
		LoginFailures:      s.loginFailures.Load(),
		Commands:           s.commands.Load(),
		BytesSent:          s.bytesSent.Load(),
		MessagesAdded:      s.added.Load(),
		ProxiedSessions:    s.proxied.Load(),
		ProxyFailures:      s.proxyFailures.Load(),
		ConnectionsRefused: int64(s.group.RefusedConnections()),
		LoginsRefused:      int64(s.group.RefusedLogins()),
	}
}

// refusal turns away a connection over the limits instead of the
// greeting, with the -ERR of Courier's SMAP replies.
func refusal(why string) string { return "-ERR " + why + "\r\n" }

// Serve accepts SMAP connections on l until Shutdown. A listener wrapped
// with tls.NewListener serves implicit TLS.
func (s *Server) Serve(l net.Listener) error {
	return s.group.Serve(l, func(c net.Conn) (*session, func()) {
		_, isTLS := c.(*tls.Conn)
		sess := s.newSession(c, nil, isTLS)
		return sess, func() {
			defer sess.close()
			defer c.Close()
			sess.serveListener()
		}
	})
}

// HandOff runs an SMAP session on a connection the IMAP server accepted:
// its client sent a command tagged "\SMAP1" before logging in, which br
// (the connection's buffered reader) still holds. isTLS says whether the
// connection is already encrypted. HandOff returns when the session ends;
// the caller closes the connection.
func (s *Server) HandOff(c net.Conn, br *bufio.Reader, isTLS bool) {
	s.handoffs.Add(1)
	sess := s.newSession(c, br, isTLS)
	s.group.Run(sess, func() {
		defer sess.close()
		sess.preLogin()
	})
}

// Who lists the sessions open now, oldest first (postern who).
func (s *Server) Who() []netserve.SessionInfo { return netserve.Who(&s.group) }

// Kick ends the sessions m selects (postern kick): each says "* BYE" at
// its next command boundary, or at once when it is waiting for a command
// or idling; one still busy after a grace period is cut.
func (s *Server) Kick(m netserve.Match) []netserve.SessionInfo {
	return netserve.Kick(&s.group, m, (*session).interrupt, (*session).kill)
}

// Shutdown stops accepting, asks every session to end with "* BYE" at its
// next command boundary (or in IDLE), and waits for them or for ctx.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.group.Shutdown(ctx, (*session).interrupt, (*session).kill)
	s.watch.close()
	return err
}

func (s *Server) shuttingDown() bool {
	select {
	case <-s.group.Done():
		return true
	default:
		return false
	}
}
