package pop3

import (
	"errors"

	"postern/auth"
	"postern/internal/netserve"
	"postern/mailbox/proxy"
)

// proxyTo logs the session in at the account's mailbox host and relays it
// there (Courier's POP3_PROXY). The client's credentials were checked
// here first; the backend is logged in with USER and PASS, the account's
// name and the same password, and its "+OK" to PASS is the client's
// answer.
//
// done false means "serve the account here": no backend could be reached
// and the account's mailhost list names this host after the ones tried,
// as in Courier. Otherwise stop says whether the session ends: it does
// once a relay has run.
func (s *session) proxyTo(hosts []string, local bool, acct *auth.Account, password string) (stop, done bool) {
	b, err := s.srv.opt.Proxy.LoginPOP3(s.srv.baseCtx, hosts, acct.Name, password)
	if err != nil {
		var refusal *proxy.Refusal
		switch {
		case errors.As(err, &refusal):
			s.srv.proxyFailures.Add(1)
			s.log.Warn("pop3: mailbox host refused the proxied login", "user", acct.Name, "host", refusal.Host, "reply", refusal.Reply)
			s.reply("-ERR [AUTH] Your mailbox server refused the login")
			return false, true
		case local:
			s.log.Warn("pop3: mailbox hosts unavailable, serving here as mailhost says", "user", acct.Name, "err", err)
			return false, false
		}
		s.srv.proxyFailures.Add(1)
		s.log.Warn("pop3: proxied login failed", "user", acct.Name, "err", err)
		s.reply("-ERR [SYS/TEMP] Your mailbox server is not available now, try again later")
		return false, true
	}
	s.srv.proxied.Add(1)
	s.srv.logins.Add(1)
	s.user = acct.Name
	s.track.Update(func(i *netserve.SessionInfo) { i.User, i.Proxied = acct.Name, true })
	log := s.log.With("user", acct.Name, "mailhost", b.Host)
	log.Info("pop3: login, proxied", "tls", s.isTLS)
	s.reply("%s", b.Reply)
	if err := s.w.Flush(); err != nil {
		b.Close()
		return true, true
	}
	relay := &proxy.Relay{Client: s.conn.NetConn(), ClientR: s.r, Backend: b.Backend, WriteTimeout: s.srv.opt.IdleTimeout}
	var st proxy.Stats
	s.conn.Relay(relay, func() { st = relay.Run() })
	log.Info("pop3: proxied session ended", "to_backend", st.ToBackend, "to_client", st.ToClient, "interrupted", st.Interrupted)
	return true, true
}
