package smtpd

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
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// testBackend is a small policy for the tests: it accepts example.test
// recipients (and postmaster), refuses a few marked addresses, and records
// every message and every callback's view of the connection.
type testBackend struct {
	mu       sync.Mutex
	messages []recordedMessage
	infos    []ConnInfo // a copy of ConnInfo at each callback
	resets   int
	closes   int
	sessions int
	dataGate chan struct{} // when set, Data waits for it before reading
	inData   chan struct{} // when set, Data signals it on entry
	noAuth   bool          // sessions without AuthSession
	lmtp     bool          // sessions with DataLMTP (LMTPSession)
	// replied counts Replied calls; when repliedGate is set, Replied
	// waits for it (the client has read the reply).
	replied     int
	repliedGate chan struct{}
}

type recordedMessage struct {
	From       string
	Rcpts      []string
	Data       []byte
	MailParams MailParams
	RcptParams []RcptParams
}

func (b *testBackend) snapshot(c *ConnInfo) {
	b.mu.Lock()
	defer b.mu.Unlock()
	cp := *c
	b.infos = append(b.infos, cp)
}

func (b *testBackend) lastInfo() ConnInfo {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.infos) == 0 {
		return ConnInfo{}
	}
	return b.infos[len(b.infos)-1]
}

func (b *testBackend) lastMessage() (recordedMessage, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.messages) == 0 {
		return recordedMessage{}, false
	}
	return b.messages[len(b.messages)-1], true
}

func (b *testBackend) Connect(ctx context.Context, c *ConnInfo) (Session, *Reply) {
	b.snapshot(c)
	b.mu.Lock()
	b.sessions++
	b.mu.Unlock()
	switch c.RemoteAddr.Addr().String() {
	case "192.0.2.66":
		return nil, NewReply(554, "5.7.1", "%s: client host rejected", c.RemoteAddr.Addr())
	case "192.0.2.44":
		return nil, NewReply(421, "4.7.0", "try again later")
	}
	s := &testSession{b: b}
	if b.noAuth {
		return &plainSession{s}, nil
	}
	if b.lmtp {
		return &lmtpSession{s}, nil
	}
	return s, nil
}

// lmtpSession answers recipient by recipient (LMTPSession): full@ gets
// 552 5.2.2, the others the message's reply.
type lmtpSession struct{ *testSession }

func (l *lmtpSession) DataLMTP(ctx context.Context, c *ConnInfo, r io.Reader) []*Reply {
	rep := l.Data(ctx, c, r)
	out := make([]*Reply, len(l.msg.Rcpts))
	for i, to := range l.msg.Rcpts {
		out[i] = rep
		if strings.HasPrefix(to, "full@") && rep == nil {
			out[i] = NewReply(552, "5.2.2", "<%s>: mailbox full", to)
		}
	}
	return out
}

type testSession struct {
	b     *testBackend
	msg   recordedMessage
	inTx  bool
	hello string
}

// plainSession hides Auth, to test derived capabilities.
type plainSession struct{ s *testSession }

func (p *plainSession) Hello(ctx context.Context, c *ConnInfo) *Reply { return p.s.Hello(ctx, c) }
func (p *plainSession) Mail(ctx context.Context, c *ConnInfo, from string, mp *MailParams) *Reply {
	return p.s.Mail(ctx, c, from, mp)
}
func (p *plainSession) Rcpt(ctx context.Context, c *ConnInfo, to string, rp *RcptParams) *Reply {
	return p.s.Rcpt(ctx, c, to, rp)
}
func (p *plainSession) Data(ctx context.Context, c *ConnInfo, r io.Reader) *Reply {
	return p.s.Data(ctx, c, r)
}
func (p *plainSession) Reset(ctx context.Context, c *ConnInfo) { p.s.Reset(ctx, c) }
func (p *plainSession) Close(ctx context.Context, c *ConnInfo) { p.s.Close(ctx, c) }

func (s *testSession) Hello(ctx context.Context, c *ConnInfo) *Reply {
	s.b.snapshot(c)
	if strings.EqualFold(c.HELO, "reject.test") {
		return NewReply(550, "5.7.1", "go away")
	}
	s.hello = c.HELO
	return nil
}

func (s *testSession) Mail(ctx context.Context, c *ConnInfo, from string, p *MailParams) *Reply {
	s.b.snapshot(c)
	if s.inTx {
		panic("Mail during a transaction without Reset")
	}
	if from == "blocked@bad.test" {
		return NewReply(550, "5.7.1", "sender rejected")
	}
	s.msg = recordedMessage{From: from, MailParams: *p}
	s.inTx = true
	return nil
}

func (s *testSession) Rcpt(ctx context.Context, c *ConnInfo, to string, p *RcptParams) *Reply {
	s.b.snapshot(c)
	switch {
	case to == "panic@example.test":
		panic("test panic in Rcpt")
	case to == "tempfail@example.test":
		return NewReply(450, "4.2.0", "mailbox busy")
	case to == "close@example.test":
		return NewReply(421, "4.3.0", "policy service down")
	case strings.EqualFold(to, "postmaster"), strings.HasSuffix(strings.ToLower(to), "@example.test"):
		s.msg.Rcpts = append(s.msg.Rcpts, to)
		s.msg.RcptParams = append(s.msg.RcptParams, *p)
		return nil
	}
	return NewReply(554, "5.7.1", "<%s>: relay access denied", to)
}

func (s *testSession) Data(ctx context.Context, c *ConnInfo, r io.Reader) *Reply {
	s.b.snapshot(c)
	if s.b.inData != nil {
		s.b.inData <- struct{}{}
	}
	if s.b.dataGate != nil {
		<-s.b.dataGate
	}
	if len(s.msg.Rcpts) > 0 && s.msg.Rcpts[0] == "early@example.test" {
		// Refuse after the first bytes, leaving the rest unread.
		buf := make([]byte, 4)
		io.ReadFull(r, buf)
		return NewReply(554, "5.7.1", "content refused early")
	}
	if len(s.msg.Rcpts) > 0 && s.msg.Rcpts[0] == "lazy@example.test" {
		// A buggy session: accepts without reading.
		return nil
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return NewReply(451, "4.3.0", "read: %v", err)
	}
	if strings.Contains(string(data), "REJECT-ME") {
		return NewReply(554, "5.7.1", "content rejected")
	}
	s.msg.Data = data
	s.b.mu.Lock()
	s.b.messages = append(s.b.messages, s.msg)
	s.b.mu.Unlock()
	return nil
}

func (s *testSession) Replied(ctx context.Context, c *ConnInfo) {
	if s.b.repliedGate != nil {
		select {
		case <-s.b.repliedGate:
		case <-time.After(5 * time.Second):
		}
	}
	s.b.mu.Lock()
	s.b.replied++
	s.b.mu.Unlock()
}

func (b *testBackend) repliedCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.replied
}

func (s *testSession) Reset(ctx context.Context, c *ConnInfo) {
	s.b.mu.Lock()
	s.b.resets++
	s.b.mu.Unlock()
	s.inTx = false
	s.msg = recordedMessage{}
}

func (s *testSession) Close(ctx context.Context, c *ConnInfo) {
	s.b.mu.Lock()
	s.b.closes++
	s.b.mu.Unlock()
}

func (s *testSession) Auth(ctx context.Context, c *ConnInfo, mech, identity, username, password string) *Reply {
	s.b.snapshot(c)
	if username == "alice" && password == "secret" && (identity == "" || identity == "alice") {
		return nil
	}
	return NewReply(535, "5.7.8", "authentication failed")
}

// testTLSConfig makes a self-signed certificate for "mx.example.test".
func testTLSConfig(t testing.TB) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "mx.example.test"},
		DNSNames:     []string{"mx.example.test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("SMTPD_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// testOptions are the options most tests start from.
func testOptions(t testing.TB) Options {
	o := DefaultOptions()
	o.Hostname = "mx.example.test"
	o.Listener = "smtp"
	o.ReadTimeout = 10 * time.Second
	o.DataTimeout = 10 * time.Second
	o.Logger = testLogger(t)
	return o
}

// startServer runs a server on 127.0.0.1:0 and stops it (checking that it
// stops cleanly) when the test ends.
func startServer(t testing.TB, b Backend, o Options) (*Server, string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(b, o)
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return s, l.Addr().String()
}

// checkGoroutines fails the test if goroutines started during it are still
// running shortly after it ends.
func checkGoroutines(t testing.TB) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(3 * time.Second)
		for {
			n := runtime.NumGoroutine()
			if n <= before {
				return
			}
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<16)
				buf = buf[:runtime.Stack(buf, true)]
				t.Errorf("goroutines: %d before, %d after\n%s", before, n, buf)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func hostPort(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

var _ = fmt.Sprintf
