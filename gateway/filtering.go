package gateway

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"postern/filters"
	"postern/filters/authres"
	"postern/filters/dkim"
	"postern/filters/dmarc"
	"postern/filters/ratelimit"
	"postern/filters/rejectlog"
	"postern/gateway/delivery"
	"postern/gateway/smtpd"
	"postern/policy"
)

// Filters is the SMTP-time checking in force: the pipeline, the pieces
// the session calls directly, and the DKIM signer for outgoing mail. A
// reload builds a new one.
type Filters struct {
	Pipeline *filters.Pipeline
	// Trusted runs on the mail of the clients Pipeline does not check
	// (authenticated users, clients smtpaccess lets relay): the milters
	// configured for them, at the end of DATA, so that a content scanner
	// sees outgoing mail and can sign, mark or refuse it, as Postfix's
	// smtpd_milters do on the submission port, and the policy services
	// configured for them at their stage (a sender quota for
	// authenticated users). No score thresholds.
	Trusted    *filters.Pipeline
	Limiter    *ratelimit.Limiter // told about unknown recipients (dictionary attacks); may be nil
	Signer     *dkim.Signer       // signs authenticated users' mail; may be nil
	AuthservID string             // our name in Authentication-Results (RFC 8601)
	// SealForwards: the copies our aliases forward to other hosts get an
	// ARC set (RFC 8617) signed with Signer's key of the alias's domain.
	SealForwards bool
}

// Close lets go of what the checks keep between sessions (a policy
// server's connections) when a reload replaced them; sessions that began
// with them can still use them.
func (f *Filters) Close() {
	if f == nil {
		return
	}
	f.Pipeline.Close()
	f.Trusted.Close()
}

// checked reports whether this client's mail goes through the checks:
// authenticated users and clients smtpaccess lets relay are trusted, as
// every MTA trusts its own users and networks.
func (s *session) checked(c *smtpd.ConnInfo) bool {
	return s.fl != nil && !s.fl.Pipeline.Empty() && !s.trusted(c)
}

// trusted: an authenticated user, or a client smtpaccess lets relay.
func (s *session) trusted(c *smtpd.ConnInfo) bool { return c.AuthUser != "" || s.access.Relay }

// pipeline is what checks this client's mail at stage: the checks for an
// unchecked client, the Trusted pipeline (the milters and policy services
// configured for them) for a trusted one.
func (s *session) pipeline(c *smtpd.ConnInfo, stage filters.Stage) *filters.Pipeline {
	switch {
	case s.fl == nil || s.fs == nil:
		return nil
	case !s.trusted(c):
		return s.fl.Pipeline
	}
	return s.fl.Trusted
}

// runStage runs the pipeline at one stage and turns a refusal into the
// SMTP reply, logging it and keeping it in the rejection log.
func (s *session) runStage(ctx context.Context, c *smtpd.ConnInfo, stage filters.Stage, rcpt string, msg filters.Message) (filters.Decision, *smtpd.Reply) {
	p := s.pipeline(c, stage)
	if p.Empty() {
		return filters.Decision{}, nil
	}
	s.syncFilterSession(c)
	if stage == filters.StageData {
		s.dataResults = len(s.fs.Results)
	}
	d := p.Run(ctx, stage, s.fs, rcpt, msg)
	if d.Verdict != filters.Reject && d.Verdict != filters.Tempfail {
		return d, nil
	}
	rep := smtpd.NewReply(d.Code, d.Enhanced, "%s", d.Message)
	if s.disconnectAsked() {
		// The check wants the client gone (dictionary attack, spam trap):
		// a 421 closes the connection.
		rep = smtpd.NewReply(421, "4.7.0", "%s", d.Message)
	}
	s.b.metrics.reject("filter_" + d.Filter)
	s.logRefusal(c, stage.String(), rcpt, rep, d.Filter)
	s.tellOutcome(ctx, c, filters.Outcome{Stage: stage, Verdict: d.Verdict, Filter: d.Filter})
	return d, rep
}

// tellOutcome tells the checks that learn from history (a reputation) how
// the transaction ended: a refusal by a check, or the message accepted
// (with the end of DATA's verdict). A refusal or the stored message once
// per transaction, so that a client refused at every RCPT counts once; a
// deferral (a greylisted recipient) as it happens, since the transaction
// may still end with the message accepted. Never for the trusted clients
// the checks do not see.
func (s *session) tellOutcome(ctx context.Context, c *smtpd.ConnInfo, o filters.Outcome) {
	if s.outcomeTold || !s.checked(c) {
		return
	}
	s.outcomeTold = o.Verdict != filters.Tempfail
	s.fl.Pipeline.Tell(ctx, s.fs, o)
}

// changeEnvelope carries out the checks' changes to the sender and the
// recipients (a milter's CHGFROM, ADDRCPT, DELRCPT; a policy server's
// BCC and REDIRECT). An added recipient is routed as a RCPT TO from a
// client allowed to relay (the milter, the policy server is the
// admin's); one that cannot be routed is logged and left out. A removal
// that would leave no recipient is not done: Postern does not drop
// accepted mail. Of several BCCs the last counts, as in Postfix 3.x; its
// copy asks for no DSN. A REDIRECT sends the message to its address
// instead of all the recipients (those added too), as Postfix's does; one
// that cannot be routed refuses the message for now (451 4.3.5, as a
// broken policy server), rather than deliver it where the policy said
// not to.
func (s *session) changeEnvelope(ctx context.Context, e *filters.EnvelopeChange) *smtpd.Reply {
	if e.From != nil {
		s.log.Info("smtp sender changed by a check", "from", s.from, "to", *e.From)
		s.from = *e.From
	}
	if e.Redirect != "" {
		targets, ref := s.b.router.Resolve(ctx, e.Redirect, true)
		if ref != nil {
			s.log.Warn("smtp: the address a check redirected the message to cannot be routed; refused for now",
				"redirect", e.Redirect, "reason", ref.Reason, "text", ref.Text)
			return smtpd.NewReply(451, "4.3.5", "Server configuration problem")
		}
		for i := range targets {
			targets[i].Rcpt = e.Redirect
		}
		s.log.Info("smtp message redirected by a check", "to", e.Redirect, "instead_of", len(s.targets), "ignored_bcc", e.Bcc)
		s.rcptSet = nil
		s.targets = s.rcptSet.add(nil, targets)
		return nil
	}
	if len(e.DelRcpts) > 0 {
		var kept []Target
		for _, t := range s.targets {
			if !slices.ContainsFunc(e.DelRcpts, func(a string) bool { return sameAddress(a, t.Rcpt) }) {
				kept = append(kept, t)
			}
		}
		if len(kept) == 0 && len(e.AddRcpts) == 0 && len(e.Bcc) == 0 {
			s.log.Warn("smtp: a check removed every recipient; the message is delivered to them as it was", "rcpts", len(s.targets))
		} else {
			s.rcptSet = nil
			s.targets = s.rcptSet.add(nil, kept)
			s.log.Info("smtp recipients removed by a check", "removed", e.DelRcpts)
		}
	}
	for _, a := range e.AddRcpts {
		s.addRecipient(ctx, a, "smtp recipient added by a check", 0)
	}
	if n := len(e.Bcc); n > 0 {
		if n > 1 {
			s.log.Info("smtp: only the last BCC a check asked for is sent a copy, as in Postfix", "ignored", e.Bcc[:n-1])
		}
		s.addRecipient(ctx, e.Bcc[n-1], "smtp bcc added by a check", delivery.NotifyNever)
	}
	return nil
}

// addRecipient routes a recipient a check added, as from a client
// allowed to relay, and adds its destinations; one that cannot be routed
// is logged and left out.
func (s *session) addRecipient(ctx context.Context, a, what string, notify delivery.Notify) {
	targets, ref := s.b.router.Resolve(ctx, a, true)
	if ref != nil {
		s.log.Warn("smtp: a recipient a check added cannot be routed", "rcpt", a, "reason", ref.Reason, "text", ref.Text)
		return
	}
	for i := range targets {
		targets[i].Rcpt = a
		targets[i].Recipient.Notify = notify
	}
	s.targets = s.rcptSet.add(s.targets, targets)
	s.log.Info(what, "rcpt", a)
}

// sameAddress compares two envelope addresses: the local part as
// written, the domain in any case.
func sameAddress(a, b string) bool {
	a, b = strings.Trim(a, "<>"), strings.Trim(b, "<>")
	i, j := strings.LastIndexByte(a, '@'), strings.LastIndexByte(b, '@')
	if i < 0 || j < 0 {
		return strings.EqualFold(a, b)
	}
	return a[:i] == b[:j] && strings.EqualFold(a[i:], b[j:])
}

// disconnectAsked reports whether the last result carries the
// "disconnect" marker the rate limiter and bofh use.
func (s *session) disconnectAsked() bool {
	if n := len(s.fs.Results); n > 0 {
		return s.fs.Results[n-1].Vars["DISCONNECT"] == "1"
	}
	return false
}

// syncFilterSession copies what the engine learned into the filters' view.
func (s *session) syncFilterSession(c *smtpd.ConnInfo) {
	fs := s.fs
	fs.HELO, fs.ESMTP, fs.TLS, fs.AuthUser, fs.AuthMech = c.HELO, c.ESMTP, c.TLS != nil, c.AuthUser, c.AuthMech
	fs.TLSState, fs.TLSClientVerified = c.TLS, s.clientCertVerified(c.TLS)
	fs.EarlyTalker, fs.PipeliningViolation = c.EarlyTalker, c.PipeliningViolation
	fs.ClientIP = c.RemoteAddr.Addr().Unmap()
	fs.ClientPort = c.RemoteAddr.Port()
	if fs.ClientName == "" {
		fs.ClientName = c.RemoteName
	}
	if name := fs.Var("FCRDNS_NAME"); name != "" {
		fs.ClientName = name
	}
}

// clientCertVerified reports whether the certificate a TLS client
// presented chains to the certificate authorities of "tlsclientcerts ask
// CAFILE" for client authentication; it is checked once per connection.
func (s *session) clientCertVerified(st *tls.ConnectionState) bool {
	if st == nil || len(st.PeerCertificates) == 0 || s.cfg.TLSClientCAs == nil {
		return false
	}
	if s.certChecked != st {
		intermediates := x509.NewCertPool()
		for _, c := range st.PeerCertificates[1:] {
			intermediates.AddCert(c)
		}
		_, err := st.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: s.cfg.TLSClientCAs,
			Intermediates: intermediates, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
		s.certChecked, s.certVerified = st, err == nil
		if err != nil {
			s.log.Info("smtp: the client's certificate does not verify", "subject", st.PeerCertificates[0].Subject.String(), "err", err)
		}
	}
	return s.certVerified
}

// noteUnknown tells the rate limiter about a refused unknown recipient; it
// returns a 421 when the client has tried too many.
func (s *session) noteUnknown(ctx context.Context, c *smtpd.ConnInfo) *smtpd.Reply {
	if s.fl == nil || s.fl.Limiter == nil || !s.checked(c) {
		return nil
	}
	res := s.fl.Limiter.NoteUnknownRecipient(ctx, c.RemoteAddr.Addr().Unmap())
	if res.Verdict != filters.Reject && res.Verdict != filters.Tempfail {
		return nil
	}
	s.fs.Results = append(s.fs.Results, res)
	rep := smtpd.NewReply(421, "4.7.0", "Too many unknown recipients; closing connection")
	s.logRefusal(c, "rcpt", "", rep, res.Filter)
	return rep
}

// logRefusal keeps a refusal in the rejection log, with every check's
// result so far.
func (s *session) logRefusal(c *smtpd.ConnInfo, stage, rcpt string, rep *smtpd.Reply, decider string) {
	if s.b.rejects == nil {
		return
	}
	rec := rejectlog.Record{
		Time: time.Now(), Session: c.ID, Listener: c.Listener, Client: addrString(c.RemoteAddr),
		HELO: c.HELO, AuthUser: c.AuthUser, From: s.from, Stage: stage, Reply: rep.Error(), Decider: decider,
	}
	for _, t := range s.targets {
		rec.Rcpts = append(rec.Rcpts, t.Recipient.Addr)
	}
	if rcpt != "" {
		rec.Rcpts = append(rec.Rcpts, rcpt)
	}
	if s.fs != nil {
		rec.Score = s.fs.Score
		for _, r := range s.fs.Results {
			rec.Results = append(rec.Results, rejectlog.FilterResult{Filter: r.Filter, Verdict: r.Verdict.String(), Score: r.Score, Reason: r.Reason})
		}
	}
	if err := s.b.rejects.Add(rec); err != nil {
		s.log.Warn("rejection log", "err", err)
	}
}

// checkHeaders returns the header fields the checks add to an accepted
// message: Authentication-Results (RFC 8601), the checks' own fields
// (Received-SPF), and the score.
func (s *session) checkHeaders() []byte {
	if s.fs == nil || len(s.fs.Results) == 0 {
		return nil
	}
	var b bytes.Buffer
	if ar := filters.AuthenticationResults(s.fl.AuthservID, s.fs.Results); ar != "" {
		b.WriteString(ar + "\r\n")
	}
	var parts []string
	for _, r := range s.fs.Results {
		for _, h := range r.HeaderFields {
			b.WriteString(strings.TrimRight(h, "\r\n") + "\r\n")
		}
		if r.Score != 0 {
			parts = append(parts, fmt.Sprintf("%s=%.1f", r.Filter, r.Score))
		}
	}
	fmt.Fprintf(&b, "X-Postern-Score: %.1f", s.fs.Score)
	if len(parts) > 0 {
		fmt.Fprintf(&b, " (%s)", strings.Join(parts, " "))
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

// trustedHeaders returns the header fields the Trusted pipeline's
// milters added at the end of DATA (a DKIM-Signature, an X-Spam-Status):
// no Authentication-Results or score, which are about incoming mail.
func (s *session) trustedHeaders() []byte {
	if s.fs == nil || s.dataResults > len(s.fs.Results) {
		return nil
	}
	var b bytes.Buffer
	for _, r := range s.fs.Results[s.dataResults:] {
		for _, h := range r.HeaderFields {
			b.WriteString(strings.TrimRight(h, "\r\n") + "\r\n")
		}
	}
	return b.Bytes()
}

// stripForged removes incoming Authentication-Results fields that claim to
// be ours (RFC 8601 5).
func (s *session) stripForged(msg []byte) []byte {
	if s.fl == nil {
		return msg
	}
	return authres.StripForgedAuthResults(msg, s.fl.AuthservID)
}

// dkimSign returns DKIM-Signature fields for mail the server sends out for
// its own: authenticated users', relay clients' (smtpaccess RELAYCLIENT:
// an application server) and local users' (sendmail -bs), when the author's
// domain is ours or has a key.
func (s *session) dkimSign(ctx context.Context, c *smtpd.ConnInfo, msg []byte) []byte {
	if s.fl == nil || !s.trusted(c) && s.b.localUser == "" {
		return nil
	}
	return SignOutgoing(ctx, s.cfg, s.fl.Signer, msg, s.log)
}

// SignOutgoing returns the DKIM-Signature fields (CRLF-ended) for msg with
// the key of its author's (From) domain, when that domain is ours or has
// a key; nil otherwise, or when signer is nil.
func SignOutgoing(ctx context.Context, cfg *policy.Config, signer *dkim.Signer, msg []byte, log *slog.Logger) []byte {
	if signer == nil {
		return nil
	}
	from, err := dmarc.ReadFromField(bytes.NewReader(msg), 256*1024)
	if err != nil {
		return nil
	}
	domain, err := dmarc.FromDomain(from)
	if err != nil || !cfg.HasDomain(domain) && len(signer.KeysFor(domain)) == 0 {
		return nil
	}
	sig, err := signer.Sign(ctx, domain, bytes.NewReader(msg))
	if err != nil {
		if log != nil {
			log.Debug("dkim: not signed", "domain", domain, "err", err)
		}
		return nil
	}
	return []byte(sig + "\r\n")
}

// newFilterSession starts the filters' view of a connection.
func newFilterSession(c *smtpd.ConnInfo, access map[string]string) *filters.Session {
	return &filters.Session{
		ID: c.ID, Listener: c.Listener, ClientIP: c.RemoteAddr.Addr().Unmap(), ClientPort: c.RemoteAddr.Port(),
		ClientName: c.RemoteName, Access: access,
	}
}
