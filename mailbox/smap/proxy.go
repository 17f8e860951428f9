package smap

import (
	"context"
	"errors"

	"postern/auth"
	"postern/internal/netserve"
	"postern/mailbox/proxy"
)

// proxyTo logs the session in at the account's mailbox host and relays it
// there (Courier's IMAP_PROXY covers SMAP, which its imapd serves). The
// client's credentials were checked here first; the backend's IMAP port
// is switched to SMAP with a "\SMAP1"-tagged LOGIN of the account's name
// and the same password, and its "+OK" is the client's answer.
//
// done false means "serve the account here": no backend could be reached
// and the account's mailhost list names this host after the ones tried,
// as in Courier. Otherwise ok says whether the login succeeded: the relay
// has then run, and the session is over (sess.proxied).
func (sess *session) proxyTo(hosts []string, local bool, acct *auth.Account, pass string) (ok, done bool) {
	b, err := sess.srv.opt.Proxy.LoginSMAP(context.Background(), hosts, acct.Name, pass)
	if err != nil {
		var refusal *proxy.Refusal
		switch {
		case errors.As(err, &refusal):
			sess.srv.proxyFailures.Add(1)
			sess.log.Warn("smap: mailbox host refused the proxied login", "user", acct.Name, "host", refusal.Host, "reply", refusal.Reply)
			sess.writeString("-ERR Login refused by your mailbox server.\r\n")
			return false, true
		case local:
			sess.log.Warn("smap: mailbox hosts unavailable, serving here as mailhost says", "user", acct.Name, "err", err)
			return false, false
		}
		sess.srv.proxyFailures.Add(1)
		sess.log.Warn("smap: proxied login failed", "user", acct.Name, "err", err)
		sess.writeString("-ERR Your mailbox server is not available now, try again later.\r\n")
		return false, true
	}
	sess.srv.proxied.Add(1)
	sess.srv.logins.Add(1)
	sess.proxied = true
	sess.user, sess.acct = acct.Name, acct
	sess.track.Update(func(i *netserve.SessionInfo) { i.User, i.Proxied = acct.Name, true })
	log := sess.log.With("user", acct.Name, "mailhost", b.Host)
	log.Info("smap: login, proxied")
	sess.writeString(b.Reply + "\n")
	if err := sess.flush(); err != nil {
		b.Close()
		return true, true
	}
	relay := &proxy.Relay{Client: sess.conn.NetConn(), ClientR: sess.br, Backend: b.Backend, WriteTimeout: writeTimeout}
	var st proxy.Stats
	sess.conn.Relay(relay, func() { st = relay.Run() })
	log.Info("smap: proxied session ended", "to_backend", st.ToBackend, "to_client", st.ToClient, "interrupted", st.Interrupted)
	return true, true
}
