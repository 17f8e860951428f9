// Package proxy is Courier's mailhost proxying for Postern's IMAP and POP3
// servers: when an account's "mailhost" field names another host, the
// server that took the login connects to that host, logs in there with the
// same name and password, and from then on relays bytes both ways, so that
// mailboxes can be partitioned across mailbox hosts behind one address.
//
// It owns the decision (Config.Route: which hosts, in which order, and
// whether this host serves the account itself), the backend side of the
// login for each protocol (LoginIMAP, LoginPOP3: dial with a timeout, read
// the greeting, optional STARTTLS/STLS with the certificate verified, log
// in), and the relay (Relay) with its graceful stop. The protocol servers
// own their front side: authenticating the client first, as Courier does
// (a wrong password never reaches a backend), and turning this package's
// errors into NO [UNAVAILABLE] or -ERR [SYS/TEMP].
package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"postern/auth"
)

// Errors of the backend login; callers test them with errors.Is.
var (
	// ErrUnavailable: no backend could be reached, or one answered in a way
	// that is not a login refusal (no greeting, STARTTLS failed, timeout).
	// The client should try again later.
	ErrUnavailable = errors.New("proxy: mailbox server unavailable")
	// ErrRefused: the backend refused the login. The front accepted the
	// password, so the account databases disagree; *Refusal carries the
	// backend's answer.
	ErrRefused = errors.New("proxy: mailbox server refused the login")
)

// Refusal is the error of a backend that refused the login: its reply,
// which the front may pass on (re-tagged for IMAP).
type Refusal struct {
	Host  string
	Reply string // the backend's reply line without its tag or line ending: "NO [...] text", "-ERR text"
}

func (r *Refusal) Error() string {
	return fmt.Sprintf("proxy: %s refused the login: %s", r.Host, r.Reply)
}

func (r *Refusal) Unwrap() error { return ErrRefused }

// TLSMode is how the front protects its connection to the backend.
type TLSMode int

const (
	// TLSNone: plain TCP, as Courier's proxy does (a trusted network
	// between the hosts).
	TLSNone TLSMode = iota
	// TLSStartTLS: STARTTLS (IMAP) or STLS (POP3) before the login; a
	// backend that does not offer it, or whose certificate does not
	// verify, is unavailable.
	TLSStartTLS
)

// Default timeouts; Courier's proxy waits 30 s for each step.
const (
	DefaultDialTimeout  = 30 * time.Second
	DefaultLoginTimeout = 30 * time.Second
	// maxReplyLine bounds a backend reply line read during the login
	// (greeting, capabilities, the login's answer).
	maxReplyLine = 16 << 10
)

// Config is one protocol server's proxying setup. The zero value proxies
// nothing (Enabled false).
type Config struct {
	// Enabled is Courier's IMAP_PROXY / POP3_PROXY ("imapproxy",
	// "pop3proxy").
	Enabled bool
	// Me is this host's name as mailhost fields spell it ("proxyhostname",
	// default "me"); compared without regard to case or a trailing dot.
	Me string
	// Port is the backend port for a mailhost without one (143, 110).
	Port int
	// TLS and TLSConfig protect the connection to the backend. TLSConfig's
	// ServerName is set to each backend's host name; RootCAs nil means the
	// system's; InsecureSkipVerify is "proxytlsverify no".
	TLS       TLSMode
	TLSConfig *tls.Config
	// DialTimeout bounds each connection attempt, LoginTimeout the whole
	// backend login (greeting to the login's answer).
	DialTimeout  time.Duration
	LoginTimeout time.Duration
	Logger       *slog.Logger

	// live, set by Update, holds the settings a reload put in force; the
	// protocol servers keep the Config they were started with and each
	// exported method resolves it (current) once per call.
	live atomic.Pointer[Config]
}

// Update puts n's settings in force for every later Route and login
// through c (a reload of the proxy settings); sessions already relaying
// are not touched. n nil goes back to c's own settings.
func (c *Config) Update(n *Config) {
	if n == c {
		n = nil
	}
	c.live.Store(n)
}

// current is the Config whose settings are in force: the last Update's,
// or c itself.
func (c *Config) current() *Config {
	if c == nil {
		return nil
	}
	if n := c.live.Load(); n != nil {
		return n
	}
	return c
}

// Route says where acct is served. hosts are the backends to try in
// order; local says that this host serves the account when none of them
// can be reached (or at once, when hosts is empty). An account without a
// mailhost, or with proxying off, is local.
//
// The mailhost (see Mailhost) is Courier's: one host, or a comma-separated list
// tried in order; as in Courier, reaching this host's own name in the
// list means "serve it here", so the hosts after it are never tried.
// Postern also takes host:port (and [v6]:port).
func (c *Config) Route(acct *auth.Account) (hosts []string, local bool) {
	c = c.current()
	if c == nil || !c.Enabled || acct == nil {
		return nil, true
	}
	field := strings.TrimSpace(Mailhost(acct))
	if field == "" {
		return nil, true
	}
	me := normalizeHost(c.Me)
	for _, h := range strings.Split(field, ",") {
		h = strings.TrimSpace(h)
		if h == "" {
			continue
		}
		if me != "" && normalizeHost(hostOnly(h)) == me {
			return hosts, true
		}
		hosts = append(hosts, h)
	}
	return hosts, len(hosts) == 0
}

// Mailhost is acct's mailhost: Courier's account option "mailhost" (from
// userdb's options field, LDAP_AUXOPTIONS or the SQL modules'
// AUXOPTIONS_FIELD, as Courier's authlib passes it), else a userdb field
// of that name.
func Mailhost(acct *auth.Account) string {
	if h := acct.Options["mailhost"]; h != "" {
		return h
	}
	return acct.Fields["mailhost"]
}

func normalizeHost(h string) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(h), "."))
}

// hostOnly is h without a port: "mbox1:1143" → "mbox1", "[::1]:143" → "::1".
func hostOnly(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		return host
	}
	return strings.Trim(h, "[]")
}

// address is h with the default port added when it has none.
func (c *Config) address(h string) string {
	if _, _, err := net.SplitHostPort(h); err == nil {
		return h
	}
	return net.JoinHostPort(strings.Trim(h, "[]"), strconv.Itoa(c.Port))
}

// Backend is a logged-in connection to a mailbox host.
type Backend struct {
	Host string // as the mailhost field names it
	Conn net.Conn
	// R holds what the backend sent after its login reply (untagged data
	// the front has not read yet); Relay reads through it.
	R *bufio.Reader
}

// Close closes the backend connection.
func (b *Backend) Close() error { return b.Conn.Close() }

// login tries hosts in order with fn (one protocol's login on a dialled
// connection) and returns the first backend that logs in. A refusal ends
// the search (the other hosts hold other copies of the same account
// database and would refuse too); unavailability goes on to the next host.
func (c *Config) login(ctx context.Context, hosts []string, fn func(ctx context.Context, host string, conn net.Conn, r *bufio.Reader) (net.Conn, *bufio.Reader, error)) (*Backend, error) {
	var errs []error
	for _, h := range hosts {
		conn, err := c.dial(ctx, h)
		if err != nil {
			errs = append(errs, err)
			c.logger().Warn("proxy: cannot reach mailbox server", "host", h, "err", err)
			continue
		}
		lctx, cancel := context.WithTimeout(ctx, c.loginTimeout())
		stop := context.AfterFunc(lctx, func() { conn.SetDeadline(time.Now()) })
		conn2, r, err := fn(lctx, h, conn, bufio.NewReaderSize(conn, 4<<10))
		stop()
		cancel()
		if err == nil {
			conn2.SetDeadline(time.Time{})
			return &Backend{Host: h, Conn: conn2, R: r}, nil
		}
		conn.Close()
		if errors.Is(err, ErrRefused) {
			c.logger().Warn("proxy: mailbox server refused the login", "host", h, "err", err)
			return nil, err
		}
		c.logger().Warn("proxy: login to mailbox server failed", "host", h, "err", err)
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return nil, fmt.Errorf("%w: no mailbox server to try", ErrUnavailable)
	}
	return nil, fmt.Errorf("%w: %w", ErrUnavailable, errors.Join(errs...))
}

func (c *Config) dial(ctx context.Context, host string) (net.Conn, error) {
	d := net.Dialer{Timeout: c.dialTimeout()}
	conn, err := d.DialContext(ctx, "tcp", c.address(host))
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", host, err)
	}
	return conn, nil
}

// startTLS runs the client handshake on conn for host, verifying the
// certificate against host's name unless the configuration says not to.
func (c *Config) startTLS(ctx context.Context, host string, conn net.Conn) (*tls.Conn, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.TLSConfig != nil {
		cfg = c.TLSConfig.Clone()
	}
	if cfg.ServerName == "" {
		cfg.ServerName = hostOnly(host)
	}
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, fmt.Errorf("TLS with %s: %w", host, err)
	}
	return tc, nil
}

func (c *Config) dialTimeout() time.Duration {
	if c.DialTimeout > 0 {
		return c.DialTimeout
	}
	return DefaultDialTimeout
}

func (c *Config) loginTimeout() time.Duration {
	if c.LoginTimeout > 0 {
		return c.LoginTimeout
	}
	return DefaultLoginTimeout
}

func (c *Config) logger() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// readLine reads one reply line, without its line ending, bounded.
func readLine(r *bufio.Reader) (string, error) {
	var b []byte
	for {
		chunk, err := r.ReadSlice('\n')
		b = append(b, chunk...)
		if len(b) > maxReplyLine {
			return "", errors.New("reply line too long")
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			return "", err
		}
		s := strings.TrimSuffix(string(b), "\n")
		return strings.TrimSuffix(s, "\r"), nil
	}
}

// writeAll writes s to conn (the login's deadline applies).
func writeAll(conn net.Conn, s string) error {
	_, err := conn.Write([]byte(s))
	return err
}
