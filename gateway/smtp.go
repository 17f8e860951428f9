// Package gateway is Postern's SMTP edge: the listeners, the ESMTP session
// (on github.com/emersion/go-smtp), who may send what to whom, and the hand-off
// of accepted mail to delivery. A 250 after DATA means the message is on disk
// and fsync'd in every recipient's mailbox.
//
// This is the foundation slice: MX service for the accepted domains' local
// users, delivered straight into their Maildirs, and the submission
// listeners with AUTH for local recipients. The durable queue, outbound
// delivery and the filter pipeline plug in here later (see docs/architecture.md).
package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"postern/auth"
	"postern/policy"
)

// Mode says what a listener is for; it decides whether AUTH is offered and
// whether it is required.
type Mode int

const (
	ModeMX         Mode = iota // port 25: mail from the world for our domains
	ModeSubmission             // ports 587/465: authenticated users only
)

// Delivery stores one accepted message for one local account. It must be
// durable (fsync'd) when it returns nil.
type Delivery interface {
	DeliverLocal(ctx context.Context, acct *auth.Account, msg []byte) error
}

// Options configures a Server.
type Options struct {
	Mode     Mode
	Config   func() *policy.Config // the current configuration (it changes on reload)
	Auth     *auth.Service
	Delivery Delivery
	Logger   *slog.Logger
	Metrics  *Metrics // may be nil

	MaxRecipients int           // per transaction; default 100 (RFC 5321 4.5.3.1.8 minimum)
	ReadTimeout   time.Duration // per command; default 5 min (RFC 5321 4.5.3.2)
	WriteTimeout  time.Duration // default 1 min
	ShutdownGrace time.Duration // how long a transaction in DATA may take to finish on shutdown; default 30 s
}

// Server is one SMTP service (MX or submission) on any number of listeners.
type Server struct {
	opt    Options
	smtp   *smtp.Server
	nextID atomic.Uint64

	mu       sync.Mutex
	sessions map[*session]struct{}
}

// NewServer builds a server; Serve or ServeTLS start it on listeners.
func NewServer(opt Options) *Server {
	if opt.MaxRecipients == 0 {
		opt.MaxRecipients = 100
	}
	if opt.ReadTimeout == 0 {
		opt.ReadTimeout = 5 * time.Minute
	}
	if opt.WriteTimeout == 0 {
		opt.WriteTimeout = time.Minute
	}
	if opt.ShutdownGrace == 0 {
		opt.ShutdownGrace = 30 * time.Second
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	s := &Server{opt: opt, sessions: map[*session]struct{}{}}
	cfg := opt.Config()
	srv := smtp.NewServer(s)
	srv.Domain = cfg.Me
	srv.MaxMessageBytes = cfg.SizeLimit
	srv.MaxRecipients = opt.MaxRecipients
	srv.ReadTimeout = opt.ReadTimeout
	srv.WriteTimeout = opt.WriteTimeout
	srv.TLSConfig = cfg.TLSConfig()
	srv.AllowInsecureAuth = cfg.InsecureAuth
	srv.EnableSMTPUTF8 = true
	srv.ErrorLog = slogPrintf{opt.Logger}
	s.smtp = srv
	return s
}

// Serve accepts SMTP connections on l.
func (s *Server) Serve(l net.Listener) error {
	err := s.smtp.Serve(l)
	if errors.Is(err, smtp.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting connections, lets transactions that are sending
// DATA finish (up to ShutdownGrace), and tells every other session
// "421 4.4.2" so that clients come back later. Nothing accepted is lost:
// a message is only acknowledged once it is on disk.
func (s *Server) Shutdown(ctx context.Context) error {
	done := make(chan error, 1)
	go func() { done <- s.smtp.Shutdown(context.Background()) }()
	grace := time.NewTimer(s.opt.ShutdownGrace)
	defer grace.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		// Idle sessions wait in a read; an expired read deadline makes
		// go-smtp answer "421 4.4.2" and close. A session in DATA is left to
		// finish its message. The poke repeats because go-smtp renews the
		// deadline before each command it reads.
		s.mu.Lock()
		for sess := range s.sessions {
			if !sess.inData.Load() {
				sess.conn.Conn().SetReadDeadline(time.Now())
			}
		}
		s.mu.Unlock()
		select {
		case err := <-done:
			if errors.Is(err, smtp.ErrServerClosed) {
				return nil
			}
			return err
		case <-tick.C:
		case <-grace.C:
			s.smtp.Close()
			return errors.New("smtp: shutdown grace expired; closed remaining sessions")
		case <-ctx.Done():
			s.smtp.Close()
			return ctx.Err()
		}
	}
}

// NewSession is go-smtp's Backend hook: one session per connection.
func (s *Server) NewSession(c *smtp.Conn) (smtp.Session, error) {
	id := fmt.Sprintf("%x-%d", time.Now().Unix(), s.nextID.Add(1))
	sess := &session{
		srv:  s,
		conn: c,
		id:   id,
		cfg:  s.opt.Config(), // one configuration for the session's life
		log:  s.opt.Logger.With("session", id, "remote", c.Conn().RemoteAddr().String()),
	}
	s.mu.Lock()
	s.sessions[sess] = struct{}{}
	s.mu.Unlock()
	s.opt.Metrics.session()
	sess.log.Debug("smtp connect")
	return sess, nil
}

func (s *Server) forget(sess *session) {
	s.mu.Lock()
	delete(s.sessions, sess)
	s.mu.Unlock()
}

// session is one SMTP connection's state.
type session struct {
	srv  *Server
	conn *smtp.Conn
	id   string
	cfg  *policy.Config
	log  *slog.Logger

	authUser string // set after a successful AUTH

	from   string
	rcpts  []recipient
	inData atomic.Bool
}

type recipient struct {
	addr string
	acct *auth.Account
}

var _ smtp.AuthSession = (*session)(nil)

func (s *session) Reset() {
	s.from = ""
	s.rcpts = nil
}

func (s *session) Logout() error {
	s.srv.forget(s)
	s.log.Debug("smtp disconnect")
	return nil
}

// AuthMechanisms offers PLAIN and LOGIN on the submission listeners only; go-smtp
// keeps them hidden until TLS unless insecure auth is allowed.
func (s *session) AuthMechanisms() []string {
	if s.srv.opt.Mode != ModeSubmission {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

func (s *session) Auth(mech string) (sasl.Server, error) {
	check := func(identity, username, password string) error {
		if identity != "" && identity != username {
			return smtpErr(535, 5, 7, 8, "Authorization identity must match the user")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		acct, err := s.srv.opt.Auth.Authenticate(ctx, auth.ServiceSMTP, username, password)
		switch {
		case err == nil:
			s.authUser = acct.Name
			s.log = s.log.With("user", acct.Name)
			s.log.Info("smtp auth ok", "mechanism", mech)
			return nil
		case errors.Is(err, auth.ErrTemporary):
			s.log.Warn("smtp auth: backend unavailable", "err", err)
			return smtpErr(454, 4, 7, 0, "Temporary authentication failure")
		default:
			s.log.Info("smtp auth failed", "mechanism", mech, "user", username, "err", err)
			s.srv.opt.Metrics.reject("auth")
			return smtp.ErrAuthFailed
		}
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(check), nil
	case sasl.Login:
		return newLoginServer(func(u, p string) error { return check("", u, p) }), nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	if s.srv.opt.Mode == ModeSubmission && s.authUser == "" {
		return smtp.ErrAuthRequired
	}
	if from != "" {
		if _, _, err := splitAddress(from); err != nil {
			return smtpErr(553, 5, 1, 7, "Bad sender address syntax")
		}
	}
	if opts != nil && opts.Size > 0 && opts.Size > s.cfg.SizeLimit {
		return smtpErr(552, 5, 3, 4, fmt.Sprintf("Message too big: limit is %d bytes", s.cfg.SizeLimit))
	}
	s.from = from
	s.rcpts = nil
	return nil
}

func (s *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	local, domain, err := splitAddress(to)
	if err != nil {
		s.srv.opt.Metrics.reject("rcpt_syntax")
		return smtpErr(501, 5, 1, 3, "Bad recipient address syntax")
	}
	if !s.cfg.HasDomain(domain) {
		// Never an open relay. Remote delivery for authenticated users
		// arrives with the outbound queue.
		s.srv.opt.Metrics.reject("relay")
		s.log.Info("smtp relay denied", "from", s.from, "rcpt", to)
		if s.authUser != "" {
			return smtpErr(554, 5, 7, 1, "Remote delivery is not available on this server yet")
		}
		return smtpErr(554, 5, 7, 1, "Relay access denied")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	acct, err := s.srv.opt.Auth.Lookup(ctx, local+"@"+domain)
	switch {
	case err == nil:
	case errors.Is(err, auth.ErrNoSuchUser):
		s.srv.opt.Metrics.reject("unknown_user")
		s.log.Info("smtp unknown recipient", "from", s.from, "rcpt", to)
		return smtpErr(550, 5, 1, 1, "No such user here")
	default:
		s.log.Warn("smtp recipient lookup failed", "rcpt", to, "err", err)
		return smtpErr(451, 4, 3, 0, "Temporary failure looking up the recipient, try again later")
	}
	if over, err := overQuota(acct); err == nil && over {
		s.srv.opt.Metrics.reject("over_quota")
		return smtpErr(552, 5, 2, 2, "Mailbox full")
	}
	s.rcpts = append(s.rcpts, recipient{addr: to, acct: acct})
	return nil
}

func (s *session) Data(r io.Reader) error {
	s.inData.Store(true)
	defer s.inData.Store(false)
	if len(s.rcpts) == 0 {
		return smtpErr(503, 5, 5, 1, "No valid recipients")
	}
	var body bytes.Buffer
	if _, err := io.Copy(&body, r); err != nil {
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			s.srv.opt.Metrics.reject("size")
			return err // go-smtp's "552 message too big"
		}
		return smtpErr(451, 4, 3, 0, "Error reading message: "+err.Error())
	}
	received := s.traceHeaders(time.Now())
	msg := toLF(received, body.Bytes())

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for i, rc := range s.rcpts {
		err := s.srv.opt.Delivery.DeliverLocal(ctx, rc.acct, msg)
		if err == nil {
			continue
		}
		s.log.Warn("smtp delivery failed", "rcpt", rc.addr, "err", err)
		if i > 0 {
			// Earlier recipients have the message already; a retry would
			// duplicate it for them. The queue (a later stage) removes this
			// case; until then say "try again" rather than lose anything.
			s.log.Error("smtp partial delivery: earlier recipients already have the message", "delivered", i)
		}
		if errors.Is(err, ErrOverQuota) && len(s.rcpts) == 1 {
			s.srv.opt.Metrics.reject("over_quota")
			return smtpErr(552, 5, 2, 2, "Mailbox full")
		}
		return smtpErr(451, 4, 3, 0, "Temporary local delivery failure, try again later")
	}
	s.srv.opt.Metrics.accepted(len(msg))
	s.log.Info("smtp accepted", "from", s.from, "rcpts", len(s.rcpts), "size", len(msg))
	return nil
}

// traceHeaders returns the Return-Path (RFC 5321 4.4, added at final
// delivery) and Received lines for this transaction.
func (s *session) traceHeaders(now time.Time) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "Return-Path: <%s>\n", s.from)
	remote := s.conn.Conn().RemoteAddr()
	ip := remote.String()
	if ta, ok := remote.(*net.TCPAddr); ok {
		ip = ta.IP.String()
	}
	helo := sanitizeHeaderWord(s.conn.Hostname())
	with := "ESMTP"
	var tlsInfo string
	if st, ok := s.conn.TLSConnectionState(); ok {
		with += "S"
		tlsInfo = fmt.Sprintf("\n\t(using %s with cipher %s)", tlsVersionName(st.Version), tlsCipherName(st.CipherSuite))
	}
	if s.authUser != "" {
		with += "A" // RFC 3848
	}
	fmt.Fprintf(&b, "Received: from %s ([%s])\n\tby %s (Postern) with %s id %s%s", helo, ip, s.cfg.Me, with, s.id, tlsInfo)
	if len(s.rcpts) == 1 {
		fmt.Fprintf(&b, "\n\tfor <%s>", s.rcpts[0].addr)
	}
	fmt.Fprintf(&b, ";\n\t%s\n", now.Format(time.RFC1123Z))
	return []byte(b.String())
}

// sanitizeHeaderWord keeps a client-supplied name from breaking the header.
func sanitizeHeaderWord(s string) string {
	if s == "" {
		return "unknown"
	}
	var b strings.Builder
	for _, r := range s {
		if r <= ' ' || r == 0x7f || r == '(' || r == ')' || r == ';' {
			b.WriteByte('_')
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// toLF joins the trace headers and the message and turns CRLF into LF: on
// disk, Maildir messages use the local newline, as Courier and Dovecot store
// them; the IMAP and POP3 servers put the CRs back on the wire.
func toLF(prefix, msg []byte) []byte {
	out := make([]byte, 0, len(prefix)+len(msg))
	out = append(out, prefix...)
	for len(msg) > 0 {
		i := bytes.Index(msg, []byte("\r\n"))
		if i < 0 {
			out = append(out, msg...)
			break
		}
		out = append(out, msg[:i]...)
		out = append(out, '\n')
		msg = msg[i+2:]
	}
	return out
}

// splitAddress splits local@domain, refusing what is not a plain address.
// Quoted local parts are kept quoted in local; source routes, "%" and "!"
// paths are not split further and so never name a remote host (relay tricks
// are the queue's and rules' business to refuse, and here they simply fail
// the user lookup).
func splitAddress(addr string) (local, domain string, err error) {
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 || at == len(addr)-1 {
		return "", "", fmt.Errorf("no domain in %q", addr)
	}
	local, domain = addr[:at], strings.ToLower(addr[at+1:])
	if strings.ContainsAny(addr, "\x00\r\n\t ") && !strings.HasPrefix(local, "\"") {
		return "", "", fmt.Errorf("bad characters in %q", addr)
	}
	// Address literals ("[192.0.2.1]") and trailing dots are returned as
	// they are: policy.Config.HasDomain never matches them, so they can only
	// be relayed by an authenticated client.
	return local, domain, nil
}

func smtpErr(code, c1, c2, c3 int, msg string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: smtp.EnhancedCode{c1, c2, c3}, Message: msg}
}

// slogPrintf adapts go-smtp's Printf logger to slog.
type slogPrintf struct{ l *slog.Logger }

func (p slogPrintf) Printf(format string, v ...any) { p.l.Warn("smtp: " + fmt.Sprintf(format, v...)) }
func (p slogPrintf) Println(v ...any)               { p.l.Warn("smtp: " + fmt.Sprint(v...)) }
