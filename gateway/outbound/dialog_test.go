package outbound

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// scriptedServer is a hand-written SMTP peer for behaviour go-smtp's server
// cannot show (no EHLO, a broken STARTTLS, a lost reply). Each accepted
// connection runs handle; the transcript of every session is kept.
type scriptedServer struct {
	l      net.Listener
	mu     sync.Mutex
	script []string // lines received, all sessions, in order
	wg     sync.WaitGroup
}

type peer struct {
	conn net.Conn
	r    *bufio.Reader
	s    *scriptedServer
}

func (p *peer) send(lines ...string) {
	for _, l := range lines {
		p.conn.Write([]byte(l + "\r\n"))
	}
}

func (p *peer) expect() string {
	line, err := p.r.ReadString('\n')
	if err != nil {
		return ""
	}
	line = strings.TrimRight(line, "\r\n")
	p.s.mu.Lock()
	p.s.script = append(p.s.script, line)
	p.s.mu.Unlock()
	return line
}

// readData reads a message up to the lone dot.
func (p *peer) readData() string {
	var b strings.Builder
	for {
		line, err := p.r.ReadString('\n')
		if err != nil || line == ".\r\n" {
			return b.String()
		}
		b.WriteString(line)
	}
}

func startScripted(t *testing.T, ip string, port int, handle func(p *peer)) *scriptedServer {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(ip, itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	s := &scriptedServer{l: l}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				handle(&peer{conn: c, r: bufio.NewReader(c), s: s})
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		s.wg.Wait()
	})
	return s
}

func (s *scriptedServer) port() int { return s.l.Addr().(*net.TCPAddr).Port }

func (s *scriptedServer) transcript() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.script, "\n")
}

// acceptRest answers MAIL, RCPT, DATA and QUIT with success, starting
// with the lines already read.
func acceptRest(p *peer, pending ...string) {
	for {
		var line string
		if len(pending) > 0 {
			line, pending = pending[0], pending[1:]
		} else {
			line = p.expect()
		}
		switch {
		case line == "":
			return
		case strings.HasPrefix(line, "MAIL"), strings.HasPrefix(line, "RCPT"), line == "RSET", line == "NOOP":
			p.send("250 2.0.0 ok")
		case line == "DATA":
			p.send("354 go ahead")
			p.readData()
			p.send("250 2.0.0 queued as X1")
		case line == "QUIT":
			p.send("221 2.0.0 bye")
			return
		default:
			p.send("500 5.5.1 what")
		}
	}
}

func TestHELOFallbackWhenEHLOIsRefused(t *testing.T) {
	checkGoroutines(t)
	srv := startScripted(t, "127.0.0.2", 0, func(p *peer) {
		p.send("220 old.test SMTP")
		if l := p.expect(); strings.HasPrefix(l, "EHLO") {
			p.send("502 5.5.2 command not recognized")
		}
		if l := p.expect(); l != "HELO out.sender.test" {
			p.send("500 bad")
			return
		}
		p.send("250 old.test")
		acceptRest(p)
	})
	c := newTestClient(t, "127.0.0.1:1", srv.port(), func(o *Options) { o.Routes = mustRoutes(t, "*: [127.0.0.2]") })
	res := deliver(t, c, env("a@sender.test"), rcpts("b@x.test"), testMessage)
	wantDelivered(t, res[0])
	if res[0].Diagnostic != "smtp; 250 2.0.0 queued as X1" {
		t.Errorf("diagnostic %q", res[0].Diagnostic)
	}
	if !strings.Contains(srv.transcript(), "MAIL FROM:<a@sender.test>\nRCPT TO:<b@x.test>\nDATA") {
		t.Errorf("transcript:\n%s", srv.transcript())
	}
	if strings.Contains(srv.transcript(), "BODY=") || strings.Contains(srv.transcript(), "SIZE=") {
		t.Errorf("extensions used after HELO:\n%s", srv.transcript())
	}
}

func TestBrokenSTARTTLSFallsBackToClear(t *testing.T) {
	checkGoroutines(t)
	srv := startScripted(t, "127.0.0.2", 0, func(p *peer) {
		p.send("220 broken.test ESMTP")
		p.expect() // EHLO
		p.send("250-broken.test", "250-STARTTLS", "250 8BITMIME")
		l := p.expect()
		if l == "STARTTLS" {
			p.send("220 2.0.0 go ahead")
			p.conn.Write([]byte("this is not a TLS server hello\r\n"))
			return
		}
		acceptRest(p, l)
	})
	c := newTestClient(t, "127.0.0.1:1", srv.port(), func(o *Options) { o.Routes = mustRoutes(t, "*: [127.0.0.2]") })
	wantDelivered(t, deliver(t, c, env("a@sender.test"), rcpts("b@x.test"), testMessage)[0])
	tr := srv.transcript()
	if strings.Count(tr, "STARTTLS") != 1 || !strings.Contains(tr, "MAIL FROM:<a@sender.test> BODY=8BITMIME") {
		t.Errorf("transcript:\n%s", tr)
	}
}

func TestBrokenSTARTTLSNotFallenBackWhenRequired(t *testing.T) {
	checkGoroutines(t)
	srv := startScripted(t, "127.0.0.2", 0, func(p *peer) {
		p.send("220 broken.test ESMTP")
		p.expect()
		p.send("250-broken.test", "250 STARTTLS")
		if p.expect() == "STARTTLS" {
			p.send("454 4.7.0 TLS not available")
		}
		acceptRest(p)
	})
	c := newTestClient(t, "127.0.0.1:1", srv.port(), func(o *Options) {
		o.Routes = mustRoutes(t, "*: [127.0.0.2] /SECURITY=STARTTLS")
	})
	res := deliver(t, c, env("a@sender.test"), rcpts("b@x.test"), testMessage)
	wantFailure(t, res[0], false, statusTLSFailed)
	if res[0].Diagnostic != "smtp; 454 4.7.0 TLS not available" {
		t.Errorf("diagnostic %q", res[0].Diagnostic)
	}
	if strings.Contains(srv.transcript(), "MAIL") {
		t.Errorf("sent in clear:\n%s", srv.transcript())
	}
}

func TestRefusedSTARTTLSContinuesInClearWhenOpportunistic(t *testing.T) {
	checkGoroutines(t)
	srv := startScripted(t, "127.0.0.2", 0, func(p *peer) {
		p.send("220 t.test ESMTP")
		p.expect()
		p.send("250-t.test", "250 STARTTLS")
		if p.expect() == "STARTTLS" {
			p.send("454 4.7.0 TLS not available")
		}
		acceptRest(p)
	})
	c := newTestClient(t, "127.0.0.1:1", srv.port(), func(o *Options) { o.Routes = mustRoutes(t, "*: [127.0.0.2]") })
	wantDelivered(t, deliver(t, c, env("a@sender.test"), rcpts("b@x.test"), testMessage)[0])
}

func TestGreeting421TriesNextMX(t *testing.T) {
	checkGoroutines(t)
	busy := startScripted(t, "127.0.0.3", 0, func(p *peer) {
		p.send("421 4.3.2 busy, try later")
	})
	good := startSMTP(t, serverConfig{ip: "127.0.0.2", port: busy.port()})
	z := newZone()
	z.add(t,
		"example.test. 60 IN MX 10 busy.example.test.",
		"example.test. 60 IN MX 20 good.example.test.",
		"busy.example.test. 60 IN A 127.0.0.3",
		"good.example.test. 60 IN A 127.0.0.2",
	)
	c := newTestClient(t, startDNS(t, z), busy.port(), nil)
	res := deliver(t, c, env("a@sender.test"), rcpts("b@example.test"), testMessage)
	wantDelivered(t, res[0])
	if res[0].RemoteMTA != "dns; good.example.test" || len(good.messages()) != 1 {
		t.Errorf("result %+v", res[0])
	}
}

func TestOnlyHostBusyIsTemporaryWithItsReply(t *testing.T) {
	checkGoroutines(t)
	busy := startScripted(t, "127.0.0.2", 0, func(p *peer) {
		p.send("421 4.3.2 busy, try later")
	})
	c := newTestClient(t, "127.0.0.1:1", busy.port(), func(o *Options) { o.Routes = mustRoutes(t, "*: [127.0.0.2]") })
	res := deliver(t, c, env("a@sender.test"), rcpts("b@x.test"), testMessage)
	wantFailure(t, res[0], false, "4.3.2")
	if res[0].Diagnostic != "smtp; 421 4.3.2 busy, try later" || res[0].RemoteMTA != "dns; 127.0.0.2" {
		t.Errorf("result %+v", res[0])
	}
}

func TestLostReplyAfterDataIsTemporaryAndNotRetriedElsewhere(t *testing.T) {
	checkGoroutines(t)
	var mu sync.Mutex
	sessions := 0
	handler := func(p *peer) {
		mu.Lock()
		sessions++
		mu.Unlock()
		p.send("220 t.test ESMTP")
		p.expect()
		p.send("250 t.test")
		for {
			line := p.expect()
			switch {
			case line == "":
				return
			case line == "DATA":
				p.send("354 go ahead")
				p.readData()
				return // hang up without a reply
			default:
				p.send("250 ok")
			}
		}
	}
	first := startScripted(t, "127.0.0.2", 0, handler)
	startScripted(t, "127.0.0.3", first.port(), handler)
	z := newZone()
	z.add(t,
		"example.test. 60 IN MX 10 a.example.test.",
		"example.test. 60 IN MX 20 b.example.test.",
		"a.example.test. 60 IN A 127.0.0.2",
		"b.example.test. 60 IN A 127.0.0.3",
	)
	c := newTestClient(t, startDNS(t, z), first.port(), nil)
	res := deliver(t, c, env("a@sender.test"), rcpts("b@example.test"), testMessage)
	wantFailure(t, res[0], false, statusBadConnection)
	mu.Lock()
	defer mu.Unlock()
	if sessions != 1 {
		t.Errorf("%d sessions: a message that may have been delivered was sent again at once", sessions)
	}
}

// recorder keeps the last MAIL command and message a recordingPeer got.
type recorder struct {
	mu         sync.Mutex
	mail, data string
}

func (r *recorder) last() (mail, data string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mail, r.data
}

// recordingPeer answers EHLO with ehlo (its lines after the greeting
// name), accepts everything else, and records into rec.
func recordingPeer(rec *recorder, ehlo ...string) func(p *peer) {
	return func(p *peer) {
		p.send("220 t.test ESMTP")
		p.expect()
		p.send(append([]string{"250" + map[bool]string{true: "-", false: " "}[len(ehlo) > 0] + "t.test"}, ehlo...)...)
		for {
			line := p.expect()
			switch {
			case line == "":
				return
			case strings.HasPrefix(line, "MAIL"):
				rec.mu.Lock()
				rec.mail = line
				rec.mu.Unlock()
				p.send("250 ok")
			case line == "DATA":
				p.send("354 go ahead")
				d := p.readData()
				rec.mu.Lock()
				rec.data = d
				rec.mu.Unlock()
				p.send("250 ok")
			case line == "QUIT":
				p.send("221 bye")
				return
			default:
				p.send("250 ok")
			}
		}
	}
}

func TestDotStuffingAndBareLF(t *testing.T) {
	checkGoroutines(t)
	var rec recorder
	srv := startScripted(t, "127.0.0.2", 0, recordingPeer(&rec))
	c := newTestClient(t, "127.0.0.1:1", srv.port(), func(o *Options) { o.Routes = mustRoutes(t, "*: [127.0.0.2]") })
	wantDelivered(t, deliver(t, c, env("a@sender.test"), rcpts("b@x.test"), "Subject: x\r\n\r\n.\r\n..two\r\nlast")[0])
	if _, got := rec.last(); got != "Subject: x\r\n\r\n..\r\n...two\r\nlast\r\n" {
		t.Errorf("on the wire: %q", got)
	}
}

// countingHandler is an accept-everything peer that counts its sessions.
func countingHandler(sessions *int, mu *sync.Mutex, closeAfterFirst bool) func(p *peer) {
	return func(p *peer) {
		mu.Lock()
		*sessions++
		mu.Unlock()
		p.send("220 t.test ESMTP")
		p.expect()
		p.send("250-t.test", "250 PIPELINING")
		for {
			line := p.expect()
			switch {
			case line == "":
				return
			case line == "DATA":
				p.send("354 go ahead")
				p.readData()
				p.send("250 2.0.0 ok")
				if closeAfterFirst {
					return // as a server with a short idle timeout would
				}
			case line == "QUIT":
				p.send("221 bye")
				return
			default:
				p.send("250 ok")
			}
		}
	}
}

func TestConnectionReusedForNextMessage(t *testing.T) {
	checkGoroutines(t)
	var mu sync.Mutex
	sessions := 0
	srv := startScripted(t, "127.0.0.2", 0, countingHandler(&sessions, &mu, false))
	c := newTestClient(t, "127.0.0.1:1", srv.port(), func(o *Options) { o.Routes = mustRoutes(t, "*: [127.0.0.2]") })
	for i := 0; i < 3; i++ {
		wantDelivered(t, deliver(t, c, env("a@sender.test"), rcpts("b@x.test"), testMessage)[0])
	}
	mu.Lock()
	n := sessions
	mu.Unlock()
	if n != 1 {
		t.Errorf("%d connections for 3 messages, want 1", n)
	}
	if got := strings.Count(srv.transcript(), "NOOP"); got != 2 {
		t.Errorf("%d NOOPs, want one per reuse:\n%s", got, srv.transcript())
	}
	if st := c.Stats(); st.Attempts != 3 || st.Delivered != 3 {
		t.Errorf("stats %+v", st)
	}
	c.Close()
	if !strings.HasSuffix(srv.transcript(), "QUIT") {
		t.Errorf("Close did not QUIT the cached session:\n%s", srv.transcript())
	}
}

func TestStaleCachedConnectionIsReplaced(t *testing.T) {
	checkGoroutines(t)
	var mu sync.Mutex
	sessions := 0
	srv := startScripted(t, "127.0.0.2", 0, countingHandler(&sessions, &mu, true))
	c := newTestClient(t, "127.0.0.1:1", srv.port(), func(o *Options) { o.Routes = mustRoutes(t, "*: [127.0.0.2]") })
	for i := 0; i < 2; i++ {
		wantDelivered(t, deliver(t, c, env("a@sender.test"), rcpts("b@x.test"), testMessage)[0])
	}
	mu.Lock()
	defer mu.Unlock()
	if sessions != 2 {
		t.Errorf("%d sessions, want 2 (the first was closed by the server)", sessions)
	}
}

func TestConnectionCacheDisabled(t *testing.T) {
	checkGoroutines(t)
	var mu sync.Mutex
	sessions := 0
	srv := startScripted(t, "127.0.0.2", 0, countingHandler(&sessions, &mu, false))
	c := newTestClient(t, "127.0.0.1:1", srv.port(), func(o *Options) {
		o.Routes = mustRoutes(t, "*: [127.0.0.2]")
		o.ConnCacheIdle = -1
	})
	for i := 0; i < 2; i++ {
		wantDelivered(t, deliver(t, c, env("a@sender.test"), rcpts("b@x.test"), testMessage)[0])
	}
	mu.Lock()
	defer mu.Unlock()
	if sessions != 2 || strings.Count(srv.transcript(), "QUIT") != 2 {
		t.Errorf("%d sessions, transcript:\n%s", sessions, srv.transcript())
	}
}

func TestIdleCachedConnectionClosedAfterTimeout(t *testing.T) {
	checkGoroutines(t)
	var mu sync.Mutex
	sessions := 0
	srv := startScripted(t, "127.0.0.2", 0, countingHandler(&sessions, &mu, false))
	c := newTestClient(t, "127.0.0.1:1", srv.port(), func(o *Options) {
		o.Routes = mustRoutes(t, "*: [127.0.0.2]")
		o.ConnCacheIdle = 100 * time.Millisecond
	})
	wantDelivered(t, deliver(t, c, env("a@sender.test"), rcpts("b@x.test"), testMessage)[0])
	deadline := time.Now().Add(3 * time.Second)
	for !strings.HasSuffix(srv.transcript(), "QUIT") {
		if time.Now().After(deadline) {
			t.Fatalf("idle session not ended:\n%s", srv.transcript())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestAuthLoginAfterSTARTTLS(t *testing.T) {
	checkGoroutines(t)
	cert, _ := selfSigned(t, "relay.test")
	var mu sync.Mutex
	var user, pass string
	srv := startScripted(t, "127.0.0.2", 0, func(p *peer) {
		p.send("220 relay.test ESMTP")
		p.expect()
		p.send("250-relay.test", "250 STARTTLS")
		if p.expect() != "STARTTLS" {
			return
		}
		p.send("220 go ahead")
		tc := tls.Server(p.conn, serverTLS(cert))
		if err := tc.Handshake(); err != nil {
			return
		}
		p.conn, p.r = tc, bufio.NewReader(tc)
		p.expect() // EHLO again
		p.send("250-relay.test", "250 AUTH LOGIN")
		if p.expect() != "AUTH LOGIN" {
			p.send("504 only LOGIN")
			return
		}
		p.send("334 " + base64.StdEncoding.EncodeToString([]byte("Username:")))
		u, _ := base64.StdEncoding.DecodeString(p.expect())
		p.send("334 " + base64.StdEncoding.EncodeToString([]byte("Password:")))
		pw, _ := base64.StdEncoding.DecodeString(p.expect())
		mu.Lock()
		user, pass = string(u), string(pw)
		mu.Unlock()
		p.send("235 2.7.0 ok")
		acceptRest(p)
	})
	c := newTestClient(t, "127.0.0.1:1", srv.port(), func(o *Options) {
		o.Routes = mustRoutes(t, "*: [127.0.0.2] /SECURITY=STARTTLS")
		o.Auth = map[string]Credentials{"[127.0.0.2]": {User: "me@isp.test", Password: "pw with space"}}
	})
	wantDelivered(t, deliver(t, c, env("a@sender.test"), rcpts("b@x.test"), testMessage)[0])
	mu.Lock()
	defer mu.Unlock()
	if user != "me@isp.test" || pass != "pw with space" {
		t.Errorf("AUTH LOGIN got %q / %q", user, pass)
	}
}

func TestLocalAddressAndAddressFamily(t *testing.T) {
	checkGoroutines(t)
	srv := startSMTP(t, serverConfig{})
	z := newZone()
	z.add(t,
		"example.test. 60 IN MX 10 mx.example.test.",
		"mx.example.test. 60 IN A 127.0.0.2",
		"mx.example.test. 60 IN AAAA 2001:db8::dead", // unreachable; filtered by /ipv4only
		"v6.test. 60 IN MX 10 mx6.example.test.",
		"mx6.example.test. 60 IN AAAA 2001:db8::dead",
	)
	dnsAddr := startDNS(t, z)
	c := newTestClient(t, dnsAddr, srv.port(), func(o *Options) {
		o.LocalAddrs = []netip.Addr{netip.MustParseAddr("::1"), netip.MustParseAddr("127.0.0.9")}
		o.Routes = mustRoutes(t, "example.test: /ipv4only", "v6.test: /ipv4only")
	})
	res := deliver(t, c, env("a@sender.test"), rcpts("b@example.test"), testMessage)
	wantDelivered(t, res[0])
	got := srv.messages()
	if len(got) != 1 || !strings.HasPrefix(got[0].Remote, "127.0.0.9:") {
		t.Fatalf("server saw the client at %+v, want 127.0.0.9", got)
	}
	if c.Stats().Attempts != 1 {
		t.Errorf("attempts %d: the AAAA address was tried despite /ipv4only", c.Stats().Attempts)
	}
	// A domain whose only MX has no IPv4 address, under /ipv4only.
	wantFailure(t, deliver(t, c, env("a@sender.test"), rcpts("b@v6.test"), testMessage)[0], false, statusUnableToRoute)
}

func TestEndlessReplyIsCutOff(t *testing.T) {
	checkGoroutines(t)
	srv := startScripted(t, "127.0.0.2", 0, func(p *peer) {
		p.send("220 chatty.test ESMTP")
		p.expect()
		line := []byte("250-" + strings.Repeat("x", 990) + "\r\n")
		for i := 0; i < 5000; i++ { // about 5 MB, never a last line
			if _, err := p.conn.Write(line); err != nil {
				return
			}
		}
	})
	c := newTestClient(t, "127.0.0.1:1", srv.port(), func(o *Options) { o.Routes = mustRoutes(t, "*: [127.0.0.2]") })
	res := deliver(t, c, env("a@sender.test"), rcpts("b@x.test"), testMessage)
	if res[0].Err == nil || res[0].Permanent || !errors.Is(res[0].Err, errPeerTooChatty) {
		t.Fatalf("result %+v", res[0])
	}
}

// esmtphelo: the EHLO name, when set, instead of the host name.
func TestHELOName(t *testing.T) {
	checkGoroutines(t)
	for _, name := range []string{"", "out.example.test"} {
		var rec recorder
		srv := startScripted(t, "127.0.0.2", 0, recordingPeer(&rec))
		c := newTestClient(t, "127.0.0.1:1", srv.port(), func(o *Options) {
			o.Routes = mustRoutes(t, "*: [127.0.0.2]")
			o.HELOName = name
		})
		wantDelivered(t, deliver(t, c, env("a@sender.test"), rcpts("b@x.test"), "Subject: x\r\n\r\nx")[0])
		want := "EHLO " + c.opts.Hostname
		if name != "" {
			want = "EHLO " + name
		}
		if tr := srv.transcript(); !strings.HasPrefix(tr, want+"\n") {
			t.Errorf("HELOName %q: the session began %q, want %q", name, strings.SplitN(tr, "\n", 2)[0], want)
		}
	}
}
