package server

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"postern/internal/acme"
	"postern/policy"
)

// newACME makes the certificate manager of the "acmehosts" setup; nil for
// none.
func (s *Server) newACME(a *policy.ACME) (*acme.Manager, error) {
	if a == nil {
		return nil, nil
	}
	client := &http.Client{Timeout: time.Minute}
	if a.Roots != nil {
		client.Transport = &http.Transport{
			Proxy:           http.ProxyFromEnvironment,
			TLSClientConfig: &tls.Config{RootCAs: a.Roots},
		}
	}
	opt := acme.Options{
		Hosts: a.Hosts, Email: a.Email, Directory: a.Directory,
		EABKeyID: a.EABKeyID, EABKey: a.EABKey,
		HTTPClient: client, Dir: a.Dir, Logger: s.log.With("service", "acme"),
		Challenge: a.Challenge,
	}
	if a.DNSUpdate != nil {
		opt.DNS = a.DNSUpdate
	}
	m, err := acme.New(opt)
	if err != nil {
		return nil, fmt.Errorf("acmehosts: %w", err)
	}
	return m, nil
}

// swapACME puts m in force (nil: none) and stops the one it replaces. The
// new one starts asking for certificates at once when the listeners are
// up (Start), else at Start.
func (s *Server) swapACME(m *acme.Manager, cfg *policy.Config) {
	old := s.acme.Swap(m)
	if old != nil {
		old.Close()
	}
	s.mu.Lock()
	started := s.started
	s.mu.Unlock()
	if m != nil && started {
		s.warnACMEUnreachable(cfg)
		m.Start()
	}
}

// certificate picks the certificate for a TLS client: an ACME certificate
// for the name it asked for (SNI); else a tlscert certificate whose names
// cover it; else, for clients that send no name or another one (most
// MTAs), the ACME certificate of "me", then of the first host that has
// one; else the first tlscert certificate.
func (s *Server) certificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	cfg := s.Config()
	m := s.acme.Load()
	if m != nil && hello.ServerName != "" {
		if c := m.Certificate(hello.ServerName); c != nil {
			return c, nil
		}
	}
	if c := cfg.MatchingCertificate(hello); c != nil {
		return c, nil
	}
	if m != nil {
		if c := m.Certificate(cfg.Me); c != nil {
			return c, nil
		}
		for _, h := range m.Hosts() {
			if c := m.Certificate(h); c != nil {
				return c, nil
			}
		}
	}
	return cfg.Certificate(hello)
}

// challengeConfig answers the ACME CA's tls-alpn-01 handshakes (RFC 8737)
// on every TLS listener: for a hello asking for "acme-tls/1" alone and a
// name being validated, the challenge certificate; nil (the listener's
// own configuration, which offers no "acme-tls/1") for every other.
// The protocol servers close such a connection after the handshake.
func (s *Server) challengeConfig(hello *tls.ClientHelloInfo) (*tls.Config, error) {
	m := s.acme.Load()
	if m == nil {
		return nil, nil
	}
	return m.ChallengeConfig(hello), nil
}

// warnACMEUnreachable logs when no listener can answer the CA's check: for
// http-01 one on port 80 (a web server in front may forward it), for
// tls-alpn-01 a TLS one on port 443 (a proxy in front may pass it on); the
// log says what is needed either way.
func (s *Server) warnACMEUnreachable(cfg *policy.Config) {
	addrs, tls443 := policy.ChallengeListeners(cfg.Listeners)
	switch cfg.ACME.Challenge {
	case acme.DNS01:
		return // no listener takes part
	case acme.TLSALPN01:
		if !tls443 {
			s.log.Warn("acme: no TLS listener (webs) on port 443; the CA's tls-alpn-01 check makes its TLS handshake there",
				"hosts", cfg.ACME.Hosts)
		}
		return
	}
	if !acme.ChallengeReachable(addrs) {
		s.log.Warn("acme: no acme or web listener on port 80; the CA's http-01 check fetches http://HOST/.well-known/acme-challenge/ there, so forward that path to the acme listener",
			"hosts", cfg.ACME.Hosts)
	}
}

// acmeHTTP answers the CA's http-01 requests with the manager in force.
func (s *Server) acmeHTTP(w http.ResponseWriter, r *http.Request) {
	m := s.acme.Load()
	if m == nil {
		http.NotFound(w, r)
		return
	}
	m.ServeHTTP(w, r)
}

// serveACME serves http-01 challenges, nothing else, on ln (the "acme"
// listener: port 80).
func (s *Server) serveACME(ln net.Listener) {
	s.serveHandler("acme", ln, http.HandlerFunc(s.acmeHTTP), "/.well-known/acme-challenge/")
}

// acmeCollector exports each ACME certificate's expiry, for the alert an
// admin sets on certificates running out.
type acmeCollector struct {
	s       *Server
	expiry  *prometheus.Desc
	missing *prometheus.Desc
}

func newACMECollector(s *Server) *acmeCollector {
	return &acmeCollector{
		s: s,
		expiry: prometheus.NewDesc("postern_acme_certificate_expiry_timestamp_seconds",
			"When the ACME certificate of a host (acmehosts) expires, as a Unix time.", []string{"host"}, nil),
		missing: prometheus.NewDesc("postern_acme_hosts_without_certificate",
			"Hosts of acmehosts that have no valid certificate yet (the tlscert file serves them meanwhile).", nil, nil),
	}
}

func (c *acmeCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.expiry; ch <- c.missing }

func (c *acmeCollector) Collect(ch chan<- prometheus.Metric) {
	m := c.s.acme.Load()
	if m == nil {
		return
	}
	missing := 0
	for _, h := range m.Hosts() {
		cert := m.Certificate(h)
		if cert == nil {
			missing++
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.expiry, prometheus.GaugeValue, float64(cert.Leaf.NotAfter.Unix()), h)
	}
	ch <- prometheus.MustNewConstMetric(c.missing, prometheus.GaugeValue, float64(missing))
}
