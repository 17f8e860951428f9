package gateway

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/emersion/go-sasl"
	"github.com/prometheus/client_golang/prometheus"

	"postern/auth"
	"postern/mailbox/maildir"
)

// ErrOverQuota is returned (wrapped) by a Delivery when the mailbox is full.
var ErrOverQuota = maildir.ErrOverQuota

// MaildirDelivery delivers into the account's Maildir++ INBOX, creating the
// Maildir on first delivery, and applies the account's quota (the userdb
// "quota" field) to maildirsize the way Courier's deliverquota does.
type MaildirDelivery struct{}

// DeliverLocal implements Delivery.
func (MaildirDelivery) DeliverLocal(ctx context.Context, acct *auth.Account, msg []byte) error {
	md, err := openAccountMaildir(acct)
	if err != nil {
		return err
	}
	if _, err := md.Deliver(maildir.Inbox, bytes.NewReader(msg), maildir.DeliverOptions{}); err != nil {
		return fmt.Errorf("deliver to %s: %w", acct.Name, err)
	}
	return nil
}

func openAccountMaildir(acct *auth.Account) (*maildir.Maildir, error) {
	path := acct.MaildirPath()
	md, err := maildir.Open(path)
	if errors.Is(err, maildir.ErrNotMaildir) || errors.Is(err, os.ErrNotExist) {
		if err := maildir.Make(path); err != nil {
			return nil, fmt.Errorf("create maildir for %s: %w", acct.Name, err)
		}
		md, err = maildir.Open(path)
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

// loginServer is the server side of the obsolete but still common SASL
// LOGIN mechanism (draft-murchison-sasl-login): go-sasl only has a client.
type loginServer struct {
	check func(user, pass string) error
	user  string
	step  int
}

func newLoginServer(check func(user, pass string) error) sasl.Server {
	return &loginServer{check: check}
}

func (l *loginServer) Next(response []byte) (challenge []byte, done bool, err error) {
	switch l.step {
	case 0:
		l.step = 1
		if response == nil {
			return []byte("Username:"), false, nil
		}
		fallthrough // initial response carries the user name
	case 1:
		l.user = string(response)
		l.step = 2
		return []byte("Password:"), false, nil
	case 2:
		l.step = 3
		return nil, true, l.check(l.user, string(response))
	}
	return nil, true, errors.New("sasl LOGIN: unexpected response")
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

func tlsVersionName(v uint16) string {
	switch v {
	case tls.VersionTLS13:
		return "TLSv1.3"
	case tls.VersionTLS12:
		return "TLSv1.2"
	case tls.VersionTLS11:
		return "TLSv1.1"
	case tls.VersionTLS10:
		return "TLSv1.0"
	}
	return fmt.Sprintf("TLS(0x%04x)", v)
}

func tlsCipherName(id uint16) string { return tls.CipherSuiteName(id) }
