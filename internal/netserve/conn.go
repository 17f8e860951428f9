package netserve

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"time"
)

// ErrInterrupted is BeginWait's error once Interrupt has been called: the
// session is to end at this command boundary.
var ErrInterrupted = errors.New("netserve: session interrupted")

// ErrIdle is WaitError's error for a wait for a command that timed out:
// the client said nothing for too long.
var ErrIdle = errors.New("netserve: idle timeout")

// Conn is a session's client connection as the session's goroutine and
// the goroutines that end sessions (Group.Shutdown, Kick) share it.
//
// It reads and writes the current connection, which StartTLS replaces
// underneath the session's buffered reader and writer. Each write has a
// deadline of its own, so that a client that stops reading cannot hold a
// session (and its goroutine) forever, while a large message to a slow but
// live client still goes out write by write.
//
// Interrupt ends a wait for the next command at once (BeginWait to
// EndWait), but lets a read inside a command (an upload) finish: the
// session stops at its next command boundary. While the session relays
// its client to another server (Relay), Interrupt and Close act on the
// relay instead.
type Conn struct {
	writeTimeout time.Duration

	mu          sync.Mutex
	nc          net.Conn
	waiting     bool // between BeginWait and EndWait
	interrupted bool
	relay       Relayer
}

// Relayer is what a session hands its client to while it proxies it to
// another server (mailbox/proxy's Relay).
type Relayer interface {
	Interrupt() // end at the next command boundary
	Close()     // cut both sides now
}

// NewConn starts the shared record of a session's connection nc; each
// write gets writeTimeout.
func NewConn(nc net.Conn, writeTimeout time.Duration) *Conn {
	return &Conn{nc: nc, writeTimeout: writeTimeout}
}

// NetConn is the current connection: after StartTLS, the TLS one.
func (c *Conn) NetConn() net.Conn {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nc
}

// Read reads from the current connection.
func (c *Conn) Read(p []byte) (int, error) { return c.NetConn().Read(p) }

// Write writes to the current connection within the write timeout.
func (c *Conn) Write(p []byte) (int, error) {
	nc := c.NetConn()
	if err := nc.SetWriteDeadline(time.Now().Add(c.writeTimeout)); err != nil {
		return 0, err
	}
	return nc.Write(p)
}

// SetReadDeadline sets the current connection's read deadline.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.NetConn().SetReadDeadline(t) }

// BeginWait starts the wait for the session's next command (or for a
// reply inside one that may wait as long, such as a SASL response): the
// read deadline is timeout from now, and Interrupt cuts the wait. After
// Interrupt it returns ErrInterrupted instead, and the session is to end.
func (c *Conn) BeginWait(timeout time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.interrupted {
		return ErrInterrupted
	}
	c.nc.SetReadDeadline(time.Now().Add(timeout))
	c.waiting = true
	return nil
}

// EndWait ends the wait BeginWait began: a read from now on is a
// command's, which Interrupt leaves to finish.
func (c *Conn) EndWait() {
	c.mu.Lock()
	c.waiting = false
	c.mu.Unlock()
}

// WaitError says why a read during a wait failed with err:
// ErrInterrupted when Interrupt has been called, ErrIdle when the wait
// timed out; err otherwise (the client closed, the connection broke).
func (c *Conn) WaitError(err error) error {
	var ne net.Error
	switch {
	case err == nil:
		return nil
	case c.Interrupted():
		return ErrInterrupted
	case errors.As(err, &ne) && ne.Timeout():
		return ErrIdle
	}
	return err
}

// Interrupted reports whether Interrupt has been called.
func (c *Conn) Interrupted() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.interrupted
}

// Interrupt asks the session to end at its next command boundary, for a
// shutdown or an admin's kick: a wait for a command is cut now (its read
// fails with a timeout), a relay is asked to end, and every BeginWait
// after it fails.
func (c *Conn) Interrupt() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.interrupted = true
	switch {
	case c.relay != nil:
		c.relay.Interrupt()
	case c.waiting:
		c.nc.SetReadDeadline(time.Now())
	}
}

// Close cuts the connection now, and a relay's other side.
func (c *Conn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.relay != nil {
		c.relay.Close()
	}
	return c.nc.Close()
}

// Handshake runs the TLS handshake of a connection that a TLS listener
// accepted (implicit TLS), as the package's Handshake does; for a plain
// connection it does nothing.
func (c *Conn) Handshake(ctx context.Context, timeout time.Duration) error {
	tc, ok := c.NetConn().(*tls.Conn)
	if !ok {
		return nil
	}
	return Handshake(ctx, tc, timeout)
}

// StartTLS turns the connection into a TLS one with config (STARTTLS,
// STLS), once the session has told the client to begin: the handshake is
// the package's Handshake, and on success the TLS connection becomes the
// current one. On failure the session is to end.
//
// What the session's buffered reader holds was sent in the clear before
// the handshake: the session drops it, or refuses it before StartTLS
// (the STARTTLS command injection).
func (c *Conn) StartTLS(ctx context.Context, config *tls.Config, timeout time.Duration) error {
	tc := tls.Server(c.NetConn(), config)
	if err := Handshake(ctx, tc, timeout); err != nil {
		return err
	}
	c.mu.Lock()
	c.nc = tc
	c.mu.Unlock()
	return nil
}

// Relay runs run, which relays the client through r to another server
// until the session ends. Meanwhile Interrupt and Close act on r; when
// Interrupt has been called already, r is interrupted before run starts.
func (c *Conn) Relay(r Relayer, run func()) {
	c.mu.Lock()
	c.relay, c.waiting = r, false
	interrupted := c.interrupted
	c.mu.Unlock()
	if interrupted {
		r.Interrupt()
	}
	run()
	c.mu.Lock()
	c.relay = nil
	c.mu.Unlock()
}
