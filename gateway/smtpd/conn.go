package smtpd

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"postern/internal/proxyproto"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"postern/internal/unixpeer"
)

var (
	errLineTooLong   = errors.New("smtpd: command line too long")
	errHugeLine      = errors.New("smtpd: command line over 1 MB")
	errStopping      = errors.New("smtpd: server shutting down")
	errTooManyErrors = errors.New("smtpd: too many errors")
)

// conn is one client connection and its protocol state. Everything but the
// fields under mu belongs to the connection's goroutine.
type conn struct {
	// pooledBR is the reader taken from readerPool (see recycleBuffers).
	pooledBR *bufio.Reader

	srv *Server
	opt *Options
	log *slog.Logger
	ctx context.Context

	cancel context.CancelFunc
	raw    net.Conn

	mu       sync.Mutex
	cur      net.Conn // raw, or the TLS conn over it
	reading  bool     // waiting for a command: Shutdown may interrupt
	stopping bool     // Shutdown asked this session to end

	br      *bufio.Reader
	bw      *bufio.Writer
	timeout time.Duration // deadline for the next read from the network
	readBy  deadline      // the read deadline set last (guarded by mu)
	writeBy deadline      // the write deadline set last
	endBy   time.Time     // MaxSessionTime deadline, zero when unbounded
	lineBuf []byte

	info      ConnInfo
	sess      Session
	rejectAll bool // Connect refused with 5xx: 503 to all but QUIT
	xclientOK bool
	greeted   bool
	ipCounted bool
	countedIP netip.Addr

	inTx       bool
	mailParams *MailParams
	rcpts      int
	overshoot  int // 452 4.5.3 replies this transaction (overshootReply)
	rcptTried  bool
	needReset  bool

	errors     int
	commands   int
	closeAfter bool  // a 421 was sent
	writeErr   error // replies can no longer be sent

	pendingLine    string // a command the BDAT reader read for the main loop
	hasPendingLine bool
}

// connReader is the bufio.Reader's source: it renews the read deadline
// before every read and refuses to block once Shutdown has asked an idle
// session to stop.
type connReader struct {
	c   *conn
	src net.Conn
}

func (r connReader) Read(p []byte) (int, error) {
	c := r.c
	c.mu.Lock()
	if c.reading && c.stopping {
		c.mu.Unlock()
		return 0, errStopping
	}
	d := time.Now().Add(c.timeout)
	if !c.endBy.IsZero() && c.endBy.Before(d) {
		d = c.endBy
	}
	c.readBy.renew(d, c.timeout, r.src.SetReadDeadline)
	c.mu.Unlock()
	return r.src.Read(p)
}

// connWriter is the bufio.Writer's sink: every write, including the ones
// bufio makes on its own when its buffer fills, gets a fresh deadline.
type connWriter struct {
	c   *conn
	dst net.Conn
}

func (w connWriter) Write(p []byte) (int, error) {
	w.c.writeBy.renew(time.Now().Add(w.c.opt.WriteTimeout), w.c.opt.WriteTimeout, w.dst.SetWriteDeadline)
	return w.dst.Write(p)
}

// deadline is the last deadline set on one direction of a connection. A
// renewal that would move it later by less than a little of the timeout
// (at most a second) is skipped: every renewal updates a runtime timer, and
// at one per command and reply, with the netpoller woken to take the new
// timer into account, that cost more than the command itself. A timeout
// thus ends a little early (by up to that second), never late.
type deadline struct{ at time.Time }

func (d *deadline) renew(want time.Time, timeout time.Duration, set func(time.Time) error) {
	slack := min(time.Second, timeout/8)
	if !d.at.IsZero() && !d.at.After(want) && want.Sub(d.at) < slack {
		return
	}
	if set(want) == nil {
		d.at = want
	}
}

// forget makes the next renewal set the deadline (it was changed directly).
func (d *deadline) forget() { d.at = time.Time{} }

// prefixConn is a net.Conn whose reads come through a bufio.Reader that
// may already hold bytes (the first TLS bytes after a PROXY header).
type prefixConn struct {
	net.Conn
	r io.Reader
}

func (p prefixConn) Read(b []byte) (int, error) { return p.r.Read(b) }

func addrPort(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}

func (s *Server) newConn(nc net.Conn) *conn {
	// A connection accepted while few sessions are open is served
	// quietly (quiet.go).
	if s.opt.QuietSessions > 0 && s.live.Load() < int64(s.opt.QuietSessions) {
		if q := makeQuiet(nc, s.opt.QuietWait, &s.stats.quietReads); q != nil {
			nc = q
		}
	}
	ctx, cancel := context.WithCancel(s.baseCtx)
	// Unique per server: start second, then a counter.
	id := fmt.Sprintf("%08x%08x", uint32(time.Now().Unix()), uint32(s.nextID.Add(1)))
	c := &conn{
		srv:     s,
		opt:     &s.opt,
		ctx:     ctx,
		cancel:  cancel,
		raw:     nc,
		cur:     nc,
		timeout: s.opt.ReadTimeout,
		info: ConnInfo{
			ID:         id,
			Listener:   s.opt.Listener,
			RemoteAddr: addrPort(nc.RemoteAddr()),
			LocalAddr:  addrPort(nc.LocalAddr()),
			PeerUID:    peerUID(nc),
			Values:     map[string]string{},
		},
	}
	if s.opt.MaxSessionTime > 0 {
		c.endBy = time.Now().Add(s.opt.MaxSessionTime)
	}
	c.br = readerPool.Get().(*bufio.Reader)
	c.br.Reset(connReader{c, nc})
	c.pooledBR = c.br
	c.bw = writerPool.Get().(*bufio.Writer)
	c.bw.Reset(connWriter{c, nc})
	c.log = s.opt.Logger.With("conn", id, "remote", c.info.RemoteAddr.String())
	return c
}

func (c *conn) nc() net.Conn {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur
}

// requestShutdown is called by Server.Shutdown (with s.mu held).
func (c *conn) requestShutdown() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopping = true
	if c.reading {
		c.cur.SetReadDeadline(time.Now())
		c.readBy.forget()
	}
}

// refuse answers a connection that is over a limit and closes it.
func (c *conn) refuse(r *Reply) {
	c.writeReply(r)
	c.flush()
	c.raw.Close()
	c.cancel()
}

// serve runs the whole session.
func (c *conn) serve() {
	defer c.finish()
	defer c.recoverPanic()
	c.log.Debug("smtpd: connect")
	if !c.setup() {
		return
	}
	c.loop()
}

func (c *conn) recoverPanic() {
	if p := recover(); p != nil {
		c.log.Error("smtpd: panic in session", "panic", p, "stack", string(debug.Stack()))
		c.writeReply(NewReply(421, "4.3.0", "%s Error: internal server error", c.opt.Hostname))
		c.flush()
	}
}

// finish ends the session: the session's Close, the per-IP count, the
// connection.
func (c *conn) finish() {
	c.log.Debug("smtpd: disconnect", "commands", c.commands, "errors", c.errors)
	c.closeSession()
	if c.ipCounted {
		c.srv.releaseIP(c.countedIP)
	}
	c.nc().Close()
	c.raw.Close()
	c.cancel()
	c.recycleBuffers()
}

// The 4 KiB buffers of finished sessions are used again: a connection per
// message is the usual SMTP pattern, and these were most of a session's
// allocations.
var (
	readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4096) }}
	writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4096) }}
)

// recycleBuffers returns the session's buffers to their pools. A reader
// that a TLS layer read through (STARTTLS, implicit TLS) is left to the
// garbage collector: the TLS connection may still hold it.
func (c *conn) recycleBuffers() {
	if c.br == c.pooledBR && c.br != nil {
		c.br.Reset(nil)
		readerPool.Put(c.br)
	}
	if c.bw != nil {
		c.bw.Reset(nil)
		writerPool.Put(c.bw)
	}
	c.br, c.bw, c.pooledBR = nil, nil, nil
}

// closeSession calls Session.Close once, shielded from panics and from the
// connection's cancelled context.
func (c *conn) closeSession() {
	if c.sess == nil {
		return
	}
	sess := c.sess
	c.sess = nil
	defer func() {
		if p := recover(); p != nil {
			c.log.Error("smtpd: panic in Session.Close", "panic", p, "stack", string(debug.Stack()))
		}
	}()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.ctx), 30*time.Second)
	defer cancel()
	sess.Close(ctx, &c.info)
}

// setup does what comes before the first command: PROXY header, limits,
// implicit TLS, greet delay, Connect and the banner.
func (c *conn) setup() bool {
	if c.opt.ProxyProtocol {
		if !inPrefixes(c.info.RemoteAddr.Addr(), c.opt.TrustedProxies) {
			c.srv.stats.refused.Add(1)
			c.log.Warn("smtpd: PROXY header from an untrusted peer; dropped")
			return false
		}
		c.timeout = c.opt.ProxyHeaderTimeout
		h, err := proxyproto.ReadHeader(c.br)
		c.timeout = c.opt.ReadTimeout
		if err != nil {
			c.log.Warn("smtpd: bad PROXY header; dropped", "err", err)
			return false
		}
		if !h.Local {
			c.info.ProxiedBy = c.info.RemoteAddr
			c.info.RemoteAddr, c.info.LocalAddr = h.Src, h.Dst
			c.log = c.log.With("client", h.Src.String())
		}
	}
	// On a TLS-first port the handshake comes first, so that a refusal
	// below can be read by the client.
	if c.opt.ImplicitTLS {
		if c.opt.TLSConfig == nil {
			c.log.Error("smtpd: ImplicitTLS without TLSConfig")
			return false
		}
		tc := tls.Server(prefixConn{c.raw, c.br}, c.opt.TLSConfig)
		if !c.handshake(tc) {
			return false
		}
		c.switchTo(tc)
	}

	ip := c.info.RemoteAddr.Addr()
	if !c.srv.acquireIP(ip) {
		c.srv.stats.refused.Add(1)
		c.writeReply(NewReply(421, "4.7.0", "%s Error: too many connections from %s", c.opt.Hostname, ip))
		c.flush()
		return false
	}
	c.ipCounted, c.countedIP = true, ip

	if c.opt.GreetDelay > 0 {
		// postscreen's pregreet test: a client that talks before the
		// banner is not waiting for it (RFC 5321 4.3.1).
		c.timeout = c.opt.GreetDelay
		_, err := c.br.Peek(1)
		c.timeout = c.opt.ReadTimeout
		var ne net.Error
		switch {
		case err == nil:
			c.info.EarlyTalker = true
			c.log.Info("smtpd: early talker")
		case errors.As(err, &ne) && ne.Timeout():
		default:
			return false
		}
	}
	c.xclientOK = inPrefixes(c.info.RemoteAddr.Addr(), c.opt.XCLIENTFrom)
	return c.connect()
}

// connect asks the backend for a session and sends the banner (or the
// refusal).
func (c *conn) connect() bool {
	sess, rep := c.srv.backend.Connect(c.ctx, &c.info)
	c.sess, c.rejectAll = sess, false
	switch {
	case rep != nil && rep.failure():
		if rep.temporary() {
			c.writeReply(rep)
			c.flush()
			return false
		}
		// RFC 5321 3.1: after a 554 greeting the server waits for QUIT and
		// answers 503 to everything else.
		c.rejectAll = true
		c.writeReply(rep)
		c.errors = 0
	case sess == nil:
		c.log.Error("smtpd: Backend.Connect returned neither a session nor a refusal")
		c.writeReply(NewReply(421, "4.3.0", "%s Error: internal server error", c.opt.Hostname))
		c.flush()
		return false
	default:
		c.writeLines(220, "", c.opt.Banner)
	}
	return c.flush() == nil
}

func (c *conn) handshake(tc *tls.Conn) bool {
	c.timeout = c.opt.TLSHandshakeTimeout
	c.raw.SetDeadline(time.Now().Add(c.opt.TLSHandshakeTimeout))
	err := tc.HandshakeContext(c.ctx)
	c.raw.SetDeadline(time.Time{})
	c.mu.Lock()
	c.readBy.forget()
	c.mu.Unlock()
	c.writeBy.forget()
	c.timeout = c.opt.ReadTimeout
	if err != nil {
		c.log.Info("smtpd: TLS handshake failed", "err", err)
		return false
	}
	st := tc.ConnectionState()
	if st.NegotiatedProtocol != "" {
		// SMTP is offered by no ALPN name (RFC 7301): a protocol
		// negotiated is another service's, the ACME CA's tls-alpn-01
		// check (RFC 8737), which ends with the handshake.
		c.log.Debug("smtpd: TLS handshake for another protocol; closed", "alpn", st.NegotiatedProtocol)
		return false
	}
	c.info.TLS = &st
	return true
}

// switchTo makes tc the connection all further I/O goes through.
func (c *conn) switchTo(tc *tls.Conn) {
	c.mu.Lock()
	c.cur = tc
	c.mu.Unlock()
	c.br = bufio.NewReaderSize(connReader{c, tc}, 4096)
	c.bw.Reset(connWriter{c, tc})
}

// loop reads and runs commands until the session ends.
func (c *conn) loop() {
	for {
		if c.closeAfter || c.writeErr != nil {
			c.flush()
			return
		}
		if c.errors >= c.opt.MaxErrors {
			c.writeReply(NewReply(421, "4.7.0", "%s Error: too many errors", c.opt.Hostname))
			c.flush()
			return
		}
		line, err := c.readCommand()
		if errors.Is(err, errLineTooLong) {
			c.reply(500, "5.5.2", "Error: line too long")
			continue
		}
		if err != nil {
			c.readFailed(err)
			return
		}
		if !c.dispatch(line) {
			c.flush()
			return
		}
	}
}

// readCommand returns the next command line (without its line ending).
// Replies are flushed only when the client has nothing more in the
// pipeline (RFC 2920 3.2), so a pipelined group gets one write.
func (c *conn) readCommand() (string, error) {
	if c.hasPendingLine {
		c.hasPendingLine = false
		return c.pendingLine, nil
	}
	if c.br.Buffered() == 0 {
		if err := c.flush(); err != nil {
			return "", err
		}
	}
	c.mu.Lock()
	if c.stopping {
		c.mu.Unlock()
		return "", errStopping
	}
	c.reading = true
	c.mu.Unlock()
	c.timeout = c.opt.ReadTimeout
	line, err := c.readLine(max(c.opt.MaxLineLength, c.opt.MaxAuthLineLength))
	c.mu.Lock()
	c.reading = false
	stopping := c.stopping
	c.mu.Unlock()
	if stopping && (err == nil || isTimeout(err)) {
		return "", errStopping
	}
	return line, err
}

// readLine reads one line of at most max bytes (line ending included),
// never buffering more than max: the rest of a longer line is skipped
// (errLineTooLong), and a line over 64 KiB ends the connection (errHugeLine,
// at once when it passes 1 MB without an end).
func (c *conn) readLine(max int) (string, error) {
	c.lineBuf = c.lineBuf[:0]
	tooLong := false
	total := 0
	for {
		frag, err := c.br.ReadSlice('\n')
		total += len(frag)
		if !tooLong {
			if len(c.lineBuf)+len(frag) > max {
				tooLong = true
				c.lineBuf = c.lineBuf[:0]
			} else {
				c.lineBuf = append(c.lineBuf, frag...)
			}
		}
		if err == nil {
			break
		}
		if err == bufio.ErrBufferFull {
			if total > hugeLine {
				return "", errHugeLine
			}
			continue
		}
		return "", err
	}
	if tooLong {
		// A command line a little over the limit is a confused client (500,
		// go on, RFC 5321 4.5.3.1.4); one of tens of kilobytes is an attack
		// or garbage, and the session ends.
		if total > hostileLine {
			return "", errHugeLine
		}
		return "", errLineTooLong
	}
	line := c.lineBuf
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return string(line), nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// readFailed answers a failed read, if the client is still there to hear it.
func (c *conn) readFailed(err error) {
	switch {
	case errors.Is(err, errStopping):
		c.writeReply(NewReply(421, "4.3.2", "%s Error: shutting down", c.opt.Hostname))
	case isTimeout(err):
		c.writeReply(NewReply(421, "4.4.2", "%s Error: timeout exceeded", c.opt.Hostname))
	case errors.Is(err, errHugeLine):
		c.writeReply(NewReply(500, "5.5.2", "Error: line too long"))
		c.writeReply(NewReply(421, "4.7.0", "%s Error: closing connection", c.opt.Hostname))
	case errors.Is(err, errTooManyErrors):
		c.writeReply(NewReply(421, "4.7.0", "%s Error: too many errors", c.opt.Hostname))
	case errors.Is(err, errDrainLimit):
		c.writeReply(NewReply(552, "5.3.4", "Error: message too large; closing connection"))
	default:
		c.log.Debug("smtpd: connection ended", "err", err)
		return
	}
	c.flush()
}

// reply queues a reply.
func (c *conn) reply(code int, enhanced, format string, args ...any) {
	c.writeReply(NewReply(code, enhanced, format, args...))
}

// writeReply queues r, adding the enhanced status code RFC 2034 asks for
// when r has none, and counts errors.
func (c *conn) writeReply(r *Reply) {
	if r.Code < 200 || r.Code > 599 {
		// A policy bug must not break the protocol.
		c.log.Error("smtpd: session reply with an invalid code", "code", r.Code, "text", r.Text)
		r = NewReply(451, "4.3.0", "Error: internal error")
	}
	if r.Code >= 500 && c.opt.SoftBounce != nil && c.opt.SoftBounce() {
		soft := *r
		soft.Code -= 100
		if validEnhanced(soft.Enhanced) {
			soft.Enhanced = "4" + soft.Enhanced[1:]
		}
		r = &soft
	}
	class := byte('0' + r.Code/100)
	enh := r.Enhanced
	switch {
	case class == '3':
		enh = ""
	case !validEnhanced(enh):
		enh = string(class) + ".0.0"
	case enh[0] != class:
		// RFC 3463 2: the class digit of the status code matches the
		// reply code's.
		enh = string(class) + enh[1:]
	}
	c.writeLines(r.Code, enh, r.Text)
	if r.Code >= 400 {
		c.errors++
		c.srv.stats.errors.Add(1)
	}
	if r.Code == 421 {
		c.closeAfter = true
	}
}

// validEnhanced checks the form class.subject.detail of RFC 3463 2.
func validEnhanced(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || len(parts[0]) != 1 || strings.IndexByte("245", parts[0][0]) < 0 {
		return false
	}
	for _, p := range parts[1:] {
		if len(p) == 0 || len(p) > 3 {
			return false
		}
		for i := 0; i < len(p); i++ {
			if p[i] < '0' || p[i] > '9' {
				return false
			}
		}
	}
	return true
}

// maxReplyText keeps a reply line within RFC 5321 4.5.3.1.5's 512 octets.
const maxReplyText = 490

// writeLines queues a (multi-line) reply; text lines are separated by "\n"
// and stripped of control characters so no reply can be split or forged.
func (c *conn) writeLines(code int, enhanced, text string) {
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		sep := byte(' ')
		if i < len(lines)-1 {
			sep = '-'
		}
		c.bw.WriteString(strconv.Itoa(code))
		c.bw.WriteByte(sep)
		if enhanced != "" {
			c.bw.WriteString(enhanced)
			if l != "" {
				c.bw.WriteByte(' ')
			}
		}
		if len(l) > maxReplyText {
			n := maxReplyText
			for n > 0 && !utf8.RuneStart(l[n]) {
				n-- // do not split a UTF-8 sequence
			}
			l = l[:n]
		}
		for j := 0; j < len(l); j++ {
			if b := l[j]; b >= 32 && b != 127 || b == '\t' {
				c.bw.WriteByte(b)
			}
		}
		c.bw.WriteString("\r\n")
	}
}

// flush sends the queued replies.
func (c *conn) flush() error {
	if c.writeErr != nil {
		return c.writeErr
	}
	if c.bw.Buffered() == 0 {
		return nil
	}
	if err := c.bw.Flush(); err != nil {
		c.writeErr = fmt.Errorf("smtpd %s: write reply: %w", c.info.ID, err)
		c.log.Debug("smtpd: write failed", "err", err)
		return c.writeErr
	}
	return nil
}

// endsGroup lists the commands RFC 2920 3.1 (and RFC 3207, RFC 4954 for
// STARTTLS and AUTH) allows only as the last command of a pipelined group.
func endsGroup(verb string) bool {
	switch verb {
	case "EHLO", "HELO", "DATA", "VRFY", "EXPN", "TURN", "QUIT", "NOOP", "STARTTLS", "AUTH", "XCLIENT", "ETRN", "ATRN":
		return true
	}
	return false
}

// checkPipelining notes a client that sent more after a command whose
// reply it had to wait for.
func (c *conn) checkPipelining(verb string) {
	if c.br.Buffered() == 0 || verb == "BDAT" {
		return
	}
	usable := c.greeted && c.info.ESMTP
	if usable && !endsGroup(verb) {
		return
	}
	if !c.info.PipeliningViolation {
		c.log.Info("smtpd: pipelining violation", "command", verb, "esmtp", usable)
	}
	c.info.PipeliningViolation = true
}

// dispatch runs one command; false ends the session.
func (c *conn) dispatch(line string) bool {
	c.commands++
	c.srv.stats.commands.Add(1)
	if c.commands > c.opt.MaxCommands {
		c.writeReply(NewReply(421, "4.7.0", "%s Error: too many commands", c.opt.Hostname))
		return false
	}
	verb, arg, ok := parseCommand(line)
	if !ok {
		c.reply(500, "5.5.2", "Error: command not recognized")
		return true
	}
	if len(line)+2 > c.opt.MaxLineLength && verb != "AUTH" {
		c.reply(500, "5.5.2", "Error: line too long")
		return true
	}
	c.checkPipelining(verb)
	if c.rejectAll {
		if verb == "QUIT" {
			c.reply(221, "2.0.0", "Bye")
			return false
		}
		c.reply(503, "5.5.1", "Error: no SMTP service here")
		return true
	}
	if c.opt.LMTP {
		switch verb {
		case "HELO", "EHLO":
			c.reply(500, "5.5.1", "Error: this is an LMTP server; use LHLO") // RFC 2033 4.1
			return true
		case "LHLO":
			verb = "EHLO"
		}
	}
	switch verb {
	case "HELO", "EHLO":
		c.cmdHello(verb, arg)
	case "MAIL":
		c.cmdMail(arg)
	case "RCPT":
		c.cmdRcpt(arg)
	case "DATA":
		return c.cmdData(arg)
	case "BDAT":
		return c.cmdBDAT(arg)
	case "RSET":
		if arg != "" {
			c.reply(501, "5.5.4", "Syntax: RSET")
			break
		}
		c.needReset = true
		c.resetTx()
		c.reply(250, "2.0.0", "Ok")
	case "NOOP":
		c.reply(250, "2.0.0", "Ok")
	case "QUIT":
		c.reply(221, "2.0.0", "Bye")
		return false
	case "VRFY":
		// RFC 5321 3.5.3: 252 when we will not say; we never confirm users.
		if arg == "" {
			c.reply(501, "5.5.4", "Syntax: VRFY address")
			break
		}
		c.reply(252, "2.5.2", "Cannot VRFY user, but will accept message and attempt delivery")
	case "EXPN", "TURN", "ETRN", "ATRN", "SEND", "SOML", "SAML":
		c.reply(502, "5.5.1", "Error: command not implemented")
	case "HELP":
		if c.opt.LMTP {
			c.reply(214, "2.0.0", "Commands: LHLO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP\nSee RFC 2033")
			break
		}
		c.reply(214, "2.0.0", "Commands: HELO EHLO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP\nSee RFC 5321")
	case "STARTTLS":
		return c.cmdStartTLS(arg)
	case "AUTH":
		return c.cmdAuth(arg)
	case "XCLIENT":
		return c.cmdXCLIENT(arg)
	case "GET", "POST", "HEAD", "PUT", "CONNECT", "OPTIONS":
		// A browser or proxy probe on an SMTP port (cross-protocol
		// requests): do not play along.
		c.reply(521, "5.5.1", "Error: this is an SMTP server; closing")
		return false
	default:
		c.reply(500, "5.5.2", "Error: command not recognized")
	}
	return true
}

// resetTx ends any transaction, telling the session first when it has
// state to drop.
func (c *conn) resetTx() {
	if c.needReset && c.sess != nil {
		c.sess.Reset(c.ctx, &c.info)
		c.needReset = false
	}
	c.inTx = false
	c.mailParams = nil
	c.rcpts, c.overshoot = 0, 0
	c.rcptTried = false
}

// endTx ends a transaction after DATA/BDAT; the session is reset before the
// next one.
func (c *conn) endTx() {
	c.inTx = false
	c.mailParams = nil
	c.rcpts, c.overshoot = 0, 0
	c.rcptTried = false
	c.needReset = true
}

// sessionReply sends a session's refusal; it reports whether r refused.
func (c *conn) sessionReply(r *Reply) bool {
	if r == nil || !r.failure() {
		return false
	}
	c.writeReply(r)
	return true
}

// okReply sends a session's own 2xx reply, or "250 <enhanced> Ok" when it
// gave none.
func (c *conn) okReply(r *Reply, enhanced string) {
	if r == nil || r.Code < 200 || r.Code > 299 {
		r = NewReply(250, enhanced, "Ok")
	}
	c.writeReply(r)
}

func (c *conn) cmdHello(verb, arg string) {
	name := verb
	if c.opt.LMTP {
		name = "LHLO"
	}
	if arg == "" {
		c.reply(501, "5.5.4", "Syntax: %s hostname", name)
		return
	}
	if len(arg) > maxDomain {
		c.reply(501, "5.5.2", "Error: %s argument too long", name)
		return
	}
	c.resetTx()
	c.greeted = false
	c.info.HELO, c.info.ESMTP = arg, verb == "EHLO"
	if c.sessionReply(c.sess.Hello(c.ctx, &c.info)) {
		c.info.HELO, c.info.ESMTP = "", false
		return
	}
	c.greeted = true
	if verb == "HELO" {
		c.writeLines(250, "", c.opt.Hostname)
	} else {
		c.writeLines(250, "", c.opt.Hostname+"\n"+strings.Join(c.capabilities(), "\n"))
	}
	c.flush()
}

// capabilities derives the EHLO keywords from the options, the
// connection's state and the session's type.
func (c *conn) capabilities() []string {
	caps := []string{"PIPELINING", "SIZE " + strconv.FormatInt(c.opt.MaxMessageSize, 10)}
	if c.tlsOffered() {
		caps = append(caps, "STARTTLS")
	}
	if c.authOffered() {
		caps = append(caps, "AUTH "+strings.Join(c.authMechanisms(), " "))
	}
	caps = append(caps, "ENHANCEDSTATUSCODES")
	if c.opt.Enable8BitMIME {
		caps = append(caps, "8BITMIME")
	}
	if c.opt.EnableDSN {
		caps = append(caps, "DSN")
	}
	if c.opt.EnableSMTPUTF8 {
		caps = append(caps, "SMTPUTF8")
	}
	if c.opt.EnableChunking {
		caps = append(caps, "CHUNKING")
	}
	if c.opt.EnableBinaryMIME {
		caps = append(caps, "BINARYMIME")
	}
	if c.opt.EnableRequireTLS && c.info.TLS != nil {
		caps = append(caps, "REQUIRETLS")
	}
	if c.xclientOK {
		caps = append(caps, "XCLIENT "+strings.Join(xclientAttributes, " "))
	}
	return caps
}

func (c *conn) tlsOffered() bool { return c.opt.TLSConfig != nil && c.info.TLS == nil }

func (c *conn) cmdMail(arg string) {
	switch {
	case !c.greeted:
		c.reply(503, "5.5.1", "Error: send HELO/EHLO first")
		return
	case c.inTx:
		c.reply(503, "5.5.1", "Error: nested MAIL command")
		return
	}
	inner, rest, err := splitPathArg(arg, "FROM")
	if err != nil {
		c.pathReply(err, "5.1.7", "Syntax: MAIL FROM:<address>")
		return
	}
	ps, err := parseParams(rest)
	if err != nil {
		c.reply(501, "5.5.4", "Error: %v", err)
		return
	}
	mp, rep := c.parseMailParams(ps)
	if rep != nil {
		c.writeReply(rep)
		return
	}
	from := ""
	if inner != "" {
		if from, err = parsePath(c.qualify(inner), mp.SMTPUTF8, false); err != nil {
			c.pathReply(err, "5.1.7", "Syntax: MAIL FROM:<address>")
			return
		}
	}
	if mp.Size > c.opt.MaxMessageSize {
		c.reply(552, "5.3.4", "Error: message size exceeds fixed limit")
		return
	}
	c.resetTx()
	c.needReset = true
	r := c.sess.Mail(c.ctx, &c.info, from, mp)
	if c.sessionReply(r) {
		return
	}
	c.inTx, c.mailParams = true, mp
	c.okReply(r, "2.1.0")
}

// pathReply answers a bad MAIL/RCPT argument: 553 5.6.7 when only
// SMTPUTF8 was missing (RFC 6531 3.5), else 501 with the address code.
func (c *conn) pathReply(err error, enhanced, syntax string) {
	var pe *pathError
	switch {
	case errors.As(err, &pe) && pe.needUTF8:
		c.reply(553, "5.6.7", "Error: %s", pe.reason)
	case errors.As(err, &pe):
		c.reply(501, enhanced, "Error: %s", pe.reason)
	default:
		c.reply(501, "5.5.4", "%s", syntax)
	}
}

// qualify completes an address without a domain with QualifyDomain, when
// the options ask for it; a source route or an address with a domain is
// left as it is.
func (c *conn) qualify(inner string) string {
	if c.opt.QualifyDomain == "" || inner == "" || inner[0] == '@' || lastUnquotedAt(inner) >= 0 {
		return inner
	}
	return inner + "@" + c.opt.QualifyDomain
}

func (c *conn) cmdRcpt(arg string) {
	if !c.inTx {
		c.reply(503, "5.5.1", "Error: need MAIL command")
		return
	}
	inner, rest, err := splitPathArg(arg, "TO")
	if err != nil {
		c.pathReply(err, "5.1.3", "Syntax: RCPT TO:<address>")
		return
	}
	ps, err := parseParams(rest)
	if err != nil {
		c.reply(501, "5.5.4", "Error: %v", err)
		return
	}
	rp, rep := c.parseRcptParams(ps)
	if rep != nil {
		c.writeReply(rep)
		return
	}
	to, err := parsePath(c.qualify(inner), c.mailParams.SMTPUTF8, true)
	if err != nil {
		c.pathReply(err, "5.1.3", "Syntax: RCPT TO:<address>")
		return
	}
	if c.rcpts >= c.opt.MaxRecipients {
		// RFC 5321 4.5.3.1.10: 452 and the client sends the rest later.
		c.overshootReply(NewReply(452, "4.5.3", "Error: too many recipients"))
		return
	}
	c.rcptTried = true
	r := c.sess.Rcpt(c.ctx, &c.info, to, rp)
	if r != nil && r.Code == 452 && r.Enhanced == "4.5.3" {
		c.overshootReply(r) // the session's own limit (bofh maxrcpts)
		return
	}
	if c.sessionReply(r) {
		return
	}
	c.rcpts++
	c.okReply(r, "2.1.5")
}

// maxOvershoot is how many recipients over the limit a transaction may
// send before their 452s count as errors (Postfix's
// smtpd_recipient_overshoot_limit).
const maxOvershoot = 1000

// overshootReply answers a recipient over the limit. A client that sends
// a long list in one go (pipelined) is doing what RFC 5321 4.5.3.1.10
// expects, and will send the rest in another transaction: its 452s are
// not errors, so that MaxErrors does not cut it off and waste the
// recipients already accepted; past maxOvershoot they are.
func (c *conn) overshootReply(r *Reply) {
	c.writeReply(r)
	if c.overshoot < maxOvershoot {
		c.overshoot++
		c.errors--
	}
}

// readyForData checks the sequence before DATA/BDAT; it answers and
// returns false when the transaction cannot take a message.
func (c *conn) readyForData() bool {
	switch {
	case !c.inTx:
		c.reply(503, "5.5.1", "Error: need MAIL command")
	case c.rcpts == 0 && c.rcptTried:
		c.reply(554, "5.5.1", "Error: no valid recipients")
	case c.rcpts == 0:
		c.reply(503, "5.5.1", "Error: need RCPT command")
	default:
		return true
	}
	return false
}

func (c *conn) cmdData(arg string) bool {
	if arg != "" {
		c.reply(501, "5.5.4", "Syntax: DATA")
		return true
	}
	if !c.readyForData() {
		return true
	}
	if c.mailParams.Body == "BINARYMIME" {
		c.reply(503, "5.5.1", "Error: BODY=BINARYMIME requires BDAT") // RFC 3030 3
		return true
	}
	c.writeLines(354, "", "End data with <CR><LF>.<CR><LF>")
	if c.flush() != nil {
		return false
	}
	c.info.BareLF = false
	dr := newDotReader(c.br, c.opt, &c.info.BareLF)
	c.timeout = c.opt.DataTimeout
	n := c.rcpts
	rep, reps := c.sessionData(dr)
	defer c.replied()
	leftover, err := dr.drain()
	c.timeout = c.opt.ReadTimeout
	c.endTx()
	if err != nil {
		c.readFailed(err)
		return false
	}
	c.messageReplies(rep, reps, n, dr.err, leftover, dr.size)
	return true
}

// sessionData hands the message to the session: Data, or under LMTP the
// session's DataLMTP when it has one (reps, one per recipient).
func (c *conn) sessionData(r io.Reader) (rep *Reply, reps []*Reply) {
	if ls, ok := c.sess.(LMTPSession); ok && c.opt.LMTP {
		return nil, ls.DataLMTP(c.ctx, &c.info, r)
	}
	return c.sess.Data(c.ctx, &c.info, r), nil
}

// messageReplies answers a message: once, or under LMTP once per
// accepted recipient (n of them), each from reps when the session gave
// them, else the one reply repeated (RFC 2033 4.2).
func (c *conn) messageReplies(rep *Reply, reps []*Reply, n int, contentErr error, leftover, size int64) {
	if !c.opt.LMTP {
		c.writeReply(c.messageReply(rep, contentErr, leftover, size))
		return
	}
	if reps != nil && len(reps) != n {
		c.log.Error("smtpd: Session.DataLMTP answered the wrong number of recipients", "answers", len(reps), "recipients", n)
	}
	for i := 0; i < n; i++ {
		r := rep
		if reps != nil {
			// A recipient the session did not answer may not have the
			// message: ask for it again rather than claim it.
			r = NewReply(451, "4.3.0", "Error: internal error; try again later")
			if i < len(reps) {
				r = reps[i]
			}
		}
		c.writeReply(c.messageReply(r, contentErr, leftover, size))
	}
}

// replied runs the session's Replied after a message's reply: flushed
// first unless more commands are waiting (then it goes with their
// replies, RFC 2920).
func (c *conn) replied() {
	rs, ok := c.sess.(Replied)
	if !ok {
		return
	}
	if c.br.Buffered() == 0 {
		c.flush()
	}
	rs.Replied(c.ctx, &c.info)
}

// messageReply decides the reply to a message: the engine's own findings
// first, then the session's verdict.
func (c *conn) messageReply(rep *Reply, contentErr error, leftover, size int64) *Reply {
	switch {
	case errors.Is(contentErr, ErrTooBig):
		rep = NewReply(552, "5.3.4", "Error: message exceeds fixed maximum message size")
	case errors.Is(contentErr, ErrBareLineEnding):
		// RFC 5321 2.3.8; the SMTP smuggling defence.
		rep = NewReply(550, "5.5.2", "Error: bare <LF> or <CR> received; use <CR><LF>")
	case errors.Is(contentErr, ErrLineTooLong):
		rep = NewReply(500, "5.5.2", "Error: message line too long")
	case (rep == nil || !rep.failure()) && leftover > 0:
		c.log.Error("smtpd: Session.Data accepted without reading the whole message", "unread", leftover)
		rep = NewReply(451, "4.3.0", "Error: internal error; try again later")
	case rep == nil:
		rep = NewReply(250, "2.0.0", "Ok")
	}
	if !rep.failure() {
		c.srv.stats.messages.Add(1)
		c.srv.stats.bytes.Add(size)
	}
	return rep
}

func (c *conn) cmdStartTLS(arg string) bool {
	switch {
	case c.info.TLS != nil:
		c.reply(503, "5.5.1", "Error: TLS already active")
		return true
	case !c.tlsOffered():
		c.reply(502, "5.5.1", "Error: command not implemented")
		return true
	case arg != "":
		c.reply(501, "5.5.4", "Syntax: STARTTLS")
		return true
	case c.inTx:
		c.reply(503, "5.5.1", "Error: MAIL transaction in progress")
		return true
	}
	c.reply(220, "2.0.0", "Ready to start TLS")
	if c.flush() != nil {
		return false
	}
	// RFC 3207 5 / the STARTTLS command injection class: nothing the
	// client sent before the handshake may count after it.
	if n := c.br.Buffered(); n > 0 {
		c.info.PipeliningViolation = true
		c.log.Warn("smtpd: discarded input pipelined after STARTTLS", "bytes", n)
	}
	tc := tls.Server(c.raw, c.opt.TLSConfig)
	if !c.handshake(tc) {
		return false
	}
	c.switchTo(tc)
	// RFC 3207 4.2: forget what the client said before TLS.
	c.resetTx()
	c.greeted = false
	c.info.HELO, c.info.ESMTP, c.info.AuthUser, c.info.AuthMech = "", false, "", ""
	return true
}

// peerUID is the uid of the peer of a Unix socket connection, or -1.
func peerUID(nc net.Conn) int {
	uid, err := unixpeer.UID(nc)
	if err != nil {
		return -1
	}
	return uid
}
