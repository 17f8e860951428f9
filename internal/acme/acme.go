// Package acme keeps the server's TLS certificates issued and renewed by an
// ACME certificate authority (RFC 8555: Let's Encrypt, ZeroSSL, a private
// step-ca), as mox, maddy and Stalwart do, so that an MX whose peers check
// names (MTA-STS, DANE-EE is fine either way) and the IMAP, POP3 and
// submission clients get a certificate they trust without certbot.
//
// One certificate per host name, proved with the http-01 challenge (the
// CA fetches http://HOST/.well-known/acme-challenge/TOKEN, which the
// Manager answers, ServeHTTP, on the listener the server puts on port 80)
// or with tls-alpn-01 (RFC 8737: the CA makes a TLS handshake with HOST on
// port 443 asking for the "acme-tls/1" protocol, and the server's TLS
// listeners show it the challenge certificate ChallengeConfig gives), or
// with dns-01 (the CA looks up the TXT record _acme-challenge.HOST, which
// Options.DNS publishes: RFC2136 sends DNS UPDATEs to the zone's primary).
// dns-01 alone can prove a wildcard name ("*.example.org"), and needs no
// port open to the world.
// Each certificate is kept in DIR/HOST.pem as the chain followed by its
// private key, the format of the "tlscert" setting, written atomically
// (temporary file, fsync, rename, fsync of the directory), and renewed
// once a third of its lifetime is left, or when the CA's renewal
// information says (RFC 9773, ari.go). A failed attempt is retried with a
// growing pause (one minute, doubling, at most an hour) and logged; the
// certificate in force stays until it is replaced.
package acme

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	xacme "golang.org/x/crypto/acme"

	"postern/internal/atomicfile"
)

// The challenges a Manager answers (Options.Challenge).
const (
	HTTP01    = "http-01"     // RFC 8555 section 8.3
	TLSALPN01 = "tls-alpn-01" // RFC 8737
	DNS01     = "dns-01"      // RFC 8555 section 8.4
)

// LetsEncrypt is the directory of Let's Encrypt's production CA, the
// default.
const LetsEncrypt = "https://acme-v02.api.letsencrypt.org/directory"

// Options configures a Manager.
type Options struct {
	Hosts     []string // host names, one certificate each (lower case, no trailing dot)
	Email     string   // the account's contact address; "" for none
	Directory string   // the CA's directory URL; "" means LetsEncrypt
	// EABKeyID and EABKey bind the account to one at the CA (RFC 8555
	// section 7.3.4; ZeroSSL and Google require it). EABKey is the MAC
	// key as the CA shows it (base64url).
	EABKeyID, EABKey string
	// HTTPClient talks to the CA; nil uses the system's roots.
	HTTPClient *http.Client
	Dir        string // where the account key and the certificates are kept
	// Challenge is the one the CA is asked to check: HTTP01 (the
	// default, ""), TLSALPN01 or DNS01.
	Challenge string
	// DNS publishes dns-01's records; required with DNS01.
	DNS DNSUpdater
	// RenewBefore renews a certificate this long before it expires; 0
	// means when a third of its lifetime is left.
	RenewBefore time.Duration
	Logger      *slog.Logger
	// OnChange is called after a certificate was issued or renewed (for
	// metrics); may be nil.
	OnChange func(host string, cert *tls.Certificate)
}

// Manager obtains and renews the certificates of Options.Hosts.
type Manager struct {
	opt    Options
	log    *slog.Logger
	client *xacme.Client

	mu         sync.Mutex
	certs      map[string]*tls.Certificate // by host
	tokens     map[string]string           // http-01 path → key authorization
	alpnCerts  map[string]*tls.Certificate // tls-alpn-01: host being validated → challenge certificate
	registered bool
	next       map[string]time.Time // host → end of its pause after a failure
	fails      map[string]int
	ari        map[string]ariState // host → what the CA said of its certificate (ari.go)
	ariURL     string              // the directory's renewalInfo; "" without ARI
	ariKnown   bool                // ariURL was fetched

	stop chan struct{}
	done chan struct{}
	kick chan struct{} // Retry wakes the loop
}

// accountFile holds the account's key (PEM, EC).
const accountFile = "account.pem"

// New checks opt, creates Dir (0700), loads or makes the account key and
// loads the certificates kept from earlier runs. It contacts no one.
func New(opt Options) (*Manager, error) {
	if len(opt.Hosts) == 0 {
		return nil, errors.New("acme: no host names")
	}
	for _, h := range opt.Hosts {
		if err := CheckHost(h); err != nil {
			return nil, err
		}
	}
	if opt.Directory == "" {
		opt.Directory = LetsEncrypt
	}
	switch opt.Challenge {
	case "":
		opt.Challenge = HTTP01
	case HTTP01, TLSALPN01:
	case DNS01:
		if opt.DNS == nil {
			return nil, fmt.Errorf("acme: %s without a way to publish its records", DNS01)
		}
	default:
		return nil, fmt.Errorf("acme: unknown challenge %q (want %s, %s or %s)", opt.Challenge, HTTP01, TLSALPN01, DNS01)
	}
	for _, h := range opt.Hosts {
		if strings.HasPrefix(h, "*.") && opt.Challenge != DNS01 {
			return nil, fmt.Errorf("acme: %s: a wildcard name needs the %s challenge", h, DNS01)
		}
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	if err := os.MkdirAll(opt.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("acme: %w", err)
	}
	key, err := accountKey(filepath.Join(opt.Dir, accountFile))
	if err != nil {
		return nil, err
	}
	m := &Manager{
		opt: opt,
		log: opt.Logger,
		client: &xacme.Client{
			Key: key, DirectoryURL: opt.Directory, HTTPClient: opt.HTTPClient,
			UserAgent: "postern",
		},
		certs:     map[string]*tls.Certificate{},
		tokens:    map[string]string{},
		alpnCerts: map[string]*tls.Certificate{},
		kick:      make(chan struct{}, 1),
		next:      map[string]time.Time{},
		fails:     map[string]int{},
		ari:       map[string]ariState{},
	}
	for _, h := range opt.Hosts {
		p := m.certPath(h)
		cert, err := tls.LoadX509KeyPair(p, p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			m.log.Warn("acme: a kept certificate is unreadable; a new one will be asked for", "host", h, "path", p, "err", err)
			continue
		}
		if err := covers(&cert, h); err != nil {
			m.log.Warn("acme: a kept certificate does not fit; a new one will be asked for", "host", h, "path", p, "err", err)
			continue
		}
		m.certs[h] = &cert
	}
	return m, nil
}

// CheckHost refuses what cannot be a certificate's host name here:
// addresses, bad labels, a wildcard other than a whole first label
// ("*.example.org", which only the dns-01 challenge proves).
func CheckHost(h string) error {
	name := strings.TrimPrefix(h, "*.")
	switch {
	case h == "" || len(h) > 253:
		return fmt.Errorf("acme: bad host name %q", h)
	case name != h && !strings.Contains(name, "."):
		return fmt.Errorf("acme: %s: a wildcard must stand for one label under a domain (*.example.org)", h)
	case !strings.Contains(h, "."):
		return fmt.Errorf("acme: %s: a certificate authority only certifies full domain names", h)
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("acme: bad host name %q", h)
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
				return fmt.Errorf("acme: bad host name %q (lower-case letters, digits, '-' and '.'; IDNs as xn--)", h)
			}
		}
	}
	if allDigits := strings.Trim(h, "0123456789."); allDigits == "" {
		return fmt.Errorf("acme: %s is an address, not a host name", h)
	}
	return nil
}

// certPath is where host's certificate is kept: DIR/HOST.pem, and
// DIR/_wildcard.DOMAIN.pem for *.DOMAIN (no "*" in file names that
// admins handle in shells).
func (m *Manager) certPath(host string) string { return keptPath(m.opt.Dir, host) }

func keptPath(dir, host string) string {
	if rest, ok := strings.CutPrefix(host, "*."); ok {
		host = "_wildcard." + rest
	}
	return filepath.Join(dir, host+".pem")
}

// Certificate returns host's current certificate, nil when it has none
// (not yet issued) or only an expired one. A host without one of its own
// gets the certificate of the wildcard name that covers it (*.DOMAIN for
// NAME.DOMAIN, one label, as RFC 6125 matches).
func (m *Manager) Certificate(host string) *tls.Certificate {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	m.mu.Lock()
	c := m.certs[host]
	if c == nil && !strings.HasPrefix(host, "*.") {
		if _, parent, ok := strings.Cut(host, "."); ok && strings.Contains(parent, ".") {
			c = m.certs["*."+parent]
		}
	}
	m.mu.Unlock()
	if c == nil || c.Leaf == nil || time.Now().After(c.Leaf.NotAfter) {
		return nil
	}
	return c
}

// Hosts returns the configured host names, in order.
func (m *Manager) Hosts() []string { return append([]string(nil), m.opt.Hosts...) }

// ServeHTTP answers the CA's http-01 requests
// (/.well-known/acme-challenge/TOKEN) with the key authorization of a
// pending challenge, anything else with 404.
func (m *Manager) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	resp, ok := m.tokens[r.URL.Path]
	m.mu.Unlock()
	if !ok || r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Write([]byte(resp))
}

// ChallengeConfig is the TLS configuration for a handshake of the CA's
// tls-alpn-01 check, for tls.Config.GetConfigForClient: when hello asks
// for the "acme-tls/1" protocol alone (RFC 8737 section 3) and names a
// host being validated, the challenge certificate with "acme-tls/1"
// negotiated; else nil (any other client, or a name not being
// validated, gets the server's usual configuration, which offers no
// "acme-tls/1"). The connection then carries no protocol: the server
// closes it after the handshake.
func (m *Manager) ChallengeConfig(hello *tls.ClientHelloInfo) *tls.Config {
	if len(hello.SupportedProtos) != 1 || hello.SupportedProtos[0] != xacme.ALPNProto {
		return nil
	}
	m.mu.Lock()
	cert := m.alpnCerts[strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))]
	m.mu.Unlock()
	if cert == nil {
		return nil
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12, // RFC 8737 section 4
		Certificates: []tls.Certificate{*cert},
		NextProtos:   []string{xacme.ALPNProto},
	}
}

// Start runs the renewal loop in the background until Close.
func (m *Manager) Start() {
	m.mu.Lock()
	if m.stop != nil {
		m.mu.Unlock()
		return
	}
	m.stop, m.done = make(chan struct{}), make(chan struct{})
	m.mu.Unlock()
	go m.loop()
}

// Close stops the renewal loop, waiting for an attempt in progress to end.
func (m *Manager) Close() {
	m.mu.Lock()
	stop, done := m.stop, m.done
	m.mu.Unlock()
	if stop == nil {
		return
	}
	close(stop)
	<-done
}

func (m *Manager) loop() {
	defer close(m.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { <-m.stop; cancel() }()
	for {
		m.Renew(ctx, false)
		wait := max(time.Until(m.nextWake()), time.Second)
		select {
		case <-m.stop:
			return
		case <-m.kick:
		case <-time.After(wait):
		}
	}
}

// nextWake is when the renewal loop has something to do: the end of a
// pause after a failure, a certificate's renewal time, a poll of the
// CA's renewal information; at most an hour away.
func (m *Manager) nextWake() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	wake := time.Now().Add(time.Hour)
	for _, h := range m.opt.Hosts {
		var t time.Time
		switch cert := m.certs[h]; {
		case m.fails[h] > 0:
			t = m.next[h]
		case cert == nil:
			continue // tried at every pass until it has one
		default:
			t = m.renewAt(h, cert)
			if p := m.ari[h].poll; !p.IsZero() && p.Before(t) {
				t = p
			}
		}
		if t.Before(wake) {
			wake = t
		}
	}
	return wake
}

// Retry ends the pause of every host whose last attempt failed, and
// wakes the renewal loop to try them now: an admin who fixed the DNS or
// the port-80 forwarding reloads the server rather than wait up to an
// hour. Hosts that have their certificate are not renewed unless the CA's
// renewal information, asked for again, says so.
func (m *Manager) Retry() {
	m.mu.Lock()
	for h, n := range m.fails {
		if n > 0 {
			m.next[h] = time.Time{}
		}
	}
	// The CA's renewal information is asked for again too: an admin who
	// heard of a revocation need not wait for the next poll.
	for h, st := range m.ari {
		st.poll = time.Time{}
		m.ari[h] = st
	}
	m.mu.Unlock()
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// Renew asks for a certificate for every host that has none or whose
// renewal time has come (every host with force), one after the other,
// except those waiting after a failure (unless force). It returns the
// failures, joined.
func (m *Manager) Renew(ctx context.Context, force bool) error {
	var errs []error
	for _, h := range m.opt.Hosts {
		if ctx.Err() != nil {
			break
		}
		m.mu.Lock()
		cur := m.certs[h]
		m.mu.Unlock()
		if cur != nil && cur.Leaf != nil && !force {
			m.checkARI(ctx, h, cur.Leaf)
		}
		m.mu.Lock()
		due := force || cur == nil || !time.Now().Before(m.renewAt(h, cur))
		if !force && m.fails[h] > 0 && time.Now().Before(m.next[h]) {
			due = false // pausing after a failure
		}
		m.mu.Unlock()
		if !due {
			continue
		}
		began := time.Now()
		cert, err := m.obtain(ctx, h)
		m.mu.Lock()
		if err != nil {
			m.fails[h]++
			backoff := min(time.Minute<<min(m.fails[h]-1, 6), time.Hour)
			m.next[h] = time.Now().Add(backoff)
			m.mu.Unlock()
			m.log.Error("acme: certificate not obtained; retrying later", "host", h, "err", err, "retry_in", backoff.String(),
				"keeping", keptDescription(cur))
			errs = append(errs, fmt.Errorf("%s: %w", h, err))
			continue
		}
		m.certs[h] = cert
		m.fails[h] = 0
		m.mu.Unlock()
		m.log.Info("acme: certificate issued", "host", h, "not_after", cert.Leaf.NotAfter.UTC().Format(time.RFC3339),
			"issuer", cert.Leaf.Issuer.String(), "took", time.Since(began).Round(time.Millisecond).String(), "path", m.certPath(h))
		m.checkARI(ctx, h, cert.Leaf) // RFC 9773 section 4.3: ask right after issuance
		if m.opt.OnChange != nil {
			m.opt.OnChange(h, cert)
		}
	}
	return errors.Join(errs...)
}

func keptDescription(c *tls.Certificate) string {
	if c == nil || c.Leaf == nil {
		return "no certificate yet (the tlscert file serves meanwhile)"
	}
	return "the current one, valid until " + c.Leaf.NotAfter.UTC().Format(time.RFC3339)
}

// renewAt is when host's certificate cert should be replaced: when the
// CA's renewal window says (ari.go), else when a third of its lifetime is
// left; never later than RenewBefore asks. Called with m.mu held.
func (m *Manager) renewAt(host string, cert *tls.Certificate) time.Time {
	if cert.Leaf == nil {
		return time.Time{}
	}
	own := cert.Leaf.NotAfter.Add(-cert.Leaf.NotAfter.Sub(cert.Leaf.NotBefore) / 3)
	if m.opt.RenewBefore > 0 {
		own = cert.Leaf.NotAfter.Add(-m.opt.RenewBefore)
	}
	if st := m.ari[host]; !st.at.IsZero() && st.serial == cert.Leaf.SerialNumber.String() {
		// The CA's window replaces the default schedule, earlier or later;
		// an explicit RenewBefore stays the latest moment.
		if m.opt.RenewBefore > 0 && own.Before(st.at) {
			return own
		}
		return st.at
	}
	return own
}

// obtain runs one ACME order for host: account, authorization by http-01,
// a new key and CSR, the certificate, kept on disk.
func (m *Manager) obtain(ctx context.Context, host string) (*tls.Certificate, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if err := m.register(ctx); err != nil {
		return nil, err
	}
	order, err := m.client.AuthorizeOrder(ctx, xacme.DomainIDs(host))
	if err != nil {
		return nil, fmt.Errorf("new order: %w", err)
	}
	for _, u := range order.AuthzURLs {
		if err := m.authorize(ctx, u); err != nil {
			return nil, err
		}
	}
	if _, err := m.client.WaitOrder(ctx, order.URI); err != nil {
		return nil, fmt.Errorf("order: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkixName(host), DNSNames: []string{host},
	}, key)
	if err != nil {
		return nil, err
	}
	der, _, err := m.client.CreateCertFromOrder(ctx, order, csr, true)
	if err != nil {
		return nil, fmt.Errorf("finalize: %w", err)
	}
	var buf bytes.Buffer
	for _, d := range der {
		pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: d})
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	pem.Encode(&buf, &pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
	cert, err := tls.X509KeyPair(buf.Bytes(), buf.Bytes())
	if err != nil {
		return nil, fmt.Errorf("the CA's certificate: %w", err)
	}
	if err := covers(&cert, host); err != nil {
		return nil, fmt.Errorf("the CA's certificate: %w", err)
	}
	if err := atomicfile.Write(m.certPath(host), buf.Bytes(), 0o600); err != nil {
		return nil, err
	}
	return &cert, nil
}

// authorize proves control of an authorization's name with the
// configured challenge.
func (m *Manager) authorize(ctx context.Context, url string) error {
	z, err := m.client.GetAuthorization(ctx, url)
	if err != nil {
		return fmt.Errorf("authorization: %w", err)
	}
	if z.Status == xacme.StatusValid {
		return nil
	}
	var chal *xacme.Challenge
	for _, c := range z.Challenges {
		if c.Type == m.opt.Challenge {
			chal = c
		}
	}
	if chal == nil {
		return fmt.Errorf("the CA offers no %s challenge for %s", m.opt.Challenge, z.Identifier.Value)
	}
	host := z.Identifier.Value
	var where string
	switch m.opt.Challenge {
	case DNS01:
		// For *.DOMAIN the authorization is DOMAIN's (RFC 8555 7.1.3),
		// and the record is DOMAIN's too.
		value, err := m.client.DNS01ChallengeRecord(chal.Token)
		if err != nil {
			return err
		}
		name := "_acme-challenge." + host + "."
		if err := m.opt.DNS.Present(ctx, name, value); err != nil {
			return fmt.Errorf("%s for %s: %w", DNS01, host, err)
		}
		defer func() {
			// The order's context may be over; the record must go anyway.
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			if err := m.opt.DNS.CleanUp(cctx, name, value); err != nil {
				m.log.Warn("acme: the dns-01 record was not removed; remove it by hand", "name", name, "err", err)
			}
		}()
		where = fmt.Sprintf("the CA looks up the TXT record %s through the domain's name servers; do they all serve the zone the update went to?", name)
	case TLSALPN01:
		cert, err := m.client.TLSALPN01ChallengeCert(chal.Token, host)
		if err != nil {
			return err
		}
		m.mu.Lock()
		m.alpnCerts[host] = &cert
		m.mu.Unlock()
		defer func() {
			m.mu.Lock()
			delete(m.alpnCerts, host)
			m.mu.Unlock()
		}()
		where = fmt.Sprintf("the CA makes a TLS handshake with %s on port 443 asking for acme-tls/1; is port 443 a TLS listener (webs)?", host)
	default:
		resp, err := m.client.HTTP01ChallengeResponse(chal.Token)
		if err != nil {
			return err
		}
		path := m.client.HTTP01ChallengePath(chal.Token)
		m.mu.Lock()
		m.tokens[path] = resp
		m.mu.Unlock()
		defer func() {
			m.mu.Lock()
			delete(m.tokens, path)
			m.mu.Unlock()
		}()
		where = fmt.Sprintf("the CA fetches http://%s%s; is port 80 served by the acme listener?", host, path)
	}
	if _, err := m.client.Accept(ctx, chal); err != nil {
		return fmt.Errorf("challenge: %w", err)
	}
	if _, err := m.client.WaitAuthorization(ctx, z.URI); err != nil {
		return fmt.Errorf("%s for %s (%s): %w", m.opt.Challenge, host, where, err)
	}
	return nil
}

// register makes sure the account exists (once per Manager).
func (m *Manager) register(ctx context.Context) error {
	m.mu.Lock()
	done := m.registered
	m.mu.Unlock()
	if done {
		return nil
	}
	acct := &xacme.Account{}
	if m.opt.Email != "" {
		acct.Contact = []string{"mailto:" + m.opt.Email}
	}
	if m.opt.EABKeyID != "" {
		key, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(m.opt.EABKey, "="))
		if err != nil {
			return fmt.Errorf("external account binding key: %w", err)
		}
		acct.ExternalAccountBinding = &xacme.ExternalAccountBinding{KID: m.opt.EABKeyID, Key: key}
	}
	// The administrator who configures a CA accepts its terms; the
	// documentation says so.
	_, err := m.client.Register(ctx, acct, xacme.AcceptTOS)
	if err != nil && !errors.Is(err, xacme.ErrAccountAlreadyExists) {
		return fmt.Errorf("account: %w", err)
	}
	m.mu.Lock()
	m.registered = true
	m.mu.Unlock()
	return nil
}

// covers checks that cert's leaf names host and is in its validity period.
func covers(cert *tls.Certificate, host string) error {
	if cert.Leaf == nil {
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			return err
		}
		cert.Leaf = leaf
	}
	if err := cert.Leaf.VerifyHostname(host); err != nil {
		return err
	}
	if time.Now().After(cert.Leaf.NotAfter) {
		return fmt.Errorf("expired on %s", cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

// accountKey reads the account key at path, making one the first time.
func accountKey(path string) (crypto.Signer, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		der, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return nil, err
		}
		if err := atomicfile.Write(path, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			return nil, err
		}
		return key, nil
	}
	if err != nil {
		return nil, fmt.Errorf("acme: account key: %w", err)
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "EC PRIVATE KEY" {
		return nil, fmt.Errorf("acme: account key %s: not an EC PRIVATE KEY in PEM", path)
	}
	key, err := x509.ParseECPrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("acme: account key %s: %w", path, err)
	}
	return key, nil
}

func pkixName(host string) pkix.Name { return pkix.Name{CommonName: host} }

// Kept returns the leaf of the certificate kept for host in dir (nil and
// no error when there is none yet), for status displays.
func Kept(dir, host string) (*x509.Certificate, error) {
	p := keptPath(dir, host)
	cert, err := tls.LoadX509KeyPair(p, p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(cert.Certificate[0])
}

// ChallengeReachable reports whether listeners (name and host:port) include
// one on port 80 that answers http-01: the acme listener or a web one.
func ChallengeReachable(listeners map[string][]string) bool {
	for _, name := range []string{"acme", "web"} {
		for _, addr := range listeners[name] {
			if strings.HasSuffix(addr, ":80") {
				return true
			}
		}
	}
	return false
}

// ChooseChallenge picks the challenge when the configuration forces none:
// http-01 when a listener answers it on port 80 (ChallengeReachable), else
// tls-alpn-01 when tls443 (a TLS listener is on port 443, where the CA
// connects), else http-01 (a web server in front may forward its path).
func ChooseChallenge(listeners map[string][]string, tls443 bool) string {
	if !ChallengeReachable(listeners) && tls443 {
		return TLSALPN01
	}
	return HTTP01
}
