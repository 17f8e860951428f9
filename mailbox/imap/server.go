// Package imap is Postern's IMAP server: IMAP4rev1 (RFC 3501) with IDLE,
// NAMESPACE, UNSELECT, UIDPLUS, MOVE, ENABLE, ID, LITERAL+, CHILDREN,
// SPECIAL-USE, SASL-IR, CONDSTORE/QRESYNC, ESEARCH, SEARCHRES, SORT,
// THREAD, QUOTA, LIST-EXTENDED, LIST-STATUS, BINARY, STATUS=SIZE,
// MULTIAPPEND, APPENDLIMIT, COMPRESS=DEFLATE, OBJECTID and SAVEDATE
// (objectid.go), PREVIEW (preview.go) and REPLACE, over Maildir++
// mailboxes; and IMAP4rev2 (RFC 9051) for the sessions that enable it
// (rev2.go), and UTF-8 mailbox names with UTF8=ACCEPT (RFC 6855). ACL
// (RFC 4314, cmd_acl.go) keeps Courier's courierimapacl files
// (mailbox/acl), and other users' folders shared with ACLs appear
// under "#shared.OWNER." with the rights checked at each command
// (shared.go).
//
// It owns the whole protocol layer: the command reader (synchronizing and
// non-synchronizing literals, APPEND's messages streamed to disk), the table
// of commands from which the CAPABILITY list is computed, the response
// encoder, the DEFLATE layer of COMPRESS (inflating with internal/inflate,
// deflating with compress/flate), and each session's view of its selected
// mailbox (sequence numbers, flags, \Recent) with the untagged updates that
// keep the view in step with other sessions and other processes, and each
// folder's index (postern-imapindex: flags, sizes, dates, mod-sequences,
// expunged UIDs, header fields; see index.go) with its text index for
// SEARCH BODY and TEXT (postern-imaptext, package textindex; see
// search_text.go). Mail storage is mailbox/maildir's; message structure is
// mailbox/mime's; who may log in is auth's.
package imap

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"postern/internal/netserve"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"postern/auth"
	"postern/mailbox/maildir"
	"postern/mailbox/proxy"
)

// Options configure a Server. cmd/postern builds them from the configuration.
type Options struct {
	Hostname  string
	TLSConfig *tls.Config // enables STARTTLS when non-nil
	Auth      *auth.Service
	Logger    *slog.Logger
	// AllowInsecureAuth permits LOGIN/AUTHENTICATE before TLS. When false the
	// server advertises LOGINDISABLED until STARTTLS (RFC 3501 6.2.3).
	AllowInsecureAuth bool
	// CourierNamespace puts personal folders under "INBOX." as Courier does;
	// otherwise they sit at the top level beside INBOX. The delimiter is "."
	// in both.
	CourierNamespace bool
	// SharedRegistry is the file listing which users share which folders
	// (shared.go), so that LIST finds shared folders without scanning
	// every account. Empty: kept in memory only, lost at restart (the ACL
	// files themselves stay in the Maildirs).
	SharedRegistry string
	// IdleTimeout is the autologout timer of an authenticated session
	// (RFC 3501 5.4: at least 30 minutes). Default 30 minutes.
	IdleTimeout time.Duration
	// MaxLiteralSize bounds APPEND's message. Default 64 MiB.
	MaxLiteralSize int64
	// SMAP, when set, offers Courier's SMAP inside IMAP connections, as
	// Courier's SMAP_CAPABILITY does (smap.go).
	SMAP SMAPHandler
	// Proxy, when enabled, sends each account whose mailhost names another
	// host there after its login (Courier's IMAP_PROXY; proxy.go).
	Proxy *proxy.Config
	// JunkLearn, when set, is told of each message the user files into
	// their Junk folder with COPY or MOVE (spam) or out of it into a
	// folder other than Trash (ham), as Dovecot's imapsieve tells rspamd
	// (junklearn.go). It is called from one worker per server, never
	// while a command waits; msg is not used after it returns. nil: off.
	JunkLearn func(ctx context.Context, login string, msg []byte, spam bool) error
	// Purger, when set, applies the retention rules (imapemptytrash,
	// Courier's IMAP_EMPTYTRASH) to an account's Maildir at its login.
	Purger *maildir.Purger
	// ConnLimits, when set, bounds the sessions (Courier's MAXDAEMONS
	// and MAXPERIP, Dovecot's mail_max_userip_connections); it is read at
	// each connection and each login, so a reload applies to the next.
	// nil: no limits.
	ConnLimits func() netserve.Limits

	// testUnauthTimeout shortens the pre-login autologout in tests;
	// testIdlePoll the IDLE rescan interval; testNoWatch turns inotify off.
	testUnauthTimeout time.Duration
	testIdlePoll      time.Duration
	testNoWatch       bool
}

// Timeouts and limits that are not configurable.
const (
	defaultIdleTimeout    = 30 * time.Minute
	defaultMaxLiteralSize = 64 << 20
	unauthTimeout         = 60 * time.Second
	writeTimeout          = 2 * time.Minute
	tlsHandshakeTimeout   = 30 * time.Second
	maxBadCommands        = 10 // consecutive BADs before BYE
	maxAuthFailures       = 5  // failed logins per connection before BYE
	idlePollInterval      = 30 * time.Second
)

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("imap: server closed")

// Server accepts IMAP connections and runs one session per connection.
type Server struct {
	opt      Options
	log      *slog.Logger
	commands map[string]*commandSpec
	hub      *folderHub
	// deflaters are the response compressors of COMPRESS sessions, lent
	// out from a write until the session has been quiet for deflateRelease
	// (see cmd_compress.go).
	deflaters      *sync.Pool
	deflateRelease time.Duration
	shared         *sharedRegistry
	// junk learns from the user's filing into and out of Junk; nil
	// without Options.JunkLearn.
	junk *junkLearner
	// unauthTimeout is the autologout before login; a field so that tests
	// need not wait a minute.
	unauthTimeout time.Duration
	idlePoll      time.Duration

	group netserve.Group[*session]
	done  <-chan struct{} // closed by Shutdown

	nextID        atomic.Uint64
	authFailures  atomic.Uint64
	proxied       atomic.Uint64
	proxyFailures atomic.Uint64
}

// NewServer returns a server; it does not listen until Serve.
func NewServer(opt Options) *Server {
	if opt.IdleTimeout <= 0 {
		opt.IdleTimeout = defaultIdleTimeout
	}
	if opt.MaxLiteralSize <= 0 {
		opt.MaxLiteralSize = defaultMaxLiteralSize
	}
	if opt.Hostname == "" {
		opt.Hostname = "localhost"
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		opt:       opt,
		log:       opt.Logger,
		commands:  newCommandTable(),
		deflaters: newDeflaterPool(),
		shared:    &sharedRegistry{path: opt.SharedRegistry},

		unauthTimeout:  unauthTimeout,
		idlePoll:       idlePollInterval,
		deflateRelease: deflateRelease,
	}
	s.group.Name, s.group.Logger, s.group.Closed = "imap", opt.Logger, ErrServerClosed
	s.group.Limits, s.group.Refusal = opt.ConnLimits, refusal
	s.done = s.group.Done()
	if opt.testUnauthTimeout > 0 {
		s.unauthTimeout = opt.testUnauthTimeout
	}
	if opt.testIdlePoll > 0 {
		s.idlePoll = opt.testIdlePoll
	}
	s.hub = newFolderHub(s.log)
	if opt.JunkLearn != nil {
		s.junk = newJunkLearner(opt.JunkLearn, s.log)
	}
	if opt.testNoWatch {
		s.hub.watchErr = errors.New("watching disabled for a test")
	}
	return s
}

// Serve accepts connections on l until Shutdown. A listener already wrapped
// with tls.NewListener serves implicit TLS; STARTTLS is then not offered.
func (s *Server) Serve(l net.Listener) error {
	return s.group.Serve(l, s.start)
}

// ServeTLS serves implicit TLS (imaps, RFC 8314) on l, wrapping it with
// Options.TLSConfig.
func (s *Server) ServeTLS(l net.Listener) error {
	if s.opt.TLSConfig == nil {
		return fmt.Errorf("imap: ServeTLS on %s: no TLS configuration", l.Addr())
	}
	return s.group.ServeTLS(l, s.opt.TLSConfig, s.start)
}

// start makes the session of a connection Serve accepted.
func (s *Server) start(c net.Conn) (*session, func()) {
	_, isTLS := c.(*tls.Conn)
	sess := s.newSession(c, isTLS)
	return sess, sess.run
}

// refusal turns away a connection over the limits before the greeting
// (RFC 5530's UNAVAILABLE: the server cannot serve it now).
func refusal(why string) string { return "* BYE [UNAVAILABLE] " + why + "\r\n" }

// Who lists the sessions open now, oldest first (postern who).
func (s *Server) Who() []netserve.SessionInfo { return netserve.Who(&s.group) }

// Kick ends the sessions m selects (postern kick): each says "* BYE" at
// its next command boundary, or at once when it is waiting for a command
// or idling; one still busy after a grace period is cut.
func (s *Server) Kick(m netserve.Match) []netserve.SessionInfo {
	return netserve.Kick(&s.group, m, (*session).interruptWait, (*session).closeConn)
}

// Shutdown stops accepting connections, asks every session to end with
// "* BYE" at its next command boundary, and waits for them or for ctx.
// Sessions still running when ctx ends are closed hard. Messages queued
// for JunkLearn are learned until ctx ends, the rest dropped.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.group.Shutdown(ctx, (*session).interruptWait, (*session).closeConn)
	if s.junk != nil {
		// After the sessions, which may still have queued some; before
		// the hub, whose Maildirs the worker reads.
		s.junk.close(ctx)
	}
	s.hub.close()
	return err
}

// Stats are counters for monitoring; cmd/postern exports them.
type Stats struct {
	SessionsActive int
	SessionsTotal  uint64
	AuthFailures   uint64
	// ProxiedSessions counts logins relayed to another mailbox host,
	// ProxyFailures those that could not be (backend unreachable or
	// refusing).
	ProxiedSessions uint64
	ProxyFailures   uint64
	// ConnectionsRefused counts connections turned away over the total
	// or per-address limit, LoginsRefused logins over the per-user and
	// address one.
	ConnectionsRefused uint64
	LoginsRefused      uint64
	Commands           map[string]uint64 // by command name, e.g. "UID FETCH"
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	active := s.group.Len()
	st := Stats{
		SessionsActive:     active,
		SessionsTotal:      s.group.Started(),
		AuthFailures:       s.authFailures.Load(),
		ProxiedSessions:    s.proxied.Load(),
		ProxyFailures:      s.proxyFailures.Load(),
		ConnectionsRefused: s.group.RefusedConnections(),
		LoginsRefused:      s.group.RefusedLogins(),
		Commands:           make(map[string]uint64),
	}
	for name, c := range s.commands {
		if n := c.count.Load(); n > 0 {
			st.Commands[name] = n
		}
	}
	return st
}

// capabilities computes the CAPABILITY list for a session in its current
// state from the command table: a capability is advertised because a
// registered command or behaviour implements it, never from a fixed list.
func (s *Server) capabilities(sess *session) []string {
	// IMAP4rev2 (RFC 9051) beside IMAP4rev1: a client picks rev2 with
	// ENABLE (rev2.go).
	caps := []string{"IMAP4rev1", "IMAP4rev2"}
	seen := map[string]bool{}
	add := func(c string) {
		if !seen[c] {
			seen[c] = true
			caps = append(caps, c)
		}
	}
	var names []string
	for name := range s.commands {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		spec := s.commands[name]
		for _, c := range spec.caps {
			add(c)
		}
	}
	// Features of the command reader and the authentication path.
	add("LITERAL+")
	if s.opt.SMAP != nil {
		add("SMAP1")
		add("KEYWORDS")
	}
	// RFC 7889: the largest APPEND the command reader accepts.
	add("APPENDLIMIT=" + strconv.FormatInt(s.opt.MaxLiteralSize, 10))
	if sess.state == stateNotAuth {
		if s.opt.TLSConfig != nil && !sess.tls {
			add("STARTTLS")
		}
		if sess.authAllowed() {
			add("AUTH=PLAIN")
			add("SASL-IR")
		} else {
			add("LOGINDISABLED")
		}
	}
	// STARTTLS is a command but only meaningful before TLS.
	if sess.tls || s.opt.TLSConfig == nil || sess.state != stateNotAuth {
		out := caps[:0]
		for _, c := range caps {
			if c != "STARTTLS" {
				out = append(out, c)
			}
		}
		caps = out
	}
	return caps
}
