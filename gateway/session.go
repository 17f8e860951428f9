package gateway

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"postern/auth"
	"postern/filters"
	"postern/filters/rejectlog"
	"postern/gateway/delivery"
	"postern/gateway/smtpd"
	"postern/internal/tlsname"
	"postern/mailbox/maildir"
	"postern/policy"
	"postern/policy/access"
)

// Mode says what a listener is for; it decides whether AUTH is offered and
// whether it is required.
type Mode int

const (
	ModeMX         Mode = iota // port 25: mail from the world for our domains
	ModeSubmission             // ports 587/465: authenticated users only
	// ModeLMTP: LMTP (RFC 2033) from another MTA on this host or network
	// handing over mail for local recipients: no relaying, no checks
	// (the MTA in front made them), an answer per recipient.
	ModeLMTP
)

// Queue is the part of gateway/queue the sessions use.
type Queue interface {
	Enqueue(ctx context.Context, env delivery.Envelope, msg io.Reader) (string, error)
}

// backend implements smtpd.Backend: one policy for every connection of a
// listener.
type backend struct {
	mode    Mode
	cfg     func() *policy.Config
	auth    *auth.Service
	router  *Router
	local   *LocalDelivery
	queue   Queue
	access  func() *access.Rules // may return nil
	filters func() *Filters      // may return nil: no checks
	rejects *rejectlog.Log       // may be nil
	log     *slog.Logger
	metrics *Metrics
	// localUser names the local user of a sendmail -bs session ("uid
	// 1000"); empty for network sessions.
	localUser string
}

func (b *backend) Connect(ctx context.Context, c *smtpd.ConnInfo) (smtpd.Session, *smtpd.Reply) {
	b.metrics.session()
	s := &session{b: b, cfg: b.cfg(), log: b.log.With("session", c.ID, "remote", addrString(c.RemoteAddr)), fl: b.filters()}
	if rules := b.access(); rules != nil {
		if d, ok := rules.Lookup(c.RemoteAddr.Addr()); ok {
			s.access = d
			if !d.Allow {
				b.metrics.reject("smtpaccess")
				s.log.Info("smtp connection refused by smtpaccess", "rule", d.Origin)
				rep := smtpd.NewReply(554, "5.7.1", "Access denied")
				s.logRefusal(c, "connect", "", rep, "smtpaccess")
				return nil, rep
			}
		}
	}
	s.fs = newFilterSession(c, s.access.Vars)
	if _, rep := s.runStage(ctx, c, filters.StageConnect, "", nil); rep != nil {
		if rep.Code >= 500 {
			// A 5xx greeting makes senders bounce everything queued for
			// us; refuse for now and let the checks at later stages
			// speak with a 5xx when it is deserved.
			rep = smtpd.NewReply(421, "4.7.0", "%s", rep.Text)
		}
		return nil, rep
	}
	// What the connect stage found (a DNSBL hit, a reputation) counts
	// for every HELO and transaction of the connection.
	s.connResults, s.connScore = len(s.fs.Results), s.fs.Score
	s.baseResults, s.baseScore = s.connResults, s.connScore
	return s, nil
}

// session is one connection's policy state.
type session struct {
	b      *backend
	cfg    *policy.Config // the configuration in force when the client connected
	log    *slog.Logger
	access access.Decision
	fl     *Filters         // the checks in force when the client connected; may be nil
	fs     *filters.Session // what the checks see
	// base is how many results and how much score the connection and HELO
	// stages left; each new transaction starts from there.
	baseResults int
	baseScore   float64
	// conn is what the connect stage left, where a new HELO starts.
	connResults int
	connScore   float64
	// dataResults is where the results of the end of DATA start.
	dataResults int
	// certChecked is the TLS state whose client certificate was checked
	// against the configured authorities; certVerified the answer.
	certChecked  *tls.ConnectionState
	certVerified bool

	from string
	mail smtpd.MailParams
	// envelope: the checks' changes asked for at MAIL and at the
	// accepted RCPTs (a policy server's REDIRECT, BCC), applied with
	// those of DATA.
	envelope *filters.EnvelopeChange
	targets  []Target
	rcptSet  recipientSet // the destinations in targets (see recipientSet)
	rcpts    []string     // the accepted RCPT TO addresses, in order (LMTP answers each)
	// outcomeTold: the checks were told how this transaction ended
	// (tellOutcome); dataDecision is the end of DATA's verdict, told
	// once the message is stored.
	outcomeTold  bool
	dataDecision filters.Decision
	// later holds the Maildir writes of the last message's journaled
	// local deliveries, run once the client has its 250 (Replied).
	later maildir.Deferred
}

var _ smtpd.AuthSession = (*session)(nil)

func (s *session) Hello(ctx context.Context, c *smtpd.ConnInfo) *smtpd.Reply {
	s.baseResults, s.baseScore = s.connResults, s.connScore
	s.resetTransaction()
	_, rep := s.runStage(ctx, c, filters.StageHelo, "", nil)
	s.baseResults, s.baseScore = len(s.fs.Results), s.fs.Score
	return rep
}

// resetTransaction forgets the previous transaction's results and score.
func (s *session) resetTransaction() {
	if s.fs == nil {
		return
	}
	if len(s.fs.Results) > s.baseResults {
		s.fs.Results = s.fs.Results[:s.baseResults]
	}
	s.fs.Score, s.fs.From, s.fs.Rcpts, s.fs.Accounts = s.baseScore, "", nil, nil
	s.fs.DeferIfPermit = nil
	s.outcomeTold, s.dataDecision = false, filters.Decision{}
}

func (s *session) Auth(ctx context.Context, c *smtpd.ConnInfo, mech, identity, user, pass string) *smtpd.Reply {
	if s.b.mode != ModeSubmission {
		return smtpd.NewReply(503, "5.5.1", "AUTH is not available on this port")
	}
	if identity != "" && identity != user {
		return smtpd.NewReply(535, "5.7.8", "Authorization identity must match the user")
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	acct, err := s.b.auth.AuthenticateFrom(ctx, auth.ServiceSMTP, c.RemoteAddr.Addr(), user, pass)
	switch {
	case err == nil:
		c.AuthUser = acct.Name
		s.log = s.log.With("user", acct.Name)
		s.log.Info("smtp auth ok", "mechanism", mech)
		return nil
	case errors.Is(err, auth.ErrTemporary):
		s.log.Warn("smtp auth: backend unavailable", "err", err)
		return smtpd.NewReply(454, "4.7.0", "Temporary authentication failure")
	case errors.Is(err, auth.ErrBlocked):
		s.log.Warn("smtp auth refused, client blocked after too many failed logins", "user", user)
		s.b.metrics.reject("auth_blocked")
		// RFC 4954 section 6: 454, a temporary failure.
		return smtpd.NewReply(454, "4.7.0", "Too many failed logins from your address, try again later")
	default:
		s.log.Info("smtp auth failed", "mechanism", mech, "user", user, "err", err)
		s.b.metrics.reject("auth")
		return smtpd.NewReply(535, "5.7.8", "Authentication credentials invalid")
	}
}

func (s *session) Mail(ctx context.Context, c *smtpd.ConnInfo, from string, p *smtpd.MailParams) *smtpd.Reply {
	if s.b.mode == ModeSubmission && c.AuthUser == "" {
		return smtpd.NewReply(530, "5.7.0", "Authentication required")
	}
	if from != "" {
		if _, _, err := splitAddress(from); err != nil {
			return smtpd.NewReply(553, "5.1.7", "Bad sender address syntax")
		}
		if c.AuthUser != "" && s.cfg.SenderLogin == "own" {
			owned, ref := s.b.router.SenderOwnedBy(ctx, from, c.AuthUser)
			if ref != nil {
				return smtpd.NewReply(ref.Code, ref.Enhanced, "%s", ref.Text)
			}
			if !owned {
				s.b.metrics.reject("sender_login_mismatch")
				s.log.Info("smtp sender refused: not the user's", "from", from, "user", c.AuthUser)
				return smtpd.NewReply(553, "5.7.1", "<%s>: Sender address rejected: not owned by user %s", from, c.AuthUser)
			}
		}
	}
	s.from, s.mail, s.targets, s.rcptSet, s.rcpts, s.envelope = from, *p, nil, nil, nil, nil
	s.resetTransaction()
	s.fs.From = from
	d, rep := s.runStage(ctx, c, filters.StageMail, "", nil)
	if rep == nil {
		s.envelope = s.envelope.Merge(d.Envelope)
	}
	return rep
}

func (s *session) Rcpt(ctx context.Context, c *smtpd.ConnInfo, to string, p *smtpd.RcptParams) *smtpd.Reply {
	if code, text, ok := s.access.BlockReply(); ok {
		s.b.metrics.reject("smtpaccess_block")
		return smtpd.NewReply(code, "5.7.1", "%s", text)
	}
	relay := s.b.mode != ModeLMTP && (c.AuthUser != "" || s.access.Relay)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	targets, ref := s.b.router.Resolve(ctx, to, relay)
	// An unknown user is told so only after the RCPT checks, as Postfix's
	// implicit reject_unlisted_recipient comes after its recipient
	// restrictions: a client the checks refuse or defer (a listed or
	// greylisted one) learns nothing about which addresses exist, so a
	// dictionary attack from it harvests nothing. Other refusals
	// (relaying denied, bad syntax, a lookup that failed) come first.
	if ref != nil && ref.Reason != "unknown_user" {
		return s.refuseRcpt(c, to, ref)
	}
	d, rep := s.runStage(ctx, c, filters.StageRcpt, to, nil)
	if rep != nil {
		return rep
	}
	if ref != nil {
		rep := s.refuseRcpt(c, to, ref)
		if bye := s.noteUnknown(ctx, c); bye != nil {
			return bye
		}
		return rep
	}
	notify := parseNotify(p.Notify)
	for i := range targets {
		t := &targets[i]
		if t.Account != nil {
			if over, err := overQuota(t.Account); err == nil && over {
				s.b.metrics.reject("over_quota")
				return smtpd.NewReply(552, "5.2.2", "Mailbox full")
			}
		}
		t.Recipient.Notify = notify
		t.Rcpt = to
		if p.ORcpt != "" {
			t.Recipient.ORcpt = p.ORcpt
		}
	}
	s.targets = s.rcptSet.add(s.targets, targets)
	s.fs.Rcpts = append(s.fs.Rcpts, to)
	for _, t := range targets {
		if t.Account != nil && !t.Archive && !slices.Contains(s.fs.Accounts, t.Account.Name) {
			s.fs.Accounts = append(s.fs.Accounts, t.Account.Name)
		}
	}
	s.rcpts = append(s.rcpts, to)
	s.envelope = s.envelope.Merge(d.Envelope)
	return nil
}

// refuseRcpt answers a recipient the router refused, and counts and logs it.
func (s *session) refuseRcpt(c *smtpd.ConnInfo, to string, ref *Refusal) *smtpd.Reply {
	s.b.metrics.reject(ref.Reason)
	s.log.Info("smtp recipient refused", "from", s.from, "rcpt", to, "reason", ref.Reason)
	rep := smtpd.NewReply(ref.Code, ref.Enhanced, "%s", ref.Text)
	s.logRefusal(c, "rcpt", to, rep, ref.Reason)
	return rep
}

func parseNotify(values []string) delivery.Notify {
	var n delivery.Notify
	for _, v := range values {
		switch strings.ToUpper(v) {
		case "NEVER":
			n |= delivery.NotifyNever
		case "SUCCESS":
			n |= delivery.NotifySuccess
		case "FAILURE":
			n |= delivery.NotifyFailure
		case "DELAY":
			n |= delivery.NotifyDelay
		}
	}
	return n
}

func (s *session) Data(ctx context.Context, c *smtpd.ConnInfo, r io.Reader) *smtpd.Reply {
	if len(s.targets) == 0 {
		return smtpd.NewReply(503, "5.5.1", "No valid recipients")
	}
	raw, body := getBuffer(), getBuffer()
	defer putBuffer(raw)
	defer putBuffer(body)
	env, rep := s.readMessage(ctx, c, r, raw, body)
	if rep != nil {
		return rep
	}
	return s.store(ctx, c, env, s.targets, body.Bytes())
}

// DataLMTP is Data for LMTP (smtpd.LMTPSession): the message is stored
// for each accepted recipient on its own, so that each gets its own
// answer (a full mailbox refuses only its owner; RFC 2033 4.2).
func (s *session) DataLMTP(ctx context.Context, c *smtpd.ConnInfo, r io.Reader) []*smtpd.Reply {
	out := make([]*smtpd.Reply, len(s.rcpts))
	raw, body := getBuffer(), getBuffer()
	defer putBuffer(raw)
	defer putBuffer(body)
	env, rep := s.readMessage(ctx, c, r, raw, body)
	for i, rcpt := range s.rcpts {
		if rep != nil {
			out[i] = rep
			continue
		}
		if j := slices.Index(s.rcpts[:i], rcpt); j >= 0 {
			out[i] = out[j] // the same address twice: stored once
			continue
		}
		var targets []Target
		for _, t := range s.targets {
			if t.Rcpt == rcpt {
				targets = append(targets, t)
			}
		}
		if len(targets) == 0 {
			// Its destinations are another recipient's too (an alias),
			// which has the message.
			out[i] = smtpd.NewReply(250, "2.0.0", "Ok: delivered with another recipient's copy")
			continue
		}
		out[i] = s.store(ctx, c, env, targets, body.Bytes())
	}
	return out
}

// readMessage reads the message into raw, runs the end-of-DATA checks,
// and writes into body the message to store (our Received line and the
// checks' fields on top). A non-nil reply refuses the message.
func (s *session) readMessage(ctx context.Context, c *smtpd.ConnInfo, r io.Reader, raw, body *bytes.Buffer) (delivery.Envelope, *smtpd.Reply) {
	if _, err := raw.ReadFrom(r); err != nil {
		var rep *smtpd.Reply
		if errors.As(err, &rep) {
			return delivery.Envelope{}, rep
		}
		// Too big, bare line endings, overlong lines: the engine answers
		// those itself whatever is returned here.
		return delivery.Envelope{}, smtpd.NewReply(451, "4.3.0", "Error reading message")
	}
	msg := s.stripForged(raw.Bytes())
	if ref := loopRefusal(msg, s.cfg.HopLimit); ref != nil {
		s.b.metrics.reject(ref.Reason)
		s.log.Info("smtp message refused: mail loop", "from", s.from, "text", ref.Text)
		return delivery.Envelope{}, smtpd.NewReply(ref.Code, ref.Enhanced, "%s", ref.Text)
	}
	d, rep := s.runStage(ctx, c, filters.StageData, "", newBytesMessage(msg))
	if rep != nil {
		return delivery.Envelope{}, rep
	}
	s.dataDecision = d
	if d.Rewritten != nil {
		msg = d.Rewritten
	}
	if e := (&filters.EnvelopeChange{}).Merge(s.envelope).Merge(d.Envelope); s.envelope != nil || d.Envelope != nil {
		if rep := s.changeEnvelope(ctx, e); rep != nil {
			return delivery.Envelope{}, rep
		}
	}
	body.Write(s.receivedHeader(c, time.Now()))
	if s.checked(c) {
		body.Write(s.checkHeaders())
	} else if s.trusted(c) && !s.pipeline(c, filters.StageData).Empty() {
		body.Write(s.trustedHeaders()) // what its milters added just now
	}
	body.Write(s.dkimSign(ctx, c, msg))
	body.Write(msg)
	if s.b.mode == ModeSubmission || s.b.localUser != "" {
		addMissingHeaders(body, s.cfg.Me, time.Now())
	}
	quarantine := ""
	if d.Verdict == filters.Quarantine {
		s.log.Info("smtp message quarantined", "by", d.Filter, "reason", d.Reason, "held", d.Hold)
		for i := range s.targets {
			if s.targets[i].Recipient.Local {
				s.targets[i].Recipient.Folder = "Junk"
			}
		}
		if d.Hold {
			// Its queued copies (relayed, programs, files) wait for
			// the administrator; local ones go to Junk.
			quarantine = sanitizeHoldReason(d.HoldReason)
		}
	}
	// The "bcc" setting's archive copies, of the message as it is stored
	// (our fields and the checks' changes included), after the Received
	// line named the real recipient and after a quarantine filed the real
	// copies in Junk. Not for LMTP: the MTA in front archives.
	if s.cfg.BCC != nil && s.b.mode != ModeLMTP {
		archives, ref := archiveTargets(ctx, s.b.router, s.cfg.BCC, s.from, rcptAddresses(s.targets), s.log)
		if ref != nil {
			return delivery.Envelope{}, smtpd.NewReply(451, "4.3.0", "Temporary failure storing the message, try again later")
		}
		s.targets = s.rcptSet.add(s.targets, archives)
	}
	return delivery.Envelope{
		From:       s.from,
		Received:   time.Now(),
		EnvID:      s.mail.EnvID,
		Ret:        s.mail.Ret,
		SMTPUTF8:   s.mail.SMTPUTF8,
		Body8Bit:   s.mail.Body == "8BITMIME" || s.mail.Body == "BINARYMIME",
		RequireTLS: s.mail.RequireTLS,
		AuthUser:   c.AuthUser,
		ClientIP:   c.RemoteAddr.Addr().String(),
		ClientHELO: c.HELO,
		Quarantine: quarantine,
	}, nil
}

// sanitizeHoldReason makes a filter's reason fit the queue's envelope: one
// line of valid UTF-8, at most 500 bytes, never empty.
func sanitizeHoldReason(r string) string {
	r = strings.ToValidUTF8(r, "?")
	r = strings.Map(func(c rune) rune {
		if c < ' ' || c == 0x7f {
			return ' '
		}
		return c
	}, r)
	if len(r) > 500 {
		r = strings.ToValidUTF8(r[:500], "")
	}
	if strings.TrimSpace(r) == "" {
		r = "quarantined"
	}
	return r
}

// store makes the message durable for targets (accept) and answers.
func (s *session) store(ctx context.Context, c *smtpd.ConnInfo, env delivery.Envelope, targets []Target, body []byte) *smtpd.Reply {
	fwd := forwarding{Sender: s.cfg.ForwardSender(env.From), Seal: s.arcSealer(c, targets)}
	id, err := accept(ctx, s.b.local, s.b.queue, env, targets, body, fwd, &s.later, s.log)
	if err != nil {
		var rep *smtpd.Reply
		if errors.As(err, &rep) {
			reason := "delivery_refused"
			if rep.Enhanced == "5.2.2" {
				reason = "over_quota"
			}
			s.b.metrics.reject(reason)
			return rep
		}
		s.log.Warn("smtp: could not store the message", "err", err)
		return smtpd.NewReply(451, "4.3.0", "Temporary failure storing the message, try again later")
	}
	s.b.metrics.accepted(len(body))
	s.log.Info("smtp accepted", "id", id, "from", env.From, "rcpts", len(targets), "size", len(body))
	o := filters.Outcome{Stage: filters.StageData, Verdict: filters.Accept, Filter: s.dataDecision.Filter}
	if s.dataDecision.Verdict == filters.Quarantine {
		o.Verdict = filters.Quarantine
	}
	s.tellOutcome(ctx, c, o)
	return smtpd.NewReply(250, "2.0.0", "Ok: queued as %s", id)
}

func (s *session) Reset(ctx context.Context, c *smtpd.ConnInfo) {
	s.from, s.targets, s.rcptSet, s.rcpts, s.envelope = "", nil, nil, nil, nil
	s.resetTransaction()
}

// Replied writes the Maildir files of the message just acknowledged: the
// delivery journal made it durable before the 250, so the client need
// not wait for the files (see maildir.Deferred).
func (s *session) Replied(ctx context.Context, c *smtpd.ConnInfo) { s.later.Run() }

func (s *session) Close(ctx context.Context, c *smtpd.ConnInfo) { s.later.Run() }

// receivedHeader is the Received line (RFC 5321 4.4) with the client's
// names and address, the protocol (RFC 3848) and the TLS parameters.
func (s *session) receivedHeader(c *smtpd.ConnInfo, now time.Time) []byte {
	var b strings.Builder
	helo := sanitizeHeaderWord(c.HELO)
	with := "SMTP"
	switch {
	case s.b.mode == ModeLMTP:
		with = "LMTP" // RFC 3848
	case c.ESMTP:
		with = "ESMTP"
	}
	var tlsInfo string
	if c.TLS != nil {
		with += "S"
		// As Postfix writes it: OpenSSL's names and the key size.
		cipher, bits := tlsname.Cipher(c.TLS.CipherSuite)
		tlsInfo = fmt.Sprintf("\r\n\t(using %s with cipher %s (%d/%d bits))", tlsname.Version(c.TLS.Version), cipher, bits, bits)
	}
	if c.AuthUser != "" {
		with += "A"
	}
	client := "[" + addrString(c.RemoteAddr) + "]"
	switch {
	case !c.RemoteAddr.IsValid() && s.b.mode == ModeLMTP && c.PeerUID >= 0:
		client = fmt.Sprintf("local socket, uid %d", c.PeerUID)
	case !c.RemoteAddr.IsValid() && s.b.mode == ModeLMTP:
		client = "local socket"
	case s.b.localUser != "":
		client = s.b.localUser // sendmail -bs: a local user, not a network client
	case c.RemoteName != "":
		client = sanitizeHeaderWord(c.RemoteName) + " " + client
	}
	fmt.Fprintf(&b, "Received: from %s (%s)\r\n\tby %s (Postern) with %s id %s%s", helo, client, s.cfg.Me, with, c.ID, tlsInfo)
	if len(s.targets) == 1 {
		fmt.Fprintf(&b, "\r\n\tfor <%s>", s.targets[0].Recipient.Addr)
	}
	fmt.Fprintf(&b, ";\r\n\t%s\r\n", now.Format(time.RFC1123Z))
	return []byte(b.String())
}

func addrString(a netip.AddrPort) string {
	if !a.IsValid() {
		return "unknown"
	}
	return a.Addr().Unmap().String()
}

// messageBuffers are reused between transactions: the message and its
// copy with our header fields are the biggest allocations of a session.
// accept has made everything durable (and done reading) before Data
// returns, so a buffer is free again when Data ends.
var messageBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func getBuffer() *bytes.Buffer { return messageBuffers.Get().(*bytes.Buffer) }

func putBuffer(b *bytes.Buffer) {
	if b.Cap() > 4<<20 {
		return // do not keep the memory of one huge message
	}
	b.Reset()
	messageBuffers.Put(b)
}
