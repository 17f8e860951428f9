package policy

import (
	"crypto/x509"
	"encoding/base64"
	"net/mail"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

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
	// Challenge is the one the CA checks: acme.HTTP01 or acme.TLSALPN01,
	// as "acmechallenge" forces it, else as the listeners allow
	// (acme.ChooseChallenge); ChallengeForced says which.
	Challenge       string
	ChallengeForced bool
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
		a.Challenge == b.Challenge
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
	switch c := strings.ToLower(l.single("acmechallenge", "auto")); c {
	case "auto":
		a.Challenge = acme.ChooseChallenge(ChallengeListeners(listeners))
	case acme.HTTP01, acme.TLSALPN01:
		a.Challenge, a.ChallengeForced = c, true
	default:
		l.fail(l.lines("acmechallenge")[0].Errorf("acmechallenge: want auto, %s or %s, got %q", acme.HTTP01, acme.TLSALPN01, c))
	}
	if len(a.Hosts) == 0 {
		return nil
	}
	return a
}
