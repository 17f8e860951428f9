package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/mail"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"postern/internal/gosmtptest"
)

// countingBackend is a tiny real SMTP server backend: it records every
// accepted message and can reject chosen recipients.
type countingBackend struct {
	mu        sync.Mutex
	messages  []receivedMessage
	sessions  int
	resets    int
	authUsers []string
	tlsSeen   int
	rejectTo  map[string]int // recipient -> reply code
	needAuth  bool
	dataDelay time.Duration
}

type receivedMessage struct {
	from  string
	to    []string
	data  []byte
	isTLS bool
	user  string
}

func (b *countingBackend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	_, isTLS := c.TLSConnectionState()
	b.mu.Lock()
	b.sessions++
	if isTLS {
		b.tlsSeen++
	}
	b.mu.Unlock()
	return &countingSession{backend: b, conn: c}, nil
}

type countingSession struct {
	backend *countingBackend
	conn    *smtp.Conn
	user    string
	from    string
	to      []string
}

func (s *countingSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *countingSession) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if username != "bench" || password != "s3cret:with colon" {
			return errors.New("invalid credentials")
		}
		s.user = username
		s.backend.mu.Lock()
		s.backend.authUsers = append(s.backend.authUsers, username)
		s.backend.mu.Unlock()
		return nil
	}), nil
}

func (s *countingSession) Mail(from string, _ *smtp.MailOptions) error {
	if s.backend.needAuth && s.user == "" {
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}
	}
	s.from = from
	return nil
}

func (s *countingSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if code, ok := s.backend.rejectTo[to]; ok {
		return &smtp.SMTPError{Code: code, EnhancedCode: smtp.EnhancedCode{code / 100, 1, 1}, Message: "No such user"}
	}
	s.to = append(s.to, to)
	return nil
}

func (s *countingSession) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if s.backend.dataDelay > 0 {
		time.Sleep(s.backend.dataDelay)
	}
	_, isTLS := s.conn.TLSConnectionState()
	s.backend.mu.Lock()
	s.backend.messages = append(s.backend.messages, receivedMessage{from: s.from, to: s.to, data: data, isTLS: isTLS, user: s.user})
	s.backend.mu.Unlock()
	return nil
}

func (s *countingSession) Reset() {
	s.from, s.to = "", nil
	s.backend.mu.Lock()
	s.backend.resets++
	s.backend.mu.Unlock()
}

func (s *countingSession) Logout() error { return nil }

// startServer runs a go-smtp server on 127.0.0.1:0 until the test ends.
// With implicitTLS the listener is TLS from the first byte; with a
// tlsConfig and no implicitTLS, STARTTLS is offered.
func startServer(t *testing.T, be *countingBackend, tlsConfig *tls.Config, implicitTLS bool) string {
	t.Helper()
	srv := smtp.NewServer(be)
	srv.Domain = "bench.test"
	srv.ReadTimeout = 10 * time.Second
	srv.WriteTimeout = 10 * time.Second
	srv.MaxMessageBytes = 64 << 20
	srv.TLSConfig = tlsConfig
	srv.ErrorLog = log.New(io.Discard, "", 0)
	var l net.Listener
	var err error
	if implicitTLS {
		l, err = tls.Listen("tcp", "127.0.0.1:0", tlsConfig)
	} else {
		l, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		t.Fatal(err)
	}
	gosmtptest.Serve(t, srv, l)
	return l.Addr().String()
}

// selfSignedTLS makes a server certificate for 127.0.0.1.
func selfSignedTLS(t *testing.T) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "bench.test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

func testConfig(addr string) Config {
	cfg := DefaultConfig()
	cfg.Addr = addr
	cfg.Timeout = 5 * time.Second
	return cfg
}

// checkConsistent asserts the invariants every report must hold.
func checkConsistent(t *testing.T, name string, s LatencySummary) {
	t.Helper()
	if s.Count == 0 {
		t.Fatalf("%s: no samples", name)
	}
	if !(s.Min <= s.P50 && s.P50 <= s.P90 && s.P90 <= s.P99 && s.P99 <= s.Max) {
		t.Errorf("%s: want min ≤ p50 ≤ p90 ≤ p99 ≤ max, got %+v", name, s)
	}
	if s.Mean < s.Min || s.Mean > s.Max || s.Max <= 0 {
		t.Errorf("%s: mean %v outside [%v, %v]", name, s.Mean, s.Min, s.Max)
	}
}

// checkNoLeak waits for the goroutine count to come back to before.
func checkNoLeak(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<16)
		t.Errorf("goroutines: %d before, %d after:\n%s", before, n, buf[:runtime.Stack(buf, true)])
	}
}

func TestRunSendsExactCountAndSizes(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() { checkNoLeak(t, before) })
	be := &countingBackend{}
	addr := startServer(t, be, nil, false)
	cfg := testConfig(addr)
	cfg.Messages = 200
	cfg.Concurrency = 10
	cfg.Size = 4096
	cfg.To = []string{"a@bench.test", "b@bench.test", "c@bench.test"}
	cfg.RcptsPerMessage = 2

	var progress bytes.Buffer
	cfg.ProgressInterval = 50 * time.Millisecond
	rep, err := Run(context.Background(), cfg, &progress)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Sent != 200 || rep.Failed != 0 {
		t.Fatalf("sent %d failed %d (%v %v), want 200 and 0", rep.Sent, rep.Failed, rep.FailuresByCode, rep.ErrorSamples)
	}
	if rep.Connections != 200 {
		t.Errorf("connections %d, want 200 (one per message by default)", rep.Connections)
	}
	if rep.BytesSent != 200*4096 {
		t.Errorf("bytes sent %d, want %d", rep.BytesSent, 200*4096)
	}
	if rep.MessagesPerSec <= 0 || rep.BytesPerSec <= 0 || rep.Elapsed <= 0 {
		t.Errorf("rates: %v msg/s, %v B/s, elapsed %v; want all > 0", rep.MessagesPerSec, rep.BytesPerSec, rep.Elapsed)
	}
	checkConsistent(t, "transaction", rep.Transaction)
	checkConsistent(t, "data", rep.Data)
	if rep.Transaction.Count != 200 || rep.Data.Count != 200 {
		t.Errorf("latency samples %d/%d, want 200", rep.Transaction.Count, rep.Data.Count)
	}
	if rep.Data.Max > rep.Transaction.Max || rep.Data.P50 > rep.Transaction.P50 {
		t.Errorf("DATA latency %+v exceeds whole-transaction latency %+v", rep.Data, rep.Transaction)
	}
	// Every step of every session, RCPT twice per message; no RSET
	// without reuse. The steps of a transaction take no longer than it.
	wantSteps := map[string]int64{"connect": 200, "EHLO": 200, "RSET": 0, "MAIL": 200, "RCPT": 400, "DATA": 200, "end of data": 200, "QUIT": 200}
	var stepsMean time.Duration
	for i, st := range rep.Steps {
		if st.Count != wantSteps[StepNames[i]] {
			t.Errorf("step %s: %d samples, want %d", StepNames[i], st.Count, wantSteps[StepNames[i]])
		}
		if st.Count > 0 {
			checkConsistent(t, StepNames[i], st)
		}
		if i != stepQuit {
			stepsMean += st.Mean * time.Duration(st.Count) / 200
		}
	}
	if stepsMean > rep.Transaction.Mean {
		t.Errorf("the steps' mean sum %v exceeds the transaction's mean %v", stepsMean, rep.Transaction.Mean)
	}
	if d := rep.Steps[stepDataCmd].Mean + rep.Steps[stepEndOfData].Mean; d > rep.Data.Mean+rep.Data.Mean/100 {
		t.Errorf("DATA and end of data, %v, exceed DATA to 250, %v", d, rep.Data.Mean)
	}

	be.mu.Lock()
	defer be.mu.Unlock()
	if len(be.messages) != 200 {
		t.Fatalf("server received %d messages, want 200", len(be.messages))
	}
	subjects := make(map[string]bool)
	ids := make(map[string]bool)
	rcptCount := make(map[string]int)
	for _, m := range be.messages {
		if len(m.data) != 4096 {
			t.Fatalf("message of %d octets, want 4096", len(m.data))
		}
		if m.from != cfg.From || len(m.to) != 2 {
			t.Errorf("envelope %q -> %q, want %q and two recipients", m.from, m.to, cfg.From)
		}
		for _, r := range m.to {
			rcptCount[r]++
		}
		parsed, err := mail.ReadMessage(bytes.NewReader(m.data))
		if err != nil {
			t.Fatalf("message does not parse: %v", err)
		}
		for _, field := range []string{"Date", "From", "To", "Message-Id", "Subject"} {
			if parsed.Header.Get(field) == "" {
				t.Errorf("header %s missing", field)
			}
		}
		if _, err := parsed.Header.Date(); err != nil {
			t.Errorf("Date: %v", err)
		}
		if to, err := parsed.Header.AddressList("To"); err != nil || len(to) != 2 {
			t.Errorf("To: %v %v", to, err)
		}
		subjects[parsed.Header.Get("Subject")] = true
		ids[parsed.Header.Get("Message-Id")] = true
	}
	if len(subjects) != 200 || len(ids) != 200 {
		t.Errorf("%d distinct subjects and %d message ids, want 200 each", len(subjects), len(ids))
	}
	if !subjects["smtpload message 1"] || !subjects["smtpload message 200"] {
		t.Errorf("subjects lack the sequence numbers 1 and 200")
	}
	// Round-robin over three addresses, two per message: 400 deliveries.
	for _, r := range cfg.To {
		if c := rcptCount[r]; c < 133 || c > 134 {
			t.Errorf("recipient %s got %d messages, want 133 or 134", r, c)
		}
	}
	if !strings.Contains(progress.String(), "200/200 done, 200 sent, 0 failed") {
		t.Errorf("progress lacks the final line:\n%s", progress.String())
	}
}

func TestRunReuseSendsRSETBetweenMessages(t *testing.T) {
	be := &countingBackend{}
	addr := startServer(t, be, nil, false)
	cfg := testConfig(addr)
	cfg.Messages = 50
	cfg.Concurrency = 2
	cfg.Reuse = 5
	rep, err := Run(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Sent != 50 || rep.Failed != 0 {
		t.Fatalf("sent %d failed %d: %v", rep.Sent, rep.Failed, rep.ErrorSamples)
	}
	// Workers take messages as they free up, so each worker's last
	// connection may carry fewer than five: at most one extra each.
	if rep.Connections < 10 || rep.Connections > 10+int64(cfg.Concurrency)-1 {
		t.Errorf("connections %d, want 50/5 = 10 plus at most %d", rep.Connections, cfg.Concurrency-1)
	}
	be.mu.Lock()
	defer be.mu.Unlock()
	if int64(be.sessions) != rep.Connections {
		t.Errorf("server saw %d sessions, report says %d connections", be.sessions, rep.Connections)
	}
	// Four RSETs per connection at least (go-smtp's server also resets
	// after each DATA and on EHLO).
	if be.resets < 40 {
		t.Errorf("server saw %d resets, want at least 40", be.resets)
	}
	if got, want := rep.Steps[stepReset].Count, 50-rep.Connections; got != want {
		t.Errorf("RSET step: %d samples, want one per reused message, %d", got, want)
	}
	if got := rep.Steps[stepConnect].Count; got != rep.Connections {
		t.Errorf("connect step: %d samples for %d connections", got, rep.Connections)
	}
}

func TestRunCountsFailuresByReplyCode(t *testing.T) {
	be := &countingBackend{rejectTo: map[string]int{"nobody@bench.test": 550, "later@bench.test": 451}}
	addr := startServer(t, be, nil, false)
	cfg := testConfig(addr)
	cfg.Messages = 30
	cfg.Concurrency = 3
	cfg.Reuse = 3
	cfg.To = []string{"ok@bench.test", "nobody@bench.test", "later@bench.test"}
	cfg.RcptsPerMessage = 1
	rep, err := Run(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Sent != 10 || rep.Failed != 20 {
		t.Fatalf("sent %d failed %d, want 10 and 20", rep.Sent, rep.Failed)
	}
	if rep.FailuresByCode["550"] != 10 || rep.FailuresByCode["451"] != 10 {
		t.Errorf("failures by code %v, want 550:10 451:10", rep.FailuresByCode)
	}
	if len(rep.ErrorSamples) == 0 || !strings.Contains(strings.Join(rep.ErrorSamples, "\n"), "RCPT") {
		t.Errorf("error samples %q should name the RCPT stage", rep.ErrorSamples)
	}
	// A rejection does not cost the connection: 30 messages over reuse 3
	// need 10 connections, plus at most one per worker for uneven shares.
	if rep.Connections < 10 || rep.Connections > 10+int64(cfg.Concurrency)-1 {
		t.Errorf("connections %d, want 10 to %d", rep.Connections, 10+cfg.Concurrency-1)
	}
}

func TestRunSTARTTLSWithAuth(t *testing.T) {
	be := &countingBackend{needAuth: true}
	addr := startServer(t, be, selfSignedTLS(t), false)
	cfg := testConfig(addr)
	cfg.Messages = 20
	cfg.Concurrency = 4
	cfg.StartTLS = true
	cfg.Insecure = true
	cfg.AuthUser, cfg.AuthPass = parseAuthForTest(t, "bench:s3cret:with colon")
	rep, err := Run(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Sent != 20 || rep.Failed != 0 {
		t.Fatalf("sent %d failed %d: %v", rep.Sent, rep.Failed, rep.ErrorSamples)
	}
	be.mu.Lock()
	defer be.mu.Unlock()
	for _, m := range be.messages {
		if !m.isTLS || m.user != "bench" {
			t.Fatalf("message over TLS=%v as user %q, want TLS as bench", m.isTLS, m.user)
		}
	}
}

func parseAuthForTest(t *testing.T, s string) (string, string) {
	t.Helper()
	u, p, err := parseAuth(s)
	if err != nil {
		t.Fatal(err)
	}
	return u, p
}

func TestRunSTARTTLSVerifiesCertificateUnlessInsecure(t *testing.T) {
	be := &countingBackend{}
	addr := startServer(t, be, selfSignedTLS(t), false)
	cfg := testConfig(addr)
	cfg.Messages = 3
	cfg.Concurrency = 1
	cfg.StartTLS = true
	rep, err := Run(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Failed != 3 || rep.FailuresByCode["tls"] != 3 {
		t.Errorf("self-signed certificate without -insecure: failures %v, want tls:3", rep.FailuresByCode)
	}
}

func TestRunImplicitTLS(t *testing.T) {
	be := &countingBackend{}
	addr := startServer(t, be, selfSignedTLS(t), true)
	cfg := testConfig(addr)
	cfg.Messages = 10
	cfg.Concurrency = 2
	cfg.ImplicitTLS = true
	cfg.Insecure = true
	cfg.Size = 100 << 10
	rep, err := Run(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Sent != 10 || rep.Failed != 0 {
		t.Fatalf("sent %d failed %d: %v", rep.Sent, rep.Failed, rep.ErrorSamples)
	}
	be.mu.Lock()
	defer be.mu.Unlock()
	for _, m := range be.messages {
		if !m.isTLS || len(m.data) != 100<<10 {
			t.Fatalf("TLS=%v size=%d, want TLS and %d", m.isTLS, len(m.data), 100<<10)
		}
	}
}

func TestRunDurationIsBounded(t *testing.T) {
	be := &countingBackend{dataDelay: 5 * time.Millisecond}
	addr := startServer(t, be, nil, false)
	cfg := testConfig(addr)
	cfg.Messages = 0
	cfg.Duration = 300 * time.Millisecond
	cfg.Concurrency = 4
	start := time.Now()
	rep, err := Run(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("a 300ms run took %v", took)
	}
	if rep.Sent == 0 || rep.Failed != 0 {
		t.Errorf("sent %d failed %d, want some and none", rep.Sent, rep.Failed)
	}
}

// A server that accepts and never greets must not hang the run.
func TestRunTimesOutOnSilentServer(t *testing.T) {
	before := runtime.NumGoroutine()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held sync.WaitGroup
	acceptDone := make(chan struct{})
	go func() {
		defer close(acceptDone)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			held.Add(1)
			go func() {
				defer held.Done()
				_, _ = io.Copy(io.Discard, c) // read until the client gives up
				_ = c.Close()
			}()
		}
	}()
	cfg := testConfig(l.Addr().String())
	cfg.Messages = 4
	cfg.Concurrency = 2
	cfg.Timeout = 200 * time.Millisecond
	start := time.Now()
	rep, err := Run(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("run took %v with a 200ms timeout", took)
	}
	if rep.Failed != 4 || rep.FailuresByCode["timeout"] != 4 {
		t.Errorf("failures %v, want timeout:4", rep.FailuresByCode)
	}
	_ = l.Close()
	<-acceptDone
	held.Wait()
	checkNoLeak(t, before)
}

func TestRunConnectRefused(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	cfg := testConfig(addr)
	cfg.Messages = 5
	cfg.Concurrency = 2
	rep, err := Run(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Failed != 5 || rep.FailuresByCode["connect"] != 5 {
		t.Errorf("failures %v, want connect:5", rep.FailuresByCode)
	}
}

func TestRunCancelStopsQuickly(t *testing.T) {
	be := &countingBackend{dataDelay: 50 * time.Millisecond}
	addr := startServer(t, be, nil, false)
	cfg := testConfig(addr)
	cfg.Messages = 100000
	cfg.Concurrency = 4
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	rep, err := Run(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("cancelled run took %v", took)
	}
	if rep.Sent+rep.Failed >= 100000 {
		t.Errorf("cancel did not stop the run: %d done", rep.Sent+rep.Failed)
	}
}

func TestRunRefusesUnboundedOrBadConfig(t *testing.T) {
	for name, mutate := range map[string]func(*Config){
		"unbounded":        func(c *Config) { c.Messages, c.Duration = 0, 0 },
		"no concurrency":   func(c *Config) { c.Concurrency = 0 },
		"tls twice":        func(c *Config) { c.StartTLS, c.ImplicitTLS = true, true },
		"size below head":  func(c *Config) { c.Size = 50 },
		"size too big":     func(c *Config) { c.Size = maxMessageSize + 1 },
		"rcpts over pool":  func(c *Config) { c.RcptsPerMessage = 2 },
		"no recipients":    func(c *Config) { c.To = nil },
		"CRLF in address":  func(c *Config) { c.From = "a@b\r\nRCPT TO:<x@y>" },
		"bad address":      func(c *Config) { c.Addr = "nohostport" },
		"zero timeout":     func(c *Config) { c.Timeout = 0 },
		"space in EHLO":    func(c *Config) { c.Helo = "a b" },
		"reuse zero":       func(c *Config) { c.Reuse = 0 },
		"negative message": func(c *Config) { c.Messages = -1 },
	} {
		cfg := testConfig("127.0.0.1:1")
		mutate(&cfg)
		if _, err := Run(context.Background(), cfg, nil); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: Run error %v, want ErrInvalidConfig", name, err)
		}
	}
}

func TestCommandLineEndToEnd(t *testing.T) {
	be := &countingBackend{}
	addr := startServer(t, be, nil, false)
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"-addr", addr, "-n", "20", "-c", "4", "-size", "2k", "-to", "x@bench.test, <y@bench.test>", "-json", "-progress", "10ms"}, &stdout, &stderr, false)
	if code != exitOK {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr.String())
	}
	var rep jsonReport
	if err := jsonUnmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("JSON report: %v\n%s", err, stdout.String())
	}
	if rep.Sent != 20 || rep.Size != 2048 || rep.Transaction.P50MS <= 0 || rep.Transaction.P99MS > rep.Transaction.MaxMS {
		t.Errorf("JSON report %+v", rep)
	}
	if rcpt, ok := rep.Steps["RCPT"]; !ok || rcpt.Count != 40 || rep.Steps["end of data"].Count != 20 {
		t.Errorf("JSON step latencies %+v", rep.Steps)
	}
	if _, ok := rep.Steps["RSET"]; ok {
		t.Errorf("JSON lists a step that never ran: %+v", rep.Steps)
	}
	be.mu.Lock()
	for _, m := range be.messages {
		if len(m.data) != 2048 || len(m.to) != 2 {
			t.Errorf("message of %d octets to %v", len(m.data), m.to)
		}
	}
	be.mu.Unlock()
	if !strings.Contains(stderr.String(), "smtpload: 20/20 done") {
		t.Errorf("stderr (not a terminal) lacks the progress line:\n%s", stderr.String())
	}

	// Text report and a failing run: exit status 1.
	be.rejectTo = map[string]int{"gone@bench.test": 550}
	stdout.Reset()
	stderr.Reset()
	code = run(context.Background(), []string{"-addr", addr, "-n", "3", "-to", "gone@bench.test"}, &stdout, &stderr, true)
	if code != exitFailed {
		t.Errorf("exit %d with rejected messages, want %d", code, exitFailed)
	}
	if !strings.Contains(stdout.String(), "failed       3 (550: 3)") || !strings.Contains(stdout.String(), "\n  MAIL ") || strings.Contains(stdout.String(), "\n  RCPT ") {
		t.Errorf("text report (MAIL answered, every RCPT refused):\n%s", stdout.String())
	}
	if !strings.Contains(stderr.String(), "\r[") {
		t.Errorf("terminal progress bar missing:\n%q", stderr.String())
	}

	// Usage errors: exit status 2.
	for _, args := range [][]string{{"-size", "0"}, {"-n", "0"}, {"-auth", "nocolon"}, {"stray"}, {"-to", ""}} {
		stderr.Reset()
		if code := run(context.Background(), args, &stdout, &stderr, false); code != exitUsage {
			t.Errorf("%q: exit %d, want %d", args, code, exitUsage)
		}
	}
	if code := run(context.Background(), []string{"-help"}, &stdout, &stderr, false); code != exitOK {
		t.Errorf("-help: exit %d", code)
	}
	if !strings.Contains(stderr.String(), "-reuse") {
		t.Errorf("-help text lacks the flags")
	}
}

func TestDurationFlagDropsDefaultCount(t *testing.T) {
	cfg, _, err := parseFlags([]string{"-duration", "2s"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Messages != 0 || cfg.Duration != 2*time.Second {
		t.Errorf("-duration 2s: messages %d duration %v, want 0 and 2s", cfg.Messages, cfg.Duration)
	}
	cfg, _, err = parseFlags([]string{"-duration", "2s", "-n", "7"}, io.Discard)
	if err != nil || cfg.Messages != 7 {
		t.Errorf("-duration with -n 7: messages %d (%v), want 7", cfg.Messages, err)
	}
}

// bodyLinesOK checks the line discipline of a built message.
func bodyLinesOK(t *testing.T, msg []byte) {
	t.Helper()
	sc := bufio.NewScanner(bytes.NewReader(msg))
	sc.Buffer(make([]byte, 4096), 4096)
	sc.Split(scanCRLFLines)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) > 998 {
			t.Fatalf("line of %d octets", len(line))
		}
		if bytes.HasPrefix(line, []byte(".")) {
			t.Fatalf("line starts with a dot: %q", line)
		}
		for _, c := range line {
			if c < ' ' && c != '\t' || c > '~' {
				t.Fatalf("non-printable octet %#x in %q", c, line)
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(msg, []byte("\r\n")) {
		t.Fatalf("message does not end with CRLF")
	}
}

// scanCRLFLines splits at CRLF and fails on a bare CR or LF.
func scanCRLFLines(data []byte, atEOF bool) (int, []byte, error) {
	if i := bytes.IndexAny(data, "\r\n"); i >= 0 {
		if data[i] == '\n' || i+1 < len(data) && data[i+1] != '\n' {
			return 0, nil, errors.New("bare CR or LF")
		}
		if i+1 < len(data) {
			return i + 2, data[:i], nil
		}
	}
	if atEOF && len(data) > 0 {
		return 0, nil, errors.New("last line without CRLF")
	}
	return 0, nil, nil
}

func TestMessageBuilderExactSizes(t *testing.T) {
	to := []string{"someone@example.com", "another.person@example.org"}
	b := newMessageBuilder(0, "from@example.net", "0011223344556677")
	minSize := b.minimumSize(99999, to, 0)
	date := time.Date(2025, 11, 25, 13, 34, 0, 0, time.UTC)
	sizes := []int64{4096, 4097, 1 << 20, 1<<20 + 1, 65537}
	for s := minSize; s < minSize+3*bodyLineLength; s++ {
		sizes = append(sizes, s)
	}
	for _, size := range sizes {
		b.size = size
		for _, seq := range []int64{1, 99999} {
			var buf bytes.Buffer
			n, err := b.write(&buf, seq, to, date)
			if err != nil {
				t.Fatalf("size %d seq %d: %v", size, seq, err)
			}
			if n != size || int64(buf.Len()) != size {
				t.Fatalf("size %d seq %d: wrote %d (buffer %d)", size, seq, n, buf.Len())
			}
			bodyLinesOK(t, buf.Bytes())
			if _, err := mail.ReadMessage(bytes.NewReader(buf.Bytes())); err != nil {
				t.Fatalf("size %d: %v", size, err)
			}
		}
	}
	b.size = minSize - 40
	if _, err := b.write(io.Discard, 99999, to, date); err == nil {
		t.Errorf("size below the header: no error")
	}
}

func TestManyRecipientsAreFolded(t *testing.T) {
	var to []string
	for i := range 100 {
		to = append(to, "recipient-number-"+strings.Repeat("x", i%10)+"@example.com")
	}
	b := newMessageBuilder(16<<10, "", "0011223344556677")
	var buf bytes.Buffer
	if _, err := b.write(&buf, 1, to, time.Now()); err != nil {
		t.Fatal(err)
	}
	bodyLinesOK(t, buf.Bytes())
	m, err := mail.ReadMessage(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if list, err := m.Header.AddressList("To"); err != nil || len(list) != 100 {
		t.Errorf("To: %d addresses, %v", len(list), err)
	}
	if m.Header.Get("From") != "<smtpload@smtpload.invalid>" {
		t.Errorf("From for the null sender: %q", m.Header.Get("From"))
	}
}
