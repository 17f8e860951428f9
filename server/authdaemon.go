package server

import (
	"context"
	"errors"
	"fmt"
	"net"

	"postern/auth"
	"postern/auth/authdaemon"
	"postern/auth/authtool"
	"postern/auth/userdb"
	"postern/policy"
)

// listenAuthdaemon binds the authdaemonsocket setting's socket, when there
// is one (nil otherwise). It is bound with the rights the server starts
// with, before it becomes the mail user.
func (s *Server) listenAuthdaemon(cfg *policy.Config) (net.Listener, error) {
	if cfg.AuthdaemonSocket == "" {
		return nil, nil
	}
	ln, err := authdaemon.Listen(cfg.AuthdaemonSocket)
	if err != nil {
		return nil, fmt.Errorf("authdaemonsocket: %w", err)
	}
	s.listeners = append(s.listeners, ln)
	return ln, nil
}

// serveAuthdaemon answers Courier authdaemond's protocol on ln from the
// server's authentication service: a reload's new module chain answers
// the next request. Shutdown closes the socket and removes its file (when
// the mail user may: otherwise the next start replaces it).
func (s *Server) serveAuthdaemon(cfg *policy.Config, ln net.Listener) {
	srv := authdaemon.NewServer(authdaemon.ServerOptions{
		Auth:           s.auth,
		ChangePassword: s.changeUserdbPassword,
		Logger:         s.log.With("service", "authdaemon"),
	})
	s.services = append(s.services, srv)
	s.mu.Lock()
	s.bound["authdaemon"] = append(s.bound["authdaemon"], ln.Addr())
	s.mu.Unlock()
	s.serve("authdaemon", srv, ln)
	s.log.Info("listening", "listener", "authdaemon", "address", cfg.AuthdaemonSocket)
}

// changeUserdbPassword changes a userdb account's password for service
// in the userdb source, which is recompiled (authdaemon's PASSWD; the SQL
// and LDAP modules change their own).
func (s *Server) changeUserdbPassword(_ context.Context, a *auth.Account, service, pw string) error {
	if a.Module != userdb.ModuleName {
		return errors.New("the account's module cannot change passwords")
	}
	return authtool.UserdbPasswordChanger(s.Config().Dir)(a.Name, service, pw)
}
