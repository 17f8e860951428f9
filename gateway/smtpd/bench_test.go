package smtpd

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"postern/internal/gosmtptest"
)

// discardBackend accepts everything and throws the message away, so the
// benchmark measures the protocol engine.
type discardBackend struct{}

func (discardBackend) Connect(context.Context, *ConnInfo) (Session, *Reply) {
	return discardSession{}, nil
}

type discardSession struct{}

func (discardSession) Hello(context.Context, *ConnInfo) *Reply { return nil }
func (discardSession) Mail(context.Context, *ConnInfo, string, *MailParams) *Reply {
	return nil
}
func (discardSession) Rcpt(context.Context, *ConnInfo, string, *RcptParams) *Reply {
	return nil
}
func (discardSession) Data(_ context.Context, _ *ConnInfo, r io.Reader) *Reply {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return NewReply(451, "4.3.0", "read: %v", err)
	}
	return nil
}
func (discardSession) Reset(context.Context, *ConnInfo) {}
func (discardSession) Close(context.Context, *ConnInfo) {}

func benchMessage() string {
	var b strings.Builder
	b.WriteString("From: a@example.org\r\nTo: b@example.test\r\nSubject: benchmark\r\n\r\n")
	for b.Len() < 4096-80 {
		b.WriteString("The quick brown fox jumps over the lazy dog. 0123456789 abcdefghij\r\n")
	}
	return b.String()
}

// sendOne is one whole SMTP session through go-smtp's client: connect,
// EHLO, MAIL, RCPT, DATA (4 KiB), QUIT.
func sendOne(b *testing.B, addr, msg string) {
	c, err := smtp.Dial(addr)
	if err != nil {
		b.Fatal(err)
	}
	if err := c.SendMail("a@example.org", []string{"b@example.test"}, strings.NewReader(msg)); err != nil {
		b.Fatal(err)
	}
	if err := c.Quit(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkTransaction: messages per second through our engine over
// loopback, one connection per message.
func BenchmarkTransaction(b *testing.B) {
	o := DefaultOptions()
	o.Hostname = "mx.example.test"
	_, addr := startServer(b, discardBackend{}, o)
	msg := benchMessage()
	b.SetBytes(int64(len(msg)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		sendOne(b, addr, msg)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkTransactionGoSMTP is the same load against go-smtp's server,
// for comparison.
func BenchmarkTransactionGoSMTP(b *testing.B) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	s := smtp.NewServer(goSMTPBackend{})
	s.Domain = "mx.example.test"
	s.ReadTimeout, s.WriteTimeout = time.Minute, time.Minute
	s.MaxMessageBytes = 50 << 20
	s.EnableSMTPUTF8, s.EnableBINARYMIME, s.EnableDSN = true, true, true
	gosmtptest.Serve(b, s, l)
	msg := benchMessage()
	b.SetBytes(int64(len(msg)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		sendOne(b, l.Addr().String(), msg)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

type goSMTPBackend struct{}

func (goSMTPBackend) NewSession(*smtp.Conn) (smtp.Session, error) { return goSMTPSession{}, nil }

type goSMTPSession struct{}

func (goSMTPSession) Reset()                               {}
func (goSMTPSession) Logout() error                        { return nil }
func (goSMTPSession) Mail(string, *smtp.MailOptions) error { return nil }
func (goSMTPSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (goSMTPSession) Data(r io.Reader) error {
	_, err := io.Copy(io.Discard, r)
	return err
}
