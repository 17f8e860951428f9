package proxy

import (
	"crypto/tls"
	"log/slog"

	"postern/policy"
)

// Protocols FromPolicy knows.
const (
	IMAP = "imap"
	POP3 = "pop3"
)

// FromPolicy is the proxying setup of protocol (IMAP or POP3) in cfg: the
// imapproxy/pop3proxy, proxyhostname, imapproxyport/pop3proxyport,
// proxytls, proxytlsverify and proxytlsca settings (docs/proxy.md).
func FromPolicy(cfg *policy.Config, protocol string, log *slog.Logger) *Config {
	c := &Config{Me: cfg.ProxyHostname, Logger: log}
	switch protocol {
	case IMAP:
		c.Enabled, c.Port = cfg.IMAPProxy, cfg.IMAPProxyPort
	case POP3:
		c.Enabled, c.Port = cfg.POP3Proxy, cfg.POP3ProxyPort
	}
	if cfg.ProxyStartTLS {
		c.TLS = TLSStartTLS
		c.TLSConfig = &tls.Config{
			MinVersion:         cfg.TLSMinVersion,
			RootCAs:            cfg.ProxyTLSCAs,
			InsecureSkipVerify: !cfg.ProxyTLSVerify, // the admin's choice: "proxytlsverify no"
		}
	}
	return c
}
