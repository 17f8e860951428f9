package gateway

import (
	"bytes"
	"context"
	"log/slog"
	"strings"

	"errors"
	"fmt"
	"os"
	"path/filepath"
	"postern/gateway/delivery"

	"github.com/prometheus/client_golang/prometheus"

	"postern/auth"
	"postern/mailbox/maildir"
)

func openAccountMaildir(acct *auth.Account) (*maildir.Maildir, error) {
	path := acct.MaildirPath()
	md, err := maildir.OpenAs(path, acct.UID, acct.GID)
	if errors.Is(err, maildir.ErrNotMaildir) || errors.Is(err, os.ErrNotExist) {
		if err := maildir.MakeFor(path, acct.UID, acct.GID); err != nil {
			return nil, fmt.Errorf("create maildir for %s: %w", acct.Name, err)
		}
		md, err = maildir.OpenAs(path, acct.UID, acct.GID)
	}
	if err != nil {
		return nil, fmt.Errorf("open maildir for %s: %w", acct.Name, err)
	}
	if acct.Quota != "" {
		want, err := maildir.ParseQuota(acct.Quota)
		if err != nil {
			return nil, fmt.Errorf("account %s: quota %q: %w", acct.Name, acct.Quota, err)
		}
		if have, _, err := md.Quota(); err != nil || have != want {
			if err := md.SetQuota(want); err != nil {
				return nil, fmt.Errorf("account %s: set quota: %w", acct.Name, err)
			}
		}
	}
	return md, nil
}

// overQuota reports whether the account's mailbox is already at or over its
// quota, so RCPT can be refused before the client sends the message.
func overQuota(acct *auth.Account) (bool, error) {
	if acct.Quota == "" {
		// Without a quota in the account, only a maildirsize file (set by
		// maildirmake -q) can limit the mailbox. Without one there is
		// nothing to check, and counting the messages would cost a scan of
		// the whole Maildir for every RCPT.
		if _, err := os.Stat(filepath.Join(acct.MaildirPath(), "maildirsize")); err != nil {
			return false, nil
		}
	}
	md, err := maildir.Open(acct.MaildirPath())
	if err != nil {
		return false, err
	}
	limit, used, err := md.Quota()
	if err != nil {
		return false, err
	}
	if acct.Quota != "" {
		if q, err := maildir.ParseQuota(acct.Quota); err == nil {
			limit = q
		}
	}
	return (limit.Bytes > 0 && used.Bytes >= limit.Bytes) ||
		(limit.Messages > 0 && used.Messages >= limit.Messages), nil
}

// Metrics counts what the SMTP service does, for Prometheus.
type Metrics struct {
	Sessions prometheus.Counter
	Accepted prometheus.Counter
	Bytes    prometheus.Counter
	Rejected *prometheus.CounterVec
}

// NewMetrics creates the SMTP metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer, service string) *Metrics {
	l := prometheus.Labels{"service": service}
	m := &Metrics{
		Sessions: prometheus.NewCounter(prometheus.CounterOpts{Name: "postern_smtp_sessions_total", Help: "SMTP connections accepted.", ConstLabels: l}),
		Accepted: prometheus.NewCounter(prometheus.CounterOpts{Name: "postern_smtp_messages_accepted_total", Help: "Messages acknowledged with 250 after DATA.", ConstLabels: l}),
		Bytes:    prometheus.NewCounter(prometheus.CounterOpts{Name: "postern_smtp_accepted_bytes_total", Help: "Bytes of accepted messages as stored.", ConstLabels: l}),
		Rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "postern_smtp_rejections_total", Help: "Commands refused, by reason.", ConstLabels: l}, []string{"reason"}),
	}
	reg.MustRegister(m.Sessions, m.Accepted, m.Bytes, m.Rejected)
	return m
}

func (m *Metrics) session() {
	if m != nil {
		m.Sessions.Inc()
	}
}

func (m *Metrics) accepted(size int) {
	if m != nil {
		m.Accepted.Inc()
		m.Bytes.Add(float64(size))
	}
}

func (m *Metrics) reject(reason string) {
	if m != nil {
		m.Rejected.WithLabelValues(reason).Inc()
	}
}

// splitAddress splits local@domain, refusing what is not a plain address.
// Quoted local parts stay quoted in local. Source routes, "%" and "!" paths
// are not split further, so they never name another destination: they are
// looked up as (unknown) local parts.
func splitAddress(addr string) (local, domain string, err error) {
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 || at == len(addr)-1 {
		return "", "", fmt.Errorf("no domain in %q", addr)
	}
	local, domain = addr[:at], strings.ToLower(addr[at+1:])
	if strings.ContainsAny(addr, "\x00\r\n\t ") && !strings.HasPrefix(local, "\"") {
		return "", "", fmt.Errorf("bad characters in %q", addr)
	}
	return local, domain, nil
}

// sanitizeHeaderWord keeps a client-supplied name from breaking a header.
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

// ParseNotify turns DSN NOTIFY values (RFC 3461 4.1) into a delivery.Notify.
func ParseNotify(values []string) delivery.Notify { return parseNotify(values) }

// Accept is accept for callers outside the SMTP sessions (sendmail);
// fwdSender is the envelope sender of the copies forwarded by aliases
// (policy.Config.ForwardSender of env.From).
func Accept(ctx context.Context, local *LocalDelivery, q Queue, env delivery.Envelope, targets []Target, msg []byte, fwdSender string, log *slog.Logger) (string, error) {
	return accept(ctx, local, q, env, targets, msg, forwarding{Sender: fwdSender}, nil, log)
}

// countHops counts the Received header fields of msg (RFC 5321 6.3: the
// number of hops a message has made; a loop makes it grow without end).
// Only the header section is read.
func countHops(msg []byte) int {
	n := 0
	for len(msg) > 0 {
		line := msg
		if i := bytes.IndexByte(msg, '\n'); i >= 0 {
			line, msg = msg[:i], msg[i+1:]
		} else {
			msg = nil
		}
		if len(line) == 0 || (len(line) == 1 && line[0] == '\r') {
			break // end of the header
		}
		if len(line) >= 9 && line[8] == ':' && bytes.EqualFold(line[:8], []byte("Received")) {
			n++
		}
	}
	return n
}

// loopRefusal is the refusal for a message over the hop limit, or nil.
func loopRefusal(msg []byte, limit int) *Refusal {
	if n := countHops(msg); n > limit {
		return &Refusal{554, "5.4.6", fmt.Sprintf("Too many hops (%d Received header fields): mail loop", n), "mail_loop"}
	}
	return nil
}
