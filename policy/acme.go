package policy

import (
	"crypto/x509"
	"encoding/base64"
	"net"
	"net/mail"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"postern/internal/acme"
)

// ACME is the automatic certificate setup: the "acmehosts" setting and
// its companions (docs/acme.md).
type ACME struct {
	// Hosts get one certificate each ("acmehosts": names separated by
	// spaces or lines), lower case, in order.
	Hosts []string
	// Email is the account's contact ("acmeemail"); "" for none.
	Email string
	// Directory is the CA's ACME directory URL ("acmedirectory"; a URL or
	// one of the names in ACMEDirectories; default Let's Encrypt).
	Directory string
	// RootsFile ("acmeca") holds PEM certificates trusted for the
	// directory's HTTPS besides the system's (a private CA); Roots is
	// the pool of both, nil for the system's alone.
	RootsFile string
	Roots     *x509.CertPool
	// EABKeyID and EABKey bind the account to one at the CA ("acmeeab":
	// KEYID KEY, as ZeroSSL or Google show them).
	EABKeyID, EABKey string
	// Dir keeps the account key and the certificates
	// (DATADIR/state/acme).
	Dir string
	// Challenge is the one the CA checks: acme.HTTP01, acme.TLSALPN01
	// or acme.DNS01, as "acmechallenge" forces it, else dns-01 when
	// DNSUpdate is set, else as the listeners allow
	// (acme.ChooseChallenge); ChallengeForced says which.
	Challenge       string
	ChallengeForced bool
	// DNSUpdate publishes dns-01's records ("acmednsupdate"); nil when
	// the file is absent.
	DNSUpdate *acme.RFC2136
}

// ACMEDirectories are the CAs "acmedirectory" knows by name.
var ACMEDirectories = map[string]string{
	"letsencrypt":         acme.LetsEncrypt,
	"letsencrypt-staging": "https://acme-staging-v02.api.letsencrypt.org/directory",
	"zerossl":             "https://acme.zerossl.com/v2/DV90",
	"buypass":             "https://api.buypass.com/acme/directory",
	"google":              "https://dv.acme-v02.api.pki.goog/directory",
}

// Same reports whether b is the same setup (a reload that changes nothing
// keeps the running certificate manager).
func (a *ACME) Same(b *ACME) bool {
	if a == nil || b == nil {
		return a == b
	}
	return slices.Equal(a.Hosts, b.Hosts) && a.Email == b.Email && a.Directory == b.Directory &&
		a.RootsFile == b.RootsFile && a.EABKeyID == b.EABKeyID && a.EABKey == b.EABKey && a.Dir == b.Dir &&
		a.Challenge == b.Challenge && (a.DNSUpdate == nil) == (b.DNSUpdate == nil) &&
		(a.DNSUpdate == nil || *a.DNSUpdate == *b.DNSUpdate)
}

// ChallengeListeners describes listeners as the ACME challenges see them:
// the addresses of each listener name (http-01 is answered by the acme and
// web ones on port 80), and whether a TLS listener is on port 443, where
// the CA makes its tls-alpn-01 handshake (a STARTTLS one cannot answer:
// the CA's handshake comes first).
func ChallengeListeners(listeners []Listener) (addrs map[string][]string, tls443 bool) {
	addrs = map[string][]string{}
	for _, ln := range listeners {
		addrs[ln.Name] = append(addrs[ln.Name], ln.Address)
		tls443 = tls443 || ln.ImplicitTLS() && strings.HasSuffix(ln.Address, ":443")
	}
	return addrs, tls443
}

// acme reads the ACME settings; nil when acmehosts is absent or empty.
// The challenge follows from listeners unless acmechallenge forces one.
func (l *loader) acme(dataDir string, listeners []Listener) *ACME {
	a := &ACME{Dir: filepath.Join(dataDir, "state", "acme")}
	seen := map[string]bool{}
	for _, ln := range l.lines("acmehosts") {
		for _, h := range strings.Fields(ln.Text) {
			h = strings.ToLower(strings.TrimSuffix(h, "."))
			if err := acme.CheckHost(h); err != nil {
				l.fail(ln.Errorf("acmehosts: %v", strings.TrimPrefix(err.Error(), "acme: ")))
				continue
			}
			if !seen[h] {
				seen[h] = true
				a.Hosts = append(a.Hosts, h)
			}
		}
	}
	if email := l.single("acmeemail", ""); email != "" {
		if addr, err := mail.ParseAddress(email); err != nil || addr.Address != email {
			l.fail(l.lines("acmeemail")[0].Errorf("acmeemail: want an address such as postmaster@example.org, got %q", email))
		}
		a.Email = email
	}
	a.Directory = acme.LetsEncrypt
	if d := l.single("acmedirectory", ""); d != "" {
		if named, ok := ACMEDirectories[strings.ToLower(d)]; ok {
			a.Directory = named
		} else if u, err := url.Parse(d); err != nil || u.Scheme != "https" || u.Host == "" {
			var names []string
			for n := range ACMEDirectories {
				names = append(names, n)
			}
			slices.Sort(names)
			l.fail(l.lines("acmedirectory")[0].Errorf("acmedirectory: want an https:// URL or one of %s, got %q", strings.Join(names, ", "), d))
		} else {
			a.Directory = d
		}
	}
	if lines := l.lines("acmeca"); len(lines) > 0 {
		a.RootsFile = l.path("acmeca", "")
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if b, err := os.ReadFile(a.RootsFile); err != nil {
			l.fail(lines[0].Errorf("acmeca: %v", err))
		} else if !pool.AppendCertsFromPEM(b) {
			l.fail(lines[0].Errorf("acmeca: no PEM certificate in %s", a.RootsFile))
		}
		a.Roots = pool
	}
	if lines := l.lines("acmeeab"); len(lines) > 0 {
		f := strings.Fields(lines[0].Text)
		if len(f) != 2 || len(lines) > 1 {
			l.fail(lines[0].Errorf("acmeeab: want one line KEYID KEY (the external account binding the CA shows)"))
		} else if _, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(f[1], "=")); err != nil {
			l.fail(lines[0].Errorf("acmeeab: the key is not base64url: %v", err))
		} else {
			a.EABKeyID, a.EABKey = f[0], f[1]
		}
	}
	a.DNSUpdate = l.acmeDNSUpdate()
	// A wrong acmednsupdate is reported on its own; it still means dns-01
	// (no second error about wildcards needing it).
	dnsSet := len(l.lines("acmednsupdate")) > 0
	switch c := strings.ToLower(l.single("acmechallenge", "auto")); c {
	case "auto":
		if dnsSet {
			a.Challenge = acme.DNS01
		} else {
			a.Challenge = acme.ChooseChallenge(ChallengeListeners(listeners))
		}
	case acme.HTTP01, acme.TLSALPN01:
		a.Challenge, a.ChallengeForced = c, true
	case acme.DNS01:
		a.Challenge, a.ChallengeForced = c, true
		if !dnsSet {
			l.fail(l.lines("acmechallenge")[0].Errorf("acmechallenge: dns-01 needs acmednsupdate (the name server that takes the records)"))
		}
	default:
		l.fail(l.lines("acmechallenge")[0].Errorf("acmechallenge: want auto, %s, %s or %s, got %q", acme.HTTP01, acme.TLSALPN01, acme.DNS01, c))
	}
	if a.Challenge != acme.DNS01 {
		for _, ln := range l.lines("acmehosts") {
			for _, h := range strings.Fields(ln.Text) {
				if strings.HasPrefix(h, "*.") {
					l.fail(ln.Errorf("acmehosts: %s: a wildcard name needs the dns-01 challenge (acmednsupdate)", h))
				}
			}
		}
	}
	if len(a.Hosts) == 0 {
		return nil
	}
	return a
}

// acmeDNSUpdate reads "acmednsupdate": how dns-01's TXT records reach the
// zone's primary name server by DNS UPDATE (RFC 2136), one "KEYWORD
// VALUE" per line:
//
//	server ADDRESS[:PORT]   the primary (port 53 by default); required
//	zone NAME               the zone; found from the SOA when absent
//	key NAME ALGORITHM SECRET   the TSIG key (hmac-sha256, base64 secret)
//	propagation DURATION    how long the primary may take to answer
//
// nil when the file is absent or wrong (the errors are recorded).
func (l *loader) acmeDNSUpdate() *acme.RFC2136 {
	lines := l.lines("acmednsupdate")
	if len(lines) == 0 {
		return nil
	}
	u := &acme.RFC2136{}
	ok := true
	bad := func(ln Line, format string, args ...any) {
		l.fail(ln.Errorf("acmednsupdate: "+format, args...))
		ok = false
	}
	seen := map[string]bool{}
	for _, ln := range lines {
		f := strings.Fields(ln.Text)
		kw := strings.ToLower(f[0])
		if seen[kw] {
			bad(ln, "%s given twice", kw)
			continue
		}
		seen[kw] = true
		switch kw {
		case "server":
			if len(f) != 2 {
				bad(ln, "want server ADDRESS[:PORT]")
				continue
			}
			addr := f[1]
			if _, _, err := net.SplitHostPort(addr); err != nil {
				addr = net.JoinHostPort(strings.Trim(addr, "[]"), "53")
			}
			if host, _, err := net.SplitHostPort(addr); err != nil || host == "" {
				bad(ln, "bad server address %q", f[1])
				continue
			}
			u.Server = addr
		case "zone":
			if len(f) != 2 || acme.CheckHost(strings.ToLower(strings.TrimSuffix(f[1], "."))) != nil {
				bad(ln, "want zone NAME (a domain such as example.org)")
				continue
			}
			u.Zone = strings.ToLower(strings.TrimSuffix(f[1], ".")) + "."
		case "key":
			if len(f) != 4 {
				bad(ln, "want key NAME ALGORITHM SECRET (as tsig-keygen or keymgr print them)")
				continue
			}
			if _, known := acme.TSIGAlgorithm(f[2]); !known {
				bad(ln, "unknown TSIG algorithm %q (hmac-sha256, hmac-sha512, hmac-sha1, ...)", f[2])
				continue
			}
			if _, err := base64.StdEncoding.DecodeString(f[3]); err != nil {
				bad(ln, "the secret is not base64: %v", err)
				continue
			}
			u.KeyName, u.Algorithm, u.Secret = strings.TrimSuffix(f[1], ".")+".", strings.ToLower(f[2]), f[3]
		case "propagation":
			d, err := time.ParseDuration(strings.Join(f[1:], ""))
			if len(f) != 2 || err != nil || d <= 0 || d > time.Hour {
				bad(ln, "want propagation DURATION (e.g. 60s, at most 1h)")
				continue
			}
			u.Propagation = d
		default:
			bad(ln, "unknown keyword %q (server, zone, key, propagation)", f[0])
		}
	}
	if !seen["server"] && ok {
		bad(lines[0], "no server line (the zone's primary name server)")
	}
	if !ok {
		return nil
	}
	return u
}
