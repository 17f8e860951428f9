// Package pop3 is Postern's POP3 server (RFC 1939) with the extensions
// clients rely on: CAPA and response codes (RFC 2449, RFC 3206), STLS
// (RFC 2595), AUTH PLAIN (RFC 5034, RFC 4616) and implicit TLS (pop3s).
//
// It owns the POP3 session: the protocol states, the view of the user's
// INBOX as a fixed, numbered maildrop, and Courier's courierpop3dsizelist
// file that gives messages their POP3 sizes and unique-ids. Mail storage is
// the maildir package's; who may log in is the auth package's.
//
// Behaviour follows Courier's pop3d: login moves new/ to cur/, RETR marks a
// message Seen, UIDLs are Courier's "UID<n>-<uidvalidity>" kept in
// courierpop3dsizelist, and several sessions may use one maildrop at once
// (no exclusive lock, so -ERR [IN-USE] is never sent).
package pop3

import (
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

// ErrServerClosed is returned by Serve and ServeTLS after Shutdown.
var ErrServerClosed = errors.New("pop3: server closed")

// Defaults for Options fields left zero.
const (
	DefaultIdleTimeout      = 10 * time.Minute // RFC 1939 section 3: autologout timer of at least 10 minutes
	DefaultMaxAuthFailures  = 3
	DefaultAuthFailureDelay = 2 * time.Second
	authTimeout             = 30 * time.Second
	tlsHandshakeTimeout     = 30 * time.Second
)

// Options configure a Server.
type Options struct {
	Hostname string
	// TLSConfig enables STLS (RFC 2595) when non-nil, and is what ServeTLS
	// uses.
	TLSConfig *tls.Config
	Auth      *auth.Service
	Logger    *slog.Logger
	// AllowInsecureAuth permits USER/PASS and AUTH before TLS. When false
	// they answer -ERR until STLS (RFC 2595 section 2.4 lets servers refuse
	// plaintext passwords on an unprotected connection).
	AllowInsecureAuth bool
	// IdleTimeout closes a session that sends nothing for this long
	// (default 10 minutes).
	IdleTimeout time.Duration
	// MaxAuthFailures is how many failed logins a connection gets before it
	// is closed (default 3).
	MaxAuthFailures int
	// AuthFailureDelay is slept after each failed login to slow password
	// guessing (default 2 s; negative means none).
	AuthFailureDelay time.Duration
	// Proxy, when enabled, sends each account whose mailhost names another
	// host there after its login (Courier's POP3_PROXY; proxy.go).
	Proxy *proxy.Config
	// ConnLimits, when set, bounds the sessions (Courier's MAXDAEMONS
	// and MAXPERIP, Dovecot's mail_max_userip_connections); it is read at
	// each connection and each login, so a reload applies to the next.
	// nil: no limits.
	ConnLimits func() netserve.Limits
}

// Stats are the server's running counters, cheap to read for metrics.
type Stats struct {
	Connections       int64 // accepted since start
	ActiveSessions    int64
	Logins            int64
	LoginFailures     int64
	MessagesRetrieved int64 // RETR
	MessagesDeleted   int64 // removed in UPDATE state
	BytesSent         int64 // message octets sent by RETR and TOP
	// ProxiedSessions counts logins relayed to another mailbox host,
	// ProxyFailures those that could not be (backend unreachable or
	// refusing).
	ProxiedSessions int64
	ProxyFailures   int64
	// ConnectionsRefused counts connections turned away over the total
	// or per-address limit, LoginsRefused logins over the per-user and
	// address one.
	ConnectionsRefused int64
	LoginsRefused      int64
}

// Server serves POP3 on any number of listeners.
type Server struct {
	opt Options
	log *slog.Logger

	// baseCtx is cancelled by Shutdown so that logins in progress stop.
	baseCtx context.Context
	cancel  context.CancelFunc

	group netserve.Group[*session]

	logins, loginFailures, retrieved, deleted, bytesSent atomic.Int64
	proxied, proxyFailures                               atomic.Int64
}

// NewServer returns a server; it does nothing until Serve or ServeTLS.
func NewServer(opt Options) *Server {
	if opt.IdleTimeout <= 0 {
		opt.IdleTimeout = DefaultIdleTimeout
	}
	if opt.MaxAuthFailures <= 0 {
		opt.MaxAuthFailures = DefaultMaxAuthFailures
	}
	if opt.AuthFailureDelay == 0 {
		opt.AuthFailureDelay = DefaultAuthFailureDelay
	}
	if opt.Hostname == "" {
		opt.Hostname = "localhost"
	}
	log := opt.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{opt: opt, log: log, baseCtx: ctx, cancel: cancel}
	s.group.Name, s.group.Logger, s.group.Closed = "pop3", log, ErrServerClosed
	s.group.Limits, s.group.Refusal = opt.ConnLimits, refusal
	return s
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	return Stats{
		Connections:        int64(s.group.Started()),
		ActiveSessions:     int64(s.group.Len()),
		Logins:             s.logins.Load(),
		LoginFailures:      s.loginFailures.Load(),
		MessagesRetrieved:  s.retrieved.Load(),
		MessagesDeleted:    s.deleted.Load(),
		BytesSent:          s.bytesSent.Load(),
		ProxiedSessions:    s.proxied.Load(),
		ProxyFailures:      s.proxyFailures.Load(),
		ConnectionsRefused: int64(s.group.RefusedConnections()),
		LoginsRefused:      int64(s.group.RefusedLogins()),
	}
}

// Serve accepts plain POP3 connections (port 110) on l until Shutdown.
func (s *Server) Serve(l net.Listener) error {
	return s.group.Serve(l, s.start)
}

// ServeTLS accepts pop3s connections (port 995, implicit TLS with
// Options.TLSConfig) on l until Shutdown.
func (s *Server) ServeTLS(l net.Listener) error {
	if s.opt.TLSConfig == nil {
		return errors.New("pop3: ServeTLS: Options.TLSConfig is nil")
	}
	return s.group.ServeTLS(l, s.opt.TLSConfig, s.start)
}

// start makes the session of a connection Serve accepted.
func (s *Server) start(conn net.Conn) (*session, func()) {
	sess := newSession(s, conn)
	return sess, sess.run
}

// refusal turns away a connection over the limits instead of the greeting
// (RFC 3206's SYS/TEMP: a temporary condition of the server).
func refusal(why string) string { return "-ERR [SYS/TEMP] " + why + "\r\n" }

// Who lists the sessions open now, oldest first (postern who).
func (s *Server) Who() []netserve.SessionInfo { return netserve.Who(&s.group) }

// Kick ends the sessions m selects (postern kick): each answers its next
// command, or at once the one it waits for, with -ERR and closes, without
// deleting anything; one still busy after a grace period is cut.
func (s *Server) Kick(m netserve.Match) []netserve.SessionInfo {
	return netserve.Kick(&s.group, m, (*session).interrupt, (*session).forceClose)
}

// Shutdown stops accepting, and ends every session after the command it is
// running: sessions in the TRANSACTION state are closed without entering the
// UPDATE state, so nothing is deleted (RFC 1939 section 6: only QUIT
// deletes). It waits for the sessions to end or for ctx, after which the
// remaining connections are cut.
func (s *Server) Shutdown(ctx context.Context) error {
	s.cancel() // logins in progress stop
	return s.group.Shutdown(ctx, (*session).interrupt, (*session).forceClose)
}

// ServeConn serves the one connection c to its end, on the caller's
// goroutine: POP3 over an inherited socket or a pipe (inetd, systemd's
// Accept=yes), as Courier's pop3d runs from standard input. The client
// logs in as on a listener.
func (s *Server) ServeConn(c net.Conn) error {
	sess := newSession(s, c)
	if err := s.group.Run(sess, sess.run); err != nil {
		c.Close()
		return err
	}
	return nil
}
