package netserve

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"postern/internal/netserve/netservetest"
)

// tcpPair is a real TCP connection on 127.0.0.1: server is the accepted
// side, client the dialled one; both are closed when t ends.
func tcpPair(t *testing.T) (server, client net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		accepted <- c
	}()
	client, err = net.DialTimeout("tcp", l.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { server.Close(); client.Close() })
	return server, client
}

// readLine reads one line from c's reader r within 5 s, without its line
// end.
func readLine(c net.Conn, r *bufio.Reader) (string, error) {
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	l, err := r.ReadString('\n')
	return strings.TrimRight(l, "\r\n"), err
}

// A STARTTLS in the middle of a conversation: the buffered reader and
// writer the session built over the Conn go on over TLS once they are
// reset, and what the client sent in the clear before the handshake is
// not read as if it came over TLS.
func TestConnStartTLS(t *testing.T) {
	serverConfig, clientConfig := netservetest.TLSConfigs(t, "mail.example.test")
	sc, cc := tcpPair(t)
	conn := NewConn(sc, 5*time.Second)
	br, bw := bufio.NewReader(conn), bufio.NewWriter(conn)

	done := make(chan error, 1)
	go func() {
		cr := bufio.NewReader(cc)
		io.WriteString(cc, "STARTTLS\r\n")
		if l, _ := readLine(cc, cr); l != "OK begin" {
			done <- errors.New("reply to STARTTLS: " + l)
			return
		}
		tc := tls.Client(cc, clientConfig)
		if err := tc.Handshake(); err != nil {
			done <- err
			return
		}
		tr := bufio.NewReader(tc)
		io.WriteString(tc, "HELLO over tls\r\n")
		if l, _ := readLine(tc, tr); l != "OK HELLO over tls" {
			done <- errors.New("reply over TLS: " + l)
			return
		}
		done <- nil
	}()

	sc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if l, err := br.ReadString('\n'); err != nil || l != "STARTTLS\r\n" {
		t.Fatalf("command: %q, %v", l, err)
	}
	bw.WriteString("OK begin\r\n")
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := conn.StartTLS(context.Background(), serverConfig, 5*time.Second); err != nil {
		t.Fatalf("StartTLS: %v", err)
	}
	if _, ok := conn.NetConn().(*tls.Conn); !ok {
		t.Fatalf("NetConn after StartTLS is %T, want *tls.Conn", conn.NetConn())
	}
	br.Reset(conn)
	bw.Reset(conn)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	l, err := br.ReadString('\n')
	if err != nil || l != "HELLO over tls\r\n" {
		t.Fatalf("command over TLS: %q, %v", l, err)
	}
	bw.WriteString("OK " + l)
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// A client that answers STARTTLS with something other than a handshake:
// StartTLS fails and the connection stays the plain one.
func TestConnStartTLSFails(t *testing.T) {
	serverConfig, _ := netservetest.TLSConfigs(t, "mail.example.test")
	sc, cc := tcpPair(t)
	conn := NewConn(sc, 5*time.Second)
	go io.WriteString(cc, "this is not a TLS ClientHello\r\n")
	if err := conn.StartTLS(context.Background(), serverConfig, 5*time.Second); err == nil {
		t.Fatal("StartTLS succeeded on garbage")
	}
	if conn.NetConn() != sc {
		t.Fatalf("NetConn after a failed StartTLS is %T, want the plain connection", conn.NetConn())
	}
}

// Implicit TLS: Handshake runs a TLS listener's handshake, does nothing
// on a plain connection, and refuses one for another protocol (ALPN).
func TestConnHandshake(t *testing.T) {
	serverConfig, clientConfig := netservetest.TLSConfigs(t, "mail.example.test")
	serverConfig.NextProtos = []string{"acme-tls/1"}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	tl := tls.NewListener(l, serverConfig)

	for _, tc := range []struct {
		name  string
		alpn  []string
		want  error
		greet bool
	}{
		{name: "mail client", greet: true},
		{name: "ACME tls-alpn-01", alpn: []string{"acme-tls/1"}, want: ErrOtherProtocol},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := clientConfig.Clone()
			cfg.NextProtos = tc.alpn
			clientDone := make(chan string, 1)
			go func() {
				c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", l.Addr().String(), cfg)
				if err != nil {
					clientDone <- "dial: " + err.Error()
					return
				}
				defer c.Close()
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				line, _ := bufio.NewReader(c).ReadString('\n')
				clientDone <- line
			}()
			sc, err := tl.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer sc.Close()
			conn := NewConn(sc, 5*time.Second)
			err = conn.Handshake(context.Background(), 5*time.Second)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Handshake: %v, want %v", err, tc.want)
			}
			if tc.greet {
				io.WriteString(conn, "* OK ready\r\n")
			}
			sc.Close()
			got := <-clientDone
			if want := map[bool]string{true: "* OK ready\r\n", false: ""}[tc.greet]; got != want {
				t.Fatalf("client read %q, want %q", got, want)
			}
		})
	}

	sc, _ := tcpPair(t)
	if err := NewConn(sc, time.Second).Handshake(context.Background(), time.Second); err != nil {
		t.Fatalf("Handshake on a plain connection: %v", err)
	}
}

// A client that stops reading: each write is bounded by the write
// timeout, so the session's goroutine is not held.
func TestConnWriteTimeout(t *testing.T) {
	sc, _ := tcpPair(t) // the client never reads
	conn := NewConn(sc, 200*time.Millisecond)
	chunk := make([]byte, 1<<20)
	start := time.Now()
	var err error
	for i := 0; i < 1024 && err == nil; i++ {
		_, err = conn.Write(chunk)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("writing to a client that does not read: %v, want a timeout", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("the write took %v to time out", d)
	}
}

// Interrupt cuts a wait for the next command at once; the wait's error
// says so, and no wait begins after it.
func TestConnInterruptCutsWait(t *testing.T) {
	sc, _ := tcpPair(t)
	conn := NewConn(sc, time.Second)
	if err := conn.BeginWait(time.Minute); err != nil {
		t.Fatal(err)
	}
	read := make(chan error, 1)
	go func() {
		_, err := conn.Read(make([]byte, 10))
		read <- conn.WaitError(err)
	}()
	time.Sleep(50 * time.Millisecond) // let the read block
	start := time.Now()
	conn.Interrupt()
	select {
	case err := <-read:
		if !errors.Is(err, ErrInterrupted) {
			t.Fatalf("cut wait: %v, want ErrInterrupted", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Interrupt did not cut the wait")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("the wait ended %v after Interrupt", d)
	}
	conn.EndWait()
	if !conn.Interrupted() {
		t.Error("Interrupted false after Interrupt")
	}
	if err := conn.BeginWait(time.Minute); !errors.Is(err, ErrInterrupted) {
		t.Fatalf("BeginWait after Interrupt: %v, want ErrInterrupted", err)
	}
}

// A read inside a command (an upload) is left to finish: Interrupt only
// marks the session, which ends at its next BeginWait.
func TestConnInterruptSparesCommandRead(t *testing.T) {
	sc, cc := tcpPair(t)
	conn := NewConn(sc, time.Second)
	if err := conn.BeginWait(time.Minute); err != nil {
		t.Fatal(err)
	}
	conn.EndWait() // the command has been read; it reads its data now
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	conn.Interrupt()
	go func() {
		time.Sleep(100 * time.Millisecond)
		io.WriteString(cc, "upload data\r\n")
	}()
	l, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || l != "upload data\r\n" {
		t.Fatalf("read inside a command after Interrupt: %q, %v", l, err)
	}
	if err := conn.BeginWait(time.Minute); !errors.Is(err, ErrInterrupted) {
		t.Fatalf("BeginWait at the next boundary: %v, want ErrInterrupted", err)
	}
}

// WaitError tells an idle client from a closed one.
func TestConnWaitError(t *testing.T) {
	sc, cc := tcpPair(t)
	conn := NewConn(sc, time.Second)
	if err := conn.BeginWait(50 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	_, err := conn.Read(make([]byte, 10))
	conn.EndWait()
	if err := conn.WaitError(err); !errors.Is(err, ErrIdle) {
		t.Fatalf("silent client: %v, want ErrIdle", err)
	}
	if conn.WaitError(nil) != nil {
		t.Fatal("WaitError(nil) is not nil")
	}
	cc.Close()
	conn.BeginWait(5 * time.Second)
	_, err = conn.Read(make([]byte, 10))
	conn.EndWait()
	if err := conn.WaitError(err); !errors.Is(err, io.EOF) {
		t.Fatalf("closed client: %v, want EOF", err)
	}
}

// relayer relays the client to a backend over real connections, byte for
// byte, until Interrupt (which ends the copy at once, as mailbox/proxy's
// Relay ends at a command boundary) or Close.
type relayer struct {
	client, backend net.Conn

	mu          sync.Mutex
	interrupted bool
	closed      bool
}

func (r *relayer) run() {
	go io.Copy(r.client, r.backend)
	io.Copy(r.backend, r.client)
}

func (r *relayer) Interrupt() {
	r.mu.Lock()
	r.interrupted = true
	r.mu.Unlock()
	r.client.SetReadDeadline(time.Now())
}

func (r *relayer) Close() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.client.Close()
	r.backend.Close()
}

func (r *relayer) state() (interrupted, closed bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.interrupted, r.closed
}

// relaying starts a session relaying its client through a relayer and
// sends a line through it, so that the relay is known to run; ended is
// closed when Relay returns.
func relaying(t *testing.T) (conn *Conn, r *relayer, client net.Conn, ended <-chan struct{}) {
	t.Helper()
	sc, cc := tcpPair(t)
	front, back := tcpPair(t) // front: the relay's side of the backend
	conn = NewConn(sc, time.Second)
	r = &relayer{client: sc, backend: front}
	done := make(chan struct{})
	go func() {
		conn.Relay(r, r.run)
		close(done)
	}()
	io.WriteString(cc, "through the relay\r\n")
	if l, err := readLine(back, bufio.NewReader(back)); l != "through the relay" {
		t.Fatalf("backend read %q, %v", l, err)
	}
	return conn, r, cc, done
}

// waitEnded fails t unless ended is closed within 5 s.
func waitEnded(t *testing.T, ended <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s did not end the relay", what)
	}
}

// While a session relays its client, Interrupt goes to the relay;
// afterwards Close goes to the connection again.
func TestConnRelayInterrupt(t *testing.T) {
	conn, r, cc, ended := relaying(t)
	conn.Interrupt()
	waitEnded(t, ended, "Interrupt")
	if interrupted, closed := r.state(); !interrupted || closed {
		t.Fatalf("relay interrupted %v, closed %v; want true, false", interrupted, closed)
	}
	// The relay is over: Close closes the client connection, not the
	// relay.
	conn.Close()
	if _, closed := r.state(); closed {
		t.Fatal("Close after the relay ended reached the relay")
	}
	cc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := cc.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("client after Close: %v, want EOF", err)
	}
}

// Close during a relay cuts it.
func TestConnRelayClose(t *testing.T) {
	conn, r, _, ended := relaying(t)
	conn.Close()
	waitEnded(t, ended, "Close")
	if _, closed := r.state(); !closed {
		t.Fatal("Close during the relay did not close it")
	}
}

// A session interrupted before it hands its client to a relay: the relay
// is interrupted before it starts.
func TestConnRelayAfterInterrupt(t *testing.T) {
	sc, _ := tcpPair(t)
	front, _ := tcpPair(t)
	conn := NewConn(sc, time.Second)
	conn.Interrupt()
	r := &relayer{client: sc, backend: front}
	var atStart bool
	conn.Relay(r, func() { atStart, _ = r.state() })
	if !atStart {
		t.Fatal("the relay of an interrupted session was not interrupted before it ran")
	}
}
