package outbound

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log/slog"
	"math/big"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/miekg/dns"

	"postern/gateway/delivery"
	"postern/internal/gosmtptest"
)

// --- a real DNS server on loopback -------------------------------------

type dnsZone struct {
	mu       sync.Mutex
	records  map[string][]dns.RR // by lower-case FQDN
	servfail map[string]bool
	silent   map[string]bool // never answer: timeouts
	truncate map[string]bool // answer UDP with TC=1 and no records
	queries  int
}

func newZone() *dnsZone {
	return &dnsZone{records: map[string][]dns.RR{}, servfail: map[string]bool{}, silent: map[string]bool{}, truncate: map[string]bool{}}
}

// add adds records in zone-file syntax, e.g. "example.test. 60 IN MX 10 mx.example.test.".
func (z *dnsZone) add(t *testing.T, lines ...string) {
	t.Helper()
	z.mu.Lock()
	defer z.mu.Unlock()
	for _, l := range lines {
		rr, err := dns.NewRR(l)
		if err != nil {
			t.Fatalf("bad test record %q: %v", l, err)
		}
		name := strings.ToLower(rr.Header().Name)
		z.records[name] = append(z.records[name], rr)
	}
}

func (z *dnsZone) ServeDNS(w dns.ResponseWriter, q *dns.Msg) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.queries++
	m := new(dns.Msg)
	m.SetReply(q)
	if len(q.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		w.WriteMsg(m)
		return
	}
	qn := strings.ToLower(q.Question[0].Name)
	if z.silent[qn] {
		return
	}
	if z.servfail[qn] {
		m.Rcode = dns.RcodeServerFailure
		w.WriteMsg(m)
		return
	}
	if _, udp := w.RemoteAddr().(*net.UDPAddr); udp && z.truncate[qn] {
		m.Truncated = true
		w.WriteMsg(m)
		return
	}
	rrs, ok := z.records[qn]
	if !ok {
		m.Rcode = dns.RcodeNameError
		w.WriteMsg(m)
		return
	}
	for _, rr := range rrs {
		if rr.Header().Rrtype == q.Question[0].Qtype || rr.Header().Rrtype == dns.TypeCNAME {
			m.Answer = append(m.Answer, rr)
		}
	}
	w.WriteMsg(m)
}

// startDNS serves z on a UDP port of 127.0.0.1 and returns its address.
func startDNS(t *testing.T, z *dnsZone) string { return startDNSHandler(t, z) }

// startDNSHandler serves h on UDP and TCP (same port) of 127.0.0.1 and
// returns the address.
func startDNSHandler(t *testing.T, z dns.Handler) string {
	t.Helper()
	// UDP and TCP on the same port: take a free TCP port, then its UDP
	// twin, and try again when another process holds the twin (a port free
	// for one protocol may be taken for the other).
	var pc net.PacketConn
	var tl net.Listener
	for attempt := 0; ; attempt++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		if p, err := net.ListenPacket("udp", l.Addr().String()); err == nil {
			pc, tl = p, l
			break
		}
		l.Close()
		if attempt == 50 {
			t.Fatal("no port free for both UDP and TCP")
		}
	}
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, Handler: z, NotifyStartedFunc: func() { close(started) }}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.ActivateAndServe()
	}()
	<-started
	t.Cleanup(func() {
		srv.Shutdown()
		<-done
	})
	addr := pc.LocalAddr().String()
	// TCP on the same port, for answers too large for UDP.
	tstarted := make(chan struct{})
	tsrv := &dns.Server{Listener: tl, Handler: z, NotifyStartedFunc: func() { close(tstarted) }}
	tdone := make(chan struct{})
	go func() {
		defer close(tdone)
		tsrv.ActivateAndServe()
	}()
	<-tstarted
	t.Cleanup(func() {
		tsrv.Shutdown()
		<-tdone
	})
	return addr
}

// --- a real SMTP server on loopback ------------------------------------

type rcptSeen struct {
	To   string
	Opts smtp.RcptOptions
}

type received struct {
	Helo     string
	From     string
	MailOpts smtp.MailOptions
	Rcpts    []rcptSeen
	Data     []byte
	TLS      bool
	AuthUser string
	Remote   string // the client's address as the server saw it
}

type testServer struct {
	t    *testing.T
	srv  *smtp.Server
	addr *net.TCPAddr

	mu         sync.Mutex
	got        []received
	mails      int // MAIL commands seen
	rcptReject map[string]*smtp.SMTPError
	dataErr    *smtp.SMTPError
	users      map[string]string          // AUTH PLAIN accounts; nil: no AUTH
	lmtpReject map[string]*smtp.SMTPError // LMTP: per-recipient answers to the message
}

type serverConfig struct {
	ip        string // default 127.0.0.2
	port      int    // 0: any
	tls       *tls.Config
	implicit  bool
	utf8      bool
	dsn       bool
	requireTL bool
	maxSize   int64
	users     map[string]string
	lmtp      bool // speak LMTP (RFC 2033)
}

func startSMTP(t *testing.T, cfg serverConfig) *testServer {
	t.Helper()
	ts := &testServer{t: t, rcptReject: map[string]*smtp.SMTPError{}, users: cfg.users, lmtpReject: map[string]*smtp.SMTPError{}}
	s := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &testSession{ts: ts, conn: c}, nil
	}))
	s.Domain = "mx.example.test"
	s.TLSConfig = cfg.tls
	s.EnableSMTPUTF8 = cfg.utf8
	s.EnableDSN = cfg.dsn
	s.EnableREQUIRETLS = cfg.requireTL
	s.MaxMessageBytes = cfg.maxSize
	s.LMTP = cfg.lmtp
	s.ReadTimeout = 10 * time.Second
	s.WriteTimeout = 10 * time.Second
	s.ErrorLog = slogPrinter{}
	ip := cfg.ip
	if ip == "" {
		ip = "127.0.0.2"
	}
	addr := net.JoinHostPort(ip, itoa(cfg.port))
	var l net.Listener
	var err error
	if cfg.implicit {
		l, err = tls.Listen("tcp", addr, cfg.tls)
	} else {
		l, err = net.Listen("tcp", addr)
	}
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	ts.srv = s
	ts.addr = l.Addr().(*net.TCPAddr)
	gosmtptest.Serve(t, s, l)
	return ts
}

func (ts *testServer) port() int { return ts.addr.Port }

func (ts *testServer) messages() []received {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return append([]received(nil), ts.got...)
}

func (ts *testServer) mailCount() int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.mails
}

type slogPrinter struct{}

func (slogPrinter) Printf(string, ...interface{}) {}
func (slogPrinter) Println(...interface{})        {}

type testSession struct {
	ts   *testServer
	conn *smtp.Conn
	cur  received
	user string
}

func (s *testSession) AuthMechanisms() []string {
	if s.ts.users == nil {
		return nil
	}
	return []string{sasl.Plain}
}

func (s *testSession) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if p, ok := s.ts.users[username]; ok && p == password {
			s.user = username
			return nil
		}
		return smtp.ErrAuthFailed
	}), nil
}

func (s *testSession) Mail(from string, opts *smtp.MailOptions) error {
	s.ts.mu.Lock()
	s.ts.mails++
	s.ts.mu.Unlock()
	if s.ts.users != nil && s.user == "" {
		return smtp.ErrAuthRequired
	}
	s.cur = received{Helo: s.conn.Hostname(), From: from, AuthUser: s.user, Remote: s.conn.Conn().RemoteAddr().String()}
	if opts != nil {
		s.cur.MailOpts = *opts
	}
	_, s.cur.TLS = s.conn.TLSConnectionState()
	return nil
}

func (s *testSession) Rcpt(to string, opts *smtp.RcptOptions) error {
	s.ts.mu.Lock()
	rej := s.ts.rcptReject[to]
	s.ts.mu.Unlock()
	if rej != nil {
		return rej
	}
	r := rcptSeen{To: to}
	if opts != nil {
		r.Opts = *opts
	}
	s.cur.Rcpts = append(s.cur.Rcpts, r)
	return nil
}

func (s *testSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.ts.mu.Lock()
	defer s.ts.mu.Unlock()
	if s.ts.dataErr != nil {
		return s.ts.dataErr
	}
	s.cur.Data = b
	s.ts.got = append(s.ts.got, s.cur)
	return nil
}

// LMTPData answers each recipient (go-smtp's LMTPSession): from
// lmtpReject, else 250; the message is recorded once, with the
// recipients that took it.
func (s *testSession) LMTPData(r io.Reader, status smtp.StatusCollector) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.ts.mu.Lock()
	defer s.ts.mu.Unlock()
	got := s.cur
	got.Data, got.Rcpts = b, nil
	for _, rc := range s.cur.Rcpts {
		if rej := s.ts.lmtpReject[rc.To]; rej != nil {
			status.SetStatus(rc.To, rej)
			continue
		}
		status.SetStatus(rc.To, nil)
		got.Rcpts = append(got.Rcpts, rc)
	}
	s.ts.got = append(s.ts.got, got)
	return nil
}

func (s *testSession) Reset()        { s.cur = received{} }
func (s *testSession) Logout() error { return nil }

// --- certificates ------------------------------------------------------

// selfSigned makes a self-signed certificate for names (DNS names or IP
// addresses) that can also serve as its own root.
func selfSigned(t *testing.T, names ...string) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: names[0]},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

func serverTLS(cert tls.Certificate) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
}

// --- client and message helpers ----------------------------------------

type bytesMessage struct{ *bytes.Reader }

func (m bytesMessage) Size() int64 { return m.Reader.Size() }

func message(s string) delivery.Message { return bytesMessage{bytes.NewReader([]byte(s))} }

const testMessage = "Received: from a by b; Mon, 1 Jan 2024 00:00:00 +0000\r\n" +
	"From: alice@sender.test\r\nTo: bob@example.test\r\nSubject: hello\r\n\r\n" +
	"Line one.\r\n.leading dot\r\nLast line.\r\n"

func newTestClient(t *testing.T, dnsAddr string, port int, mod func(*Options)) *Client {
	t.Helper()
	opts := Options{
		Hostname:       "out.sender.test",
		Resolver:       NewDNSResolver([]string{dnsAddr}, 2*time.Second),
		Port:           port,
		DialTimeout:    2 * time.Second,
		CommandTimeout: 5 * time.Second,
		DataTimeout:    5 * time.Second,
		TLSConfig:      &tls.Config{RootCAs: x509.NewCertPool()}, // trust nothing unless a test says so
		Logger:         slog.New(slog.DiscardHandler),
	}
	if mod != nil {
		mod(&opts)
	}
	c, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func rcpts(addrs ...string) []delivery.Recipient {
	out := make([]delivery.Recipient, len(addrs))
	for i, a := range addrs {
		out[i] = delivery.Recipient{Addr: a}
	}
	return out
}

func env(from string) *delivery.Envelope {
	return &delivery.Envelope{ID: "q1", From: from}
}

func deliver(t *testing.T, c *Client, e *delivery.Envelope, rs []delivery.Recipient, msg string) []delivery.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res := c.Deliver(ctx, e, rs, message(msg))
	if len(res) != len(rs) {
		t.Fatalf("got %d results for %d recipients", len(res), len(rs))
	}
	return res
}

func wantDelivered(t *testing.T, r delivery.Result) {
	t.Helper()
	if r.Err != nil {
		t.Fatalf("not delivered: %v (permanent=%v status=%s diag=%q)", r.Err, r.Permanent, r.Status, r.Diagnostic)
	}
	if !strings.HasPrefix(r.Status, "2.") || !strings.HasPrefix(r.Diagnostic, "smtp; 250") {
		t.Fatalf("delivered result has status %q diagnostic %q", r.Status, r.Diagnostic)
	}
}

func wantFailure(t *testing.T, r delivery.Result, permanent bool, status string) {
	t.Helper()
	if r.Err == nil {
		t.Fatalf("delivered, want failure %s", status)
	}
	if r.Permanent != permanent || r.Status != status {
		t.Fatalf("got permanent=%v status=%s (%v, %q); want permanent=%v status=%s", r.Permanent, r.Status, r.Err, r.Diagnostic, permanent, status)
	}
}

func itoa(n int) string { return big.NewInt(int64(n)).String() }

// checkGoroutines fails the test if goroutines started during it are still
// running once its cleanups ran.
func checkGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for {
			n := runtime.NumGoroutine()
			if n <= before {
				return
			}
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				buf = buf[:runtime.Stack(buf, true)]
				t.Errorf("%d goroutines left running (had %d):\n%s", n, before, buf)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}
