// Package netstep bounds every read and write on a connection. The bench
// tools use it so that a silent or slow server makes a step fail with a
// timeout instead of hanging the run, whatever deadlines the protocol
// client library sets or clears.
package netstep

import (
	"net"
	"time"
)

// Conn gives every Read and Write its own deadline of Timeout from the
// moment it starts. Deadlines set by the caller (client libraries set them
// around replies and clear them afterwards, leaving bulk writes unbounded)
// are ignored: the per-step deadline replaces them.
type Conn struct {
	net.Conn
	Timeout time.Duration
}

// New wraps c with a per-step timeout.
func New(c net.Conn, timeout time.Duration) *Conn { return &Conn{Conn: c, Timeout: timeout} }

func (c *Conn) Read(p []byte) (int, error) {
	if err := c.Conn.SetReadDeadline(time.Now().Add(c.Timeout)); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

func (c *Conn) Write(p []byte) (int, error) {
	if err := c.Conn.SetWriteDeadline(time.Now().Add(c.Timeout)); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

// SetDeadline is ignored; see Conn.
func (c *Conn) SetDeadline(time.Time) error { return nil }

// SetReadDeadline is ignored; see Conn.
func (c *Conn) SetReadDeadline(time.Time) error { return nil }

// SetWriteDeadline is ignored; see Conn.
func (c *Conn) SetWriteDeadline(time.Time) error { return nil }
