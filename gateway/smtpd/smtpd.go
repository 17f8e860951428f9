// Package smtpd is Postern's own ESMTP server engine: the RFC 5321 state
// machine and its extensions (PIPELINING, SIZE, 8BITMIME, BINARYMIME,
// CHUNKING, DSN, SMTPUTF8, ENHANCEDSTATUSCODES, STARTTLS, AUTH, REQUIRETLS),
// Postfix's XCLIENT, the PROXY protocol, and the defences a perimeter MX
// needs (bounded input everywhere, SMTP smuggling, STARTTLS command
// injection, early talkers, pipelining abuse).
//
// The package owns the protocol only. It parses, enforces limits and the
// command sequence, and asks a Backend/Session for every policy decision:
// who may connect, which HELO, sender and recipients are acceptable, and
// what happens to the message. Capabilities are derived from the Options and
// from the interfaces the session implements, never from a hand-kept list.
//
// See docs/smtp-protocol.md for what is supported, the limits and the RFCs.
package smtpd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
)

// Reply is one SMTP reply: a three-digit code, an optional RFC 3463
// enhanced status code and human-readable text. A "\n" in Text separates the
// lines of a multi-line reply. A *Reply is also an error, so that policy code
// can return it through ordinary error paths.
type Reply struct {
	Code     int
	Enhanced string // "5.7.1", or "" to let the engine pick a default for the code class
	Text     string
}

// NewReply builds a reply; format and args work as in fmt.Sprintf (with no
// args, format is used verbatim so a "%" in it is safe).
func NewReply(code int, enhanced, format string, args ...any) *Reply {
	text := format
	if len(args) > 0 {
		text = fmt.Sprintf(format, args...)
	}
	return &Reply{Code: code, Enhanced: enhanced, Text: text}
}

// Error renders the reply on one line, as it would be sent ("550 5.7.1 text").
func (r *Reply) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%03d", r.Code)
	if r.Enhanced != "" {
		b.WriteByte(' ')
		b.WriteString(r.Enhanced)
	}
	if r.Text != "" {
		b.WriteByte(' ')
		b.WriteString(strings.ReplaceAll(r.Text, "\n", " "))
	}
	return b.String()
}

// temporary reports whether the reply is a 4xx.
func (r *Reply) temporary() bool { return r.Code >= 400 && r.Code < 500 }

// failure reports whether the reply is a 4xx or 5xx.
func (r *Reply) failure() bool { return r.Code >= 400 }

// ConnInfo is what the engine knows about one connection. The engine fills it
// in; the session reads it and may use Values for its own state.
type ConnInfo struct {
	ID         string
	Listener   string         // listener name from the config ("smtp", "submission", ...)
	RemoteAddr netip.AddrPort // the client, after PROXY/XCLIENT
	LocalAddr  netip.AddrPort
	RemoteName string         // XCLIENT NAME, else "" (reverse DNS is the filters' job)
	ProxiedBy  netip.AddrPort // the trusted front end that sent PROXY/XCLIENT, zero if none
	TLS        *tls.ConnectionState
	HELO       string
	ESMTP      bool
	AuthUser   string // after successful AUTH (or XCLIENT LOGIN)
	AuthMech   string // the SASL mechanism of that AUTH ("PLAIN", "LOGIN"); "" for XCLIENT LOGIN
	// PeerUID is the uid of the process at the other end of a Unix
	// socket (SO_PEERCRED), -1 for network clients or when unknown.
	PeerUID int

	// EarlyTalker: the client sent bytes before the banner (postscreen's
	// pregreet test); only measured when Options.GreetDelay > 0.
	EarlyTalker bool
	// PipeliningViolation: the client sent a command before it had the
	// previous reply where RFC 2920 does not allow that (before the EHLO
	// reply, after HELO, after a command that must end a group such as
	// DATA, EHLO, NOOP, QUIT, STARTTLS, AUTH).
	PipeliningViolation bool
	// BareLF: the current (or last) message had a bare LF or bare CR line
	// ending. Set as soon as the reader meets one, so a session in Data
	// sees it once it has read to EOF; reset when the next message starts.
	BareLF bool

	Values map[string]string // free slot for the session/policy layer
}

// Backend makes a Session for each connection.
type Backend interface {
	// Connect runs before the banner (after the PROXY header, after
	// GreetDelay). A non-nil reply refuses: a 4xx is sent and the
	// connection closed; a 5xx (554) is sent as the banner and every
	// command but QUIT is then answered 503 5.5.1 (RFC 5321 3.1). The
	// session may be nil when the reply refuses.
	Connect(ctx context.Context, c *ConnInfo) (Session, *Reply)
}

// Session makes the policy decisions of one SMTP session. A nil reply
// accepts. A 421 reply from any method is sent and closes the connection.
type Session interface {
	// Hello runs after HELO/EHLO (c.HELO and c.ESMTP are set).
	Hello(ctx context.Context, c *ConnInfo) *Reply
	// Mail runs for MAIL FROM; from is "" for the null sender.
	Mail(ctx context.Context, c *ConnInfo, from string, p *MailParams) *Reply
	// Rcpt runs for RCPT TO.
	Rcpt(ctx context.Context, c *ConnInfo, to string, p *RcptParams) *Reply
	// Data gets the message: DATA dot-unstuffed, or BDAT chunks
	// concatenated, as one reader limited to MaxMessageSize (reading past
	// it yields ErrTooBig; the engine answers 552 5.3.4). The session must
	// read to EOF or return a reply (the engine drains and discards what
	// is left). A nil reply means 250 2.0.0 Ok.
	Data(ctx context.Context, c *ConnInfo, r io.Reader) *Reply
	// Reset runs for RSET, for HELO/EHLO/STARTTLS after a transaction
	// began, and before MAIL after a finished transaction.
	Reset(ctx context.Context, c *ConnInfo)
	// Close runs once when the session ends (connection closed, or
	// replaced by XCLIENT).
	Close(ctx context.Context, c *ConnInfo)
}

// LMTPSession is implemented by sessions that deliver recipient by
// recipient: under Options.LMTP the engine calls DataLMTP instead of Data,
// with the same reader and duties, and answers each recipient accepted in
// the transaction, in RCPT order, with the reply at its index (nil: 250
// 2.0.0 Ok; missing: 451 4.3.0, logged as the session's error; RFC 2033
// 4.2).
type LMTPSession interface {
	DataLMTP(ctx context.Context, c *ConnInfo, r io.Reader) []*Reply
}

// Replied is implemented by sessions with work to finish after a message's
// reply: Replied runs once per DATA or BDAT transaction whose message
// reached Session.Data, after the reply was handed to the connection
// (flushed, unless the client has pipelined more commands) and before the
// next command is read; also when the connection failed meanwhile. The
// session does there what need not delay the client's 250 (the Postern
// gateway writes the Maildir files its delivery journal already holds).
type Replied interface {
	Replied(ctx context.Context, c *ConnInfo)
}

// AuthSession is implemented by sessions that check credentials. The engine
// runs the SASL exchanges itself (PLAIN, RFC 4616, and LOGIN); AUTH is
// offered only when the session implements this interface.
type AuthSession interface {
	// Auth checks one set of credentials; identity is the SASL
	// authorization identity ("" when not given). A nil reply is 235.
	Auth(ctx context.Context, c *ConnInfo, mechanism, identity, username, password string) *Reply
}

// MailParams are the ESMTP parameters of MAIL FROM.
type MailParams struct {
	Size       int64  // SIZE= (RFC 1870), 0 when not given
	Body       string // "", "7BIT", "8BITMIME", "BINARYMIME"
	SMTPUTF8   bool   // RFC 6531
	Ret        string // DSN RET=: "", "FULL", "HDRS" (RFC 3461)
	EnvID      string // DSN ENVID=, xtext-decoded
	Auth       string // AUTH= (RFC 4954 5), xtext-decoded; "<>" when given empty
	RequireTLS bool   // RFC 8689
}

// RcptParams are the ESMTP parameters of RCPT TO.
type RcptParams struct {
	Notify []string // DSN NOTIFY=: ["NEVER"] or some of SUCCESS, FAILURE, DELAY
	ORcpt  string   // DSN ORCPT=, "addr-type;address" with the address xtext-decoded
}

// Errors the message reader handed to Session.Data may return. The engine
// answers them itself whatever the session replies.
var (
	// ErrTooBig: the message is larger than Options.MaxMessageSize (552 5.3.4).
	ErrTooBig = errors.New("smtpd: message exceeds the size limit")
	// ErrBareLineEnding: a bare LF or CR in the message while
	// Options.BareLineEndings is BareLFReject (550 5.5.2).
	ErrBareLineEnding = errors.New("smtpd: bare LF or CR in message")
	// ErrLineTooLong: a DATA line longer than Options.MaxDataLineLength (500 5.5.2).
	ErrLineTooLong = errors.New("smtpd: message line too long")
	// ErrTransactionAborted: the client ended a BDAT transaction with
	// RSET, QUIT, HELO or EHLO before BDAT LAST.
	ErrTransactionAborted = errors.New("smtpd: transaction aborted by the client")
)

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("smtpd: server closed")
