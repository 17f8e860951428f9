package proxyproto

import (
	"bufio"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"
)

// DefaultTimeout bounds the wait for a connection's header.
const DefaultTimeout = 5 * time.Second

// maxPending bounds the connections whose header is being read at once;
// past it new connections wait in the kernel's backlog.
const maxPending = 256

// Listener hands out connections whose PROXY header has been read: their
// RemoteAddr and LocalAddr are the ones the header names (the client's),
// and reading them starts after the header. A connection from an address
// Trusted refuses, or whose header is missing, malformed or slower than
// Timeout, is closed and logged, never handed out. Headers are read on
// goroutines of their own, so a slow front end does not hold up the
// others.
type Listener struct {
	inner   net.Listener
	trusted func(netip.Addr) bool
	timeout time.Duration
	log     *slog.Logger

	start  sync.Once
	ready  chan accepted
	done   chan struct{}
	closed sync.Once
	slots  chan struct{}
}

type accepted struct {
	c   net.Conn
	err error
}

// NewListener wraps ln. trusted says which peers may send headers (the
// "trustedproxies" setting); timeout 0 means DefaultTimeout; log may be
// nil.
func NewListener(ln net.Listener, trusted func(netip.Addr) bool, timeout time.Duration, log *slog.Logger) *Listener {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Listener{inner: ln, trusted: trusted, timeout: timeout, log: log,
		ready: make(chan accepted), done: make(chan struct{}), slots: make(chan struct{}, maxPending)}
}

// Accept returns the next connection whose header has been read, or the
// inner listener's error.
func (l *Listener) Accept() (net.Conn, error) {
	l.start.Do(func() { go l.loop() })
	select {
	case a := <-l.ready:
		return a.c, a.err
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close closes the inner listener; connections still in their header are
// closed as their reads end.
func (l *Listener) Close() error {
	l.closed.Do(func() { close(l.done) })
	return l.inner.Close()
}

// Addr is the inner listener's address.
func (l *Listener) Addr() net.Addr { return l.inner.Addr() }

func (l *Listener) loop() {
	for {
		select {
		case l.slots <- struct{}{}:
		case <-l.done:
			return
		}
		c, err := l.inner.Accept()
		if err != nil {
			<-l.slots
			select {
			case l.ready <- accepted{err: err}:
			case <-l.done:
				return
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		go func() {
			defer func() { <-l.slots }()
			pc, err := l.header(c)
			if err != nil {
				l.log.Warn("PROXY header refused; connection dropped", "peer", c.RemoteAddr().String(), "err", err)
				c.Close()
				return
			}
			select {
			case l.ready <- accepted{c: pc}:
			case <-l.done:
				pc.Close()
			}
		}()
	}
}

// header reads c's header and returns the connection as the client sees it.
func (l *Listener) header(c net.Conn) (net.Conn, error) {
	peer := addrPort(c.RemoteAddr())
	if !peer.IsValid() || l.trusted == nil || !l.trusted(peer.Addr().Unmap()) {
		return nil, errors.New("not a trusted proxy (trustedproxies)")
	}
	c.SetReadDeadline(time.Now().Add(l.timeout))
	br := bufio.NewReader(c)
	h, err := ReadHeader(br)
	c.SetReadDeadline(time.Time{})
	if err != nil {
		return nil, err
	}
	pc := &conn{Conn: c, r: br, remote: c.RemoteAddr(), local: c.LocalAddr()}
	if !h.Local {
		pc.remote = net.TCPAddrFromAddrPort(h.Src)
		pc.local = net.TCPAddrFromAddrPort(h.Dst)
	}
	return pc, nil
}

func addrPort(a net.Addr) netip.AddrPort {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.AddrPort()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

// conn is a connection after its header: reads go through the buffer
// that holds what came after the header, the addresses are the header's.
type conn struct {
	net.Conn
	r             *bufio.Reader
	remote, local net.Addr
}

func (c *conn) Read(p []byte) (int, error) { return c.r.Read(p) }
func (c *conn) RemoteAddr() net.Addr       { return c.remote }
func (c *conn) LocalAddr() net.Addr        { return c.local }
