package server

import (
	"net"
	"net/http"

	"postern/policy"
	"postern/web/autoconfig"
)

// setAutoconfig makes the client autoconfiguration and MTA-STS answers
// (web/autoconfig) from cfg and its MTA-STS policies. Start calls it again
// once the listeners are bound, so that a listener on port 0 is announced
// with the port it got.
func (s *Server) setAutoconfig(cfg *policy.Config, sts *autoconfig.Policies) {
	s.mu.Lock()
	s.mtaSTS = sts
	s.mu.Unlock()
	set := autoconfig.FromConfig(cfg, sts, s.boundAddrs)
	s.autoconf.Store(autoconfig.New(set, s.log.With("service", "autoconfig")))
}

// boundAddrs returns a copy of a listener's bound addresses.
func (s *Server) boundAddrs(name string) []net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]net.Addr(nil), s.bound[name]...)
}

// serveAutoconfig answers with the handler of the configuration in force.
func (s *Server) serveAutoconfig(w http.ResponseWriter, r *http.Request) {
	s.autoconf.Load().ServeHTTP(w, r)
}
