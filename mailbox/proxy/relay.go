package proxy

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// Relay timeouts.
const (
	// DefaultWriteTimeout bounds each write to either side, so that a peer
	// that stops reading cannot hold the relay forever.
	DefaultWriteTimeout = 2 * time.Minute
	// lingerTimeout is how long the backend may keep sending once the
	// client has gone.
	lingerTimeout = time.Minute
	// stopWait is how long Run waits for the client's reader to stop.
	stopWait = 5 * time.Second
)

// Relay copies bytes between a client and its backend until either side
// closes. Interrupt asks it to end gracefully (a server shutting down);
// Close ends it at once.
type Relay struct {
	Client net.Conn
	// ClientR reads the client: the front's buffered reader over Client,
	// which may hold commands the client pipelined after its login.
	ClientR io.Reader
	Backend *Backend
	// WriteTimeout bounds each write; default DefaultWriteTimeout.
	WriteTimeout time.Duration

	mu          sync.Mutex
	interrupted bool
}

// Stats are what a relay moved.
type Stats struct {
	ToBackend, ToClient int64 // bytes
	// Interrupted: the relay ended because Interrupt was called, after the
	// backend finished and closed.
	Interrupted bool
}

// Run relays until either side closes or fails, then closes the backend
// (the caller owns and closes the client connection).
//
// The client's reads have no deadline: the backend's own autologout timer
// ends an idle session, and its close ends the relay. When the client
// closes (or Interrupt stops reading it), the backend's writing half is
// closed, so the backend sees the end of its input after the commands
// already sent, answers them, and closes; what it answers still reaches
// the client.
func (r *Relay) Run() Stats {
	var st Stats
	r.mu.Lock()
	if r.interrupted {
		r.Client.SetReadDeadline(time.Now())
	} else {
		r.Client.SetReadDeadline(time.Time{})
	}
	r.mu.Unlock()
	r.Backend.Conn.SetDeadline(time.Time{})

	upDone := make(chan struct{})
	go func() {
		defer close(upDone)
		st.ToBackend, _ = copyWithDeadline(r.Backend.Conn, r.ClientR, r.writeTimeout())
		if !r.isInterrupted() {
			// The client has gone: give the backend a minute to finish.
			r.Backend.Conn.SetReadDeadline(time.Now().Add(lingerTimeout))
		}
		closeWrite(r.Backend.Conn)
	}()
	st.ToClient, _ = copyWithDeadline(r.Client, r.Backend.R, r.writeTimeout())
	// The backend has closed: stop reading the client too. A client
	// connection without deadlines (a pipe, for imapd on standard input) is
	// closed instead; if even that does not end the read, Run returns
	// without it, and the reading goroutine ends with the pipe.
	r.Client.SetReadDeadline(time.Now())
	select {
	case <-upDone:
	case <-time.After(stopWait):
		r.Client.Close()
		select {
		case <-upDone:
		case <-time.After(stopWait):
		}
	}
	r.Backend.Close()
	st.Interrupted = r.isInterrupted()
	return st
}

// Interrupt makes the relay stop reading the client: the backend answers
// what it was sent, closes, and Run returns. It may be called from any
// goroutine, before or during Run.
func (r *Relay) Interrupt() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.interrupted = true
	r.Client.SetReadDeadline(time.Now())
}

// Close cuts both connections (a shutdown past its deadline).
func (r *Relay) Close() {
	r.Client.Close()
	r.Backend.Close()
}

func (r *Relay) isInterrupted() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.interrupted
}

func (r *Relay) writeTimeout() time.Duration {
	if r.WriteTimeout > 0 {
		return r.WriteTimeout
	}
	return DefaultWriteTimeout
}

// copyWithDeadline copies src to dst, arming dst's write deadline before
// each write, until src ends or either side fails.
func copyWithDeadline(dst net.Conn, src io.Reader, timeout time.Duration) (int64, error) {
	buf := make([]byte, 32<<10)
	var n int64
	for {
		nr, rerr := src.Read(buf)
		if nr > 0 {
			dst.SetWriteDeadline(time.Now().Add(timeout))
			nw, werr := dst.Write(buf[:nr])
			n += int64(nw)
			if werr != nil {
				return n, werr
			}
		}
		if rerr != nil {
			if errors.Is(rerr, io.EOF) {
				return n, nil
			}
			return n, rerr
		}
	}
}

// closeWrite half-closes c when it can (TCP, TLS), else closes it.
func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		if cw.CloseWrite() == nil {
			return
		}
	}
	c.Close()
}
