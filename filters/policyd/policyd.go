// Package policyd asks Postfix policy servers (Postfix's policy delegation
// protocol, SMTPD_POLICY_README) during the SMTP session, so the daemons
// admins already run behind Postfix's check_policy_service plug in as
// they are: postgrey, policyd-spf, postfwd, policyd-rate-limit and the
// like.
//
// A request is "name=value" lines ended by an empty line, with the
// attributes Postfix sends (request, protocol_state, protocol_name,
// helo_name, sender, recipient, recipient_count, client_address,
// client_name, instance, sasl_*, size, encryption_*, ...); the answer is
// "action=..." and an empty line. Connections are kept and used again for
// the next requests, as Postfix does. The action is read as access(5)
// reads it (action.go).
//
// A policy server that cannot be reached, times out, or answers nonsense
// gets the configured failure action: tempfail (the default, as Postfix's
// smtpd_policy_service_default_action "451 4.3.5"), accept or reject.
package policyd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"postern/filters"
)

// Config is one policy server.
type Config struct {
	Name    string          // the name in "policyservices"; the filter is "policy:NAME"
	Network string          // "unix" or "tcp"
	Address string          // socket path, or host:port
	Stage   filters.Stage   // when it is asked: StageMail, StageRcpt (the default) or StageData
	OnError filters.OnError // default filters.OnErrorTempfail
	Timeout time.Duration   // connect, and the whole exchange; default 10s
	// Authenticated: it also answers for authenticated users and clients
	// smtpaccess lets relay; default no, as check_policy_service usually
	// comes after permit_sasl_authenticated.
	Authenticated bool
}

// Options configure a Filter.
type Options struct {
	Config Config
	// Logger gets the actions Postfix logs (WARN, INFO, HOLD, DISCARD,
	// REDIRECT, BCC) and those Postern ignores (FILTER, DELAY, FREEZE);
	// nil: none.
	Logger *slog.Logger
}

// maxIdle is how many open connections a policy server keeps.
const maxIdle = 8

// maxAnswer bounds an answer's bytes: a policy server that sends more
// is broken.
const maxAnswer = 64 << 10

// Filter is one policy server, asked at one stage.
type Filter struct {
	cfg Config
	log *slog.Logger

	mu   sync.Mutex
	idle []*conn // kept connections, at most maxIdle
	// closed: a reload replaced this filter (Close); connections still in
	// use by sessions that began before are closed when they come back.
	closed bool
}

type conn struct {
	nc net.Conn
	r  *bufio.Reader
}

// New returns the filter for one policy server: a filters.MailChecker,
// RcptChecker or DataChecker by its Stage.
func New(opt Options) (filters.Filter, error) {
	c := opt.Config
	if c.Name == "" || (c.Network != "unix" && c.Network != "tcp") || c.Address == "" {
		return nil, fmt.Errorf("policy service: incomplete configuration %+v", c)
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	f := &Filter{cfg: c, log: opt.Logger}
	switch c.Stage {
	case filters.StageMail:
		return mailFilter{f}, nil
	case filters.StageRcpt:
		return rcptFilter{f}, nil
	case filters.StageData:
		return dataFilter{f}, nil
	}
	return nil, fmt.Errorf("policy service %s: it can be asked at MAIL, RCPT or DATA, not %s", c.Name, c.Stage)
}

type mailFilter struct{ *Filter }
type rcptFilter struct{ *Filter }
type dataFilter struct{ *Filter }

// Name implements filters.Filter.
func (f *Filter) Name() string { return "policy:" + f.cfg.Name }

// CheckMail implements filters.MailChecker.
func (f mailFilter) CheckMail(ctx context.Context, s *filters.Session) filters.Result {
	return f.check(ctx, s, "MAIL", "", -1)
}

// CheckRcpt implements filters.RcptChecker.
func (f rcptFilter) CheckRcpt(ctx context.Context, s *filters.Session, rcpt string) filters.Result {
	return f.check(ctx, s, "RCPT", rcpt, -1)
}

// CheckData implements filters.DataChecker: Postfix's END-OF-MESSAGE.
func (f dataFilter) CheckData(ctx context.Context, s *filters.Session, msg filters.Message) filters.Result {
	rcpt := ""
	if len(s.Rcpts) == 1 {
		rcpt = s.Rcpts[0] // Postfix names the recipient only when there is one
	}
	return f.check(ctx, s, "END-OF-MESSAGE", rcpt, msg.Size())
}

func (f *Filter) check(ctx context.Context, s *filters.Session, state, rcpt string, size int64) filters.Result {
	action, err := f.ask(ctx, Request(s, state, rcpt, size))
	if err != nil {
		return f.failure(err)
	}
	r, err := parseAction(action)
	if err != nil {
		return f.failure(err)
	}
	r.Filter = f.Name()
	r.Reason = "policy service " + f.cfg.Name + ": " + r.Reason
	word, _, _ := strings.Cut(strings.TrimSpace(action), " ")
	switch strings.ToUpper(word) {
	case "WARN", "INFO", "HOLD", "DISCARD", "REDIRECT", "BCC", "FILTER", "DELAY", "FREEZE":
		f.log.Info("policy service action", "session", s.ID, "service", f.cfg.Name, "state", state,
			"client", s.ClientIP.String(), "from", s.From, "rcpt", rcpt, "result", r.Reason)
	}
	return r
}

// failure applies OnError to a policy server that could not be asked.
func (f *Filter) failure(err error) filters.Result {
	return filters.ServiceFailure(f.Name(), "policy service "+f.cfg.Name+" failed: "+err.Error(), f.cfg.OnError,
		filters.Reply{Code: 554, Enhanced: "5.3.5", Text: "Server configuration problem"},
		filters.Reply{Code: 451, Enhanced: "4.3.5", Text: "Server configuration problem"})
}

// Request returns the attributes Postfix sends for a session at
// protocol_state state ("MAIL", "RCPT", "END-OF-MESSAGE"): recipient is
// the one asked about, size the message's (or -1: not known).
func Request(s *filters.Session, state, rcpt string, size int64) []string {
	proto := "SMTP"
	if s.ESMTP {
		proto = "ESMTP"
	}
	clientName := s.ClientName
	if clientName == "" {
		clientName = "unknown" // Postfix's word for no verified name
	}
	count := len(s.Rcpts) // at RCPT, those accepted before this one, as Postfix counts
	sizeText := "0"
	if size >= 0 {
		sizeText = strconv.FormatInt(size, 10)
	}
	client := ""
	if s.ClientIP.IsValid() {
		client = s.ClientIP.Unmap().String()
	}
	var port string
	if s.ClientPort != 0 {
		port = strconv.Itoa(int(s.ClientPort))
	}
	attrs := []string{
		"request=smtpd_access_policy",
		"protocol_state=" + state,
		"protocol_name=" + proto,
		"helo_name=" + value(s.HELO),
		"queue_id=",
		"sender=" + value(s.From),
		"recipient=" + value(rcpt),
		"recipient_count=" + strconv.Itoa(count),
		"client_address=" + client,
		"client_name=" + value(clientName),
		"reverse_client_name=" + value(clientName),
		"client_port=" + port,
		"instance=" + value(instance(s)),
		"sasl_method=" + value(s.AuthMech),
		"sasl_username=" + value(s.AuthUser),
		"sasl_sender=",
		"size=" + sizeText,
	}
	attrs = append(attrs, tlsAttributes(s)...)
	return append(attrs,
		"etrn_domain=",
		"stress=",
		"policy_context=",
		"compatibility_level=3.6",
		"mail_version=3.7.0 (postern)",
	)
}

// instance is the same for every request of one transaction: the session
// and its sender.
func instance(s *filters.Session) string {
	return s.ID + "." + strings.ToLower(s.From)
}

// value makes a string fit on one attribute line.
func value(v string) string {
	if !strings.ContainsAny(v, "\r\n\x00") {
		return v
	}
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' || r == 0 {
			return ' '
		}
		return r
	}, v)
}

// ask sends one request and returns the action. A kept connection that
// turns out closed is replaced once.
func (f *Filter) ask(ctx context.Context, attrs []string) (string, error) {
	deadline := time.Now().Add(f.cfg.Timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	var req strings.Builder
	for _, a := range attrs {
		req.WriteString(a)
		req.WriteByte('\n')
	}
	req.WriteByte('\n')
	for attempt := 0; ; attempt++ {
		c, reused, err := f.get(ctx, deadline)
		if err != nil {
			return "", err
		}
		action, err := c.exchange(req.String(), deadline)
		if err == nil {
			f.put(c)
			return action, nil
		}
		c.nc.Close()
		var ne net.Error
		timedOut := errors.As(err, &ne) && ne.Timeout()
		if !reused || timedOut || attempt > 0 || ctx.Err() != nil {
			return "", err
		}
	}
}

// get takes a kept connection, or dials a new one.
func (f *Filter) get(ctx context.Context, deadline time.Time) (*conn, bool, error) {
	f.mu.Lock()
	if n := len(f.idle); n > 0 {
		c := f.idle[n-1]
		f.idle = f.idle[:n-1]
		f.mu.Unlock()
		return c, true, nil
	}
	f.mu.Unlock()
	d := net.Dialer{Deadline: deadline}
	nc, err := d.DialContext(ctx, f.cfg.Network, f.cfg.Address)
	if err != nil {
		return nil, false, err
	}
	return &conn{nc: nc, r: bufio.NewReaderSize(nc, 1024)}, false, nil
}

// put keeps a connection for the next request, or closes it: when
// maxIdle are kept already, or the filter was closed.
func (f *Filter) put(c *conn) {
	c.nc.SetDeadline(time.Time{})
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed || len(f.idle) >= maxIdle {
		c.nc.Close()
		return
	}
	f.idle = append(f.idle, c)
}

// exchange writes req and reads the answer's attributes up to the empty
// line; it returns the action attribute's value.
func (c *conn) exchange(req string, deadline time.Time) (string, error) {
	c.nc.SetDeadline(deadline)
	if _, err := c.nc.Write([]byte(req)); err != nil {
		return "", err
	}
	action, got, total := "", false, 0
	for {
		line, err := c.r.ReadSlice('\n')
		total += len(line)
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				err = errors.New("answer line too long")
			}
			return "", err
		}
		if total > maxAnswer {
			return "", errors.New("answer too long")
		}
		text := strings.TrimRight(string(line), "\r\n")
		if text == "" {
			if !got {
				return "", errors.New("answer without an action")
			}
			return action, nil
		}
		name, v, ok := strings.Cut(text, "=")
		if !ok {
			return "", fmt.Errorf("answer line %q is not name=value", text)
		}
		if strings.EqualFold(name, "action") && !got {
			action, got = v, true
		}
	}
}

// Close implements filters.Closer, for a reload that replaced the
// filter: the kept connections are closed now, those in use when they
// come back. Sessions that still hold the filter can ask it again (over a
// connection of their own). Close may be called more than once.
func (f *Filter) Close() {
	f.mu.Lock()
	idle := f.idle
	f.idle, f.closed = nil, true
	f.mu.Unlock()
	for _, c := range idle {
		c.nc.Close()
	}
}

// ParseAddress reads a policy server's address as Postfix writes it:
// inet:HOST:PORT, unix:/PATH (or a bare /PATH or HOST:PORT).
func ParseAddress(s string) (network, address string, err error) {
	return filters.ParseServiceAddress(s, "policy service")
}
