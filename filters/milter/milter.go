// Package milter runs Sendmail/Postfix mail filters (milters) as a check
// of the SMTP-time pipeline, so the content scanners admins already run
// plug in as they do behind Postfix: Rspamd (its proxy in milter mode),
// clamav-milter, spamass-milter, and any other speaking the milter
// protocol (version 6; github.com/emersion/go-milter is the client).
//
// Each milter session covers one message and is held at the end of DATA,
// when the whole transaction is known: the client's connection (address,
// verified name), HELO, MAIL FROM, every accepted RCPT TO, the header and
// the body are sent in one go, with the macros Postfix sends (j,
// {daemon_name}, {client_addr}, {client_name}, {auth_authen}, i, ...). A
// milter's verdict at any step ends the session: reject and replycode 5xx
// refuse the message, tempfail and replycode 4xx defer it, quarantine
// files it into Junk, accept ends checking with no objection. Header
// fields the milter adds or inserts are added to the message; it may
// also change and delete header fields, replace the body, change the
// sender, and add and remove recipients, as Postfix lets it (modify.go).
// "discard" (drop silently) is taken as quarantine, as Postern never
// drops accepted mail.
//
// A milter that cannot be reached, times out or breaks the protocol gets
// the configured failure action: tempfail (the default, as Postfix's
// milter_default_action), accept, or reject.
package milter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	gomilter "github.com/emersion/go-milter"

	"postern/filters"
)

// Config is one milter: where it listens and how to treat failures.
type Config struct {
	Name    string          // the name in the "milters" setting; the filter is "milter:NAME"
	Network string          // "unix" or "tcp"
	Address string          // socket path, or host:port
	OnError filters.OnError // default filters.OnErrorTempfail
	Timeout time.Duration   // connect, and each reply; default 30s
	// Authenticated: the milter also sees the mail of authenticated
	// users and of clients smtpaccess lets relay (outgoing mail), as
	// Postfix's smtpd_milters do; the "authenticated" option, default yes.
	Authenticated bool
}

// Options configure a Filter.
type Options struct {
	Config   Config
	Hostname string // our name, the "j" macro
}

// Filter is a milter as a DataChecker.
type Filter struct {
	cfg      Config
	hostname string
}

// New returns the filter for one milter.
func New(opt Options) (*Filter, error) {
	c := opt.Config
	if c.Name == "" || (c.Network != "unix" && c.Network != "tcp") || c.Address == "" {
		return nil, fmt.Errorf("milter: incomplete configuration %+v", c)
	}
	if c.Timeout <= 0 {
		c.Timeout = 30 * time.Second
	}
	return &Filter{cfg: c, hostname: opt.Hostname}, nil
}

// Name implements filters.Filter.
func (f *Filter) Name() string { return "milter:" + f.cfg.Name }

// ctxDialer dials within the stage's context and the milter's timeout.
type ctxDialer struct {
	ctx     context.Context
	timeout time.Duration
	conn    net.Conn // the last connection made
}

func (d *ctxDialer) Dial(network, addr string) (net.Conn, error) {
	nd := net.Dialer{Timeout: d.timeout}
	c, err := nd.DialContext(d.ctx, network, addr)
	d.conn = c
	return c, err
}

// CheckData implements filters.DataChecker.
func (f *Filter) CheckData(ctx context.Context, s *filters.Session, msg filters.Message) filters.Result {
	res, err := f.run(ctx, s, msg)
	if err != nil {
		return f.failure(err)
	}
	return res
}

// failure applies OnError to a milter that could not be asked.
func (f *Filter) failure(err error) filters.Result {
	return filters.ServiceFailure(f.Name(), "milter "+f.cfg.Name+" failed: "+err.Error(), f.cfg.OnError,
		filters.Reply{Code: 550, Enhanced: "5.7.1", Text: "Message refused by content filter"},
		filters.Reply{Code: 451, Enhanced: "4.7.1", Text: "Content filter unavailable, try again later"})
}

// fullActions is every change the pipeline can carry out (package
// comment); not recipients with ESMTP arguments (SMFIF_ADDRCPT_PAR).
const fullActions = gomilter.OptAddHeader | gomilter.OptChangeHeader | gomilter.OptChangeBody |
	gomilter.OptQuarantine | gomilter.OptChangeFrom | gomilter.OptAddRcpt | gomilter.OptRemoveRcpt

// v2Actions are the actions of milter protocol version 2.
const v2Actions gomilter.OptAction = 0x3f

// session connects to the milter and negotiates actions.
func (f *Filter) session(ctx context.Context, timeout time.Duration, actions gomilter.OptAction) (*gomilter.ClientSession, error) {
	d := &ctxDialer{ctx: ctx, timeout: timeout}
	client := gomilter.NewClientWithOptions(f.cfg.Network, f.cfg.Address, gomilter.ClientOptions{
		Dialer:       d,
		ReadTimeout:  timeout,
		WriteTimeout: timeout,
		ActionMask:   actions,
	})
	sess, err := client.Session()
	if err != nil && d.conn != nil {
		d.conn.Close() // go-milter leaves it open when negotiation fails
	}
	return sess, err
}

func (f *Filter) run(ctx context.Context, s *filters.Session, msg filters.Message) (filters.Result, error) {
	timeout := f.cfg.Timeout
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < timeout {
		timeout = max(time.Until(dl), time.Millisecond)
	}
	sess, err := f.session(ctx, timeout, fullActions)
	if errors.Is(err, gomilter.ErrUnsupportedMilterVersion) {
		// An older milter (protocol version 2, as go-milter's server
		// speaks) knows no actions past quarantine: ask again without
		// changing the sender.
		sess, err = f.session(ctx, timeout, fullActions&v2Actions)
	}
	if err != nil {
		return filters.Result{}, err
	}
	defer sess.Close()
	// The stage's deadline ends a milter that stalls inside its timeout.
	stop := context.AfterFunc(ctx, func() { sess.Close() })
	defer stop()

	family, port, addr := gomilter.FamilyUnknown, uint16(0), ""
	if s.ClientIP.IsValid() {
		family, port, addr = gomilter.FamilyInet, s.ClientPort, s.ClientIP.Unmap().String()
		if s.ClientIP.Unmap().Is6() {
			family = gomilter.FamilyInet6
		}
	}
	clientName := s.ClientName
	if clientName == "" {
		clientName = "[" + addr + "]" // Postfix's form for an unverified name
	}
	if err := sess.Macros(gomilter.CodeConn, "j", f.hostname, "{daemon_name}", "postern", "{client_addr}", addr,
		"{client_name}", clientName, "{client_port}", fmt.Sprint(port), "_", clientName+" ["+addr+"]"); err != nil {
		return filters.Result{}, err
	}
	steps := []struct {
		stage string
		do    func() (*gomilter.Action, error)
	}{
		{"connect", func() (*gomilter.Action, error) { return sess.Conn(clientName, family, port, addr) }},
		{"helo", func() (*gomilter.Action, error) { return sess.Helo(s.HELO) }},
		{"mail", func() (*gomilter.Action, error) {
			kv := []string{"{mail_addr}", s.From}
			if s.AuthUser != "" {
				kv = append(kv, "{auth_authen}", s.AuthUser)
				if s.AuthMech != "" {
					kv = append(kv, "{auth_type}", s.AuthMech)
				}
			}
			if err := sess.Macros(gomilter.CodeMail, kv...); err != nil {
				return nil, err
			}
			return sess.Mail("<"+s.From+">", nil)
		}},
	}
	for _, r := range s.Rcpts {
		rcpt := r
		steps = append(steps, struct {
			stage string
			do    func() (*gomilter.Action, error)
		}{"rcpt", func() (*gomilter.Action, error) {
			if err := sess.Macros(gomilter.CodeRcpt, "{rcpt_addr}", rcpt); err != nil {
				return nil, err
			}
			return sess.Rcpt("<"+rcpt+">", nil)
		}})
	}
	for _, st := range steps {
		act, err := st.do()
		if err != nil {
			return filters.Result{}, err
		}
		if r, done := f.verdict(act, st.stage); done {
			return r, nil
		}
	}

	raw := make([]byte, msg.Size())
	if _, err := msg.ReadAt(raw, 0); err != nil && !errors.Is(err, io.EOF) {
		return filters.Result{}, fmt.Errorf("reading the message: %w", err)
	}
	header, body := splitMessage(raw)
	if err := sess.Macros(gomilter.CodeHeader, "i", s.ID); err != nil {
		return filters.Result{}, err
	}
	for _, h := range header {
		if h.name == "" {
			continue
		}
		act, err := sess.HeaderField(h.name, h.value)
		if err != nil {
			return filters.Result{}, err
		}
		if r, done := f.verdict(act, "header"); done {
			return r, nil
		}
	}
	act, err := sess.HeaderEnd()
	if err != nil {
		return filters.Result{}, err
	}
	if r, done := f.verdict(act, "end of header"); done {
		return r, nil
	}
	mods, act, err := sess.BodyReadFrom(bytes.NewReader(body))
	if err != nil {
		return filters.Result{}, err
	}
	return f.endOfMessage(mods, act, header, body)
}

// verdict turns a milter's reply into the check's result; done is false
// for "continue".
func (f *Filter) verdict(act *gomilter.Action, stage string) (filters.Result, bool) {
	r := filters.Result{Filter: f.Name()}
	switch act.Code {
	case gomilter.ActContinue, gomilter.ActSkip:
		return r, false
	case gomilter.ActAccept:
		r.Reason = "milter " + f.cfg.Name + " accepted the message at " + stage
		return r, true
	case gomilter.ActDiscard:
		r.Verdict, r.Hold = filters.Quarantine, true
		r.Reason = "milter " + f.cfg.Name + " asked to discard the message at " + stage + " (kept in Junk, held in the queue)"
		return r, true
	case gomilter.ActReject:
		r.Verdict, r.Code, r.Enhanced, r.Message = filters.Reject, 550, "5.7.1", "Message refused by content filter"
	case gomilter.ActTempFail:
		r.Verdict, r.Code, r.Enhanced, r.Message = filters.Tempfail, 451, "4.7.1", "Message deferred by content filter, try again later"
	case gomilter.ActReplyCode:
		code, enhanced, text := parseReply(act.SMTPCode, act.SMTPText)
		r.Verdict = filters.Reject
		if code < 500 {
			r.Verdict = filters.Tempfail
		}
		r.Code, r.Enhanced, r.Message = code, enhanced, text
	default:
		r.Verdict, r.Code, r.Enhanced, r.Message = filters.Tempfail, 451, "4.7.1", "Content filter unavailable, try again later"
		r.Reason = fmt.Sprintf("milter %s answered %q at %s", f.cfg.Name, act.Code, stage)
		return r, true
	}
	r.Reason = fmt.Sprintf("milter %s: %s at %s", f.cfg.Name, r.Verdict, stage)
	return r, true
}

// endOfMessage applies the final reply and the milter's changes:
// quarantine, header fields added, changed and deleted, a new body, a new
// sender, recipients added and removed (modify.go).
func (f *Filter) endOfMessage(mods []gomilter.ModifyAction, act *gomilter.Action, header []field, body []byte) (filters.Result, error) {
	r, done := f.verdict(act, "end of message")
	if !done {
		r = filters.Result{Filter: f.Name()}
	}
	if r.Verdict == filters.Reject || r.Verdict == filters.Tempfail {
		return r, nil
	}
	ed := editor{header: header, body: body}
	var notes []string
	for _, m := range mods {
		switch m.Code {
		case gomilter.ActAddHeader, gomilter.ActInsertHeader:
			name := strings.TrimSpace(m.HeaderName)
			value := strings.TrimLeft(m.HeaderValue, " \t")
			if !validFieldName(name) || strings.ContainsAny(value, "\x00") {
				notes = append(notes, "bad header field "+fmt.Sprintf("%q", name)+" ignored")
				continue
			}
			if m.Code == gomilter.ActInsertHeader && m.HeaderIndex > 0 {
				ed.insert(int(m.HeaderIndex), name, value)
				continue
			}
			// Added fields go on top, with the checks' own fields.
			r.HeaderFields = append(r.HeaderFields, name+": "+normalizeFolding(value))
		case gomilter.ActChangeHeader:
			name := strings.TrimSpace(m.HeaderName)
			if !validFieldName(name) || strings.ContainsAny(m.HeaderValue, "\x00") {
				notes = append(notes, "bad header change "+fmt.Sprintf("%q", name)+" ignored")
				continue
			}
			ed.change(name, int(m.HeaderIndex), strings.TrimLeft(m.HeaderValue, " \t"))
		case gomilter.ActReplBody:
			if err := ed.replaceBody(m.Body); err != nil {
				return filters.Result{}, err
			}
		case gomilter.ActChangeFrom:
			addr, ok := envelopeAddress(m.From, true)
			if !ok {
				notes = append(notes, fmt.Sprintf("bad sender %q ignored", m.From))
				continue
			}
			r.Envelope = envelope(r.Envelope)
			r.Envelope.From = &addr
			notes = append(notes, "sender changed to <"+addr+">")
		case gomilter.ActAddRcpt, gomilter.ActDelRcpt:
			addr, ok := envelopeAddress(m.Rcpt, false)
			if !ok {
				notes = append(notes, fmt.Sprintf("bad recipient %q ignored", m.Rcpt))
				continue
			}
			r.Envelope = envelope(r.Envelope)
			if m.Code == gomilter.ActAddRcpt {
				r.Envelope.AddRcpts = append(r.Envelope.AddRcpts, addr)
				notes = append(notes, "recipient <"+addr+"> added")
			} else {
				r.Envelope.DelRcpts = append(r.Envelope.DelRcpts, addr)
				notes = append(notes, "recipient <"+addr+"> removed")
			}
		case gomilter.ActQuarantine:
			if r.Verdict == filters.NoOpinion || r.Verdict == filters.Accept {
				r.Verdict, r.Hold = filters.Quarantine, true
				r.Reason = "milter " + f.cfg.Name + " quarantined the message: " + m.Reason
			}
		}
	}
	if ed.changed {
		r.Rewritten = ed.message()
		notes = append(notes, ed.summary())
	}
	if r.Reason == "" {
		r.Reason = "milter " + f.cfg.Name + " passed the message"
	}
	if len(notes) > 0 {
		r.Reason += " (" + strings.Join(notes, "; ") + ")"
	}
	return r, nil
}

// parseReply checks a replycode action: its code must be 4xx or 5xx and
// agree with the text's enhanced code, else defaults stand in.
func parseReply(code int, text string) (int, string, string) {
	if code < 400 || code > 599 {
		code = 451
	}
	text = strings.TrimSpace(strings.ReplaceAll(strings.ReplaceAll(text, "\r", " "), "\n", " "))
	enhanced := ""
	if f := strings.Fields(text); len(f) > 0 && len(f[0]) >= 5 && f[0][0] == byte('0'+code/100) && strings.Count(f[0], ".") == 2 {
		enhanced = f[0]
		text = strings.TrimSpace(strings.TrimPrefix(text, f[0]))
	}
	if enhanced == "" {
		enhanced = fmt.Sprintf("%d.7.1", code/100)
	}
	if text == "" {
		text = "Message refused by content filter"
	}
	return code, enhanced, text
}

// field is one line group of the header as received: a field's name and
// value (folding kept, the leading blank removed), and its bytes with the
// line ends. A line that is not a field has no name; it is not shown to
// milters, and kept as it was when the message is rewritten.
type field struct {
	name, value string
	raw         []byte
}

// splitMessage separates the header fields from the body (after the
// empty line, CRLF line ends as received); body is nil when there is no
// empty line.
func splitMessage(raw []byte) ([]field, []byte) {
	var fields []field
	rest := raw
	for len(rest) > 0 {
		i := bytes.IndexByte(rest, '\n') + 1
		if i == 0 {
			i = len(rest)
		}
		line := rest[:i]
		rest = rest[i:]
		trimmed := bytes.TrimRight(line, "\r\n")
		if len(trimmed) == 0 {
			return fields, rest
		}
		if last := len(fields) - 1; (trimmed[0] == ' ' || trimmed[0] == '\t') && last >= 0 && fields[last].name != "" {
			fields[last].value += "\r\n" + string(trimmed)
			fields[last].raw = append(fields[last].raw, line...)
			continue
		}
		name, value, ok := bytes.Cut(trimmed, []byte(":"))
		if !ok {
			// Not a header field: not shown to milters, as Postfix's
			// cleanup would not pass it either.
			fields = append(fields, field{raw: append([]byte(nil), line...)})
			continue
		}
		fields = append(fields, field{string(bytes.TrimSpace(name)), strings.TrimLeft(string(value), " \t"), append([]byte(nil), line...)})
	}
	return fields, nil
}

// validFieldName: printable ASCII without colon (RFC 5322 2.2).
func validFieldName(n string) bool {
	if n == "" || len(n) > 200 {
		return false
	}
	for i := 0; i < len(n); i++ {
		if n[i] <= ' ' || n[i] > '~' || n[i] == ':' {
			return false
		}
	}
	return true
}

// normalizeFolding makes every line break in a value a CRLF followed by
// white space, so an added field cannot end the header or start a new one.
func normalizeFolding(v string) string {
	v = strings.ReplaceAll(v, "\r\n", "\n")
	v = strings.ReplaceAll(v, "\r", "\n")
	lines := strings.Split(v, "\n")
	for i := 1; i < len(lines); i++ {
		if l := lines[i]; l == "" || (l[0] != ' ' && l[0] != '\t') {
			lines[i] = "\t" + l
		}
	}
	out := strings.Join(lines, "\r\n")
	return strings.TrimRight(out, "\r\n\t ")
}

var _ filters.DataChecker = (*Filter)(nil)

// ParseAddress reads a milter address as Postfix writes it:
// "unix:/path/to/socket", "inet:host:port" or "inet:[::1]:port", and
// "host:port" or "/path" on their own.
func ParseAddress(s string) (network, address string, err error) {
	return filters.ParseServiceAddress(s, "milter")
}
