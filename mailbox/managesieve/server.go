// Package managesieve is Postern's ManageSieve server (RFC 5804): the
// protocol mail clients (Roundcube's managesieve plugin, Thunderbird's
// Sieve add-on, sieve-connect) use to upload, list, activate and remove
// a user's Sieve scripts, with STARTTLS and SASL PLAIN (RFC 4616) and
// LOGIN.
//
// It owns the protocol: the session states, the command reader (quoted
// strings and literals), response codes and capabilities. Where scripts
// live is the sievestore package's (Dovecot's layout: HOME/sieve/ and the
// HOME/.dovecot.sieve link); whether a script is valid Sieve is the
// Options.Validate function's (rules/sieve); who may log in is the auth
// package's, asked for the service "sieve" (so the userdb's "sievepw"
// field and the "disablesieve" option apply).
package managesieve

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
	"postern/mailbox/sievestore"
)

// ErrServerClosed is returned by Serve and ServeTLS after Shutdown.
var ErrServerClosed = errors.New("managesieve: server closed")

// AuthService is the service name the server authenticates for: a
// per-service password field "sievepw" and the option "disablesieve"
// (Dovecot's protocol name for ManageSieve is "sieve" too).
const AuthService = "sieve"

// Defaults for Options fields left zero.
const (
	DefaultPort             = 4190 // RFC 5804 section 1.8 (IANA "sieve")
	DefaultIdleTimeout      = 30 * time.Minute
	DefaultMaxAuthFailures  = 3
	DefaultAuthFailureDelay = 2 * time.Second
	// DefaultMaxScriptSize bounds an upload when Limits.MaxScriptSize is
	// zero: a literal must have a bound, and Sieve scripts are small.
	DefaultMaxScriptSize int64 = 1 << 20
	authTimeout                = 30 * time.Second
	tlsHandshakeTimeout        = 30 * time.Second
)

// defaultExtensions is the SIEVE capability when Options.Extensions is
// nil: the optional extensions RFC 5228 itself defines. The integrator
// passes the Sieve engine's own list.
var defaultExtensions = []string{"fileinto", "envelope", "encoded-character"}

// Options configure a Server.
type Options struct {
	Hostname string
	// TLSConfig enables STARTTLS (RFC 5804 section 2.2) when non-nil, and
	// is what ServeTLS uses.
	TLSConfig *tls.Config
	Auth      *auth.Service
	Logger    *slog.Logger
	// AllowInsecureAuth offers and accepts SASL before TLS. When false
	// the SASL capability is empty until STARTTLS and AUTHENTICATE
	// answers NO (ENCRYPT-NEEDED).
	AllowInsecureAuth bool
	// IdleTimeout closes a session that sends nothing for this long
	// (default 30 minutes).
	IdleTimeout time.Duration
	// MaxAuthFailures is how many failed logins a connection gets before
	// it is closed with BYE (default 3).
	MaxAuthFailures int
	// AuthFailureDelay is slept before answering a failed login (default
	// 2 s; negative means none).
	AuthFailureDelay time.Duration
	// Validate checks a script for PUTSCRIPT and CHECKSCRIPT: nil accepts
	// every script. Its error text is sent to the client in the NO
	// response (line numbers and all). An error with a method
	// Warning() bool that reports true is a warning: the script is
	// accepted and the text sent in OK (WARNINGS) (RFC 5804 section 1.3).
	Validate func(src []byte) error
	// Extensions lists the Sieve extensions for the SIEVE capability; it
	// is called for each capability response, so a reload shows.
	Extensions func() []string
	// Limits bound each account's scripts. Zero MaxScripts or MaxStorage
	// means no limit; zero MaxScriptSize means DefaultMaxScriptSize.
	Limits sievestore.Limits
	// ConnLimits, when set, bounds the sessions (Courier's MAXDAEMONS
	// and MAXPERIP, Dovecot's mail_max_userip_connections); it is read at
	// each connection and each login, so a reload applies to the next.
	// nil: no limits.
	ConnLimits func() netserve.Limits
}

// Stats are the server's running counters, cheap to read for metrics.
type Stats struct {
	Connections     int64 // accepted since start
	ActiveSessions  int64
	Logins          int64
	LoginFailures   int64
	ScriptsStored   int64 // PUTSCRIPT that stored a script
	ScriptsRejected int64 // PUTSCRIPT and CHECKSCRIPT that Validate refused
	ScriptsDeleted  int64
	// ConnectionsRefused counts connections turned away over the total
	// or per-address limit, LoginsRefused logins over the per-user and
	// address one.
	ConnectionsRefused int64
	LoginsRefused      int64
}

// Server serves ManageSieve on any number of listeners.
type Server struct {
	opt Options
	log *slog.Logger

	// baseCtx is cancelled by Shutdown so that logins in progress stop.
	baseCtx context.Context
	cancel  context.CancelFunc

	group netserve.Group[*session]

	logins, loginFailures     atomic.Int64
	stored, rejected, deleted atomic.Int64
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
	if opt.Limits.MaxScriptSize <= 0 {
		opt.Limits.MaxScriptSize = DefaultMaxScriptSize
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
	s.group.Name, s.group.Logger, s.group.Closed = "managesieve", log, ErrServerClosed
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
		ScriptsStored:      s.stored.Load(),
		ScriptsRejected:    s.rejected.Load(),
		ScriptsDeleted:     s.deleted.Load(),
		ConnectionsRefused: int64(s.group.RefusedConnections()),
		LoginsRefused:      int64(s.group.RefusedLogins()),
	}
}

// Serve accepts ManageSieve connections (port 4190) on l until Shutdown.
func (s *Server) Serve(l net.Listener) error {
	return s.group.Serve(l, s.start)
}

// ServeTLS accepts connections that start with a TLS handshake
// (Options.TLSConfig) on l until Shutdown. RFC 5804 defines only
// STARTTLS; this is for setups that put the service behind TLS anyway.
func (s *Server) ServeTLS(l net.Listener) error {
	if s.opt.TLSConfig == nil {
		return errors.New("managesieve: ServeTLS: Options.TLSConfig is nil")
	}
	return s.group.ServeTLS(l, s.opt.TLSConfig, s.start)
}

// start makes the session of a connection Serve accepted.
func (s *Server) start(conn net.Conn) (*session, func()) {
	sess := newSession(s, conn)
	return sess, sess.run
}

// refusal turns away a connection over the limits instead of the greeting
// (RFC 5804 section 1.3: BYE, and TRYLATER for a temporary condition).
func refusal(why string) string { return `BYE (TRYLATER) "` + why + "\"\r\n" }

// Who lists the sessions open now, oldest first (postern who).
func (s *Server) Who() []netserve.SessionInfo { return netserve.Who(&s.group) }

// Kick ends the sessions m selects (postern kick): each answers its next
// command, or at once the one it waits for, with BYE and closes; one
// still busy after a grace period is cut. A script upload in progress
// either completes or leaves the old script (sievestore writes
// atomically).
func (s *Server) Kick(m netserve.Match) []netserve.SessionInfo {
	return netserve.Kick(&s.group, m, (*session).interrupt, (*session).forceClose)
}

// Shutdown stops accepting and ends every session after the command it is
// running, with BYE (TRYLATER). It waits for the sessions to end or for
// ctx, after which the remaining connections are cut.
func (s *Server) Shutdown(ctx context.Context) error {
	s.cancel() // logins in progress stop
	return s.group.Shutdown(ctx, (*session).interrupt, (*session).forceClose)
}

// ServeConn serves the one connection c to its end, on the caller's
// goroutine (inetd, systemd's Accept=yes).
func (s *Server) ServeConn(c net.Conn) error {
	sess := newSession(s, c)
	if err := s.group.Run(sess, sess.run); err != nil {
		c.Close()
		return err
	}
	return nil
}
