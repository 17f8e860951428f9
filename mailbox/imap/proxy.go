package imap

import (
	"context"
	"errors"

	"postern/auth"
	"postern/internal/netserve"
	"postern/mailbox/proxy"
)

// proxyTo logs the session in at the account's mailbox host and relays it
// there (Courier's IMAP_PROXY). The client's credentials were checked
// here first; the backend is logged in with the account's name and the
// same password, under the client's tag, so that the backend's tagged OK
// (with its CAPABILITY code, when it sends one) is the client's answer.
//
// done false means "serve the account here": no backend could be reached
// and the account's mailhost list names this host after the ones tried,
// as in Courier. Otherwise res is the answer to the login (a failure), or
// fatal once the relay has ended: the connection is finished.
func (s *session) proxyTo(tag string, hosts []string, local bool, acct *auth.Account, pass string) (res result, done bool) {
	cfg := s.srv.opt.Proxy
	// The configuration's dial and login timeouts bound each host tried.
	b, err := cfg.LoginIMAP(context.Background(), hosts, tag, acct.Name, pass)
	if err != nil {
		var refusal *proxy.Refusal
		switch {
		case errors.As(err, &refusal):
			s.srv.proxyFailures.Add(1)
			s.log.Warn("imap: mailbox host refused the proxied login", "user", acct.Name, "host", refusal.Host, "reply", refusal.Reply)
			// The backend's NO, re-tagged, when it is one.
			return result{status: "NO", text: refusalText(refusal.Reply)}, true
		case local:
			s.log.Warn("imap: mailbox hosts unavailable, serving here as mailhost says", "user", acct.Name, "err", err)
			return result{}, false
		}
		s.srv.proxyFailures.Add(1)
		s.log.Warn("imap: proxied login failed", "user", acct.Name, "err", err)
		return no("UNAVAILABLE", "Your mailbox server is not available now, try again later"), true
	}
	s.srv.proxied.Add(1)
	s.user, s.account = acct.Name, acct
	s.track.Update(func(i *netserve.SessionInfo) { i.User, i.Proxied = acct.Name, true })
	s.log = s.log.With("user", acct.Name, "mailhost", b.Host)
	s.log.Info("imap: login, proxied")
	for _, line := range b.Reply {
		s.w.line(line).end()
	}
	if err := s.w.flush(); err != nil {
		b.Close()
		return fatal(), true
	}
	relay := &proxy.Relay{Client: s.conn.NetConn(), ClientR: s.br, Backend: b.Backend, WriteTimeout: writeTimeout}
	var st proxy.Stats
	s.conn.Relay(relay, func() { st = relay.Run() })
	if st.Interrupted {
		// The backend has answered everything it was sent and closed: a
		// command boundary, where BYE may go.
		s.bye(s.endText())
	}
	s.log.Info("imap: proxied session ended", "to_backend", st.ToBackend, "to_client", st.ToClient)
	return fatal(), true
}

// refusalText is the backend's "NO [CODE] text" without its status, for
// writeResult.
func refusalText(reply string) string {
	text := reply
	if len(text) >= 2 {
		text = text[2:]
	}
	for len(text) > 0 && text[0] == ' ' {
		text = text[1:]
	}
	if text == "" {
		text = "Login refused by your mailbox server"
	}
	return sanitizeText(text)
}
