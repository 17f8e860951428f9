package smtpd

import (
	"crypto/tls"
	"log/slog"
	"net/netip"
	"time"
)

// BareLFPolicy says what happens to a message with bare LF or bare CR line
// endings (RFC 5321 2.3.8 allows CR and LF only together as CRLF).
type BareLFPolicy int

const (
	// BareLFReject refuses the message with 550 5.5.2 (as Postfix's
	// smtpd_forbid_bare_newline = reject). The default.
	BareLFReject BareLFPolicy = iota
	// BareLFNormalize accepts the message and turns every bare LF and bare
	// CR into CRLF, so that no later hop can read it as a line ending.
	BareLFNormalize
)

// Options configure a Server. The zero value is usable; DefaultOptions turns
// on the common extensions.
type Options struct {
	Hostname string // our name, in the banner and replies; default "localhost"
	Listener string // listener name copied into ConnInfo.Listener
	Banner   string // text after "220 "; default "HOSTNAME ESMTP Postern" ("LMTP" with LMTP)

	// LMTP serves RFC 2033 instead of SMTP: LHLO replaces HELO and EHLO
	// (which are refused), and after the message each accepted recipient
	// gets its own reply, in RCPT order (LMTPSession; a session without
	// it has its one reply repeated).
	LMTP bool

	TLSConfig   *tls.Config // STARTTLS offered when non-nil and the connection is not TLS yet
	ImplicitTLS bool        // TLS handshake first (port 465, RFC 8314)

	// AuthMechanisms are offered when the session implements AuthSession;
	// nil means PLAIN LOGIN, an empty non-nil list turns AUTH off (an MX
	// port whose session type also serves submission).
	AuthMechanisms    []string
	AllowInsecureAuth bool // offer AUTH before TLS

	// QualifyDomain, when set, completes a MAIL FROM or RCPT TO address
	// without a domain ("root") to "root@QualifyDomain", as a local
	// submission (sendmail -bs) is allowed to send them; otherwise such
	// an address is refused (RFC 5321 4.1.2; "postmaster" excepted).
	QualifyDomain string

	MaxMessageSize    int64 // SIZE (RFC 1870); default 50 MiB
	MaxRecipients     int   // accepted RCPTs per transaction; default 100, then 452 4.5.3
	MaxLineLength     int   // command line bound including CRLF; default 2048 (RFC 5321 4.5.3.1.4: at least 512)
	MaxDataLineLength int   // DATA line bound including CRLF; default 64 KiB (RFC 5321 4.5.3.1.6 asks for 1000)
	MaxAuthLineLength int   // SASL response line bound; default 12288 (RFC 4954 4)

	ReadTimeout         time.Duration // per command; default 5 min (RFC 5321 4.5.3.2)
	DataTimeout         time.Duration // per read in DATA/BDAT; default 10 min (RFC 5321 4.5.3.2.6)
	WriteTimeout        time.Duration // per flush of replies; default 1 min
	TLSHandshakeTimeout time.Duration // default 30 s
	ProxyHeaderTimeout  time.Duration // default 10 s

	// MaxSessionTime bounds a whole connection (0: no bound); reads past
	// it fail like a timeout (421 4.4.2).
	MaxSessionTime time.Duration

	MaxErrors   int // failed commands before "421 4.7.0"; default 10
	MaxCommands int // commands per session before "421 4.7.0"; default 10000

	GreetDelay time.Duration // wait before the banner, watching for early talkers

	// MaxConnections is checked when a connection is accepted;
	// MaxConnectionsPerIP after the PROXY header (so that it counts the
	// real client) and, on an ImplicitTLS port, after the handshake (so
	// that the client can read the refusal); not again after XCLIENT.
	// Over either: 421 4.7.0 (over MaxConnections on an ImplicitTLS port:
	// closed without a reply).
	MaxConnections      int
	MaxConnectionsPerIP int

	// QuietSessions: a plain TCP connection accepted while fewer than
	// this many sessions are open is served quietly: out of the runtime's
	// network poller, waiting for its client in the kernel on its own
	// socket, until a wait outlasts QuietWait (quiet.go). 0: the default
	// set by SetQuietDefault (2, and 2 ms); negative: never.
	QuietSessions int
	QuietWait     time.Duration

	// ProxyProtocol requires a PROXY v1/v2 header on every connection,
	// accepted only from TrustedProxies; others are dropped.
	ProxyProtocol  bool
	TrustedProxies []netip.Prefix

	// XCLIENTFrom: clients allowed to use Postfix's XCLIENT; it is
	// advertised only to them.
	XCLIENTFrom []netip.Prefix

	EnableDSN        bool
	EnableSMTPUTF8   bool
	EnableChunking   bool
	EnableRequireTLS bool
	Enable8BitMIME   bool
	EnableBinaryMIME bool // needs EnableChunking (RFC 3030)

	BareLineEndings BareLFPolicy

	// SoftBounce, when it returns true, sends every 5xx reply as 4xx
	// (class digit of the enhanced code too), as Postfix's soft_bounce:
	// nothing is refused for good while an administrator tests.
	SoftBounce func() bool

	Logger *slog.Logger
}

// DefaultOptions returns Options with the common extensions on: DSN,
// SMTPUTF8, CHUNKING, REQUIRETLS, 8BITMIME and BINARYMIME.
func DefaultOptions() Options {
	return Options{
		EnableDSN:        true,
		EnableSMTPUTF8:   true,
		EnableChunking:   true,
		EnableRequireTLS: true,
		Enable8BitMIME:   true,
		EnableBinaryMIME: true,
	}
}

const (
	defaultMaxMessageSize = 50 << 20
	// hugeLine: a command line this long without an LF ends the connection
	// rather than being skipped.
	hugeLine = 1 << 20
	// hostileLine: a command line longer than this, even when it ends,
	// closes the connection.
	hostileLine = 64 << 10
)

func (o Options) withDefaults() Options {
	if o.Hostname == "" {
		o.Hostname = "localhost"
	}
	if o.Banner == "" {
		o.Banner = o.Hostname + " ESMTP Postern"
		if o.LMTP {
			o.Banner = o.Hostname + " LMTP Postern"
		}
	}
	if o.AuthMechanisms == nil {
		o.AuthMechanisms = []string{"PLAIN", "LOGIN"}
	}
	if o.MaxMessageSize <= 0 {
		o.MaxMessageSize = defaultMaxMessageSize
	}
	if o.MaxRecipients <= 0 {
		o.MaxRecipients = 100
	}
	if o.MaxLineLength <= 0 {
		o.MaxLineLength = 2048
	}
	if o.MaxLineLength < 512 {
		o.MaxLineLength = 512
	}
	if o.MaxDataLineLength <= 0 {
		o.MaxDataLineLength = 64 << 10
	}
	if o.MaxDataLineLength < 1000 {
		o.MaxDataLineLength = 1000
	}
	if o.MaxAuthLineLength <= 0 {
		o.MaxAuthLineLength = 12288
	}
	if o.ReadTimeout <= 0 {
		o.ReadTimeout = 5 * time.Minute
	}
	if o.DataTimeout <= 0 {
		o.DataTimeout = 10 * time.Minute
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = time.Minute
	}
	if o.TLSHandshakeTimeout <= 0 {
		o.TLSHandshakeTimeout = 30 * time.Second
	}
	if o.ProxyHeaderTimeout <= 0 {
		o.ProxyHeaderTimeout = 10 * time.Second
	}
	if o.MaxErrors <= 0 {
		o.MaxErrors = 10
	}
	if o.MaxCommands <= 0 {
		o.MaxCommands = 10000
	}
	if !o.EnableChunking {
		o.EnableBinaryMIME = false // RFC 3030 2: BINARYMIME requires CHUNKING
	}
	if o.QuietSessions == 0 {
		o.QuietSessions, o.QuietWait = quietDefault()
	}
	if o.QuietWait <= 0 {
		o.QuietWait = DefaultQuietWait
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// drainLimit bounds how many raw bytes of one message the engine reads
// (including what it discards after refusing the message) before it gives
// up on the connection.
func (o *Options) drainLimit() int64 {
	return 2*o.MaxMessageSize + 1<<20
}

func inPrefixes(a netip.Addr, ps []netip.Prefix) bool {
	a = a.Unmap()
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
