package server

import (
	"context"
	"errors"
	"fmt"

	"postern/auth"
	"postern/auth/authdaemon"
	"postern/auth/authtool"
	"postern/auth/userdb"
	"postern/policy"
)

// startAuthdaemon serves Courier authdaemond's protocol at the
// authdaemonsocket setting's path, when there is one, from the server's
// authentication service: a reload's new module chain answers the next
// request. Shutdown closes the socket and removes its file.
func (s *Server) startAuthdaemon(cfg *policy.Config) error {
	if cfg.AuthdaemonSocket == "" {
		return nil
	}
	ln, err := authdaemon.Listen(cfg.AuthdaemonSocket)
	if err != nil {
		return fmt.Errorf("authdaemonsocket: %w", err)
	}
	srv := authdaemon.NewServer(authdaemon.ServerOptions{
		Auth:           s.auth,
		ChangePassword: s.changeUserdbPassword,
		Logger:         s.log.With("service", "authdaemon"),
	})
	s.listeners = append(s.listeners, ln)
	s.services = append(s.services, srv)
	s.mu.Lock()
	s.bound["authdaemon"] = append(s.bound["authdaemon"], ln.Addr())
	s.mu.Unlock()
	s.serve("authdaemon", srv, ln)
	s.log.Info("listening", "listener", "authdaemon", "address", cfg.AuthdaemonSocket)
	return nil
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
