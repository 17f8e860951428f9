package server

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"postern/auth"
	"postern/auth/authtool"
	"postern/auth/userdb"
	"postern/filters/dkim"
	"postern/gateway"
	"postern/policy"
	"postern/web/webmail"
	"postern/web/websession"
)

// newWebmail builds the webmail served under /mail/ on the web listener:
// it logs in through the server's authentication service (and its
// failed-login guard), sends through the same path as local submissions,
// and changes passwords through the account's module.
func (s *Server) newWebmail(cfg *policy.Config) (*webmail.Handler, error) {
	return webmail.New(webmail.Options{
		Auth:           s.auth,
		Send:           s.webmailSend,
		MaxMessageSize: func() int64 { return s.Config().SizeLimit },
		Address: func(a *auth.Account) string {
			if strings.Contains(a.Name, "@") {
				return a.Name
			}
			return a.Name + "@" + gateway.DefaultDomain(s.Config())
		},
		ChangePassword: s.changePassword,
		Idle:           cfg.WebmailIdle,
		Max:            cfg.WebmailMaxSession,
		DisableFilters: !cfg.WebmailFilters,
		Logger:         s.log.With("service", "webmail"),
		Sessions:       s.sessionStore(),
		JunkLearn:      s.LearnJunk,
		Purger:         s.purger,
	})
}

// sessionStore is where the web applications keep their login sessions:
// the state store (docs/state.md), so that a restart logs nobody out.
func (s *Server) sessionStore() websession.Persister {
	if s.store == nil {
		return nil
	}
	return s.store
}

// webmailSend submits a webmail message as an authenticated user's: the
// Router's policy, DKIM signing, local delivery or the queue.
func (s *Server) webmailSend(ctx context.Context, m webmail.Outgoing) error {
	var signer *dkim.Signer
	if fl := s.filters.Load(); fl != nil {
		signer = fl.Signer
	}
	sub := &gateway.Submitter{Router: s.mta.Router, Local: s.mta.Local, Queue: s.mta.Queue, Me: s.Config().Me,
		Log: s.log.With("service", "webmail"), Signer: signer}
	_, ref, err := sub.Submit(ctx, gateway.Submission{Login: m.Login, UID: -1, From: m.From, Rcpts: m.Rcpts, Msg: m.Msg, Via: "webmail"})
	if ref != nil {
		if ref.Code >= 500 {
			return &webmail.Refused{Reason: ref.Text}
		}
		return fmt.Errorf("temporary refusal: %w", ref)
	}
	return err
}

// changePassword changes the webmail password of a: through its module
// when it can (SQL, LDAP; the authcache forgets the account), in the
// userdb source (recompiled) for userdb accounts.
func (s *Server) changePassword(ctx context.Context, a *auth.Account, pw string) error {
	for _, m := range s.auth.Modules() {
		if m.Name() != a.Module {
			continue
		}
		if ps := auth.SetterOf(m); ps != nil {
			return ps.SetPassword(ctx, a, auth.ServiceWebmail, pw)
		}
	}
	if a.Module == userdb.ModuleName {
		return authtool.UserdbPasswordChanger(s.Config().Dir)(a.Name, auth.ServiceWebmail, pw)
	}
	return errors.New("the account's module cannot change passwords")
}

func webmailCollector(h *webmail.Handler) prometheus.Collector {
	counter := func(name, help string, v func(webmail.Stats) int64) statMetric[webmail.Stats] {
		return statMetric[webmail.Stats]{prometheus.NewDesc(name, help, nil, nil), prometheus.CounterValue, func(s webmail.Stats) float64 { return float64(v(s)) }}
	}
	return statsTable(h.Stats, []statMetric[webmail.Stats]{
		{prometheus.NewDesc("postern_webmail_sessions_active", "Webmail sessions logged in now.", nil, nil), prometheus.GaugeValue, func(s webmail.Stats) float64 { return float64(s.Sessions) }},
		counter("postern_webmail_logins_total", "Successful webmail logins.", func(s webmail.Stats) int64 { return s.Logins }),
		counter("postern_webmail_login_failures_total", "Refused webmail logins.", func(s webmail.Stats) int64 { return s.LoginFailures }),
		counter("postern_webmail_messages_read_total", "Messages opened in the webmail.", func(s webmail.Stats) int64 { return s.MessagesRead }),
		counter("postern_webmail_messages_sent_total", "Messages sent from the webmail.", func(s webmail.Stats) int64 { return s.MessagesSent }),
		counter("postern_webmail_send_failures_total", "Webmail messages refused or not sent.", func(s webmail.Stats) int64 { return s.SendFailures }),
	})
}
