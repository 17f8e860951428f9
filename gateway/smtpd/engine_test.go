package smtpd

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// rawClient is a line-level test client.
type rawClient struct {
	t  testing.TB
	nc net.Conn
	br *bufio.Reader
}

func dialRaw(t testing.TB, addr string) *rawClient {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &rawClient{t: t, nc: nc, br: bufio.NewReader(nc)}
}

func (c *rawClient) send(s string) {
	c.t.Helper()
	c.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c.nc, s); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// reply reads one whole (multi-line) reply and returns its last line.
func (c *rawClient) reply() string {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		l, err := c.br.ReadString('\n')
		if err != nil {
			c.t.Fatalf("read reply: %v (got %q)", err, l)
		}
		l = strings.TrimRight(l, "\r\n")
		if len(l) < 4 || l[3] != '-' {
			return l
		}
	}
}

func (c *rawClient) expect(prefix string) string {
	c.t.Helper()
	l := c.reply()
	if !strings.HasPrefix(l, prefix) {
		c.t.Fatalf("got %q, want %q...", l, prefix)
	}
	return l
}

func (c *rawClient) expectClosed() {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	l, err := c.br.ReadString('\n')
	if err == nil {
		c.t.Fatalf("want the connection closed, got %q", l)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		c.t.Fatalf("connection still open")
	}
}

func TestHugeLineClosesConnection(t *testing.T) {
	checkGoroutines(t)
	_, addr := startServer(t, &testBackend{}, testOptions(t))
	c := dialRaw(t, addr)
	c.expect("220 ")
	// 2 MB without a line end: the server must not buffer it, and gives up
	// after 1 MB.
	done := make(chan struct{})
	go func() {
		defer close(done)
		chunk := bytes.Repeat([]byte("x"), 64<<10)
		c.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
		for i := 0; i < 32; i++ {
			if _, err := c.nc.Write(chunk); err != nil {
				return
			}
		}
	}()
	c.expect("500 5.5.2 Error: line too long")
	c.expect("421 4.7.0 ")
	c.expectClosed()
	<-done
}

func TestGoSMTPClientPlain(t *testing.T) {
	checkGoroutines(t)
	b := &testBackend{}
	_, addr := startServer(t, b, testOptions(t))
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := "Subject: test\r\n\r\n.leading dot\r\nbody\r\n"
	if err := c.SendMail("sender@example.org", []string{"a@example.test", "b@example.test"}, strings.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
	m, ok := b.lastMessage()
	if !ok || string(m.Data) != msg || m.From != "sender@example.org" || strings.Join(m.Rcpts, ",") != "a@example.test,b@example.test" {
		t.Fatalf("stored %+v", m)
	}
}

func TestGoSMTPClientTLSAuth(t *testing.T) {
	checkGoroutines(t)
	b := &testBackend{}
	o := testOptions(t)
	o.TLSConfig = testTLSConfig(t)
	_, addr := startServer(t, b, o)
	plain, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := plain.Hello("client.example.org"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := plain.Extension("AUTH"); ok {
		t.Fatal("AUTH offered before TLS")
	}
	plain.Quit()
	c, err := smtp.DialStartTLS(addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.example.org"); err != nil {
		t.Fatal(err)
	}
	if !c.SupportsAuth("PLAIN") {
		t.Fatal("AUTH PLAIN not offered after TLS")
	}
	err = c.Auth(sasl.NewPlainClient("", "alice", "wrong"))
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 535 || se.EnhancedCode != (smtp.EnhancedCode{5, 7, 8}) {
		t.Fatalf("bad password: got %v", err)
	}
	if err := c.Auth(sasl.NewPlainClient("", "alice", "secret")); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("alice@example.test", &smtp.MailOptions{RequireTLS: true}); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("b@example.test", &smtp.RcptOptions{Notify: []smtp.DSNNotify{smtp.DSNNotifyFailure, smtp.DSNNotifyDelayed}, OriginalRecipientType: smtp.DSNAddressTypeRFC822, OriginalRecipient: "b+x@example.test"}); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "hello\r\n")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	c.Quit()
	info := b.lastInfo()
	if info.AuthUser != "alice" || info.TLS == nil {
		t.Fatalf("AuthUser %q TLS %v", info.AuthUser, info.TLS != nil)
	}
	m, _ := b.lastMessage()
	if !m.MailParams.RequireTLS || strings.Join(m.RcptParams[0].Notify, ",") != "FAILURE,DELAY" || m.RcptParams[0].ORcpt != "RFC822;b+x@example.test" {
		t.Fatalf("params %+v %+v", m.MailParams, m.RcptParams)
	}
}

func TestGoSMTPClientSMTPUTF8(t *testing.T) {
	checkGoroutines(t)
	b := &testBackend{}
	_, addr := startServer(t, b, testOptions(t))
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.example.org"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("jörg@bücher.example", &smtp.MailOptions{UTF8: true, Body: smtp.Body8BitMIME}); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("张伟@example.test", nil); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "Subject: grüße\r\n\r\nbody\r\n")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	c.Quit()
	m, _ := b.lastMessage()
	if m.From != "jörg@bücher.example" || m.Rcpts[0] != "张伟@example.test" || !m.MailParams.SMTPUTF8 || m.MailParams.Body != "8BITMIME" {
		t.Fatalf("stored %+v", m)
	}
}

// TestBDATAndDATAIdentical sends the same message with DATA (go-smtp's
// client does the dot-stuffing) and with BDAT chunks cut at awkward places
// (inside CRLF, before a dot); the stored bytes must be the same.
func TestBDATAndDATAIdentical(t *testing.T) {
	checkGoroutines(t)
	b := &testBackend{}
	_, addr := startServer(t, b, testOptions(t))
	var msg strings.Builder
	msg.WriteString("From: a@example.org\r\nSubject: chunks\r\n\r\n")
	for i := 0; i < 200; i++ {
		fmt.Fprintf(&msg, ".line %d with a leading dot\r\n..two dots\r\n.\r\n\r\nümlaut %s\r\n", i, strings.Repeat("z", i))
	}
	body := msg.String()

	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SendMail("a@example.org", []string{"b@example.test"}, strings.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	c.Quit()
	viaDATA, _ := b.lastMessage()

	rc := dialRaw(t, addr)
	rc.expect("220 ")
	rc.send("EHLO client.example.org\r\n")
	rc.expect("250 ")
	rc.send("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\n")
	rc.expect("250 2.1.0")
	rc.expect("250 2.1.5")
	// Chunks end right after a CR, and right before a "." line.
	cuts := []int{0, 1, 41, 42, strings.Index(body, "\n.\r\n") + 1, 5000, 5001, len(body)}
	for i := 1; i < len(cuts); i++ {
		chunk := body[cuts[i-1]:cuts[i]]
		last := ""
		if i == len(cuts)-1 {
			last = " LAST"
		}
		rc.send(fmt.Sprintf("BDAT %d%s\r\n%s", len(chunk), last, chunk))
	}
	for i := 1; i < len(cuts)-1; i++ {
		rc.expect("250 2.0.0 Ok: ")
	}
	rc.expect("250 2.0.0 Ok")
	rc.send("QUIT\r\n")
	rc.expect("221 ")
	viaBDAT, _ := b.lastMessage()
	if string(viaDATA.Data) != body {
		t.Fatalf("DATA stored %d bytes, sent %d", len(viaDATA.Data), len(body))
	}
	if !bytes.Equal(viaDATA.Data, viaBDAT.Data) {
		t.Fatalf("DATA and BDAT differ: %d vs %d bytes", len(viaDATA.Data), len(viaBDAT.Data))
	}
}

func TestConnectionLimits(t *testing.T) {
	checkGoroutines(t)
	o := testOptions(t)
	o.MaxConnectionsPerIP = 1
	s, addr := startServer(t, &testBackend{}, o)
	c1 := dialRaw(t, addr)
	c1.expect("220 ")
	c2 := dialRaw(t, addr)
	c2.expect("421 4.7.0 mx.example.test Error: too many connections from 127.0.0.1")
	c2.expectClosed()
	c1.send("QUIT\r\n")
	c1.expect("221 ")
	c1.expectClosed()
	// The slot is free again once the first session is gone.
	deadline := time.Now().Add(2 * time.Second)
	for s.Stats().Active > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	c3 := dialRaw(t, addr)
	c3.expect("220 ")
	c3.send("QUIT\r\n")
	c3.expect("221 ")

	o = testOptions(t)
	o.MaxConnections = 1
	_, addr = startServer(t, &testBackend{}, o)
	d1 := dialRaw(t, addr)
	d1.expect("220 ")
	d2 := dialRaw(t, addr)
	d2.expect("421 4.7.0 mx.example.test Error: too many connections")
	d2.expectClosed()
	if got := s.Stats().Refused; got != 1 {
		t.Errorf("Refused = %d, want 1", got)
	}
}

// TestShutdownLetsDataFinish: an idle session is told 421 4.3.2 at once; a
// session in DATA finishes its message, then gets 421 4.3.2.
func TestShutdownLetsDataFinish(t *testing.T) {
	checkGoroutines(t)
	b := &testBackend{dataGate: make(chan struct{}), inData: make(chan struct{}, 1)}
	o := testOptions(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(b, o)
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()
	addr := l.Addr().String()

	busy := dialRaw(t, addr)
	busy.expect("220 ")
	busy.send("HELO a.example\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n")
	busy.expect("250 ")
	busy.expect("250 2.1.0")
	busy.expect("250 2.1.5")
	busy.expect("354 ")
	busy.send("Subject: x\r\n\r\nbody\r\n.\r\n")
	<-b.inData

	idle := dialRaw(t, addr)
	idle.expect("220 ")

	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		shut <- s.Shutdown(ctx)
	}()
	idle.expect("421 4.3.2 mx.example.test Error: shutting down")
	idle.expectClosed()
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v while a message was in DATA", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(b.dataGate)
	busy.expect("250 2.0.0 Ok")
	busy.expect("421 4.3.2 ")
	busy.expectClosed()
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve: %v", err)
	}
	if err := s.Serve(l); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve after Shutdown: %v", err)
	}
	if _, ok := b.lastMessage(); !ok {
		t.Fatal("the message in DATA was not stored")
	}
}

// TestShutdownDeadline: when ctx ends first, Shutdown closes what is left
// and returns ctx's error.
func TestShutdownDeadline(t *testing.T) {
	checkGoroutines(t)
	b := &testBackend{dataGate: make(chan struct{}), inData: make(chan struct{}, 1)}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(b, testOptions(t))
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()
	c := dialRaw(t, l.Addr().String())
	c.expect("220 ")
	c.send("HELO a.example\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n")
	for i := 0; i < 4; i++ {
		c.reply()
	}
	c.send("x\r\n.\r\n")
	<-b.inData
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	go func() {
		<-ctx.Done()
		time.Sleep(50 * time.Millisecond)
		close(b.dataGate) // the stuck session can now notice its closed connection
	}()
	if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v, want deadline exceeded", err)
	}
	<-served
}

func TestStatsAndSessionLifecycle(t *testing.T) {
	checkGoroutines(t)
	b := &testBackend{}
	o := testOptions(t)
	o.XCLIENTFrom = []netip.Prefix{mustPrefix("127.0.0.1/32")}
	s, addr := startServer(t, b, o)
	c := dialRaw(t, addr)
	c.expect("220 ")
	c.send("XCLIENT ADDR=192.0.2.5\r\n")
	c.expect("220 ")
	c.send("EHLO a.example\r\n")
	c.expect("250 ")
	c.send("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n")
	c.expect("250 ")
	c.expect("250 ")
	c.expect("354 ")
	c.send("12345678\r\n.\r\nBOGUS\r\nQUIT\r\n")
	c.expect("250 2.0.0 Ok")
	c.expect("500 ")
	c.expect("221 ")
	c.expectClosed()
	deadline := time.Now().Add(2 * time.Second)
	for s.Stats().Active > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	st := s.Stats()
	if st.Connections != 1 || st.Active != 0 || st.Messages != 1 || st.Bytes != 10 || st.Errors != 1 || st.Commands != 7 {
		t.Fatalf("stats %+v", st)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.sessions != 2 || b.closes != 2 {
		t.Fatalf("sessions %d, closes %d; want 2 and 2 (XCLIENT replaces the session)", b.sessions, b.closes)
	}
}

func TestReplyError(t *testing.T) {
	r := NewReply(550, "5.7.1", "no %s here", "relay")
	if r.Error() != "550 5.7.1 no relay here" {
		t.Fatalf("got %q", r.Error())
	}
	r = &Reply{Code: 250, Text: "100% done\nsecond line"}
	if r.Error() != "250 100% done second line" {
		t.Fatalf("got %q", r.Error())
	}
	var err error = NewReply(451, "4.3.0", "later")
	var rep *Reply
	if !errors.As(fmt.Errorf("policy: %w", err), &rep) || rep.Code != 451 {
		t.Fatal("errors.As did not find the reply")
	}
}

// TestMultiLineReplyAndSanitising: a session's multi-line reply gets the
// enhanced code on every line, and control characters cannot split a reply.
func TestMultiLineReplyAndSanitising(t *testing.T) {
	checkGoroutines(t)
	_, addr := startServer(t, replyBackend{NewReply(550, "5.7.1", "first\nsecond\r\n250 forged")}, testOptions(t))
	c := dialRaw(t, addr)
	c.expect("220 ")
	c.send("HELO a.example\r\n")
	c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	var lines []string
	for i := 0; i < 3; i++ {
		l, _ := c.br.ReadString('\n')
		lines = append(lines, l)
	}
	want := []string{"550-5.7.1 first\r\n", "550-5.7.1 second\r\n", "550 5.7.1 250 forged\r\n"}
	if strings.Join(lines, "") != strings.Join(want, "") {
		t.Fatalf("got %q", lines)
	}
}

type replyBackend struct{ r *Reply }

func (b replyBackend) Connect(ctx context.Context, c *ConnInfo) (Session, *Reply) {
	return replySession(b), nil
}

type replySession replyBackend

func (s replySession) Hello(context.Context, *ConnInfo) *Reply { return s.r }
func (s replySession) Mail(context.Context, *ConnInfo, string, *MailParams) *Reply {
	return nil
}
func (s replySession) Rcpt(context.Context, *ConnInfo, string, *RcptParams) *Reply {
	return nil
}
func (s replySession) Data(_ context.Context, _ *ConnInfo, r io.Reader) *Reply {
	io.Copy(io.Discard, r)
	return nil
}
func (s replySession) Reset(context.Context, *ConnInfo) {}
func (s replySession) Close(context.Context, *ConnInfo) {}

// TestReadersNeverExceedBound checks ErrTooBig on both readers directly.
func TestReadersNeverExceedBound(t *testing.T) {
	o := Options{MaxMessageSize: 10}.withDefaults()
	var bare bool
	dr := newDotReader(bufio.NewReader(strings.NewReader("0123456789\r\nabc\r\n.\r\n")), &o, &bare)
	got, err := io.ReadAll(dr)
	if !errors.Is(err, ErrTooBig) || len(got) != 10 {
		t.Fatalf("got %d bytes, %v", len(got), err)
	}
	left, err := dr.drain()
	if err != nil || left == 0 {
		t.Fatalf("drain: %d %v", left, err)
	}
}

// TestWriteTimeout: a client that pipelines commands and never reads the
// replies cannot hold a session forever: the blocked write times out.
// Sometimes loopback TCP stalls the other way first (the replies fit in
// the kernel's buffers, then the client's data stops coming) and the
// session waits to read: the read timeout, short here, ends it then; a
// write that never timed out would still hang the test.
func TestWriteTimeout(t *testing.T) {
	checkGoroutines(t)
	o := testOptions(t)
	o.WriteTimeout = 300 * time.Millisecond
	o.ReadTimeout = 2 * time.Second
	o.MaxCommands = 1 << 20
	s, addr := startServer(t, &testBackend{}, o)
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.(*net.TCPConn).SetReadBuffer(4096)
	wrote := make(chan error, 1)
	go func() {
		nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		_, err := nc.Write(bytes.Repeat([]byte("HELP\r\n"), 200000))
		wrote <- err
	}()
	deadline := time.Now().Add(8 * time.Second)
	for {
		time.Sleep(50 * time.Millisecond)
		if st := s.Stats(); st.Connections == 1 && st.Active == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("session still open: %+v", s.Stats())
		}
	}
	nc.Close()
	<-wrote
}

// prefixWriter sends pre before the first write, so a PROXY header and a
// TLS ClientHello arrive in one segment.
type prefixWriter struct {
	net.Conn
	pre []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	if p.pre != nil {
		buf := append(p.pre, b...)
		p.pre = nil
		if _, err := p.Conn.Write(buf); err != nil {
			return 0, err
		}
		return len(b), nil
	}
	return p.Conn.Write(b)
}

// TestProxyThenImplicitTLS: behind a TLS-passthrough balancer the PROXY
// header and the ClientHello come together; the bytes the header reader
// buffered must reach the TLS handshake.
func TestProxyThenImplicitTLS(t *testing.T) {
	checkGoroutines(t)
	b := &testBackend{}
	o := testOptions(t)
	o.TLSConfig = testTLSConfig(t)
	o.ImplicitTLS = true
	o.ProxyProtocol = true
	o.TrustedProxies = []netip.Prefix{mustPrefix("127.0.0.1/32")}
	o.MaxConnectionsPerIP = 1
	_, addr := startServer(t, b, o)
	dial := func(client string) (*tls.Conn, *bufio.Reader) {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		pw := &prefixWriter{Conn: nc, pre: []byte("PROXY TCP4 " + client + " 198.51.100.1 40000 465\r\n")}
		tc := tls.Client(pw, &tls.Config{InsecureSkipVerify: true})
		tc.SetDeadline(time.Now().Add(5 * time.Second))
		return tc, bufio.NewReader(tc)
	}
	tc, br := dial("192.0.2.7")
	if l, err := br.ReadString('\n'); err != nil || l != "220 mx.example.test ESMTP Postern\r\n" {
		t.Fatalf("banner %q %v", l, err)
	}
	io.WriteString(tc, "HELO c.example\r\n")
	if l, _ := br.ReadString('\n'); l != "250 mx.example.test\r\n" {
		t.Fatalf("HELO reply %q", l)
	}
	if info := b.lastInfo(); info.RemoteAddr.String() != "192.0.2.7:40000" || info.TLS == nil {
		t.Fatalf("info %+v", info)
	}
	// MaxConnectionsPerIP counts the client behind the proxy, not the proxy.
	tc2, br2 := dial("192.0.2.8")
	if l, err := br2.ReadString('\n'); err != nil || !strings.HasPrefix(l, "220 ") {
		t.Fatalf("second client: %q %v", l, err)
	}
	_, br3 := dial("192.0.2.7")
	if l, err := br3.ReadString('\n'); err != nil || !strings.HasPrefix(l, "421 4.7.0 ") {
		t.Fatalf("same client twice: %q %v", l, err)
	}
	io.WriteString(tc2, "QUIT\r\n")
	io.WriteString(tc, "QUIT\r\n")
}

// TestReplyRepair: replies from a buggy policy are made valid SMTP.
func TestReplyRepair(t *testing.T) {
	for _, tc := range []struct {
		r    *Reply
		want string
	}{
		{&Reply{Code: 550, Enhanced: "4.7.1", Text: "x"}, "550 5.7.1 x\r\n"},
		{&Reply{Code: 450, Enhanced: "bogus", Text: "x"}, "450 4.0.0 x\r\n"},
		{&Reply{Code: 99, Text: "x"}, "451 4.3.0 Error: internal error\r\n"},
		{&Reply{Code: 250, Text: strings.Repeat("a", 600)}, "250 2.0.0 " + strings.Repeat("a", maxReplyText) + "\r\n"},
		{&Reply{Code: 354, Enhanced: "2.0.0", Text: "go"}, "354 go\r\n"},
	} {
		var buf bytes.Buffer
		o := Options{}.withDefaults()
		c := &conn{srv: NewServer(nil, o), opt: &o, log: o.Logger, bw: bufio.NewWriter(&buf)}
		c.writeReply(tc.r)
		c.bw.Flush()
		if buf.String() != tc.want {
			t.Errorf("%+v: got %q, want %q", tc.r, buf.String(), tc.want)
		}
	}
}

// pipeListener hands out one end of a net.Pipe, whose writes arrive whole
// at the other end: a test can see how many writes the server made.
type pipeListener struct {
	conns chan net.Conn
	done  chan struct{}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}
func (l *pipeListener) Close() error {
	select {
	case <-l.done:
	default:
		close(l.done)
	}
	return nil
}
func (l *pipeListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// TestPipelinedRepliesInOneWrite: RFC 2920 3.2 — the replies to a
// pipelined group go out together, not one write per command.
func TestPipelinedRepliesInOneWrite(t *testing.T) {
	checkGoroutines(t)
	l := &pipeListener{conns: make(chan net.Conn, 1), done: make(chan struct{})}
	srv := NewServer(&testBackend{}, testOptions(t))
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	client, server := net.Pipe()
	l.conns <- server
	defer client.Close()
	buf := make([]byte, 8192)
	readOnce := func() string {
		client.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := client.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		return string(buf[:n])
	}
	write := func(s string) {
		client.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(client, s); err != nil {
			t.Fatal(err)
		}
	}
	if got := readOnce(); got != "220 mx.example.test ESMTP Postern\r\n" {
		t.Fatalf("banner %q", got)
	}
	write("EHLO c.example\r\n")
	if got := readOnce(); !strings.HasPrefix(got, "250-mx.example.test\r\n") || !strings.HasSuffix(got, "250 BINARYMIME\r\n") {
		t.Fatalf("EHLO reply in more than one write: %q", got)
	}
	write("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\nRCPT TO:<x@elsewhere.example>\r\nDATA\r\n")
	want := "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n554 5.7.1 <x@elsewhere.example>: relay access denied\r\n354 End data with <CR><LF>.<CR><LF>\r\n"
	if got := readOnce(); got != want {
		t.Fatalf("pipelined replies: got %q in one write, want %q", got, want)
	}
	write("x\r\n.\r\nQUIT\r\n")
	if got := readOnce(); got != "250 2.0.0 Ok\r\n221 2.0.0 Bye\r\n" {
		t.Fatalf("got %q", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Fatal(err)
	}
}

// TestConcurrentSessions: many go-smtp clients at once, several messages
// each; every message arrives, counters add up, nothing leaks.
func TestConcurrentSessions(t *testing.T) {
	checkGoroutines(t)
	b := &testBackend{}
	s, addr := startServer(t, b, testOptions(t))
	const clients, perClient = 20, 5
	errs := make(chan error, clients)
	for i := 0; i < clients; i++ {
		go func(i int) {
			c, err := smtp.Dial(addr)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			for j := 0; j < perClient; j++ {
				msg := fmt.Sprintf("Subject: %d-%d\r\n\r\nbody\r\n", i, j)
				if err := c.SendMail("a@example.org", []string{fmt.Sprintf("u%d@example.test", i)}, strings.NewReader(msg)); err != nil {
					errs <- err
					return
				}
			}
			errs <- c.Quit()
		}(i)
	}
	for i := 0; i < clients; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	b.mu.Lock()
	n := len(b.messages)
	b.mu.Unlock()
	if n != clients*perClient || s.Stats().Messages != clients*perClient {
		t.Fatalf("%d messages stored, stats %+v", n, s.Stats())
	}
}

// Replied runs after a message's reply has reached the client (the client
// reads the 250 while Replied still waits for it), for DATA and for BDAT,
// and also when the client leaves right after its message.
func TestRepliedRunsAfterTheReply(t *testing.T) {
	checkGoroutines(t)
	b := &testBackend{repliedGate: make(chan struct{})}
	_, addr := startServer(t, b, testOptions(t))
	c := dialRaw(t, addr)
	c.expect("220 ")
	c.send("EHLO a.example\r\n")
	c.expect("250 ")
	c.send("MAIL FROM:<a@example.org>\r\n")
	c.expect("250 ")
	c.send("RCPT TO:<b@example.test>\r\n")
	c.expect("250 ")
	c.send("DATA\r\n")
	c.expect("354 ")
	c.send("Subject: x\r\n\r\nbody\r\n.\r\n")
	c.expect("250 2.0.0") // sent before Replied, which is still waiting
	if n := b.repliedCount(); n != 0 {
		t.Fatalf("Replied ran %d times before the client let it", n)
	}
	b.repliedGate <- struct{}{}
	c.send("MAIL FROM:<a@example.org>\r\n")
	c.expect("250 ")
	if n := b.repliedCount(); n != 1 {
		t.Fatalf("Replied ran %d times after DATA, want 1", n)
	}
	c.send("RCPT TO:<b@example.test>\r\n")
	c.expect("250 ")
	c.send("BDAT 20 LAST\r\nSubject: y\r\n\r\nbody\r\n")
	c.expect("250 2.0.0")
	b.repliedGate <- struct{}{}
	c.send("NOOP\r\n")
	c.expect("250 ")
	if n := b.repliedCount(); n != 2 {
		t.Fatalf("Replied ran %d times after BDAT, want 2", n)
	}
	// A client that does not wait for the reply.
	close(b.repliedGate)
	c.send("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n")
	c.expect("250 ")
	c.expect("250 ")
	c.expect("354 ")
	c.send("Subject: z\r\n\r\nbody\r\n.\r\n")
	c.nc.Close()
	deadline := time.Now().Add(5 * time.Second)
	for b.repliedCount() != 3 {
		if time.Now().After(deadline) {
			t.Fatalf("Replied ran %d times, want 3", b.repliedCount())
		}
		time.Sleep(5 * time.Millisecond)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.messages) != 3 {
		t.Fatalf("%d messages", len(b.messages))
	}
}

// Recipients over the limit are not errors up to maxOvershoot per
// transaction; past it their 452s count, and MaxErrors ends the session.
func TestRecipientOvershootIsBounded(t *testing.T) {
	o := testOptions(t)
	o.MaxRecipients, o.MaxErrors = 1, 3
	_, addr := startServer(t, &testBackend{}, o)
	c := dialRaw(t, addr)
	c.expect("220 ")
	c.send("HELO client.example.org\r\nMAIL FROM:<a@example.org>\r\n")
	c.expect("250 ")
	c.expect("250 ")
	const over = maxOvershoot + 3
	go func() {
		var b strings.Builder
		for i := 0; i <= over; i++ {
			fmt.Fprintf(&b, "RCPT TO:<r%d@example.test>\r\n", i)
		}
		io.WriteString(c.nc, b.String())
	}()
	c.expect("250 ")
	for i := 0; i < over; i++ {
		c.expect("452 4.5.3")
	}
	c.expect("421 ")
}

// A STARTTLS whose handshake negotiates an ALPN protocol (the ACME CA's
// acme-tls/1, offered only by the server's challenge configuration) ends
// the connection with nothing sent after the handshake.
func TestStartTLSWithALPNProtocolCloses(t *testing.T) {
	checkGoroutines(t)
	o := testOptions(t)
	o.TLSConfig = testTLSConfig(t)
	o.TLSConfig.NextProtos = []string{"acme-tls/1"}
	_, addr := startServer(t, &testBackend{}, o)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	reply := func() string {
		var last string
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			if last = l; len(l) < 4 || l[3] == ' ' {
				return last
			}
		}
	}
	reply() // greeting
	fmt.Fprintf(c, "EHLO client.example.org\r\n")
	reply()
	fmt.Fprintf(c, "STARTTLS\r\n")
	if r := reply(); !strings.HasPrefix(r, "220") {
		t.Fatalf("STARTTLS: %q", r)
	}
	tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"acme-tls/1"}})
	if err := tc.Handshake(); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	if p := tc.ConnectionState().NegotiatedProtocol; p != "acme-tls/1" {
		t.Fatalf("negotiated %q", p)
	}
	tc.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := tc.Read(make([]byte, 64))
	if n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("after the handshake: %d bytes, %v; want the connection closed with nothing sent", n, err)
	}
}
