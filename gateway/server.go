// Package gateway is Postern's SMTP edge: the policy of every SMTP session
// (who may send what to whom, relaying, quotas, smtpaccess), the hand-off of
// accepted mail to local Maildirs and to the queue, and the SMTP metrics. The
// protocol itself is gateway/smtpd; the queue is gateway/queue; remote
// delivery is gateway/outbound. A 250 after DATA means the message is on
// disk and fsync'd: in every local recipient's Maildir, and in the queue for
// the rest.
package gateway

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"strings"

	"postern/auth"
	"postern/filters/rejectlog"
	"postern/gateway/smtpd"
	"postern/policy"
	"postern/policy/access"
)

// Options configures a Server.
type Options struct {
	Mode     Mode
	Listener string // the listener name in the configuration
	Config   func() *policy.Config
	Auth     *auth.Service
	Router   *Router
	Local    *LocalDelivery
	Queue    Queue
	Access   func() *access.Rules // smtpaccess in force; nil or returning nil: none
	Filters  func() *Filters      // the checks in force; nil or returning nil: none
	Rejects  *rejectlog.Log       // where refusals are kept; nil: nowhere
	Logger   *slog.Logger
	Metrics  *Metrics

	// LocalUser is set for an SMTP session a local user runs on standard
	// input (sendmail -bs): who, as the Received line shows it ("uid
	// 1000"). Like submission, such a session gets missing Date and
	// Message-ID fields added, and addresses without a domain get the
	// default domain (DefaultDomain).
	LocalUser string

	TLSConfig   *tls.Config // STARTTLS / implicit TLS; nil: the configuration's certificate
	ImplicitTLS bool
	Proxy       bool // connections start with a PROXY header
}

// Server is one SMTP listener's service.
type Server struct {
	srv *smtpd.Server
}

// NewServer builds the service for one listener.
func NewServer(opt Options) *Server {
	cfg := opt.Config()
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	if opt.Access == nil {
		opt.Access = func() *access.Rules { return nil }
	}
	if opt.Filters == nil {
		opt.Filters = func() *Filters { return nil }
	}
	b := &backend{
		mode: opt.Mode, cfg: opt.Config, auth: opt.Auth, router: opt.Router, local: opt.Local,
		queue: opt.Queue, access: opt.Access, filters: opt.Filters, rejects: opt.Rejects, log: opt.Logger, metrics: opt.Metrics,
		localUser: strings.Map(func(r rune) rune {
			if r < ' ' || r == '(' || r == ')' || r == 0x7f {
				return '_' // it goes into a header comment
			}
			return r
		}, opt.LocalUser),
	}
	so := smtpd.DefaultOptions()
	so.Hostname = cfg.Me
	so.Listener = opt.Listener
	so.TLSConfig = opt.TLSConfig
	if so.TLSConfig == nil {
		so.TLSConfig = cfg.TLSConfig()
	}
	so.ImplicitTLS = opt.ImplicitTLS
	so.AllowInsecureAuth = cfg.InsecureAuth
	so.MaxMessageSize = cfg.SizeLimit
	so.MaxRecipients = cfg.MaxRecipients
	so.GreetDelay = cfg.GreetDelay
	so.Banner = cfg.Greeting
	so.ProxyProtocol = opt.Proxy
	so.TrustedProxies = cfg.TrustedProxies
	so.XCLIENTFrom = cfg.XCLIENTFrom
	so.SoftBounce = func() bool { return opt.Config().SoftBounce }
	so.Logger = opt.Logger
	if opt.LocalUser != "" {
		// sendmail -bs: bare names are local ones, as with sendmail -t.
		so.QualifyDomain = DefaultDomain(cfg)
	}
	so.AuthMechanisms = []string{} // no AUTH on the MX port (RFC 6409: submission is the place)
	if opt.Mode == ModeSubmission {
		so.AuthMechanisms = []string{"PLAIN", "LOGIN"}
	}
	if opt.Mode == ModeLMTP {
		// RFC 2033: a local hand-over, on loopback or a socket: no TLS,
		// no AUTH, no PROXY or XCLIENT.
		so.LMTP, so.TLSConfig, so.ImplicitTLS, so.Banner = true, nil, false, ""
		so.XCLIENTFrom, so.ProxyProtocol, so.GreetDelay = nil, false, 0
	}
	return &Server{srv: smtpd.NewServer(b, so)}
}

// Serve accepts SMTP connections on l.
func (s *Server) Serve(l net.Listener) error { return s.srv.Serve(l) }

// Shutdown stops the service gracefully (see smtpd.Server.Shutdown).
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }

// Stats returns the protocol engine's counters.
func (s *Server) Stats() smtpd.Stats { return s.srv.Stats() }
