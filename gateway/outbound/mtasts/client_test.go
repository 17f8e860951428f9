package mtasts

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const enforcePolicy = "version: STSv1\r\nmode: enforce\r\nmx: mail.example.test\r\nmx: *.mx.example.test\r\nmax_age: 86400\r\n"

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "postern test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// issue makes a server certificate for names.
func (ca *testCA) issue(t *testing.T, names ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// testEnv is a policy host (a real HTTPS server on 127.0.0.1 with a
// certificate for mta-sts.example.test from a test CA), a TXT table
// standing in for DNS, and a clock.
type testEnv struct {
	t      *testing.T
	ca     *testCA
	server *httptest.Server
	port   int

	hits       atomic.Int64 // requests that reached the policy host
	txtLookups atomic.Int64

	mu      sync.Mutex
	handler http.HandlerFunc
	txt     map[string]txtAnswer // by name looked up
	now     time.Time
	host    string // Host header of the last request
}

type txtAnswer struct {
	records []string
	err     error
}

func newTestEnv(t *testing.T) *testEnv {
	t.Helper()
	env := &testEnv{
		t:   t,
		ca:  newTestCA(t),
		txt: map[string]txtAnswer{},
		now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC),
	}
	env.handler = servePolicy(enforcePolicy)
	env.server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		env.hits.Add(1)
		env.mu.Lock()
		env.host = r.Host
		handler := env.handler
		env.mu.Unlock()
		handler(w, r)
	}))
	env.server.TLS = &tls.Config{Certificates: []tls.Certificate{env.ca.issue(t, "mta-sts.example.test")}}
	env.server.Config.ErrorLog = nil
	env.server.StartTLS()
	t.Cleanup(env.server.Close)
	_, port, err := net.SplitHostPort(env.server.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	env.port, _ = strconv.Atoi(port)
	env.setTXT("example.test", "v=STSv1; id=1")
	return env
}

// servePolicy answers the well-known path with body as text/plain.
func servePolicy(body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != policyPath {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, body)
	}
}

func (env *testEnv) setHandler(h http.HandlerFunc) {
	env.mu.Lock()
	defer env.mu.Unlock()
	env.handler = h
}

func (env *testEnv) setTXT(domain string, records ...string) {
	env.mu.Lock()
	defer env.mu.Unlock()
	env.txt["_mta-sts."+domain] = txtAnswer{records: records}
}

func (env *testEnv) setTXTError(domain string, err error) {
	env.mu.Lock()
	defer env.mu.Unlock()
	env.txt["_mta-sts."+domain] = txtAnswer{err: err}
}

func (env *testEnv) deleteTXT(domain string) {
	env.mu.Lock()
	defer env.mu.Unlock()
	delete(env.txt, "_mta-sts."+domain)
}

func (env *testEnv) advance(d time.Duration) {
	env.mu.Lock()
	defer env.mu.Unlock()
	env.now = env.now.Add(d)
}

func (env *testEnv) clock() time.Time {
	env.mu.Lock()
	defer env.mu.Unlock()
	return env.now
}

func (env *testEnv) lookupTXT(ctx context.Context, name string) ([]string, error) {
	env.txtLookups.Add(1)
	env.mu.Lock()
	defer env.mu.Unlock()
	answer, ok := env.txt[name]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
	}
	return answer.records, answer.err
}

// lookupIPAddr sends every policy host to the test server.
func (env *testEnv) lookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	if !strings.HasPrefix(host, "mta-sts.") {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return []net.IPAddr{{IP: net.IPv4(127, 0, 0, 1)}}, nil
}

// client makes a Client talking to this environment; adjust changes the
// options first.
func (env *testEnv) client(adjust func(*Options)) *Client {
	env.t.Helper()
	opts := Options{
		LookupTXT:    env.lookupTXT,
		LookupIPAddr: env.lookupIPAddr,
		Port:         env.port,
		RootCAs:      env.ca.pool,
		Timeout:      5 * time.Second,
		Now:          env.clock,
		Logger:       slog.New(slog.NewTextHandler(env.t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if adjust != nil {
		adjust(&opts)
	}
	c, err := New(opts)
	if err != nil {
		env.t.Fatalf("New: %v", err)
	}
	return c
}

// policy calls c.Policy and fails the test on error.
func (env *testEnv) policy(c *Client, domain string) *Policy {
	env.t.Helper()
	p, err := c.Policy(env.t.Context(), domain)
	if err != nil {
		env.t.Fatalf("Policy(%q): %v", domain, err)
	}
	return p
}

func (env *testEnv) wantHits(n int64) {
	env.t.Helper()
	if got := env.hits.Load(); got != n {
		env.t.Errorf("policy host hit %d times, want %d", got, n)
	}
}

func TestFetchAndParse(t *testing.T) {
	env := newTestEnv(t)
	c := env.client(nil)
	p := env.policy(c, "Example.TEST.")
	if p == nil {
		t.Fatal("no policy")
	}
	want := Policy{Mode: ModeEnforce, MX: []string{"mail.example.test", "*.mx.example.test"}, MaxAge: 24 * time.Hour, ID: "1", Fetched: env.clock()}
	if p.Mode != want.Mode || !slices.Equal(p.MX, want.MX) || p.MaxAge != want.MaxAge || p.ID != want.ID || !p.Fetched.Equal(want.Fetched) {
		t.Errorf("policy %+v, want %+v", p, want)
	}
	if !p.Expires().Equal(env.clock().Add(24 * time.Hour)) {
		t.Errorf("expires %v", p.Expires())
	}
	if !p.Match("a.mx.example.test") || !p.Match("MAIL.example.test.") || p.Match("mx.example.test") {
		t.Errorf("Match does not follow the policy")
	}
	env.wantHits(1)
	env.mu.Lock()
	host := env.host
	env.mu.Unlock()
	if host != "mta-sts.example.test" {
		t.Errorf("Host header %q, want mta-sts.example.test", host)
	}
}

func TestNoPolicy(t *testing.T) {
	env := newTestEnv(t)
	c := env.client(nil)
	env.deleteTXT("example.test")
	if p := env.policy(c, "example.test"); p != nil {
		t.Errorf("NXDOMAIN: policy %+v", p)
	}
	env.setTXT("example.test")
	if p := env.policy(c, "example.test"); p != nil {
		t.Errorf("no TXT records: policy %+v", p)
	}
	env.setTXT("example.test", "v=spf1 -all")
	if p := env.policy(c, "example.test"); p != nil {
		t.Errorf("no STS record: policy %+v", p)
	}
	env.setTXT("example.test", "v=STSv1; id=1", "v=STSv1; id=2")
	if p := env.policy(c, "example.test"); p != nil {
		t.Errorf("two STS records: policy %+v", p)
	}
	env.setTXT("example.test", "v=STSv1; id=not-valid")
	if p := env.policy(c, "example.test"); p != nil {
		t.Errorf("invalid STS record: policy %+v", p)
	}
	env.wantHits(0)
}

func TestCachedWhileIDUnchanged(t *testing.T) {
	env := newTestEnv(t)
	c := env.client(nil)
	first := env.policy(c, "example.test")
	for range 3 {
		env.advance(time.Hour)
		if p := env.policy(c, "example.test"); p != first {
			t.Fatalf("policy %+v, want the cached %+v", p, first)
		}
	}
	env.wantHits(1)
}

func TestRefetchWhenIDChanges(t *testing.T) {
	env := newTestEnv(t)
	c := env.client(nil)
	env.policy(c, "example.test")
	env.setHandler(servePolicy("version: STSv1\nmode: testing\nmx: new.example.test\nmax_age: 3600\n"))
	env.setTXT("example.test", "v=STSv1; id=2")
	p := env.policy(c, "example.test")
	if p == nil || p.ID != "2" || p.Mode != ModeTesting || !slices.Equal(p.MX, []string{"new.example.test"}) {
		t.Fatalf("policy %+v, want the new one", p)
	}
	env.wantHits(2)
}

func TestFetchFailureKeepsCachedPolicy(t *testing.T) {
	env := newTestEnv(t)
	c := env.client(nil)
	cached := env.policy(c, "example.test")

	env.setHandler(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "broken", http.StatusInternalServerError) })
	env.setTXT("example.test", "v=STSv1; id=2")
	if p := env.policy(c, "example.test"); p != cached {
		t.Fatalf("after a failed fetch: policy %+v, want the cached %+v", p, cached)
	}
	env.wantHits(2)

	// RFC 8461 section 3.3: the same id is not fetched again for five
	// minutes after a failure.
	env.advance(4 * time.Minute)
	if p := env.policy(c, "example.test"); p != cached {
		t.Fatalf("policy %+v, want the cached one", p)
	}
	env.wantHits(2)

	env.advance(2 * time.Minute)
	env.setHandler(servePolicy(strings.Replace(enforcePolicy, "enforce", "testing", 1)))
	p := env.policy(c, "example.test")
	if p == nil || p.ID != "2" || p.Mode != ModeTesting {
		t.Fatalf("policy %+v, want the new one", p)
	}
	env.wantHits(3)
}

func TestFetchFailureWithoutCache(t *testing.T) {
	env := newTestEnv(t)
	env.setHandler(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "broken", http.StatusServiceUnavailable) })
	c := env.client(nil)
	// RFC 8461 section 3.3: as though the domain had no policy.
	if p := env.policy(c, "example.test"); p != nil {
		t.Fatalf("policy %+v", p)
	}
	env.wantHits(1)
}

func TestTXTGoneKeepsCachedPolicyUntilExpiry(t *testing.T) {
	env := newTestEnv(t)
	dir := t.TempDir()
	c := env.client(func(o *Options) { o.Dir = dir })
	cached := env.policy(c, "example.test")

	env.deleteTXT("example.test") // stripped by an attacker, or withdrawn
	env.advance(23 * time.Hour)
	if p := env.policy(c, "example.test"); p != cached {
		t.Fatalf("TXT gone: policy %+v, want the cached %+v", p, cached)
	}
	env.setTXT("example.test", "v=spf1 -all")
	if p := env.policy(c, "example.test"); p != cached {
		t.Fatalf("no STS record: policy %+v, want the cached one", p)
	}
	env.advance(time.Hour) // max_age is a day
	if p := env.policy(c, "example.test"); p != nil {
		t.Fatalf("after max_age: policy %+v", p)
	}
	if _, err := os.Stat(filepath.Join(dir, "example.test.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("expired policy file still there: %v", err)
	}
	env.wantHits(1)
}

func TestDNSTroubleKeepsCachedPolicy(t *testing.T) {
	env := newTestEnv(t)
	c := env.client(nil)
	cached := env.policy(c, "example.test")
	env.setTXTError("example.test", &net.DNSError{Err: "server misbehaving", Name: "_mta-sts.example.test", IsTemporary: true})
	if p := env.policy(c, "example.test"); p != cached {
		t.Fatalf("DNS trouble: policy %+v, want the cached %+v", p, cached)
	}
	// Without a cached policy, as though there were none.
	if p := env.policy(env.client(nil), "example.test"); p != nil {
		t.Fatalf("DNS trouble, nothing cached: policy %+v", p)
	}
	env.wantHits(1)
}

func TestIsNotFound(t *testing.T) {
	errNX := errors.New("nxdomain")
	env := newTestEnv(t)
	env.setTXTError("example.test", fmt.Errorf("lookup: %w", errNX))
	plain := env.client(nil)
	if _, err := plain.lookupID(t.Context(), "example.test"); err == nil || errors.Is(err, ErrNoPolicy) {
		t.Errorf("without IsNotFound: %v, want DNS trouble", err)
	}
	withOption := env.client(func(o *Options) { o.IsNotFound = func(err error) bool { return errors.Is(err, errNX) } })
	if _, err := withOption.lookupID(t.Context(), "example.test"); !errors.Is(err, ErrNoPolicy) {
		t.Errorf("with IsNotFound: %v, want ErrNoPolicy", err)
	}
	env.deleteTXT("example.test") // *net.DNSError with IsNotFound
	if _, err := plain.lookupID(t.Context(), "example.test"); !errors.Is(err, ErrNoPolicy) {
		t.Errorf("net.DNSError not found: %v, want ErrNoPolicy", err)
	}
}

func TestExpiry(t *testing.T) {
	env := newTestEnv(t)
	env.setHandler(servePolicy(strings.Replace(enforcePolicy, "86400", "3600", 1)))
	c := env.client(nil)
	first := env.policy(c, "example.test")
	env.advance(59 * time.Minute)
	if p := env.policy(c, "example.test"); p != first {
		t.Fatalf("before max_age: policy %+v, want the cached one", p)
	}
	env.wantHits(1)
	env.advance(time.Minute) // exactly max_age: expired
	p := env.policy(c, "example.test")
	if p == nil || p == first || !p.Fetched.Equal(env.clock()) {
		t.Fatalf("after max_age: policy %+v, want a fresh one", p)
	}
	env.wantHits(2)
}

func TestDailyRefresh(t *testing.T) {
	env := newTestEnv(t)
	env.setHandler(servePolicy(strings.Replace(enforcePolicy, "86400", "604800", 1)))
	c := env.client(nil)
	first := env.policy(c, "example.test")

	// RFC 8461 section 3.3: refresh once a day even with the same id.
	env.advance(25 * time.Hour)
	second := env.policy(c, "example.test")
	if second == first || !second.Fetched.Equal(env.clock()) {
		t.Fatalf("a day later: policy %+v, want a refreshed one", second)
	}
	env.wantHits(2)

	// A failed refresh keeps the policy, and is not retried at once.
	env.advance(25 * time.Hour)
	env.setHandler(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "gone", http.StatusNotFound) })
	if p := env.policy(c, "example.test"); p != second {
		t.Fatalf("failed refresh: policy %+v, want %+v", p, second)
	}
	if p := env.policy(c, "example.test"); p != second {
		t.Fatalf("failed refresh: policy %+v, want %+v", p, second)
	}
	env.wantHits(3)
}

func TestModeNone(t *testing.T) {
	env := newTestEnv(t)
	c := env.client(nil)
	env.policy(c, "example.test")

	// RFC 8461 section 8.3: a domain withdraws its policy with mode none
	// and a new id.
	env.setHandler(servePolicy("version: STSv1\nmode: none\nmax_age: 600\n"))
	env.setTXT("example.test", "v=STSv1; id=withdrawn")
	p := env.policy(c, "example.test")
	if p == nil || p.Mode != ModeNone || len(p.MX) != 0 || p.ID != "withdrawn" {
		t.Fatalf("policy %+v, want mode none", p)
	}
	if p.Match("mail.example.test") {
		t.Errorf("mode none policy matched an MX")
	}
	// It is cached like any other.
	if again := env.policy(c, "example.test"); again != p {
		t.Fatalf("policy %+v, want the cached mode none", again)
	}
	env.wantHits(2)
}

func TestRefusedResponses(t *testing.T) {
	big := enforcePolicy + "x: " + strings.Repeat("y", maxPolicySize-len(enforcePolicy)-len("x: ")+1)
	tests := []struct {
		name    string
		handler http.HandlerFunc
		timeout time.Duration
	}{
		{"redirect", func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/moved" {
				servePolicy(enforcePolicy)(w, r)
				return
			}
			http.Redirect(w, r, "https://mta-sts.example.test/moved", http.StatusFound)
		}, 0},
		{"permanent redirect", func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/moved" {
				servePolicy(enforcePolicy)(w, r)
				return
			}
			http.Redirect(w, r, "/moved", http.StatusMovedPermanently)
		}, 0},
		{"not found", http.NotFound, 0},
		{"status 204", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }, 0},
		{"text/html", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			io.WriteString(w, enforcePolicy)
		}, 0},
		{"no content type", func(w http.ResponseWriter, r *http.Request) {
			w.Header()["Content-Type"] = nil // no sniffing either
			io.WriteString(w, enforcePolicy)
		}, 0},
		{"body over 64 KiB", servePolicy(big), 0},
		{"invalid policy", servePolicy("version: STSv1\nmode: strict\nmx: a.example.test\nmax_age: 1\n"), 0},
		{"too slow", func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
		}, 200 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newTestEnv(t)
			env.setHandler(tt.handler)
			c := env.client(func(o *Options) {
				if tt.timeout > 0 {
					o.Timeout = tt.timeout
				}
			})
			if p := env.policy(c, "example.test"); p != nil {
				t.Fatalf("policy %+v accepted", p)
			}
			env.wantHits(1) // a redirect is not followed
		})
	}

	t.Run("body of exactly 64 KiB", func(t *testing.T) {
		env := newTestEnv(t)
		env.setHandler(servePolicy(big[:maxPolicySize]))
		if p := env.policy(env.client(nil), "example.test"); p == nil {
			t.Fatal("refused")
		}
	})
}

func TestCertificateMustMatchPolicyHost(t *testing.T) {
	env := newTestEnv(t)
	// other.test's policy host resolves to the server, whose certificate
	// is for mta-sts.example.test only.
	env.setTXT("other.test", "v=STSv1; id=1")
	c := env.client(nil)
	if p := env.policy(c, "other.test"); p != nil {
		t.Fatalf("policy %+v fetched over a certificate for another name", p)
	}
	var hostErr x509.HostnameError
	if _, err := c.fetch(t.Context(), "other.test"); !errors.As(err, &hostErr) {
		t.Errorf("fetch: %v, want a certificate name mismatch", err)
	}
	env.wantHits(0)
}

func TestCertificateMustChainToTrustedRoot(t *testing.T) {
	env := newTestEnv(t)
	c := env.client(func(o *Options) { o.RootCAs = newTestCA(t).pool })
	if p := env.policy(c, "example.test"); p != nil {
		t.Fatalf("policy %+v fetched from an untrusted server", p)
	}
	var authorityErr x509.UnknownAuthorityError
	if _, err := c.fetch(t.Context(), "example.test"); !errors.As(err, &authorityErr) {
		t.Errorf("fetch: %v, want an unknown authority", err)
	}
	env.wantHits(0)
}

func TestPersistedCache(t *testing.T) {
	env := newTestEnv(t)
	dir := filepath.Join(t.TempDir(), "state", "mta-sts") // created by New
	first := env.policy(env.client(func(o *Options) { o.Dir = dir }), "example.test")

	names := dirNames(t, dir)
	if !slices.Equal(names, []string{"example.test.json"}) {
		t.Fatalf("cache directory holds %q", names)
	}

	// A restart: the policy host is down and the TXT record gone, the
	// policy read back from disk still applies.
	env.setHandler(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "down", http.StatusBadGateway) })
	env.deleteTXT("example.test")
	env.advance(time.Hour)
	p := env.policy(env.client(func(o *Options) { o.Dir = dir }), "example.test")
	if p == nil || p.ID != first.ID || p.Mode != first.Mode || !slices.Equal(p.MX, first.MX) || p.MaxAge != first.MaxAge || !p.Fetched.Equal(first.Fetched) {
		t.Fatalf("after restart: policy %+v, want %+v", p, first)
	}

	// With the same id, the policy read back is used without a fetch.
	env.setTXT("example.test", "v=STSv1; id=1")
	if p := env.policy(env.client(func(o *Options) { o.Dir = dir }), "example.test"); p == nil || p.ID != "1" {
		t.Fatalf("after restart, same id: policy %+v", p)
	}
	env.wantHits(1)

	// An expired policy, leftovers of an interrupted write and an
	// unreadable file are removed when the cache is loaded; files that are
	// not ours are left alone.
	for name, content := range map[string]string{
		".tmp-example.test-123": "{",
		"broken.test.json":      "{not json",
		"evil.test.json":        `{"domain":"evil.test","id":"1","fetched":"2026-03-01T12:00:00Z","mode":"enforce","mx":["../x"],"max_age":3600}`,
		"README":                "not ours",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	env.advance(24 * time.Hour)
	env.client(func(o *Options) { o.Dir = dir })
	if names := dirNames(t, dir); !slices.Equal(names, []string{"README"}) {
		t.Errorf("cache directory holds %q, want only README", names)
	}
}

func TestHostileDomainNames(t *testing.T) {
	env := newTestEnv(t)
	root := t.TempDir()
	dir := filepath.Join(root, "cache")
	c := env.client(func(o *Options) {
		o.Dir = dir
		// Every name has a policy, so that a name let through would be
		// fetched and written.
		o.LookupTXT = func(context.Context, string) ([]string, error) {
			env.txtLookups.Add(1)
			return []string{"v=STSv1; id=1"}, nil
		}
	})
	for _, domain := range hostileDomains {
		p, err := c.Policy(t.Context(), domain)
		if !errors.Is(err, ErrInvalidDomain) || p != nil {
			t.Errorf("Policy(%q) = %+v, %v; want ErrInvalidDomain", domain, p, err)
		}
	}
	if n := env.txtLookups.Load(); n != 0 {
		t.Errorf("%d TXT lookups for invalid names", n)
	}
	if names := dirNames(t, root); !slices.Equal(names, []string{"cache"}) {
		t.Errorf("%s holds %q", root, names)
	}
	if names := dirNames(t, dir); len(names) != 0 {
		t.Errorf("%s holds %q", dir, names)
	}
	env.wantHits(0)
}

func TestConcurrentCallsShareOneFetch(t *testing.T) {
	env := newTestEnv(t)
	release := make(chan struct{})
	env.setHandler(func(w http.ResponseWriter, r *http.Request) {
		<-release
		servePolicy(enforcePolicy)(w, r)
	})
	c := env.client(nil)

	const callers = 8
	results := make(chan *Policy, callers)
	call := func() {
		p, err := c.Policy(t.Context(), "example.test")
		if err != nil {
			t.Errorf("Policy: %v", err)
		}
		results <- p
	}
	go call()
	waitFor(t, func() bool { return c.flights.current("example.test") != nil })
	for range callers - 1 {
		go call()
	}
	waitFor(t, func() bool { return c.flights.joined("example.test") == callers-1 })
	close(release)

	first := <-results
	if first == nil {
		t.Fatal("no policy")
	}
	for range callers - 1 {
		if p := <-results; p != first {
			t.Errorf("policy %p, want the shared %p", p, first)
		}
	}
	env.wantHits(1)
	if n := env.txtLookups.Load(); n != 1 {
		t.Errorf("%d TXT lookups, want 1", n)
	}
}

func TestCancelledCallerDoesNotFailOthers(t *testing.T) {
	env := newTestEnv(t)
	var requests atomic.Int64
	env.setHandler(func(w http.ResponseWriter, r *http.Request) {
		if requests.Add(1) == 1 {
			<-r.Context().Done() // the first caller gives up meanwhile
			return
		}
		servePolicy(enforcePolicy)(w, r)
	})
	c := env.client(nil)

	ctx, cancel := context.WithCancel(t.Context())
	leaderErr := make(chan error, 1)
	go func() {
		_, err := c.Policy(ctx, "example.test")
		leaderErr <- err
	}()
	waitFor(t, func() bool { return env.hits.Load() == 1 })
	follower := make(chan *Policy, 1)
	go func() {
		p, err := c.Policy(t.Context(), "example.test")
		if err != nil {
			t.Errorf("follower: %v", err)
		}
		follower <- p
	}()
	waitFor(t, func() bool { return c.flights.joined("example.test") == 1 })
	cancel()

	if err := <-leaderErr; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled caller: %v, want context.Canceled", err)
	}
	if p := <-follower; p == nil || p.Mode != ModeEnforce {
		t.Errorf("follower: policy %+v", p)
	}
	env.wantHits(2)
}

func TestNoProxyFromEnvironment(t *testing.T) {
	env := newTestEnv(t)
	// A proxy that does not exist: a client that used it would fail.
	t.Setenv("HTTPS_PROXY", "http://127.0.0.1:1")
	t.Setenv("https_proxy", "http://127.0.0.1:1")
	t.Setenv("NO_PROXY", "")
	t.Setenv("no_proxy", "")
	if p := env.policy(env.client(nil), "example.test"); p == nil {
		t.Fatal("no policy: the proxy from the environment was used")
	}
	env.wantHits(1)
}

func TestNewRejectsBadPort(t *testing.T) {
	if _, err := New(Options{Port: 70000}); err == nil {
		t.Error("port 70000 accepted")
	}
}

// waitFor polls cond for up to 5 seconds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// current returns the lookup in progress for key, or nil.
func (g *flightGroup) current(key string) *flight {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.flights[key]
}

// joined returns how many calls joined the lookup in progress for key, or
// -1 when there is none.
func (g *flightGroup) joined(key string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	f := g.flights[key]
	if f == nil {
		return -1
	}
	return f.waiters
}
